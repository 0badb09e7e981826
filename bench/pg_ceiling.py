"""The machine's ceiling: the place-trade transaction of `trades.services.trade_place`,
statement for statement, driven straight at Postgres from several processes with no
Django, no HTTP and no Python web stack in the way: from psycopg (what a Python service
could at best do), and from pgbench (Postgres itself, the client's CPU hardly counts).

Runs against a slice of loaded customers that the HTTP phases never use; afterwards
their trades (all still `placed`) are cancelled, which the trade guard allows, and their
outbox rows deleted, so the later phases see a consistent, quiet database."""

from __future__ import annotations

import math
import multiprocessing
import re
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import psycopg

from bench import cpu
from bench.stats import percentile
from trades.placement_sql import PLACE_TRADE_SQL

# The very statement trades.services.trade_place executes (one round trip, one transaction).
PLACE_SQL = PLACE_TRADE_SQL
NOTIFY_SQL = "SELECT pg_notify(%s, '')"

_CLEAN_UP_SQL = """
UPDATE trades_trade SET status = 'cancelled', reason = 'benchmark: Postgres ceiling run',
                        finished_at = now()
WHERE customer_id BETWEEN %(first)s AND %(last)s AND status = 'placed'
"""
_CLEAN_UP_OUTBOX_SQL = (
    "DELETE FROM outbox_outboxmessage WHERE customer_id BETWEEN %(first)s AND %(last)s"
)


class _RateLimited(Exception):
    pass


@dataclass
class CeilingResult:
    notify: bool
    connections: int
    seconds: float
    commits: int
    refused: int
    latencies: list[float]
    cpu: cpu.Usage
    client: str = "psycopg"
    average_latency: float | None = None

    @property
    def per_s(self) -> float:
        return self.commits / self.seconds

    def describe(self) -> str:
        label = "with pg_notify in every transaction" if self.notify else "plain"
        if self.latencies:
            latency = (
                f"p50 {percentile(self.latencies, 50) * 1000:.1f} ms, "
                f"p99 {percentile(self.latencies, 99) * 1000:.1f} ms"
            )
        else:
            latency = f"average {(self.average_latency or math.nan) * 1000:.1f} ms"
        return (
            f"{self.per_s:8.0f} tx/s  ({self.client}, {label}, {self.connections} connections, "
            f"transaction latency {latency})"
        )


def _place(
    conn: psycopg.Connection, customer_id: int, ticker: str, key: str, notify: bool, limits: dict
) -> bool:
    """One place-trade transaction; False if the rate limit refused it (nothing written)."""
    params = {
        "customer_id": customer_id,
        "ticker": ticker,
        "side": "buy",
        "quantity": 1,
        "client_order_id": key,
        **limits,
    }
    if not notify:
        return conn.execute(PLACE_SQL, params).fetchone() is not None
    with conn.transaction():
        row = conn.execute(PLACE_SQL, params).fetchone()
        if row is not None:
            conn.execute(NOTIFY_SQL, (f"outbox_shard_{row[3]}",))
    return row is not None


def _client(
    url: str,
    customer_ids: list[int],
    tickers: list[str],
    windows: list[tuple[float, float, bool]],
    limits: dict,
    tag: str,
) -> list[tuple[int, int, list[float]]]:
    """One connection placing trades back to back in each (start, stop, notify) window;
    per window: (commits, refusals, commit latencies)."""
    results = []
    k = 0
    with psycopg.connect(url, autocommit=True, application_name=f"bench ceiling {tag}") as conn:
        for start_at, stop_at, notify in windows:
            commits = refused = 0
            latencies: list[float] = []
            time.sleep(max(0.0, start_at - time.time()))
            while time.time() < stop_at:
                began = time.perf_counter()
                customer_id = customer_ids[k % len(customer_ids)]
                if _place(
                    conn, customer_id, tickers[k % len(tickers)], f"{tag}-{k}", notify, limits
                ):
                    latencies.append(time.perf_counter() - began)
                    commits += 1
                else:
                    refused += 1
                k += 1
            results.append((commits, refused, latencies))
    return results


