"""A local highly available Postgres: etcd and three Postgres nodes under Patroni, on
loopback ports, in synchronous mode (strict), with pg_rewind so that a failed primary
rejoins as a standby. For `make ha`, `make run HA=1` and the failover soak.

The Postgres binaries are the embedded Postgres's (the `pgserver` wheel), Patroni comes
from the `ha` extra, etcd from Debian's `etcd-server` package. As root, Patroni and
Postgres run as the embedded server's unprivileged user.

    python -m devtools.ha_cluster start    # prints the multi-host DATABASE_URL
    python -m devtools.ha_cluster status   # patronictl list
    python -m devtools.ha_cluster stop
    python -m devtools.ha_cluster url
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import requests

from devtools import embedded_postgres
from devtools.paths import REPO_ROOT

DEFAULT_ROOT = REPO_ROOT / ".pgdata-ha"
DATABASE_NAME = "brokerage"
SCOPE = "brokerage"
SUPERUSER = "postgres"
NODES = ("pg1", "pg2", "pg3")
DEFAULT_BASE_PORT = 5441

# Failover timing. Patroni's floor for ttl is 20 s: a primary whose machine died is
# replaced once its leader key expires, so ttl sets most of the write outage. loop_wait
# is how often each node looks (and the leader refreshes its key); loop_wait + 2 *
# retry_timeout must stay within ttl.
TTL = 20
LOOP_WAIT = 1
RETRY_TIMEOUT = 5

# The same on every node: a standby needs at least the primary's max_connections, and
# commit timestamps are kept from the WAL on every node so that they survive a failover.
POSTGRES_PARAMETERS = {
    "max_connections": 300,
    "shared_buffers": "256MB",
    "work_mem": "8MB",
    "max_wal_size": "2GB",
    "wal_level": "replica",
    "hot_standby": "on",
    "wal_log_hints": "on",
    "max_wal_senders": 10,
    "max_replication_slots": 10,
    "wal_keep_size": "512MB",
    "track_commit_timestamp": "on",
    "timezone": "UTC",
    "log_min_messages": "warning",
    "log_line_prefix": "%m [%p] %d ",
}
PG_HBA = [
    "local all all trust",
    "local replication all trust",
    "host all all 127.0.0.1/32 trust",
    "host replication all 127.0.0.1/32 trust",
]


class HaUnavailable(RuntimeError):
    """A part of the cluster is missing or did not come up."""


@dataclass(frozen=True)
class Node:
    name: str
    pg_port: int
    api_port: int
    data_dir: Path

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def postmaster_pid(self) -> int | None:
        """The postmaster's pid from its pid file, if that process is this node's
        postmaster (a stale file may name an unrelated process by now)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        if str(self.data_dir) not in _command_line(pid):
            return None
        return pid


