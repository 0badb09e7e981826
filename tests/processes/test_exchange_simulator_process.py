"""The exchange simulator started as its own process, as `make run` starts it."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import threading

import pytest
import requests

from devtools.paths import REPO_ROOT
from exchange_simulator.market import start_price

SECRET = "whsec_" + base64.b64encode(b"config-test-secret-0123456789abc").decode()


@pytest.mark.processes
def test_runs_as_a_module() -> None:
    env = {
        **os.environ,
        "EXCHANGE_WEBHOOK_SECRET": SECRET,
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "exchange_simulator", "--port", "0", "--seed", "42"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Kill the process if it never prints its address, so the readline below cannot hang.
    watchdog = threading.Timer(10, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            match = re.search(r"event=listening url=(\S+)", line)
            if match:
                url = match.group(1)
                break
        assert url, "simulator did not report its address"
        quote = requests.get(f"{url}/quotes/AAPL", timeout=5).json()
        assert quote["price"] == str(start_price(42, "AAPL"))
        proc.terminate()
        assert proc.wait(timeout=5) == 0
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
