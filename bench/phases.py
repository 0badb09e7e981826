"""The bench's phases, measuring: the database it prepares, the stack it starts, and each
phase's figures as a dataclass (bench.report prints them and turns them into JSON)."""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.abc import Params

from bench import cpu, database, load_data, pg_ceiling
from bench.http_load import NOT_SENT, OPEN_LOOP_THREADS, Customer, LoadRun, Sample
from bench.report import say
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
    """The shards `--shards K/N` covers (outbox.sharding.parse_shards)."""
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


def load_customers(db: Db, count: int, first: int = 1) -> list[Customer]:
    """Tokens of `count` customers from `first` on, with a ticker each holds enough of to
    sell some."""
    rows = db.all(
        """
        SELECT k.customer_id, p.ticker FROM api_keys_apikey k
        LEFT JOIN LATERAL (
            SELECT ticker FROM balances_position
            WHERE customer_id = k.customer_id AND quantity - held >= 100 ORDER BY ticker LIMIT 1
        ) p ON true
        WHERE k.customer_id BETWEEN %s AND %s ORDER BY k.customer_id
        """,
        (first, first + count - 1),
    )
    return [Customer(token=load_data.bench_key(c), sell_ticker=ticker) for c, ticker in rows]


# -- setting up -------------------------------------------------------------------------------


def prepare_database(args: argparse.Namespace) -> str:
    """Recreate, migrate and load the bench database (unless --reuse finds it loaded)."""
    maintenance, url = database.bench_urls(args.database)
    wanted = database.LOADED_MARK.format(customers=args.customers, trades=args.trades)
    if args.reuse and database.loaded_mark(maintenance, args.database) == wanted:
        say(f"reusing database {args.database} ({wanted}); migrating it to this code")
        migrate(url)
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


def production_env(args: argparse.Namespace) -> dict[str, str]:
    """Production-like: no DEBUG (it records every query), the settings' defaults."""
    return {
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(32),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": args.log_level,
        **PRODUCTION_TIMINGS,
    }


def start_stack(args: argparse.Namespace, url: str, db: Db) -> Stack:
    """Exchange, web, a leader and a standby per half of the shards, reaper; with
    --proxy, nginx in front of the web and the callback receiver."""
    stack = Stack(
        LOGS,
        database_url=url,
        shard_count=SHARD_COUNT,
        separate_callbacks=bool(args.callback_web_workers),
        proxied=args.proxy,
        env=production_env(args),
    )
    say(f"starting the stack (logs in {LOGS})")
    try:
        # The exchange stands in for a remote system: keep its own logging quiet.
        stack.start_exchange("--fill-delay-ms", args.fill_delay_ms, "--log-level", "WARNING")
        stack.start_web(args.web_workers)
        if args.callback_web_workers:
            stack.start_callbacks(args.callback_web_workers)
        if args.proxy:
            # One nginx worker: its CPU is the "proxy" role of the CPU lines.
            stack.start_proxy(worker_processes="1")
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
    proxied = " behind nginx (--proxy)" if args.proxy else ""
    say(
        f"  web: gunicorn {args.web_workers} sync workers{callbacks}{proxied}; shard workers a1/a2 "
        f"(shards 1/2), b1/b2 (2/2); reaper; exchange fill delay {args.fill_delay_ms} ms"
    )
    return stack


# -- driving load -------------------------------------------------------------------------------


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
        api=args.api,
    )


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


# -- the phases -------------------------------------------------------------------------------


@dataclass
class Ceiling:
    """The Postgres ceiling: every window of the place-trade transaction from psycopg, then
    pgbench's runs, and the best of each variant."""

    windows: list[pg_ceiling.CeilingResult]
    pgbench: list[pg_ceiling.CeilingResult]
    # "plain", "notify", and "pgbench_plain", "pgbench_notify" when pgbench ran.
    best: dict[str, pg_ceiling.CeilingResult]
    cancelled: int


def measure_ceiling(
    args: argparse.Namespace, url: str, customer_ids: list[int], tickers: list[str]
) -> Ceiling:
    """The best window of each variant: someone else's work only ever lowers a rate."""
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
    best = {
        name: max((r for r in windows if r.notify == notify), key=lambda r: r.per_s)
        for name, notify in (("plain", False), ("notify", True))
    }
    runs = []
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
            runs.append(result)
            best[f"pgbench_{'notify' if notify else 'plain'}"] = result
    cancelled = pg_ceiling.clean_up(url, first=customer_ids[0], last=customer_ids[-1])
    return Ceiling(windows=windows, pgbench=runs, best=best, cancelled=cancelled)


@dataclass
class WebVariant:
    """One web-ceiling run: the closed loop against one gunicorn and nothing else."""

    name: str
    label: str
    rate: float  # 201s per second in the window
    web_ms: float  # web CPU per request
    created: list[float]  # latencies of the 201s
    counted: list[Sample]  # every response in the window
    cpu: cpu.Usage


