"""What staff do to a customer's account: restrict, reopen or close it, and write notes.
Each change is one transaction under the account lock, with its staff action."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from api_keys.services import api_key_revoke
from balances.models import Account, Position
from balances.movements import lock_customer_account, unknown_customer
from brokerage.errors import BrokerageError, Conflict, NotFound
from staff_actions.models import StaffAction
from staff_actions.services import Staff, staff_action_record, staff_id_with
from trades.models import Trade

RESTRICT = "balances.restrict_account"
WRITE_NOTE = "staff_actions.write_note"
MAX_TEXT = 2000


def required_text(text: str, what: str) -> str:
    value = (text or "").strip()
    if not value:
        raise BrokerageError(f"{what}_required", f"Say why: the {what} is required.")
    if len(value) > MAX_TEXT:
        raise BrokerageError(f"{what}_too_long", f"The {what} is over {MAX_TEXT} characters.")
    return value


def _why_not_closable(account: Account) -> list[str]:
    reasons = []
    if account.cash or account.cash_held:
        reasons.append(f"cash {account.cash} (withdraw it first)")
    shares = Position.objects.filter(customer_id=account.customer_id, quantity__gt=0)
    if shares.exists():
        held = ", ".join(f"{p.quantity} {p.ticker}" for p in shares.order_by("ticker")[:5])
        reasons.append(f"shares {held} (sell or transfer them out first)")
    open_trades = Trade.objects.filter(customer_id=account.customer_id, status__in=Trade.OPEN)
    if open_trades.exists():
        reasons.append(f"{open_trades.count()} open trade(s) (cancel or wait for them)")
    return reasons


def account_status_set(*, staff: Staff, customer_id: int, status: str, reason: str) -> Account:
    """Restrict (trading_blocked, closing_only), reopen (active) or close the account.

    Closing needs an empty account (no cash, no shares, no open trades) and revokes the
    customer's API key; it is final. A restricted account keeps its key, so the customer
    can still see the account and their trades and cancel a placed one. Trades placed
    before a restriction are still sent: cancel them for the customer if they must not."""
    staff_id = staff_id_with(staff, RESTRICT)
    if status not in Account.Status.values:
        raise BrokerageError(
            "invalid_status", f"The status must be one of {', '.join(Account.Status.values)}."
        )
    reason = required_text(reason, "reason")
    with transaction.atomic():
        lock_customer_account(customer_id)
        account = Account.objects.get(customer_id=customer_id)
        before = account.status
        if before == Account.Status.CLOSED:
            raise Conflict("account_closed", "This account is closed; closing is final.")
        if status == before:
            raise Conflict("status_unchanged", f"The account is already {status}.")
        if status == Account.Status.CLOSED:
            blockers = _why_not_closable(account)
            if blockers:
                raise Conflict(
                    "account_not_empty",
                    "The account cannot be closed while it holds " + "; ".join(blockers) + ".",
                    extra={"blockers": blockers},
                )
            api_key_revoke(customer_id=customer_id)
            # And the browsable API's logins: a session is only good while the password
            # it was made with is the user's.
            customer = get_user_model().objects.get(id=customer_id)
            customer.set_unusable_password()
            customer.save(update_fields=["password"])
        account.status = status
        account.status_reason = "" if status == Account.Status.ACTIVE else reason
        account.status_changed_by_id = staff_id
        account.status_changed_at = timezone.now()
        account.save(
            update_fields=["status", "status_reason", "status_changed_by", "status_changed_at"]
        )
        staff_action_record(
            staff_id=staff_id,
            kind=StaffAction.Kind.ACCOUNT_STATUS,
            customer_id=customer_id,
            reason=reason,
            details={"from": before, "to": status},
        )
    return account


def note_write(
    *, staff: Staff, customer_id: int, text: str, trade_id: int | None = None
) -> StaffAction:
    """A note on the customer (and one of their trades), on the record like any action."""
    staff_id = staff_id_with(staff, WRITE_NOTE)
    text = required_text(text, "note")
    if not Account.objects.filter(customer_id=customer_id).exists():
        raise unknown_customer(customer_id)
    if (
        trade_id is not None
        and not Trade.objects.filter(id=trade_id, customer_id=customer_id).exists()
    ):
        raise NotFound("unknown_trade", f"Customer {customer_id} has no trade {trade_id}.")
    return staff_action_record(
        staff_id=staff_id,
        kind=StaffAction.Kind.NOTE,
        customer_id=customer_id,
        trade_id=trade_id,
        reason=text,
    )
