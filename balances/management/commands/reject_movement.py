from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from balances.management.commands._staff import (
    movement_json,
    refused_as_command_error,
    staff_member,
)
from balances.movements import movement_reject


class Command(BaseCommand):
    help = "Reject a pending staff movement (or withdraw your own): nothing moves."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("movement_id", type=int)
        parser.add_argument("--staff", required=True, help="The rejecting staff member")
        parser.add_argument("--note", required=True, help="Why, for the record")

    def handle(
        self, *args: object, movement_id: int, staff: str, note: str, **options: object
    ) -> None:
        checker = staff_member(staff)
        movement = refused_as_command_error(
            lambda: movement_reject(staff=checker, movement_id=movement_id, note=note)
        )
        self.stdout.write(movement_json(movement))
