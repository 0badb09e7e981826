"""`make demo`: against a running `make run`, open a customer, place a few trades through
the API and watch them reach a terminal state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import requests

from devtools import embedded_postgres
from devtools.paths import REPO_ROOT

ORDERS = [
    {"ticker": "AAPL", "side": "buy", "quantity": 10},
    {"ticker": "MSFT", "side": "buy", "quantity": 5},
    {"ticker": "AAPL", "side": "sell", "quantity": 4},
    {"ticker": "NVDA", "side": "buy", "quantity": 100000},  # more than the cash: rejected
    {"ticker": "TSLA", "side": "sell", "quantity": 1},  # no TSLA shares: rejected
]


def main() -> int:
    base = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"
    try:
        requests.get(f"{base}/healthz", timeout=2).raise_for_status()
    except requests.RequestException:
        print(f"Nothing answers at {base}/healthz: start the system with `make run` first.")
        return 1
    env = {"DEBUG": "true", **os.environ}
    env.setdefault("DATABASE_URL", embedded_postgres.database_url())
    created = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "manage.py"),
            "create_customer",
            f"demo-{int(time.time())}",
            "--cash",
            "5000.00",
            "--position",
            "AAPL=10",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    token = json.loads(created.stdout)["token"]
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    ids = []
    for order in ORDERS:
        trade = session.post(f"{base}/api/v1/trades/", json=order, timeout=5).json()
        ids.append(trade["id"])
        print(f"placed  #{trade['id']}: {order['side']} {order['quantity']} {order['ticker']}")
    deadline = time.monotonic() + 30
    trades = []
    while time.monotonic() < deadline:
        trades = [session.get(f"{base}/api/v1/trades/{i}/", timeout=5).json() for i in ids]
        if all(t["status"] in {"filled", "rejected", "cancelled"} for t in trades):
            break
        time.sleep(0.2)
    print()
    for t in trades:
        detail = f"at {t['fill_price']}" if t["status"] == "filled" else (t["reason"] or "")
        terms = f"{t['side']:<4} {t['quantity']:>6} {t['ticker']:<5}"
        print(f"#{t['id']:<6} {terms} {t['status']:<11} {detail}")
    account = session.get(f"{base}/api/v1/account/", timeout=5).json()
    print(f"\naccount: {json.dumps(account)}")
    return 0 if all(t["status"] in {"filled", "rejected"} for t in trades) else 1


if __name__ == "__main__":
    sys.exit(main())
