"""The soak from start to end: its own database, the whole stack, customers, traffic and
faults for `--duration` seconds, then the drain, the checks and the report.

Everything random comes from one `random.Random(seed)`, drawn in a fixed order (the
fault plan, the customers, the exchange's seed, the clients' streams), so a seed replays
the same plan; the moments things happen to meet still vary from run to run."""

from __future__ import annotations

import argparse
import fcntl
import functools
import os
import random
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from chaos.database import (
    CHAOS_DATABASE,
    Cluster,
    install_instrumentation,
    prepare_cluster,
    with_application_name,
)
from chaos.faults import Fault, FaultRunner, Supervisor, plan_faults
from chaos.probes import Probe, StackProbe, timed
from chaos.report import render, verify
from chaos.stack import ChaosStack, environment_for_children
from chaos.traffic import Traffic, create_customers, plan_customers, start_clients
from devtools import embedded_postgres
from devtools.database import migrate
from devtools.paths import REPO_ROOT

LOG_ROOT = REPO_ROOT / "chaos" / "logs"
HALVES = {1: ("w1a", "w1b"), 2: ("w2a", "w2b")}
REAPERS = ("reaper-a", "reaper-b")
WEB_WORKERS = 3
CLIENT_THREADS = 12


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chaos",
        description="Chaos soak: the whole stack under seeded faults and traffic, then checks.",
    )
    parser.add_argument("--duration", type=float, help="seconds of traffic (default 300, 50 short)")
    parser.add_argument("--seed", type=int, help="replay a run (default: random, printed)")
    parser.add_argument("--customers", type=int, help="default 400 (150 with --short)")
    parser.add_argument("--rate", type=float, help="orders per second (default 20, 12 short)")
    parser.add_argument("--shard-count", type=int, default=100)
    parser.add_argument("--short", action="store_true", help="the CI run: under 2 minutes")
    parser.add_argument(
        "--ha",
        action="store_true",
        help="the failover soak: a Patroni cluster whose primary is killed (chaos.failover)",
    )
    return parser.parse_args(argv)


