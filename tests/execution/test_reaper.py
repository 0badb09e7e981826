"""The reaper's repair of trades in flight, against the real database, with a fake exchange."""

from datetime import timedelta

import pytest
from django.utils import timezone

from execution.exchange_client import ExchangeRejectedRequest
from execution.reaper import ReapReport, UnresolvedTrades, reap_trades_in_flight
from execution.settlement import rejected_report, trade_settle
from tests.factories import place_and_send, report_for
from trades.models import Trade

pytestmark = pytest.mark.django_db


class Exchange:
    """Answers GET /orders from `states` (trade id → an OrderState, or an exception)."""

    def __init__(self, states):
        self.states = states
        self.asked: list[int] = []

    def get_order(self, client_order_id):
        self.asked.append(int(client_order_id))
        state = self.states[int(client_order_id)]
        if isinstance(state, Exception):
            raise state
        return state


def overdue_trades(make_customer, count=2) -> list[Trade]:
    """In-flight trades, oldest first, all past the reaper's deadline."""
    trades = []
    for minutes in range(count, 0, -1):
        trade, _ = place_and_send(make_customer().id, quantity=1)
        Trade.objects.filter(id=trade.id).update(
            submitted_at=timezone.now() - timedelta(minutes=minutes)
        )
        trades.append(trade)
    return trades


def reap(exchange, **kwargs) -> ReapReport:
    report = ReapReport()
    reap_trades_in_flight(
        client=exchange, older_than=timedelta(seconds=10), report=report, **kwargs
    )
    return report


@pytest.mark.parametrize(
    "first_answer",
    [
        "unstorable exchange order id",
        ValueError("a bug in what the exchange sent"),
    ],
)
def test_a_trade_that_cannot_be_resolved_does_not_stop_the_pass(make_customer, first_answer):
    first, second = overdue_trades(make_customer)
    if isinstance(first_answer, str):
        first_answer = report_for(first, exchange_order_id="X" * 65)
    exchange = Exchange({first.id: first_answer, second.id: report_for(second)})

    report = reap(exchange)

    assert report.failed == [first.id] and report.settled == 1
    assert Trade.objects.get(id=first.id).status == "in_progress"
    assert Trade.objects.get(id=second.id).status == "filled"


def test_trades_to_skip_are_not_asked_about(make_customer):
    first, second = overdue_trades(make_customer)
    exchange = Exchange({second.id: report_for(second)})

    report = reap(exchange, skip=[first.id])

    assert exchange.asked == [second.id] and report.settled == 1


def test_orders_still_open_at_the_head_do_not_hide_a_lost_submission(make_customer):
    """Each pass asks about a limited number of the oldest trades in flight: those found
    still open are left alone for a while, so the pass after reaches the ones behind."""
    first, second, lost = overdue_trades(make_customer, count=3)
    exchange = Exchange(
        {
            first.id: report_for(first, status="open"),
            second.id: report_for(second, status="open"),
            lost.id: None,  # the exchange never got it
        }
    )
    exchange.submit_order = lambda request: exchange.asked.append(int(request.client_order_id))
    unresolved = UnresolvedTrades()

    for _ in range(2):
        report = reap(exchange, limit=2, skip=unresolved.to_skip())
        unresolved.note(report.open, seconds=10)

    assert report.resubmitted == 1
    assert exchange.asked == [first.id, second.id, lost.id, lost.id]


class RefusingExchange(Exchange):
    """Has no record of the order when first asked, refuses the re-sent order (400), and
    then answers from `after` (None: still no record)."""

    def __init__(self, trade, after):
        super().__init__({trade.id: None})
        self.after = {trade.id: after}

    def submit_order(self, request):
        self.states = self.after
        raise ExchangeRejectedRequest("invalid_order", "market closed")


def test_a_refused_resend_of_an_order_the_exchange_never_got_is_booked_rejected(make_customer):
    (trade,) = overdue_trades(make_customer, count=1)

    report = reap(RefusingExchange(trade, after=None))

    trade.refresh_from_db()
    assert report.settled == 1
    assert (trade.status, trade.reason) == ("rejected", "refused by exchange: market closed")


def test_a_refused_resend_of_an_order_recorded_meanwhile_is_settled_from_the_record(
    make_customer,
):
    """The first submission landed between the reaper's question and its re-send: the
    order is live at the exchange, so its refusal must not release the hold and let the
    customer's next trade go out. It is settled from what the exchange recorded."""
    (trade,) = overdue_trades(make_customer, count=1)

    report = reap(RefusingExchange(trade, after=report_for(trade)))

    trade.refresh_from_db()
    assert report.settled == 1 and trade.status == "filled"


def test_a_refused_resend_of_an_order_still_open_is_left_in_flight(make_customer):
    (trade,) = overdue_trades(make_customer, count=1)

    report = reap(RefusingExchange(trade, after=report_for(trade, status="open")))

    assert report.open == [trade.id] and report.settled == 0
    assert Trade.objects.get(id=trade.id).status == "in_progress"


def test_a_pass_stops_between_trades_once_the_lock_is_lost(make_customer):
    first, second = overdue_trades(make_customer)
    exchange = Exchange({first.id: report_for(first), second.id: report_for(second)})

    report = reap(exchange, still_active=lambda: not exchange.asked)

    assert report.interrupted and exchange.asked == [first.id] and report.settled == 1
    assert Trade.objects.get(id=second.id).status == "in_progress"


def test_a_refusal_the_leader_booked_first_is_not_counted_again(make_customer):
    (trade,) = overdue_trades(make_customer, count=1)
    exchange = RefusingExchange(trade, after=None)
    refuse = exchange.submit_order

    def leader_books_it_first(request):
        trade_settle(report=rejected_report(trade_id=trade.id, reason="x", request=request))
        refuse(request)

    exchange.submit_order = leader_books_it_first

    report = reap(exchange)

    assert report.settled == 0 and Trade.objects.get(id=trade.id).status == "rejected"
    assert report.open == []  # final: not counted, nor skipped, as still open
