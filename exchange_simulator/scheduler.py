"""A single timer thread running callables at a due time (heap + condition variable)."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("exchange_simulator")


class Scheduler:
    """Runs each job on the scheduler thread once it is due; jobs must be quick.

    Anything slow (network I/O) should be handed to a worker pool by the job itself.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="sim-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def call_later(self, delay_seconds: float, job: Callable[[], None]) -> None:
        due = time.monotonic() + max(0.0, delay_seconds)
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (due, next(self._counter), job))
            if self._heap[0][2] is job:
                self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._stopped:
                    return
                _, _, job = heapq.heappop(self._heap)
            try:
                job()
            except Exception:
                log.exception("event=scheduler_job_failed")
