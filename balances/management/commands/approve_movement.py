from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from balances.management.commands._staff import (
    movement_json,
    refused_as_command_error,
    staff_member,
)
from balances.movements import movement_approve


class Command(BaseCommand):
    help = "Approve a pending staff movement (not your own): it is applied now."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("movement_id", type=int)
        parser.add_argument("--staff", required=True, help="The approving staff member")

    def handle(self, *args: object, movement_id: int, staff: str, **options: object) -> None:
        checker = staff_member(staff)
        movement = refused_as_command_error(
            lambda: movement_approve(staff=checker, movement_id=movement_id)
        )
        self.stdout.write(movement_json(movement))
