from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from balances.models import Account, LedgerEntry
from balances.money import CASH_DIGITS, PRICE_DIGITS
from balances.selectors import (
    ACTIVITY_TYPE_OF,
    ACTIVITY_TYPES,
    account_summary,
    activities_for_customer,
)
from balances.services import NoAccount
from brokerage.api import (
    ErrorSerializer,
    NewestEntryFirstCursorPagination,
    PageParameters,
    customer_id_of,
    error_responses,
)


class PositionSerializer(serializers.Serializer):
    ticker = serializers.CharField()
    quantity = serializers.IntegerField()
    held = serializers.IntegerField()
    cost_basis = serializers.DecimalField(
        **CASH_DIGITS,
        help_text="What the shares cost: each buy adds the cash it paid; selling q of Q "
        "shares takes q/Q of it, to the cent. Shares transferred in come at no cost.",
    )
    # No max_digits: rounded-up costs can average a hair above the largest price.
    avg_entry_price = serializers.DecimalField(
        max_digits=None,
        decimal_places=PRICE_DIGITS["decimal_places"],
        allow_null=True,
        help_text="cost_basis / quantity, to the price tick.",
    )


class AccountApi(APIView):
    class AccountSerializer(serializers.Serializer):
        cash = serializers.DecimalField(**CASH_DIGITS)
        held = serializers.DecimalField(**CASH_DIGITS)
        available = serializers.DecimalField(**CASH_DIGITS)
        positions = PositionSerializer(many=True)
        status = serializers.ChoiceField(
            choices=Account.Status.choices,
            help_text="active; trading_blocked (no orders); closing_only (sells only); closed.",
        )
        status_reason = serializers.CharField(help_text="Why, when not active (else empty).")

    @extend_schema(
        operation_id="account_retrieve",
        responses={
            200: AccountSerializer,
            401: OpenApiResponse(ErrorSerializer),
            403: OpenApiResponse(ErrorSerializer),
        },
    )
    def get(self, request: Request) -> Response:
        summary = account_summary(customer_id=customer_id_of(request))
        if summary is None:
            raise NoAccount()
        return Response(self.AccountSerializer(summary).data)


class ActivitySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.ChoiceField(choices=list(ACTIVITY_TYPES))
    kind = serializers.ChoiceField(choices=LedgerEntry.Kind.choices, help_text="The entry's kind.")
    trade_id = serializers.IntegerField(allow_null=True)
    ticker = serializers.CharField(allow_null=True, help_text="Shares of this ticker, or null.")
    cash_amount = serializers.DecimalField(**CASH_DIGITS, allow_null=True)
    share_quantity = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


class ActivityPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ActivitySerializer(many=True)


_ONE_TYPE = "|".join(ACTIVITY_TYPES)


@extend_schema_field({"type": "string", "pattern": rf"^({_ONE_TYPE})(,({_ONE_TYPE}))*$"})
class ActivityTypesField(serializers.Field):
    """`fill,deposit`: one or more activity types, as a list; an unknown one is named in
    the error."""

    def to_internal_value(self, data: Any) -> list[str]:
        types = str(data).split(",")
        unknown = [t for t in types if t not in ACTIVITY_TYPES]
        if unknown or not isinstance(data, str):
            raise serializers.ValidationError(
                f"Unknown type {', '.join(map(repr, unknown)) or repr(data)}; "
                f"use {', '.join(ACTIVITY_TYPES)}."
            )
        return types

    def to_representation(self, value: Any) -> str:
        return ",".join(value)


class ActivitiesApi(APIView):
    class FilterSerializer(PageParameters):
        type = ActivityTypesField(
            required=False, help_text=f"Comma-separated: {', '.join(ACTIVITY_TYPES)}."
        )
        after = serializers.DateTimeField(required=False, help_text="Later than this.")
        until = serializers.DateTimeField(required=False, help_text="At or before this.")

    @extend_schema(
        operation_id="account_activities",
        parameters=[FilterSerializer],
        responses={200: ActivityPageSerializer, **error_responses(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        """Every movement of the account's cash and shares, newest first: fills, deposits,
        withdrawals, share transfers and corrections."""
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        customer_id = customer_id_of(request)
        if account_summary(customer_id=customer_id) is None:
            raise NoAccount()
        entries = activities_for_customer(
            customer_id=customer_id,
            types=filters.validated_data.get("type"),
            after=filters.validated_data.get("after"),
            until=filters.validated_data.get("until"),
        )
        paginator = NewestEntryFirstCursorPagination()
        page = paginator.paginate_queryset(entries, request, view=self)
        for entry in page or []:
            entry.type = ACTIVITY_TYPE_OF[entry.kind]  # type: ignore[attr-defined]
        return paginator.get_paginated_response(ActivitySerializer(page, many=True).data)
