"""HTTP client for the stock exchange, plus parsing of its order callbacks.

Deliberately free of Django: callers pass the base URL and timeouts in. Each request is
counted in brokerage.metrics (plain prometheus-client).

Error model for callers:

* :class:`ExchangeRejectedRequest` (400) and :class:`ExchangeConflict` (409) on
  :meth:`ExchangeClient.submit_order` mean the exchange definitely did not accept the order.
* :class:`ExchangeUnavailable` (connection error, timeout or 5xx after retries) and a bare
  :class:`ExchangeError` (unexpected answer) mean the outcome is unknown: the order may exist.
  Resubmitting the same ``client_order_id`` is safe, or ask :meth:`ExchangeClient.get_order`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, ROUND_UP, Decimal, InvalidOperation
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar
from urllib.parse import quote as urlquote

import requests

from brokerage.metrics import EXCHANGE_REQUEST_SECONDS, EXCHANGE_REQUESTS

__all__ = [
    "ExchangeClient",
    "ExchangeConflict",
    "ExchangeError",
    "ExchangeRejectedRequest",
    "ExchangeUnavailable",
    "OrderRequest",
    "OrderState",
    "Quote",
    "SubmitResult",
    "parse_callback_payload",
]

OrderStatus = Literal["open", "filled", "rejected"]
Side = Literal["buy", "sell"]

ORDER_STATUSES: tuple[str, ...] = ("open", "filled", "rejected")
SIDES: tuple[str, ...] = ("buy", "sell")
PRICE_QUANTUM = Decimal("0.0001")
MAX_TICKERS_PER_QUOTE = 500  # the exchange's limit for one GET /quotes

_RETRYABLE_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class ExchangeError(Exception):
    """Base class; on its own it means an unexpected answer from the exchange."""


class ExchangeUnavailable(ExchangeError):
    """The exchange could not be reached or kept failing (5xx) after all retries."""


class ExchangeConflict(ExchangeError):
    """409: the client_order_id is already used by a different order."""


class ExchangeRejectedRequest(ExchangeError):
    """400: the exchange refused the request as invalid; it recorded nothing."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}" if detail else error)
        self.error = error
        self.detail = detail


@dataclass(frozen=True)
class Quote:
    ticker: str
    price: Decimal
    as_of: datetime


@dataclass(frozen=True)
class OrderRequest:
    client_order_id: str
    account_id: str
    sequence: int
    ticker: str
    side: Side
    quantity: int
    max_price: Decimal | None
    min_price: Decimal | None
    callback_url: str

    def __post_init__(self) -> None:
        for name in ("client_order_id", "account_id", "ticker", "callback_url"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string")
        if self.side not in SIDES:
            raise ValueError(f"side must be 'buy' or 'sell', got {self.side!r}")
        if not _is_int(self.sequence) or self.sequence < 0:
            raise ValueError(f"sequence must be an integer >= 0, got {self.sequence!r}")
        if not _is_int(self.quantity) or self.quantity <= 0:
            raise ValueError(f"quantity must be a positive integer, got {self.quantity!r}")
        if self.side == "buy" and self.max_price is None:
            raise ValueError("max_price is required for a buy")
        for name in ("max_price", "min_price"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, Decimal) or not value.is_finite() or value <= 0
            ):
                raise ValueError(f"{name} must be a positive Decimal, got {value!r}")

    def to_json(self) -> dict[str, Any]:
        """The ``POST /orders`` body.

        Prices are cut to 4 places in the customer's favour: a buy limit rounds down and a
        sell limit rounds up, so the exchange never fills beyond what the caller allowed.
        """
        body: dict[str, Any] = {
            "client_order_id": self.client_order_id,
            "account_id": self.account_id,
            "sequence": self.sequence,
            "ticker": self.ticker,
            "side": self.side,
            "quantity": self.quantity,
            "callback_url": self.callback_url,
        }
        if self.max_price is not None:
            body["max_price"] = str(self.max_price.quantize(PRICE_QUANTUM, rounding=ROUND_DOWN))
        if self.min_price is not None:
            body["min_price"] = str(self.min_price.quantize(PRICE_QUANTUM, rounding=ROUND_UP))
        return body


