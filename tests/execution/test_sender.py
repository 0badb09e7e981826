"""The relay's trade handler: quotes ahead of a batch, one customer at a time, a bad
ticker or a missing account holding up only its own customer, inherited orders sent
again, and refused orders booked only when the exchange never recorded them."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from balances.models import Account
from devtools.stack import wait_for
from execution.exchange_client import ExchangeError, ExchangeUnavailable
from execution.in_flight import trade_put_in_flight
from execution.quotes import QuoteBook
from execution.sender import TradeSender
from execution.submitter import Submitter
from outbox.leadership import SHARD_LOCK_NAMESPACE
from outbox.models import OutboxMessage, ShardLease
from outbox.relay import Claim, ShardRelay
from tests.factories import place_and_send, report_for
from tests.fakes import (
    Clock,
    FakeExchange,
    FakeLeadership,
    RecordingSubmitter,
    RefusesBatchesWith,
    RefusingExchange,
    SlowExchange,
)
from trades.models import Trade
from trades.services import trade_place


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def exchange():
    return FakeExchange()


@pytest.fixture
def submitted():
    return RecordingSubmitter()


@pytest.fixture
def sender(exchange, submitted, clock):
    return TradeSender(
        name="test", quotes=QuoteBook(exchange, max_age=1.0, clock=clock), submitter=submitted
    )


@pytest.fixture
def relay(sender, clock):
    """Leads shard 3 with epoch 1, without locks."""
    return ShardRelay(
        shards=[3],
        name="test",
        handler=sender,
        poll_interval=1,
        lock_retry_interval=1,
        leadership=FakeLeadership({3: 1}, clock),
        clock=clock,
    )


def place_in_shard(customer_id: int, ticker: str, shard: int = 3) -> Trade:
    """A placed trade of a customer moved into `shard` (the `relay` leads shard 3)."""
    trade = trade_place(customer_id=customer_id, ticker=ticker, side="buy", quantity=1).trade
    Account.objects.filter(customer_id=customer_id).update(shard=shard)
    OutboxMessage.objects.filter(customer_id=customer_id).update(shard=shard)
    ShardLease.objects.update_or_create(shard=shard, defaults={"epoch": 1})
    return trade


def sent_ids(submitted) -> list[int]:
    return [int(order.client_order_id) for order in submitted.orders]


def claim_for(customer_id: int, still_leading=lambda: True) -> Claim:
    return Claim(shard=3, epoch=1, customer_id=customer_id, still_leading=still_leading)


@pytest.mark.django_db
@pytest.mark.parametrize("max_age", [1.0, 0.0], ids=["slower-than-max-age", "max-age-zero"])
def test_a_quote_answer_is_used_however_long_it_took(submitted, clock, make_customer, max_age):
    sender = TradeSender(
        name="test",
        quotes=QuoteBook(SlowExchange(clock, seconds=1.1), max_age=max_age, clock=clock),
        submitter=submitted,
    )
    trade = place_in_shard(make_customer().id, "AAPL")

    sender.handle(claim_for(trade.customer_id))

    assert sent_ids(submitted) == [trade.id]
    assert Trade.objects.get(id=trade.id).status == "in_progress"


@pytest.mark.django_db
def test_the_quotes_a_batch_needs_are_asked_for_in_one_request_before_any_transaction(
    relay, exchange, submitted, make_customer
):
    first = place_in_shard(make_customer().id, "AAPL")
    second = place_in_shard(make_customer().id, "MSFT")

    relay.turn({3})

    assert exchange.asked == [["AAPL", "MSFT"]]
    assert sent_ids(submitted) == [first.id, second.id]


@pytest.mark.django_db
def test_a_ticker_the_exchange_will_not_quote_holds_up_only_its_customer(
    relay, sender, submitted, make_customer
):
    stuck, other = make_customer(), make_customer()
    stuck_trade = place_in_shard(stuck.id, "AAPL")
    other_trade = place_in_shard(other.id, "MSFT")
    sender.quotes.client = RefusesBatchesWith("AAPL", ExchangeError("malformed quote"))

    relay.turn({3})

    assert sent_ids(submitted) == [other_trade.id]
    assert Trade.objects.get(id=stuck_trade.id).status == "placed"
    assert relay.customers_set_aside() == [stuck.id]


@pytest.mark.django_db
def test_an_unquotable_ticker_is_asked_for_alone_once_while_its_customers_wait(
    relay, sender, submitted, make_customer
):
    relay.batch_size = 2
    stuck = [place_in_shard(make_customer().id, "AAPL") for _ in range(3)]
    behind = place_in_shard(make_customer().id, "MSFT")
    exchange = sender.quotes.client = RefusesBatchesWith("AAPL", ExchangeError("malformed"))

    relay.turn({3})
    relay.turn()

    assert sent_ids(submitted) == [behind.id]
    assert {t.customer_id for t in stuck} == set(relay.customers_set_aside())
    assert exchange.asked.count(["AAPL"]) == 1


@pytest.mark.django_db
def test_an_unreachable_exchange_rests_the_shard(relay, sender, submitted, make_customer, clock):
    trade = place_in_shard(make_customer().id, "AAPL")
    sender.quotes.client = RefusesBatchesWith("AAPL", ExchangeUnavailable("down"))

    relay.turn({3})
    assert Trade.objects.get(id=trade.id).status == "placed"
    sender.quotes.client = FakeExchange()
    relay.turn({3})
    assert submitted.orders == []  # resting
    clock.advance(1.0)
    relay.turn({3})

    assert sent_ids(submitted) == [trade.id]
    assert relay.customers_set_aside() == []


@pytest.mark.django_db
def test_a_customer_without_an_account_is_set_aside_not_the_worker(relay, submitted, make_customer):
    OutboxMessage.objects.create(shard=3, customer_id=987654321)  # no such account
    trade = place_in_shard(make_customer().id, "AAPL")

    relay.turn({3})

    assert sent_ids(submitted) == [trade.id]
    assert relay.customers_set_aside() == [987654321]


@pytest.mark.django_db
def test_between_slow_tries_the_sender_asks_whether_it_still_leads(submitted, clock, make_customer):
    sender = TradeSender(
        name="test",
        quotes=QuoteBook(SlowExchange(clock, seconds=1.1), max_age=1.0, clock=clock),
        submitter=submitted,
    )
    asked_at = []
    trade = place_in_shard(make_customer().id, "AAPL")

    sender.handle(claim_for(trade.customer_id, lambda: asked_at.append(clock()) or True))

    assert asked_at == [1001.1]  # after the slow quote, before trying again
    assert sent_ids(submitted) == [trade.id]


@pytest.mark.django_db
def test_a_sender_that_lost_the_shard_between_tries_stops(submitted, clock, make_customer):
    sender = TradeSender(
        name="test",
        quotes=QuoteBook(SlowExchange(clock, seconds=1.1), max_age=1.0, clock=clock),
        submitter=submitted,
    )
    trade = place_in_shard(make_customer().id, "AAPL")

    sender.handle(claim_for(trade.customer_id, lambda: False))

    assert submitted.orders == []  # no second try with an epoch it knows is gone
    assert Trade.objects.get(id=trade.id).status == "placed"


@pytest.mark.django_db
def test_orders_in_flight_in_a_shard_taken_over_are_sent_again(sender, submitted, make_customer):
    """The last leader may have died between committing a trade in flight and sending it:
    the new one sends it again at once (the exchange dedupes by trade id) instead of
    leaving the customer to the reaper's deadline."""
    inherited, elsewhere, waiting, old = (make_customer() for _ in range(4))
    in_flight = place_in_shard(inherited.id, "AAPL")
    sent = trade_put_in_flight(shard=3, epoch=1, customer_id=inherited.id, quotes={"AAPL": 100})
    place_in_shard(elsewhere.id, "AAPL", shard=4)
    trade_put_in_flight(shard=4, epoch=1, customer_id=elsewhere.id, quotes={"AAPL": 100})
    place_in_shard(waiting.id, "MSFT")  # placed, not in flight: the drain sends it
    # In flight for longer than the reaper's deadline: the reaper's to look up.
    reapers = place_in_shard(old.id, "AAPL")
    trade_put_in_flight(shard=3, epoch=1, customer_id=old.id, quotes={"AAPL": 100})
    Trade.objects.filter(id=reapers.id).update(submitted_at=timezone.now() - timedelta(minutes=1))

    sender.shards_gained([3])

    assert submitted.orders == [sent] and sent.client_order_id == str(in_flight.id)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("recorded", "status"),
    [
        (None, "rejected"),
        ({"status": "open"}, "in_progress"),
        ({"status": "filled"}, "filled"),
        ({"status": "rejected"}, "rejected"),
        ({"status": "filled", "quantity": 11}, "in_progress"),
        ({"status": "filled", "fill_price": Decimal("999")}, "in_progress"),
        (ExchangeUnavailable("down"), "in_progress"),
    ],
    ids=[
        "never-recorded",
        "recorded-open",
        "recorded-filled",
        "recorded-rejected",
        "record-disagrees",
        "record-breaks-protection",
        "cannot-tell",
    ],
)
def test_a_refused_order_is_booked_rejected_only_if_the_exchange_never_recorded_it(
    customer, recorded, status
):
    """Otherwise the exchange's record is settled, as its callback would be; one that
    disagrees with the order is left to the reaper, and never stops the worker."""
    trade, order = place_and_send(customer.id)
    if isinstance(recorded, dict):
        recorded = report_for(trade, **recorded)
    submitter = Submitter(threads=1, make_client=lambda: RefusingExchange(recorded))

    submitter.submit(order)
    submitter.close()  # waits for the submission, then books what was refused

    trade.refresh_from_db()
    assert trade.status == status
    if recorded is None:
        assert trade.reason == "refused by exchange: bad price"


