"""The exchange's callback: a signed report that an order filled or was rejected."""

from __future__ import annotations

import logging

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from brokerage.api import error_responses
from brokerage.errors import BrokerageError, Conflict, NotFound
from brokerage.metrics import CALLBACKS
from execution.exchange_client import parse_callback_payload
from execution.settlement import ReportMismatch, SettleOutcome, trade_settle
from execution.webhooks import verify_exchange_callback
from trades.timeline import trade_error_record

logger = logging.getLogger(__name__)


class ExchangeCallbackApi(APIView):
    """The exchange reports an order filled or rejected. Signed; no customer token."""

    authentication_classes: list = []
    permission_classes: list = []
    # A machine's endpoint: JSON only, and the signed body is read as it came.
    renderer_classes = [JSONRenderer]
    parser_classes: list = []

    class CallbackResultSerializer(serializers.Serializer):
        result = serializers.ChoiceField(choices=[o.value for o in SettleOutcome])

    @extend_schema(
        operation_id="exchange_callback",
        request={"application/json": dict},
        responses={200: CallbackResultSerializer, **error_responses(400, 401, 404, 409)},
        tags=["exchange"],
    )
    def post(self, request: Request) -> Response:
        try:
            outcome = self._settle(request)
        except BrokerageError as exc:
            CALLBACKS.labels(result=exc.code).inc()
            raise
        except Exception:
            CALLBACKS.labels(result="error").inc()
            raise
        CALLBACKS.labels(result=outcome.value).inc()
        return Response({"result": outcome.value})

    def _settle(self, request: Request) -> SettleOutcome:
        payload = verify_exchange_callback(request.body, request.headers)
        try:
            report = parse_callback_payload(
                payload.get("data") if isinstance(payload, dict) else None
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise BrokerageError("malformed_callback", str(exc)) from None
        try:
            outcome = trade_settle(report=report)
        except ReportMismatch as exc:
            logger.error("event=callback_mismatch %s", exc)
            if report.client_order_id.isdigit():
                trade_error_record(
                    trade_id=int(report.client_order_id), detail=f"report mismatch: {exc}"
                )
            raise Conflict("report_mismatch", str(exc)) from None
        if outcome is SettleOutcome.UNKNOWN_TRADE:
            logger.error("event=callback_unknown_trade order=%s", report.client_order_id)
            raise NotFound("unknown_trade", f"No trade {report.client_order_id!r}.")
        return outcome
