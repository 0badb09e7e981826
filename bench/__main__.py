"""`python -m bench`: load a fresh database, measure the Postgres ceiling, then the whole
stack through its HTTP API. The last line printed is one JSON object with the figures;
it is also written to bench/results/last.json."""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.abc import Params

from bench import cpu, database, load_data, pg_ceiling
from bench.http_load import NOT_SENT, OPEN_LOOP_THREADS, Customer, LoadRun, Sample
from bench.stats import ms, percentile
from devtools import embedded_postgres
from devtools.database import migrate, recreate_database
from devtools.stack import Stack, wait_for

RESULTS = Path(__file__).resolve().parent / "results"
LOGS = RESULTS / "logs"
SHARD_COUNT = 100
HALVES = {"1/2": ("a1", "a2"), "2/2": ("b1", "b2")}
# settings/base.py's defaults, which Stack replaces with quicker ones for the tests.
PRODUCTION_TIMINGS = {
    "WORKER_POLL_INTERVAL": "1.0",
    "REAPER_IN_FLIGHT_DEADLINE": "10",
    "REAPER_PLACED_STALE_SECONDS": "5",
    "REAPER_OUTBOX_STALE_SECONDS": "5",
    "EXCHANGE_READ_TIMEOUT": "3",
}
REAPER_INTERVAL = 5.0
HEADLINE = (
    "placed_per_s",
    "filled_per_s",
    "place_p50_ms",
    "place_p99_ms",
    "fill_p50_ms",
    "fill_p99_ms",
    "failover_s",
    "pg_ceiling_per_s",
    "pg_ceiling_notify_per_s",
)
TARGETS = {
    "placed_per_s": (">=", 700),
    "filled_per_s": (">=", 250),
    "place_p99_ms": ("<", 50),
    "failover_s": ("<", 2),
}


