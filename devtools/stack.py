"""The whole system as real OS processes, driven from Python: gunicorn, shard workers,
the reaper, the exchange simulator and, optionally, the buffering proxy (nginx) in front
of the gunicorns. The end-to-end tests, the benchmark and the chaos soak use it; `make
run` uses honcho and the Procfile instead."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import requests

from devtools import proxy
from devtools.paths import REPO_ROOT
from devtools.webhooks import new_webhook_secret

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], T], *, timeout: float, what: str, every: float = 0.05) -> T:
    """Poll `condition` until it is truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def database_url(alias: str = "default") -> str:
    """The URL of a Django database (the test database, inside tests)."""
    from django.db import connections

    params = connections[alias].settings_dict
    host = quote(params["HOST"] or "localhost", safe="")
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    return f"postgres://{params['USER']}{password}@{host}:{params['PORT'] or 5432}/{params['NAME']}"


class Stack:
    def __init__(
        self,
        log_dir: Path,
        *,
        database_url: str,
        shard_count: int,
        separate_callbacks: bool = False,
        proxied: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`separate_callbacks`: the exchange calls back a gunicorn of its own
        (`start_callbacks`), so that fills never queue behind customers' requests.
        `proxied`: the gunicorns listen on internal ports behind nginx (`start_proxy`),
        which owns `web_port` and `callbacks_port`, as in production; they trust one
        proxy (NUM_PROXIES=1). `env` adds to or overrides the processes' environment."""
        self.log_dir = log_dir
        self.proxied = proxied
        self.web_port = free_port()
        self.callbacks_port = free_port() if separate_callbacks else self.web_port
        # Where the gunicorns listen: the public ports, or internal ones behind the proxy.
        self.web_upstream_port = free_port() if proxied else self.web_port
        if not separate_callbacks:
            self.callbacks_upstream_port = self.web_upstream_port
        else:
            self.callbacks_upstream_port = free_port() if proxied else self.callbacks_port
        self.admin_port = free_port()
        # The event stream server: behind the proxy, web_url/api/v1/events/stream/.
        self.stream_port = free_port()
        self.exchange_port = free_port()
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.stream_url = self.web_url if proxied else f"http://127.0.0.1:{self.stream_port}"
        self.exchange_url = f"http://127.0.0.1:{self.exchange_port}"
        self.secret = new_webhook_secret()
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "settings.base",
            "DEBUG": "true",
            "DATABASE_URL": database_url,
            "SHARD_COUNT": str(shard_count),
            "EXCHANGE_URL": self.exchange_url,
            "EXCHANGE_WEBHOOK_SECRET": self.secret,
            "CALLBACK_URL": f"http://127.0.0.1:{self.callbacks_port}/exchange/callback/",
            "WORKER_POLL_INTERVAL": "0.5",
            "REAPER_IN_FLIGHT_DEADLINE": "3",
            "REAPER_PLACED_STALE_SECONDS": "2",
            "REAPER_OUTBOX_STALE_SECONDS": "2",
            "EXCHANGE_READ_TIMEOUT": "2",
            "PYTHONUNBUFFERED": "1",
            **({"NUM_PROXIES": "1"} if proxied else {}),
            **(env or {}),
        }
        self.procs: dict[str, subprocess.Popen] = {}

    # -- processes ------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], **env: str) -> subprocess.Popen:
        with open(self.log_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                env={"DB_APPLICATION_NAME": name, **self.env, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group (for killpg) but our session: the kernel's autogroup
                # scheduler would otherwise give each new session an equal CPU share.
                process_group=0,
            )
        self.procs[name] = proc
        return proc

    def start_exchange(self, *flags: str) -> None:
        self._spawn(
            "exchange",
            [
                sys.executable,
                "-m",
                "exchange_simulator",
                "--port",
                str(self.exchange_port),
                "--seed",
                "7",
                *flags,
            ],
        )
        wait_for(
            lambda: self._answers(f"{self.exchange_url}/quotes/AAPL"),
            timeout=15,
            what="the exchange simulator",
        )

    def start_web(self, workers: int = 2, *extra: str) -> None:
        self._start_gunicorn("web", self.web_upstream_port, workers, *extra)

    def start_callbacks(self, workers: int = 2, *extra: str) -> None:
        """The exchange's callback receiver (settings.callbacks) on a gunicorn of its own
        (see __init__)."""
        assert self.callbacks_port != self.web_port, "Stack(separate_callbacks=True) first"
        receiver = ("--env", "DJANGO_SETTINGS_MODULE=settings.callbacks")
        self._start_gunicorn("callbacks", self.callbacks_upstream_port, workers, *receiver, *extra)

    def start_admin(self, workers: int = 1, *extra: str) -> None:
        """The staff's admin (settings.admin); behind the proxy, `/admin/` on `web_port`."""
        admin = ("--env", "DJANGO_SETTINGS_MODULE=settings.admin")
        self._start_gunicorn("admin", self.admin_port, workers, *admin, *extra)

    def start_stream(self, **env: str) -> None:
        """The event stream server (uvicorn, settings.stream) on `stream_port`; ready once
        it listens for wake-ups."""
        self._spawn(
            "stream",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "brokerage.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.stream_port),
                "--no-access-log",
                "--timeout-graceful-shutdown",
                "2",
            ],
            DJANGO_SETTINGS_MODULE="settings.stream",
            **env,
        )
        wait_for(
            lambda: self._answers(f"http://127.0.0.1:{self.stream_port}/healthz"),
            timeout=20,
            what="the stream server",
        )

    def start_proxy(self, **options: object) -> None:
        """nginx on `web_port` (/admin/ to the admin, the rest to the web) and
        `callbacks_port` (the callback receiver), rendered from the repository's template
        into <log_dir>/proxy; `options` override devtools.proxy.ProxyConfig's defaults."""
        assert self.proxied, "Stack(proxied=True) first"
        nginx = proxy.nginx_binary()
        if nginx is None:
            raise RuntimeError(f"nginx is not installed: {proxy.INSTALL_HINT}")
        runtime = self.log_dir / "proxy"
        callbacks_listen = self.callbacks_port if self.callbacks_port != self.web_port else 0
        config = proxy.ProxyConfig(
            listen_web=f"127.0.0.1:{self.web_port}",
            listen_callbacks=f"127.0.0.1:{callbacks_listen or free_port()}",
            web_upstream=f"127.0.0.1:{self.web_upstream_port}",
            callbacks_upstream=f"127.0.0.1:{self.callbacks_upstream_port}",
            admin_upstream=f"127.0.0.1:{self.admin_port}",
            stream_upstream=f"127.0.0.1:{self.stream_port}",
            max_body_bytes=int(self.env.get("MAX_REQUEST_BODY_BYTES", str(16 * 1024))),
            **options,  # type: ignore[arg-type]
        )
        conf = proxy.render(config, runtime)
        self._spawn("proxy", proxy.command(conf, runtime, nginx))
        wait_for(
            lambda: self._listens(self.web_port) and self._listens(self.callbacks_port),
            timeout=10,
            what="the proxy",
        )

    def proxy_access_log(self) -> str:
        path = self.log_dir / "proxy" / "logs" / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _start_gunicorn(self, name: str, port: int, workers: int, *extra: str) -> None:
        self._spawn(
            name,
            [
                sys.executable,
                "-m",
                "gunicorn",
                "brokerage.wsgi",
                "--config",
                "python:brokerage.gunicorn_config",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--log-level",
                "warning",
                *extra,
            ],
        )
        wait_for(lambda: self._answers(f"http://127.0.0.1:{port}/healthz"), timeout=20, what=name)

    def start_worker(
        self, name: str, shards: str = "all", *, metrics_port: int = 0, **env: str
    ) -> None:
        """`metrics_port`: serve its Prometheus metrics there (0: none)."""
        self._spawn(
            name,
            [
                sys.executable,
                "manage.py",
                "run_shard_worker",
                "--shards",
                shards,
                "--name",
                name,
                "--lock-retry-interval",
                "0.2",
                "--metrics-port",
                str(metrics_port),
            ],
            **env,
        )

    def start_reaper(
        self, interval: float = 0.5, name: str = "reaper", *, metrics_port: int = 0
    ) -> None:
        self._spawn(
            name,
            [
                sys.executable,
                "manage.py",
                "run_reaper",
                "--interval",
                str(interval),
                "--metrics-port",
                str(metrics_port),
            ],
        )

    def signal(self, name: str, sig: int) -> None:
        os.killpg(self.procs[name].pid, sig)

    def kill(self, name: str) -> None:
        self.signal(name, signal.SIGKILL)
        self.procs[name].wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGCONT)
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- talking to it ----------------------------------------------------------------------

    @staticmethod
    def _listens(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def exchange_stats(self) -> dict:
        return requests.get(f"{self.exchange_url}/_control/stats", timeout=5).json()

    def exchange_orders(self) -> list[dict]:
        return requests.get(f"{self.exchange_url}/_control/orders", timeout=5).json()

    def set_faults(self, **faults: object) -> dict:
        response = requests.post(f"{self.exchange_url}/_control/faults", json=faults, timeout=5)
        response.raise_for_status()
        return response.json()

    def place(self, session: requests.Session, token: str, **body: object) -> requests.Response:
        return session.post(
            f"{self.web_url}/api/v1/trades/",
            json=body,
            headers={"Authorization": f"Token {token}"},
            timeout=10,
        )