def shard_lock_held(shard: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s AND objid = %s AND objsubid = 2",
            [SHARD_LOCK_NAMESPACE, shard],
        )
        return cursor.fetchone()[0] == 1


@pytest.mark.django_db(transaction=True)
def test_on_stop_the_shards_go_back_before_the_orders_being_submitted_finish(customer):
    submitting = threading.Event()
    finish = threading.Event()

    class SlowExchangeClient:
        def submit_order(self, order):
            submitting.set()
            finish.wait(10)
            raise ExchangeUnavailable("still slow")

    _, order = place_and_send(customer.id)
    submitter = Submitter(threads=1, make_client=SlowExchangeClient)
    sender = TradeSender(
        name="stopping", quotes=QuoteBook(FakeExchange(), max_age=1.0), submitter=submitter
    )
    relay = ShardRelay(
        shards=[7], name="stopping", handler=sender, poll_interval=1, lock_retry_interval=1
    )
    running = threading.Thread(target=relay.run)
    running.start()
    try:
        wait_for(lambda: shard_lock_held(7), timeout=5, what="the shard to be led")
        submitter.submit(order)
        wait_for(submitting.is_set, timeout=5, what="the order to be on its way")
        relay.stop()
        wait_for(lambda: not shard_lock_held(7), timeout=5, what="the shard to be released")
        assert running.is_alive()  # the submission is still going on
    finally:
        finish.set()
        running.join(10)
    assert not running.is_alive()
