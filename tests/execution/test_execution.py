"""Sending and settling, against the real database (the exchange is not involved here)."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection

from balances.models import Account, LedgerEntry, Position
from execution.audit import audit
from execution.in_flight import (
    INSUFFICIENT_FUNDS,
    INSUFFICIENT_SHARES,
    NOT_LISTED,
    QUOTE_OUT_OF_RANGE,
    QuoteNeeded,
    trade_put_in_flight,
)
from execution.settlement import ReportMismatch, SettleOutcome, trade_settle
from outbox.fencing import StaleLeader
from outbox.models import OutboxMessage
from tests.factories import lead_shard_of, place_and_send, report_for
from trades.models import Trade
from trades.services import trade_cancel, trade_place

pytestmark = pytest.mark.django_db


def account(customer_id):
    return Account.objects.get(customer_id=customer_id)


def position(customer_id, ticker="AAPL"):
    return Position.objects.filter(customer_id=customer_id, ticker=ticker).first()


def place(customer_id, *, ticker="AAPL", side="buy", quantity=1) -> Trade:
    return trade_place(customer_id=customer_id, ticker=ticker, side=side, quantity=quantity).trade


def assert_invariants_hold():
    broken = [c for c in audit() if not c.ok]
    assert not broken, [(c.name, c.failures) for c in broken]


class TestSend:
    def test_a_buy_holds_cash_with_the_collar_and_goes_in_flight(self, customer):
        trade, order = place_and_send(customer.id, quantity=10, quote="100.00")

        assert trade.status == "in_progress"
        assert trade.submitted_at is not None
        assert trade.limit_price == Decimal("105.0000")
        assert trade.cash_held == Decimal("1050.00")
        assert account(customer.id).cash_held == Decimal("1050.00")
        assert order.client_order_id == str(trade.id)
        assert order.max_price == Decimal("105.0000") and order.min_price is None
        assert order.sequence == trade.seq
        assert not OutboxMessage.objects.exists()
        assert_invariants_hold()

    def test_a_sell_holds_shares(self, customer):
        trade, order = place_and_send(customer.id, side="sell", quantity=4, quote="100.00")

        assert trade.status == "in_progress"
        assert position(customer.id).held == 4
        assert order.min_price == Decimal("95.0000") and order.max_price is None
        assert_invariants_hold()

    @pytest.mark.parametrize(
        ("side", "quote"),
        [
            ("buy", "0.00005"),
            ("buy", "20000000000"),
            ("sell", "20000000000"),
            ("buy", "1E+30"),
            ("sell", "1E+30"),
        ],
        ids=[
            "buy-below-a-tick",
            "buy-beyond-the-column",
            "sell-beyond-the-column",
            "buy-beyond-decimal-precision",
            "sell-beyond-decimal-precision",
        ],
    )
    def test_a_quote_that_gives_no_usable_limit_rejects_the_trade(self, customer, side, quote):
        trade = place(customer.id, side=side)
        shard, epoch = lead_shard_of(customer.id)

        order = trade_put_in_flight(
            shard=shard, epoch=epoch, customer_id=customer.id, quotes={"AAPL": Decimal(quote)}
        )

        assert order is None
        trade.refresh_from_db()
        assert (trade.status, trade.reason) == ("rejected", QUOTE_OUT_OF_RANGE)
        assert account(customer.id).cash_held == 0 and position(customer.id).held == 0
        assert_invariants_hold()

    @pytest.mark.parametrize(
        ("side", "quote", "limit"),
        [
            ("sell", "0.00005", "0.0001"),
            ("buy", "0.000096", "0.0001"),
            ("sell", "10000000000", "9500000000.0000"),
        ],
    )
    def test_a_quote_out_of_range_whose_limit_is_usable_is_sent(self, customer, side, quote, limit):
        trade, order = place_and_send(customer.id, side=side, quantity=1, quote=quote)

        assert trade.status == "in_progress"
        assert trade.limit_price == Decimal(limit)

    def test_a_buy_beyond_buying_power_is_rejected_and_the_next_trade_follows(self, customer):
        too_big = place(customer.id, quantity=100)  # needs 10,500 at 100.00
        follower = place(customer.id, quantity=1)
        shard, epoch = lead_shard_of(customer.id)
        quotes = {"AAPL": Decimal("100.00")}

        order = trade_put_in_flight(
            shard=shard, epoch=epoch, customer_id=customer.id, quotes=quotes
        )

        assert order is None
        too_big.refresh_from_db()
        assert too_big.status == "rejected"
        assert too_big.reason == INSUFFICIENT_FUNDS
        assert account(customer.id).cash_held == 0
        assert OutboxMessage.objects.filter(customer_id=customer.id).count() == 1
        order = trade_put_in_flight(
            shard=shard, epoch=epoch, customer_id=customer.id, quotes=quotes
        )
        assert order.client_order_id == str(follower.id)
        assert_invariants_hold()

    def test_a_rejection_with_nothing_behind_it_leaves_no_outbox_row(self, customer):
        trade, _ = place_and_send(customer.id, quantity=100, quote="100.00")

        assert trade.reason == INSUFFICIENT_FUNDS
        assert not OutboxMessage.objects.exists()

    def test_a_sell_beyond_the_position_is_rejected(self, customer):
        trade, order = place_and_send(customer.id, side="sell", quantity=11)

        assert order is None
        assert trade.reason == INSUFFICIENT_SHARES
        assert position(customer.id).held == 0

    def test_only_one_trade_in_flight_per_customer(self, customer):
        first, _ = place_and_send(customer.id, quantity=1)
        second = trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=1).trade
        shard, epoch = lead_shard_of(customer.id)

        order = trade_put_in_flight(
            shard=shard, epoch=epoch, customer_id=customer.id, quotes={"AAPL": Decimal(100)}
        )

        assert order is None
        assert Trade.objects.get(id=second.id).status == "placed"

    def test_a_missing_quote_is_asked_for_and_nothing_changes(self, customer):
        trade = trade_place(customer_id=customer.id, ticker="MSFT", side="buy", quantity=1).trade
        shard, epoch = lead_shard_of(customer.id)

        with pytest.raises(QuoteNeeded) as need:
            trade_put_in_flight(shard=shard, epoch=epoch, customer_id=customer.id, quotes={})

        assert need.value.ticker == "MSFT"
        assert Trade.objects.get(id=trade.id).status == "placed"
        assert OutboxMessage.objects.filter(customer_id=customer.id).exists()

    def test_a_quote_that_expires_while_it_is_looked_at_is_asked_for_again(self, customer):
        class Expiring(dict):
            def __contains__(self, ticker):
                return True  # it was there a moment ago

        trade = place(customer.id, quantity=1)
        shard, epoch = lead_shard_of(customer.id)

        with pytest.raises(QuoteNeeded):
            trade_put_in_flight(
                shard=shard, epoch=epoch, customer_id=customer.id, quotes=Expiring()
            )

        assert Trade.objects.get(id=trade.id).status == "placed"

    def test_a_stale_epoch_changes_nothing(self, customer):
        trade = trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=1).trade
        shard, epoch = lead_shard_of(customer.id)
        lead_shard_of(customer.id)  # someone else took over: the epoch moved on

        with pytest.raises(StaleLeader):
            trade_put_in_flight(
                shard=shard, epoch=epoch, customer_id=customer.id, quotes={"AAPL": Decimal(1)}
            )

        assert Trade.objects.get(id=trade.id).status == "placed"
        assert account(customer.id).cash_held == 0
        assert OutboxMessage.objects.filter(customer_id=customer.id).exists()


class TestSettle:
    def test_a_filled_buy_pays_releases_and_delivers(self, customer):
        trade, _ = place_and_send(customer.id, quantity=10, quote="100.00")

        outcome = trade_settle(report=report_for(trade, price="101.2345"))

        assert outcome is SettleOutcome.SETTLED
        trade.refresh_from_db()
        assert trade.status == "filled"
        assert trade.fill_price == Decimal("101.2345")
        assert trade.executed_at and trade.finished_at
        assert account(customer.id).cash == Decimal("10000.00") - Decimal("1012.35")
        assert account(customer.id).cash_held == 0
        assert position(customer.id).quantity == 20
        kinds = set(LedgerEntry.objects.filter(trade=trade).values_list("kind", flat=True))
        assert kinds == {"buy_cash", "buy_shares"}
        assert not OutboxMessage.objects.exists()  # nothing else of theirs is waiting
        assert_invariants_hold()

    def test_a_large_account_can_always_book_its_sale(self, make_customer):
        """Cash was NUMERIC(18,2): this sale overflowed it, so the fill could never be
        booked and the customer's trades stopped for good."""
        rich = make_customer(cash="9999999999999999.99", positions={"AAPL": 1_000_000})
        trade, _ = place_and_send(rich.id, side="sell", quantity=1_000_000, quote="100.00")

        assert trade_settle(report=report_for(trade, price="100.0000")) is SettleOutcome.SETTLED

        assert account(rich.id).cash == Decimal("10000000099999999.99")
        assert_invariants_hold()

    def test_fractions_of_a_cent_never_go_to_the_customer(self, make_customer):
        """Half-up rounding made a buy at 0.0049 free and a sell at 0.0050 pay a cent."""
        customer = make_customer(cash="0.01")
        buy, _ = place_and_send(customer.id, quantity=1, quote="0.0047")
        assert buy.limit_price == Decimal("0.0049") and buy.cash_held == Decimal("0.01")
        trade_settle(report=report_for(buy, price="0.0049"))
        assert account(customer.id).cash == Decimal("0.00")  # the buy cost a whole cent

        sell, _ = place_and_send(customer.id, side="sell", quantity=1, quote="0.0052")
        trade_settle(report=report_for(sell, price="0.0050"))

        assert account(customer.id).cash == Decimal("0.00")  # and the sell paid nothing
        assert_invariants_hold()

    @pytest.mark.parametrize("status", ["filled", "rejected"])
    def test_settling_wakes_the_leader_for_the_trade_waiting_behind(self, customer, status):
        trade, _ = place_and_send(customer.id, quantity=1)
        waiting = place(customer.id, quantity=1)
        shard, epoch = lead_shard_of(customer.id)
        # The leader takes the placement's wake-up and finds a trade in flight: it waits.
        quotes = {"AAPL": Decimal(100)}
        assert (
            trade_put_in_flight(shard=shard, epoch=epoch, customer_id=customer.id, quotes=quotes)
            is None
        )
        assert not OutboxMessage.objects.exists()

        trade_settle(report=report_for(trade, status=status))

        assert OutboxMessage.objects.filter(customer_id=customer.id).count() == 1
        order = trade_put_in_flight(
            shard=shard, epoch=epoch, customer_id=customer.id, quotes=quotes
        )
        assert order.client_order_id == str(waiting.id)

    def test_a_filled_sell_delivers_and_receives(self, customer):
        trade, _ = place_and_send(customer.id, side="sell", quantity=4, quote="50.00")

        trade_settle(report=report_for(trade, price="49.005"))

        assert position(customer.id).quantity == 6
        assert position(customer.id).held == 0
        assert account(customer.id).cash == Decimal("10196.02")
        assert_invariants_hold()

    @pytest.mark.parametrize("side", ["buy", "sell"])
    def test_a_rejection_releases_the_hold(self, customer, side):
        trade, _ = place_and_send(customer.id, side=side, quantity=2)

        trade_settle(report=report_for(trade, status="rejected", reason="market closed"))

        trade.refresh_from_db()
        assert (trade.status, trade.reason) == ("rejected", "market closed")
        assert account(customer.id).cash == Decimal("10000.00")
        assert account(customer.id).cash_held == 0
        assert position(customer.id).held == 0
        assert not LedgerEntry.objects.filter(trade=trade).exists()
        assert_invariants_hold()

    def test_a_duplicate_report_settles_nothing_twice(self, customer):
        trade, _ = place_and_send(customer.id, quantity=10)
        report = report_for(trade, price="100.00")
        trade_settle(report=report)
        cash = account(customer.id).cash

        assert trade_settle(report=report) is SettleOutcome.ALREADY_FINAL
        assert trade_settle(report=report_for(trade, status="rejected")) is (
            SettleOutcome.ALREADY_FINAL
        )
        assert account(customer.id).cash == cash
        assert LedgerEntry.objects.filter(trade=trade).count() == 2
        assert Trade.objects.get(id=trade.id).status == "filled"

    def test_a_report_for_a_placed_trade_changes_nothing(self, customer):
        trade = trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=1).trade
        assert trade_settle(report=report_for(trade)) is SettleOutcome.ALREADY_FINAL
        assert Trade.objects.get(id=trade.id).status == "placed"

    def test_an_open_or_unknown_report_changes_nothing(self, customer):
        trade, _ = place_and_send(customer.id, quantity=1)
        open_report = report_for(trade, status="open", fill_price=None, executed_at=None)
        assert trade_settle(report=open_report) is SettleOutcome.STILL_OPEN
        unknown = report_for(trade, client_order_id="987654321")
        assert trade_settle(report=unknown) is SettleOutcome.UNKNOWN_TRADE
        assert Trade.objects.get(id=trade.id).status == "in_progress"

    @pytest.mark.parametrize(
        "overrides",
        [
            {"quantity": 11},
            {"side": "sell"},
            {"ticker": "MSFT"},
            {"fill_price": Decimal("105.0001")},  # above the buy's protection
            {"fill_price": Decimal("0")},
            {"executed_at": None},
        ],
    )
    def test_a_report_that_disagrees_with_the_order_changes_nothing(self, customer, overrides):
        trade, _ = place_and_send(customer.id, quantity=10, quote="100.00")

        with pytest.raises(ReportMismatch):
            trade_settle(report=report_for(trade, **overrides))

        assert Trade.objects.get(id=trade.id).status == "in_progress"
        assert account(customer.id).cash == Decimal("10000.00")
        assert not LedgerEntry.objects.filter(trade=trade).exists()

    def test_trades_are_stamped_with_the_databases_clock_not_the_process(
        self, customer, monkeypatch
    ):
        skewed = datetime(2001, 1, 1, tzinfo=UTC)
        monkeypatch.setattr("django.utils.timezone.now", lambda: skewed)
        with connection.cursor() as cursor:
            cursor.execute("SELECT now()")
            started = cursor.fetchone()[0]

        trade, _ = place_and_send(customer.id, quantity=1)
        trade_settle(report=report_for(trade))
        trade.refresh_from_db()
        cancelled = trade_cancel(customer_id=customer.id, trade_id=place(customer.id).id)

        assert started <= trade.submitted_at <= trade.finished_at <= cancelled.finished_at

    def test_a_sell_below_its_protection_is_refused(self, customer):
        trade, _ = place_and_send(customer.id, side="sell", quantity=1, quote="100.00")
        with pytest.raises(ReportMismatch):
            trade_settle(report=report_for(trade, fill_price=Decimal("94.9999")))


class TestExchangeDoesNotListTheTicker:
    def test_the_trade_is_rejected_and_the_queue_moves_on(self, customer):
        trade = place(customer.id, quantity=1)
        place(customer.id, ticker="MSFT", quantity=1)
        shard, epoch = lead_shard_of(customer.id)

        order = trade_put_in_flight(
            shard=shard, epoch=epoch, customer_id=customer.id, quotes={"AAPL": None}
        )

        assert order is None
        assert Trade.objects.get(id=trade.id).reason == NOT_LISTED
        assert OutboxMessage.objects.filter(customer_id=customer.id).count() == 1
        assert_invariants_hold()

    def test_a_fill_price_finer_than_the_tick_is_refused(self, customer):
        trade, _ = place_and_send(customer.id, quantity=1)
        with pytest.raises(ReportMismatch):
            trade_settle(report=report_for(trade, fill_price=Decimal("100.00005")))
