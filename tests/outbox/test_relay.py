"""The relay loop, with handlers that stand in for any work: batches, turns, set-asides,
rests, leadership checks between slow steps, and failures of the session."""

import threading

import psycopg
import pytest
from django.db import DataError, OperationalError

from outbox.fencing import StaleLeader
from outbox.models import OutboxMessage
from outbox.relay import CUSTOMER_SET_ASIDE_SECONDS, Claim, RestShard, SetAside, ShardRelay
from tests.fakes import Clock, FakeLeadership


class Handler:
    """Does each customer's work by deleting their outbox rows; `act(claim)` runs first
    and may raise."""

    def __init__(self, act=None):
        self.act = act or (lambda claim: None)
        self.handled: list[int] = []
        self.batches: list[list[int]] = []
        self.gained: list[list[int]] = []
        self.turns = 0
        self.closed = threading.Event()

    def shards_gained(self, shards):
        self.gained.append(shards)

    def batch_starting(self, shard, customer_ids):
        self.batches.append(list(customer_ids))

    def handle(self, claim: Claim):
        self.handled.append(claim.customer_id)
        self.act(claim)
        OutboxMessage.objects.filter(customer_id=claim.customer_id).delete()

    def turn_ended(self):
        self.turns += 1

    def close(self):
        self.closed.set()


@pytest.fixture
def clock():
    return Clock()


def relay_for(handler, clock, held=None, batch_size=100):
    return ShardRelay(
        shards=sorted(held or {3: 1}),
        name="test",
        handler=handler,
        poll_interval=1,
        lock_retry_interval=1,
        batch_size=batch_size,
        leadership=FakeLeadership(held or {3: 1}, clock),
        clock=clock,
    )


def waiting(*customers, shard=3):
    for customer_id in customers:
        OutboxMessage.objects.create(shard=shard, customer_id=customer_id)


@pytest.mark.django_db
def test_a_customer_whose_work_fails_is_set_aside_and_the_rest_of_the_shard_goes_on(clock):
    def act(claim):
        if claim.customer_id == 1001:
            raise DataError("a poisoned customer")

    handler = Handler(act)
    relay = relay_for(handler, clock)
    waiting(1001, 1002)

    relay.turn({3})
    assert handler.handled == [1001, 1002]
    assert relay.customers_set_aside() == [1001]

    relay.turn({3})  # the poisoned customer waits out its time; nothing else to do
    assert handler.handled == [1001, 1002]

    clock.advance(CUSTOMER_SET_ASIDE_SECONDS)
    relay.turn({3})
    assert handler.handled == [1001, 1002, 1001]


@pytest.mark.django_db
def test_customers_set_aside_never_fill_the_batch(clock):
    def act(claim):
        if claim.customer_id < 2000:
            raise SetAside(ValueError("not now"))

    handler = Handler(act)
    relay = relay_for(handler, clock, batch_size=2)
    waiting(1001, 1002, 1003, 2001)

    relay.turn({3})
    relay.turn({3})

    assert handler.batches == [[1001, 1002], [1003, 2001]]
    assert set(relay.customers_set_aside()) == {1001, 1002, 1003}
    assert not OutboxMessage.objects.filter(customer_id=2001).exists()


@pytest.mark.django_db
def test_a_busy_shard_gets_a_batch_a_turn_so_it_never_holds_up_the_others(clock):
    handler = Handler()
    relay = relay_for(handler, clock, held={3: 1, 5: 1}, batch_size=2)
    waiting(1, 2, 3, 4, 5, shard=3)
    waiting(6, shard=5)

    relay.turn({3, 5})
    assert handler.handled == [1, 2, 6]
    relay.turn()  # shard 3's batch was full: it comes back without a notification
    assert handler.handled == [1, 2, 6, 3, 4]
    relay.turn()
    relay.turn()  # its last batch was not full: nothing more until it is notified

    assert handler.handled == [1, 2, 6, 3, 4, 5]
    assert handler.turns == 4


@pytest.mark.django_db
def test_a_shard_whose_handler_asks_for_a_rest_is_left_alone_for_that_long(clock):
    def act(claim):
        raise RestShard(2.0)

    handler = Handler(act)
    relay = relay_for(handler, clock)
    waiting(1001, 1002)

    relay.turn({3})
    assert handler.handled == [1001]  # the shard's other customers wait too
    clock.advance(1.9)
    relay.turn({3})
    assert handler.handled == [1001]
    clock.advance(0.1)
    relay.turn({3})
    assert handler.handled == [1001, 1001]
    assert relay.customers_set_aside() == []  # nobody's fault


@pytest.mark.django_db
def test_a_stale_epoch_gives_the_shard_back_and_stops_its_drain(clock):
    def act(claim):
        raise StaleLeader("epoch 2 is not 1")

    handler = Handler(act)
    relay = relay_for(handler, clock)
    waiting(1001, 1002)

    relay.turn({3})

    assert handler.handled == [1001]
    assert relay.leadership.dropped == [3]


@pytest.mark.django_db
def test_a_handler_that_waited_renews_the_heartbeat_and_learns_whether_it_still_leads(clock):
    """Each slow step for a customer may take seconds: a leader that did not renew its
    heartbeat in between would be taken for a frozen one and deposed."""
    answers = []

    def act(claim):
        clock.advance(1.1)  # a slow quote
        answers.append(claim.still_leading())
        relay.leadership.losses = [3]
        clock.advance(1.1)
        answers.append(claim.still_leading())

    handler = Handler(act)
    relay = relay_for(handler, clock)
    waiting(1001, 1002)

    relay.turn({3})

    assert answers == [True, False]
    assert relay.leadership.maintained == [1000.0, 1001.1, 1002.2]
    assert handler.handled == [1001]  # the shard is lost: its next customer is not handed out


@pytest.mark.django_db
def test_shards_taken_over_are_handed_to_the_handler_and_drained_next_turn(clock):
    handler = Handler()
    relay = relay_for(handler, clock)
    relay.leadership.gains = [4]
    waiting(1001, shard=4)

    relay.turn()  # no notification, no poll

    assert handler.gained == [[4]]
    assert handler.handled == [1001]


def django_error(cause: Exception) -> OperationalError:
    """As Django raises a driver's error: wrapped, with the driver's error as the cause."""
    try:
        raise OperationalError(str(cause)) from cause
    except OperationalError as exc:
        return exc


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("cause", "set_aside"),
    [
        (psycopg.OperationalError("consuming input failed: server closed the connection"), False),
        (
            psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
            False,
        ),
        (psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"), True),
    ],
    ids=["server-gone", "admin-shutdown", "lock-timeout"],
)
def test_a_failed_session_is_retried_not_blamed_on_the_customer(clock, cause, set_aside):
    """A Postgres restart can fail a statement before the driver has marked its connection
    bad: that is the session's failure, so the customer must not wait out a set-aside."""

    def act(claim):
        raise django_error(cause)

    relay = relay_for(Handler(act), clock)
    waiting(1001)

    relay.turn({3})

    assert (1001 in relay.customers_set_aside()) is set_aside


@pytest.mark.django_db
def test_a_hook_that_fails_outside_any_customer_never_ends_the_relay(clock):
    class Failing(Handler):
        def turn_ended(self):
            raise RuntimeError("a bug")

    relay = relay_for(Failing(), clock)
    waiting(1001)

    relay.turn({3})
    relay.turn()

    assert relay.handler.handled == [1001]
