from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from balances.management.commands._staff import (
    movement_json,
    refused_as_command_error,
    staff_member,
)
from balances.models import StaffMovement
from balances.movements import MovementTerms, movement_propose


class Command(BaseCommand):
    help = (
        "A staff movement of cash or shares for a customer (the admin's, for scripts): "
        "applied at once, or pending a second staff member's approval above the threshold. "
        "Prints the movement as one JSON line. The same --key with the same terms prints "
        "the first movement again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("customer_id", type=int)
        parser.add_argument("kind", choices=StaffMovement.Kind.values)
        parser.add_argument("--amount", help="Dollars, at most 2 decimals (deposit, withdrawal)")
        parser.add_argument("--ticker", help="shares_in, shares_out")
        parser.add_argument("--quantity", type=int, help="shares_in, shares_out")
        parser.add_argument("--reverses", type=int, metavar="LEDGER_ENTRY_ID", help="reversal")
        parser.add_argument("--memo", required=True, help="Why, for the record")
        parser.add_argument("--key", required=True, help="Idempotency key (1-64 characters)")
        parser.add_argument("--staff", required=True, help="The staff member making it")

    def handle(self, *args: object, **options: object) -> None:
        staff = staff_member(str(options["staff"]))
        terms = MovementTerms(
            customer_id=int(options["customer_id"]),  # type: ignore[call-overload]
            kind=str(options["kind"]),
            memo=str(options["memo"]),
            amount=options["amount"],  # type: ignore[arg-type]
            ticker=options["ticker"],  # type: ignore[arg-type]
            quantity=options["quantity"],  # type: ignore[arg-type]
            reverses=options["reverses"],  # type: ignore[arg-type]
        )
        movement = refused_as_command_error(
            lambda: movement_propose(staff=staff, idempotency_key=str(options["key"]), terms=terms)
        )
        self.stdout.write(movement_json(movement))
