"""Alpaca's `trade_updates` websocket (`/stream` on the stream server), as the SDK's
TradingStream speaks it: authenticate, listen, then `accepted` / `new` / `fill` /
`rejected` / `canceled` events, read from the customer's event log through the stream
server's hub (events.stream): the same log, wake-ups and cap as the SSE stream.

Alpaca's protocol has no resume point; a client may send `"after": <seq>` in its listen
message (ours, not Alpaca's) to get what it missed, else it starts at the log's end."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from alpaca_compat import shapes
from api_keys.models import PREFIX_LENGTH
from events.stream import PAGE, EventHub, Stream, event_hub
from trades.models import Trade

logger = logging.getLogger("alpaca_compat.stream")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Our event types → Alpaca's trade update events.
TRADE_EVENTS = {
    "trade_placed": "accepted",
    "trade_sent": "new",
    "trade_filled": "fill",
    "trade_rejected": "rejected",
    "trade_cancelled": "canceled",
}
_TIMES = ("created_at", "submitted_at", "executed_at", "finished_at")


def _trade_as_it_was(data: dict[str, Any]) -> Trade:
    times = {name: datetime.fromisoformat(data[name]) if data[name] else None for name in _TIMES}
    return Trade(
        id=data["id"],
        ticker_id=data["ticker"],
        side=data["side"],
        quantity=data["quantity"],
        status=data["status"],
        reason=data["reason"],
        client_order_id=data["client_order_id"],
        fill_price=Decimal(data["fill_price"]) if data["fill_price"] else None,
        **times,
    )


def trade_update(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """One of our trade events as Alpaca's trade_updates message."""
    trade = _trade_as_it_was(data)
    update: dict[str, Any] = {
        "event": TRADE_EVENTS[kind],
        "order": shapes.order(trade),
        "timestamp": data["updated_at"],
    }
    if kind == "trade_filled":
        update.update(price=data["fill_price"], qty=str(trade.quantity))
    return {"stream": "trade_updates", "data": update}


async def _customer_of(hub: EventHub, message: dict[str, Any]) -> tuple[int, str] | None:
    data: dict[str, Any] = message["data"] if isinstance(message.get("data"), dict) else message
    key_id, secret = data.get("key_id") or data.get("key"), data.get("secret_key")
    if message.get("action") not in ("authenticate", "auth") or not isinstance(secret, str):
        return None
    if key_id != secret[:PREFIX_LENGTH]:
        return None
    return await hub.key_holder(secret)


async def _next_json(receive: Receive) -> dict[str, Any] | None:
    """The client's next message as a JSON object; None when it has gone."""
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text") or (message.get("bytes") or b"").decode(errors="replace")
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed


async def trade_updates(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """The ASGI websocket application."""
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})

    async def say(message: dict[str, Any]) -> None:
        await send({"type": "websocket.send", "text": json.dumps(message)})

    hub = event_hub()
    await hub.start()
    first = await _next_json(receive)
    found = await _customer_of(hub, first) if first is not None else None
    status = "authorized" if found else "unauthorized"
    await say({"stream": "authorization", "data": {"action": "authenticate", "status": status}})
    if found is None:
        await send({"type": "websocket.close", "code": 1008})
        return
    customer_id, digest = found
    listen = await _next_json(receive)
    if listen is None:
        return
    wanted = (listen.get("data") or {}).get("streams") or []
    await say(
        {"stream": "listening", "data": {"streams": [s for s in wanted if s == "trade_updates"]}}
    )
    after = (listen.get("data") or {}).get("after")
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        after = await hub.last_seq(customer_id)
    stream = hub.open(customer_id, after, digest)
    if stream is None:
        await say({"stream": "error", "data": {"error": "too many streams"}})
        await send({"type": "websocket.close", "code": 1008})
        return
    logger.info("event=trade_updates_opened customer=%s after=%s", customer_id, after)
    gone = asyncio.create_task(_until_gone(receive))
    try:
        await _feed(hub, stream, say, gone)
    finally:
        gone.cancel()
        hub.close(stream)
        logger.info("event=trade_updates_closed customer=%s", customer_id)


async def _until_gone(receive: Receive) -> None:
    while await _next_json(receive) is not None:
        pass


async def _feed(hub: EventHub, stream: Stream, say: Callable, gone: asyncio.Task) -> None:
    while not stream.revoked and not gone.done():
        stream.wake.clear()
        try:
            rows = await hub.events_after(stream)
        except Exception as exc:  # noqa: BLE001 - the database is away: read again soon
            logger.warning("event=trade_updates_read_failed error=%r", exc)
            rows = None
        for seq, kind, _, text in rows or []:
            # Activities (cash and shares) are not among Alpaca's trade updates.
            if kind in TRADE_EVENTS:
                await say(trade_update(kind, json.loads(text)["data"]))
            stream.last_seq = seq
        if rows and len(rows) == PAGE:
            continue
        waker = asyncio.create_task(stream.wake.wait())
        await asyncio.wait(
            {waker, gone},
            timeout=1.0 if rows is None else 15.0,
            return_when=asyncio.FIRST_COMPLETED,
        )
        waker.cancel()
