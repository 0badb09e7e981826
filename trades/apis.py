from __future__ import annotations

import logging

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from balances.money import PRICE_DIGITS
from brokerage.api import (
    BySymbolCursorPagination,
    FlatSerializer,
    NewestFirstCursorPagination,
    PageParameters,
    StrictInputSerializer,
    StrictIntegerField,
    StrictRegexField,
    customer_id_of,
    error_responses,
)
from brokerage.errors import Conflict, NotFound
from trades.models import Ticker, Trade
from trades.selectors import (
    STATUS_GROUPS,
    ticker_is_tradable,
    ticker_list,
    trade_get_for_customer,
    trade_list_for_customer,
)
from trades.services import (
    TRADE_NOT_FOUND,
    trade_cancel,
    trade_cancel_all,
    trade_place,
    trade_replayed_as_placed,
)

logger = logging.getLogger(__name__)

UNKNOWN_TICKER = "Unknown ticker {symbol!r}."
CLIENT_ORDER_ID_FORMAT = "Use 1 to 64 printable ASCII characters without spaces."


class TradeOutputSerializer(FlatSerializer):
    id = serializers.IntegerField()
    ticker = serializers.CharField(source="ticker_id")
    side = serializers.ChoiceField(choices=Trade.Side.choices)
    quantity = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Trade.Status.choices)
    reason = serializers.CharField(allow_null=True)
    client_order_id = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    submitted_at = serializers.DateTimeField(allow_null=True)
    executed_at = serializers.DateTimeField(allow_null=True)
    fill_price = serializers.DecimalField(**PRICE_DIGITS, allow_null=True)
    finished_at = serializers.DateTimeField(
        allow_null=True, help_text="When it became filled, rejected or cancelled."
    )
    updated_at = serializers.DateTimeField(help_text="When its status last changed.")


class TradePageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = TradeOutputSerializer(many=True)


