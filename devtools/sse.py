"""A Server-Sent Events client for the tests and the bench: `SseClient` (blocking, one
stream) and `open_async_stream` (asyncio, for a thousand at once). Both parse the frames
of GET /api/v1/events/stream/ into `SseEvent`s and count the heartbeat comments."""

from __future__ import annotations

import asyncio
import codecs
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests


@dataclass(frozen=True)
class SseEvent:
    id: int
    type: str
    body: dict[str, Any]
    # time.time() when the frame was read.
    received_at: float


@dataclass
class _Parser:
    buffer: str = ""
    comments: int = 0
    retry_ms: int | None = None
    events: list[SseEvent] = field(default_factory=list)

    def feed(self, text: str) -> list[SseEvent]:
        self.buffer += text.replace("\r\n", "\n")
        now = time.time()
        new = []
        while "\n\n" in self.buffer:
            frame, self.buffer = self.buffer.split("\n\n", 1)
            fields: dict[str, str] = {}
            for line in frame.split("\n"):
                if line.startswith(":"):
                    self.comments += 1
                    continue
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
            if "retry" in fields:
                self.retry_ms = int(fields["retry"])
            if "data" in fields:
                event = SseEvent(
                    id=int(fields["id"]),
                    type=fields.get("event", "message"),
                    body=json.loads(fields["data"]),
                    received_at=now,
                )
                new.append(event)
        self.events.extend(new)
        return new


class SseClient:
    """One stream, read on the calling thread."""

    def __init__(
        self, base_url: str, token: str, *, last_event_id: int | None = None, timeout: float = 10
    ) -> None:
        headers = {"Authorization": f"Token {token}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.response = requests.get(
            f"{base_url}/api/v1/events/stream/", headers=headers, stream=True, timeout=timeout
        )
        self._parser = _Parser()
        self._chunks = self.response.iter_content(chunk_size=None, decode_unicode=True)

    @property
    def comments(self) -> int:
        return self._parser.comments

    @property
    def events(self) -> list[SseEvent]:
        return self._parser.events

    def read_until(self, done: Any, *, timeout: float) -> list[SseEvent]:
        """Read frames until done(events so far) is true; raises TimeoutError after
        `timeout` seconds (each read also ends within the client's read timeout)."""
        deadline = time.monotonic() + timeout
        while not done(self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the stream gave {len(self.events)} events, not enough")
            self._parser.feed(next(self._chunks))
        return self.events

    def close(self) -> None:
        self.response.close()


class _Dechunker:
    """HTTP/1.1 chunked transfer coding, undone as the bytes arrive."""

    def __init__(self) -> None:
        self._buffer = b""
        self._left = 0  # bytes of the current chunk still to come
        self._text = codecs.getincrementaldecoder("utf-8")()

    def feed(self, data: bytes) -> str:
        self._buffer += data
        out = []
        while True:
            if self._left == 0:
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    break
                line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
                if not line:  # the CRLF that ends a chunk's data
                    continue
                self._left = int(line.split(b";")[0], 16)
                if self._left == 0:
                    break
            part = self._buffer[: self._left]
            self._buffer = self._buffer[len(part) :]
            self._left -= len(part)
            out.append(part)
            if self._left:
                break
        return self._text.decode(b"".join(out))


@dataclass
class AsyncStream:
    """A stream read by `run()`, which calls `on_event` for each event as it comes."""

    status: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    parser: _Parser = field(default_factory=_Parser)

    async def run(self, on_event: Any) -> None:
        dechunker = _Dechunker()
        try:
            while True:
                chunk = await self.reader.read(65536)
                if not chunk:
                    return
                for event in self.parser.feed(dechunker.feed(chunk)):
                    on_event(event)
        except ConnectionError:
            return

    def close(self) -> None:
        self.writer.close()


async def open_async_stream(base_url: str, token: str, *, after: int = 0) -> AsyncStream:
    """Open a stream with a raw HTTP/1.1 request; the status line and headers are read."""
    url = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(
        (
            f"GET /api/v1/events/stream/?after={after} HTTP/1.1\r\n"
            f"Host: {url.hostname}:{url.port}\r\nAuthorization: Token {token}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return AsyncStream(status=status, reader=reader, writer=writer)
