"""Token authentication that slows down guessing.

Only failed attempts touch the shared counter (a Postgres-backed cache), so a valid
token costs nothing extra; past AUTH_FAILURE_LIMIT failures from one client within
AUTH_FAILURE_WINDOW seconds, further failures are a 429 instead of a 401. A correct token
still works for a throttled client: checking the counter first would cost every request a
query, and a 160-bit random token cannot be found by guessing anyway; the throttle is
there to stop the load. Clients are told apart by address (NUM_PROXIES: how many
trusted proxies add X-Forwarded-For)."""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.db import connection
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

_USER_BY_TOKEN_SQL = """
SELECT u.id, u.is_active FROM authtoken_token t JOIN auth_user u ON u.id = t.user_id
WHERE t.key = %s
"""
# DRF's keys: 20 random bytes in hex. Anything else is refused before it reaches the query.
_TOKEN_KEY = re.compile(r"[0-9a-f]{40}")


class ThrottledTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key: str):
        """DRF's check as one plain statement: compiling the ORM's select_related query
        cost a millisecond of CPU on every request. The user's other fields load lazily."""
        if not _TOKEN_KEY.fullmatch(key):
            raise exceptions.AuthenticationFailed("Invalid token.")
        with connection.cursor() as cursor:
            cursor.execute(_USER_BY_TOKEN_SQL, [key])
            row = cursor.fetchone()
        if row is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not row[1]:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return get_user_model().from_db(connection.alias, ["id", "is_active"], row), key

    def authenticate(self, request: Request):
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            self._count_failure(request)
            raise

    def _count_failure(self, request: Request) -> None:
        cache = caches["auth_failures"]
        key = f"auth-fail:{BaseThrottle().get_ident(request)}"
        window = settings.AUTH_FAILURE_WINDOW
        if cache.add(key, 1, timeout=window):
            return
        try:
            failures = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=window)
            return
        if failures > settings.AUTH_FAILURE_LIMIT:
            raise exceptions.Throttled(wait=window, detail="Too many failed authentications.")
