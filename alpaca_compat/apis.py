"""Alpaca's Trading API v2 under /v2/, served by the same services as /api/v1/: one
trading path, in Alpaca's shapes (alpaca_compat.shapes) and status codes. What we refuse,
and why, is in docs/alpaca.md."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from rest_framework import exceptions, serializers, status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from alpaca_compat import activities, clock, shapes
from api_keys.models import PREFIX_LENGTH
from balances.models import Account, Position
from balances.services import NoAccount
from brokerage.api import customer_id_of
from brokerage.auth import ThrottledTokenAuthentication
from brokerage.errors import BrokerageError, Conflict, api_exception_handler
from trades.apis import TradeListCreateApi
from trades.models import Ticker, Trade
from trades.selectors import trade_get_for_customer, trade_list_for_customer
from trades.services import trade_cancel, trade_cancel_all, trade_place

MAX_LIMIT = 500


class AlpacaKeyAuthentication(ThrottledTokenAuthentication):
    """Alpaca's headers: APCA-API-KEY-ID is the first 12 characters of the customer's API
    key, APCA-API-SECRET-KEY the whole key. Failures count as on /api/v1/."""

    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, str] | None:
        key_id = request.META.get("HTTP_APCA_API_KEY_ID")
        secret = request.META.get("HTTP_APCA_API_SECRET_KEY")
        if key_id is None and secret is None:
            return None
        try:
            if not key_id or not secret or key_id != secret[:PREFIX_LENGTH]:
                raise exceptions.AuthenticationFailed("Invalid key id or secret.")
            return self.authenticate_credentials(secret)
        except exceptions.AuthenticationFailed:
            self._count_failure(request)
            raise

    def authenticate_header(self, request: Request) -> str:
        return "APCA-API-KEY-ID"


class Unprocessable(BrokerageError):
    def __init__(self, message: str) -> None:
        super().__init__("unprocessable", message, status_code=422)


def alpaca_exception_handler(exc: Exception, context: dict) -> Response | None:
    """Our error, in Alpaca's shape: `{"code": 40010000 + …, "message": …}` (our own code
    kept as `error`). A client order id used for other terms, and a parameter out of
    range, are Alpaca's 422."""
    if isinstance(exc, Conflict) and exc.code == "client_order_id_reused":
        exc = Unprocessable(exc.detail)
    response = api_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.status_code = 422
    body = response.data if isinstance(response.data, dict) else {}
    message = body.get("detail", "")
    if "fields" in body:
        message = "; ".join(f"{k}: {' '.join(v)}" for k, v in body["fields"].items())
    response.data = {
        "code": response.status_code * 100000,
        "message": message,
        "error": body.get("error"),
    }
    return response


class AlpacaApi(APIView):
    authentication_classes = [AlpacaKeyAuthentication]
    renderer_classes = [JSONRenderer]

    def get_exception_handler(self) -> Any:
        return alpaca_exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        given = [*map(str, kwargs.values()), *request.query_params.keys()]
        given += [value for _, values in request.query_params.lists() for value in values]
        if any("\x00" in text for text in given):
            raise Unprocessable("the path or a query parameter holds a NUL character")


def _account_of(request: Request) -> Account:
    account = Account.objects.filter(customer_id=customer_id_of(request)).first()
    if account is None:
        raise NoAccount()
    return account


class AccountApi(AlpacaApi):
    def get(self, request: Request) -> Response:
        account = _account_of(request)
        return Response(
            shapes.account(
                customer_id=account.customer_id,
                cash=account.cash,
                available=account.available_cash,
                status=account.status,
                created=account.created_at,
            )
        )


_NOT_SUPPORTED = {
    "notional": "notional orders are not supported: give qty in whole shares",
    "limit_price": "only market orders are supported",
    "stop_price": "only market orders are supported",
    "trail_price": "only market orders are supported",
    "trail_percent": "only market orders are supported",
    "take_profit": "bracket orders are not supported",
    "stop_loss": "bracket orders are not supported",
    "legs": "multi-leg orders are not supported",
}


def _whole_shares(qty: object) -> int:
    if isinstance(qty, bool) or not isinstance(qty, str | int | float):
        raise Unprocessable("qty is required: a whole number of shares")
    try:
        amount = Decimal(str(qty))
    except InvalidOperation:
        raise Unprocessable(f"qty {qty!r} is not a number") from None
    if not amount.is_finite() or amount <= 0:
        raise Unprocessable("qty must be positive")
    if amount != amount.to_integral_value():
        raise Unprocessable("fractional orders are not supported: qty must be whole shares")
    return int(amount)


