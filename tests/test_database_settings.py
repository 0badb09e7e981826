"""A DATABASE_URL naming several hosts (a Patroni cluster): Django's sessions and our own
dedicated ones try every host and settle only for a writable primary, and every session
notices a dead peer within seconds."""

import json
import os
import subprocess
import sys

from devtools.paths import REPO_ROOT

SHOW = (
    "import json; from django.db import connection; "
    "from outbox.connections import connection_kwargs; "
    "s = connection.settings_dict; "
    "print(json.dumps({'host': s['HOST'], 'port': s['PORT'], 'options': s['OPTIONS'], "
    "'dedicated': connection_kwargs()}, default=str))"
)
CLUSTER = "postgres://broker@10.0.0.1:5432,10.0.0.2:5432,10.0.0.3:6432/brokerage"


def with_database_url(url: str, code: str) -> subprocess.CompletedProcess:
    """`code` run after Django's set-up in a process of its own, on DATABASE_URL=`url`."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=REPO_ROOT,
        env={
            **env,
            "DJANGO_SETTINGS_MODULE": "settings.base",
            "DEBUG": "true",
            "DATABASE_URL": url,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def database_settings(url: str) -> dict:
    result = with_database_url(url, SHOW)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_several_hosts_are_tried_in_turn_and_only_a_writable_primary_will_do():
    found = database_settings(CLUSTER)
    assert found["host"] == "10.0.0.1,10.0.0.2,10.0.0.3"
    assert found["port"] == "5432,5432,6432"
    assert found["options"]["target_session_attrs"] == "read-write"
    dedicated = found["dedicated"]
    assert (dedicated["host"], dedicated["port"]) == (found["host"], found["port"])
    assert dedicated["target_session_attrs"] == "read-write"


def test_the_url_may_ask_for_a_session_attribute_of_its_own():
    found = database_settings(CLUSTER + "?target_session_attrs=primary")
    assert found["options"]["target_session_attrs"] == "primary"
    assert found["dedicated"]["target_session_attrs"] == "primary"


def test_one_host_is_left_as_it_is():
    found = database_settings("postgres://broker@db.internal:5432/brokerage")
    assert "target_session_attrs" not in found["options"]


def test_every_session_notices_a_dead_peer_within_seconds():
    found = database_settings(CLUSTER)
    for options in (found["options"], found["dedicated"]):
        assert options["connect_timeout"] == 5
        assert options["keepalives"] == 1
        idle, every, count = (
            options["keepalives_idle"],
            options["keepalives_interval"],
            options["keepalives_count"],
        )
        assert idle + every * count <= 15
        assert options["tcp_user_timeout"] == 10_000


def test_a_url_with_ports_for_only_some_hosts_is_refused():
    result = with_database_url("postgres://broker@10.0.0.1,10.0.0.2:5433/brokerage", "")
    assert result.returncode != 0
    assert "give every host its port" in result.stderr