@dataclass(frozen=True)
class OrderState:
    client_order_id: str
    exchange_order_id: str
    status: OrderStatus
    ticker: str
    side: Side
    quantity: int
    fill_price: Decimal | None
    executed_at: datetime | None
    reason: str | None


@dataclass(frozen=True)
class SubmitResult:
    """The exchange accepted the order (or already had it: a resubmission is the same order)."""

    client_order_id: str
    exchange_order_id: str


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field(data: dict[str, Any], name: str) -> Any:
    if name not in data:
        raise ValueError(f"missing field {name!r}")
    return data[name]


def _storable(value: str, name: str) -> str:
    """Text Postgres can store: no NUL, and valid Unicode (no lone surrogate)."""
    if "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value):
        raise ValueError(f"field {name!r} holds a NUL or an invalid character")
    return value


def _str_field(data: dict[str, Any], name: str) -> str:
    value = _field(data, name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"field {name!r} must be a non-empty string, got {value!r}")
    return _storable(value, name)


def _optional_str(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"field {name!r} must be a string or null, got {value!r}")
    return None if value is None else _storable(value, name)


def _price(value: Any, name: str) -> Decimal:
    if not isinstance(value, str):
        raise ValueError(f"field {name!r} must be a decimal string, got {value!r}")
    try:
        price = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"field {name!r} is not a decimal: {value!r}") from None
    if not price.is_finite() or price <= 0:
        raise ValueError(f"field {name!r} must be a positive price, got {value!r}")
    return price


def _optional_price(data: dict[str, Any], name: str) -> Decimal | None:
    value = data.get(name)
    return None if value is None else _price(value, name)


