"""Settlement arithmetic. Prices have 4 decimals, cash 2; nothing here is ever a float.

The rounding directions make two promises: a buy's settled cost never exceeds its hold,
because the exchange may not fill above the limit we send; and every fraction of a cent
goes the broker's way, so that no customer can earn money by trading back and forth."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import TypedDict


class Digits(TypedDict):
    """A DecimalField's size, as model and serializer fields take it (`**PRICE_DIGITS`)."""

    max_digits: int
    decimal_places: int


# The columns (and API fields) of prices and of cash. Cash has room for any balance: one
# fill moves at most a maximum order at the largest price (about 1e16), so a balance could
# only overflow after some ten billion of them. Narrower, a large account's sale could
# overflow its cash column, and that fill could then never be booked. 28 digits is also
# all that Python's default decimal context keeps exactly.
PRICE_DIGITS = Digits(max_digits=14, decimal_places=4)
CASH_DIGITS = Digits(max_digits=28, decimal_places=2)


def _largest(digits: Digits) -> Decimal:
    whole, places = digits["max_digits"] - digits["decimal_places"], digits["decimal_places"]
    return Decimal(10) ** whole - Decimal(10) ** -places


CENT = Decimal("0.01")
PRICE_TICK = Decimal("0.0001")
# The largest values the columns hold.
MAX_PRICE = _largest(PRICE_DIGITS)
MAX_CASH = _largest(CASH_DIGITS)


def price_in_range(price: Decimal) -> bool:
    """A finite price from one tick up to what a price column holds."""
    return price.is_finite() and PRICE_TICK <= price <= MAX_PRICE


def buy_limit_price(*, quote: Decimal, collar: Decimal) -> Decimal:
    """The most a buy may fill at: quote × (1 + collar), rounded down to the tick."""
    return (quote * (1 + collar)).quantize(PRICE_TICK, rounding=ROUND_FLOOR)


def sell_limit_price(*, quote: Decimal, collar: Decimal) -> Decimal:
    """The least a sell may fill at: quote × (1 − collar), rounded up to the tick."""
    return max((quote * (1 - collar)).quantize(PRICE_TICK, rounding=ROUND_CEILING), PRICE_TICK)


def usable_limit_price(*, is_buy: bool, quote: Decimal, collar: Decimal) -> Decimal | None:
    """The buy or sell limit for `quote`, or None if it is not one we can send and store
    (below a tick, beyond the price column, or beyond Decimal's precision)."""
    limit_price = buy_limit_price if is_buy else sell_limit_price
    try:
        limit = limit_price(quote=quote, collar=collar)
    except InvalidOperation:
        return None
    return limit if price_in_range(limit) else None


def buy_hold(*, quantity: int, limit_price: Decimal) -> Decimal:
    """Cash to hold for a buy: quantity × limit, rounded up to the cent."""
    return (quantity * limit_price).quantize(CENT, rounding=ROUND_CEILING)


def fill_amount(*, is_buy: bool, quantity: int, price: Decimal) -> Decimal:
    """The cash a fill moves: quantity × price to the cent, rounded in the broker's favour
    (a buy's cost up, a sell's proceeds down), so that no round trip earns a customer a
    fraction of a cent nobody paid. A buy's cost never exceeds its hold: both round up,
    and the fill is never above the limit."""
    rounding = ROUND_CEILING if is_buy else ROUND_FLOOR
    return (quantity * price).quantize(CENT, rounding=rounding)


# The same rule over a filled trade row `t`, in SQL (the audit): the signed cash it moved.
FILL_CASH_MOVED_SQL = (
    "CASE t.side WHEN 'buy' THEN -ceil(t.quantity * t.fill_price * 100) "
    "ELSE floor(t.quantity * t.fill_price * 100) END / 100"
)