class Say:
    """Progress lines with the time since start, on stdout and in chaos.log."""

    def __init__(self, path: Path) -> None:
        self.started = time.monotonic()
        self.path = path
        self._lock = threading.Lock()

    def __call__(self, text: str) -> None:
        line = f"[{time.monotonic() - self.started:7.1f}s] {text}"
        with self._lock, open(self.path, "a") as log:
            print(line, flush=True)
            log.write(line + "\n")

    def plain(self, text: str) -> None:
        """A line without the time stamp (the JSON summary must be a bare last line)."""
        with self._lock, open(self.path, "a") as log:
            print(text, flush=True)
            log.write(text + "\n")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    duration = args.duration or (50.0 if args.short else 300.0)
    customer_count = args.customers or (150 if args.short else 400)
    rate = args.rate or (12.0 if args.short else 20.0)
    LOG_ROOT.mkdir(parents=True, exist_ok=True)
    # Held until the process exits: a second soak would drop this one's database.
    running = open(LOG_ROOT / ".lock", "w")
    try:
        fcntl.flock(running, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another chaos soak is running (it holds {running.name})")
        return 2
    log_dir = LOG_ROOT / str(seed)
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    say = Say(log_dir / "chaos.log")
    if args.ha:
        from chaos import failover

        return failover.run(args, seed, log_dir, say, say.plain)
    replay = (
        f"python -m chaos --seed {seed} --duration {duration:g} --customers {customer_count} "
        f"--rate {rate:g} --shard-count {args.shard_count}{' --short' if args.short else ''}"
    )
    say(f"seed {seed} (replay: {replay}); logs in {log_dir}")

    rng = random.Random(seed)
    process_plan, exchange_plan = plan_faults(rng, duration, short=args.short)
    customer_plans = plan_customers(rng, customer_count)
    exchange_seed = rng.randrange(2**31)
    traffic_rng = random.Random(rng.getrandbits(64))
    say(
        "fault plan: "
        + ", ".join(f"{f.kind}@{f.at:.0f}s" for f in sorted(process_plan + exchange_plan, key=_at))
    )

    cluster = prepare_cluster()
    where = f"own cluster in {cluster.pgdata}" if cluster.embedded else "server of DATABASE_URL"
    say(f"database {CHAOS_DATABASE} on the {where}")
    if not cluster.embedded:
        say("the Postgres restart fault will be skipped: DATABASE_URL names a server we do not own")
    migrate(cluster.url, log_file=log_dir / "migrate.log")
    commit_timestamps = install_instrumentation(cluster.url)
    say("migrated")
    postgres_log = _PostgresLog(cluster, log_dir)

    os.environ.update(
        DATABASE_URL=with_application_name(cluster.url, "chaos"),
        DJANGO_SETTINGS_MODULE="settings.base",
        DEBUG="true",
        SHARD_COUNT=str(args.shard_count),
    )
    import django

    django.setup()

    child_env = environment_for_children(cluster.pgdata)
    stack = ChaosStack(
        log_dir, database_url=cluster.url, shard_count=args.shard_count, env=child_env
    )
    probes = StackProbe(
        Probe(cluster.url, "chaos-faults"),
        halves=HALVES,
        reapers=REAPERS,
        shard_count=args.shard_count,
        pid_of=stack.pid,
    )
    runner = FaultRunner(
        stack=stack,
        cluster=cluster,
        probes=probes,
        lease_timeout=float(child_env["WORKER_LEASE_TIMEOUT"]),
        say=say,
    )
    supervisor = Supervisor(stack, runner.finding)
    traffic = Traffic(web_url=stack.web_url)
    try:
        start_stack(stack, probes, exchange_seed, say)
        customers = create_customers(customer_plans)
        say(f"{len(customers)} customers opened; traffic at {rate:g} orders/s for {duration:g}s")
        supervisor.start()
        clients = start_clients(customers, traffic, traffic_rng, threads=CLIENT_THREADS, rate=rate)
        _run_faults(runner, process_plan, exchange_plan, duration, traffic, say)
        runner.all_faults_off()
        extra = drain(stack, cluster.url, traffic, clients, args.short, say)
        supervisor.halt.set()
        outcome = verify(
            probe=Probe(cluster.url, "chaos-verify"),
            traffic=traffic,
            exchange_stats=stack.exchange_stats(),
            exchange_orders=stack.exchange_orders(),
            commit_timestamps=commit_timestamps,
            log_dir=log_dir,
        )
    finally:
        runner.stop.set()
        traffic.stop_placing.set()
        traffic.give_up.set()
        supervisor.halt.set()
        if supervisor.is_alive():
            supervisor.join(timeout=30)
        stack.close()
        postgres_log.save()
        if cluster.embedded:
            embedded_postgres.stop(cluster.pgdata)
    render(
        seed=seed,
        outcome=outcome,
        runner=runner,
        extra_findings=extra,
        log_dir=log_dir,
        say=say,
        say_last=say.plain,
    )
    return 1 if outcome.failed() else 0


def _at(fault: Fault) -> float:
    return fault.at


class _PostgresLog:
    """The part of the embedded cluster's server log written during this run."""

    def __init__(self, cluster: Cluster, log_dir: Path) -> None:
        self.path = cluster.pgdata / "server.log" if cluster.pgdata else None
        self.start = self.path.stat().st_size if self.path and self.path.exists() else 0
        self.target = log_dir / "postgres.log"

    def save(self) -> None:
        if self.path is None or not self.path.exists():
            return
        with open(self.path, "rb") as source:
            source.seek(self.start)
            self.target.write_bytes(source.read())


def start_stack(stack: ChaosStack, probes: StackProbe, exchange_seed: int, say: Callable) -> None:
    """Exchange, web, a leader then a standby per half of the shards, two reapers."""
    from outbox.sharding import parse_shards

    stack.start_exchange(
        "--seed", str(exchange_seed), "--fill-delay-ms", "5,40", "--reject-rate", "0.03"
    )
    stack.start_web(WEB_WORKERS)
    for half, (leader, _) in HALVES.items():
        stack.start_worker(leader, f"{half}/2")

    def leads_its_half(half: int, leader: str) -> bool:
        return len(probes.held_by(half)[leader]) == len(
            parse_shards(f"{half}/2", probes.shard_count)
        )

    for half, (leader, _) in HALVES.items():
        _must(
            timed(
                functools.partial(leads_its_half, half, leader),
                timeout=30,
                what=f"{leader} to lead its half",
            ),
            f"{leader} did not take its shards",
        )
    for half, (_, standby) in HALVES.items():
        stack.start_worker(standby, f"{half}/2")
    stack.start_reaper(0.5, REAPERS[0])
    _must(
        timed(lambda: probes.active_reaper() == REAPERS[0], timeout=30, what="the first reaper"),
        "the first reaper did not take the reaper lock",
    )
    stack.start_reaper(0.5, REAPERS[1])
    standbys = [standby for _, standby in HALVES.values()]
    _must(
        timed(
            lambda: all(probes.sessions(f"listener {name}") for name in standbys),
            timeout=30,
            what="the standbys to listen",
        ),
        "the standbys did not start",
    )
    say(
        f"stack up: web {stack.web_url} ({WEB_WORKERS} workers), exchange {stack.exchange_url}, "
        f"workers {stack.worker_names}, reapers {list(REAPERS)}"
    )


def _must(value: float | None, message: str) -> None:
    if value is None:
        raise RuntimeError(message)


def _run_faults(
    runner: FaultRunner,
    process_plan: list,
    exchange_plan: list,
    duration: float,
    traffic: Traffic,
    say: Callable,
) -> None:
    """Traffic and faults for `duration` seconds; a late fault may stretch it a little."""
    started = time.monotonic()
    threads = [
        threading.Thread(
            target=runner.run_process_faults, args=(process_plan, started), daemon=True
        ),
        threading.Thread(
            target=runner.run_exchange_faults, args=(exchange_plan, started), daemon=True
        ),
    ]
    for thread in threads:
        thread.start()
    # Pacing: the traffic runs for its planned duration.
    time.sleep(max(0.0, started + duration - time.monotonic()))
    threads[0].join(timeout=20)
    runner.stop.set()
    for thread in threads:
        thread.join(timeout=60)
    traffic.stop_placing.set()
    say(f"traffic stopped after {time.monotonic() - started:.1f}s; {len(traffic.orders)} orders")


def drain(
    stack: ChaosStack,
    url: str,
    traffic: Traffic,
    clients: list,
    short: bool,
    say: Callable,
) -> list[str]:
    """Everything running, clients done; then wait for every trade to finish."""
    findings = []
    stack.resume_everything()
    deadline = time.monotonic() + 30
    for client in clients:
        client.join(timeout=max(0.1, deadline - time.monotonic()))
    traffic.give_up.set()
    for client in clients:
        client.join(timeout=5)
    from trades.sql import OPEN_STATUSES  # once Django is set up

    probe = Probe(url, "chaos-drain")
    open_sql = f"SELECT count(*) FROM trades_trade WHERE status IN {OPEN_STATUSES}"
    before = (probe.rows_or_none(open_sql) or [(None,)])[0][0]
    limit = 45.0 if short else 120.0
    quiet = timed(
        lambda: (probe.rows_or_none(open_sql) or [(1,)])[0][0] == 0,
        timeout=limit,
        what="every trade to be terminal",
    )
    if quiet is None:
        left = probe.rows_or_none(
            "SELECT id, customer_id, status, submitted_at FROM trades_trade "
            f"WHERE status IN {OPEN_STATUSES} ORDER BY id LIMIT 5"
        )
        findings.append(f"trades still open {limit:.0f}s after the traffic stopped: {left}")
    say(
        f"drain: {before} trades open when traffic stopped; all terminal after "
        f"{'never' if quiet is None else f'{quiet:.1f}s'}"
    )
    pending = timed(
        lambda: stack.exchange_stats()["callbacks_pending"] == 0,
        timeout=20,
        what="the exchange's last callbacks",
    )
    if pending is None:
        findings.append(
            f"exchange still has {stack.exchange_stats()['callbacks_pending']} callbacks pending"
        )
    probe.close()
    return findings
