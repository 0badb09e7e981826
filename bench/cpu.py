"""Where the CPU goes: per-process CPU time and run-queue wait from /proc, by role.

A snapshot reads /proc/<pid>/stat (CPU time) and /proc/<pid>/task/*/schedstat (time spent
runnable but waiting for a CPU) of every process. The difference of two snapshots over
the wall time between them is the cores each group used, and the cores' worth of time
its threads spent waiting in the run queue: a role that waits much more than it runs is
starved of CPU, not slow."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

_TICK = os.sysconf("SC_CLK_TCK")
OTHER = "other"
BENCH = "bench (load generator)"


@dataclass(frozen=True)
class Proc:
    comm: str
    ppid: int
    pgrp: int
    cpu_s: float
    wait_s: float
    title: str


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _wait_seconds(pid: str) -> float:
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for task in tasks:
        data = _read(f"/proc/{pid}/task/{task}/schedstat")
        if data:
            total += int(data.split()[1])
    return total / 1e9


def _processes() -> dict[int, Proc]:
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        data = _read(f"/proc/{entry}/stat")
        if data is None:
            continue
        text = data.decode(errors="replace")
        comm = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        # After "pid (comm) ": state ppid pgrp session tty tpgid flags minflt cminflt
        # majflt cmajflt utime stime ...
        ticks = int(fields[11]) + int(fields[12])
        title = ""
        if comm == "postgres":
            title = (_read(f"/proc/{entry}/cmdline") or b"").replace(b"\0", b" ").decode()
        found[int(entry)] = Proc(
            comm, int(fields[1]), int(fields[2]), ticks / _TICK, _wait_seconds(entry), title
        )
    return found


def _machine() -> tuple[float, float, float]:
    """(busy, idle, steal) CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / _TICK, (idle + iowait) / _TICK, steal / _TICK


@dataclass(frozen=True)
class Snapshot:
    at: float
    procs: Mapping[int, Proc]
    machine: tuple[float, float, float]


def snapshot(at: float) -> Snapshot:
    """Every process's CPU and run-queue time now; `at` is the wall clock (time.time())."""
    return Snapshot(at, _processes(), _machine())


@dataclass
class Usage:
    """Cores used and cores' worth of run-queue wait, per group; machine-wide totals."""

    cores: dict[str, float] = field(default_factory=dict)
    waiting: dict[str, float] = field(default_factory=dict)
    machine: dict[str, float] = field(default_factory=dict)

    def system(self) -> float:
        """Cores used by the system under test: the stack and Postgres."""
        return sum(v for k, v in self.cores.items() if k not in (OTHER, BENCH))

    def describe(self) -> str:
        """One line: cores per group, biggest first, with their run-queue wait."""
        parts = [
            f"{name} {cores:.2f}"
            + (f" (+{wait:.2f} waiting)" if (wait := self.waiting.get(name, 0)) >= 0.05 else "")
            for name, cores in sorted(self.cores.items(), key=lambda item: -item[1])
            if cores >= 0.01
        ]
        return (
            "cores used: "
            + ", ".join(parts)
            + " | machine "
            + ", ".join(f"{k} {v:.2f}" for k, v in self.machine.items())
        )

    def to_json(self) -> dict:
        return {
            "cores": {k: round(v, 2) for k, v in self.cores.items()},
            "runqueue_wait_cores": {k: round(v, 2) for k, v in self.waiting.items()},
            "machine": {k: round(v, 2) for k, v in self.machine.items()},
        }


def _postgres_group(title: str, database: str) -> str:
    """A backend of another database is someone else's work (other sessions share this
    server); the server's own processes (WAL writer, checkpointer...) count as ours."""
    words = title.split()
    is_backend = len(words) >= 4 and words[0] == "postgres:" and words[3].startswith("[")
    if is_backend and words[2] != database:
        return OTHER
    return "postgres"


def usage(
    before: Snapshot, after: Snapshot, groups: Mapping[int, str], database: str = ""
) -> Usage:
    """Per group between two snapshots. `groups` maps process group ids (the stack's
    processes run in their own sessions) to names; the bench's own processes, Postgres
    (backends of `database` and the server's own processes) and everything else get a
    group each."""
    wall = after.at - before.at
    me = os.getpid()
    cores: dict[str, float] = defaultdict(float)
    waiting: dict[str, float] = defaultdict(float)
    for pid, proc in after.procs.items():
        if proc.pgrp in groups:
            name = groups[proc.pgrp]
        elif proc.comm == "postgres":
            name = _postgres_group(proc.title, database) if database else "postgres"
        elif pid == me or proc.ppid == me:
            name = BENCH
        else:
            name = OTHER
        previous = before.procs.get(pid) or Proc("", 0, 0, 0.0, 0.0, "")
        # Never negative: a thread that ended took its run-queue time with it.
        cores[name] += max(0.0, proc.cpu_s - previous.cpu_s) / wall
        waiting[name] += max(0.0, proc.wait_s - previous.wait_s) / wall
    busy, idle, steal = ((a - b) / wall for a, b in zip(after.machine, before.machine, strict=True))
    return Usage(dict(cores), dict(waiting), {"busy": busy, "idle": idle, "steal": steal})