def _order_terms(body: object) -> dict[str, Any]:
    """Our placement's input from Alpaca's order body; what we do not do is refused."""
    if not isinstance(body, dict):
        raise Unprocessable("the body must be a JSON object")
    for name, why in _NOT_SUPPORTED.items():
        if body.get(name) not in (None, ""):
            raise Unprocessable(why)
    if body.get("type", body.get("order_type")) != "market":
        raise Unprocessable("only market orders are supported (type: market)")
    if body.get("time_in_force") != "day":
        raise Unprocessable("only time_in_force day is supported")
    if body.get("order_class") not in (None, "", "simple"):
        raise Unprocessable("only simple orders are supported")
    if body.get("extended_hours") not in (None, False):
        raise Unprocessable("extended hours are not supported")
    terms = {
        "ticker": body.get("symbol"),
        "side": body.get("side"),
        "quantity": _whole_shares(body.get("qty")),
    }
    if body.get("client_order_id") not in (None, ""):
        terms["client_order_id"] = body["client_order_id"]
    return terms


class OrdersApi(AlpacaApi):
    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=["open", "closed", "all"], default="open")
        limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, default=50)
        after = serializers.DateTimeField(required=False)
        until = serializers.DateTimeField(required=False)
        direction = serializers.ChoiceField(choices=["asc", "desc"], default="desc")
        symbols = serializers.CharField(required=False)
        side = serializers.ChoiceField(choices=["buy", "sell"], required=False)
        nested = serializers.BooleanField(required=False)

    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        wanted = filters.validated_data
        trades = trade_list_for_customer(
            customer_id=customer_id_of(request),
            status=None if wanted["status"] == "all" else wanted["status"],
            side=wanted.get("side"),
            created_after=wanted.get("after"),
            created_before=wanted.get("until"),
        )
        if wanted.get("symbols"):
            symbols = [s.strip().upper() for s in wanted["symbols"].split(",") if s.strip()]
            trades = trades.filter(ticker_id__in=symbols)
        order = "seq" if wanted["direction"] == "asc" else "-seq"
        page = trades.order_by(order)[: wanted["limit"]]
        return Response([shapes.order(trade) for trade in page])

    def post(self, request: Request) -> Response:
        terms = _order_terms(request.data)
        checked = TradeListCreateApi.InputSerializer(data=terms)
        if not checked.is_valid():
            raise Unprocessable(
                "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in checked.errors.items())
            )
        result = trade_place(customer_id=customer_id_of(request), **checked.validated_data)
        return Response(shapes.order(result.trade))

    def delete(self, request: Request) -> Response:
        outcomes = trade_cancel_all(customer_id=customer_id_of(request))
        return Response(
            [
                {
                    "id": shapes.order_id(trade.id),
                    "status": 200 if cancelled else 422,
                    "body": shapes.order(trade) if cancelled else None,
                }
                for trade, cancelled in outcomes
            ],
            status=status.HTTP_207_MULTI_STATUS,
        )


def _own_trade(request: Request, order_id: str) -> Trade:
    trade_id = shapes.trade_id_of(order_id)
    trade = None
    if trade_id is not None:
        trade = trade_get_for_customer(customer_id=customer_id_of(request), trade_id=trade_id)
    if trade is None:
        raise exceptions.NotFound("order not found")
    return trade


class OrderApi(AlpacaApi):
    def get(self, request: Request, order_id: str) -> Response:
        return Response(shapes.order(_own_trade(request, order_id)))

    def delete(self, request: Request, order_id: str) -> Response:
        trade = _own_trade(request, order_id)
        try:
            trade_cancel(customer_id=trade.customer_id, trade_id=trade.id)
        except Conflict:
            raise Unprocessable(
                f"order is not cancelable: it is {shapes.ORDER_STATUS[Trade.Status(trade.status)]}"
                " (one sent to the exchange fills or is rejected)"
            ) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class OrderByClientIdApi(AlpacaApi):
    def get(self, request: Request) -> Response:
        key = request.query_params.get("client_order_id", "")
        customer_id = customer_id_of(request)
        trade = trade_list_for_customer(customer_id=customer_id, client_order_id=key).first()
        trade_id = shapes.trade_id_of(key)
        if key and trade is None and trade_id is not None:
            # An order placed without a key shows its id as its client_order_id.
            trade = trade_get_for_customer(customer_id=customer_id, trade_id=trade_id)
            if trade is not None and trade.client_order_id is not None:
                trade = None
        if not key or trade is None:
            raise exceptions.NotFound("order not found")
        return Response(shapes.order(trade))


def _positions(request: Request) -> list[Position]:
    return list(
        Position.objects.filter(
            customer_id=_account_of(request).customer_id, quantity__gt=0
        ).order_by("ticker")
    )


