"""The live event stream: GET /api/v1/events/stream/, Server-Sent Events from an async
process (uvicorn running Django's async views with settings.stream).

One process holds thousands of streams on a few database sessions: one LISTEN session,
whose wake-ups (outbox.notify's Waker, sent after each commit) are fanned out to
the streams of the customers they name, and a small pool that reads each stream's next
events. A stream sends the events after the client's Last-Event-ID (or ?after=), then
each new one once it has committed, each with `id:` = its seq, and a comment line when
there has been nothing for STREAM_HEARTBEAT_SECONDS, so that clients and proxies can
tell a quiet stream from a dead one.

A lost wake-up costs latency, never an event: every STREAM_SWEEP_SECONDS the hub compares
each stream with its customer's last event, and once its LISTEN session is back after
losing it (the database restarted, say) it wakes every stream. A stream whose reads fail
stays open, sending heartbeats, and reads on from where it was when the database is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from prometheus_client import CONTENT_TYPE_LATEST
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api_keys.models import PREFIX_LENGTH
from api_keys.services import CANDIDATES_SQL, digest_of, holder_among
from brokerage.auth import COUNT_FAILURE_SQL, FORGET_OLD_FAILURES_SQL, TOKEN_KEY, client_address
from brokerage.metrics import (
    EVENT_STREAM_DELIVERY_SECONDS,
    EVENT_STREAM_EVENTS_SENT,
    EVENT_STREAM_LISTENING,
    EVENT_STREAMS_OPEN,
    EVENT_STREAMS_REFUSED,
    exposition,
)
from events.sql import LAST_SEQ_SQL, LAST_SEQS_SQL, MAX_SEQ, STREAM_EVENTS_AFTER_SQL
from outbox.connections import connection_kwargs
from outbox.notify import CUSTOMER_EVENTS_CHANNEL, customers_of_notification

logger = logging.getLogger("events.stream")

SERVER = "stream"
# Events per read; a stream further behind reads again at once.
PAGE = 500
# How long a stream waits before reading again after a failed read.
RETRY_READ_SECONDS = 1.0
# The client's EventSource reconnects after this long (the SSE `retry:` field).
CLIENT_RETRY_MS = 1000
_HAS_ACCOUNT_SQL = "SELECT 1 FROM balances_account WHERE customer_id = %s"
# Of these API key digests, those still issued.
LIVE_KEYS_SQL = "SELECT digest FROM api_keys_apikey WHERE digest = ANY(%s)"

# The database failed, the pool had no session to give, or a session was lost.
_DATABASE_ERRORS = (psycopg.Error, PoolTimeout)


@dataclass(eq=False)
class Stream:
    customer_id: int
    last_seq: int
    # The digest of the API key it was opened with: the sweep ends the stream once the key
    # is gone (rotated, revoked, the account closed).
    key_digest: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    revoked: bool = False


class EventHub:
    """The process's LISTEN session, read pool and open streams. Started on first use, in
    the server's event loop."""

    def __init__(self) -> None:
        self._streams: dict[int, set[Stream]] = defaultdict(set)
        self._pool: AsyncConnectionPool | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.listening = False

    async def start(self) -> None:
        if self._pool is not None:
            return
        kwargs = {**connection_kwargs(), "autocommit": True, "application_name": "stream"}
        self._pool = AsyncConnectionPool(
            kwargs=kwargs,
            min_size=1,
            max_size=settings.STREAM_DB_POOL_SIZE,
            timeout=5,
            open=False,
            name="stream",
        )
        await self._pool.open(wait=False)
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="stream-listen"),
            asyncio.create_task(self._sweep_forever(), name="stream-sweep"),
        ]

    def open(self, customer_id: int, after: int, key_digest: str) -> Stream | None:
        """A stream for the customer from event `after`, or None at their cap."""
        streams = self._streams[customer_id]
        if len(streams) >= settings.STREAM_MAX_PER_CUSTOMER:
            if not streams:
                del self._streams[customer_id]
            return None
        stream = Stream(customer_id, after, key_digest)
        streams.add(stream)
        EVENT_STREAMS_OPEN.labels(SERVER).inc()
        return stream

    def close(self, stream: Stream) -> None:
        streams = self._streams.get(stream.customer_id)
        if streams is None or stream not in streams:
            return
        streams.discard(stream)
        if not streams:
            del self._streams[stream.customer_id]
        EVENT_STREAMS_OPEN.labels(SERVER).dec()

    def open_count(self) -> int:
        return sum(len(streams) for streams in self._streams.values())

    async def fetch(self, sql: str, params: Any) -> list[tuple[Any, ...]]:
        assert self._pool is not None, "start() the hub first"
        async with self._pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

    async def execute(self, sql: str, params: Any) -> None:
        assert self._pool is not None, "start() the hub first"
        async with self._pool.connection() as conn:
            await conn.execute(sql, params)

    async def last_seq(self, customer_id: int) -> int:
        ((last,),) = await self.fetch(LAST_SEQ_SQL, [customer_id])
        return int(last)

    async def key_holder(self, key: str) -> tuple[int, str] | None:
        """(customer id, the key's digest) of an active login's API key, or None."""
        if not TOKEN_KEY.fullmatch(key):
            return None
        holder = holder_among(await self.fetch(CANDIDATES_SQL, [key[:PREFIX_LENGTH]]), key)
        if holder is None or not holder[1]:
            return None
        return holder[0], digest_of(key)

    async def events_after(self, stream: Stream) -> list[tuple[Any, ...]]:
        return await self.fetch(
            STREAM_EVENTS_AFTER_SQL,
            {"customer_id": stream.customer_id, "after": stream.last_seq, "limit": PAGE},
        )

    def _wake(self, customer_id: int) -> None:
        for stream in self._streams.get(customer_id, ()):
            stream.wake.set()

    def _wake_all(self) -> None:
        for streams in self._streams.values():
            for stream in streams:
                stream.wake.set()

    async def _listen_forever(self) -> None:
        backoff = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    **connection_kwargs(), autocommit=True, application_name="stream-listen"
                )
                async with conn:
                    await conn.execute(f'LISTEN "{CUSTOMER_EVENTS_CHANNEL}"')
                    self._set_listening(True)
                    backoff = 0.5
                    # Whatever committed while we were not listening.
                    self._wake_all()
                    async for note in conn.notifies():
                        for customer_id in customers_of_notification(note.payload):
                            self._wake(customer_id)
            except Exception as exc:  # noqa: BLE001 - whatever it was, listen again
                logger.warning("event=stream_listen_lost error=%r retry_in=%.1f", exc, backoff)
            self._set_listening(False)
            # A retry's pause, not a wait for a condition: the database is away.
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _set_listening(self, up: bool) -> None:
        self.listening = up
        EVENT_STREAM_LISTENING.labels(SERVER).set(1 if up else 0)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(settings.STREAM_SWEEP_SECONDS)
            try:
                await self.sweep()
            except Exception as exc:  # noqa: BLE001 - the next sweep tries again
                logger.warning("event=stream_sweep_failed error=%r", exc)

    async def sweep(self) -> None:
        """Wake each stream behind its customer's last event, and end those whose key is
        gone."""
        streams = [stream for group in self._streams.values() for stream in group]
        if not streams:
            return
        customers = list(self._streams)
        rows = await self.fetch(LAST_SEQS_SQL, {"customers": customers})
        digests = list({stream.key_digest for stream in streams})
        live = {row[0] for row in await self.fetch(LIVE_KEYS_SQL, [digests])}
        last_seqs = dict(rows)
        for stream in streams:
            if stream.key_digest not in live:
                stream.revoked = True
                stream.wake.set()
            elif stream.last_seq < last_seqs.get(stream.customer_id, 0):
                stream.wake.set()


