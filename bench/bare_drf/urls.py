import itertools
import os
import random
from typing import Any

from django.db import transaction
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from brokerage.health import healthz
from outbox.models import OutboxMessage
from trades.models import Trade

FIRST_CUSTOMER = int(os.environ.get("BARE_DRF_FIRST_CUSTOMER", "1"))
LAST_CUSTOMER = int(os.environ.get("BARE_DRF_LAST_CUSTOMER", "1"))
# Far above any customer's own sequence numbers, and apart per gunicorn worker.
_SEQ_BASE = 10**12 + os.getpid() * 10**6
_next_seq = itertools.count(_SEQ_BASE)


class BareTradeInsertApi(APIView):
    def post(self, request: Request) -> Response:
        data: Any = request.data
        customer_id = random.randint(FIRST_CUSTOMER, LAST_CUSTOMER)
        with transaction.atomic():
            trade = Trade.objects.create(
                customer_id=customer_id,
                seq=next(_next_seq),
                ticker_id=data["ticker"],
                side=data["side"],
                quantity=data["quantity"],
                client_order_id=data.get("client_order_id"),
            )
            OutboxMessage.objects.create(shard=0, customer_id=customer_id)
        return Response({"id": trade.id}, status=201)


urlpatterns = [
    path("api/v1/trades/", BareTradeInsertApi.as_view()),
    path("healthz", healthz),
]
