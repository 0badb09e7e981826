"""The record of what staff did. Callers write it inside the transaction of the action."""

from __future__ import annotations

from typing import Any

from staff_actions.models import StaffAction


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
