"""Verifying the exchange's callbacks (Standard Webhooks: HMAC-SHA256 over id, timestamp
and body; timestamps older or newer than 5 minutes are refused)."""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from brokerage.errors import BrokerageError

INVALID_SIGNATURE = "The callback's signature, timestamp or headers are missing or invalid."


def verify_exchange_callback(body: bytes, headers: Mapping[str, str]) -> Any:
    """Return the parsed JSON body if any configured secret signed it; raise otherwise.

    Several secrets may be configured (space-separated) so that one can be rotated in
    without refusing callbacks signed with the other."""
    wanted = {"webhook-id", "webhook-timestamp", "webhook-signature"}
    signed_headers = {k.lower(): v for k, v in headers.items() if k.lower() in wanted}
    for secret in settings.EXCHANGE_WEBHOOK_SECRETS:
        try:
            return Webhook(secret).verify(body, signed_headers)
        except (
            WebhookVerificationError,
            ValueError,
            RecursionError,
            binascii.Error,
            UnicodeDecodeError,
        ):
            continue
    raise BrokerageError("invalid_signature", INVALID_SIGNATURE, status_code=401)
