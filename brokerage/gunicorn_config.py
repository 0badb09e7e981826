"""gunicorn's settings for every web process of the brokerage (`gunicorn -c
python:brokerage.gunicorn_config ...`): Prometheus metrics summed over its workers.

prometheus-client's multiprocess mode: each worker writes its counters to files in
PROMETHEUS_MULTIPROC_DIR, and /metrics, whichever worker answers it, reads them all. The
directory is this gunicorn's alone and starts empty: an operator's (systemd's
RuntimeDirectory, say) is emptied at start; without one a fresh temporary directory is
made and removed at exit. Set before any worker imports prometheus-client, which reads it
then."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
_made_here: list[str] = []


def on_starting(server: Any) -> None:
    directory = os.environ.get(MULTIPROC_DIR)
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        for stale in Path(directory).glob("*.db"):
            stale.unlink()
    else:
        directory = tempfile.mkdtemp(prefix="brokerage-metrics-")
        _made_here.append(directory)
        os.environ[MULTIPROC_DIR] = directory


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    # A dead worker's counters still count; its live gauges no longer do.
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    for directory in _made_here:
        shutil.rmtree(directory, ignore_errors=True)