def say(text: str = "") -> None:
    """Print now (the output is read live, and through make)."""
    print(text, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; --quick changes the defaults of what was not given explicitly."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000, help="customers to load")
    parser.add_argument("--trades", type=int, default=1_000_000, help="past trades to load")
    parser.add_argument(
        "--load-customers", type=int, default=10_000, help="customers the HTTP load uses"
    )
    parser.add_argument(
        "--duration", type=float, default=30, help="seconds of the throughput phase"
    )
    parser.add_argument("--warmup", type=float, default=5, help="seconds before it counts")
    parser.add_argument("--clients", type=int, default=64, help="closed-loop clients")
    parser.add_argument("--load-processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--rate", type=float, default=100, help="open-loop trades/s")
    parser.add_argument(
        "--latency-duration", type=float, default=20, help="seconds of the open-loop phase"
    )
    parser.add_argument(
        "--ceiling-seconds", type=float, default=10, help="seconds per ceiling variant"
    )
    parser.add_argument(
        "--failover-load", type=float, default=8, help="seconds of load around the failover"
    )
    parser.add_argument("--ceiling-connections", type=int, default=8)
    parser.add_argument("--web-workers", type=int, default=5, help="gunicorn workers")
    parser.add_argument(
        "--callback-web-workers",
        type=int,
        default=2,
        help="gunicorn workers serving only the exchange's callbacks (0: the web serves them)",
    )
    parser.add_argument("--fill-delay-ms", default="2,5", help="the simulator's MIN,MAX")
    parser.add_argument(
        "--drain-timeout", type=float, default=45, help="most seconds to wait for a drain"
    )
    parser.add_argument("--log-level", default="INFO", help="LOG_LEVEL of our processes")
    parser.add_argument("--database", default="brokerage_bench", help="bench database name")
    parser.add_argument(
        "--reuse", action="store_true", help="keep the database if a load finished in it"
    )
    parser.add_argument(
        "--check-load", action="store_true", help="run the audit right after loading"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of a minute or two: small data, short phases (explicit flags win)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        quick = {
            "customers": 10_000,
            "trades": 100_000,
            "load_customers": 2_000,
            "duration": 8,
            "warmup": 2,
            "latency_duration": 6,
            "ceiling_seconds": 3,
            "failover_load": 6,
            "drain_timeout": 20,
        }
        given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in (argv or sys.argv[1:])}
        for key, value in quick.items():
            if key not in given:
                setattr(args, key, value)
    if args.customers < 100 or args.trades < 0:
        parser.error("want at least 100 customers and no negative trade count")
    if args.trades > 100 * args.customers:
        parser.error("at most 100 past trades per customer (their cash must cover the buys)")
    return args


# -- the database, read by the bench itself ---------------------------------------------------


@dataclass
class Db:
    """The bench's own queries, on its own autocommit connection."""

    conn: psycopg.Connection

    def one(self, query: str, params: Params | None = None) -> tuple:
        row = self.conn.execute(query, params).fetchone()
        if row is None:
            raise LookupError(f"no row from {query!r}")
        return row

    def all(self, query: str, params: Params | None = None) -> list[tuple]:
        return self.conn.execute(query, params).fetchall()

    def open_trades(self) -> int:
        """Trades placed or in flight, in the whole database."""
        query = "SELECT count(*) FROM trades_trade WHERE status IN ('placed', 'in_progress')"
        return self.one(query)[0]

    def max_trade_id(self) -> int:
        return self.one("SELECT COALESCE(max(id), 0) FROM trades_trade")[0]

    def progress(self, since_id: int) -> tuple[int, int]:
        """(trades placed, trades filled) among the trades after `since_id`."""
        return self.one(
            "SELECT count(*), count(*) FILTER (WHERE status = 'filled') FROM trades_trade "
            "WHERE id > %s",
            (since_id,),
        )

    def filled_between(self, since_id: int, begin: float, end: float) -> int:
        """Trades after `since_id` that our database marked filled in [begin, end)."""
        return self.one(
            "SELECT count(*) FROM trades_trade WHERE id > %s AND status = 'filled' "
            "AND finished_at >= to_timestamp(%s) AND finished_at < to_timestamp(%s)",
            (since_id, begin, end),
        )[0]

    def outcomes(self, samples: Iterable[Sample]) -> tuple[Counter, list[float]]:
        """Final statuses of the trades the samples placed, and place→filled seconds (from
        when each request was due to when our database recorded the fill)."""
        due = {s.trade_id: s.due for s in samples if s.status == 201}
        rows = self.all(
            "SELECT id, status, EXTRACT(EPOCH FROM finished_at)::float8 FROM trades_trade "
            "WHERE id = ANY(%s)",
            (list(due),),
        )
        statuses = Counter(row[1] for row in rows)
        latencies = [row[2] - due[row[0]] for row in rows if row[1] == "filled"]
        return statuses, latencies

    def leases(self, shards: list[int]) -> dict[int, tuple[str, int]]:
        """shard -> (holder, epoch) from the lease table."""
        rows = self.all(
            "SELECT shard, holder, epoch FROM outbox_shardlease WHERE shard = ANY(%s)", (shards,)
        )
        return {shard: (holder, epoch) for shard, holder, epoch in rows}


def half(k: int, n: int) -> list[int]:
    """The shards `--shards K/N` covers (outbox.management.commands.run_shard_worker)."""
    return [s for s in range(SHARD_COUNT) if s * n // SHARD_COUNT == k - 1]


def machine_info(db: Db) -> dict:
    """What the figures were measured on, and how busy the machine was just before."""
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    before = cpu.snapshot(time.time())
    time.sleep(1.0)
    background = cpu.usage(before, cpu.snapshot(time.time()), {})
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "postgres": db.one("SHOW server_version")[0],
        "synchronous_commit": db.one("SHOW synchronous_commit")[0],
        "load_average": round(os.getloadavg()[0], 2),
        "cores_busy_before_start": round(background.machine["busy"], 2),
    }


# -- phases -----------------------------------------------------------------------------------


def prepare_database(args: argparse.Namespace) -> str:
    """Recreate, migrate and load the bench database (unless --reuse finds it loaded)."""
    maintenance, url = database.bench_urls(args.database)
    wanted = database.LOADED_MARK.format(customers=args.customers, trades=args.trades)
    if args.reuse and database.loaded_mark(maintenance, args.database) == wanted:
        say(f"reusing database {args.database} ({wanted})")
        return url
    say(f"database {args.database}: recreating, migrating")
    started = time.monotonic()
    recreate_database(maintenance, args.database)
    migrate(url)
    say(f"  migrated in {time.monotonic() - started:.1f} s")
    say(f"loading {args.customers:,} customers and {args.trades:,} past trades")
    seconds = load_data.load(
        url, customers=args.customers, trades=args.trades, shard_count=SHARD_COUNT, log=say
    )
    say(f"loaded in {seconds:.1f} s")
    if args.check_load:
        ok, report = database.audit(url, quiescent=True)
        say(f"audit of the loaded data: {'PASS' if ok else 'FAIL'}")
        if not ok:
            say(report)
            raise SystemExit(1)
    database.mark_loaded(maintenance, args.database, customers=args.customers, trades=args.trades)
    return url


def pgbench_executable() -> str | None:
    """pgbench from PATH, else the one that comes with the embedded Postgres."""
    found = shutil.which("pgbench")
    if found:
        return found
    try:
        candidate = embedded_postgres._bin("pgbench")
    except Exception:
        return None
    return candidate if os.access(candidate, os.X_OK) else None


def measure_ceiling(
    args: argparse.Namespace, url: str, customer_ids: list[int], tickers: list[str]
) -> dict[str, pg_ceiling.CeilingResult]:
    """The best window of each variant: someone else's work only ever lowers a rate."""
    say(
        f"Postgres ceiling: the place-trade transaction from {args.ceiling_connections} "
        f"processes, {args.ceiling_seconds:.0f} s per variant in alternating windows"
    )
    windows = pg_ceiling.measure(
        url,
        customer_ids=customer_ids,
        tickers=tickers,
        connections=args.ceiling_connections,
        seconds=args.ceiling_seconds,
        rate=float(os.environ.get("PLACE_TRADE_RATE", 10.0)),
        burst=float(os.environ.get("PLACE_TRADE_BURST", 20.0)),
        bench_database=args.database,
    )
    for result in windows:
        say(f"  {result.describe()}")
        describe_cpu(result.cpu, "    ")
        if result.refused:
            say(f"    ({result.refused} refused by the rate limit and rolled back)")
    best = {
        name: max((r for r in windows if r.notify == notify), key=lambda r: r.per_s)
        for name, notify in (("plain", False), ("notify", True))
    }
    say(
        f"  ceiling: {best['plain'].per_s:,.0f} tx/s plain, {best['notify'].per_s:,.0f} tx/s "
        f"with NOTIFY in the transaction ({best['notify'].per_s / best['plain'].per_s:.0%})"
    )
    executable = pgbench_executable()
    if executable:
        for notify in (False, True):
            result = pg_ceiling.pgbench(
                executable,
                url,
                customer_ids=customer_ids,
                notify=notify,
                connections=args.ceiling_connections,
                seconds=args.ceiling_seconds / 2,
                bench_database=args.database,
            )
            say(f"  {result.describe()}")
            describe_cpu(result.cpu, "    ")
            best[f"pgbench_{'notify' if notify else 'plain'}"] = result
    cancelled = pg_ceiling.clean_up(url, first=customer_ids[0], last=customer_ids[-1])
    say(f"  cancelled the ceiling's {cancelled:,} placed trades and removed their outbox rows")
    return best


def production_env(args: argparse.Namespace) -> dict[str, str]:
    """Production-like: no DEBUG (it records every query), the settings' defaults."""
    return {
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(32),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": args.log_level,
        **PRODUCTION_TIMINGS,
    }


def measure_web_ceiling(
    args: argparse.Namespace, url: str, db: Db, customer_ids: list[int], tickers: list[str]
) -> dict[str, float]:
    """The closed loop of (a), with nothing else running, on the ceiling's customers:
    first against a bare DRF view inserting the trade and outbox rows through the ORM
    (bench.bare_drf: what Django + DRF under gunicorn can do here at all), then against
    our placement API alone (no shard workers, no callbacks sharing the cores)."""
    first, last = customer_ids[0], customer_ids[-1]
    customers = load_customers(db, len(customer_ids), first=first)
    threads = max(1, args.clients // args.load_processes)
    if len(customers) < threads * args.load_processes:
        say("web ceiling: skipped (fewer ceiling customers than clients)")
        return {}
    say(
        f"web ceiling: the closed loop of (a), {args.clients} clients, gunicorn "
        f"{args.web_workers} sync workers and nothing else, {args.ceiling_seconds:.0f} s each"
    )
    variants = {
        "bare_drf": (
            "a bare DRF view inserting the trade and outbox rows through the ORM",
            {
                "DJANGO_SETTINGS_MODULE": "bench.bare_drf.settings",
                "BARE_DRF_FIRST_CUSTOMER": str(first),
                "BARE_DRF_LAST_CUSTOMER": str(last),
            },
        ),
        "api_alone": ("our placement API, no execution running", {}),
    }
    rates = {}
    for name, (label, env) in variants.items():
        (LOGS / name).mkdir()
        stack = Stack(
            LOGS / name,
            database_url=url,
            shard_count=SHARD_COUNT,
            env={**production_env(args), **env},
        )
        try:
            stack.start_web(args.web_workers)
            run = LoadRun(
                stack.web_url,
                customers,
                tickers,
                processes=args.load_processes,
                threads=threads,
                seconds=1 + args.ceiling_seconds,
                tag=f"w{secrets.token_hex(3)}-",
            )
            window = (run.begin + 1, run.end)
            snapshots = watch(db, run, db.max_trade_id(), {"begin": window[0], "end": window[1]})
            samples = run.result()
            groups = {proc.pid: name for name, proc in stack.procs.items()}
            used = cpu.usage(snapshots["begin"], snapshots["end"], groups, args.database)
        finally:
            stack.stop_all()
        counted = [s for s in samples if window[0] <= s.started + s.latency < window[1]]
        created = [s.latency for s in counted if s.status == 201]
        rate = len(created) / (window[1] - window[0])
        rates[f"{name}_per_s"] = round(rate, 1)
        web_ms = 1000 * used.cores.get("web", 0.0) / max(1e-9, rate)
        rates[f"{name}_web_cpu_ms"] = round(web_ms, 2)
        say(
            f"  {rate:8,.0f} requests/s  ({label}; p50 {ms(percentile(created, 50))} ms, "
            f"p99 {ms(percentile(created, 99))} ms; {status_line(counted)}); "
            f"web CPU {web_ms:.1f} ms per request"
        )
        describe_cpu(used, "    ")
    if bare_ms := rates.get("bare_drf_web_cpu_ms"):
        # A filled trade is two requests through Django (the placement, the callback).
        cap = (os.cpu_count() or 1) * 1000 / (2 * bare_ms)
        say(
            f"  two such bare requests per trade (placement, callback) alone would cap what "
            f"{os.cpu_count()} cores carry end to end at ~{cap:,.0f} trades/s"
        )
    cancelled = pg_ceiling.clean_up(url, first=first, last=last)
    say(f"  cancelled the web ceiling's {cancelled:,} placed trades and removed their outbox rows")
    return rates


def start_stack(args: argparse.Namespace, url: str, db: Db) -> Stack:
    """Exchange, web, a leader and a standby per half of the shards, reaper."""
    stack = Stack(
        LOGS,
        database_url=url,
        shard_count=SHARD_COUNT,
        separate_callbacks=bool(args.callback_web_workers),
        env=production_env(args),
    )
    say(f"starting the stack (logs in {LOGS})")
    try:
        # The exchange stands in for a remote system: keep its own logging quiet.
        stack.start_exchange("--fill-delay-ms", args.fill_delay_ms, "--log-level", "WARNING")
        stack.start_web(args.web_workers)
        if args.callback_web_workers:
            stack.start_callbacks(args.callback_web_workers)
        every_shard = list(range(SHARD_COUNT))
        # Lease rows outlive their holders (a reused database): wait for fresh epochs.
        stale = db.leases(every_shard)
        for shards, (leader, _) in HALVES.items():
            stack.start_worker(leader, shards)
        leaders = {leader for leader, _ in HALVES.values()}

        def leaders_hold_every_shard() -> bool:
            now = db.leases(every_shard)
            return len(now) == SHARD_COUNT and all(
                holder in leaders and epoch > stale.get(shard, ("", 0))[1]
                for shard, (holder, epoch) in now.items()
            )

        wait_for(leaders_hold_every_shard, timeout=30, what="the leaders to hold every shard")
        for shards, (_, standby) in HALVES.items():
            stack.start_worker(standby, shards)
        names = [f"leader {standby}" for _, standby in HALVES.values()]
        wait_for(
            lambda: (
                db.one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = ANY(%s)",
                    (names,),
                )[0]
                == len(names)
            ),
            timeout=30,
            what="the standbys to contend for their shards",
        )
        stack.start_reaper(interval=REAPER_INTERVAL)
    except BaseException:
        stack.stop_all()
        raise
    callbacks = (
        f" (+ {args.callback_web_workers} for exchange callbacks only)"
        if args.callback_web_workers
        else ""
    )
    say(
        f"  web: gunicorn {args.web_workers} sync workers{callbacks}; shard workers a1/a2 "
        f"(shards 1/2), b1/b2 (2/2); reaper; exchange fill delay {args.fill_delay_ms} ms"
    )
    return stack


def load_customers(db: Db, count: int, first: int = 1) -> list[Customer]:
    """Tokens of `count` customers from `first` on, with a ticker each holds enough of to
    sell some."""
    rows = db.all(
        """
        SELECT t.key, p.ticker FROM authtoken_token t
        LEFT JOIN LATERAL (
            SELECT ticker FROM balances_position
            WHERE customer_id = t.user_id AND quantity - held >= 100 ORDER BY ticker LIMIT 1
        ) p ON true
        WHERE t.user_id BETWEEN %s AND %s ORDER BY t.user_id
        """,
        (first, first + count - 1),
    )
    return [Customer(token=key, sell_ticker=ticker) for key, ticker in rows]


def watch(
    db: Db, run: LoadRun, since_id: int, marks: dict[str, float], every: float = 5.0
) -> dict[str, cpu.Snapshot]:
    """While the load runs: a progress line every `every` s, CPU snapshots at `marks`."""
    snapshots: dict[str, cpu.Snapshot] = {}
    next_line = run.begin + every
    while not run.done():
        now = time.time()
        for name, at in marks.items():
            if name not in snapshots and now >= at:
                snapshots[name] = cpu.snapshot(now)
        if now >= next_line:
            placed, filled = db.progress(since_id)
            say(
                f"    t={now - run.begin:5.1f}s  placed {placed:7,}  filled {filled:7,}  "
                f"open {db.open_trades():7,}"
            )
            next_line += every
        time.sleep(0.2)
    for name in marks.keys() - snapshots.keys():
        snapshots[name] = cpu.snapshot(time.time())
    return snapshots


def drain(db: Db, timeout: float) -> tuple[float, int]:
    """Wait until no trade is open (or the timeout); (seconds waited, trades still open)."""
    started = time.monotonic()
    while (left := db.open_trades()) and time.monotonic() - started < timeout:
        time.sleep(0.2)
    return time.monotonic() - started, left


def describe_cpu(used: cpu.Usage, indent: str = "  ") -> None:
    """Print the CPU line, and a warning when someone else's work skewed the figures."""
    say(f"{indent}{used.describe()}")
    other = used.cores.get(cpu.OTHER, 0.0)
    if other >= 0.2:
        say(
            f"{indent}WARNING: other work on this machine used {other:.2f} cores meanwhile "
            "(other sessions, tests...): the figures above are pessimistic"
        )


def status_line(samples: list[Sample]) -> str:
    """How many responses of each HTTP status."""
    names = {0: "no answer", NOT_SENT: "never sent (too far behind)"}
    counts = Counter(s.status for s in samples)
    return ", ".join(f"{names.get(code, code)}: {n:,}" for code, n in sorted(counts.items()))


def throughput_phase(
    args: argparse.Namespace, stack: Stack, db: Db, customers: list[Customer], tickers: list[str]
) -> dict:
    """(a) Closed loop: placed trades/s at saturation, and (c) fills while and after."""
    say(
        f"(a) throughput: closed loop, {args.clients} clients over {len(customers):,} customers, "
        f"{args.warmup:.0f} s warm-up + {args.duration:.0f} s"
    )
    since_id = db.max_trade_id()
    exchange_before = stack.exchange_stats()
    run = LoadRun(
        stack.web_url,
        customers,
        tickers,
        processes=args.load_processes,
        threads=max(1, args.clients // args.load_processes),
        seconds=args.warmup + args.duration,
        tag=f"t{secrets.token_hex(3)}-",
    )
    window = (run.begin + args.warmup, run.end)
    seconds = window[1] - window[0]
    snapshots = watch(db, run, since_id, {"begin": window[0], "end": window[1]})
    samples = run.result()
    groups = {proc.pid: name for name, proc in stack.procs.items()}
    used = cpu.usage(snapshots["begin"], snapshots["end"], groups, args.database)
    counted = [s for s in samples if window[0] <= s.started + s.latency < window[1]]
    created = [s.latency for s in counted if s.status == 201]
    placed_per_s = len(created) / seconds
    filled_per_s = db.filled_between(since_id, *window) / seconds
    say(f"  responses in the window: {status_line(counted)}")
    say(
        f"  placed {placed_per_s:,.0f} trades/s (HTTP 201s); request latency at saturation "
        f"p50 {ms(percentile(created, 50))} ms, p99 {ms(percentile(created, 99))} ms"
    )
    say(f"  filled {filled_per_s:,.0f} trades/s while the load ran")
    describe_cpu(used)
    # Each fill is one exchange callback: the web serves placements and callbacks.
    web_cores = used.cores.get("web", 0.0) + used.cores.get("callbacks", 0.0)
    web_ms = 1000 * web_cores / max(1e-9, placed_per_s + filled_per_s)
    say(f"  web CPU per HTTP request (placements and callbacks): {web_ms:.1f} ms")

    _, left = drain(db, args.drain_timeout)
    drained_at = cpu.snapshot(time.time())
    drained = cpu.usage(snapshots["begin"], drained_at, groups, args.database)
    drain_s = drained_at.at - run.end
    statuses, fills = db.outcomes(s for s in samples if s.status == 201)
    placed_total, filled_total = db.progress(since_id)
    filled_since_window = db.filled_between(since_id, window[0], drained_at.at + 1)
    say(
        f"  drain after the load: {drain_s:.1f} s"
        + (f" (gave up with {left:,} still open)" if left else "")
        + f"; outcomes {dict(statuses)}"
    )
    first = min((s.started for s in samples), default=run.begin)
    last_fill = db.one(
        "SELECT EXTRACT(EPOCH FROM max(finished_at))::float8 FROM trades_trade WHERE id > %s",
        (since_id,),
    )[0]
    overall = filled_total / max(1e-9, (last_fill or time.time()) - first)
    exchange = {k: v - exchange_before.get(k, 0) for k, v in stack.exchange_stats().items()}
    say(
        f"  the exchange got {exchange['orders_received']:,} orders and "
        f"{exchange['quote_batches']:,} quote requests for {exchange['quotes']:,} tickers"
    )
    say(
        f"  filled {overall:,.0f} trades/s from the first request to the last fill "
        f"({filled_total:,} of {placed_total:,}); place→filled at saturation "
        f"p50 {ms(percentile(fills, 50))} ms, p99 {ms(percentile(fills, 99))} ms"
    )
    # CPU of the stack and Postgres from the window's start until drained, per trade
    # filled meanwhile: what one trade costs, whoever else is using the machine.
    to_ms = 1000 * (drained_at.at - snapshots["begin"].at) / max(1, filled_since_window)
    per_trade = drained.system() * to_ms
    by_role = {
        name: round(cores * to_ms, 1)
        for name, cores in sorted(drained.cores.items(), key=lambda item: -item[1])
        if name not in (cpu.OTHER, cpu.BENCH) and cores * to_ms >= 0.1
    }
    capacity = (os.cpu_count() or 1) * 1000 / per_trade
    # The simulator stands in for a remote exchange, whose CPU would not be ours.
    ours = per_trade - by_role.get("exchange", 0.0)
    say(
        f"  CPU per trade placed and filled (stack + Postgres): {per_trade:.1f} ms "
        f"({', '.join(f'{name} {value}' for name, value in by_role.items())}); with the "
        f"{os.cpu_count()} cores to itself the system could do ~{capacity:,.0f} trades/s, "
        f"~{(os.cpu_count() or 1) * 1000 / ours:,.0f} with the exchange elsewhere"
    )
    return {
        "placed_per_s": round(placed_per_s, 1),
        "filled_per_s": round(filled_per_s, 1),
        "filled_per_s_incl_drain": round(overall, 1),
        "drain_s": round(drain_s, 1),
        "saturated_place_p50_ms": ms(percentile(created, 50)),
        "saturated_place_p99_ms": ms(percentile(created, 99)),
        "saturated_fill_p50_ms": ms(percentile(fills, 50)),
        "saturated_fill_p99_ms": ms(percentile(fills, 99)),
        "web_cpu_ms_per_request": round(web_ms, 2),
        "cpu_ms_per_trade": round(per_trade, 2),
        "cpu_ms_per_trade_by_role": by_role,
        "cpu_bound_capacity_per_s": round(capacity),
        "cpu": used.to_json(),
    }


def open_loop(
    args: argparse.Namespace,
    stack: Stack,
    customers: list[Customer],
    tickers: list[str],
    *,
    seconds: float,
    tag: str,
) -> LoadRun:
    """Requests due at `--rate` per second for `seconds`, starting in the background."""
    return LoadRun(
        stack.web_url,
        customers,
        tickers,
        processes=args.load_processes,
        threads=OPEN_LOOP_THREADS,
        seconds=seconds,
        rate=args.rate,
        tag=f"{tag}{secrets.token_hex(3)}-",
    )


def latency_phase(
    args: argparse.Namespace, stack: Stack, db: Db, customers: list[Customer], tickers: list[str]
) -> dict:
    """(b) Open loop at a fixed rate: place latency, and (c) place→filled latency."""
    say(f"(b) latency: open loop at {args.rate:.0f} trades/s for {args.latency_duration:.0f} s")
    since_id = db.max_trade_id()
    run = open_loop(args, stack, customers, tickers, seconds=args.latency_duration, tag="l")
    snapshots = watch(db, run, since_id, {"begin": run.begin + 1, "end": run.end})
    samples = run.result()
    groups = {proc.pid: name for name, proc in stack.procs.items()}
    used = cpu.usage(snapshots["begin"], snapshots["end"], groups, args.database)
    # Requests never sent count with the time they had waited: leaving them out would
    # flatter an overloaded system.
    counted = [s.latency for s in samples if s.status in (201, NOT_SENT)]
    unsent = sum(1 for s in samples if s.status == NOT_SENT)
    say(f"  responses: {status_line(samples)}")
    describe_cpu(used)
    say(
        f"  place request p50 {ms(percentile(counted, 50))} ms, "
        f"p99 {ms(percentile(counted, 99))} ms, max {ms(max(counted, default=float('nan')))} ms "
        "(from when each request was due"
        + (f"; {unsent:,} never sent count with their wait, a lower bound)" if unsent else ")")
    )
    drained, left = drain(db, args.drain_timeout)
    statuses, fills = db.outcomes(samples)
    say(
        f"  (c) place→filled at {args.rate:.0f}/s: p50 {ms(percentile(fills, 50))} ms, "
        f"p99 {ms(percentile(fills, 99))} ms; outcomes {dict(statuses)}; drained in "
        f"{drained:.1f} s" + (f", {left:,} still open" if left else "")
    )
    return {
        "place_p50_ms": ms(percentile(counted, 50)),
        "place_p99_ms": ms(percentile(counted, 99)),
        "place_never_sent": unsent,
        "fill_p50_ms": ms(percentile(fills, 50)),
        "fill_p99_ms": ms(percentile(fills, 99)),
        "latency_phase_cpu": used.to_json(),
    }


def failover_phase(
    args: argparse.Namespace, stack: Stack, db: Db, customers: list[Customer], tickers: list[str]
) -> dict:
    """(d) SIGKILL the leader of half the shards under load: seconds until the standby
    holds each of them with a new epoch."""
    shards = half(1, 2)
    say(f"(d) failover: SIGKILL the leader of shards 1/2 under {args.rate:.0f} trades/s")
    since_id = db.max_trade_id()
    run = open_loop(args, stack, customers, tickers, seconds=args.failover_load, tag="f")
    time.sleep(max(0.0, run.begin + 2 - time.time()))
    before = db.leases(shards)
    holders = {holder for holder, _ in before.values()}
    if len(holders) != 1 or len(before) != len(shards):
        raise RuntimeError(f"expected one leader of shards 1/2, found {holders}")
    leader = holders.pop()
    standby = next(name for name in HALVES["1/2"] if name != leader)
    killed_at, killed_wall = time.monotonic(), time.time()
    stack.kill(leader)

    def taken_over() -> bool:
        now = db.leases(shards)
        return all(now[s][0] == standby and now[s][1] > before[s][1] for s in shards)

    wait_for(taken_over, timeout=30, what="the standby to take every shard", every=0.01)
    failover_s = time.monotonic() - killed_at
    say(f"  killed {leader}; {standby} held all {len(shards)} shards after {failover_s:.2f} s")
    samples = run.result()
    drained, left = drain(db, args.drain_timeout)
    first_send = db.one(
        "SELECT EXTRACT(EPOCH FROM min(t.submitted_at))::float8 FROM trades_trade t "
        "JOIN balances_account a ON a.customer_id = t.customer_id "
        "WHERE t.id > %s AND a.shard = ANY(%s) AND t.submitted_at > to_timestamp(%s)",
        (since_id, shards, killed_wall),
    )[0]
    resumed = None if first_send is None else round(first_send - killed_wall, 3)
    statuses, fills = db.outcomes(samples)
    say(
        f"  first trade of those shards sent by {standby} {resumed} s after the kill; trades "
        f"placed around the failover: {dict(statuses)}, place→filled "
        f"p50 {ms(percentile(fills, 50))} ms, max {ms(max(fills, default=float('nan')))} ms; "
        f"drained in {drained:.1f} s" + (f", {left} still open" if left else "")
    )
    return {"failover_s": round(failover_s, 3), "failover_first_send_s": resumed}


def verdict(results: dict) -> list[str]:
    """One line per target the product owner set: met or missed."""
    lines = []
    ceiling = results.get("pg_ceiling_per_s")
    for key, (op, target) in TARGETS.items():
        value = results.get(key)
        if value is None:
            continue
        ok = value >= target if op == ">=" else value < target
        line = f"  {key:<14} {value:>9}  target {op} {target:<4} {'met' if ok else 'MISSED'}"
        if ceiling and key.endswith("per_s"):
            line += f"  ({value / ceiling:.0%} of the Postgres ceiling"
            if pgbench := results.get("pgbench_plain_per_s"):
                line += f", {value / pgbench:.0%} of pgbench's"
            if key == "placed_per_s" and (bare := results.get("bare_drf_per_s")):
                line += f"; {value / bare:.0%} of a bare DRF view's rate"
                if alone := results.get("api_alone_per_s"):
                    line += f", our API alone {alone / bare:.0%}"
            line += ")"
        lines.append(line)
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run every phase; exit status 1 if the audit afterwards finds a broken invariant."""
    args = parse_args(argv)
    started = time.monotonic()
    RESULTS.mkdir(exist_ok=True)
    shutil.rmtree(LOGS, ignore_errors=True)
    LOGS.mkdir()
    url = prepare_database(args)
    results: dict = {}
    with psycopg.connect(url, autocommit=True, application_name="bench") as conn:
        db = Db(conn)
        machine = machine_info(db)
        say(f"machine: {json.dumps(machine)}")
        tickers = [r[0] for r in db.all("SELECT symbol FROM trades_ticker WHERE active")]
        ceiling_n = min(4000, args.customers // 4)
        first_ceiling = args.customers - ceiling_n + 1
        ceiling_ids = list(range(first_ceiling, args.customers + 1))
        ceiling = measure_ceiling(args, url, ceiling_ids, tickers)
        results["pg_ceiling_per_s"] = round(ceiling["plain"].per_s, 1)
        results["pg_ceiling_notify_per_s"] = round(ceiling["notify"].per_s, 1)
        for variant in ("pgbench_plain", "pgbench_notify"):
            if variant in ceiling:
                results[f"{variant}_per_s"] = round(ceiling[variant].per_s, 1)
        results.update(measure_web_ceiling(args, url, db, ceiling_ids, tickers))
        customers = load_customers(db, min(args.load_customers, first_ceiling - 1))
        stack = start_stack(args, url, db)
        try:
            results.update(throughput_phase(args, stack, db, customers, tickers))
            results.update(latency_phase(args, stack, db, customers, tickers))
            results.update(failover_phase(args, stack, db, customers, tickers))
        finally:
            stack.stop_all()
        left = db.open_trades()
    ok, report = database.audit(url, quiescent=left == 0)
    say(
        f"audit after the run{'' if left == 0 else f' ({left} trades still open)'}: "
        f"{'PASS' if ok else 'FAIL'}"
    )
    for line in report.splitlines():
        if not line.startswith("ok") and line.strip():
            say(f"  {line}")
    say("")
    say("targets:")
    for line in verdict(results):
        say(line)
    say(f"bench took {time.monotonic() - started:.0f} s")
    summary = {key: results.pop(key, None) for key in HEADLINE}
    summary.update(audit_ok=ok, details=results, machine=machine)
    (RESULTS / "last.json").write_text(json.dumps(summary, indent=2) + "\n")
    say(json.dumps(summary))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
