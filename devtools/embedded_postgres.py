"""An embedded Postgres for development, tests and `make run` when DATABASE_URL is unset.

Uses the PostgreSQL binaries shipped by the `pgserver` wheel, in a git-ignored data
directory inside the checkout. Postgres refuses to run as root, so as root the server
runs as pgserver's unprivileged system user. It listens on a Unix socket only.

    python -m devtools.embedded_postgres start   # prints the DATABASE_URL
    python -m devtools.embedded_postgres stop
    python -m devtools.embedded_postgres url
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pwd
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from devtools.paths import REPO_ROOT

DEFAULT_DATA_DIR = REPO_ROOT / ".pgdata"
DATABASE_NAME = "brokerage"
SUPERUSER = "postgres"
PORT = 5432
SYSTEM_USER = "pgserver"

# Tuned for a small machine running the whole stack; durability settings stay at
# Postgres' defaults so that benchmarks measure real commits.
SERVER_SETTINGS = {
    "max_connections": "300",
    "shared_buffers": "512MB",
    "work_mem": "8MB",
    "maintenance_work_mem": "256MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "listen_addresses": "''",
    "port": str(PORT),
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] %d '",
    "timezone": "UTC",
    "track_commit_timestamp": "on",
}


def bin_path() -> Path:
    # pgserver asks platformdirs for a runtime dir at import time and warns when
    # XDG_RUNTIME_DIR is unset; we never use that directory.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH


def _bin(name: str) -> str:
    return str(bin_path() / name)


def data_dir() -> Path:
    return Path(os.environ.get("EMBEDDED_PGDATA", DEFAULT_DATA_DIR)).resolve()


def socket_dir(pgdata: Path) -> Path:
    """Unix socket paths are limited to ~107 bytes; fall back to /tmp for deep checkouts."""
    if len(str(pgdata / f".s.PGSQL.{PORT}")) < 100:
        return pgdata
    digest = hashlib.sha1(str(pgdata).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"brokerage-pg-{digest}"


def database_url(pgdata: Path | None = None, database: str = DATABASE_NAME) -> str:
    host = quote(str(socket_dir(pgdata or data_dir())), safe="")
    return f"postgres://{SUPERUSER}@{host}:{PORT}/{database}"


def server_user() -> dict:
    if os.geteuid() != 0:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.utils import ensure_user_exists
    ensure_user_exists(SYSTEM_USER)
    return {"user": SYSTEM_USER}


def chown_for_server(path: Path) -> None:
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(SYSTEM_USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def make_traversable(path: Path) -> None:
    """As root, the unprivileged server user must be able to reach the data directory."""
    if os.geteuid() != 0:
        return
    from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions

    binaries = bin_path()
    ensure_prefix_permissions(path)
    ensure_prefix_permissions(binaries)
    read = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(binaries, read | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(binaries.parent / "lib", read)


@contextmanager
def _exclusive(pgdata: Path) -> Iterator[None]:
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    lock_path = pgdata.with_name(pgdata.name + ".lock")
    with open(lock_path, "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def is_running(pgdata: Path | None = None) -> bool:
    pgdata = pgdata or data_dir()
    if not (pgdata / "PG_VERSION").exists():
        return False
    result = subprocess.run(
        [_bin("pg_ctl"), "-D", str(pgdata), "status"],
        capture_output=True,
        **server_user(),
    )
    return result.returncode == 0


def _initdb(pgdata: Path, as_user: dict) -> None:
    pgdata.mkdir(parents=True, exist_ok=True)
    chown_for_server(pgdata)
    os.chmod(pgdata, 0o700)
    subprocess.run(
        [
            _bin("initdb"),
            "-D",
            str(pgdata),
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "-U",
            SUPERUSER,
        ],
        check=True,
        capture_output=True,
        **as_user,
    )
    with open(pgdata / "postgresql.conf", "a") as conf:
        conf.write("\n# brokerage embedded settings\n")
        for key, value in SERVER_SETTINGS.items():
            conf.write(f"{key} = {value}\n")


def _create_database(pgdata: Path) -> None:
    import psycopg

    with psycopg.connect(database_url(pgdata, "postgres"), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def ensure_running(pgdata: Path | None = None) -> str:
    """Initialise (first time) and start the embedded server; return its DATABASE_URL.

    Safe to call from several processes at once: a file lock serialises start-up.
    """
    pgdata = pgdata or data_dir()
    with _exclusive(pgdata):
        if not is_running(pgdata):
            as_user = server_user()
            make_traversable(pgdata.parent)
            if not (pgdata / "PG_VERSION").exists():
                _initdb(pgdata, as_user)
            sockets = socket_dir(pgdata)
            sockets.mkdir(parents=True, exist_ok=True)
            if sockets != pgdata:
                os.chmod(sockets, 0o777)
            log_file = pgdata / "server.log"
            subprocess.run(
                [
                    _bin("pg_ctl"),
                    "-D",
                    str(pgdata),
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(log_file),
                    "-o",
                    f"-k {sockets}",
                    "start",
                ],
                check=True,
                capture_output=True,
                **as_user,
            )
        _create_database(pgdata)
    return database_url(pgdata)


def start_hot_standby(primary: Path, standby: Path) -> str:
    """Copy the running embedded server at `primary` into the new directory `standby` as a
    hot standby streaming from it (pg_basebackup -R), start it on a socket of its own and
    return its DATABASE_URL."""
    as_user = server_user()
    standby.mkdir(mode=0o700, parents=True)
    chown_for_server(standby)
    subprocess.run(
        [
            _bin("pg_basebackup"),
            "-D",
            str(standby),
            "-R",
            "--checkpoint=fast",
            "--wal-method=stream",
            "-h",
            str(socket_dir(primary)),
            "-p",
            str(PORT),
            "-U",
            SUPERUSER,
        ],
        check=True,
        capture_output=True,
        **as_user,
    )
    # The copy has the primary's socket lock (its sockets live in its data directory)
    # and log; the standby makes its own.
    for copied in (f".s.PGSQL.{PORT}.lock", "server.log"):
        (standby / copied).unlink(missing_ok=True)
    with open(standby / "postgresql.conf", "a") as conf:
        conf.write("hot_standby = on\n")
    return ensure_running(standby)


def stop(pgdata: Path | None = None, mode: str = "fast") -> None:
    pgdata = pgdata or data_dir()
    with _exclusive(pgdata):
        if is_running(pgdata):
            subprocess.run(
                [_bin("pg_ctl"), "-D", str(pgdata), "-w", "-m", mode, "stop"],
                check=True,
                capture_output=True,
                **server_user(),
            )


def restart(pgdata: Path | None = None, mode: str = "immediate") -> float:
    """Stop (immediate = crash-like) and start again; returns seconds it took."""
    started = time.monotonic()
    stop(pgdata, mode=mode)
    ensure_running(pgdata)
    return time.monotonic() - started


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "start"
    if command == "start":
        print(ensure_running())
    elif command == "stop":
        stop()
    elif command == "url":
        print(database_url())
    elif command == "psql":
        ensure_running()
        os.execv(_bin("psql"), [_bin("psql"), database_url(), *argv[2:]])
    else:
        print(f"unknown command {command!r}: start | stop | url | psql", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
