"""The record of what staff did. Callers write it inside the transaction of the action."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractUser, AnonymousUser

from brokerage.errors import BrokerageError
from staff_actions.models import StaffAction

Staff = AbstractUser | AnonymousUser


class NotAllowed(BrokerageError):
    status_code = 403


def staff_id_with(staff: Staff, permission: str) -> int:
    """The staff member's id, if they are active staff with `permission`; else NotAllowed."""
    if not (staff.is_active and staff.is_staff and staff.has_perm(permission)):
        raise NotAllowed("permission_denied", f"Staff permission {permission} is required.")
    assert staff.pk is not None
    return int(staff.pk)


def staff_action_record(
    *,
    staff_id: int,
    kind: str,
    customer_id: int | None = None,
    trade_id: int | None = None,
    movement_id: int | None = None,
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> StaffAction:
    return StaffAction.objects.create(
        staff_id=staff_id,
        kind=kind,
        customer_id=customer_id,
        trade_id=trade_id,
        movement_id=movement_id,
        reason=reason,
        details=details or {},
    )
