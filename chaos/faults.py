"""The seeded fault schedule and the code that injects each fault, waits for the system to
react (through chaos.probes: failover times, reconnections), notes what it saw and puts
things back."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import requests

from chaos.database import Cluster
from chaos.probes import Failover, StackProbe, timed
from chaos.stack import ChaosStack
from devtools import embedded_postgres

PROCESS_FAULTS = (
    "kill_leader",
    "kill_standby",
    "stop_leader",
    "stop_and_depose_leader",
    "terminate_lock_session",
    "terminate_listener",
    "kill_web",
    "kill_reaper",
    "stop_reaper",
    "postgres_restart",
)
# Extra process faults beyond one of each, by weight.
PROCESS_WEIGHTS = (3, 1, 1, 2, 2, 1, 1, 1, 1, 1)
EXCHANGE_FAULTS = (
    "exchange_outage",
    "callbacks_duplicated",
    "callbacks_reordered",
    "callbacks_late",
    "callbacks_lost",
)

# A takeover slower than this misses the design's target (DESIGN.md: within 2 s).
FAILOVER_TARGET_S = 2.0
TAKEOVER_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after traffic starts
    kind: str
    half: int  # which half of the shards a worker fault aims at (1 or 2)
    hold: float  # seconds down, stopped or switched on
    # A knob: the callback delay in ms; for stops, 1 to aim at an open transaction.
    value: int = 0


def plan_faults(
    rng: random.Random, duration: float, *, short: bool
) -> tuple[list[Fault], list[Fault]]:
    """Every kind of fault at least once, more for longer runs, at random moments."""
    first, last = max(4.0, 0.08 * duration), duration - 6.0
    kinds = list(PROCESS_FAULTS)
    extra = max(0, int(duration / 10) - len(kinds))
    kinds += rng.choices(PROCESS_FAULTS, weights=PROCESS_WEIGHTS, k=extra)
    rng.shuffle(kinds)
    times = sorted(rng.uniform(first, last) for _ in kinds)
    process = []
    for at, kind in zip(times, kinds, strict=True):
        value = 0
        if kind.startswith("stop"):
            # Longer than a takeover takes (WORKER_LEASE_TIMEOUT for a frozen leader,
            # REAPER_LEASE_TIMEOUT for a frozen reaper).
            hold = rng.uniform(5.0, 6.0) if short else rng.uniform(6.0, 10.0)
            value = rng.randint(0, 1)  # 1: try to freeze it inside a transaction
        else:
            hold = rng.uniform(0.3, 1.0) if short else rng.uniform(0.5, 3.0)
        process.append(Fault(at=at, kind=kind, half=rng.randint(1, 2), hold=hold, value=value))
    windows = list(EXCHANGE_FAULTS)
    windows += rng.choices(EXCHANGE_FAULTS, k=max(0, int(duration / 20) - len(windows)))
    rng.shuffle(windows)
    exchange = []
    for kind in windows:
        if kind == "exchange_outage":
            hold = rng.uniform(2.0, 3.0) if short else rng.uniform(2.0, 6.0)
        else:
            hold = rng.uniform(4.0, 8.0) if short else rng.uniform(5.0, 15.0)
        at = rng.uniform(first, max(first, last - hold))
        exchange.append(Fault(at=at, kind=kind, half=0, hold=hold, value=rng.randint(1000, 5000)))
    exchange.sort(key=lambda f: f.at)
    return process, exchange


class FaultRunner:
    """Injects the planned faults (process faults one after another on one thread,
    exchange fault windows on another) and keeps what it saw."""

    def __init__(
        self,
        *,
        stack: ChaosStack,
        cluster: Cluster,
        probes: StackProbe,
        lease_timeout: float,
        say: Callable[[str], None],
    ) -> None:
        """`probes` watches the stack; its session also ends the sessions a fault cuts."""
        self.stack = stack
        self.lease_timeout = lease_timeout
        self.cluster = cluster
        self.probes = probes
        self.halves = probes.halves
        self.shard_count = probes.shard_count
        self.say = say
        self.counts: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.failovers: list[Failover] = []
        self.findings: list[str] = []
        self.notes: list[str] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()

    # -- bookkeeping -----------------------------------------------------------------------

    def note(self, text: str) -> None:
        with self._lock:
            self.notes.append(text)
        self.say(text)

    def finding(self, text: str) -> None:
        with self._lock:
            self.findings.append(text)
        self.say("FINDING: " + text)

    def log_mark(self, name: str) -> int:
        path = self.stack.log_dir / f"{name}.log"
        return path.stat().st_size if path.exists() else 0

    def log_since(self, name: str, mark: int) -> str:
        path = self.stack.log_dir / f"{name}.log"
        with open(path, "rb") as log:
            log.seek(mark)
            return log.read().decode(errors="replace")

    def _leader_to_hit(self, fault: Fault) -> tuple[str, dict[int, int]] | None:
        """The leader `fault` is aimed at, counting the fault; None (skipped) if there is none."""
        found = self.probes.leader(fault.half)
        if found is None:
            self.skipped[fault.kind] += 1
        else:
            self._count(fault)
        return found

    def _record_failover(self, failover: Failover, target: float = FAILOVER_TARGET_S) -> None:
        with self._lock:
            self.failovers.append(failover)
        if failover.seconds is None:
            self.finding(
                f"{failover.kind}: the shards of {failover.deposed} were not all led again "
                f"within {TAKEOVER_TIMEOUT_S:.0f}s (holders now {failover.new_holders}); "
                f"waiting sessions: {self.probes.blocked_sessions()}"
            )
        elif failover.seconds > target:
            self.finding(
                f"{failover.kind}: takeover from {failover.deposed} took "
                f"{failover.seconds:.2f}s, above the {target:.1f}s target"
            )

    # -- process faults ------------------------------------------------------------------

    def run_process_faults(self, plan: list[Fault], started: float) -> None:
        for fault in plan:
            # Spacing out the schedule: the fault is due at its planned moment.
            if self.stop.wait(max(0.0, started + fault.at - time.monotonic())):
                self.skipped[fault.kind] += 1
                continue
            try:
                getattr(self, fault.kind)(fault)
            except Exception as exc:
                # A fault that could not be carried out must not end the soak.
                self.finding(f"fault {fault.kind} could not be carried out: {exc!r}")

    def _count(self, fault: Fault) -> None:
        with self._lock:
            self.counts[fault.kind] += 1

    def kill_leader(self, fault: Fault) -> None:
        found = self._leader_to_hit(fault)
        if found is None:
            return
        name, before = found
        self.stack.sigkill(name)
        failover = self.probes.await_takeover(
            fault.kind, name, fault.half, before, timeout=TAKEOVER_TIMEOUT_S
        )
        self._record_failover(failover)
        self.note(
            f"kill_leader {name} ({len(before)} shards): led again by {failover.new_holders} "
            f"after {_s(failover.seconds)}"
        )
        self.stop.wait(fault.hold)  # scheduled downtime, not a wait for a condition
        self.stack.restart(name)

    def kill_standby(self, fault: Fault) -> None:
        held = self.probes.held_by(fault.half)
        name = min(held, key=lambda n: len(held[n]))
        self._count(fault)
        self.stack.sigkill(name)
        self.stop.wait(fault.hold)  # scheduled downtime
        self.stack.restart(name)
        self.note(f"kill_standby {name} (leading {len(held[name])} shards): restarted")

    def stop_leader(self, fault: Fault) -> None:
        """SIGSTOP a leader: its sessions, and so its advisory locks, stay alive; only the
        lease heartbeat (WORKER_LEASE_TIMEOUT) lets a standby depose it."""
        self._stop(fault, depose=False)

    def stop_and_depose_leader(self, fault: Fault) -> None:
        """SIGSTOP a leader and end its lock session at once (a partition of that session):
        a standby takes over and the old leader wakes up believing it still leads."""
        self._stop(fault, depose=True)

    def _stop(self, fault: Fault, *, depose: bool) -> None:
        found = self._leader_to_hit(fault)
        if found is None:
            return
        name, before = found
        mark = self.log_mark(name)
        sessions_before = set(self.probes.sessions(f"leader {name}"))
        waiting: list[str] = []
        if fault.value:
            # A leader frozen mid-transaction still holds its row locks (the lease row FOR
            # SHARE, the customer's account): the interesting moment to stop it.
            timed(
                lambda: self.probes.in_transaction(name),
                timeout=3,
                what="a transaction",
                every=0.002,
            )
        self.stack.sigstop(name)
        frozen_in = (
            "inside a transaction" if self.probes.in_transaction(name) else "between transactions"
        )
        terminated = self.terminate(f"leader {name}") if depose else 0
        failover = self.probes.await_takeover(fault.kind, name, fault.half, before, timeout=1.0)
        if failover.seconds is None:
            # Evidence of what the takeover waits for, then the rest of the stop.
            waiting = self.probes.blocked_sessions()
            rest = self.probes.await_takeover(
                fault.kind, name, fault.half, before, timeout=fault.hold - 1.0
            )
            failover.new_holders = rest.new_holders
            failover.seconds = None if rest.seconds is None else 1.0 + rest.seconds
        backlog, oldest = self.probes.outbox_backlog(list(before))
        locks = self.probes.shard_locks_granted()
        self.stack.sigcont(name)
        resumed = time.monotonic()
        if failover.seconds is None:
            late = self.probes.await_takeover(
                fault.kind, name, fault.half, before, timeout=TAKEOVER_TIMEOUT_S
            )
            failover.new_holders = late.new_holders
            failover.seconds = None if late.seconds is None else fault.hold + late.seconds
            self.finding(
                f"{fault.kind} {name}: no other worker took its {len(before)} shards during "
                f"the {fault.hold:.1f}s it was stopped ({locks} of {self.shard_count} shard "
                f"locks granted, {backlog} outbox rows of its shards waiting, the oldest "
                f"{oldest:.1f}s; sessions waiting on locks or idle in transaction: {waiting}); "
                f"after SIGCONT its shards were led again by {late.new_holders} "
                f"{_s(late.seconds)} later"
            )
        # Deposed at once, a standby should take over as fast as after a SIGKILL; a frozen
        # leader only loses its locks when its heartbeat is WORKER_LEASE_TIMEOUT old.
        target = FAILOVER_TARGET_S + (0.0 if depose else self.lease_timeout)
        self._record_failover(failover, target=target)
        if failover.seconds is not None and failover.seconds > target:
            self.note(f"  while {name} was stopped, after 1s: waiting sessions {waiting}")

        def drained() -> bool:
            left = self.probes.outbox_older_than(list(before), time.monotonic() - resumed)
            return left == 0

        caught_up = timed(drained, timeout=30, what="the stopped leader's backlog")
        if failover.seconds is not None:
            # Once resumed, the deposed leader must find out that its lock session is gone
            # and open a new one.
            timed(
                lambda: set(self.probes.sessions(f"leader {name}")) - sessions_before,
                timeout=10,
                what=f"{name} to notice it was deposed",
            )
        log = self.log_since(name, mark)
        self.note(
            f"{fault.kind} {name} {frozen_in} for {fault.hold:.1f}s ({terminated} lock session "
            "ended): "
            f"{len(before)} shards led again by {failover.new_holders} after "
            f"{_s(failover.seconds)}; {backlog} outbox rows of them waiting at SIGCONT, the "
            f"oldest {oldest:.1f}s, gone {_s(caught_up)} after it; once resumed it logged "
            f"{log.count('event=stale_leader')} stale_leader (fenced writes), "
            f"{log.count('event=lock_session_lost')} lock_session_lost"
        )

    def terminate(self, application_name: str) -> int:
        """End the sessions of that name (pg_terminate_backend); how many ended."""
        rows = self.probes.session.rows(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        )
        return sum(1 for (ok,) in rows if ok)

    def terminate_lock_session(self, fault: Fault) -> None:
        found = self._leader_to_hit(fault)
        if found is None:
            return
        name, before = found
        terminated = self.terminate(f"leader {name}")
        failover = self.probes.await_takeover(
            fault.kind, name, fault.half, before, timeout=TAKEOVER_TIMEOUT_S, same_allowed=True
        )
        self._record_failover(failover)
        self.note(
            f"terminate_lock_session of {name} ({terminated} session): its "
            f"{len(before)} shards led again by {failover.new_holders} after "
            f"{_s(failover.seconds)}"
        )

    def terminate_listener(self, fault: Fault) -> None:
        found = self.probes.leader(fault.half)
        name = found[0] if found else self.halves[fault.half][0]
        old = set(self.probes.sessions(f"listener {name}"))
        self._count(fault)
        terminated = self.terminate(f"listener {name}")
        back = timed(
            lambda: set(self.probes.sessions(f"listener {name}")) - old,
            timeout=15,
            what=f"{name} to LISTEN again",
        )
        if back is None:
            self.finding(f"terminate_listener: {name} did not LISTEN again within 15s")
        self.note(f"terminate_listener {name} ({terminated} session): listening again {_s(back)}")

    def kill_web(self, fault: Fault) -> None:
        self._count(fault)
        killed = time.monotonic()
        self.stack.sigkill("web")
        self.stop.wait(fault.hold)  # scheduled downtime
        self.stack.restart("web")
        self.note(f"kill_web: answering again after {time.monotonic() - killed:.2f}s")

    def kill_reaper(self, fault: Fault) -> None:
        active = self.probes.active_reaper()
        if active is None:
            self.skipped[fault.kind] += 1
            self.note("kill_reaper: no reaper holds the reaper lock; skipped")
            return
        self._count(fault)
        self.stack.sigkill(active)
        took = timed(
            lambda: self.probes.active_reaper() not in (None, active),
            timeout=TAKEOVER_TIMEOUT_S,
            what="the standby reaper",
        )
        if took is None:
            self.finding(f"kill_reaper: no other reaper took over within {TAKEOVER_TIMEOUT_S}s")
        self.note(f"kill_reaper {active}: {self.probes.active_reaper()} active after {_s(took)}")
        self.stop.wait(fault.hold)  # scheduled downtime
        self.stack.restart(active)

    def stop_reaper(self, fault: Fault) -> None:
        """SIGSTOP the active reaper: its lock session stays open, so only the standby
        ending it (after REAPER_LEASE_TIMEOUT without a lock check) hands repairs over."""
        active = self.probes.active_reaper()
        if active is None:
            self.skipped[fault.kind] += 1
            self.note("stop_reaper: no reaper holds the reaper lock; skipped")
            return
        self._count(fault)
        self.stack.sigstop(active)
        took = timed(
            lambda: self.probes.active_reaper() not in (None, active),
            timeout=fault.hold,
            what="the standby reaper",
        )
        self.stack.sigcont(active)
        if took is None:
            self.finding(
                f"stop_reaper: no other reaper took over in the {fault.hold:.1f}s {active} "
                "was stopped"
            )
        self.note(
            f"stop_reaper {active} for {fault.hold:.1f}s: {self.probes.active_reaper()} active "
            f"after {_s(took)}"
        )

    def postgres_restart(self, fault: Fault) -> None:
        if not self.cluster.embedded:
            self.skipped[fault.kind] += 1
            self.note("postgres_restart skipped: DATABASE_URL names a server we do not own")
            return
        self._count(fault)
        started = time.monotonic()
        took = embedded_postgres.restart(self.cluster.pgdata, mode="immediate")
        self.probes.session.close()
        parts = self._recovery_parts()
        recovered = timed(
            lambda: all(check() for check in parts.values()),
            timeout=40,
            what="every process to reconnect",
        )
        if recovered is None:
            missing = [name for name, check in parts.items() if not check()]
            sessions = self.probes.application_names()
            self.finding(
                f"postgres_restart: not recovered 40s after the restart: {missing} "
                f"(sessions: {sorted(sessions or [])})"
            )
        self.note(
            f"postgres_restart (immediate): down and up in {took:.2f}s; shard locks, "
            f"listeners, reaper lock and web back {_s(recovered)} later "
            f"({time.monotonic() - started:.2f}s in all)"
        )

    def _recovery_parts(self) -> dict[str, Callable[[], bool]]:
        def listeners() -> bool:
            listening = self.probes.listening()
            live = {n for n in self.stack.worker_names if n not in self.stack.expected_down}
            return listening is not None and live <= listening

        return {
            "every shard locked, its lease naming the lock holder": self.probes.leases_follow_locks,
            "every worker listening": listeners,
            "a reaper holding the reaper lock": lambda: self.probes.active_reaper() is not None,
            "web healthz": self.web_answers,
        }

    def web_answers(self) -> bool:
        try:
            return requests.get(f"{self.stack.web_url}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    # -- exchange faults -----------------------------------------------------------------

    def run_exchange_faults(self, plan: list[Fault], started: float) -> None:
        for fault in plan:
            if self.stop.wait(max(0.0, started + fault.at - time.monotonic())):
                self.skipped[fault.kind] += 1
                continue
            on, off = self._exchange_knobs(fault)
            try:
                self.stack.set_faults(**on)
                self._count(fault)
                self.say(f"exchange fault {fault.kind} {on} for {fault.hold:.1f}s")
                self.stop.wait(fault.hold)  # the fault's window
                self.stack.set_faults(**off)
            except requests.RequestException as exc:
                self.finding(f"exchange fault {fault.kind}: control endpoint failed: {exc!r}")

    @staticmethod
    def _exchange_knobs(fault: Fault) -> tuple[dict, dict]:
        match fault.kind:
            case "exchange_outage":
                return {"outage": True}, {"outage": False}
            case "callbacks_duplicated":
                return {"duplicate_rate": 0.5}, {"duplicate_rate": 0.0}
            case "callbacks_reordered":
                return {"reorder_rate": 0.6}, {"reorder_rate": 0.0}
            case "callbacks_late":
                # Up to 5 s: later than the reaper's deadline, so both race to settle.
                return {"callback_delay_ms": fault.value}, {"callback_delay_ms": 0}
            case "callbacks_lost":
                return (
                    {"lose_first_rate": 0.3, "no_callback_rate": 0.15},
                    {"lose_first_rate": 0.0, "no_callback_rate": 0.0},
                )
        raise ValueError(fault.kind)

    def all_faults_off(self) -> None:
        self.stack.set_faults(
            outage=False,
            duplicate_rate=0.0,
            reorder_rate=0.0,
            callback_delay_ms=0,
            lose_first_rate=0.0,
            no_callback_rate=0.0,
        )


class Supervisor(threading.Thread):
    """Notices processes that died without being killed by a fault, reports each with the
    end of its log, and starts it again so that the soak goes on."""

    def __init__(self, stack: ChaosStack, finding: Callable[[str], None]) -> None:
        super().__init__(name="supervisor", daemon=True)
        self.stack = stack
        self.finding = finding
        self.halt = threading.Event()
        self.deaths: list[str] = []

    MAX_RESTARTS = 5

    def run(self) -> None:
        while not self.halt.wait(0.5):
            for name, code in self.stack.exited().items():
                self.deaths.append(name)
                self.finding(
                    f"process {name} exited by itself with status {code}; its log ends:\n"
                    + _indent(self.stack.log_tail(name))
                )
                if self.deaths.count(name) > self.MAX_RESTARTS:
                    # A crash loop: leave it down (the other processes carry on).
                    with self.stack.lock:
                        self.stack.expected_down.add(name)
                    continue
                try:
                    self.stack.restart(name)
                except Exception as exc:
                    self.finding(f"process {name} could not be restarted: {exc!r}")


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.2f}s"


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
