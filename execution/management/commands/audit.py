import json
import sys

from django.core.management.base import BaseCommand, CommandParser

from execution.audit import audit


class Command(BaseCommand):
    help = "Check the ledger and trade invariants; exit 1 with a report if any is violated."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--quiescent",
            action="store_true",
            help="Also require that no trade is still open (after a run has drained).",
        )
        parser.add_argument("--json", action="store_true", help="One JSON object instead.")

    def handle(self, *args: object, quiescent: bool, json: bool, **options: object) -> None:
        checks = audit(quiescent=quiescent)
        failed = [c for c in checks if not c.ok]
        if json:
            self.stdout.write(
                _json({c.name: {"violations": c.count, "examples": c.failures} for c in checks})
            )
        else:
            for check in checks:
                self.stdout.write(f"{'ok  ' if check.ok else 'FAIL'}  {check.name}")
                for line in check.failures:
                    self.stdout.write(f"        {line}")
                if check.count > len(check.failures):
                    self.stdout.write(f"        ... {check.count} in all")
            self.stdout.write(f"\n{len(checks) - len(failed)} of {len(checks)} invariants hold")
        if failed:
            sys.exit(1)


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True)
