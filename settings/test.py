"""Test settings: the same real Postgres, fast hashing, and relaxed durability."""

import os

os.environ.setdefault("DEBUG", "true")

from settings.base import *  # noqa: E402,F403
from settings.base import DATABASES  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Losing the last commits on a crash is fine for a throwaway test database.
DATABASES["default"]["OPTIONS"]["options"] += " -c synchronous_commit=off"
DATABASES["default"]["CONN_MAX_AGE"] = 0
PLACE_TRADE_RATE = 1000.0
PLACE_TRADE_BURST = 1000.0
EXCHANGE_WEBHOOK_SECRETS = ["whsec_dGVzdC1vbmx5LWV4Y2hhbmdlLXNlY3JldC0wMDAwMDA="]
EXCHANGE_URL = "http://exchange.test"
