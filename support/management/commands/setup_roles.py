import json

from django.core.management.base import BaseCommand

from support.roles import roles_set_up


class Command(BaseCommand):
    help = (
        "Create the staff roles (groups support and supervisor) with exactly their "
        "permissions; migrate does it too. Prints each role's permissions as JSON."
    )

    def handle(self, *args: object, **options: object) -> None:
        self.stdout.write(json.dumps(roles_set_up(), indent=2))
