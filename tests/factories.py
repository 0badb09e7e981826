"""Test data: customers with accounts and tokens, trades placed and sent with the test as
the shard's leader, exchange reports and signed callbacks."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from rest_framework.test import APIClient
from standardwebhooks.webhooks import Webhook

from api_keys.services import api_key_issue
from balances.services import account_open
from execution.exchange_client import OrderState
from execution.in_flight import trade_put_in_flight
from outbox.models import ShardLease
from outbox.sharding import shard_for_customer
from trades.models import Trade
from trades.services import trade_place

_names = itertools.count(1)


@dataclass
class Customer:
    id: int
    token: str

    def client(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {self.token}")
        return client


def create_customer(
    cash: Decimal | str = "10000.00", positions: dict[str, int] | None = None
) -> Customer:
    account = account_open(
        username=f"customer-{next(_names)}", cash=Decimal(cash), positions=positions or {}
    )
    return Customer(id=account.customer_id, token=api_key_issue(customer_id=account.customer_id))


def lead_shard_of(customer_id: int) -> tuple[int, int]:
    """Make the test the leader of the customer's shard; returns (shard, epoch)."""
    shard = shard_for_customer(customer_id)
    lease, _ = ShardLease.objects.get_or_create(shard=shard)
    lease.epoch += 1
    lease.save()
    return shard, lease.epoch


def place_and_send(customer_id: int, *, side="buy", quantity=10, ticker="AAPL", quote="100.00"):
    trade = trade_place(customer_id=customer_id, ticker=ticker, side=side, quantity=quantity).trade
    shard, epoch = lead_shard_of(customer_id)
    order = trade_put_in_flight(
        shard=shard, epoch=epoch, customer_id=customer_id, quotes={ticker: Decimal(quote)}
    )
    return Trade.objects.get(id=trade.id), order


def report_for(trade: Trade, *, status="filled", price="100.00", **overrides) -> OrderState:
    fields = {
        "client_order_id": str(trade.id),
        "exchange_order_id": f"X-{trade.id}",
        "status": status,
        "ticker": trade.ticker_id,
        "side": trade.side,
        "quantity": trade.quantity,
        "fill_price": Decimal(price) if status == "filled" else None,
        "executed_at": datetime.now(UTC) if status == "filled" else None,
        "reason": None if status == "filled" else "rejected by exchange",
    }
    fields.update(overrides)
    return OrderState(**fields)


def callback_body(trade: Trade, *, status="filled", price="100.0000", **data) -> bytes:
    payload = {
        "type": f"order.{status}",
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {
            "client_order_id": str(trade.id),
            "exchange_order_id": f"X-{trade.id}",
            "status": status,
            "ticker": trade.ticker_id,
            "side": trade.side,
            "quantity": trade.quantity,
            "fill_price": price if status == "filled" else None,
            "executed_at": datetime.now(UTC).isoformat() if status == "filled" else None,
            "reason": None if status == "filled" else "rejected by exchange",
            **data,
        },
    }
    return json.dumps(payload).encode()


def signed_headers(body: bytes, *, secret: str | None = None, msg_id="msg_1", at=None) -> dict:
    secret = secret or settings.EXCHANGE_WEBHOOK_SECRETS[0]
    at = at or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, at, body.decode())
    return {
        "HTTP_WEBHOOK_ID": msg_id,
        "HTTP_WEBHOOK_TIMESTAMP": str(int(at.timestamp())),
        "HTTP_WEBHOOK_SIGNATURE": signature,
    }
