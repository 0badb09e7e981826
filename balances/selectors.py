from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import QuerySet

from balances.models import Account, LedgerEntry, Position


@dataclass(frozen=True)
class AccountSummary:
    cash: Decimal
    held: Decimal
    available: Decimal
    positions: list[Position]
    status: str
    status_reason: str


def account_exists(*, customer_id: int) -> bool:
    return Account.objects.filter(customer_id=customer_id).exists()


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


# An activity's type: a fill's two entries are each of type `fill`.
ACTIVITY_TYPES: dict[str, tuple[str, ...]] = {
    "fill": (
        LedgerEntry.Kind.BUY_CASH,
        LedgerEntry.Kind.BUY_SHARES,
        LedgerEntry.Kind.SELL_SHARES,
        LedgerEntry.Kind.SELL_CASH,
    ),
    "deposit": (LedgerEntry.Kind.DEPOSIT,),
    "withdrawal": (LedgerEntry.Kind.WITHDRAWAL,),
    "shares_in": (LedgerEntry.Kind.SHARES_IN,),
    "shares_out": (LedgerEntry.Kind.SHARES_OUT,),
    "correction": (LedgerEntry.Kind.REVERSAL,),
}
ACTIVITY_TYPE_OF = {kind: name for name, kinds in ACTIVITY_TYPES.items() for kind in kinds}


def activities_for_customer(
    *,
    customer_id: int,
    types: list[str] | None = None,
    after: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[LedgerEntry]:
    """The customer's ledger entries (each a movement of cash or of shares)."""
    entries = LedgerEntry.objects.filter(customer_id=customer_id)
    if types:
        entries = entries.filter(kind__in=[k for t in types for k in ACTIVITY_TYPES[t]])
    if after:
        entries = entries.filter(created_at__gt=after)
    if until:
        entries = entries.filter(created_at__lte=until)
    return entries
