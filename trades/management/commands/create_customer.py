import json
import secrets
from decimal import Decimal, InvalidOperation

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from api_keys.models import PREFIX_LENGTH
from api_keys.services import api_key_issue
from balances.money import MAX_CASH
from balances.services import account_open
from trades.models import Ticker

NAME_TAKEN = "a user named {name!r} already exists"


def parse_position(text: str) -> tuple[str, int]:
    ticker, _, quantity = text.partition("=")
    if not quantity.isdigit() or int(quantity) <= 0:
        raise CommandError(
            f"--position wants TICKER=QUANTITY with a whole positive quantity: {text!r}"
        )
    return ticker.upper(), int(quantity)


class Command(BaseCommand):
    help = "Create a customer with a funded account and print their API token as one JSON line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--cash", default="0", help="Opening cash, e.g. 10000.00")
        parser.add_argument("--email", default="", help="The customer's email (support finds it)")
        parser.add_argument("--full-name", default="", help='e.g. "Ada Lovelace"')
        parser.add_argument(
            "--position",
            action="append",
            default=[],
            metavar="TICKER=QTY",
            help="Opening shares; repeatable.",
        )
        parser.add_argument(
            "--password",
            action="store_true",
            help="Also give them a password (printed once) for the browsable API's login "
            "page, /api-auth/login/; `manage.py changepassword NAME` sets another.",
        )

    def handle(
        self,
        *args: object,
        name: str,
        cash: str,
        position: list[str],
        email: str,
        full_name: str,
        password: bool,
        **options: object,
    ) -> None:
        try:
            amount = Decimal(cash)
        except InvalidOperation:
            raise CommandError(f"--cash must be a decimal amount: {cash!r}") from None
        if not (amount.is_finite() and 0 <= amount <= MAX_CASH) or amount != amount.quantize(
            Decimal("0.01")
        ):
            raise CommandError(f"--cash must be an amount in whole cents from 0 to {MAX_CASH}")
        if get_user_model().objects.filter(username=name).exists():
            raise CommandError(NAME_TAKEN.format(name=name))
        positions = dict(parse_position(p) for p in position)
        unknown = set(positions) - set(
            Ticker.objects.filter(symbol__in=positions).values_list("symbol", flat=True)
        )
        if unknown:
            raise CommandError(f"unknown tickers: {', '.join(sorted(unknown))}")
        first, _, last = full_name.strip().partition(" ")
        account = account_open(
            username=name,
            cash=amount,
            positions=positions,
            email=email.strip(),
            first_name=first[:150],
            last_name=last.strip()[:150],
        )
        token = api_key_issue(customer_id=account.customer_id)
        printed: dict[str, object] = {
            "customer_id": account.customer_id,
            "token": token,
            # Alpaca's APCA-API-KEY-ID for /v2/ (docs/alpaca.md); the token is the secret.
            "key_id": token[:PREFIX_LENGTH],
        }
        if password:
            printed["password"] = secret = secrets.token_urlsafe(12)
            user = get_user_model().objects.get(id=account.customer_id)
            user.set_password(secret)
            user.save(update_fields=["password"])
        self.stdout.write(json.dumps(printed))
