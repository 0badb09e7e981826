from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from balances.models import Account, Position


@dataclass(frozen=True)
class AccountSummary:
    cash: Decimal
    held: Decimal
    available: Decimal
    positions: list[Position]
    status: str
    status_reason: str


def account_summary(*, customer_id: int) -> AccountSummary | None:
    account = Account.objects.filter(customer_id=customer_id).first()
    if account is None:
        return None
    positions = list(
        Position.objects.filter(customer_id=customer_id, quantity__gt=0).order_by("ticker")
    )
    return AccountSummary(
        cash=account.cash,
        held=account.cash_held,
        available=account.available_cash,
        positions=positions,
        status=account.status,
        status_reason=account.status_reason,
    )
