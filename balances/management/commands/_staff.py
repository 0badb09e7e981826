"""What the staff movement commands share: the staff member acting, and errors as
CommandError."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.core.management.base import CommandError

from balances.models import StaffMovement
from brokerage.errors import BrokerageError

T = TypeVar("T")


def staff_member(username: str) -> AbstractUser:
    user = get_user_model().objects.filter(username=username).first()
    if not isinstance(user, AbstractUser) or not user.is_active or not user.is_staff:
        raise CommandError(f"permission_denied: no active staff member named {username!r}")
    return user


def refused_as_command_error(action: Callable[[], T]) -> T:
    try:
        return action()
    except BrokerageError as refused:
        raise CommandError(f"{refused.code}: {refused.detail}") from None


def movement_json(movement: StaffMovement) -> str:
    return json.dumps(
        {
            "movement": movement.id,
            "customer_id": movement.customer_id,
            "kind": movement.kind,
            "status": movement.status,
            "amount": None if movement.cash_amount is None else str(movement.cash_amount),
            "ticker": movement.ticker,
            "quantity": movement.share_quantity,
            "reverses": movement.reverses_id,
            "ledger_entry": movement.entry_id,
            "expires_at": None if movement.expires_at is None else movement.expires_at.isoformat(),
        }
    )
