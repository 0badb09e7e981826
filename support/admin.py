"""The support desk in the Django admin: one page per customer (the account, positions,
open trades, the ledger's last entries, movements, staff actions and notes) with the
actions the staff member's role allows. Every action goes through the services, which
check the permission, the lock and the rules again, and puts itself on the record."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from balances.models import Account, LedgerEntry, Position, StaffMovement
from balances.movements import (
    APPROVE,
    PROPOSE,
    MovementTerms,
    movement_approve,
    movement_propose,
    movement_reject,
)
from brokerage.admin_mixins import ReadOnlyAdmin
from brokerage.errors import BrokerageError
from staff_actions.models import StaffAction
from staff_actions.services import NotAllowed
from support.accounts import RESTRICT, WRITE_NOTE, account_status_set, note_write
from support.forms import CancelForm, MovementForm, NoteForm, RejectForm, StatusForm
from support.trades import CANCEL, RESOLVE, trade_cancel_for_customer, trade_resolve
from trades.models import Trade, TradeEvent

LAST = 20
T = TypeVar("T")


@admin.register(Account)
class CustomerAdmin(ReadOnlyAdmin):
    """Customers, found by id, user name, name or email; each one's page is the desk."""

    list_display = (
        "customer_id",
        "username",
        "full_name",
        "email",
        "status",
        "cash",
        "cash_held",
        "available",
        "created_at",
    )
    list_filter = ("status",)
    search_fields = (
        "=customer__id",
        "customer__username",
        "customer__first_name",
        "customer__last_name",
        "=customer__email",
    )
    list_select_related = ("customer",)
    show_full_result_count = False
    ordering = ("-customer_id",)

    @admin.display(ordering="customer__username")
    def username(self, account: Account) -> str:
        return account.customer.username

    @admin.display(description="name")
    def full_name(self, account: Account) -> str:
        return account.customer.get_full_name()

    @admin.display(ordering="customer__email")
    def email(self, account: Account) -> str:
        return account.customer.email

    @admin.display
    def available(self, account: Account) -> object:
        return account.available_cash

    def get_urls(self) -> list[URLPattern]:
        def view(action: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
            return self.admin_site.admin_view(require_POST(action))

        return [
            path("<int:customer_id>/move/", view(self.move_view), name="support_move"),
            path("<int:customer_id>/status/", view(self.status_view), name="support_status"),
            path("<int:customer_id>/note/", view(self.note_view), name="support_note"),
            path(
                "movement/<int:movement_id>/approve/",
                view(self.approve_view),
                name="support_approve",
            ),
            path("trade/<int:trade_id>/cancel/", view(self.cancel_view), name="support_cancel"),
            path("trade/<int:trade_id>/resolve/", view(self.resolve_view), name="support_resolve"),
            path(
                "movement/<int:movement_id>/reject/",
                view(self.reject_view),
                name="support_reject",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        account = get_object_or_404(
            Account.objects.select_related("customer", "status_changed_by"),
            customer_id=object_id,
        )
        customer_id = account.customer_id
        user = request.user
        can = {
            "move": user.has_perm(PROPOSE),
            "approve": user.has_perm(APPROVE),
            "status": user.has_perm(RESTRICT),
            "note": user.has_perm(WRITE_NOTE),
            "cancel": user.has_perm(CANCEL),
            "resolve": user.has_perm(RESOLVE),
        }
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Customer {customer_id}: {account.customer.username}",
            "account": account,
            "customer": account.customer,
            "positions": Position.objects.filter(customer_id=customer_id, quantity__gt=0).order_by(
                "ticker"
            ),
            "open_trades": _with_last_errors(
                Trade.objects.filter(customer_id=customer_id, status__in=Trade.OPEN).order_by("seq")
            ),
            "recent_trades": Trade.objects.filter(customer_id=customer_id).order_by("-seq")[:LAST],
            "ledger": LedgerEntry.objects.filter(customer_id=customer_id)
            .select_related("staff_movement__made_by")
            .order_by("-id")[:LAST],
            "pending": _movements(customer_id).filter(status=StaffMovement.Status.PENDING),
            "movements": _movements(customer_id)[:LAST],
            "staff_actions": StaffAction.objects.filter(customer_id=customer_id)
            .select_related("staff")
            .order_by("-id")[:LAST],
            "can": can,
            "movement_form": MovementForm(),
            "status_form": StatusForm(initial={"status": account.status}),
            "note_form": NoteForm(),
            "reject_form": RejectForm(),
            "cancel_form": CancelForm(),
        }
        return TemplateResponse(request, "support/customer.html", context)

    # -- actions -------------------------------------------------------------------------

    def move_view(self, request: HttpRequest, customer_id: int) -> HttpResponse:
        def move(data: dict[str, Any]) -> StaffMovement:
            terms = MovementTerms(
                customer_id=customer_id,
                kind=data["kind"],
                memo=data["memo"],
                amount=data["amount"] or None,
                ticker=data["ticker"] or None,
                quantity=data["quantity"],
                reverses=data["reverses"],
            )
            return movement_propose(
                staff=request.user, idempotency_key=data["idempotency_key"], terms=terms
            )

        def said(movement: StaffMovement) -> str:
            if movement.status == StaffMovement.Status.PENDING:
                return f"Movement {movement.id} waits for a second staff member's approval."
            return f"Movement {movement.id} is applied (ledger entry {movement.entry_id})."

        _form_action(request, MovementForm, move, said)
        return _back_to(customer_id)

    def status_view(self, request: HttpRequest, customer_id: int) -> HttpResponse:
        _form_action(
            request,
            StatusForm,
            lambda data: account_status_set(
                staff=request.user,
                customer_id=customer_id,
                status=data["status"],
                reason=data["reason"],
            ),
            lambda account: f"The account is now {account.status}.",
        )
        return _back_to(customer_id)

    def note_view(self, request: HttpRequest, customer_id: int) -> HttpResponse:
        _form_action(
            request,
            NoteForm,
            lambda data: note_write(
                staff=request.user,
                customer_id=customer_id,
                text=data["text"],
                trade_id=data["trade_id"],
            ),
            lambda note: "Note saved.",
        )
        return _back_to(customer_id)

    def approve_view(self, request: HttpRequest, movement_id: int) -> HttpResponse:
        movement = get_object_or_404(StaffMovement, id=movement_id)
        approved = _act(
            request, lambda: movement_approve(staff=request.user, movement_id=movement_id)
        )
        if approved is not None:
            messages.success(
                request, f"Movement {movement_id} approved and applied (entry {approved.entry_id})."
            )
        return _back_to(movement.customer_id)

    def reject_view(self, request: HttpRequest, movement_id: int) -> HttpResponse:
        movement = get_object_or_404(StaffMovement, id=movement_id)
        _form_action(
            request,
            RejectForm,
            lambda data: movement_reject(
                staff=request.user, movement_id=movement_id, note=data["note"]
            ),
            lambda rejected: f"Movement {movement_id} rejected: nothing moved.",
        )
        return _back_to(movement.customer_id)

    def cancel_view(self, request: HttpRequest, trade_id: int) -> HttpResponse:
        trade = get_object_or_404(Trade, id=trade_id)
        _form_action(
            request,
            CancelForm,
            lambda data: trade_cancel_for_customer(
                staff=request.user, trade_id=trade_id, reason=data["reason"]
            ),
            lambda cancelled: f"Trade {trade_id} cancelled for the customer.",
        )
        return _back_to(trade.customer_id)

    def resolve_view(self, request: HttpRequest, trade_id: int) -> HttpResponse:
        trade = get_object_or_404(Trade, id=trade_id)
        _form_action(
            request,
            CancelForm,
            lambda data: trade_resolve(
                staff=request.user, trade_id=trade_id, reason=data["reason"]
            ),
            lambda resolved: (
                f"Trade {trade_id} resolved from the exchange's record: {resolved.status}."
            ),
        )
        return _back_to(trade.customer_id)


def _with_last_errors(trades: QuerySet[Trade]) -> list[Trade]:
    """The trades, each with `last_error`: the latest error from the exchange, if any."""
    found = list(trades)
    errors = (
        TradeEvent.objects.filter(trade__in=[t.id for t in found], status=None)
        .order_by("trade_id", "-id")
        .distinct("trade_id")
    )
    by_trade = {event.trade_id: event for event in errors}
    for trade in found:
        trade.last_error = by_trade.get(trade.id)  # type: ignore[attr-defined]
    return found


def _movements(customer_id: int) -> QuerySet[StaffMovement]:
    return (
        StaffMovement.objects.filter(customer_id=customer_id)
        .select_related("made_by", "decided_by")
        .order_by("-id")
    )


def _act(request: HttpRequest, action: Callable[[], T]) -> T | None:
    """Run a service; a refusal becomes the page's error message (a missing permission a
    403, as for any admin page the role may not use)."""
    try:
        return action()
    except NotAllowed as refused:
        raise PermissionDenied(refused.detail) from None
    except BrokerageError as refused:
        messages.error(request, f"Refused ({refused.code}): {refused.detail}")
        return None


def _form_action(
    request: HttpRequest,
    form_class: type[forms.Form],
    action: Callable[[dict[str, Any]], T],
    said: Callable[[T], str],
) -> None:
    """Check the posted form, run the service with its data, and say what came of it."""
    form = form_class(request.POST)
    if not form.is_valid():
        problems = "; ".join(
            f"{name}: {' '.join(str(e) for e in errors)}" for name, errors in form.errors.items()
        )
        messages.error(request, f"Refused (invalid_request): {problems}")
        return
    done = _act(request, lambda: action(form.cleaned_data))
    if done is not None:
        messages.success(request, said(done))


def _back_to(customer_id: int) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("admin:balances_account_change", args=[customer_id]))
