"""The failover soak (`python -m chaos --ha`): the whole stack on a Patroni cluster of three
Postgres nodes (devtools.ha_cluster), customers placing trades all along, and the primary's
machine killed again and again (Patroni and its postmaster's process group, SIGKILL), the
old primary rejoining as a standby each time, then a planned switchover.

What it measures, per failover: the seconds without a committed write (a probe commits a
row every 50 ms on a session of its own), and the seconds from the new primary's first
committed write to every shard being led again. What it checks: every trade acknowledged
to a client (201 or 200) exists after each failover and is terminal at the end, and
everything the chaos soak checks (chaos.report.verify)."""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import psycopg

from chaos.database import CHAOS_DATABASE, install_instrumentation, with_application_name
from chaos.faults import Supervisor
from chaos.probes import Probe, StackProbe, timed
from chaos.report import Outcome, scan_logs, verify
from chaos.stack import ChaosStack, environment_for_children
from chaos.traffic import Traffic, create_customers, plan_customers, start_clients
from devtools.database import migrate, recreate_database
from devtools.ha_cluster import HaCluster
from devtools.paths import REPO_ROOT
from devtools.stack import wait_for
from outbox.leadership import REAPER_LOCK_NAMESPACE, SHARD_LOCK_NAMESPACE

HA_ROOT = REPO_ROOT / ".pgdata-ha-chaos"
# Away from `make ha`'s ports (5441…), so that both can run at once.
HA_BASE_PORT = 5461
WRITE_PROBE_EVERY = 0.05
# A failover's work is done once the old primary rejoined; traffic then runs this long
# before the next one, so that each failover starts from a steady state.
STEADY_SECONDS = 5.0
TARGET_LEADERLESS_S = 2.0


@dataclass
class Switch:
    kind: str  # failover (the primary's machine killed) | switchover (planned)
    old_primary: str
    new_primary: str | None = None
    write_outage_s: float | None = None
    leaderless_after_primary_s: float | None = None
    reaper_back_after_primary_s: float | None = None
    rejoined_after_s: float | None = None
    acknowledged_before: int = 0
    missing_after: int = 0

    def line(self) -> str:
        def s(value: float | None) -> str:
            return "never" if value is None else f"{value:.2f}s"

        return (
            f"{self.kind} {self.old_primary} -> {self.new_primary}: no writes for "
            f"{s(self.write_outage_s)}, shards led {s(self.leaderless_after_primary_s)} and "
            f"the reaper back {s(self.reaper_back_after_primary_s)} after the new primary's "
            f"first write; old primary streaming again {s(self.rejoined_after_s)} after the "
            f"switch began; "
            f"acknowledged trades missing: {self.missing_after} of {self.acknowledged_before}"
        )


class WriteProbe(threading.Thread):
    """Commits a row every WRITE_PROBE_EVERY seconds on a session of its own, reconnecting
    at once after a failure, and remembers when each commit was acknowledged."""

    def __init__(self, url: str) -> None:
        super().__init__(name="write-probe", daemon=True)
        self.url = url
        self.halt = threading.Event()
        self._lock = threading.Lock()
        # (when the commit was acknowledged, the port of the server that made it)
        self._acknowledged: list[tuple[float, int]] = []

    def run(self) -> None:
        conn: psycopg.Connection | None = None
        while not self.halt.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(
                        self.url,
                        autocommit=True,
                        application_name="chaos-write-probe",
                        connect_timeout=2,
                    )
                row = conn.execute(
                    "INSERT INTO chaos_write_probe DEFAULT VALUES RETURNING inet_server_port()"
                ).fetchone()
                assert row is not None
                with self._lock:
                    self._acknowledged.append((time.monotonic(), row[0]))
            except psycopg.Error:
                if conn is not None:
                    conn.close()
                conn = None
            # Pacing the probe's writes.
            self.halt.wait(WRITE_PROBE_EVERY)
        if conn is not None:
            conn.close()

    def last_before(self, moment: float) -> float | None:
        with self._lock:
            return next((t for t, _ in reversed(self._acknowledged) if t < moment), None)

    def first_after(self, moment: float, *, not_on: int) -> float | None:
        """When the first write after `moment` committed on a server other than the one
        listening on port `not_on` (the old primary, which may take writes for a moment
        after a switchover was asked for)."""
        with self._lock:
            return next(
                (t for t, port in self._acknowledged if t > moment and port != not_on), None
            )


