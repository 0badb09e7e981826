"""The staff roles, as Django groups with exactly these permissions.

support: look at everything a customer call needs, write notes, propose movements of
cash and shares (applied at once below the approval threshold), cancel a placed trade
for the customer. supervisor: all of that, and approve or reject others' movements,
restrict, reopen and close accounts, and resolve stuck trades."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.db import transaction

SUPPORT = "support"
SUPERVISOR = "supervisor"

_VIEW = {
    "auth.view_user",
    "balances.view_account",
    "balances.view_position",
    "balances.view_ledgerentry",
    "balances.view_staffmovement",
    "trades.view_trade",
    "trades.view_tradeevent",
    "trades.view_ticker",
    "staff_actions.view_staffaction",
}
ROLES: dict[str, frozenset[str]] = {
    SUPPORT: frozenset(
        {
            *_VIEW,
            "balances.propose_movement",
            "staff_actions.write_note",
            "trades.cancel_for_customer",
        }
    ),
    SUPERVISOR: frozenset(
        {
            *_VIEW,
            "balances.propose_movement",
            "staff_actions.write_note",
            "trades.cancel_for_customer",
            "balances.approve_movement",
            "balances.restrict_account",
            "trades.resolve_stuck",
        }
    ),
}


def _permission(name: str, using: str) -> Permission:
    app_label, codename = name.split(".")
    return Permission.objects.using(using).get(content_type__app_label=app_label, codename=codename)


def roles_set_up(*, using: str = "default") -> dict[str, list[str]]:
    """Create or correct each role's group: a permission added by hand is taken away."""
    with transaction.atomic(using=using):
        for role, names in ROLES.items():
            group, _ = Group.objects.using(using).get_or_create(name=role)
            group.permissions.set([_permission(name, using) for name in sorted(names)])
    return {role: sorted(names) for role, names in ROLES.items()}
