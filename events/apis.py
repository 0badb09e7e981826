from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from balances.selectors import account_exists
from balances.services import NoAccount
from brokerage.api import (
    MAX_PAGE_SIZE,
    DigitsIntegerField,
    StrictInputSerializer,
    customer_id_of,
    error_responses,
)
from events.models import EVENT_TYPES
from events.selectors import events_after
from events.sql import MAX_SEQ

DEFAULT_LIMIT = 100


class EventSerializer(serializers.Serializer):
    seq = serializers.IntegerField(help_text="1, 2, 3, … per customer, with no gap.")
    type = serializers.ChoiceField(choices=list(EVENT_TYPES))
    created_at = serializers.DateTimeField()
    # A declared field named like Serializer.data: DRF's metaclass takes it out of the class.
    data = serializers.DictField(  # type: ignore[assignment]
        help_text="trade_*: the trade as it stood after the change (as GET "
        "/api/v1/trades/{id}/ shows a trade). activity: the ledger entry (as in "
        "/api/v1/account/activities/) with cash_after or quantity_after, the balance after it."
    )


class EventPageSerializer(serializers.Serializer):
    results = EventSerializer(many=True)
    last_seq = serializers.IntegerField(help_text="Pass it as `after` to read on.")
    next = serializers.URLField(allow_null=True, help_text="The next page, if one is ready.")


class EventListApi(APIView):
    class FilterSerializer(StrictInputSerializer):
        after = DigitsIntegerField(
            required=False,
            min_value=0,
            max_value=MAX_SEQ,
            help_text="The last seq you have seen (default 0: from the start).",
        )
        limit = DigitsIntegerField(
            required=False,
            min_value=1,
            max_value=MAX_PAGE_SIZE,
            help_text=f"Page size, 1 to {MAX_PAGE_SIZE} (default {DEFAULT_LIMIT}).",
        )

    @extend_schema(
        operation_id="events_list",
        parameters=[FilterSerializer],
        responses={200: EventPageSerializer, **error_responses(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        """The account's event log, oldest first: every trade's placement and each status
        it moved to, and every movement of cash or shares. Numbered per customer with no
        gap, so a client that keeps the last `seq` it has seen misses nothing. The same
        events stream live from /api/v1/events/stream/ (Server-Sent Events)."""
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        customer_id = customer_id_of(request)
        if not account_exists(customer_id=customer_id):
            raise NoAccount()
        after = filters.validated_data.get("after", 0)
        limit = filters.validated_data.get("limit", DEFAULT_LIMIT)
        events = events_after(customer_id=customer_id, after=after, limit=limit)
        last_seq = events[-1]["seq"] if events else after
        next_url = None
        if len(events) == limit:
            next_url = request.build_absolute_uri(f"{request.path}?after={last_seq}&limit={limit}")
        return Response({"results": events, "last_seq": last_seq, "next": next_url})