def measure(
    url: str,
    *,
    customer_ids: list[int],
    tickers: list[str],
    connections: int = 8,
    seconds: float = 10.0,
    rounds: int = 2,
    rate: float = 10.0,
    burst: float = 20.0,
    bench_database: str = "",
) -> list[CeilingResult]:
    """Place trades from `connections` processes, each with its own customers, so the only
    contention is Postgres' own (WAL, commit, NOTIFY). Plain and notifying windows
    alternate, `rounds` of each, `seconds` per variant in all: on a shared machine a
    burst of someone else's work then hits both variants alike."""
    context = multiprocessing.get_context("spawn")
    span = seconds / rounds
    # Leave time for the processes to start and connect before the clock starts.
    begin = time.time() + 2.0 + 0.25 * connections
    windows = [
        (begin + i * (span + 0.5), begin + i * (span + 0.5) + span, i % 2 == 1)
        for i in range(2 * rounds)
    ]
    limits = {"rate": rate, "burst": burst}
    with ProcessPoolExecutor(connections, mp_context=context) as pool:
        futures = [
            pool.submit(
                _client,
                url,
                customer_ids[i::connections],
                tickers,
                windows,
                limits,
                f"c{i}-{int(begin)}",
            )
            for i in range(connections)
        ]
        # CPU use is sampled while the clients (and their backends) still exist.
        used = []
        for start_at, stop_at, _ in windows:
            time.sleep(max(0.0, start_at + 0.2 - time.time()))
            before = cpu.snapshot(time.time())
            time.sleep(max(0.0, stop_at - 0.1 - time.time()))
            used.append(cpu.usage(before, cpu.snapshot(time.time()), {}, bench_database))
        per_client = [f.result() for f in futures]
    return [
        CeilingResult(
            notify=notify,
            connections=connections,
            seconds=span,
            commits=sum(c[w][0] for c in per_client),
            refused=sum(c[w][1] for c in per_client),
            latencies=[x for c in per_client for x in c[w][2]],
            cpu=used[w],
        )
        for w, (_, _, notify) in enumerate(windows)
    ]


# The same transaction for pgbench (a C client, so the client's own CPU hardly counts).
_PGBENCH_PARAMETERS = {
    "%(customer_id)s": ":cid",
    "%(ticker)s": "'AAPL'",
    "%(side)s": "'buy'",
    "%(quantity)s": "1",
    "%(client_order_id)s": "('pgb-' || :key)",
    "%(rate)s": ":rate",
    "%(burst)s": ":burst",
}


def _pgbench_statement() -> str:
    statement = PLACE_SQL.strip()
    for placeholder, variable in _PGBENCH_PARAMETERS.items():
        statement = statement.replace(placeholder, variable)
    return statement.replace(
        "SELECT trade.id, trade.seq, trade.created_at, account.shard", "SELECT account.shard"
    )


_PGBENCH_SCRIPT = (
    "\\set cid :first + :client_id + :clients * random(0, :per_client - 1)\n"
    "\\set key random(1, 1000000000000000)\n"
    "BEGIN;\n" + _pgbench_statement().replace("\n", " ") + " \\gset\n"
    "{notify}END;\n"
)
_PGBENCH_NOTIFY = "SELECT pg_notify('outbox_shard_' || :shard, '');\n"


def pgbench(
    executable: str,
    url: str,
    *,
    customer_ids: list[int],
    notify: bool,
    connections: int = 8,
    seconds: float = 5.0,
    rate: float = 10.0,
    burst: float = 20.0,
    bench_database: str = "",
) -> CeilingResult:
    """The same transaction from pgbench with prepared statements."""
    clients = connections
    script = _PGBENCH_SCRIPT.format(notify=_PGBENCH_NOTIFY if notify else "")
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as f:
        f.write(script)
        f.flush()
        argv = [
            executable,
            "--no-vacuum",
            "--protocol=prepared",
            f"--client={clients}",
            "--jobs=2",
            f"--time={max(1, round(seconds))}",
            f"--file={f.name}",
            f"--define=first={customer_ids[0]}",
            f"--define=clients={clients}",
            f"--define=per_client={len(customer_ids) // clients}",
            f"--define=rate={rate}",
            f"--define=burst={burst}",
            url,
        ]
        started = time.time()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1.0)
        before = cpu.snapshot(time.time())
        time.sleep(max(0.0, started + round(seconds) - 0.3 - time.time()))
        used = cpu.usage(before, cpu.snapshot(time.time()), {}, bench_database)
        output, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{output}")
    tps = _pgbench_figure(r"^tps = ([0-9.]+)", output)
    latency = _pgbench_figure(r"^latency average = ([0-9.]+) ms", output)
    return CeilingResult(
        notify=notify,
        connections=clients,
        seconds=1.0,
        commits=round(tps),
        refused=0,
        latencies=[],
        cpu=used,
        client="pgbench",
        average_latency=latency / 1000,
    )


def clean_up(url: str, *, first: int, last: int) -> int:
    """Cancel the ceiling's placed trades and drop their outbox rows; returns how many."""
    with psycopg.connect(url) as conn:
        with conn.transaction():
            cancelled = conn.execute(_CLEAN_UP_SQL, {"first": first, "last": last}).rowcount
            conn.execute(_CLEAN_UP_OUTBOX_SQL, {"first": first, "last": last})
    return cancelled


def _pgbench_figure(pattern: str, output: str) -> float:
    found = re.search(pattern, output, re.M)
    if found is None:
        raise RuntimeError(f"pgbench printed no {pattern!r}:\n{output}")
    return float(found.group(1))
