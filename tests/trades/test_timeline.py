"""A trade's timeline: every status it took, when and by whom (a trigger writes it in
the same transaction), and what the exchange said went wrong, once per distinct error."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import DatabaseError, connection, transaction

from execution.exchange_client import ExchangeUnavailable
from execution.submitter import Submitter
from support.trades import trade_cancel_for_customer
from tests.factories import callback_body, lead_shard_of, place_and_send, signed_headers
from trades.models import TradeEvent
from trades.services import trade_place

pytestmark = pytest.mark.django_db


def timeline(trade_id: int) -> list[tuple[str | None, str, str]]:
    return list(
        TradeEvent.objects.filter(trade_id=trade_id)
        .order_by("id")
        .values_list("status", "actor", "detail")
    )


def session_name() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW application_name")
        return cursor.fetchone()[0]


def test_each_status_of_a_filled_trade_is_on_its_timeline_with_who(client, customer):
    trade, _ = place_and_send(customer.id, quantity=2)
    _, epoch = lead_shard_of(customer.id)  # the next epoch: the one sent under is epoch - 1
    body = callback_body(trade, price="99.5000")
    client.generic(
        "POST",
        "/exchange/callback/",
        body,
        content_type="application/json",
        **signed_headers(body),
    )

    me = session_name()
    events = timeline(trade.id)
    assert [status for status, _, _ in events] == ["in_progress", "filled"]
    assert events[0][1] == f"{me} epoch {epoch - 1}" and events[0][2].startswith("limit ")
    assert events[1][2] == "at 99.5000"
    times = list(TradeEvent.objects.filter(trade_id=trade.id).values_list("at", flat=True))
    assert times == sorted(times)


def test_a_staff_cancel_names_the_staff_member(customer):
    staff = get_user_model().objects.create_user(username="sam", is_staff=True)
    staff.groups.add(Group.objects.get(name="support"))
    staff = get_user_model().objects.get(pk=staff.pk)
    trade = trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=1).trade

    trade_cancel_for_customer(staff=staff, trade_id=trade.id, reason="asked by phone")

    assert timeline(trade.id)[-1] == (
        "cancelled",
        "staff sam",
        "cancelled by support for the customer",
    )


class FailingExchange:
    def submit_order(self, order):
        raise ExchangeUnavailable("HTTP 503 from the exchange")


def test_a_failed_send_is_kept_once_however_often_it_fails(customer):
    trade, order = place_and_send(customer.id)
    submitter = Submitter(threads=1, make_client=FailingExchange)
    for _ in range(3):
        submitter.submit(order)
    submitter.close()

    errors = [e for e in timeline(trade.id) if e[0] is None]
    assert errors == [(None, session_name(), "submit failed: HTTP 503 from the exchange")]


def test_a_report_that_disagrees_is_kept_on_the_timeline(client, customer):
    trade, _ = place_and_send(customer.id, quantity=2)
    body = callback_body(trade, quantity=3)
    response = client.generic(
        "POST",
        "/exchange/callback/",
        body,
        content_type="application/json",
        **signed_headers(body),
    )
    assert response.status_code == 409
    assert timeline(trade.id)[-1][0] is None
    assert timeline(trade.id)[-1][2].startswith("report mismatch: ")


def test_the_timeline_is_append_only(customer):
    trade, _ = place_and_send(customer.id)
    event = TradeEvent.objects.filter(trade=trade).first()
    assert event is not None
    with pytest.raises(DatabaseError), transaction.atomic():
        TradeEvent.objects.filter(id=event.id).update(detail="edited")
    with pytest.raises(DatabaseError), transaction.atomic():
        TradeEvent.objects.filter(id=event.id).delete()


@pytest.mark.urls("brokerage.admin_urls")
def test_the_trades_admin_page_shows_its_placement_and_timeline(customer):
    from django.test import Client

    trade, _ = place_and_send(customer.id)
    root = Client()
    root.force_login(get_user_model().objects.create_superuser("root"))
    html = root.get(f"/admin/trades/trade/{trade.id}/change/").content.decode()
    assert f"customer {customer.id}" in html and "placed" in html
    assert "in_progress" in html and "epoch" in html