@dataclass
class FailoverRunner:
    cluster: HaCluster
    url: str
    shard_count: int
    writes: WriteProbe
    traffic: Traffic
    say: Callable[[str], None]
    switches: list[Switch] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    missing_keys: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def finding(self, text: str) -> None:
        with self._lock:
            self.findings.append(text)
        self.say("FINDING: " + text)

    def kill_primary(self) -> Switch:
        """The primary's machine dies; Patroni promotes the synchronous standby; the old
        node is started again and rejoins (pg_rewind) as a standby."""
        old = self._primary()
        switch = Switch("failover", old)
        self._check_synchronous(switch)
        self.say(f"failover: killing {old} (Patroni and the postmaster's process group)")
        moment = time.monotonic()
        self.cluster.kill_node(old)
        self._follow(switch, moment)
        self.cluster.start_node(old)
        self._await_healthy(switch, moment)
        return self._done(switch)

    def switch_over(self) -> Switch:
        old = self._primary()
        switch = Switch("switchover", old)
        self._check_synchronous(switch)
        self.say(f"switchover: asking Patroni to move the primary away from {old}")
        moment = time.monotonic()
        self.cluster.switchover()
        self._follow(switch, moment)
        self._await_healthy(switch, moment)
        return self._done(switch)

    def _check_synchronous(self, switch: Switch) -> None:
        """Before the switch: a standby confirms every commit (or the check below that
        nothing acknowledged was lost would prove nothing about replication)."""
        probe = Probe(self.url, "chaos-replication")
        try:
            rows = probe.rows(
                "SELECT current_setting('synchronous_standby_names'), "
                "current_setting('synchronous_commit'), "
                "(SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync')"
            )
        finally:
            probe.close()
        names, commit, synchronous = rows[0]
        if not names or commit not in ("on", "remote_apply") or synchronous < 1:
            self.finding(
                f"{switch.kind}: commits were not synchronous before it: "
                f"synchronous_standby_names={names!r} synchronous_commit={commit} "
                f"synchronous standbys={synchronous}"
            )

    def _primary(self) -> str:
        return str(wait_for(self.cluster.primary, timeout=60, what="a primary"))

    def _follow(self, switch: Switch, moment: float) -> None:
        """Measure the outage from `moment`, wait for every shard to be led again on the
        new primary and check that every acknowledged trade is there."""
        acknowledged = self._acknowledged()
        switch.acknowledged_before = len(acknowledged)
        old_port = self.cluster.node(switch.old_primary).pg_port
        timed(
            lambda: self.writes.first_after(moment, not_on=old_port) is not None,
            timeout=120,
            what="a write committed by a new primary",
        )
        back = self.writes.first_after(moment, not_on=old_port)
        if back is None:
            self.finding(f"{switch.kind}: no new primary committed a write within 120 s")
            return
        # The old primary's last commit (it may take some after a switchover was asked).
        last = self.writes.last_before(back)
        switch.write_outage_s = back - (last or moment)
        switch.new_primary = self.cluster.primary()
        probe = Probe(self.url, "chaos-failover")
        try:
            led = timed(
                lambda: _shard_locks(probe) == self.shard_count,
                timeout=60,
                what="every shard led on the new primary",
                every=0.02,
            )
            if led is not None:
                switch.leaderless_after_primary_s = max(0.0, time.monotonic() - back)
            reaper = timed(lambda: _reaper_locks(probe) == 1, timeout=30, what="a reaper")
            if reaper is not None:
                switch.reaper_back_after_primary_s = max(0.0, time.monotonic() - back)
            else:
                self.finding(f"{switch.kind}: no reaper took the reaper lock within 30 s")
        finally:
            probe.close()
        switch.missing_after = len(self.check_acknowledged(f"the {switch.kind}", acknowledged))
        if led is None:
            self.finding(f"{switch.kind}: not every shard was led again within 60 s")

    def _await_healthy(self, switch: Switch, started: float) -> None:
        try:
            self.cluster.wait_until_healthy(180)
        except RuntimeError as exc:
            self.finding(f"{switch.kind}: the cluster did not heal: {exc}")
            return
        switch.rejoined_after_s = time.monotonic() - started

    def _done(self, switch: Switch) -> Switch:
        with self._lock:
            self.switches.append(switch)
        self.say(switch.line())
        return switch

    def _acknowledged(self) -> dict[str, tuple[int, int]]:
        """client_order_id -> (trade id, customer id) of every placement a client got a 201
        or 200 for."""
        return {
            order.key: (order.trade_id, order.customer_id)
            for order in list(self.traffic.orders)
            if order.outcome == "accepted" and order.trade_id is not None
        }

    def check_acknowledged(
        self, after: str, acknowledged: dict[str, tuple[int, int]] | None = None
    ) -> list[str]:
        """The acknowledged placements (by default all so far) whose trade is missing: no
        trade with that id, customer and client_order_id (a trade lost with its sequence
        value could leave its id to another)."""
        if acknowledged is None:
            acknowledged = self._acknowledged()
        probe = Probe(self.url, "chaos-acknowledged")
        try:
            rows = probe.rows(
                "SELECT id, customer_id, client_order_id FROM trades_trade WHERE id = ANY(%s)",
                ([trade_id for trade_id, _ in acknowledged.values()],),
            )
        finally:
            probe.close()
        present = {(trade_id, customer_id): key for trade_id, customer_id, key in rows}
        missing = sorted(key for key, ids in acknowledged.items() if present.get(ids) != key)
        with self._lock:
            self.missing_keys |= set(missing)
        if missing:
            self.finding(
                f"after {after}: {len(missing)} of {len(acknowledged)} acknowledged trades "
                f"missing, e.g. {missing[:5]}"
            )
        return missing


