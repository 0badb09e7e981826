"""What staff do to a customer's trades: cancel a placed one for them, resolve one stuck
in flight. Through the services every other path uses, so that every rule still
applies, and on the record (the staff action, and the trade's timeline)."""

from __future__ import annotations

from django.db import transaction

from brokerage.errors import Conflict, NotFound
from execution.exchange import exchange_client
from execution.exchange_client import ExchangeError
from execution.in_flight import order_request_for
from execution.settlement import ReportMismatch, SettleOutcome, rejected_report, trade_settle
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


RESOLVE = "trades.resolve_stuck"
NO_RECORD = "resolved by staff: the exchange has no record of the order"


def trade_resolve(*, staff: Staff, trade_id: int, reason: str) -> Trade:
    """Settle a trade stuck `in_progress` (a report that disagreed, an order the exchange
    lost) from what the exchange says of it now, through trade_settle, so that every
    guard of a settlement still applies: its fill if it filled, its rejection if it was
    rejected, a rejection (the hold released) if the exchange has no record of it. An
    order still open at the exchange is left to finish; a record that disagrees with the
    order is refused, as any report that disagrees is."""
    staff_id = staff_id_with(staff, RESOLVE)
    reason = required_text(reason, "reason")
    trade = Trade.objects.filter(id=trade_id).first()
    if trade is None:
        raise NotFound("unknown_trade", f"No trade {trade_id}.")
    if trade.status != Trade.Status.IN_PROGRESS:
        raise Conflict(
            "trade_not_stuck",
            f"Trade {trade_id} is {trade.status}: only a trade in flight is resolved"
            + (" (cancel a placed one instead)." if trade.status == Trade.Status.PLACED else "."),
        )
    try:
        with exchange_client() as client:
            state = client.get_order(str(trade.id))
    except ExchangeError as exc:
        raise Conflict(
            "exchange_unavailable", f"The exchange could not say what became of it: {exc}"
        ) from None
    if state is None:
        state = rejected_report(
            trade_id=trade.id, reason=NO_RECORD, request=order_request_for(trade)
        )
    if state.status not in ("filled", "rejected"):
        raise Conflict(
            "still_open_at_exchange",
            f"The exchange has the order {state.status}: it may still fill; wait for it.",
        )
    with transaction.atomic():
        staff_actor(staff.get_username())
        try:
            outcome = trade_settle(report=state)
        except ReportMismatch as exc:
            raise Conflict(
                "report_mismatch", f"The exchange's record disagrees with the order: {exc}"
            ) from None
        if outcome is not SettleOutcome.SETTLED:
            raise Conflict("trade_not_stuck", f"Trade {trade_id} was {outcome.value} meanwhile.")
        staff_action_record(
            staff_id=staff_id,
            kind=StaffAction.Kind.TRADE_RESOLVED,
            customer_id=trade.customer_id,
            trade_id=trade.id,
            reason=reason,
            details={"exchange_status": state.status, "exchange_says": state.reason or ""},
        )
    return Trade.objects.get(id=trade_id)