class HaCluster:
    """The cluster's layout on disk and on loopback: Postgres on base_port..+2, Patroni's
    REST API on base_port+100.., etcd's client and peer ports on base_port+200 and +201."""

    def __init__(self, root: Path = DEFAULT_ROOT, base_port: int = DEFAULT_BASE_PORT) -> None:
        self.root = root.resolve()
        self.base_port = base_port
        self.nodes = [
            Node(name, base_port + i, base_port + 100 + i, self.root / name)
            for i, name in enumerate(NODES)
        ]
        self.etcd_port = base_port + 200
        self.etcd_peer_port = base_port + 201
        self.logs = self.root / "logs"

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    def database_url(self, database: str = DATABASE_NAME) -> str:
        """Every node, and only a writable primary will do (libpq tries them in turn)."""
        hosts = ",".join(f"127.0.0.1:{node.pg_port}" for node in self.nodes)
        return f"postgres://{SUPERUSER}@{hosts}/{database}?target_session_attrs=read-write"

    def node_url(self, name: str, database: str = DATABASE_NAME) -> str:
        """One node only, whatever its role."""
        return f"postgres://{SUPERUSER}@127.0.0.1:{self.node(name).pg_port}/{database}"

    # -- starting and stopping ------------------------------------------------------

    def start(self, timeout: float = 90.0) -> str:
        """Start etcd and every node that is not running, wait for a primary with a
        synchronous standby, create the database; return the DATABASE_URL."""
        self._prepare()
        if not self._alive("etcd"):
            self._start_etcd()
        for node in self.nodes:
            if not self._alive(node.name):
                self.start_node(node.name)
        self.wait_until_healthy(timeout)
        self._create_database()
        return self.database_url()

    def stop(self) -> None:
        """Stop every node (Patroni stops its Postgres), then etcd."""
        for node in self.nodes:
            self._terminate(node.name)
        for node in self.nodes:
            self._wait_gone(node.name, 30)
            pid = node.postmaster_pid()
            if pid is not None:
                _kill_group(os.getpgid(pid), signal.SIGKILL)
        self._terminate("etcd")
        self._wait_gone("etcd", 10)

    def destroy(self) -> None:
        """Stop everything and remove the data (the soak starts from nothing)."""
        if self.root.exists():
            self.stop()
            shutil.rmtree(self.root)

    def start_node(self, name: str) -> None:
        """Start (or restart) one node's Patroni; it starts and follows its Postgres.
        A node whose Postgres was a primary that failed is rewound and rejoins."""
        node = self.node(name)
        config = self.root / f"{name}.yml"
        # YAML is a superset of JSON.
        config.write_text(json.dumps(self._patroni_config(node), indent=2))
        embedded_postgres.chown_for_server(config)
        self._spawn(name, [str(_venv_bin("patroni")), str(config)], as_server=True)

    def kill_node(self, name: str) -> None:
        """Like the machine dying: SIGKILL Patroni's process group and the postmaster's
        (Patroni starts Postgres in a session of its own). The kernel closes their sockets,
        so clients see a reset at once, not the silence of a vanished host."""
        node = self.node(name)
        postmaster = node.postmaster_pid()
        pid = self._pid(name)
        if pid is not None:
            _kill_group(pid, signal.SIGKILL)
        if postmaster is not None:
            _kill_group(os.getpgid(postmaster), signal.SIGKILL)
        self._wait_gone(name, 10)

    # -- asking Patroni -------------------------------------------------------------

    def members(self) -> list[dict[str, Any]]:
        """Patroni's view of the cluster, from any node whose REST API answers."""
        for node in self.nodes:
            try:
                reply = requests.get(f"{node.api}/cluster", timeout=1)
                if reply.ok:
                    members: list[dict[str, Any]] = reply.json().get("members", [])
                    return members
            except requests.RequestException:
                continue
        return []

    def primary(self) -> str | None:
        """The node Patroni calls leader and that runs, if any."""
        for member in self.members():
            if member.get("role") == "leader" and member.get("state") == "running":
                return str(member["name"])
        return None

    def healthy(self) -> bool:
        """A running primary and every other node streaming, one of them synchronous."""
        members = self.members()
        if len(members) != len(self.nodes) or self.primary() is None:
            return False
        standbys = [m for m in members if m.get("role") != "leader"]
        return all(m.get("state") == "streaming" for m in standbys) and any(
            m.get("role") == "sync_standby" for m in standbys
        )

    def wait_until_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                raise HaUnavailable(
                    f"the HA cluster did not become healthy in {timeout:g}s: {self.members()}; "
                    f"logs in {self.logs}"
                )
            time.sleep(0.25)

    def switchover(self, candidate: str | None = None) -> None:
        """A planned switchover: Patroni demotes the primary and promotes a standby."""
        leader = self.primary()
        if leader is None:
            raise HaUnavailable("no primary to switch over from")
        body: dict[str, str] = {"leader": leader}
        if candidate:
            body["candidate"] = candidate
        reply = requests.post(f"{self.node(leader).api}/switchover", json=body, timeout=30)
        if not reply.ok:
            raise HaUnavailable(f"switchover refused: {reply.status_code} {reply.text}")

    def patronictl(self, *args: str) -> subprocess.CompletedProcess[str]:
        config = self.root / f"{self.nodes[0].name}.yml"
        return subprocess.run(
            [str(_venv_bin("patronictl")), "-c", str(config), *args],
            capture_output=True,
            text=True,
        )

    # -- internals ------------------------------------------------------------------

    def _prepare(self) -> None:
        if shutil.which("etcd") is None:
            raise HaUnavailable(
                "etcd is not installed: `make ha` installs Debian's etcd-server "
                "(apt-get install etcd-server)"
            )
        if not _venv_bin("patroni").exists():
            raise HaUnavailable("Patroni is not installed: pip install -e '.[ha]' (make ha)")
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.root / "pids").mkdir(exist_ok=True)
        if os.geteuid() == 0:
            embedded_postgres.server_user()  # creates the server's user
            embedded_postgres.make_traversable(self.root)
            # Patroni runs on this virtualenv's interpreter, which may live under /root.
            for path in (Path(sys.executable), Path(os.path.realpath(sys.executable))):
                _make_reachable(path)
            embedded_postgres.chown_for_server(self.root)
            embedded_postgres.chown_for_server(self.logs)

    def _start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        self._spawn(
            "etcd",
            [
                "etcd",
                "--name=ha",
                f"--data-dir={self.root / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=ha={peer}",
                "--log-level=warn",
            ],
            as_server=False,
        )
        deadline = time.monotonic() + 30
        while True:
            if not self._alive("etcd"):
                raise HaUnavailable(
                    f"etcd exited (is port {self.etcd_port} taken?); see {self.logs / 'etcd.log'}"
                )
            try:
                if requests.get(f"{client}/health", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise HaUnavailable(f"etcd did not start; see {self.logs / 'etcd.log'}")
            time.sleep(0.1)

    def _patroni_config(self, node: Node) -> dict[str, Any]:
        sockets = self.root / f"{node.name}-socket"
        sockets.mkdir(exist_ok=True)
        embedded_postgres.chown_for_server(sockets)
        return {
            "scope": SCOPE,
            "name": node.name,
            "log": {"level": "INFO"},
            "restapi": {
                "listen": f"127.0.0.1:{node.api_port}",
                "connect_address": f"127.0.0.1:{node.api_port}",
            },
            "etcd3": {"hosts": [f"127.0.0.1:{self.etcd_port}"]},
            "bootstrap": {
                "dcs": {
                    "ttl": TTL,
                    "loop_wait": LOOP_WAIT,
                    "retry_timeout": RETRY_TIMEOUT,
                    # Only a standby that has every acknowledged commit may be promoted.
                    "synchronous_mode": True,
                    "synchronous_mode_strict": True,
                    "synchronous_node_count": 1,
                    "maximum_lag_on_failover": 1048576,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "use_slots": True,
                        "parameters": POSTGRES_PARAMETERS,
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, "data-checksums"],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{node.pg_port}",
                "connect_address": f"127.0.0.1:{node.pg_port}",
                "data_dir": str(node.data_dir),
                "bin_dir": str(embedded_postgres.bin_path()),
                "pgpass": str(self.root / f"{node.name}.pgpass"),
                "pg_hba": PG_HBA,
                "authentication": {
                    "superuser": {"username": SUPERUSER, "password": "postgres"},
                    "replication": {"username": "replicator", "password": "replicator"},
                    "rewind": {"username": "rewinder", "password": "rewinder"},
                },
                "parameters": {"unix_socket_directories": str(sockets)},
            },
        }

    def _create_database(self) -> None:
        admin = self.database_url("postgres")
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')

    def _spawn(self, name: str, argv: list[str], *, as_server: bool) -> None:
        log = open(self.logs / f"{name}.log", "a")
        as_user: dict[str, Any] = {}
        env = dict(os.environ)
        if as_server and os.geteuid() == 0:
            entry = pwd.getpwnam(embedded_postgres.SYSTEM_USER)
            as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            env["HOME"] = str(self.root)
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.root,
            env=env,
            **as_user,
        )
        log.close()
        # The start time tells this process from a later one that got the same pid.
        (self.root / "pids" / f"{name}.pid").write_text(f"{proc.pid} {_start_time(proc.pid)}")

    def _pid(self, name: str) -> int | None:
        """The pid of the process we started as `name`, while it runs."""
        try:
            pid, started = (self.root / "pids" / f"{name}.pid").read_text().split()
        except (OSError, ValueError):
            return None
        try:
            os.waitpid(int(pid), os.WNOHANG)  # reap it if it is our child and has exited
        except ChildProcessError:
            pass
        if _start_time(int(pid)) != started or _is_zombie(int(pid)):
            return None
        return int(pid)

    def _alive(self, name: str) -> bool:
        return self._pid(name) is not None

    def _terminate(self, name: str) -> None:
        pid = self._pid(name)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _wait_gone(self, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (pid := self._pid(name)) is not None:
            if time.monotonic() > deadline:
                _kill_group(pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        (self.root / "pids" / f"{name}.pid").unlink(missing_ok=True)


def _kill_group(pid: int, sig: signal.Signals) -> None:
    if pid == os.getpgrp():
        raise RuntimeError("refusing to signal our own process group")
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _proc_stat(pid: int) -> list[str]:
    """/proc/<pid>/stat's fields after the command name (state first)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _start_time(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return fields[19] if len(fields) > 19 else None  # field 22 of stat: starttime


def _is_zombie(pid: int) -> bool:
    fields = _proc_stat(pid)
    return bool(fields) and fields[0] == "Z"


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _venv_bin(name: str) -> Path:
    return Path(sys.executable).parent / name


def _make_reachable(path: Path) -> None:
    """Let the server's user reach `path` (this virtualenv's interpreter, which may live
    under /root): search permission on every directory above it, nothing more."""
    for directory in path.parents:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(mode | stat.S_IXOTH)


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "start"
    cluster = HaCluster()
    try:
        if command == "start":
            print(cluster.start())
        elif command == "stop":
            cluster.stop()
        elif command == "url":
            print(cluster.database_url())
        elif command == "status":
            result = cluster.patronictl("list")
            print(result.stdout or result.stderr, end="")
            return result.returncode
        else:
            print(f"unknown command {command!r}: start | stop | status | url", file=sys.stderr)
            return 2
    except HaUnavailable as exc:
        print(f"ha_cluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