def _shard_locks(probe: Probe) -> int | None:
    rows = probe.rows_or_none(
        "SELECT count(DISTINCT objid) FROM pg_locks WHERE locktype = 'advisory' "
        "AND classid = %s AND objsubid = 2 AND granted",
        (SHARD_LOCK_NAMESPACE,),
    )
    return None if rows is None else rows[0][0]


def _reaper_locks(probe: Probe) -> int | None:
    rows = probe.rows_or_none(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s "
        "AND objsubid = 2 AND granted",
        (REAPER_LOCK_NAMESPACE,),
    )
    return None if rows is None else rows[0][0]


@dataclass(frozen=True)
class Plan:
    customers: list[tuple[str, Decimal, dict[str, int]]]
    exchange_seed: int
    traffic_rng: random.Random
    rate: float
    warmup: float
    failovers: int
    switchovers: int


def run(args: argparse.Namespace, seed: int, log_dir: Path, say: Callable, plain: Callable) -> int:
    """The failover soak; `args` as parsed by chaos.soak (--short: one failover)."""
    rng = random.Random(seed)
    plan = Plan(
        customers=plan_customers(rng, args.customers or (100 if args.short else 300)),
        exchange_seed=rng.randrange(2**31),
        traffic_rng=random.Random(rng.getrandbits(64)),
        rate=args.rate or (10.0 if args.short else 15.0),
        warmup=8.0 if args.short else 15.0,
        failovers=1 if args.short else 3,
        switchovers=1,
    )
    say(
        f"HA soak: {plan.failovers} failovers and {plan.switchovers} switchover; "
        f"{len(plan.customers)} customers at {plan.rate:g} orders/s; replay: python -m chaos "
        f"--ha --seed {seed}{' --short' if args.short else ''}"
    )

    cluster = HaCluster(HA_ROOT, HA_BASE_PORT)
    cluster.destroy()
    try:
        started = time.monotonic()
        cluster.start()
        members = cluster.patronictl("list").stdout
        say(f"HA cluster up in {time.monotonic() - started:.1f}s:\n{members}")
        outcome, runner, extra = _soak(cluster, args, plan, log_dir, say)
    finally:
        try:
            if cluster.logs.exists():
                shutil.copytree(cluster.logs, log_dir / "ha", dirs_exist_ok=True)
        finally:
            cluster.stop()
    summary = render(seed, outcome, runner, extra, log_dir, say, plain)
    failed = outcome.failed() or summary["lost_acknowledged"] or summary["findings"]
    return 1 if failed else 0


