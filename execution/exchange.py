"""The exchange as this deployment reaches it: clients built from settings."""

from __future__ import annotations

from django.conf import settings

from execution.exchange_client import ExchangeClient


def exchange_client() -> ExchangeClient:
    """For submissions and order lookups (retried: they are idempotent)."""
    return ExchangeClient(
        base_url=settings.EXCHANGE_URL,
        connect_timeout=settings.EXCHANGE_CONNECT_TIMEOUT,
        read_timeout=settings.EXCHANGE_READ_TIMEOUT,
    )


def quote_client() -> ExchangeClient:
    """For a leader's quotes, asked on its main loop: fail fast rather than outlast the lease."""
    return ExchangeClient(
        base_url=settings.EXCHANGE_URL, connect_timeout=0.5, read_timeout=1.0, retries=0
    )
