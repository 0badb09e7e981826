"""`python -m bench.streams` (`make bench-streams`): one stream server holding many event
streams. A fresh database `brokerage_streams_bench`, N customers each with a stream open
on one uvicorn process, then trades placed through the web for some of them at a steady
rate. Prints the stream server's memory per stream and how long events took from their
commit (the event's created_at, the database's clock on this same machine) to the client
that read them; the last line is one JSON object with the figures."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import requests

from bench.stats import ms, percentile
from devtools import embedded_postgres
from devtools.database import manage, migrate, recreate_database
from devtools.sse import AsyncStream, SseEvent, open_async_stream
from devtools.stack import Stack, wait_for

DATABASE = "brokerage_streams_bench"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def place_steadily(
    stack: Stack, tokens: list[str], rate: float, seconds: float, placed: list[int]
) -> None:
    """Trades at `rate` per second for `seconds`, each for a random one of `tokens`."""
    start = time.monotonic()
    rng = random.Random(7)
    with requests.Session() as session:
        n = 0
        while (due := start + n / rate) < start + seconds:
            time.sleep(max(0.0, due - time.monotonic()))  # the open loop's schedule
            token = rng.choice(tokens)
            response = stack.place(session, token, ticker="AAPL", side="buy", quantity=1)
            placed.append(response.status_code)
            n += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.streams", description=__doc__)
    parser.add_argument("--streams", type=int, default=1000, help="streams held open")
    parser.add_argument("--traders", type=int, default=200, help="of them, customers trading")
    parser.add_argument("--rate", type=float, default=40, help="trades/s placed")
    parser.add_argument("--duration", type=float, default=15, help="seconds of trading")
    args = parser.parse_args(argv)

    maintenance = embedded_postgres.ensure_running()
    recreate_database(maintenance, DATABASE)
    url = maintenance.rsplit("/", 1)[0] + f"/{DATABASE}"
    migrate(url)
    print(f"{args.streams} customers …", flush=True)
    seeded = manage(url, "seed_demo", "--count", str(args.streams), "--cash", "1000000.00")
    customers = [json.loads(line) for line in seeded.stdout.splitlines() if line.startswith("{")]
    tokens = [c["token"] for c in customers]

    log_dir = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    stack = Stack(
        log_dir,
        database_url=url,
        shard_count=100,  # the settings' default, which seed_demo numbered the shards by
        separate_callbacks=True,
        env={
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(32),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": "WARNING",
        },
    )
    try:
        stack.start_exchange("--fill-delay-ms", "2,5")
        stack.start_web(workers=3)
        stack.start_callbacks(workers=2)
        stack.start_worker("w1")
        stack.start_stream()
        pid = stack.procs["stream"].pid
        direct = f"http://127.0.0.1:{stack.stream_port}"
        idle_kib = rss_kib(pid)
        figures = asyncio.run(_measure(stack, direct, pid, tokens, args, idle_kib))
    finally:
        stack.stop_all()
    figures = {"streams": args.streams, **figures}
    print(
        f"stream server: {figures['rss_idle_mib']} MiB idle, {figures['rss_open_mib']} MiB with "
        f"{args.streams} streams open: {figures['kib_per_stream']} KiB per stream"
    )
    print(
        f"delivery, commit to client, {figures['events_delivered']} events: "
        f"p50 {figures['delivery_p50_ms']} ms, p99 {figures['delivery_p99_ms']} ms, "
        f"max {figures['delivery_max_ms']} ms"
    )
    print(json.dumps(figures), flush=True)
    if figures["events_delivered"] != figures["events_expected"]:
        print("not every event reached its stream", file=sys.stderr)
        return 1
    return 0


async def _measure(
    stack: Stack, base: str, pid: int, tokens: list[str], args: argparse.Namespace, idle: int
) -> dict:
    streams: list[AsyncStream] = []
    for token in tokens:
        streams.append(await open_async_stream(base, token))
    assert {s.status for s in streams} == {200}, {s.status for s in streams}
    latencies: list[float] = []
    started = time.time()

    def on_event(event: SseEvent) -> None:
        created = datetime.fromisoformat(event.body["created_at"]).timestamp()
        if created >= started:
            latencies.append(event.received_at - created)

    readers = [asyncio.create_task(s.run(on_event)) for s in streams]
    await asyncio.to_thread(
        wait_for,
        lambda: requests.get(f"{base}/healthz", timeout=5).json()["streams"] == len(tokens),
        timeout=60,
        what="every stream open",
    )
    await asyncio.sleep(1)  # a quiet second: the memory of streams at rest
    open_kib = rss_kib(pid)
    placed: list[int] = []
    trader = threading.Thread(
        target=place_steadily,
        args=(stack, tokens[: args.traders], args.rate, args.duration, placed),
    )
    trader.start()
    await asyncio.to_thread(trader.join)
    # Every trade placed ends (filled, each with 5 events) before the streams close.
    expected = 5 * sum(1 for status in placed if status == 201)
    deadline = time.monotonic() + 60
    while len(latencies) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    for s in streams:
        s.close()
    await asyncio.gather(*readers)
    return {
        "rss_idle_mib": round(idle / 1024, 1),
        "rss_open_mib": round(open_kib / 1024, 1),
        "kib_per_stream": round((open_kib - idle) / len(tokens), 1),
        "trades_placed": sum(1 for status in placed if status == 201),
        "events_expected": expected,
        "events_delivered": len(latencies),
        "delivery_p50_ms": ms(percentile(latencies, 50)),
        "delivery_p99_ms": ms(percentile(latencies, 99)),
        "delivery_max_ms": ms(max(latencies, default=float("nan"))),
    }


if __name__ == "__main__":
    sys.exit(main())
