"""`make run`: everything on one machine.

Starts the embedded Postgres unless DATABASE_URL is set, applies migrations, makes a
demo customer, prints how to use it, then hands over to honcho, which runs every
process in the Procfile and stops them all on Ctrl-C."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from devtools import embedded_postgres
from devtools.paths import REPO_ROOT
from devtools.webhooks import new_webhook_secret


def main() -> int:
    env = dict(os.environ)
    env.setdefault("DEBUG", "true")
    env.setdefault("DJANGO_SETTINGS_MODULE", "settings.base")
    if not env.get("DATABASE_URL"):
        env["DATABASE_URL"] = embedded_postgres.ensure_running()
    port = env.get("PORT", "8000")
    env["WEB_PORT"] = port
    # The exchange's callbacks get a gunicorn of their own: fills never wait behind orders.
    env.setdefault("CALLBACK_PORT", str(int(port) + 1))
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
    print(
        f"""
Brokerage starting on {base}  (ready when {base}/healthz answers)
  database: {env["DATABASE_URL"]}
  API docs: {base}/api/docs/     admin: {base}/admin/
  demo customer token: {token}

  curl -s -X POST {base}/api/v1/trades/ \\
       -H 'Authorization: Token {token}' -H 'Content-Type: application/json' \\
       -d '{{"ticker": "AAPL", "side": "buy", "quantity": 1}}'
  curl -s {base}/api/v1/account/ -H 'Authorization: Token {token}'
""",
        flush=True,
    )
    honcho = str(Path(python).parent / "honcho")
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
    os.chdir(REPO_ROOT)
    os.execve(honcho, [honcho, "start", "-f", str(REPO_ROOT / "Procfile")], env)


if __name__ == "__main__":
    sys.exit(main())
