"""The official Alpaca SDK (alpaca-py, pinned, unpatched) against the running stack's
/v2/: it places, reads, lists and cancels orders and reads the account, positions, assets
and clock; the answers agree with our own API and the audit."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import (
    OrderSide,
    OrderStatus,
    QueryOrderStatus,
    TimeInForce,
    TradeEvent,
)
from alpaca.trading.requests import GetOrdersRequest, LimitOrderRequest, MarketOrderRequest
from alpaca.trading.stream import TradingStream

from devtools.stack import Stack, wait_for
from tests.factories import create_customer
from tests.processes.test_execution_processes import assert_audit_passes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def market(qty: float, side: OrderSide = OrderSide.BUY, **extra) -> MarketOrderRequest:
    return MarketOrderRequest(
        symbol="AAPL", qty=qty, side=side, time_in_force=TimeInForce.DAY, **extra
    )


def ours(stack: Stack, token: str, path: str) -> dict:
    response = requests.get(
        f"{stack.web_url}/api/v1/{path}", headers={"Authorization": f"Token {token}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def start_all_but_the_worker(stack: Stack) -> None:
    """Orders wait, accepted and cancellable, until the test starts a worker."""
    stack.start_exchange("--fill-delay-ms", "1,20")
    stack.start_web()
    stack.start_callbacks()
    stack.start_proxy()


def test_the_alpaca_sdk_trades_through_v2_and_agrees_with_our_api(stack):
    start_all_but_the_worker(stack)
    customer = create_customer(cash="100000.00", positions={"AAPL": 5})
    client = TradingClient(
        customer.token[:12], customer.token, paper=True, url_override=stack.web_url
    )

    # No worker yet: orders wait, accepted, and can be cancelled.
    first = client.submit_order(market(1, client_order_id="sdk-cancel-1"))
    assert first.status == OrderStatus.ACCEPTED and first.symbol == "AAPL"
    assert client.get_order_by_client_id("sdk-cancel-1").id == first.id
    client.cancel_order_by_id(first.id)
    assert client.get_order_by_id(first.id).status == OrderStatus.CANCELED
    more = [client.submit_order(market(1)) for _ in range(2)]
    cancelled = client.cancel_orders()
    assert {c.id for c in cancelled} == {o.id for o in more}
    assert {c.status for c in cancelled} == {200}
    with pytest.raises(APIError) as refused:
        client.cancel_order_by_id(first.id)
    assert refused.value.status_code == 422

    stack.start_worker("w1")
    buy = client.submit_order(market(3, client_order_id="sdk-buy-1"))
    sell = client.submit_order(market(2, side=OrderSide.SELL))
    for order in (buy, sell):
        wait_for(
            lambda o=order: client.get_order_by_id(o.id).status == OrderStatus.FILLED,
            timeout=30,
            what="the SDK's order to fill",
        )
    filled = client.get_order_by_id(buy.id)
    trade = ours(stack, customer.token, "trades/?client_order_id=sdk-buy-1")["results"][0]
    assert filled.filled_avg_price is not None
    assert Decimal(str(filled.filled_avg_price)) == Decimal(trade["fill_price"])
    assert filled.filled_qty == "3" and filled.qty == "3" and filled.side == OrderSide.BUY
    # A replay of the same key and terms is the same order, not a second one.
    assert client.submit_order(market(3, client_order_id="sdk-buy-1")).id == buy.id

    listed = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=50))
    assert {o.id for o in listed} == {first.id, *(o.id for o in more), buy.id, sell.id}
    assert client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN)) == []

    account = client.get_account()
    mine = ours(stack, customer.token, "account/")
    assert Decimal(account.cash) == Decimal(mine["cash"])
    assert Decimal(account.buying_power) == Decimal(mine["available"])
    assert account.trading_blocked is False
    position = client.get_open_position("AAPL")
    [our_position] = mine["positions"]
    assert position.qty == str(our_position["quantity"]) == "6"
    assert Decimal(position.cost_basis) == Decimal(our_position["cost_basis"])
    assert [p.symbol for p in client.get_all_positions()] == ["AAPL"]
    assert client.get_asset("AAPL").tradable is True
    assert "AAPL" in {a.symbol for a in client.get_all_assets()}
    assert client.get_clock().is_open is True
    assert_audit_passes()


def test_what_v2_does_not_do_is_refused_in_alpacas_shape(stack):
    stack.start_web()
    stack.start_proxy()
    customer = create_customer()
    client = TradingClient(
        customer.token[:12], customer.token, paper=True, url_override=stack.web_url
    )
    refusals = []
    for order in (
        LimitOrderRequest(
            symbol="AAPL",
            qty=1,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.DAY,
            limit_price=10,
        ),
        market(1.5),
        MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.GTC),
        MarketOrderRequest(
            symbol="AAPL", notional=100, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
        ),
        market(1, client_order_id="x" * 65),
    ):
        with pytest.raises(APIError) as refused:
            client.submit_order(order)
        refusals.append((refused.value.status_code, refused.value.code))
    assert refusals == [(422, 42200000)] * 5

    stranger = TradingClient(customer.token[:12], "0" * 40, paper=True, url_override=stack.web_url)
    with pytest.raises(APIError) as unauthorized:
        stranger.get_account()
    assert unauthorized.value.status_code == 401
    with pytest.raises(APIError) as missing:
        client.get_order_by_id("00000000-0000-0000-0000-000000000001")
    assert missing.value.status_code == 404


def test_the_sdks_trading_stream_receives_each_update_of_its_orders(stack):
    stack.start_exchange("--fill-delay-ms", "1,20")
    stack.start_web()
    stack.start_callbacks()
    stack.start_worker("w1")
    stack.start_stream()
    stack.start_proxy()
    customer = create_customer(cash="100000.00")
    client = TradingClient(
        customer.token[:12], customer.token, paper=True, url_override=stack.web_url
    )
    updates: list = []

    async def on_update(update) -> None:
        updates.append(update)

    stream = TradingStream(
        customer.token[:12],
        customer.token,
        url_override=f"ws://127.0.0.1:{stack.web_port}/stream",
    )
    stream.subscribe_trade_updates(on_update)
    runner = threading.Thread(target=stream.run, daemon=True)
    runner.start()
    try:
        wait_for(lambda: stream_count(stack) == 1, timeout=20, what="the SDK to listen")
        orders = [client.submit_order(market(1)) for _ in range(3)]
        wait_for(
            lambda: sum(u.event == TradeEvent.FILL for u in updates) == 3,
            timeout=30,
            what="three fills on the SDK's stream",
        )
    finally:
        stream.stop()
        runner.join(timeout=10)

    by_order: dict = {}
    for update in updates:
        by_order.setdefault(update.order.id, []).append(update.event)
    assert by_order == {
        o.id: [TradeEvent.ACCEPTED, TradeEvent.NEW, TradeEvent.FILL] for o in orders
    }
    fills = [u for u in updates if u.event == TradeEvent.FILL]
    for fill in fills:
        assert fill.order.status == OrderStatus.FILLED and fill.qty == 1
        assert Decimal(str(fill.price)) == Decimal(str(fill.order.filled_avg_price))
    assert_audit_passes()


def stream_count(stack: Stack) -> int:
    return requests.get(f"http://127.0.0.1:{stack.stream_port}/healthz", timeout=5).json()[
        "streams"
    ]
