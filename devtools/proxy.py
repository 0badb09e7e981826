"""The buffering reverse proxy (nginx) in front of the gunicorns: renders
deploy/nginx/brokerage.conf.template into a runtime directory (config, temp, logs, pid)
and runs nginx in the foreground.

`python -m devtools.proxy` is the Procfile's `proxy` process (`make run`); the process
tests and `python -m bench --proxy` use `render` and `command` through devtools.stack.
Production renders the same template (docs/operations.md)."""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devtools.paths import REPO_ROOT

TEMPLATES = REPO_ROOT / "deploy" / "nginx"
TEMPLATE = TEMPLATES / "brokerage.conf.template"
ERRORS = TEMPLATES / "json_errors.conf"
# `make run`'s runtime directory (git-ignored).
DEFAULT_RUNTIME = REPO_ROOT / ".proxy"
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
INSTALL_HINT = "`make proxy` installs it (apt-get install nginx)"

_PLACEHOLDER = re.compile(r"\{\{ ([A-Z_]+) \}\}")


def nginx_binary() -> str | None:
    """nginx on PATH, or Debian's /usr/sbin/nginx (not on a non-root PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


@dataclass(frozen=True)
class ProxyConfig:
    """Where nginx listens (host:port) and the gunicorns it forwards to (host:port)."""

    listen_web: str
    listen_callbacks: str
    web_upstream: str
    callbacks_upstream: str
    admin_upstream: str
    # The event stream server (uvicorn), which /api/v1/events/stream goes to unbuffered.
    stream_upstream: str
    # The app's MAX_REQUEST_BODY_BYTES: nginx refuses larger bodies itself.
    max_body_bytes: int = 16 * 1024
    # Whole request header, and each gap while reading the body.
    client_timeout: str = "5s"
    worker_processes: str = "1"
    # Who may reach /admin/ through the public port (CIDRs); "all": anyone.
    admin_allow: tuple[str, ...] = ("127.0.0.0/8", "::1")
    error_log: str = "stderr"
    access_log: str = ""  # "": <runtime>/logs/access.log


def _fill(text: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return _PLACEHOLDER.sub(value, text)


def _unprivileged() -> tuple[int, int, str]:
    """uid, gid and the user directive for the worker processes when we are root."""
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    return nobody.pw_uid, nobody.pw_gid, f"user nobody {group};"


def render(config: ProxyConfig, runtime: Path) -> Path:
    """Write nginx.conf (and the JSON error pages it includes) under `runtime`, with the
    temp and log directories nginx needs; return the config's path."""
    runtime = runtime.resolve()
    for sub in ("logs", "temp", *(f"temp/{name}" for name in TEMP_DIRS)):
        (runtime / sub).mkdir(parents=True, exist_ok=True)
    user_directive = "# not root: the workers run as the current user"
    if os.geteuid() == 0:
        # Root's master binds and reads the config; the workers drop to nobody and must
        # be able to write their temp directories.
        uid, gid, user_directive = _unprivileged()
        for name in TEMP_DIRS:
            os.chown(runtime / "temp" / name, uid, gid)
    if config.admin_allow == ("all",):
        allow = "            allow all;"
    else:
        allow = "\n".join(
            [
                *(f"            allow {cidr};" for cidr in config.admin_allow),
                "            deny all;",
            ]
        )
    values = {
        "USER_DIRECTIVE": user_directive,
        "WORKER_PROCESSES": config.worker_processes,
        "RUNTIME": str(runtime),
        "ERROR_LOG": config.error_log,
        "ACCESS_LOG": config.access_log or str(runtime / "logs" / "access.log"),
        "CLIENT_TIMEOUT": config.client_timeout,
        "MAX_BODY_BYTES": str(config.max_body_bytes),
        "WEB_UPSTREAM": config.web_upstream,
        "CALLBACKS_UPSTREAM": config.callbacks_upstream,
        "ADMIN_UPSTREAM": config.admin_upstream,
        "STREAM_UPSTREAM": config.stream_upstream,
        "LISTEN_WEB": config.listen_web,
        "LISTEN_CALLBACKS": config.listen_callbacks,
        "ADMIN_ALLOW": allow,
    }
    (runtime / "json_errors.conf").write_text(_fill(ERRORS.read_text(), values))
    conf = runtime / "nginx.conf"
    conf.write_text(_fill(TEMPLATE.read_text(), values))
    return conf


def command(conf: Path, runtime: Path, nginx: str | None = None) -> list[str]:
    """nginx in the foreground with this config; start-up errors go to stderr."""
    binary = nginx or nginx_binary()
    if binary is None:
        raise RuntimeError(f"nginx is not installed: {INSTALL_HINT}")
    prefix = f"{runtime.resolve()}/"
    return [binary, "-e", "stderr", "-p", prefix, "-c", str(conf), "-g", "daemon off;"]


def config_from_env(env: Mapping[str, str]) -> ProxyConfig:
    """The Procfile's proxy: public PROXY_PORT (`make run`'s PORT) and CALLBACK_PORT,
    gunicorns on WEB_PORT, CALLBACK_WEB_PORT and ADMIN_PORT, the stream server on
    STREAM_PORT (loopback)."""
    host = env.get("PROXY_HOST", "127.0.0.1")
    allow = env.get("ADMIN_ALLOW_FROM", "127.0.0.0/8,::1")
    return ProxyConfig(
        listen_web=f"{host}:{env['PROXY_PORT']}",
        listen_callbacks=f"{host}:{env['CALLBACK_PORT']}",
        web_upstream=f"127.0.0.1:{env['WEB_PORT']}",
        callbacks_upstream=f"127.0.0.1:{env['CALLBACK_WEB_PORT']}",
        admin_upstream=f"127.0.0.1:{env['ADMIN_PORT']}",
        stream_upstream=f"127.0.0.1:{env['STREAM_PORT']}",
        max_body_bytes=int(env.get("MAX_REQUEST_BODY_BYTES", str(16 * 1024))),
        admin_allow=tuple(a.strip() for a in allow.split(",") if a.strip()),
    )


def main() -> int:
    runtime = Path(os.environ.get("PROXY_RUNTIME_DIR", str(DEFAULT_RUNTIME)))
    conf = render(config_from_env(os.environ), runtime)
    argv = command(conf, runtime)
    os.execv(argv[0], argv)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
