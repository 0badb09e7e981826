"""`make run`: everything on one machine.

Starts the embedded Postgres unless DATABASE_URL is set (HA=1: the local Patroni cluster
of devtools.ha_cluster, which stays up after Ctrl-C; `make ha-stop` stops it), applies
migrations, makes a demo customer, prints how to use it, then hands over to honcho, which
runs every process in the Procfile and stops them all on Ctrl-C.

With nginx installed the buffering proxy (devtools.proxy) owns the public ports, PORT for
customers and staff, CALLBACK_PORT for the exchange, and the gunicorns listen on internal
loopback ports behind it (PORT+10, +11, +12). Without nginx the gunicorns take the
public ports themselves (the admin on ADMIN_PORT, PORT+2) and the `proxy` process is left
out: fine on a laptop, not in production (docs/operations.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from devtools import embedded_postgres, proxy
from devtools.paths import REPO_ROOT
from devtools.webhooks import new_webhook_secret

PROCFILE = REPO_ROOT / "Procfile"


def main() -> int:
    env = dict(os.environ)
    env.setdefault("DEBUG", "true")
    env.setdefault("DJANGO_SETTINGS_MODULE", "settings.base")
    if env.get("HA") == "1":
        from devtools.ha_cluster import HaCluster

        env["DATABASE_URL"] = HaCluster().start()
    elif not env.get("DATABASE_URL"):
        env["DATABASE_URL"] = embedded_postgres.ensure_running()
    port = env.get("PORT", "8000")
    # honcho gives every process a PORT of its own: the proxy reads PROXY_PORT.
    env["PROXY_PORT"] = port
    # The exchange's callbacks get a gunicorn of their own: fills never wait behind orders.
    env.setdefault("CALLBACK_PORT", str(int(port) + 1))
    processes = procfile_processes()
    # PROXY=off: the gunicorns on the public ports even with nginx installed.
    proxied = env.get("PROXY", "auto") != "off" and proxy.nginx_binary() is not None
    if proxied:
        # nginx on the public ports; the gunicorns behind it, which trust one proxy.
        env["WEB_PORT"] = str(int(port) + 10)
        env["CALLBACK_WEB_PORT"] = str(int(port) + 11)
        env["ADMIN_PORT"] = str(int(port) + 12)
        env["STREAM_PORT"] = str(int(port) + 13)
        env.setdefault("NUM_PROXIES", "1")
    else:
        env["WEB_PORT"] = port
        env["CALLBACK_WEB_PORT"] = env["CALLBACK_PORT"]
        env.setdefault("ADMIN_PORT", str(int(port) + 2))
        env.setdefault("STREAM_PORT", str(int(port) + 3))
        processes.remove("proxy")
    # The workers' and the reaper's /metrics: METRICS_PORT_BASE + 0..4 (see the Procfile).
    env.setdefault("METRICS_PORT_BASE", str(int(port) + 20))
    env.setdefault("CALLBACK_URL", f"http://127.0.0.1:{env['CALLBACK_PORT']}/exchange/callback/")
    env.setdefault("EXCHANGE_PORT", "9000")
    env.setdefault("EXCHANGE_URL", f"http://127.0.0.1:{env['EXCHANGE_PORT']}")
    # A fresh callback secret per run, shared by the simulator (signs) and us (verifies).
    env.setdefault("EXCHANGE_WEBHOOK_SECRET", new_webhook_secret())
    python = sys.executable
    manage = [python, str(REPO_ROOT / "manage.py")]

    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, check=True)
    demo = subprocess.run(
        [*manage, "seed_demo", "--count", "1"], env=env, check=True, capture_output=True, text=True
    )
    token = json.loads(demo.stdout.splitlines()[0])["token"]
    base = f"http://127.0.0.1:{port}"
    admin = f"{base}/admin/" if proxied else f"http://127.0.0.1:{env['ADMIN_PORT']}/admin/"
    stream = base if proxied else f"http://127.0.0.1:{env['STREAM_PORT']}"
    print(
        f"""
Brokerage starting on {base}  (ready when {base}/healthz answers)
  database: {env["DATABASE_URL"]}
  API docs: {base}/api/docs/     admin: {admin}
  demo customer token: {token}

  curl -s -X POST {base}/api/v1/trades/ \\
       -H 'Authorization: Token {token}' -H 'Content-Type: application/json' \\
       -d '{{"ticker": "AAPL", "side": "buy", "quantity": 1}}'
  curl -s {base}/api/v1/account/ -H 'Authorization: Token {token}'
  curl -sN {stream}/api/v1/events/stream/ -H 'Authorization: Token {token}'   (live events)

  metrics (Prometheus): {_metrics_endpoints(env)}
  status: make manage ARGS=status
""",
        flush=True,
    )
    if proxied:
        print(
            f"  proxy: nginx on {base} and :{env['CALLBACK_PORT']} (exchange callbacks), "
            f"gunicorns behind it on :{env['WEB_PORT']}, :{env['CALLBACK_WEB_PORT']}, "
            f":{env['ADMIN_PORT']}, the stream server on :{env['STREAM_PORT']}\n",
            flush=True,
        )
    else:
        why = "PROXY=off" if proxy.nginx_binary() else "nginx is not installed"
        print(
            f"  proxy: none ({why}): the gunicorns face clients directly, and one slow client"
            f" holds a sync worker for up to 30 s; {proxy.INSTALL_HINT}\n",
            flush=True,
        )
    honcho = str(Path(python).parent / "honcho")
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
    os.chdir(REPO_ROOT)
    # Ctrl-C reaches honcho too (the terminal signals the whole group); honcho stops every
    # process, and then we say what is still running.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    code = subprocess.run([honcho, "start", "-f", str(PROCFILE), *processes], env=env).returncode
    if code in (130, -signal.SIGINT):
        print(f"\nStopped every process. {_database_left_running(env)}", flush=True)
        return 0
    return code


def _metrics_endpoints(env: dict[str, str]) -> str:
    base = int(env["METRICS_PORT_BASE"])
    return (
        f"http://127.0.0.1:{env['WEB_PORT']}/metrics (web, with the database's figures), "
        f":{env['CALLBACK_WEB_PORT']}/metrics (callbacks), :{env['ADMIN_PORT']}/metrics (admin),"
        f" :{env['STREAM_PORT']}/metrics (stream),"
        f"\n    :{base}-{base + 3}/metrics (workers a1 a2 b1 b2), :{base + 4}/metrics (reaper)"
    )


def _database_left_running(env: dict[str, str]) -> str:
    if env.get("HA") == "1":
        return "The HA cluster keeps running (make ha-stop stops it)."
    if not os.environ.get("DATABASE_URL"):
        return "The embedded Postgres keeps running, with its data (make db-stop stops it)."
    return "The database of DATABASE_URL was not touched."


def procfile_processes() -> list[str]:
    """The Procfile's process names, in order."""
    lines = PROCFILE.read_text().splitlines()
    return [line.split(":", 1)[0] for line in lines if line.strip() and not line.startswith("#")]


if __name__ == "__main__":
    sys.exit(main())
