"""A stateful model of one customer, checked against the real services and database
after every step: place, cancel, send, fill, reject and duplicate reports, in any order."""

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from balances.models import Account, Position
from balances.money import fill_amount
from brokerage.errors import Conflict
from execution.audit import audit
from execution.exchange_client import OrderState
from execution.in_flight import trade_put_in_flight
from execution.settlement import SettleOutcome, trade_settle
from tests.factories import create_customer, lead_shard_of, report_for
from trades.models import Trade
from trades.services import trade_cancel, trade_place

TICKERS = ["AAPL", "MSFT"]
prices = st.decimals(min_value=Decimal("1"), max_value=Decimal("500"), places=2)


class CustomerModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.customer = create_customer(cash="5000.00", positions={"AAPL": 20})
        self.shard, self.epoch = lead_shard_of(self.customer.id)
        self.cash = Decimal("5000.00")
        self.shares = {"AAPL": 20, "MSFT": 0}
        self.final: dict[int, str] = {}
        self.settled_reports: list[OrderState] = []

    def in_flight(self) -> Trade | None:
        return Trade.objects.filter(customer_id=self.customer.id, status="in_progress").first()

    @rule(
        side=st.sampled_from(["buy", "sell"]),
        ticker=st.sampled_from(TICKERS),
        quantity=st.integers(1, 40),
    )
    def place(self, side, ticker, quantity):
        trade_place(customer_id=self.customer.id, ticker=ticker, side=side, quantity=quantity)

    @rule(data=st.data())
    def cancel(self, data):
        trades = list(Trade.objects.filter(customer_id=self.customer.id).order_by("seq"))
        if not trades:
            return
        trade = data.draw(st.sampled_from(trades))
        try:
            trade_cancel(customer_id=self.customer.id, trade_id=trade.id)
            assert trade.status == "placed"
        except Conflict:
            assert trade.status != "placed"

    @rule(aapl=prices, msft=prices)
    def send(self, aapl, msft):
        trade_put_in_flight(
            shard=self.shard,
            epoch=self.epoch,
            customer_id=self.customer.id,
            quotes={"AAPL": aapl, "MSFT": msft},
        )

    @rule(fraction=st.decimals(min_value=Decimal("0.5"), max_value=Decimal("1"), places=3))
    def fill(self, fraction):
        trade = self.in_flight()
        if trade is None:
            return
        if trade.side == "buy":
            price = (trade.limit_price * fraction).quantize(Decimal("0.0001"), ROUND_FLOOR)
        else:
            price = (trade.limit_price * (2 - fraction)).quantize(Decimal("0.0001"), ROUND_CEILING)
        price = max(price, Decimal("0.0001"))
        report = report_for(trade, price=str(price))
        assert trade_settle(report=report) is SettleOutcome.SETTLED
        is_buy = trade.side == "buy"
        value = fill_amount(is_buy=is_buy, quantity=trade.quantity, price=report.fill_price)
        sign = 1 if is_buy else -1
        self.cash -= sign * value
        self.shares[trade.ticker_id] += sign * trade.quantity
        self.settled_reports.append(report)

    @rule()
    def reject(self):
        trade = self.in_flight()
        if trade is None:
            return
        report = report_for(trade, status="rejected")
        assert trade_settle(report=report) is SettleOutcome.SETTLED
        self.settled_reports.append(report)

    @rule(data=st.data())
    def duplicate_report(self, data):
        if not self.settled_reports:
            return
        report = data.draw(st.sampled_from(self.settled_reports))
        assert trade_settle(report=report) is SettleOutcome.ALREADY_FINAL

    @invariant()
    def balances_match_the_model_and_the_ledger(self):
        account = Account.objects.get(customer_id=self.customer.id)
        assert account.cash == self.cash
        assert account.cash >= 0 and account.cash_held >= 0
        for ticker, quantity in self.shares.items():
            position = Position.objects.filter(customer_id=self.customer.id, ticker=ticker).first()
            assert (position.quantity if position else 0) == quantity
        broken = [(c.name, c.failures) for c in audit() if not c.ok]
        assert not broken, broken

    @invariant()
    def terminal_states_are_final(self):
        for trade_id, status in self.final.items():
            assert Trade.objects.get(id=trade_id).status == status
        for trade_id, status in Trade.objects.filter(
            customer_id=self.customer.id, status__in=["filled", "rejected", "cancelled"]
        ).values_list("id", "status"):
            self.final.setdefault(trade_id, status)


@pytest.mark.django_db
def test_customer_model():
    run_state_machine_as_test(
        CustomerModel,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
