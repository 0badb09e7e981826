"""Log lines an operator can follow: one access line per request with its id, the id on
every line the request causes, a trusted proxy's id adopted, JSON on request, and no
line twice."""

import json
import logging
import os
import subprocess
import sys

import pytest
from django.test import override_settings

from brokerage.logs import JsonFormatter, RequestIdFilter, request_id_for, set_request_id
from devtools.paths import REPO_ROOT

pytestmark = pytest.mark.django_db


def test_each_request_gets_an_id_in_its_answer_and_one_access_line(client, caplog):
    caplog.set_level(logging.INFO, logger="brokerage.access")
    first = client.get("/healthz")
    second = client.get("/healthz")
    ids = [first["X-Request-ID"], second["X-Request-ID"]]
    assert len(set(ids)) == 2 and all(len(i) == 32 for i in ids)
    lines = [r for r in caplog.records if r.name == "brokerage.access"]
    assert len(lines) == 2
    assert lines[0].getMessage().startswith("event=request method=GET path=/healthz status=200")
    assert [r.request_id for r in lines] == ids


def test_a_client_cannot_choose_its_request_id_without_a_trusted_proxy(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="chosen-by-the-client")
    assert response["X-Request-ID"] != "chosen-by-the-client"


def test_a_trusted_proxys_request_id_is_adopted_if_it_is_sane():
    assert request_id_for("0123abcd", trusted=True) == "0123abcd"
    assert request_id_for("0123abcd", trusted=False) != "0123abcd"
    assert request_id_for("bad id\nwith newline", trusted=True) != "bad id\nwith newline"
    assert request_id_for("x" * 65, trusted=True) != "x" * 65


@override_settings(
    REST_FRAMEWORK={"NUM_PROXIES": 1, "EXCEPTION_HANDLER": "brokerage.errors.api_exception_handler"}
)
def test_behind_a_trusted_proxy_its_id_is_the_requests(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="from-nginx-42")
    assert response["X-Request-ID"] == "from-nginx-42"


def test_lines_inside_a_request_carry_its_id_and_json_is_one_object_a_line():
    record = logging.LogRecord("trades", logging.WARNING, __file__, 1, "event=x a=%s", ("b",), None)
    set_request_id("rid-1")
    try:
        RequestIdFilter().filter(record)
    finally:
        set_request_id(None)
    assert record.request_suffix == " request_id=rid-1"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "event=x a=b"
    assert (entry["level"], entry["logger"], entry["request_id"]) == ("WARNING", "trades", "rid-1")
    assert entry["time"].endswith("+00:00")


def run_logging(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in {"LOG_FORMAT", "DATABASE_URL"}}
    result = subprocess.run(
        [sys.executable, "-c", f"import django, logging; django.setup(); {code}"],
        cwd=REPO_ROOT,
        env={
            **clean,
            "DJANGO_SETTINGS_MODULE": "settings.base",
            "DEBUG": "true",
            "DATABASE_URL": "postgres://nobody@127.0.0.1:9/none",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_a_django_warning_is_logged_once_even_under_debug():
    err = run_logging("logging.getLogger('django.request').warning('event=once')")
    assert err.count("event=once") == 1, err


def test_log_format_json_writes_one_object_per_line():
    err = run_logging("logging.getLogger('trades').warning('event=json k=v')", LOG_FORMAT="json")
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert {"message": "event=json k=v", "logger": "trades"}.items() <= next(
        line for line in lines if line["logger"] == "trades"
    ).items()


def test_a_path_cannot_forge_a_log_line(client, caplog):
    caplog.set_level(logging.INFO, logger="brokerage.access")
    client.get("/nowhere%0A2026-01-01 INFO fake event=forged")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "brokerage.access"]
    assert "\n" not in line
    assert "path=/nowhere%0A2026-01-01%20INFO%20fake%20event%3Dforged status=404" in line