class TradeListCreateApi(APIView):
    class InputSerializer(StrictInputSerializer):
        ticker = serializers.CharField(max_length=10, help_text="Case-insensitive, e.g. AAPL.")
        side = serializers.ChoiceField(choices=Trade.Side.choices)
        quantity = StrictIntegerField(
            min_value=1,
            max_value=settings.MAX_ORDER_QUANTITY,
            help_text=f"Whole shares, 1 to {settings.MAX_ORDER_QUANTITY}.",
        )
        client_order_id = StrictRegexField(
            r"^[\x21-\x7e]{1,64}$",
            required=False,
            allow_null=True,
            error_messages={"invalid": CLIENT_ORDER_ID_FORMAT},
            help_text="Your idempotency key: retrying with it never places a second trade.",
        )

        def validate_ticker(self, value: str) -> str:
            symbol = value.strip().upper()
            # ASCII only: upper() maps some other letters onto ours ("ſpy" is not SPY).
            if not value.isascii() or not ticker_is_tradable(symbol):
                raise serializers.ValidationError(UNKNOWN_TICKER.format(symbol=symbol))
            return symbol

    class FilterSerializer(PageParameters):
        status = serializers.ChoiceField(
            choices=[*STATUS_GROUPS, *Trade.Status.values],
            required=False,
            help_text="A status, or open (placed, in_progress) or closed (the final ones).",
        )
        ticker = serializers.CharField(max_length=10, required=False)
        side = serializers.ChoiceField(choices=Trade.Side.choices, required=False)
        created_after = serializers.DateTimeField(required=False)
        created_before = serializers.DateTimeField(required=False)
        client_order_id = StrictRegexField(
            r"^[\x21-\x7e]{1,64}$",
            required=False,
            error_messages={"invalid": CLIENT_ORDER_ID_FORMAT},
            help_text="Look an order up by your key without placing it again.",
        )

        def validate_ticker(self, value: str) -> str:
            return value.strip().upper()

    @extend_schema(
        operation_id="trades_list",
        parameters=[FilterSerializer],
        responses={200: TradePageSerializer, **error_responses(400, 401)},
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        wanted = {
            name: value
            for name, value in filters.validated_data.items()
            if name not in ("cursor", "limit")
        }
        trades = trade_list_for_customer(customer_id=customer_id_of(request), **wanted)
        paginator = NewestFirstCursorPagination()
        page = paginator.paginate_queryset(trades, request, view=self)
        return paginator.get_paginated_response(TradeOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="trades_place",
        request=InputSerializer,
        responses={
            201: TradeOutputSerializer,
            200: OpenApiResponse(TradeOutputSerializer, "A replay of a known client_order_id."),
            **error_responses(400, 401, 403, 409, 413, 415, 429),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        if not serializer.is_valid():
            original = self._replay_of_an_order_placed_under_other_rules(request)
            if original is None:
                raise serializers.ValidationError(serializer.errors)
            return Response(TradeOutputSerializer(original).data, status=status.HTTP_200_OK)
        result = trade_place(customer_id=customer_id_of(request), **serializer.validated_data)
        return Response(
            TradeOutputSerializer(result.trade).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )

    def _replay_of_an_order_placed_under_other_rules(self, request: Request) -> Trade | None:
        """The trade placed earlier under the request's client_order_id, if the request
        repeats its terms: looked up only for a key that passes the field's own rules."""
        data = request.data
        fields = self.InputSerializer().fields
        if not isinstance(data, dict) or not set(data) <= set(fields):
            return None
        try:
            key = fields["client_order_id"].run_validation(data.get("client_order_id"))
        except serializers.ValidationError:
            return None
        return trade_replayed_as_placed(
            customer_id=customer_id_of(request),
            client_order_id=key,
            ticker=data.get("ticker"),
            side=data.get("side"),
            quantity=data.get("quantity"),
        )


class TradeDetailApi(APIView):
    @extend_schema(
        operation_id="trades_retrieve",
        responses={200: TradeOutputSerializer, **error_responses(401, 404)},
    )
    def get(self, request: Request, trade_id: int) -> Response:
        trade = trade_get_for_customer(customer_id=customer_id_of(request), trade_id=trade_id)
        if trade is None:
            raise NotFound("not_found", TRADE_NOT_FOUND)
        return Response(TradeOutputSerializer(trade).data)


class TradeCancelApi(APIView):
    @extend_schema(
        operation_id="trades_cancel",
        request=None,
        responses={200: TradeOutputSerializer, **error_responses(401, 403, 404, 409)},
    )
    def post(self, request: Request, trade_id: int) -> Response:
        customer_id = customer_id_of(request)
        try:
            trade = trade_cancel(customer_id=customer_id, trade_id=trade_id)
        except Conflict as refused:
            # The trade as it is now, so that the client need not ask again.
            current = trade_get_for_customer(customer_id=customer_id, trade_id=trade_id)
            raise Conflict(
                refused.code,
                refused.detail,
                extra={"trade": TradeOutputSerializer(current).data},
            ) from None
        return Response(TradeOutputSerializer(trade).data)


class CancelOutcomeSerializer(serializers.Serializer):
    trade = TradeOutputSerializer()
    outcome = serializers.ChoiceField(
        choices=["cancelled", "not_cancellable"],
        help_text="not_cancellable: already sent to the exchange; it fills or is rejected.",
    )


class CancelAllResultSerializer(serializers.Serializer):
    results = CancelOutcomeSerializer(many=True)


class TradeCancelAllApi(APIView):
    @extend_schema(
        operation_id="trades_cancel_all",
        request=None,
        responses={200: CancelAllResultSerializer, **error_responses(401, 403)},
    )
    def post(self, request: Request) -> Response:
        """Cancel every trade still placed; say, for each open trade, what became of it."""
        outcomes = trade_cancel_all(customer_id=customer_id_of(request))
        results = [
            {"trade": trade, "outcome": "cancelled" if cancelled else "not_cancellable"}
            for trade, cancelled in outcomes
        ]
        return Response(CancelAllResultSerializer({"results": results}).data)


class TickerOutputSerializer(FlatSerializer):
    symbol = serializers.CharField()
    name = serializers.CharField()
    tradable = serializers.BooleanField(source="active")


class TickerPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = TickerOutputSerializer(many=True)


class TickerListApi(APIView):
    class FilterSerializer(PageParameters):
        search = serializers.CharField(
            max_length=100, required=False, help_text="A symbol's start or a part of the name."
        )
        active = serializers.BooleanField(required=False, help_text="true: tradable only.")

    @extend_schema(
        operation_id="tickers_list",
        parameters=[FilterSerializer],
        responses={200: TickerPageSerializer, **error_responses(400, 401)},
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        tickers = ticker_list(
            search=filters.validated_data.get("search"),
            active=filters.validated_data.get("active"),
        )
        paginator = BySymbolCursorPagination()
        page = paginator.paginate_queryset(tickers, request, view=self)
        return paginator.get_paginated_response(TickerOutputSerializer(page, many=True).data)


class TickerDetailApi(APIView):
    @extend_schema(
        operation_id="tickers_retrieve",
        responses={200: TickerOutputSerializer, **error_responses(401, 404)},
    )
    def get(self, request: Request, symbol: str) -> Response:
        ticker = Ticker.objects.filter(symbol=symbol.upper()).first()
        if ticker is None:
            raise NotFound("not_found", UNKNOWN_TICKER.format(symbol=symbol.upper()))
        return Response(TickerOutputSerializer(ticker).data)