def web_ceiling_variants(first: int, last: int) -> dict[str, tuple[str, dict[str, str]]]:
    """name -> (label, environment) of the web ceiling's two gunicorns: a bare DRF view
    inserting the trade and outbox rows through the ORM (bench.bare_drf: what Django + DRF
    under gunicorn can do here at all), then our placement API alone (no shard workers, no
    callbacks sharing the cores)."""
    return {
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


def web_ceiling_threads(args: argparse.Namespace) -> int:
    """Closed-loop threads per load process."""
    return max(1, args.clients // args.load_processes)


def measure_web_variant(
    args: argparse.Namespace,
    url: str,
    db: Db,
    customers: list[Customer],
    tickers: list[str],
    *,
    name: str,
    label: str,
    env: dict[str, str],
) -> WebVariant:
    """The closed loop of (a) against a gunicorn of `env` alone, on the ceiling's customers."""
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
            threads=web_ceiling_threads(args),
            seconds=1 + args.ceiling_seconds,
            tag=f"w{secrets.token_hex(3)}-",
            # The bare DRF view is /api/v1/'s shape alone, whatever --api says.
            api="v1" if name == "bare_drf" else args.api,
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
    web_ms = 1000 * used.cores.get("web", 0.0) / max(1e-9, rate)
    return WebVariant(
        name=name,
        label=label,
        rate=rate,
        web_ms=web_ms,
        created=created,
        counted=counted,
        cpu=used,
    )


@dataclass
class Throughput:
    """(a) and (c) at saturation: the closed loop's window, then its drain."""

    counted: list[Sample]  # every response in the window
    created: list[float]  # latencies of the window's 201s
    placed_per_s: float
    filled_per_s: float  # fills while the load ran
    cpu: cpu.Usage  # during the window
    web_ms: float  # web CPU per HTTP request (placements and callbacks)
    drain_s: float
    left: int  # trades still open when the drain gave up
    statuses: Counter
    fills: list[float]  # place→filled seconds
    exchange: dict[str, int]  # the exchange's counters during the phase
    filled_per_s_incl_drain: float  # from the first request to the last fill
    placed_total: int
    filled_total: int
    cpu_ms_per_trade: float  # stack + Postgres, from the window's start until drained
    cpu_ms_per_trade_by_role: dict[str, float]
    capacity_per_s: float  # with the machine's cores to itself
    capacity_per_s_exchange_elsewhere: float


def measure_throughput(
    args: argparse.Namespace, stack: Stack, db: Db, customers: list[Customer], tickers: list[str]
) -> Throughput:
    """(a) Closed loop: placed trades/s at saturation, and (c) fills while and after."""
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
        api=args.api,
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
    # Each fill is one exchange callback: the web serves placements and callbacks.
    web_cores = used.cores.get("web", 0.0) + used.cores.get("callbacks", 0.0)
    web_ms = 1000 * web_cores / max(1e-9, placed_per_s + filled_per_s)

    _, left = drain(db, args.drain_timeout)
    drained_at = cpu.snapshot(time.time())
    drained = cpu.usage(snapshots["begin"], drained_at, groups, args.database)
    drain_s = drained_at.at - run.end
    statuses, fills = db.outcomes(s for s in samples if s.status == 201)
    placed_total, filled_total = db.progress(since_id)
    filled_since_window = db.filled_between(since_id, window[0], drained_at.at + 1)
    first = min((s.started for s in samples), default=run.begin)
    last_fill = db.one(
        "SELECT EXTRACT(EPOCH FROM max(finished_at))::float8 FROM trades_trade WHERE id > %s",
        (since_id,),
    )[0]
    overall = filled_total / max(1e-9, (last_fill or time.time()) - first)
    exchange = {k: v - exchange_before.get(k, 0) for k, v in stack.exchange_stats().items()}
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
    return Throughput(
        counted=counted,
        created=created,
        placed_per_s=placed_per_s,
        filled_per_s=filled_per_s,
        cpu=used,
        web_ms=web_ms,
        drain_s=drain_s,
        left=left,
        statuses=statuses,
        fills=fills,
        exchange=exchange,
        filled_per_s_incl_drain=overall,
        placed_total=placed_total,
        filled_total=filled_total,
        cpu_ms_per_trade=per_trade,
        cpu_ms_per_trade_by_role=by_role,
        capacity_per_s=capacity,
        capacity_per_s_exchange_elsewhere=(os.cpu_count() or 1) * 1000 / ours,
    )


@dataclass
class Latency:
    """(b) and (c) at a fixed rate."""

    samples: list[Sample]
    cpu: cpu.Usage
    # Latencies of the 201s and of the requests never sent (with the time they waited).
    counted: list[float]
    unsent: int
    drained_s: float
    left: int
    statuses: Counter
    fills: list[float]  # place→filled seconds


def measure_latency(
    args: argparse.Namespace, stack: Stack, db: Db, customers: list[Customer], tickers: list[str]
) -> Latency:
    """(b) Open loop at a fixed rate: place latency, and (c) place→filled latency."""
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
    drained, left = drain(db, args.drain_timeout)
    statuses, fills = db.outcomes(samples)
    return Latency(
        samples=samples,
        cpu=used,
        counted=counted,
        unsent=unsent,
        drained_s=drained,
        left=left,
        statuses=statuses,
        fills=fills,
    )


@dataclass
class Failover:
    """(d) A leader killed under load."""

    leader: str
    standby: str
    shards: int
    failover_s: float  # until the standby held every shard with a new epoch
    first_send_s: float | None  # until the standby sent a trade of those shards
    statuses: Counter
    fills: list[float]  # place→filled seconds of the trades placed around it
    drained_s: float
    left: int


def measure_failover(
    args: argparse.Namespace, stack: Stack, db: Db, customers: list[Customer], tickers: list[str]
) -> Failover:
    """(d) SIGKILL the leader of half the shards under load: seconds until the standby
    holds each of them with a new epoch."""
    shards = half(1, 2)
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
    return Failover(
        leader=leader,
        standby=standby,
        shards=len(shards),
        failover_s=failover_s,
        first_send_s=resumed,
        statuses=statuses,
        fills=fills,
        drained_s=drained,
        left=left,
    )
