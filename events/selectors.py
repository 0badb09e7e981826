from __future__ import annotations

import json
from typing import Any

from django.db import connection

from events.sql import EVENTS_AFTER_SQL


def events_after(*, customer_id: int, after: int, limit: int) -> list[dict[str, Any]]:
    """The customer's events numbered after `after`, oldest first, at most `limit`."""
    with connection.cursor() as cursor:
        cursor.execute(
            EVENTS_AFTER_SQL, {"customer_id": customer_id, "after": after, "limit": limit}
        )
        return [json.loads(text) for _, text in cursor.fetchall()]
