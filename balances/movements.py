"""Money and shares moved by staff: deposits, withdrawals, share transfers in and out, and
reversing entries that correct one of those. Each is a StaffMovement (the terms, the memo,
who made it and its idempotency key) and, once applied, exactly one ledger entry, written
under the customer's account lock like every other movement. Nothing is ever edited: a
mistake is corrected by a reversal, itself a movement.

Above STAFF_APPROVAL_CASH_ABOVE dollars (or STAFF_APPROVAL_SHARES_ABOVE shares) a movement
waits, `pending`, for a second staff member's approval (maker-checker); a rejected or
expired one moves nothing. Every check runs again when it is applied: an approval cannot
take a balance below what is available then."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from balances.models import LedgerEntry, StaffMovement
from balances.money import CENT, MAX_CASH
from balances.services import COST_BASIS_OUT_SQL, NoAccount, account_lock
from brokerage.errors import BrokerageError, Conflict, NotFound
from outbox.notify import customer_wake_on_commit
from staff_actions.models import StaffAction
from staff_actions.services import NotAllowed, Staff, staff_action_record, staff_id_with

Kind = StaffMovement.Kind
Status = StaffMovement.Status

PROPOSE = "balances.propose_movement"
APPROVE = "balances.approve_movement"

_TICKER = re.compile(r"[A-Z][A-Z0-9.]{0,9}")
_KEY = re.compile(r"[A-Za-z0-9._:-]{1,64}")
MAX_SHARES = 10**12
MAX_MEMO = 500

# The movement's ledger kind: a reversal's entry is of kind `reversal`.
_LEDGER_KIND = {
    Kind.DEPOSIT: LedgerEntry.Kind.DEPOSIT,
    Kind.WITHDRAWAL: LedgerEntry.Kind.WITHDRAWAL,
    Kind.SHARES_IN: LedgerEntry.Kind.SHARES_IN,
    Kind.SHARES_OUT: LedgerEntry.Kind.SHARES_OUT,
    Kind.REVERSAL: LedgerEntry.Kind.REVERSAL,
}
# What a reversal may correct: the movements of staff and of an account's opening, never
# a trade's settlement (trades are final) and never a reversal (make the movement again).
REVERSIBLE = frozenset(
    {
        LedgerEntry.Kind.DEPOSIT,
        LedgerEntry.Kind.WITHDRAWAL,
        LedgerEntry.Kind.SHARES_IN,
        LedgerEntry.Kind.SHARES_OUT,
    }
)

# The statuses of a reversal that holds its entry: one at most per entry.
REVERSING = (Status.PENDING, Status.APPLIED)


class MovementRefused(BrokerageError):
    """Bad terms: nothing was written."""


@dataclass(frozen=True)
class MovementTerms:
    """What a staff member asks for. `amount` for cash, `ticker` and `quantity` for shares,
    `reverses` (a ledger entry id) for a reversal."""

    customer_id: int
    kind: str
    memo: str
    amount: Decimal | None = None
    ticker: str | None = None
    quantity: int | None = None
    reverses: int | None = None


@dataclass(frozen=True)
class _Delta:
    cash: Decimal | None
    ticker: str | None
    shares: int | None

    @property
    def magnitude_needs_approval(self) -> bool:
        if self.cash is not None:
            return abs(self.cash) > settings.STAFF_APPROVAL_CASH_ABOVE
        assert self.shares is not None
        return abs(self.shares) > settings.STAFF_APPROVAL_SHARES_ABOVE


def _cash(amount: Decimal | str | None) -> Decimal:
    try:
        value = Decimal(str(amount)) if amount is not None else None
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite():
        raise MovementRefused("invalid_amount", "The amount must be a number of dollars.")
    if value <= 0:
        raise MovementRefused("invalid_amount", "The amount must be more than zero.")
    if value > MAX_CASH:
        raise MovementRefused("invalid_amount", "The amount is larger than any balance.")
    if value != value.quantize(CENT):
        raise MovementRefused("invalid_amount", "The amount has more than 2 decimals.")
    return value.quantize(CENT)


def _shares(quantity: int | None) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
        raise MovementRefused("invalid_quantity", "The quantity must be a whole number above 0.")
    if quantity > MAX_SHARES:
        raise MovementRefused("invalid_quantity", f"The quantity is above {MAX_SHARES}.")
    return quantity


def _ticker(ticker: str | None) -> str:
    value = (ticker or "").strip().upper()
    if not _TICKER.fullmatch(value):
        raise MovementRefused("invalid_ticker", "The ticker must be 1 to 10 letters or digits.")
    return value


def _checked(terms: MovementTerms) -> MovementTerms:
    """The terms in their one spelling, or MovementRefused."""
    memo = (terms.memo or "").strip()
    if not memo:
        raise MovementRefused("memo_required", "Say why: every staff movement has a memo.")
    if len(memo) > MAX_MEMO:
        raise MovementRefused("memo_too_long", f"The memo is longer than {MAX_MEMO} characters.")
    if terms.kind not in Kind.values:
        raise MovementRefused("invalid_kind", f"The kind must be one of {', '.join(Kind.values)}.")
    kind = Kind(terms.kind)
    base = MovementTerms(customer_id=terms.customer_id, kind=kind, memo=memo)
    if kind in (Kind.DEPOSIT, Kind.WITHDRAWAL):
        return dataclasses.replace(base, amount=_cash(terms.amount))
    if kind in (Kind.SHARES_IN, Kind.SHARES_OUT):
        return dataclasses.replace(
            base, ticker=_ticker(terms.ticker), quantity=_shares(terms.quantity)
        )
    if not isinstance(terms.reverses, int) or isinstance(terms.reverses, bool):
        raise MovementRefused("invalid_entry", "A reversal names the ledger entry it reverses.")
    return dataclasses.replace(base, reverses=terms.reverses)


def _key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise MovementRefused(
            "invalid_idempotency_key", "The idempotency key is 1 to 64 of A-Z a-z 0-9 . _ : -."
        )
    return key


def _same_terms(movement: StaffMovement, terms: MovementTerms) -> bool:
    return (
        movement.customer_id == terms.customer_id
        and movement.kind == terms.kind
        and movement.memo == terms.memo
        and movement.cash_amount == terms.amount
        and movement.ticker == terms.ticker
        and movement.share_quantity == terms.quantity
        and movement.reverses_id == terms.reverses
    )


def _delta(terms: MovementTerms) -> _Delta:
    """The signed change of a balance the terms make (a reversal: the entry's, negated)."""
    if terms.kind == Kind.DEPOSIT:
        return _Delta(cash=terms.amount, ticker=None, shares=None)
    if terms.kind == Kind.WITHDRAWAL:
        assert terms.amount is not None
        return _Delta(cash=-terms.amount, ticker=None, shares=None)
    if terms.kind == Kind.SHARES_IN:
        return _Delta(cash=None, ticker=terms.ticker, shares=terms.quantity)
    if terms.kind == Kind.SHARES_OUT:
        assert terms.quantity is not None
        return _Delta(cash=None, ticker=terms.ticker, shares=-terms.quantity)
    return _entry_delta(_reversible_entry(terms))


def _reversible_entry(terms: MovementTerms) -> LedgerEntry:
    assert terms.reverses is not None
    entry = LedgerEntry.objects.filter(id=terms.reverses, customer_id=terms.customer_id).first()
    if entry is None:
        raise NotFound("unknown_entry", "This customer has no ledger entry with that id.")
    if entry.trade_id is not None or entry.kind not in REVERSIBLE:
        raise Conflict(
            "not_reversible",
            "Only deposits, withdrawals and share transfers can be reversed; a trade's "
            "settlement is final (move money with a deposit or a withdrawal instead).",
        )
    if StaffMovement.objects.filter(reverses=entry, status__in=REVERSING).exists():
        raise _already_reversed(entry.id)
    return entry


def _already_reversed(entry_id: int | None) -> Conflict:
    return Conflict("already_reversed", f"Ledger entry {entry_id} is already reversed.")


def _entry_delta(entry: LedgerEntry) -> _Delta:
    if entry.cash_amount is not None:
        return _Delta(cash=-entry.cash_amount, ticker=None, shares=None)
    assert entry.share_quantity is not None
    return _Delta(cash=None, ticker=entry.ticker, shares=-entry.share_quantity)


def lock_customer_account(customer_id: int) -> None:
    """The customer lock for a staff action naming a customer by id: an unknown one is a
    404 (the customer API's NoAccount is a 403 about the caller)."""
    try:
        account_lock(customer_id=customer_id)
    except NoAccount:
        raise unknown_customer(customer_id) from None


def unknown_customer(customer_id: int) -> NotFound:
    return NotFound("unknown_customer", f"No customer {customer_id} with an account.")


def _available(delta: _Delta, customer_id: int) -> None:
    """Refuse a movement that would take cash or shares below what is available now."""
    with connection.cursor() as cursor:
        if delta.cash is not None:
            if delta.cash >= 0:
                return
            cursor.execute(
                "SELECT cash - cash_held FROM balances_account WHERE customer_id = %s",
                [customer_id],
            )
            (available,) = cursor.fetchone() or (Decimal(0),)
            if available < -delta.cash:
                raise Conflict(
                    "insufficient_available",
                    f"Only {available} is available (cash not held for open buys).",
                )
            return
        assert delta.shares is not None
        if delta.shares >= 0:
            return
        cursor.execute(
            "SELECT quantity - held FROM balances_position WHERE customer_id = %s AND ticker = %s",
            [customer_id, delta.ticker],
        )
        (shares,) = cursor.fetchone() or (0,)
        if shares < -delta.shares:
            raise Conflict(
                "insufficient_shares",
                f"Only {shares} {delta.ticker} are available (not held for open sells).",
            )


def _apply(movement: StaffMovement, delta: _Delta) -> None:
    """Move the balance and write the one ledger entry. Caller holds the account lock."""
    _available(delta, movement.customer_id)
    customer_wake_on_commit(movement.customer_id)
    with connection.cursor() as cursor:
        if delta.cash is not None:
            cursor.execute(
                "UPDATE balances_account SET cash = cash + %s WHERE customer_id = %s",
                [delta.cash, movement.customer_id],
            )
        elif delta.shares is not None and delta.shares < 0:
            out = COST_BASIS_OUT_SQL.format(quantity="%s")
            cursor.execute(
                f"UPDATE balances_position SET quantity = quantity + %s, "
                f"cost_basis = cost_basis - {out} WHERE customer_id = %s AND ticker = %s",
                [delta.shares, -delta.shares, movement.customer_id, delta.ticker],
            )
        else:
            cursor.execute(
                "INSERT INTO balances_position (customer_id, ticker, quantity, held) "
                "VALUES (%s, %s, %s, 0) ON CONFLICT (customer_id, ticker) "
                "DO UPDATE SET quantity = balances_position.quantity + EXCLUDED.quantity",
                [movement.customer_id, delta.ticker, delta.shares],
            )
        cursor.execute(
            "INSERT INTO balances_ledgerentry (customer_id, trade_id, kind, ticker, cash_amount, "
            "share_quantity, created_at) VALUES (%s, NULL, %s, %s, %s, %s, now()) RETURNING id",
            [
                movement.customer_id,
                _LEDGER_KIND[Kind(movement.kind)],
                delta.ticker,
                delta.cash,
                delta.shares,
            ],
        )
        (entry_id,) = cursor.fetchone() or (None,)
    movement.entry_id = entry_id
    movement.status = Status.APPLIED
    movement.applied_at = timezone.now()


def movement_propose(*, staff: Staff, idempotency_key: str, terms: MovementTerms) -> StaffMovement:
    """Make the movement, or, above the approval threshold, ask for a second staff member's
    approval. The same key with the same terms returns the first movement; with other
    terms it is refused (409)."""
    maker_id = staff_id_with(staff, PROPOSE)
    key = _key(idempotency_key)
    terms = _checked(terms)
    with transaction.atomic():
        lock_customer_account(terms.customer_id)
        existing = StaffMovement.objects.filter(idempotency_key=key).first()
        if existing is not None:
            if not _same_terms(existing, terms):
                raise _key_reused(key)
            return existing
        delta = _delta(terms)
        movement = StaffMovement(
            idempotency_key=key,
            customer_id=terms.customer_id,
            kind=terms.kind,
            memo=terms.memo,
            cash_amount=terms.amount,
            ticker=terms.ticker,
            share_quantity=terms.quantity,
            reverses_id=terms.reverses,
            made_by_id=maker_id,
        )
        if delta.magnitude_needs_approval:
            _available(delta, terms.customer_id)
            movement.status = Status.PENDING
            movement.expires_at = timezone.now() + timedelta(
                hours=settings.STAFF_APPROVAL_EXPIRES_HOURS
            )
        else:
            _apply(movement, delta)
        try:
            with transaction.atomic():
                movement.save(force_insert=True)
        except IntegrityError:
            # The key was taken meanwhile by a movement of another customer.
            raise _key_reused(key) from None
        _record(
            movement,
            maker_id,
            StaffAction.Kind.MOVEMENT_PROPOSED
            if movement.status == Status.PENDING
            else StaffAction.Kind.MOVEMENT_APPLIED,
            movement.memo,
        )
    return movement


def _record(movement: StaffMovement, staff_id: int, kind: str, reason: str) -> None:
    staff_action_record(
        staff_id=staff_id,
        kind=kind,
        customer_id=movement.customer_id,
        movement_id=movement.id,
        reason=reason,
        details={
            "kind": movement.kind,
            "status": movement.status,
            "amount": None if movement.cash_amount is None else str(movement.cash_amount),
            "ticker": movement.ticker,
            "quantity": movement.share_quantity,
            "reverses": movement.reverses_id,
            "ledger_entry": movement.entry_id,
        },
    )


def _key_reused(key: str) -> Conflict:
    return Conflict(
        "idempotency_key_reused",
        f"The idempotency key {key!r} was used for a movement with other terms.",
    )


def _pending(movement_id: int) -> StaffMovement:
    """The movement, locked, after its account's lock (the lock order of every mover)."""
    customer_id = (
        StaffMovement.objects.filter(id=movement_id).values_list("customer_id", flat=True).first()
    )
    if customer_id is None:
        raise NotFound("unknown_movement", f"No staff movement {movement_id}.")
    lock_customer_account(customer_id)
    return StaffMovement.objects.select_for_update().get(id=movement_id)


def _not_pending(movement: StaffMovement) -> Conflict:
    return Conflict(
        "movement_not_pending", f"Movement {movement.id} is {movement.status}, not pending."
    )


def movement_approve(*, staff: Staff, movement_id: int) -> StaffMovement:
    """The checker's approval: the movement is applied now, with every check again. The
    maker cannot approve their own; an expired request is marked so and moves nothing."""
    checker_id = staff_id_with(staff, APPROVE)
    expired = False
    with transaction.atomic():
        movement = _pending(movement_id)
        if movement.status != Status.PENDING:
            raise _not_pending(movement)
        if movement.made_by_id == checker_id:
            raise NotAllowed(
                "maker_cannot_approve", "A second staff member must approve this movement."
            )
        if movement.expires_at is not None and movement.expires_at <= timezone.now():
            _decide(movement, checker_id, Status.EXPIRED, "")
            _record(movement, checker_id, StaffAction.Kind.MOVEMENT_EXPIRED, "")
            expired = True
        else:
            _apply(movement, _movement_delta(movement))
            movement.decided_by_id = checker_id
            movement.decided_at = movement.applied_at
            movement.save()
            _record(movement, checker_id, StaffAction.Kind.MOVEMENT_APPROVED, "")
    if expired:
        raise Conflict("movement_expired", f"Movement {movement_id} expired unapproved.")
    return movement


def _movement_delta(movement: StaffMovement) -> _Delta:
    """A pending movement's change (a second reversal of its entry the database refuses:
    StaffMovement's `staff_movement_reverses_once`)."""
    if movement.kind == Kind.REVERSAL:
        assert movement.reverses_id is not None
        return _entry_delta(LedgerEntry.objects.get(id=movement.reverses_id))
    return _delta(
        MovementTerms(
            customer_id=movement.customer_id,
            kind=movement.kind,
            memo=movement.memo,
            amount=movement.cash_amount,
            ticker=movement.ticker,
            quantity=movement.share_quantity,
        )
    )


def movement_reject(*, staff: Staff, movement_id: int, note: str) -> StaffMovement:
    """Refuse a pending movement (a checker, or its maker withdrawing it): nothing moves."""
    note = (note or "").strip()
    if not note:
        raise MovementRefused("note_required", "Say why the movement is rejected.")
    checker_id = staff_id_with(staff, PROPOSE)
    with transaction.atomic():
        movement = _pending(movement_id)
        if movement.made_by_id != checker_id:
            staff_id_with(staff, APPROVE)
        if movement.status != Status.PENDING:
            raise _not_pending(movement)
        _decide(movement, checker_id, Status.REJECTED, note[:MAX_MEMO])
        _record(movement, checker_id, StaffAction.Kind.MOVEMENT_REJECTED, note[:MAX_MEMO])
    return movement


def _decide(movement: StaffMovement, staff_id: int, status: str, note: str) -> None:
    movement.status = status
    movement.decided_by_id = staff_id
    movement.decided_at = timezone.now()
    movement.decision_note = note
    movement.save()
