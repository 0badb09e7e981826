import json
import secrets
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandParser

from api_keys.services import api_key_issue
from balances.services import account_open

DEMO_POSITIONS = {"AAPL": 50, "MSFT": 20, "SPY": 10}


class Command(BaseCommand):
    help = "Create demo customers with cash and a few positions; print one JSON line each."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, default=3)
        parser.add_argument("--cash", default="100000.00")

    def handle(self, *args: object, count: int, cash: str, **options: object) -> None:
        suffix = secrets.token_hex(3)
        for n in range(1, count + 1):
            account = account_open(
                username=f"demo-{suffix}-{n}", cash=Decimal(cash), positions=DEMO_POSITIONS
            )
            token = api_key_issue(customer_id=account.customer_id)
            self.stdout.write(json.dumps({"customer_id": account.customer_id, "token": token}))
