"""Settlement arithmetic. Prices have 4 decimals, cash 2; nothing here is ever a float.

The rounding directions make one promise: a buy's settled cost never exceeds its hold,
because the exchange may not fill above the limit we send."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
PRICE_TICK = Decimal("0.0001")


def buy_limit_price(*, quote: Decimal, collar: Decimal) -> Decimal:
    """The most a buy may fill at: quote × (1 + collar), rounded down to the tick."""
    return (quote * (1 + collar)).quantize(PRICE_TICK, rounding=ROUND_FLOOR)


def sell_limit_price(*, quote: Decimal, collar: Decimal) -> Decimal:
    """The least a sell may fill at: quote × (1 − collar), rounded up to the tick."""
    return max((quote * (1 - collar)).quantize(PRICE_TICK, rounding=ROUND_CEILING), PRICE_TICK)


def buy_hold(*, quantity: int, limit_price: Decimal) -> Decimal:
    """Cash to hold for a buy: quantity × limit, rounded up to the cent."""
    return (quantity * limit_price).quantize(CENT, rounding=ROUND_CEILING)


def trade_value(*, quantity: int, price: Decimal) -> Decimal:
    """What a fill costs or pays: quantity × price, rounded half-up to the cent."""
    return (quantity * price).quantize(CENT, rounding=ROUND_HALF_UP)
