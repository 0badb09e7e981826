import json
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from support.roles import ROLES, roles_set_up


class Command(BaseCommand):
    help = (
        "Create a staff member of the admin with a role (support or supervisor) and print "
        "their login, with a password shown only this once, as one JSON line: they change "
        "it at /admin/password_change/ after logging in."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--role", required=True, choices=sorted(ROLES))
        parser.add_argument("--email", default="")

    def handle(self, *args: object, name: str, role: str, email: str, **options: object) -> None:
        users = get_user_model().objects
        if users.filter(username=name).exists():
            raise CommandError(f"a user named {name!r} already exists")
        password = secrets.token_urlsafe(18)
        with transaction.atomic():
            roles_set_up()
            user = users.create_user(username=name, email=email, password=password)
            user.is_staff = True
            user.save(update_fields=["is_staff"])
            user.groups.add(Group.objects.get(name=role))
        self.stdout.write(
            json.dumps({"username": name, "role": role, "password": password, "login": "/admin/"})
        )
