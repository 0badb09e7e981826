"""devtools.stack.Stack, remembering how each process was started so that a killed one can
be started again under the same name, and naming every process's Django connection."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from chaos.database import with_application_name
from devtools.stack import Stack


class ChaosStack(Stack):
    def __init__(
        self, log_dir: Path, *, database_url: str, shard_count: int, env: Mapping[str, str]
    ) -> None:
        super().__init__(log_dir, database_url=database_url, shard_count=shard_count, env=env)
        self._database_url = database_url
        self._starters: dict[str, Callable[[], None]] = {}
        # Serialises starting, killing and checking processes between the fault thread and
        # the supervisor.
        self.lock = threading.RLock()
        # Processes a fault took down on purpose: not to be reported or restarted as dead.
        self.expected_down: set[str] = set()
        self.stopped: set[str] = set()
        self.worker_parts: dict[str, str] = {}
        self.closed = False

    def _spawn(self, name: str, argv: list[str], **env: str) -> subprocess.Popen:
        # Who wrote what shows up in pg_stat_activity and in the chaos write log.
        env.setdefault("DATABASE_URL", with_application_name(self._database_url, name))
        return super()._spawn(name, argv, **env)

    def start_exchange(self, *flags: str) -> None:
        super().start_exchange(*flags)
        self._starters["exchange"] = lambda: Stack.start_exchange(self, *flags)

    def start_web(self, workers: int = 2, *extra: str) -> None:
        super().start_web(workers, *extra)
        self._starters["web"] = lambda: Stack.start_web(self, workers, *extra)

    def start_worker(
        self, name: str, shards: str = "all", *, metrics_port: int = 0, **env: str
    ) -> None:
        super().start_worker(name, shards, metrics_port=metrics_port, **env)
        self.worker_parts[name] = shards
        self._starters[name] = lambda: Stack.start_worker(
            self, name, shards, metrics_port=metrics_port, **env
        )

    def start_reaper(
        self, interval: float = 0.5, name: str = "reaper", *, metrics_port: int = 0
    ) -> None:
        super().start_reaper(interval, name, metrics_port=metrics_port)
        self._starters[name] = lambda: Stack.start_reaper(
            self, interval, name, metrics_port=metrics_port
        )

    def restart(self, name: str) -> None:
        """Start `name` again as it was first started (same name, shards and flags)."""
        with self.lock:
            if self.closed:
                return
            self._starters[name]()
            self.expected_down.discard(name)
            self.stopped.discard(name)

    def sigkill(self, name: str) -> None:
        """SIGKILL the process group of `name` and reap it; it stays down until restart()."""
        with self.lock:
            self.expected_down.add(name)
            self.kill(name)

    def sigstop(self, name: str) -> None:
        with self.lock:
            self.stopped.add(name)
            self.signal(name, signal.SIGSTOP)

    def sigcont(self, name: str) -> None:
        with self.lock:
            self.signal(name, signal.SIGCONT)
            self.stopped.discard(name)

    def close(self) -> None:
        """Stop every process for good: a fault or the supervisor may not start one again."""
        with self.lock:
            self.closed = True
            self.stop_all()

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def exited(self) -> dict[str, int]:
        """Processes that ended although no fault took them down: name -> exit status."""
        with self.lock:
            return {
                name: code
                for name, proc in self.procs.items()
                if name not in self.expected_down and (code := proc.poll()) is not None
            }

    def resume_everything(self) -> None:
        """SIGCONT whatever is stopped and start whatever is down (before the drain)."""
        with self.lock:
            for name in list(self.stopped):
                self.sigcont(name)
            for name in list(self.expected_down):
                self.restart(name)

    def log_tail(self, name: str, lines: int = 12) -> str:
        """The end of a process's log: its last traceback if it ends with one, else the
        last `lines` lines."""
        text = self.log(name).rstrip("\n").splitlines()
        starts = [i for i, line in enumerate(text) if line.startswith("Traceback (most recent")]
        first = starts[-1] - 2 if starts and len(text) - starts[-1] < 200 else len(text) - lines
        return "\n".join(text[max(0, first) :])

    @property
    def worker_names(self) -> list[str]:
        return list(self.worker_parts)


def environment_for_children(pgdata: Path | None) -> dict[str, str]:
    """Settings every process of the soak gets: short timeouts so faults heal quickly."""
    env = {
        "REAPER_IN_FLIGHT_DEADLINE": "3",
        "REAPER_PLACED_STALE_SECONDS": "2",
        "REAPER_OUTBOX_STALE_SECONDS": "2",
        "WORKER_POLL_INTERVAL": "0.5",
        "WORKER_LOCK_RETRY_INTERVAL": "0.2",
        # A frozen leader is deposed by a standby after this long without a heartbeat.
        "WORKER_LEASE_TIMEOUT": "3",
        # ...and a frozen reaper after this long without checking its lock.
        "REAPER_LEASE_TIMEOUT": "2",
        "EXCHANGE_READ_TIMEOUT": "2",
        "LOG_LEVEL": "INFO",
    }
    if pgdata is not None:
        env["EMBEDDED_PGDATA"] = str(pgdata)
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env
