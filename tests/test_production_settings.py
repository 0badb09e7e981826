"""Outside development: no debug, no default secret, no host answered unless named, no
database but the one configured, cookies over HTTPS only."""

import os
import subprocess
import sys

from devtools.paths import REPO_ROOT

SHOW = (
    "from django.conf import settings; "
    "print(settings.DEBUG, settings.ALLOWED_HOSTS, settings.EXCHANGE_WEBHOOK_SECRETS, "
    "settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE)"
)
# Only parsed: settings never connect.
SOME_DATABASE = "postgres://broker@db.internal:5432/brokerage"
UNSET = {"DEBUG", "SECRET_KEY", "DATABASE_URL", "PLACE_TRADE_RATE", "PLACE_TRADE_BURST"}


def settings_of(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in UNSET}
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {SHOW}"],
        cwd=REPO_ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "settings.base", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_without_a_secret_key_the_process_refuses_to_start():
    result = settings_of(DATABASE_URL=SOME_DATABASE)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_without_a_database_url_the_process_refuses_to_start():
    result = settings_of(SECRET_KEY="from-the-environment")
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr
    assert "ImproperlyConfigured" in result.stderr


def test_by_default_debug_is_off_no_host_or_callback_is_accepted_and_cookies_need_https():
    result = settings_of(SECRET_KEY="from-the-environment", DATABASE_URL=SOME_DATABASE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False [] [] True True"


def test_a_rate_limit_that_would_refuse_everything_is_refused_at_start():
    result = settings_of(
        SECRET_KEY="from-the-environment", DATABASE_URL=SOME_DATABASE, PLACE_TRADE_RATE="0"
    )
    assert result.returncode != 0
    assert "PLACE_TRADE_RATE" in result.stderr
