"""Settlement arithmetic as properties: whatever the quote, quantity and fill."""

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from trades.pricing import (
    CENT,
    PRICE_TICK,
    buy_hold,
    buy_limit_price,
    sell_limit_price,
    trade_value,
)

quotes = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("100000"), places=4)
collars = st.decimals(min_value=Decimal("0"), max_value=Decimal("0.5"), places=4)
quantities = st.integers(min_value=1, max_value=1_000_000)


@given(quote=quotes, collar=collars, quantity=quantities, data=st.data())
def test_a_buy_filled_within_its_protection_never_costs_more_than_its_hold(
    quote, collar, quantity, data
):
    limit = buy_limit_price(quote=quote, collar=collar)
    fill = data.draw(st.decimals(min_value=PRICE_TICK, max_value=limit, places=4))

    assert trade_value(quantity=quantity, price=fill) <= buy_hold(
        quantity=quantity, limit_price=limit
    )


@given(quote=quotes, collar=collars)
def test_limits_are_on_the_tick_and_on_the_right_side_of_the_quote(quote, collar):
    buy = buy_limit_price(quote=quote, collar=collar)
    sell = sell_limit_price(quote=quote, collar=collar)

    assert buy == buy.quantize(PRICE_TICK) and sell == sell.quantize(PRICE_TICK)
    assert quote <= buy <= quote * (1 + collar)
    assert PRICE_TICK <= sell and (sell >= quote * (1 - collar))
    assert sell <= max(quote, PRICE_TICK)


@given(quantity=quantities, price=quotes)
def test_values_are_whole_cents_within_half_a_cent(quantity, price):
    value = trade_value(quantity=quantity, price=price)

    assert value == value.quantize(CENT)
    assert abs(value - quantity * price) <= Decimal("0.005")


@given(quantity=quantities, limit=quotes)
def test_a_hold_is_the_smallest_whole_cent_amount_covering_the_order(quantity, limit):
    hold = buy_hold(quantity=quantity, limit_price=limit)

    assert hold >= quantity * limit
    assert hold - CENT < quantity * limit
