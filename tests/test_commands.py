"""Operators' commands refuse bad arguments with a message and a non-zero exit."""

import re
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from devtools.stack import free_port
from execution.management.commands.run_reaper import ANOTHER_REAPER_ACTIVE, PASS_ENDED_EARLY
from outbox.leadership import REAPER_LOCK_NAMESPACE, ShardLeadership
from tests.factories import place_and_send
from trades.management.commands.create_customer import NAME_TAKEN
from trades.models import Trade

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("cash", ["NaN", "Infinity", "-1", "1.001", "1E+30", "abc"])
def test_create_customer_refuses_an_opening_cash_it_cannot_book(cash):
    with pytest.raises(CommandError, match="--cash"):
        call_command("create_customer", "alice", cash=cash)


def test_create_customer_refuses_a_name_in_use():
    call_command("create_customer", "bob", cash="10.00")
    with pytest.raises(CommandError, match=re.escape(NAME_TAKEN.format(name="bob"))):
        call_command("create_customer", "bob", cash="10.00")


@pytest.mark.parametrize(
    "options",
    [{"shards": "2/200"}, {"shards": "0/2"}, {"shards": "7-500"}, {"submit_threads": 0}],
)
def test_run_shard_worker_refuses_a_configuration_that_could_not_work(options):
    with pytest.raises(CommandError):
        call_command("run_shard_worker", **options)


@pytest.mark.parametrize("interval", [0, -1, float("nan"), float("inf")])
def test_run_reaper_refuses_an_interval_that_would_spin(interval):
    with pytest.raises(CommandError, match="--interval"):
        call_command("run_reaper", interval=interval)


def test_run_reaper_once_says_so_when_another_reaper_is_active():
    other = ShardLeadership(
        shards=[0], holder="other reaper", namespace=REAPER_LOCK_NAMESPACE, leases=False
    )
    other.maintain()
    try:
        assert other.held
        with pytest.raises(CommandError, match=ANOTHER_REAPER_ACTIVE):
            call_command("run_reaper", once=True)
    finally:
        other.release_all()


def test_run_reaper_once_never_deposes_the_active_reaper(settings):
    settings.REAPER_LEASE_TIMEOUT = 0.001  # by this, the active reaper would look frozen
    active = ShardLeadership(
        shards=[0], holder="active reaper", namespace=REAPER_LOCK_NAMESPACE, leases=False
    )
    active.maintain()
    try:
        with pytest.raises(CommandError, match=ANOTHER_REAPER_ACTIVE):
            call_command("run_reaper", once=True)
        assert active.maintain() == ([], [])  # its lock session was left alone
    finally:
        active.release_all()


def test_run_reaper_once_fails_when_it_could_not_ask_the_exchange(customer, settings):
    trade, _ = place_and_send(customer.id, quantity=1)
    Trade.objects.filter(id=trade.id).update(submitted_at=timezone.now() - timedelta(hours=1))
    settings.EXCHANGE_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    with pytest.raises(CommandError, match=re.escape(PASS_ENDED_EARLY)):
        call_command("run_reaper", once=True)
