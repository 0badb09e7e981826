"""What staff do to a customer's trades: cancel a placed one for them. Through the
trades service, so every rule of a customer's cancel still applies, and on the record."""

from __future__ import annotations

from django.db import transaction

from brokerage.errors import NotFound
from staff_actions.models import StaffAction
from staff_actions.services import Staff, staff_action_record, staff_id_with
from support.accounts import required_text
from trades.models import Trade
from trades.services import trade_cancel
from trades.timeline import staff_actor

CANCEL = "trades.cancel_for_customer"


def trade_cancel_for_customer(*, staff: Staff, trade_id: int, reason: str) -> Trade:
    """Cancel a `placed` trade on the customer's behalf (409 in any other state)."""
    staff_id = staff_id_with(staff, CANCEL)
    reason = required_text(reason, "reason")
    customer_id = Trade.objects.filter(id=trade_id).values_list("customer_id", flat=True).first()
    if customer_id is None:
        raise NotFound("unknown_trade", f"No trade {trade_id}.")
    with transaction.atomic():
        staff_actor(staff.get_username())
        trade = trade_cancel(customer_id=customer_id, trade_id=trade_id, by="staff")
        staff_action_record(
            staff_id=staff_id,
            kind=StaffAction.Kind.TRADE_CANCELLED,
            customer_id=customer_id,
            trade_id=trade_id,
            reason=reason,
        )
    return trade
