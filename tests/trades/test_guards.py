"""The database refuses what must never happen, whatever the code above it does."""

import pytest
from django.db import IntegrityError, connection, transaction

from balances.models import Account, LedgerEntry
from trades.models import IllegalTransition, Trade
from trades.services import trade_place


def sql(statement, params=()):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, params)


# What the leader writes when it sends a trade (the terms CHECK trade_sent_has_terms asks for).
SEND = (
    "UPDATE trades_trade SET status='in_progress', submitted_at=now(), limit_price=105, "
    "cash_held=105 WHERE id=%s"
)


@pytest.fixture
def trade(customer):
    return trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=1).trade


@pytest.mark.django_db
class TestTradeStateMachine:
    @pytest.mark.parametrize("terminal", ["rejected", "cancelled", "filled"])
    def test_terminal_states_never_change(self, trade, terminal):
        if terminal == "filled":
            sql(SEND, [trade.id])
            sql(
                "UPDATE trades_trade SET status='filled', fill_price=1, executed_at=now() "
                "WHERE id=%s",
                [trade.id],
            )
        else:
            sql("UPDATE trades_trade SET status=%s WHERE id=%s", [terminal, trade.id])
        for status in ("placed", "in_progress", "filled", "rejected", "cancelled"):
            with pytest.raises(IntegrityError):
                sql("UPDATE trades_trade SET status=%s, reason='x' WHERE id=%s", [status, trade.id])
        assert Trade.objects.get(id=trade.id).status == terminal

    @pytest.mark.parametrize(
        ("start", "illegal"),
        [("placed", "filled"), ("in_progress", "cancelled"), ("in_progress", "placed")],
    )
    def test_illegal_moves_are_refused_by_model_and_database(self, trade, start, illegal):
        if start == "in_progress":
            sql(SEND, [trade.id])
        with pytest.raises(IllegalTransition):
            Trade.check_transition(start, illegal)
        with pytest.raises(IntegrityError):
            sql(
                "UPDATE trades_trade SET status=%s, fill_price=1, executed_at=now() WHERE id=%s",
                [illegal, trade.id],
            )

    @pytest.mark.parametrize("missing", ["submitted_at", "limit_price", "cash_held"])
    def test_a_buy_goes_out_only_with_its_terms(self, trade, missing):
        terms = {"submitted_at": "now()", "limit_price": "105", "cash_held": "105"}
        terms[missing] = "NULL"
        assignments = ", ".join(f"{column}={value}" for column, value in terms.items())
        with pytest.raises(IntegrityError, match="trade_sent_has_terms"):
            sql(
                f"UPDATE trades_trade SET status='in_progress', {assignments} WHERE id=%s",
                [trade.id],
            )
        sql(SEND, [trade.id])
        with pytest.raises(IntegrityError, match="trade_sent_has_terms"):
            sql(f"UPDATE trades_trade SET {missing}=NULL WHERE id=%s", [trade.id])

    def test_a_sell_holds_shares_not_cash(self, customer):
        sell = trade_place(customer_id=customer.id, ticker="AAPL", side="sell", quantity=1).trade
        sql(
            "UPDATE trades_trade SET status='in_progress', submitted_at=now(), limit_price=95 "
            "WHERE id=%s",
            [sell.id],
        )
        assert Trade.objects.get(id=sell.id).status == "in_progress"

    def test_order_terms_are_immutable_and_trades_are_never_deleted(self, trade):
        with pytest.raises(IntegrityError):
            sql("UPDATE trades_trade SET quantity=1000 WHERE id=%s", [trade.id])
        with pytest.raises(IntegrityError):
            sql("DELETE FROM trades_trade WHERE id=%s", [trade.id])

    def test_transition_to_returns_the_fields_to_save(self, trade):
        assert trade.transition_to("in_progress", reason=None) == ["status", "reason"]


@pytest.mark.django_db
class TestBalancesGuards:
    def test_cash_can_never_go_negative_or_be_over_held(self, customer):
        with pytest.raises(IntegrityError):
            sql("UPDATE balances_account SET cash = -0.01 WHERE customer_id=%s", [customer.id])
        with pytest.raises(IntegrityError):
            sql(
                "UPDATE balances_account SET cash_held = cash + 1 WHERE customer_id=%s",
                [customer.id],
            )
        assert Account.objects.get(customer_id=customer.id).cash == 10000

    def test_shares_can_never_go_negative_or_be_over_held(self, customer):
        with pytest.raises(IntegrityError):
            sql("UPDATE balances_position SET quantity = -1 WHERE customer_id=%s", [customer.id])
        with pytest.raises(IntegrityError):
            sql(
                "UPDATE balances_position SET held = quantity + 1 WHERE customer_id=%s",
                [customer.id],
            )

    def test_the_ledger_is_append_only(self, customer):
        entry = LedgerEntry.objects.filter(customer_id=customer.id).first()
        with pytest.raises(IntegrityError):
            sql("UPDATE balances_ledgerentry SET cash_amount = 1 WHERE id=%s", [entry.id])
        with pytest.raises(IntegrityError):
            sql("DELETE FROM balances_ledgerentry WHERE id=%s", [entry.id])

    def test_a_trade_moves_each_kind_of_entry_at_most_once(self, customer, trade):
        insert = (
            "INSERT INTO balances_ledgerentry (customer_id, trade_id, kind, cash_amount, "
            "created_at) VALUES (%s, %s, 'buy_cash', -1, now())"
        )
        sql(insert, [customer.id, trade.id])
        with pytest.raises(IntegrityError):
            sql(insert, [customer.id, trade.id])
