"""A second client that is not ours: plain `requests`, sending Alpaca's documented request
bodies (qty as a string, as the reference shows) to the running stack's /v2/. Every
answer agrees with what the pinned alpaca-py reads of the same orders, and with /api/v1/."""

from __future__ import annotations

from decimal import Decimal

import pytest
import requests
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, QueryOrderStatus
from alpaca.trading.models import NonTradeActivity, TradeActivity
from alpaca.trading.requests import GetOrdersRequest

from devtools.stack import wait_for
from tests.factories import create_customer
from tests.processes.test_alpaca_sdk import market, ours, start_all_but_the_worker
from tests.processes.test_execution_processes import assert_audit_passes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def documented_order(qty: str, side: str = "buy", **extra) -> dict:
    return {
        "symbol": "AAPL",
        "qty": qty,
        "side": side,
        "type": "market",
        "time_in_force": "day",
        **extra,
    }


def test_plain_http_and_the_sdk_get_the_same_answers(stack):
    start_all_but_the_worker(stack)
    customer = create_customer(cash="50000.00", positions={"AAPL": 4})
    http = requests.Session()
    http.headers.update(
        {"APCA-API-KEY-ID": customer.token[:12], "APCA-API-SECRET-KEY": customer.token}
    )
    v2 = f"{stack.web_url}/v2"
    sdk = TradingClient(customer.token[:12], customer.token, paper=True, url_override=stack.web_url)

    # Before any worker runs, orders wait and can be cancelled one by one or all at once.
    waiting = http.post(f"{v2}/orders", json=documented_order("1", client_order_id="http-c"))
    assert waiting.status_code == 200 and waiting.json()["status"] == "accepted"
    assert http.delete(f"{v2}/orders/{waiting.json()['id']}").status_code == 204
    again = http.delete(f"{v2}/orders/{waiting.json()['id']}")
    assert again.status_code == 422 and again.json()["code"] == 42200000
    assert sdk.get_order_by_client_id("http-c").status == "canceled"
    http.post(f"{v2}/orders", json=documented_order("1"))
    all_cancelled = http.delete(f"{v2}/orders")
    assert all_cancelled.status_code == 207
    assert [r["status"] for r in all_cancelled.json()] == [200]

    stack.start_worker("w1")
    buy = http.post(f"{v2}/orders", json=documented_order("3", client_order_id="http-buy"))
    sell = http.post(f"{v2}/orders", json=documented_order("2", side="sell"))
    by_sdk = sdk.submit_order(market(1, client_order_id="sdk-buy"))
    assert buy.status_code == sell.status_code == 200, (buy.text, sell.text)
    ids = [buy.json()["id"], sell.json()["id"], str(by_sdk.id)]
    for order_id in ids:
        wait_for(
            lambda o=order_id: http.get(f"{v2}/orders/{o}").json()["status"] == "filled",
            timeout=30,
            what="each order to fill",
        )
    # The documented replay: the same client_order_id and terms is the same order.
    replay = http.post(f"{v2}/orders", json=documented_order("3", client_order_id="http-buy"))
    assert replay.json()["id"] == ids[0]
    other_terms = http.post(f"{v2}/orders", json=documented_order("4", client_order_id="http-buy"))
    assert other_terms.status_code == 422

    for order_id in ids:
        plain = http.get(f"{v2}/orders/{order_id}").json()
        read = sdk.get_order_by_id(order_id)
        assert str(read.id) == plain["id"] and read.client_order_id == plain["client_order_id"]
        assert read.status == plain["status"] == "filled"
        assert read.qty == plain["qty"] and read.filled_qty == plain["filled_qty"]
        assert Decimal(str(read.filled_avg_price)) == Decimal(plain["filled_avg_price"])
        assert read.filled_at is not None and plain["filled_at"] is not None
        by_key = http.get(
            f"{v2}/orders:by_client_order_id", params={"client_order_id": plain["client_order_id"]}
        ).json()
        assert by_key == plain
    listed = http.get(f"{v2}/orders", params={"status": "all", "direction": "asc"}).json()
    sdk_listed = sdk.get_orders(
        GetOrdersRequest(status=QueryOrderStatus.ALL, direction="asc", limit=50)
    )
    assert [o["id"] for o in listed] == [str(o.id) for o in sdk_listed]
    trades = ours(stack, customer.token, "trades/?limit=50")["results"]
    assert {o["id"]: o["filled_avg_price"] for o in listed} == {
        f"00000000-0000-0000-0000-{t['id']:012x}": t["fill_price"] for t in trades
    }

    account = http.get(f"{v2}/account").json()
    sdk_account = sdk.get_account()
    assert (account["cash"], account["buying_power"]) == (
        sdk_account.cash,
        sdk_account.buying_power,
    )
    assert Decimal(account["cash"]) == Decimal(ours(stack, customer.token, "account/")["cash"])
    assert http.get(f"{v2}/positions").json()[0]["qty"] == sdk.get_open_position("AAPL").qty == "6"

    activities = http.get(f"{v2}/account/activities", params={"direction": "asc"}).json()
    assert activities == sdk.get("/account/activities", {"direction": "asc"})
    fills = [TradeActivity(**a) for a in activities if a["activity_type"] == "FILL"]
    others = [NonTradeActivity(**a) for a in activities if a["activity_type"] != "FILL"]
    assert [str(f.order_id) for f in fills] == ids
    assert [(f.side, f.qty) for f in fills] == [
        (OrderSide.BUY, 3),
        (OrderSide.SELL, 2),
        (OrderSide.BUY, 1),
    ]
    assert sum(Decimal(a["net_amount"]) for a in activities) == Decimal(account["cash"])
    for fill in (a for a in activities if a["activity_type"] == "FILL"):
        price_times_qty = Decimal(fill["price"]) * Decimal(fill["qty"])
        assert abs(abs(Decimal(fill["net_amount"])) - price_times_qty) < Decimal("0.01")
    assert [a.activity_type for a in others] == ["CSD", "ACATS"]

    # Refusals, as the reference documents them: a JSON error with code and message.
    limit = http.post(f"{v2}/orders", json=documented_order("1", type="limit", limit_price="9"))
    assert limit.status_code == 422 and set(limit.json()) >= {"code", "message"}
    garbled = http.post(
        f"{v2}/orders", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert garbled.status_code == 400 and "code" in garbled.json()
    stranger = requests.get(
        f"{v2}/account",
        headers={"APCA-API-KEY-ID": customer.token[:12], "APCA-API-SECRET-KEY": "0" * 40},
        timeout=10,
    )
    assert stranger.status_code == 401 and "code" in stranger.json()
    assert_audit_passes()
