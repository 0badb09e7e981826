"""Staff movements of cash and shares (balances.movements): applied at once below the
approval threshold, maker-checker above it, every refusal writing nothing, and the
ledger reconciling after each (manage.py audit's checks)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, transaction

from balances.models import Account, LedgerEntry, Position, StaffMovement
from balances.movements import MovementTerms, movement_approve, movement_propose, movement_reject
from brokerage.errors import BrokerageError
from execution.audit import audit
from staff_actions.models import StaffAction
from tests.factories import callback_body, place_and_send, signed_headers

pytestmark = pytest.mark.django_db


def make_staff(name: str, *permissions: str, is_staff: bool = True):
    user = get_user_model().objects.create_user(username=name, is_staff=is_staff)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return get_user_model().objects.get(pk=user.pk)  # a fresh permission cache


@pytest.fixture
def maker():
    return make_staff("maker", "propose_movement")


@pytest.fixture
def checker():
    return make_staff("checker", "propose_movement", "approve_movement")


def propose(staff, customer_id, kind, key="k-1", memo="goodwill", **terms):
    return movement_propose(
        staff=staff,
        idempotency_key=key,
        terms=MovementTerms(customer_id=customer_id, kind=kind, memo=memo, **terms),
    )


def cash(customer_id) -> Decimal:
    return Account.objects.get(customer_id=customer_id).cash


def shares(customer_id, ticker="AAPL") -> int:
    position = Position.objects.filter(customer_id=customer_id, ticker=ticker).first()
    return 0 if position is None else position.quantity


def assert_reconciles():
    broken = [check for check in audit() if not check.ok]
    assert broken == [], [(c.name, c.failures) for c in broken]


def refused(code: str, action) -> BrokerageError:
    with pytest.raises(BrokerageError) as raised:
        action()
    assert raised.value.code == code, raised.value.detail
    return raised.value


class Unchanged:
    """Snapshot of everything a movement could write."""

    def __init__(self, customer_id):
        self.customer_id = customer_id
        self.state = self.now()

    def now(self):
        return (
            cash(self.customer_id),
            shares(self.customer_id),
            LedgerEntry.objects.count(),
            StaffMovement.objects.count(),
            StaffAction.objects.count(),
        )

    def check(self):
        assert self.now() == self.state


def test_a_small_deposit_is_applied_at_once_with_its_one_ledger_entry(customer, maker):
    movement = propose(maker, customer.id, "deposit", amount=Decimal("250.00"))

    assert movement.status == "applied" and movement.entry_id is not None
    assert cash(customer.id) == Decimal("10250.00")
    entry = LedgerEntry.objects.get(id=movement.entry_id)
    assert (entry.kind, entry.cash_amount, entry.trade_id) == ("deposit", Decimal("250.00"), None)
    assert entry.staff_movement.made_by == maker and entry.staff_movement.memo == "goodwill"
    assert_reconciles()


def test_withdrawal_and_share_transfers_move_the_balances_down_and_up(customer, maker):
    propose(maker, customer.id, "withdrawal", key="w", amount="100.5")
    propose(maker, customer.id, "shares_in", key="in", ticker="msft", quantity=3)
    propose(maker, customer.id, "shares_out", key="out", ticker="AAPL", quantity=4)

    assert cash(customer.id) == Decimal("9899.50")
    assert shares(customer.id, "MSFT") == 3 and shares(customer.id) == 6
    kinds = (
        LedgerEntry.objects.filter(trade=None)
        .order_by("-id")
        .values_list("kind", "cash_amount", "share_quantity")[:3]
    )
    assert list(kinds) == [
        ("shares_out", None, -4),
        ("shares_in", None, 3),
        ("withdrawal", Decimal("-100.50"), None),
    ]
    assert_reconciles()


@pytest.mark.parametrize(
    "amount", ["0", "-5.00", "1.001", "abc", "NaN", "Infinity", "1e40", None, "0.001"]
)
def test_a_bad_amount_is_refused_and_writes_nothing(customer, maker, amount):
    unchanged = Unchanged(customer.id)
    refused("invalid_amount", lambda: propose(maker, customer.id, "deposit", amount=amount))
    unchanged.check()


@pytest.mark.parametrize(
    ("terms", "code"),
    [
        ({"kind": "deposit", "amount": "5", "memo": "  "}, "memo_required"),
        ({"kind": "gift", "amount": "5"}, "invalid_kind"),
        ({"kind": "shares_in", "ticker": "AAPL", "quantity": 0}, "invalid_quantity"),
        ({"kind": "shares_in", "ticker": "AAPL", "quantity": True}, "invalid_quantity"),
        ({"kind": "shares_in", "ticker": "A A", "quantity": 1}, "invalid_ticker"),
        ({"kind": "reversal"}, "invalid_entry"),
        ({"kind": "reversal", "reverses": 10**9}, "unknown_entry"),
    ],
)
def test_bad_terms_are_refused_and_write_nothing(customer, maker, terms, code):
    unchanged = Unchanged(customer.id)
    refused(code, lambda: propose(maker, customer.id, **{"memo": "m", **terms}))
    unchanged.check()


def test_an_unknown_customer_is_404(maker):
    error = refused("unknown_customer", lambda: propose(maker, 10**9, "deposit", amount="5"))
    assert error.status_code == 404
    assert not StaffMovement.objects.exists()


def test_a_withdrawal_beyond_available_is_409_and_counts_the_held_cash(customer, maker):
    place_and_send(customer.id, quantity=50, quote="100.00")  # holds over 5,000
    available = Account.objects.get(customer_id=customer.id).available_cash
    assert Decimal("0") < available < Decimal("5000")
    unchanged = Unchanged(customer.id)

    error = refused(
        "insufficient_available",
        lambda: propose(maker, customer.id, "withdrawal", amount=available + Decimal("0.01")),
    )
    assert error.status_code == 409
    unchanged.check()
    propose(maker, customer.id, "withdrawal", amount=available)
    assert Account.objects.get(customer_id=customer.id).available_cash == 0
    assert_reconciles()


def test_shares_held_by_a_sell_cannot_be_transferred_out(customer, maker):
    place_and_send(customer.id, side="sell", quantity=8)
    unchanged = Unchanged(customer.id)
    refused(
        "insufficient_shares",
        lambda: propose(maker, customer.id, "shares_out", ticker="AAPL", quantity=3),
    )
    refused(
        "insufficient_shares",
        lambda: propose(maker, customer.id, "shares_out", ticker="TSLA", quantity=1),
    )
    unchanged.check()


def test_the_same_key_replays_and_other_terms_under_it_are_409(customer, make_customer, maker):
    first = propose(maker, customer.id, "deposit", amount="10.00")
    again = propose(maker, customer.id, "deposit", amount="10")
    assert again.id == first.id and cash(customer.id) == Decimal("10010.00")

    other = make_customer()
    unchanged = Unchanged(customer.id)
    refused("idempotency_key_reused", lambda: propose(maker, customer.id, "deposit", amount="11"))
    refused("idempotency_key_reused", lambda: propose(maker, other.id, "deposit", amount="10"))
    refused("invalid_idempotency_key", lambda: propose(maker, customer.id, "deposit", key=""))
    unchanged.check()


def test_above_the_threshold_a_second_staff_member_approves(customer, maker, checker, settings):
    settings.STAFF_APPROVAL_CASH_ABOVE = Decimal("1000.00")
    pending = propose(maker, customer.id, "deposit", amount="1000.01")
    assert pending.status == "pending" and pending.entry_id is None
    assert cash(customer.id) == Decimal("10000.00")

    own = make_staff("own-checker", "propose_movement", "approve_movement")
    mine = propose(own, customer.id, "deposit", key="k-2", amount="5000")
    error = refused(
        "maker_cannot_approve", lambda: movement_approve(staff=own, movement_id=mine.id)
    )
    assert error.status_code == 403
    refused("permission_denied", lambda: movement_approve(staff=maker, movement_id=pending.id))

    approved = movement_approve(staff=checker, movement_id=pending.id)
    assert approved.status == "applied" and approved.decided_by == checker
    assert cash(customer.id) == Decimal("11000.01")
    refused("movement_not_pending", lambda: movement_approve(staff=checker, movement_id=pending.id))
    assert cash(customer.id) == Decimal("11000.01")
    record = StaffAction.objects.filter(movement_id=pending.id).order_by("id")
    assert [(a.kind, a.staff, a.customer_id) for a in record] == [
        ("movement_proposed", maker, customer.id),
        ("movement_approved", checker, customer.id),
    ]
    assert LedgerEntry.objects.filter(kind="deposit", customer_id=customer.id).count() == 2
    assert_reconciles()


def test_a_rejected_or_expired_request_moves_nothing(customer, maker, checker, settings):
    settings.STAFF_APPROVAL_CASH_ABOVE = Decimal("100.00")
    entries = LedgerEntry.objects.count()
    rejected = propose(maker, customer.id, "withdrawal", key="r", amount="500")
    settings.STAFF_APPROVAL_EXPIRES_HOURS = 0
    expiring = propose(maker, customer.id, "deposit", key="e", amount="500")
    refused(
        "note_required", lambda: movement_reject(staff=checker, movement_id=rejected.id, note="")
    )
    refused(
        "permission_denied",
        lambda: movement_reject(staff=make_staff("other"), movement_id=rejected.id, note="no"),
    )
    assert movement_reject(staff=checker, movement_id=rejected.id, note="no").status == "rejected"
    withdrawn = propose(maker, customer.id, "deposit", key="mine", amount="500")
    assert movement_reject(staff=maker, movement_id=withdrawn.id, note="typo").status == "rejected"
    refused(
        "movement_not_pending", lambda: movement_approve(staff=checker, movement_id=rejected.id)
    )

    refused("movement_expired", lambda: movement_approve(staff=checker, movement_id=expiring.id))
    assert StaffMovement.objects.get(id=expiring.id).status == "expired"
    assert cash(customer.id) == Decimal("10000.00")
    assert LedgerEntry.objects.count() == entries


def test_an_approval_checks_available_again(customer, maker, checker, settings):
    settings.STAFF_APPROVAL_CASH_ABOVE = Decimal("5000.00")
    pending = propose(maker, customer.id, "withdrawal", key="big", amount="6000")
    propose(maker, customer.id, "withdrawal", key="small", amount="4500")

    refused(
        "insufficient_available", lambda: movement_approve(staff=checker, movement_id=pending.id)
    )
    assert StaffMovement.objects.get(id=pending.id).status == "pending"
    assert cash(customer.id) == Decimal("5500.00")


def test_a_correction_is_a_reversing_entry_and_an_entry_is_reversed_once(customer, maker):
    deposit = propose(maker, customer.id, "deposit", key="d", amount="75.25")
    reversal = propose(maker, customer.id, "reversal", key="rev", reverses=deposit.entry_id)

    entry = LedgerEntry.objects.get(id=reversal.entry_id)
    assert (entry.kind, entry.cash_amount) == ("reversal", Decimal("-75.25"))
    assert cash(customer.id) == Decimal("10000.00")
    assert LedgerEntry.objects.filter(id=deposit.entry_id).exists()  # nothing edited
    refused(
        "already_reversed",
        lambda: propose(maker, customer.id, "reversal", key="rev2", reverses=deposit.entry_id),
    )
    refused(
        "not_reversible",
        lambda: propose(maker, customer.id, "reversal", key="rev3", reverses=entry.id),
    )
    assert_reconciles()


def test_a_trades_settlement_is_not_reversible(client, customer, maker):
    trade, _ = place_and_send(customer.id, quantity=1)
    body = callback_body(trade)
    client.generic(
        "POST",
        "/exchange/callback/",
        body,
        content_type="application/json",
        **signed_headers(body),
    )
    fill = LedgerEntry.objects.filter(trade=trade).first()
    assert fill is not None
    refused("not_reversible", lambda: propose(maker, customer.id, "reversal", reverses=fill.id))


def test_a_reversal_of_shares_needs_them_available(customer, maker):
    transfer = propose(maker, customer.id, "shares_in", key="in", ticker="NVDA", quantity=5)
    propose(maker, customer.id, "shares_out", key="out", ticker="NVDA", quantity=2)
    refused(
        "insufficient_shares",
        lambda: propose(maker, customer.id, "reversal", key="rev", reverses=transfer.entry_id),
    )


def test_only_staff_with_the_permission_move_money(customer, make_customer):
    viewer = make_staff("viewer")
    not_staff = make_staff("not-staff", "propose_movement", is_staff=False)
    for who in (viewer, not_staff):
        refused("permission_denied", lambda w=who: propose(w, customer.id, "deposit", amount="5"))
    assert not StaffMovement.objects.exists()


def test_the_database_refuses_to_change_a_decided_movement_or_its_record(customer, maker):
    movement = propose(maker, customer.id, "deposit", amount="5")
    action = StaffAction.objects.get(movement_id=movement.id)
    assert (action.kind, action.reason) == ("movement_applied", "goodwill")
    assert (
        action.details["amount"] == "5.00" and action.details["ledger_entry"] == movement.entry_id
    )
    with pytest.raises(DatabaseError), transaction.atomic():
        StaffAction.objects.filter(id=action.id).update(reason="edited")
    with pytest.raises(DatabaseError), transaction.atomic():
        StaffAction.objects.filter(id=action.id).delete()
    with pytest.raises(DatabaseError), transaction.atomic():
        StaffMovement.objects.filter(id=movement.id).update(memo="edited")
    with pytest.raises(DatabaseError), transaction.atomic():
        StaffMovement.objects.filter(id=movement.id).delete()


def test_the_commands_move_money_and_say_why_they_refuse(customer, maker, checker, settings):
    settings.STAFF_APPROVAL_CASH_ABOVE = Decimal("100.00")

    def run(*args) -> dict:
        from io import StringIO

        out = StringIO()
        call_command(*args, stdout=out)
        return json.loads(out.getvalue())

    made = run(
        "move_money",
        str(customer.id),
        "deposit",
        "--amount",
        "150.00",
        "--memo",
        "wire 123",
        "--key",
        "wire-123",
        "--staff",
        "maker",
    )
    assert made["status"] == "pending"
    approved = run("approve_movement", str(made["movement"]), "--staff", "checker")
    assert approved["status"] == "applied" and approved["ledger_entry"]
    assert cash(customer.id) == Decimal("10150.00")
    with pytest.raises(CommandError, match="maker_cannot_approve"):
        run(
            "move_money",
            str(customer.id),
            "deposit",
            "--amount",
            "500",
            "--memo",
            "m",
            "--key",
            "x",
            "--staff",
            "checker",
        )
        run("approve_movement", str(StaffMovement.objects.latest("id").id), "--staff", "checker")
    with pytest.raises(CommandError, match="insufficient_available"):
        run(
            "move_money",
            str(customer.id),
            "withdrawal",
            "--amount",
            "20000",
            "--memo",
            "m",
            "--key",
            "y",
            "--staff",
            "maker",
        )
    with pytest.raises(CommandError, match="permission_denied"):
        run(
            "move_money",
            str(customer.id),
            "deposit",
            "--amount",
            "1",
            "--memo",
            "m",
            "--key",
            "z",
            "--staff",
            "nobody",
        )