def _timestamp(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"field {name!r} must be an ISO 8601 string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"field {name!r} is not an ISO 8601 datetime: {value!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"field {name!r} has no timezone: {value!r}")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 is before the first UTC datetime
        raise ValueError(f"field {name!r} is out of range: {value!r}") from None


def _optional_timestamp(data: dict[str, Any], name: str) -> datetime | None:
    value = data.get(name)
    return None if value is None else _timestamp(value, name)


def _status(data: dict[str, Any], allowed: tuple[str, ...]) -> OrderStatus:
    value = _field(data, "status")
    if value not in allowed:
        raise ValueError(f"field 'status' must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _parse_quote(data: Any) -> Quote:
    if not isinstance(data, dict):
        raise ValueError(f"expected a quote object, got {data!r:.100}")
    return Quote(
        ticker=_str_field(data, "ticker"),
        price=_price(_field(data, "price"), "price"),
        as_of=_timestamp(_field(data, "as_of"), "as_of"),
    )


def _parse_quotes(data: dict[str, Any], asked: Collection[str]) -> dict[str, Quote | None]:
    quotes, unknown = _field(data, "quotes"), _field(data, "unknown")
    if not isinstance(quotes, list) or not isinstance(unknown, list):
        raise ValueError("fields 'quotes' and 'unknown' must be lists")
    answered: dict[str, Quote | None] = {}
    for quote in map(_parse_quote, quotes):
        answered[quote.ticker] = quote
    for ticker in unknown:
        if not isinstance(ticker, str):
            raise ValueError(f"field 'unknown' must hold strings, got {ticker!r}")
        answered[ticker] = None
    if len(answered) != len(quotes) + len(unknown):
        raise ValueError("a ticker is answered more than once")
    if extra := answered.keys() - set(asked):
        raise ValueError(f"answers for tickers not asked for: {', '.join(sorted(extra))}")
    return answered


def _parse_order_state(data: Any, allowed_statuses: tuple[str, ...]) -> OrderState:
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    status = _status(data, allowed_statuses)
    side = _field(data, "side")
    if side not in SIDES:
        raise ValueError(f"field 'side' must be 'buy' or 'sell', got {side!r}")
    quantity = _field(data, "quantity")
    if not _is_int(quantity) or quantity <= 0:
        raise ValueError(f"field 'quantity' must be a positive integer, got {quantity!r}")
    for name in ("fill_price", "executed_at", "reason"):
        _field(data, name)  # present, possibly null
    state = OrderState(
        client_order_id=_str_field(data, "client_order_id"),
        exchange_order_id=_str_field(data, "exchange_order_id"),
        status=status,
        ticker=_str_field(data, "ticker"),
        side=side,
        quantity=quantity,
        fill_price=_optional_price(data, "fill_price"),
        executed_at=_optional_timestamp(data, "executed_at"),
        reason=_optional_str(data, "reason"),
    )
    if status == "filled" and (state.fill_price is None or state.executed_at is None):
        raise ValueError("a filled order needs fill_price and executed_at")
    if status != "filled" and (state.fill_price is not None or state.executed_at is not None):
        raise ValueError(f"a {status} order must have null fill_price and executed_at")
    if status == "rejected" and not state.reason:
        raise ValueError("a rejected order needs a reason")
    return state


def parse_callback_payload(data: object) -> OrderState:
    """Validate the ``data`` object of an exchange callback (after signature verification).
    An order still open is a valid report (settlement leaves it alone).

    Raises ValueError naming the offending field when the shape is wrong.
    """
    try:
        return _parse_order_state(data, ORDER_STATUSES)
    except ValueError as exc:
        raise ValueError(f"malformed exchange callback: {exc}") from None


P = ParamSpec("P")
R = TypeVar("R")


def _outcome(exc: ExchangeError) -> str:
    if isinstance(exc, ExchangeRejectedRequest):
        return "refused"
    if isinstance(exc, ExchangeConflict):
        return "conflict"
    if isinstance(exc, ExchangeUnavailable):
        return "unavailable"
    return "unexpected"


def _measured(operation: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Count the request by its outcome and time it (brokerage_exchange_requests_total)."""

    def measure(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def measured(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            try:
                result = method(*args, **kwargs)
            except ExchangeError as exc:
                EXCHANGE_REQUESTS.labels(operation, _outcome(exc)).inc()
                raise
            else:
                EXCHANGE_REQUESTS.labels(operation, "ok").inc()
                return result
            finally:
                EXCHANGE_REQUEST_SECONDS.labels(operation).observe(time.perf_counter() - started)

        return measured

    return measure


class ExchangeClient:
    """Blocking client for one exchange, with keep-alive and bounded retries.

    Holds a ``requests.Session``, which is not thread-safe: use one client per thread and
    never share an instance across threads. Call :meth:`close` (or use ``with``) when done.
    """

    def __init__(
        self,
        *,
        base_url: str,
        connect_timeout: float = 1.0,
        read_timeout: float = 3.0,
        retries: int = 2,
        backoff: float = 0.05,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.retries = max(0, retries)
        self.backoff = backoff
        self._session = requests.Session()
        # Exchange reached directly: env proxy/netrc lookups per request were 10% of worker CPU.
        self._session.trust_env = False
        self._session.headers.update(
            {"Accept": "application/json", "User-Agent": "brokerage-exchange-client/1"}
        )

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> ExchangeClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @_measured("quotes")
    def quotes(self, tickers: Collection[str]) -> dict[str, Quote | None]:
        """Quote many tickers in one request: a Quote per listed ticker, None per unknown one.

        The answer has one entry per distinct ticker, in the order asked. Raises ValueError for
        no tickers, more than MAX_TICKERS_PER_QUOTE distinct ones, or an empty ticker; callers
        chunk.
        """
        if isinstance(tickers, str):
            raise TypeError("tickers must be a collection of tickers, not one string")
        asked = list(dict.fromkeys(tickers))
        if not 0 < len(asked) <= MAX_TICKERS_PER_QUOTE:
            raise ValueError(f"ask for 1 to {MAX_TICKERS_PER_QUOTE} tickers, got {len(asked)}")
        if not all(isinstance(t, str) and t for t in asked):
            raise ValueError("every ticker must be a non-empty string")
        query = ",".join(urlquote(t, safe="") for t in asked)
        response = self._request("GET", f"/quotes?tickers={query}")
        data = self._json(response, expected=(200,))
        try:
            answered = _parse_quotes(data, asked)
        except (ValueError, TypeError) as exc:
            raise ExchangeError(f"malformed quotes from exchange: {exc}") from None
        if missing := [t for t in asked if t not in answered]:
            raise ExchangeError(f"exchange did not answer for {', '.join(missing)}")
        return {t: answered[t] for t in asked}

    @_measured("submit_order")
    def submit_order(self, order: OrderRequest) -> SubmitResult:
        """Submit (or idempotently resubmit) an order; see the module docstring for errors."""
        response = self._request("POST", "/orders", json=order.to_json())
        if response.status_code == 409:
            raise ExchangeConflict(f"client_order_id {order.client_order_id} conflicts")
        if response.status_code == 400:
            body = self._json(response, expected=(400,))
            raise ExchangeRejectedRequest(str(body.get("error")), str(body.get("detail") or ""))
        data = self._json(response, expected=(200, 202))
        try:
            result = SubmitResult(
                client_order_id=_str_field(data, "client_order_id"),
                exchange_order_id=_str_field(data, "exchange_order_id"),
            )
        except (ValueError, TypeError) as exc:
            raise ExchangeError(f"malformed order answer from exchange: {exc}") from None
        if result.client_order_id != order.client_order_id:
            raise ExchangeError(
                f"exchange answered for {result.client_order_id}, not {order.client_order_id}"
            )
        return result

    @_measured("get_order")
    def get_order(self, client_order_id: str) -> OrderState | None:
        """The exchange's view of an order, or None if it has never heard of it."""
        response = self._request("GET", f"/orders/{urlquote(client_order_id, safe='')}")
        if response.status_code == 404:
            body = self._json(response, expected=(404,))
            if body.get("status") == "unknown":
                return None
            raise ExchangeError(f"unexpected 404 from exchange: {body}")
        data = self._json(response, expected=(200,))
        try:
            state = _parse_order_state(data, ORDER_STATUSES)
        except ValueError as exc:
            raise ExchangeError(f"malformed order from exchange: {exc}") from None
        if state.client_order_id != client_order_id:
            # Settling from it would settle whichever trade it names.
            raise ExchangeError(
                f"exchange answered for {state.client_order_id}, not {client_order_id}"
            )
        return state

    def _request(self, method: str, path: str, json: Any = None) -> requests.Response:
        """Send with retries on connection errors, timeouts and 5xx (all calls are idempotent)."""
        url = self.base_url + path
        attempts = self.retries + 1
        last_error: str = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._session.request(method, url, json=json, timeout=self.timeout)
            except _RETRYABLE_ERRORS as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                continue
            except requests.RequestException as exc:
                # Anything else requests raises (an undecodable body, a bad redirect...) is
                # an answer we cannot use: an ExchangeError like the others, never a crash.
                raise ExchangeError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
            if response.status_code >= 500:
                last_error = f"HTTP {response.status_code}"
                response.close()
                continue
            return response
        raise ExchangeUnavailable(f"{method} {path} failed after {attempts} attempts: {last_error}")

    @staticmethod
    def _json(response: requests.Response, *, expected: tuple[int, ...]) -> dict[str, Any]:
        if response.status_code not in expected:
            raise ExchangeError(
                f"unexpected HTTP {response.status_code} from exchange: {response.text[:200]}"
            )
        try:
            data = response.json()
        except ValueError:
            raise ExchangeError(
                f"non-JSON answer (HTTP {response.status_code}) from exchange"
            ) from None
        if not isinstance(data, dict):
            raise ExchangeError(f"expected a JSON object from exchange, got {data!r:.200}")
        return data
