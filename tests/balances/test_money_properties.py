"""Settlement arithmetic as properties: whatever the quote, quantity and fill."""

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from balances.money import (
    CENT,
    PRICE_TICK,
    buy_hold,
    buy_limit_price,
    fill_amount,
    sell_limit_price,
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

    assert fill_amount(is_buy=True, quantity=quantity, price=fill) <= buy_hold(
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
def test_fractions_of_a_cent_go_the_brokers_way(quantity, price):
    cost = fill_amount(is_buy=True, quantity=quantity, price=price)
    proceeds = fill_amount(is_buy=False, quantity=quantity, price=price)

    assert cost == cost.quantize(CENT) and proceeds == proceeds.quantize(CENT)
    assert proceeds <= quantity * price <= cost
    assert cost - proceeds <= CENT  # never more than the one cent between them


@given(quantity=quantities, buy=quotes, data=st.data())
def test_no_round_trip_earns_money_unless_the_price_rose(quantity, buy, data):
    sell = data.draw(st.decimals(min_value=PRICE_TICK, max_value=buy, places=4))

    paid = fill_amount(is_buy=True, quantity=quantity, price=buy)
    received = fill_amount(is_buy=False, quantity=quantity, price=sell)

    assert received <= paid


@given(quantity=quantities, limit=quotes)
def test_a_hold_is_the_smallest_whole_cent_amount_covering_the_order(quantity, limit):
    hold = buy_hold(quantity=quantity, limit_price=limit)

    assert hold >= quantity * limit
    assert hold - CENT < quantity * limit