_hub: EventHub | None = None


def event_hub() -> EventHub:
    global _hub
    if _hub is None:
        _hub = EventHub()
    return _hub


def _error(status: int, code: str, detail: str, **headers: str) -> JsonResponse:
    EVENT_STREAMS_REFUSED.labels(code).inc()
    response = JsonResponse({"error": code, "detail": detail}, status=status)
    for name, value in headers.items():
        response[name] = value
    return response


async def _customer_of(request: HttpRequest, hub: EventHub) -> tuple[int, str] | JsonResponse:
    """The customer the request's `Authorization: Token <key>` names, with the key's
    digest, or the error to answer; failures count towards the client's throttle as on
    the API (brokerage.auth)."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "token" or not key:
        return _error(
            401,
            "not_authenticated",
            "Authentication credentials were not provided.",
            **{"WWW-Authenticate": "Token"},
        )
    found = await hub.key_holder(key)
    if found is None:
        params = {"client": client_address(request), "window": settings.AUTH_FAILURE_WINDOW}
        ((failures, seconds_left),) = await hub.fetch(COUNT_FAILURE_SQL, params)
        if failures == 1:
            await hub.execute(FORGET_OLD_FAILURES_SQL, params)
        if failures > settings.AUTH_FAILURE_LIMIT:
            wait = str(max(1, int(seconds_left)))
            return _error(
                429, "throttled", "Too many failed authentications.", **{"Retry-After": wait}
            )
        return _error(
            401, "authentication_failed", "Invalid token.", **{"WWW-Authenticate": "Token"}
        )
    if not await hub.fetch(_HAS_ACCOUNT_SQL, [found[0]]):
        return _error(403, "no_account", "This user has no brokerage account.")
    return found


def _resume_point(request: HttpRequest) -> int | None:
    """The last event the client has: Last-Event-ID (an EventSource reconnecting), else
    ?after=, else 0. None if it is not a number we could have sent."""
    text = request.headers.get("Last-Event-ID") or request.GET.get("after") or "0"
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > MAX_SEQ:
        return None
    return int(text)


async def event_stream(request: HttpRequest) -> HttpResponseBase:
    """Server-Sent Events: every event of the customer after the one they name, then each
    new one as it commits."""
    if request.method != "GET":
        return _error(
            405,
            "method_not_allowed",
            f'Method "{request.method}" not allowed.',
            Allow="GET",
        )
    hub = event_hub()
    await hub.start()
    try:
        found = await _customer_of(request, hub)
        if isinstance(found, JsonResponse):
            return found
        customer_id, key_digest = found
        after = _resume_point(request)
        if after is None:
            return _error(
                400,
                "invalid_request",
                f"Last-Event-ID and after take an event's seq: a whole number, 0 to {MAX_SEQ}.",
            )
        last = await hub.last_seq(customer_id)
    except _DATABASE_ERRORS as exc:
        logger.warning("event=stream_open_unavailable error=%r", exc)
        return _error(
            503,
            "database_unavailable",
            "The database did not answer; try again.",
            **{"Retry-After": "1"},
        )
    if after > last:
        # Not an id we sent: a client of another database (restored from a backup, say)
        # would otherwise wait, silently, for numbers it believes it has seen.
        return _error(
            400,
            "last_event_id_ahead",
            f"The last event of this account is {last}; resume from it or earlier.",
        )
    stream = hub.open(customer_id, after, key_digest)
    if stream is None:
        return _error(
            429,
            "too_many_streams",
            f"At most {settings.STREAM_MAX_PER_CUSTOMER} open streams per customer; close one.",
        )
    logger.info("event=stream_opened customer=%s after=%s", customer_id, after)
    response = StreamingHttpResponse(
        _frames(hub, stream), content_type="text/event-stream; charset=utf-8"
    )
    # A client gone before the first frame is sent never starts the generator, whose
    # `finally` would close the stream: the response's end closes it then (a no-op after).
    weakref.finalize(response, hub.close, stream)
    response["Cache-Control"] = "no-cache"
    # nginx passes each frame on at once instead of buffering the response.
    response["X-Accel-Buffering"] = "no"
    return response


async def _frames(hub: EventHub, stream: Stream) -> AsyncIterator[bytes]:
    heartbeat = settings.STREAM_HEARTBEAT_SECONDS
    loop = asyncio.get_running_loop()
    try:
        yield f"retry: {CLIENT_RETRY_MS}\n: open after {stream.last_seq}\n\n".encode()
        last_write = loop.time()
        while not stream.revoked:
            stream.wake.clear()
            try:
                rows: list[tuple[Any, ...]] | None = await hub.events_after(stream)
            except _DATABASE_ERRORS as exc:
                logger.warning(
                    "event=stream_read_failed customer=%s error=%r", stream.customer_id, exc
                )
                rows = None
            if rows:
                now = time.time()
                frames = []
                for seq, kind, created, text in rows:
                    frames.append(f"id: {seq}\nevent: {kind}\ndata: {text}\n\n")
                    EVENT_STREAM_DELIVERY_SECONDS.observe(max(0.0, now - created))
                yield "".join(frames).encode()
                stream.last_seq = rows[-1][0]
                EVENT_STREAM_EVENTS_SENT.inc(len(rows))
                last_write = loop.time()
                if len(rows) == PAGE:
                    continue
            if rows is None:
                timeout = RETRY_READ_SECONDS
            else:
                timeout = max(0.0, heartbeat - (loop.time() - last_write))
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow the
            # cancellation of a client gone away when a wake-up lands at the same moment,
            # leaving the stream running for nobody.
            try:
                async with asyncio.timeout(timeout):
                    await stream.wake.wait()
            except TimeoutError:
                if loop.time() - last_write >= heartbeat:
                    yield b": keep-alive\n\n"
                    last_write = loop.time()
    finally:
        hub.close(stream)
        logger.info("event=stream_closed customer=%s last=%s", stream.customer_id, stream.last_seq)


async def stream_metrics(request: HttpRequest) -> HttpResponse:
    """This process's metrics; on the stream server's own port (the proxy does not route
    /metrics)."""
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


async def stream_health(request: HttpRequest) -> HttpResponse:
    """200 while the stream server listens for wake-ups, else 503."""
    hub = event_hub()
    await hub.start()
    body = {"status": "ok" if hub.listening else "not_listening", "streams": hub.open_count()}
    return JsonResponse(body, status=200 if hub.listening else 503)
