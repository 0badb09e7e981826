from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from balances.models import Account
from balances.money import CASH_DIGITS
from balances.selectors import account_summary
from balances.services import NoAccount
from brokerage.api import ErrorSerializer, customer_id_of


class PositionSerializer(serializers.Serializer):
    ticker = serializers.CharField()
    quantity = serializers.IntegerField()
    held = serializers.IntegerField()


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