class PositionsApi(AlpacaApi):
    def get(self, request: Request) -> Response:
        return Response([shapes.position(p) for p in _positions(request)])


class PositionApi(AlpacaApi):
    def get(self, request: Request, symbol: str) -> Response:
        wanted = symbol.upper()
        for held in _positions(request):
            if wanted in (held.ticker, shapes.asset_id(held.ticker)):
                return Response(shapes.position(held))
        raise exceptions.NotFound("position does not exist")


class AssetsApi(AlpacaApi):
    def get(self, request: Request) -> Response:
        wanted = request.query_params.get("status")
        tickers = Ticker.objects.order_by("symbol")
        if wanted in ("active", "inactive"):
            tickers = tickers.filter(active=wanted == "active")
        return Response([shapes.asset(t) for t in tickers])


class AssetApi(AlpacaApi):
    def get(self, request: Request, symbol: str) -> Response:
        ticker = Ticker.objects.filter(symbol=symbol.upper()).first()
        if ticker is None:
            ticker = next(
                (t for t in Ticker.objects.all() if shapes.asset_id(t.symbol) == symbol), None
            )
        if ticker is None:
            raise exceptions.NotFound(f"asset not found for {symbol}")
        return Response(shapes.asset(ticker))


MAX_PAGE_SIZE = 100


class DateOrTimeField(serializers.DateTimeField):
    """Alpaca takes a day (`2026-12-03`, its midnight UTC) or a time."""

    def to_internal_value(self, value: Any) -> datetime:
        try:
            day = date.fromisoformat(str(value))
        except ValueError:
            return super().to_internal_value(value)
        return datetime.combine(day, time(), UTC)


class ActivitiesApi(AlpacaApi):
    class FilterSerializer(serializers.Serializer):
        activity_types = serializers.CharField(required=False)
        category = serializers.ChoiceField(
            choices=["trade_activity", "non_trade_activity"], required=False
        )
        date = DateOrTimeField(required=False)
        after = DateOrTimeField(required=False)
        until = DateOrTimeField(required=False)
        direction = serializers.ChoiceField(choices=["asc", "desc"], default="desc")
        page_size = serializers.IntegerField(min_value=1, required=False)
        page_token = serializers.CharField(required=False)

        def validate_page_token(self, token: str) -> int:
            """The entry id in the last activity's id."""
            entry_id = shapes.entry_id_of(token)
            if entry_id is None:
                raise serializers.ValidationError(f"invalid page_token: {token}")
            return entry_id

        def validate(self, data: dict[str, Any]) -> dict[str, Any]:
            if "date" in data and ("after" in data or "until" in data):
                raise serializers.ValidationError("date cannot be given with after or until")
            if "date" not in data:
                data.setdefault("page_size", MAX_PAGE_SIZE)
                if data["page_size"] > MAX_PAGE_SIZE:
                    raise serializers.ValidationError(f"page_size must be at most {MAX_PAGE_SIZE}")
            return data

    def get(self, request: Request, activity_type: str | None = None) -> Response:
        """The account's ledger as Alpaca's activities, newest first unless `direction=asc`;
        `page_token` is the last activity's id. As at Alpaca, one `date` answers the whole
        day unless `page_size` says otherwise; else a page is at most 100."""
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        wanted = filters.validated_data
        if activity_type is not None and ("category" in wanted or "activity_types" in wanted):
            raise Unprocessable("category and activity_types cannot be given with a type")
        types = set(activities.ENTRIES_OF_TYPE)
        if activity_type is not None or "activity_types" in wanted:
            try:
                types = activities.activity_types_named(activity_type or wanted["activity_types"])
            except activities.UnknownActivityType as unknown:
                raise Unprocessable(f"invalid activity type: {unknown}") from None
        if wanted.get("category") == "trade_activity":
            types &= {"FILL"}
        elif wanted.get("category") == "non_trade_activity":
            types -= {"FILL"}
        return Response(
            activities.activities_page(
                customer_id=_account_of(request).customer_id,
                types=types,
                day=wanted["date"].astimezone(UTC).date() if "date" in wanted else None,
                after=wanted.get("after"),
                until=wanted.get("until"),
                ascending=wanted["direction"] == "asc",
                after_entry=wanted.get("page_token"),
                limit=wanted.get("page_size"),
            )
        )


class ClockApi(AlpacaApi):
    def get(self, request: Request) -> Response:
        """The exchange's hours (settings.EXCHANGE_MARKET_HOURS), or always open."""
        return Response(clock.clock(datetime.now(UTC), clock.market_hours()))
