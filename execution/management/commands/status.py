import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from execution.status import system_status
from outbox.leadership import shard_ranges


class Command(BaseCommand):
    help = (
        "One screen for an operator: every shard's leader, epoch and heartbeat, the standbys, "
        "the backlog, the oldest waiting trades, the active reaper and the exchange."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="One JSON object instead.")

    def handle(self, *args: object, json: bool, **options: object) -> None:
        report = system_status()
        if json:
            self.stdout.write(_dumps(report))
        else:
            self.stdout.write(render(report))


def render(report: dict[str, Any]) -> str:
    """One screen: a line per worker (the shards it leads as ranges), the shards without a
    fresh leader, the shards with the oldest backlog, the open trades and the exchange."""
    shards = report["shards"]
    led = [s for s in shards if s["led"]]
    lines = [
        f"{'READY' if report['ready'] else 'NOT READY'}: {len(led)} of {len(shards)} shards "
        f"led, reaper {report['reaper']['active'] or 'NONE'}",
        "",
        "workers (lock sessions):",
    ]
    for worker in report["workers"]:
        mine = [s for s in shards if s["leader"] == worker["name"]]
        beats = [s["heartbeat_age_s"] for s in mine if s["heartbeat_age_s"] is not None]
        epochs = [s["epoch"] for s in mine if s["epoch"] is not None]
        detail = (
            f"shards {shard_ranges([s['shard'] for s in mine])}, epochs "
            f"{min(epochs)}-{max(epochs)}, oldest heartbeat {_age(max(beats))}"
            if mine and beats and epochs
            else ""
        )
        lines.append(
            f"  {worker['name']:<28} {worker['role']:<8} leads {worker['leads']:>4}  {detail}"
        )
    if not report["workers"]:
        lines.append("  none")
    if report["reaper"]["standbys"]:
        lines.append(f"standby reapers: {', '.join(report['reaper']['standbys'])}")
    if report["leaderless_shards"]:
        lines.append(f"shards without a fresh leader: {shard_ranges(report['leaderless_shards'])}")
    waiting = sorted(
        (s for s in shards if s["outbox_rows"]),
        key=lambda s: -(s["oldest_outbox_row_age_s"] or 0),
    )
    lines.append("")
    lines.append(f"outbox rows waiting: {report['outbox_rows']} in {len(waiting)} shards")
    for s in waiting[:10]:
        lines.append(
            f"  shard {s['shard']:>4}: {s['outbox_rows']} rows, oldest "
            f"{_age(s['oldest_outbox_row_age_s'])}, leader {s['leader'] or 'NONE'}"
        )
    placed, in_flight = report["open_trades"]["placed"], report["open_trades"]["in_progress"]
    exchange = report["exchange"]
    lines += [
        f"open trades: {placed['count']} placed (oldest {_age(placed['oldest_age_s'])}), "
        f"{in_flight['count']} in progress (oldest {_age(in_flight['oldest_age_s'])})",
        "exchange: "
        + (
            f"reachable at {exchange.get('url')} ({exchange['latency_ms']} ms)"
            if exchange.get("reachable")
            else f"NOT reachable at {exchange.get('url')}: "
            f"{exchange.get('error') or exchange.get('detail')}"
        ),
    ]
    return "\n".join(lines)


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s"


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True)
