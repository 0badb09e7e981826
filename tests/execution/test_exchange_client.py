"""Tests for the exchange HTTP client (mocked with ``responses``) and callback parsing."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
import responses

from execution.exchange_client import (
    ExchangeClient,
    ExchangeConflict,
    ExchangeError,
    ExchangeRejectedRequest,
    ExchangeUnavailable,
    OrderRequest,
    OrderState,
    Quote,
    parse_callback_payload,
)

BASE = "http://exchange.test"


@pytest.fixture
def client() -> Iterator[ExchangeClient]:
    with ExchangeClient(base_url=BASE + "/", retries=2, backoff=0) as c:
        yield c


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as rsps:
        yield rsps


def order(**overrides: Any) -> OrderRequest:
    fields: dict[str, Any] = {
        "client_order_id": "trade-1",
        "account_id": "acct-1",
        "sequence": 3,
        "ticker": "AAPL",
        "side": "buy",
        "quantity": 5,
        "max_price": Decimal("190.123456"),
        "min_price": None,
        "callback_url": "http://web.test/callbacks/exchange",
    }
    fields.update(overrides)
    return OrderRequest(**fields)


def order_json(**overrides: Any) -> dict[str, Any]:
    data = {
        "client_order_id": "trade-1",
        "exchange_order_id": "X-1",
        "status": "filled",
        "ticker": "AAPL",
        "side": "buy",
        "quantity": 5,
        "fill_price": "187.1234",
        "executed_at": "2024-05-01T14:30:00.123456+00:00",
        "reason": None,
    }
    data.update(overrides)
    return data


# --- quotes ---------------------------------------------------------------------------------


def test_quotes_retry_then_give_up(client, mocked) -> None:
    mocked.get(f"{BASE}/quotes", body=requests.ConnectionError("refused"))
    with pytest.raises(ExchangeUnavailable, match="3 attempts"):
        client.quotes(["AAPL"])
    assert len(mocked.calls) == 3


def test_a_float_price_is_malformed(client, mocked) -> None:
    mocked.get(
        f"{BASE}/quotes",
        json={
            "quotes": [{"ticker": "AAPL", "price": 187.12, "as_of": "2024-05-01T14:30:00Z"}],
            "unknown": [],
        },
    )
    with pytest.raises(ExchangeError, match="price"):
        client.quotes(["AAPL"])


def test_proxy_settings_in_the_environment_are_ignored(client, mocked, monkeypatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://bogus-proxy.invalid:3128")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    mocked.get(
        f"{BASE}/quotes",
        json={
            "quotes": [{"ticker": "AAPL", "price": "187.1234", "as_of": "2024-05-01T14:30:00Z"}],
            "unknown": [],
        },
    )
    assert client.quotes(["AAPL"])["AAPL"].price == Decimal("187.1234")
    [call] = mocked.calls
    assert not call.request.req_kwargs["proxies"]


def quote_json(ticker: str, price: Any = "187.1234") -> dict[str, Any]:
    return {"ticker": ticker, "price": price, "as_of": "2024-05-01T14:30:00Z"}


def quotes_url(query: str) -> str:
    return f"{BASE}/quotes?tickers={query}"


def test_quotes_in_one_request(client, mocked) -> None:
    mocked.get(
        quotes_url("MSFT,ZZ%2FZ,AAPL"),
        json={"quotes": [quote_json("MSFT", "410.5"), quote_json("AAPL")], "unknown": ["ZZ/Z"]},
        match=[responses.matchers.query_param_matcher({"tickers": "MSFT,ZZ/Z,AAPL"})],
    )
    quotes = client.quotes(["MSFT", "ZZ/Z", "AAPL", "MSFT"])
    assert list(quotes) == ["MSFT", "ZZ/Z", "AAPL"]
    assert quotes["MSFT"] == Quote(
        "MSFT", Decimal("410.5"), datetime(2024, 5, 1, 14, 30, tzinfo=UTC)
    )
    assert quotes["AAPL"] is not None and quotes["AAPL"].price == Decimal("187.1234")
    assert quotes["ZZ/Z"] is None
    [call] = mocked.calls
    assert call.request.path_url == "/quotes?tickers=MSFT,ZZ%2FZ,AAPL"


def test_quotes_escapes_commas_inside_a_ticker(client, mocked) -> None:
    mocked.get(quotes_url("A%2CB"), json={"quotes": [], "unknown": ["A,B"]})
    assert client.quotes({"A,B"}) == {"A,B": None}
    assert mocked.calls[0].request.path_url == "/quotes?tickers=A%2CB"


@pytest.mark.parametrize("count", [0, 501])
def test_quotes_refuses_too_few_or_too_many(client, count: int) -> None:
    with pytest.raises(ValueError, match="1 to 500"):
        client.quotes([f"T{i}" for i in range(count)])


def test_quotes_counts_distinct_tickers(client, mocked) -> None:
    tickers = [f"T{i}" for i in range(500)]
    mocked.get(quotes_url(",".join(tickers)), json={"quotes": [], "unknown": tickers})
    assert len(client.quotes(tickers + ["T0"])) == 500


@pytest.mark.parametrize("tickers", [["AAPL", ""], "AAPL"])
def test_quotes_refuses_bad_tickers(client, tickers: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        client.quotes(tickers)


def test_quotes_retries_5xx(client, mocked) -> None:
    mocked.get(quotes_url("AAPL"), status=503, json={"error": "unavailable"})
    mocked.get(quotes_url("AAPL"), json={"quotes": [quote_json("AAPL")], "unknown": []})
    assert client.quotes(["AAPL"])["AAPL"] is not None
    assert len(mocked.calls) == 2


def test_quotes_gives_up_after_retries(client, mocked) -> None:
    mocked.get(quotes_url("AAPL"), status=502, body="bad gateway")
    with pytest.raises(ExchangeUnavailable, match="3 attempts"):
        client.quotes(["AAPL"])
    assert len(mocked.calls) == 3


def test_quotes_bad_request_is_an_error(client, mocked) -> None:
    mocked.get(quotes_url("AAPL"), status=400, json={"error": "invalid_request", "detail": "x"})
    with pytest.raises(ExchangeError, match="HTTP 400"):
        client.quotes(["AAPL"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "JSON object"),
        ({"unknown": []}, "quotes"),
        ({"quotes": []}, "unknown"),
        ({"quotes": {}, "unknown": []}, "lists"),
        ({"quotes": [], "unknown": "MSFT"}, "lists"),
        ({"quotes": ["AAPL"], "unknown": ["MSFT"]}, "quote object"),
        ({"quotes": [quote_json("AAPL", 187.12)], "unknown": ["MSFT"]}, "price"),
        ({"quotes": [quote_json("AAPL", "0")], "unknown": ["MSFT"]}, "price"),
        ({"quotes": [quote_json("AAPL", "abc")], "unknown": ["MSFT"]}, "price"),
        ({"quotes": [quote_json("AAPL", None)], "unknown": ["MSFT"]}, "price"),
        ({"quotes": [{"ticker": "AAPL", "price": "1.0"}], "unknown": ["MSFT"]}, "as_of"),
        ({"quotes": [quote_json("AAPL") | {"as_of": "noon"}], "unknown": ["MSFT"]}, "as_of"),
        ({"quotes": [quote_json(""), quote_json("AAPL")], "unknown": ["MSFT"]}, "ticker"),
        ({"quotes": [quote_json("AAPL")], "unknown": [None, "MSFT"]}, "strings"),
        ({"quotes": [quote_json("AAPL")], "unknown": ["MSFT", "TSLA"]}, "not asked for: TSLA"),
        ({"quotes": [quote_json("AAPL"), quote_json("GOOG")], "unknown": ["MSFT"]}, "GOOG"),
        ({"quotes": [quote_json("AAPL")], "unknown": ["MSFT", "AAPL"]}, "more than once"),
        ({"quotes": [quote_json("AAPL"), quote_json("AAPL")], "unknown": []}, "more than once"),
        ({"quotes": [quote_json("AAPL")], "unknown": []}, "did not answer for MSFT"),
        ({"quotes": [], "unknown": []}, "did not answer for AAPL, MSFT"),
    ],
)
def test_quotes_malformed_answer(client, mocked, body: Any, message: str) -> None:
    mocked.get(quotes_url("AAPL,MSFT"), json=body)
    with pytest.raises(ExchangeError, match=message):
        client.quotes(["AAPL", "MSFT"])


# --- submit ---------------------------------------------------------------------------------


def test_submit_sends_body_and_parses_202(client, mocked) -> None:
    mocked.post(
        f"{BASE}/orders",
        status=202,
        json={"client_order_id": "trade-1", "exchange_order_id": "X-1", "status": "open"},
        match=[
            responses.matchers.json_params_matcher(
                {
                    "client_order_id": "trade-1",
                    "account_id": "acct-1",
                    "sequence": 3,
                    "ticker": "AAPL",
                    "side": "buy",
                    "quantity": 5,
                    "max_price": "190.1234",  # rounded down: never above the caller's limit
                    "callback_url": "http://web.test/callbacks/exchange",
                }
            )
        ],
    )
    result = client.submit_order(order())
    assert (result.client_order_id, result.exchange_order_id) == ("trade-1", "X-1")


def test_sell_min_price_rounds_up() -> None:
    body = order(side="sell", max_price=None, min_price=Decimal("10.00001")).to_json()
    assert body["min_price"] == "10.0001" and "max_price" not in body


def test_submit_retries_on_503_then_succeeds(client, mocked) -> None:
    mocked.post(f"{BASE}/orders", status=503, json={"error": "unavailable"})
    mocked.post(f"{BASE}/orders", status=502, body="bad gateway")
    mocked.post(f"{BASE}/orders", status=200, json=order_json())
    result = client.submit_order(order())
    assert len(mocked.calls) == 3
    assert result.exchange_order_id == "X-1"


def test_submit_timeout_raises_unavailable(client, mocked) -> None:
    mocked.post(f"{BASE}/orders", body=requests.ReadTimeout("slow"))
    with pytest.raises(ExchangeUnavailable):
        client.submit_order(order())
    assert len(mocked.calls) == 3


def test_submit_persistent_503_raises_unavailable(mocked) -> None:
    mocked.post(f"{BASE}/orders", status=503, json={"error": "unavailable"})
    with ExchangeClient(base_url=BASE, retries=0) as single:
        with pytest.raises(ExchangeUnavailable, match="HTTP 503"):
            single.submit_order(order())
    assert len(mocked.calls) == 1


def test_submit_conflict(client, mocked) -> None:
    mocked.post(f"{BASE}/orders", status=409, json={"error": "client_order_id_conflict"})
    with pytest.raises(ExchangeConflict):
        client.submit_order(order())
    assert len(mocked.calls) == 1


def test_submit_bad_request(client, mocked) -> None:
    mocked.post(
        f"{BASE}/orders", status=400, json={"error": "unknown_ticker", "detail": "not listed"}
    )
    with pytest.raises(ExchangeRejectedRequest) as info:
        client.submit_order(order())
    assert (info.value.error, info.value.detail) == ("unknown_ticker", "not listed")
    assert isinstance(info.value, ExchangeError)


def test_submit_answer_for_another_order_is_an_error(client, mocked) -> None:
    mocked.post(f"{BASE}/orders", status=200, json=order_json(client_order_id="trade-2"))
    with pytest.raises(ExchangeError, match="trade-2"):
        client.submit_order(order())


@pytest.mark.parametrize(
    "overrides",
    [
        {"side": "hold"},
        {"quantity": 0},
        {"quantity": True},
        {"sequence": -1},
        {"max_price": None},
        {"max_price": Decimal("-1")},
        {"max_price": 10.5},
        {"client_order_id": ""},
    ],
)
def test_order_request_validates(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        order(**overrides)


# --- get_order ------------------------------------------------------------------------------


def test_get_order(client, mocked) -> None:
    mocked.get(f"{BASE}/orders/trade%2F1", json=order_json(client_order_id="trade/1"))
    state = client.get_order("trade/1")
    assert state == OrderState(
        client_order_id="trade/1",
        exchange_order_id="X-1",
        status="filled",
        ticker="AAPL",
        side="buy",
        quantity=5,
        fill_price=Decimal("187.1234"),
        executed_at=datetime(2024, 5, 1, 14, 30, 0, 123456, tzinfo=UTC),
        reason=None,
    )
    assert state.status in ("filled", "rejected")


def test_get_order_open(client, mocked) -> None:
    mocked.get(
        f"{BASE}/orders/trade-1", json=order_json(status="open", fill_price=None, executed_at=None)
    )
    state = client.get_order("trade-1")
    assert state is not None and state.status == "open"


def test_get_order_unknown_is_none(client, mocked) -> None:
    mocked.get(f"{BASE}/orders/trade-9", status=404, json={"status": "unknown"})
    assert client.get_order("trade-9") is None


def test_get_order_retries_on_504(client, mocked) -> None:
    mocked.get(f"{BASE}/orders/trade-1", status=504)
    mocked.get(f"{BASE}/orders/trade-1", json=order_json())
    assert client.get_order("trade-1") is not None


def test_get_order_answering_for_another_order_is_an_error(client, mocked) -> None:
    """Settling from it would settle the other trade, not the one we asked about."""
    mocked.get(f"{BASE}/orders/trade-1", json=order_json(client_order_id="trade-2"))
    with pytest.raises(ExchangeError, match="answered for trade-2"):
        client.get_order("trade-1")


def test_get_order_non_json_is_an_error(client, mocked) -> None:
    mocked.get(f"{BASE}/orders/trade-1", body="<html>")
    with pytest.raises(ExchangeError):
        client.get_order("trade-1")


# --- parse_callback_payload -----------------------------------------------------------------


def test_parse_callback_payload_filled() -> None:
    state = parse_callback_payload(order_json())
    assert state.fill_price == Decimal("187.1234")
    assert state.executed_at is not None and state.executed_at.tzinfo is not None


def test_parse_callback_payload_rejected() -> None:
    state = parse_callback_payload(
        order_json(status="rejected", fill_price=None, executed_at=None, reason="price protection")
    )
    assert (state.status, state.reason, state.fill_price) == ("rejected", "price protection", None)


def test_parse_callback_payload_normalizes_to_utc() -> None:
    state = parse_callback_payload(order_json(executed_at="2024-05-01T16:30:00+02:00"))
    assert state.executed_at == datetime(2024, 5, 1, 14, 30, tzinfo=UTC)
    assert state.executed_at is not None and state.executed_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("not a dict", "JSON object"),
        ({k: v for k, v in order_json().items() if k != "exchange_order_id"}, "exchange_order_id"),
        (order_json(status="cancelled"), "status"),
        (order_json(side="short"), "side"),
        (order_json(quantity="5"), "quantity"),
        (order_json(quantity=0), "quantity"),
        (order_json(fill_price=187.12), "fill_price"),
        (order_json(fill_price="abc"), "fill_price"),
        (order_json(fill_price="0"), "fill_price"),
        (order_json(fill_price=None), "fill_price"),
        (order_json(executed_at="2024-05-01T14:30:00"), "timezone"),
        (order_json(executed_at="yesterday"), "executed_at"),
        (order_json(status="rejected", reason=None, fill_price=None, executed_at=None), "reason"),
        (order_json(status="rejected", reason="price protection"), "null fill_price"),
        ({k: v for k, v in order_json().items() if k != "reason"}, "reason"),
    ],
)
def test_parse_callback_payload_rejects_malformed(data: Any, message: str) -> None:
    with pytest.raises(ValueError, match="malformed exchange callback") as info:
        parse_callback_payload(data)
    assert message in str(info.value)


# --- against the real simulator -------------------------------------------------------------


def test_client_against_simulator() -> None:
    from exchange_simulator.config import SimulatorConfig
    from exchange_simulator.faults import FaultConfig
    from exchange_simulator.server import ExchangeSimulator

    secret = "whsec_" + base64.b64encode(b"client-simulator-secret-0123456").decode()
    config = SimulatorConfig(
        webhook_secret=secret, port=0, seed=3, faults=FaultConfig(fill_delay_ms=(1, 2))
    )
    with ExchangeSimulator(config) as simulator, ExchangeClient(base_url=simulator.url) as c:
        batch = c.quotes(["MSFT", "msft", "AAPL"])
        assert batch["msft"] is None
        quote = batch["MSFT"]
        assert quote is not None and batch["AAPL"] is not None
        assert Decimal(5) <= quote.price < Decimal(500)
        assert Decimal(5) <= batch["AAPL"].price < Decimal(500)
        request = order(
            ticker="MSFT", max_price=quote.price * 2, callback_url="http://127.0.0.1:9/cb"
        )
        first = c.submit_order(request)
        assert c.submit_order(request) == first  # the same order, not a second one
        with pytest.raises(ExchangeConflict):
            c.submit_order(order(ticker="MSFT", quantity=6, max_price=quote.price * 2))
        with pytest.raises(ExchangeRejectedRequest):
            c.submit_order(order(ticker="NOPE$"))
        assert c.get_order("never-submitted") is None
        simulator.exchange.update_faults({"outage": True})
        with pytest.raises(ExchangeUnavailable):
            c.submit_order(order(client_order_id="trade-2", sequence=4))
        deadline = time.monotonic() + 5
        state = c.get_order("trade-1")
        while state is not None and state.status == "open" and time.monotonic() < deadline:
            time.sleep(0.01)
            state = c.get_order("trade-1")
        assert state is not None and state.status == "filled"
        assert state.exchange_order_id == first.exchange_order_id
        assert state.fill_price is not None and state.fill_price <= quote.price * 2


@pytest.mark.parametrize(
    "error",
    [
        requests.exceptions.ContentDecodingError("bad gzip"),
        requests.exceptions.TooManyRedirects("loop"),
        requests.exceptions.InvalidHeader("bad header"),
    ],
)
def test_any_other_requests_error_is_an_exchange_error(client, mocked, error) -> None:
    mocked.get(f"{BASE}/quotes", body=error)
    with pytest.raises(ExchangeError) as raised:
        client.quotes(["AAPL"])
    assert not isinstance(raised.value, ExchangeUnavailable)
