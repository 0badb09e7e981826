import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from api_keys.services import api_key_issue, api_key_revoke

NO_SUCH_CUSTOMER = "no customer {who!r} (give a customer id, or --username NAME)"


class Command(BaseCommand):
    help = (
        "Issue a customer a new API key, revoking the old one at once, and print it as one "
        "JSON line (the only time it is shown). With --revoke, only revoke."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("customer", help="Customer id (with --username: user name).")
        parser.add_argument("--username", action="store_true", help="CUSTOMER is a user name.")
        parser.add_argument("--revoke", action="store_true", help="Revoke; issue none.")

    def handle(
        self, *args: object, customer: str, username: bool, revoke: bool, **options: object
    ) -> None:
        users = get_user_model().objects
        if username:
            user = users.filter(username=customer).first()
        else:
            user = users.filter(id=int(customer)).first() if customer.isdigit() else None
        if user is None:
            raise CommandError(NO_SUCH_CUSTOMER.format(who=customer))
        if revoke:
            revoked = api_key_revoke(customer_id=user.id)
            self.stdout.write(json.dumps({"customer_id": user.id, "revoked": revoked}))
            return
        key = api_key_issue(customer_id=user.id)
        self.stdout.write(json.dumps({"customer_id": user.id, "token": key}))
