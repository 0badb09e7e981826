"""The account's ledger as Alpaca's activities: which entries each of Alpaca's types
shows, and one page of them in Alpaca's shapes (alpaca_compat.shapes.activity)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.db.models import Q

from alpaca_compat import shapes
from balances.models import LedgerEntry

Kind = LedgerEntry.Kind

# Every type Alpaca documents; those our ledger never has answer an empty list.
ALPACA_ACTIVITY_TYPES = frozenset(
    "FILL TRANS MISC ACATC ACATS CFEE CIL CSD CSW DIV DIVCGL DIVCGS DIVFEE DIVFT DIVNRA "
    "DIVROC DIVTW DIVTXEX DIVWH EXTRD FEE FXTRD INT INTNRA INTPNL INTTW JNL JNLC JNLS MA "
    "MEM NC OCT OPASN OPCSH OPEXC OPEXP OPTRD OPXRC PTC PTR REORG SC SPIN SPLIT SSO SSP "
    "SWP VOF WH".split()
)
# The entries each type shows (shapes.activity_type, the other way). A fill is one FILL:
# its share entry; its cash entry is the FILL's net_amount.
ENTRIES_OF_TYPE = {
    "FILL": Q(kind__in=(Kind.BUY_SHARES, Kind.SELL_SHARES)),
    "CSD": Q(kind=Kind.DEPOSIT),
    "CSW": Q(kind=Kind.WITHDRAWAL),
    "ACATS": Q(kind__in=(Kind.SHARES_IN, Kind.SHARES_OUT)),
    "JNLC": Q(kind=Kind.REVERSAL, ticker__isnull=True),
    "JNLS": Q(kind=Kind.REVERSAL, ticker__isnull=False),
}
# Alpaca's groups of types.
GROUPS = {"TRANS": ("CSD", "CSW"), "MISC": ("ACATS", "JNLC", "JNLS")}


class UnknownActivityType(ValueError):
    pass


def activity_types_named(text: str) -> set[str]:
    """`FILL,trans`: the types named, groups spelled out; an unknown one is refused."""
    wanted: set[str] = set()
    for name in (t.strip().upper() for t in text.split(",") if t.strip()):
        if name not in ALPACA_ACTIVITY_TYPES:
            raise UnknownActivityType(name)
        wanted.update(GROUPS.get(name, (name,)))
    return wanted


def activities_page(
    *,
    customer_id: int,
    types: set[str],
    day: date | None = None,
    after: datetime | None = None,
    until: datetime | None = None,
    ascending: bool = False,
    after_entry: int | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """The customer's activities of `types`, ordered by entry id, after entry
    `after_entry` in that order, at most `limit` of them. Three queries."""
    shown = Q(pk__in=[])
    for name in types & set(ENTRIES_OF_TYPE):
        shown |= ENTRIES_OF_TYPE[name]
    entries = LedgerEntry.objects.filter(shown, customer_id=customer_id)
    if day is not None:
        entries = entries.filter(created_at__date=day)
    if after is not None:
        entries = entries.filter(created_at__gt=after)
    if until is not None:
        entries = entries.filter(created_at__lt=until)
    if after_entry is not None:
        entries = (
            entries.filter(id__gt=after_entry) if ascending else entries.filter(id__lt=after_entry)
        )
    ordered = entries.select_related("trade").order_by("id" if ascending else "-id")
    page = list(ordered[:limit])
    paid = dict(
        LedgerEntry.objects.filter(
            trade_id__in=[e.trade_id for e in page if e.trade_id is not None],
            kind__in=(Kind.BUY_CASH, Kind.SELL_CASH),
        ).values_list("trade_id", "cash_amount")
    )
    return [
        shapes.activity(entry, entry.trade, paid[entry.trade_id])
        if entry.trade_id is not None
        else shapes.activity(entry)
        for entry in page
    ]
