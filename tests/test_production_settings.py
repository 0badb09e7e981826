"""Outside development: no debug, no default secret, no host answered unless named."""

import os
import subprocess
import sys

from brokerage.stack import REPO_ROOT

SHOW = (
    "from django.conf import settings; "
    "print(settings.DEBUG, settings.ALLOWED_HOSTS, settings.EXCHANGE_WEBHOOK_SECRETS)"
)


def settings_of(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}}
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {SHOW}"],
        cwd=REPO_ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "settings.base", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_without_a_secret_key_the_process_refuses_to_start():
    result = settings_of()
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_by_default_debug_is_off_and_no_host_or_callback_is_accepted():
    result = settings_of(SECRET_KEY="from-the-environment")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False [] []"