def _soak(
    cluster: HaCluster, args: argparse.Namespace, plan: Plan, log_dir: Path, say: Callable
) -> tuple[Outcome, FailoverRunner, list[str]]:
    """On a running cluster: the database, the stack, the traffic, the switches, the
    drain and the checks."""
    from chaos.soak import HALVES, REAPERS, drain, start_stack

    recreate_database(cluster.database_url("postgres"), CHAOS_DATABASE)
    url = cluster.database_url(CHAOS_DATABASE)
    migrate(url, log_file=log_dir / "migrate.log")
    commit_timestamps = install_instrumentation(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE chaos_write_probe (id bigserial PRIMARY KEY)")
    say(f"migrated {url}")
    os.environ.update(
        DATABASE_URL=with_application_name(url, "chaos"),
        DJANGO_SETTINGS_MODULE="settings.base",
        DEBUG="true",
        SHARD_COUNT=str(args.shard_count),
    )
    import django

    django.setup()

    stack = ChaosStack(
        log_dir, database_url=url, shard_count=args.shard_count, env=environment_for_children(None)
    )
    probes = StackProbe(
        Probe(url, "chaos-probes"),
        halves=HALVES,
        reapers=REAPERS,
        shard_count=args.shard_count,
        pid_of=stack.pid,
    )
    traffic = Traffic(web_url=stack.web_url)
    writes = WriteProbe(url)
    runner = FailoverRunner(cluster, url, args.shard_count, writes, traffic, say)
    supervisor = Supervisor(stack, runner.finding)
    outcome: Outcome | None = None
    extra: list[str] = []
    try:
        start_stack(stack, probes, plan.exchange_seed, say)
        customers = create_customers(plan.customers)
        say(f"{len(customers)} customers opened; traffic at {plan.rate:g} orders/s")
        writes.start()
        supervisor.start()
        clients = start_clients(customers, traffic, plan.traffic_rng, threads=8, rate=plan.rate)
        traffic.stop_placing.wait(plan.warmup)  # traffic before the first failover
        for _ in range(plan.failovers):
            runner.kill_primary()
            traffic.stop_placing.wait(STEADY_SECONDS)
        for _ in range(plan.switchovers):
            runner.switch_over()
            traffic.stop_placing.wait(STEADY_SECONDS)
        traffic.stop_placing.set()
        say(f"traffic stopped; {len(traffic.orders)} orders")
        extra = drain(stack, url, traffic, clients, args.short, say)
        runner.check_acknowledged("the end")
        supervisor.halt.set()
        outcome = verify(
            probe=Probe(url, "chaos-verify"),
            traffic=traffic,
            exchange_stats=stack.exchange_stats(),
            exchange_orders=stack.exchange_orders(),
            commit_timestamps=commit_timestamps,
            log_dir=log_dir,
        )
    finally:
        traffic.stop_placing.set()
        traffic.give_up.set()
        writes.halt.set()
        supervisor.halt.set()
        stack.close()
    assert outcome is not None  # verify() ran, or its exception has left already
    return outcome, runner, extra


def render(
    seed: int,
    outcome: Outcome,
    runner: FailoverRunner,
    extra_findings: list[str],
    log_dir: Path,
    say: Callable[[str], None],
    plain: Callable[[str], None],
) -> dict:
    acknowledged = [o for o in runner.traffic.orders if o.outcome == "accepted"]
    lost = runner.missing_keys
    outages = [s.write_outage_s for s in runner.switches if s.write_outage_s is not None]
    leaderless = [
        s.leaderless_after_primary_s
        for s in runner.switches
        if s.leaderless_after_primary_s is not None
    ]
    say("=" * 78)
    say(f"failover soak, seed {seed}; logs in {log_dir}")
    for line in outcome.lines:
        say("  " + line)
    say("  switches:")
    for switch in runner.switches:
        say("    " + switch.line())
    lines, tracebacks = scan_logs(log_dir)
    say("  log events per process:")
    for line in lines:
        say("    " + line)
    findings = runner.findings + extra_findings + outcome.findings + tracebacks
    counters = runner.traffic.counters
    server_errors = {
        code: n
        for code, n in counters.items()
        if code.startswith("server_errors_") and code != "server_errors_503_database_unavailable"
    }
    if server_errors:
        findings.append(f"answers other than 503 database_unavailable: {server_errors}")
    if counters["timeouts"] or counters["connection_errors"]:
        # The web stays up through a failover: it answers 503 at once, never hangs.
        findings.append(
            f"requests that timed out ({counters['timeouts']}) or found no web to connect "
            f"to ({counters['connection_errors']})"
        )
    say(f"  findings ({len(findings)}):")
    for text in findings:
        say("    - " + text.replace("\n", "\n      "))
    worst = max(leaderless) if leaderless else None
    met = worst is not None and worst <= TARGET_LEADERLESS_S
    say(
        f"  target: every shard led within {TARGET_LEADERLESS_S:g}s of the new primary's "
        f"first write: {'met' if met else 'MISSED'} (worst {worst})"
    )
    summary = {
        "acknowledged": len(acknowledged),
        "lost_acknowledged": len(lost),
        "terminal": outcome.terminal,
        "double_settled": outcome.double_settled,
        "negative_balances": outcome.negative_balances,
        "out_of_order": outcome.out_of_order,
        "stale_leader_writes": outcome.stale_leader_writes,
        "event_log_broken": outcome.event_log_broken,
        "failovers": sum(1 for s in runner.switches if s.kind == "failover"),
        "switchovers": sum(1 for s in runner.switches if s.kind == "switchover"),
        "max_write_outage_s": round(max(outages), 3) if outages else None,
        "max_leaderless_after_primary_s": None if worst is None else round(worst, 3),
        "audit_ok": outcome.audit_ok,
        "seed": seed,
    }
    plain(json.dumps(summary))
    return {**summary, "findings": len(findings)}
