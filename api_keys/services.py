"""Issuing, checking and revoking customers' API keys. A key is 20 random bytes in hex (the
same shape as the tokens issued before keys were hashed, which keep working)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.contrib.auth import get_user_model
from django.db import connection, transaction

from api_keys.models import PREFIX_LENGTH, ApiKey

KEY_BYTES = 20

# One plain statement on every request: the ORM's query compiling cost a millisecond of CPU.
CANDIDATES_SQL = """
SELECT k.digest, u.id, u.is_active FROM api_keys_apikey k JOIN auth_user u ON u.id = k.customer_id
WHERE k.prefix = %s
"""


def digest_of(key: str) -> str:
    """The stored form of a key: SHA-256 in hex. A key is random and long, so a fast hash is
    enough (no salt or stretching: there is nothing to guess)."""
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_issue(*, customer_id: int) -> str:
    """A new key for the customer, replacing (and so revoking) any key they had. Returns the
    key: the only time anyone sees it. One transaction."""
    key = secrets.token_hex(KEY_BYTES)
    with transaction.atomic():
        # Two rotations at once run one after the other: the key printed last works.
        get_user_model().objects.select_for_update().filter(id=customer_id).first()
        ApiKey.objects.update_or_create(
            customer_id=customer_id,
            defaults={"prefix": key[:PREFIX_LENGTH], "digest": digest_of(key)},
        )
    return key


def api_key_revoke(*, customer_id: int) -> bool:
    """Revoke the customer's key; False if they had none."""
    deleted, _ = ApiKey.objects.filter(customer_id=customer_id).delete()
    return bool(deleted)


def key_holder(key: str) -> tuple[int, bool] | None:
    """(customer id, whether their login is active) of the key's holder, or None. Keys are
    found by their prefix, then their digests compared in constant time."""
    with connection.cursor() as cursor:
        cursor.execute(CANDIDATES_SQL, [key[:PREFIX_LENGTH]])
        return holder_among(cursor.fetchall(), key)


def holder_among(candidates: list[tuple[str, int, bool]], key: str) -> tuple[int, bool] | None:
    """Of CANDIDATES_SQL's rows for the key's prefix, the (customer id, active) of the one
    whose digest is the key's, compared in constant time."""
    digest = digest_of(key)
    found = None
    for stored, customer_id, is_active in candidates:
        if hmac.compare_digest(stored, digest):
            found = (customer_id, is_active)
    return found
