"""API key authentication (`Authorization: Token <key>`) that slows down guessing.

Keys are stored hashed (api_keys).

Only failed attempts touch the shared counter (a Postgres table, one atomic upsert per
failure), so a valid token costs nothing extra; past AUTH_FAILURE_LIMIT failures from one
client within a window of AUTH_FAILURE_WINDOW seconds from its first failure, further
failures are a 429 instead of a 401. A correct token
still works for a throttled client: checking the counter first would cost every request a
query, and a 160-bit random token cannot be found by guessing anyway; the throttle is
there to stop the load. Clients are told apart by address (NUM_PROXIES: how many
trusted proxies add X-Forwarded-For)."""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection
from django.http import HttpRequest
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from api_keys.models import PREFIX_LENGTH
from api_keys.services import key_holder

# A client's failures in its current window; a window older than AUTH_FAILURE_WINDOW starts
# again at 1. One statement, so parallel failures are all counted.
COUNT_FAILURE_SQL = """
INSERT INTO brokerage_auth_failure AS f (client, window_started_at, failures)
VALUES (%(client)s, now(), 1)
ON CONFLICT (client) DO UPDATE SET
    failures = CASE WHEN f.window_started_at < now() - make_interval(secs => %(window)s)
                    THEN 1 ELSE f.failures + 1 END,
    window_started_at = CASE WHEN f.window_started_at < now() - make_interval(secs => %(window)s)
                             THEN now() ELSE f.window_started_at END
RETURNING failures,
          ceil(extract(epoch FROM window_started_at + make_interval(secs => %(window)s) - now()))
"""
# Clients whose window ended long ago are forgotten, a few at a time, as new ones come.
FORGET_OLD_FAILURES_SQL = """
DELETE FROM brokerage_auth_failure WHERE client IN (
    SELECT client FROM brokerage_auth_failure
    WHERE window_started_at < now() - make_interval(secs => %(window)s) LIMIT 100
)
"""
# 20 random bytes in hex. Anything else is refused before it reaches the query.
TOKEN_KEY = re.compile(r"[0-9a-f]{40}")


def client_address(request: HttpRequest) -> str:
    """The client's address, as every throttle tells clients apart (NUM_PROXIES: how many
    trusted proxies add X-Forwarded-For)."""
    return BaseThrottle().get_ident(request)  # type: ignore[arg-type]  # only reads META


class ThrottledTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key: str) -> tuple[AbstractBaseUser, str]:
        """The key's holder, found by the key's digest. The user's other fields load
        lazily. `request.auth` is the key's prefix, never the key."""
        if not TOKEN_KEY.fullmatch(key):
            raise exceptions.AuthenticationFailed("Invalid token.")
        holder = key_holder(key)
        if holder is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not holder[1]:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        user = get_user_model().from_db(connection.alias, ["id", "is_active"], holder)
        return user, key[:PREFIX_LENGTH]

    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, str] | None:
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            self._count_failure(request)
            raise

    def _count_failure(self, request: Request) -> None:
        params = {
            "client": client_address(request),
            "window": settings.AUTH_FAILURE_WINDOW,
        }
        with connection.cursor() as cursor:
            cursor.execute(COUNT_FAILURE_SQL, params)
            failures, seconds_left = cursor.fetchone()
            if failures == 1:
                cursor.execute(FORGET_OLD_FAILURES_SQL, params)
        if failures > settings.AUTH_FAILURE_LIMIT:
            raise exceptions.Throttled(
                wait=max(1, int(seconds_left)), detail="Too many failed authentications."
            )
