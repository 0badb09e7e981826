"""Operators' commands refuse bad arguments with a message and a non-zero exit."""

import pytest
from django.core.management import CommandError, call_command

from outbox.leadership import REAPER_LOCK_NAMESPACE, ShardLeadership

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("cash", ["NaN", "Infinity", "-1", "1.001", "1E+30", "abc"])
def test_create_customer_refuses_an_opening_cash_it_cannot_book(cash):
    with pytest.raises(CommandError, match="--cash"):
        call_command("create_customer", "alice", cash=cash)


def test_create_customer_refuses_a_name_in_use():
    call_command("create_customer", "bob", cash="10.00")
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_customer", "bob", cash="10.00")


@pytest.mark.parametrize(
    "options",
    [{"shards": "2/200"}, {"shards": "0/2"}, {"shards": "7-500"}, {"submit_threads": 0}],
)
def test_run_shard_worker_refuses_a_configuration_that_could_not_work(options):
    with pytest.raises(CommandError):
        call_command("run_shard_worker", **options)


def test_run_reaper_once_says_so_when_another_reaper_is_active():
    other = ShardLeadership(
        shards=[0], holder="other reaper", namespace=REAPER_LOCK_NAMESPACE, leases=False
    )
    other.maintain()
    try:
        assert other.held
        with pytest.raises(CommandError, match="another reaper is active"):
            call_command("run_reaper", once=True)
    finally:
        other.release_all()
