"""The event stream server (`uvicorn brokerage.asgi:application`, events.stream): the
same settings, serving only the customers' event streams, its health and its metrics.
Authentication is the API key's alone: no sessions, cookies, CSRF or admin."""

from settings.base import *  # noqa: F403
from settings.base import INSTALLED_APPS

ROOT_URLCONF = "events.stream_urls"
INSTALLED_APPS = [
    app
    for app in INSTALLED_APPS
    if app
    not in {"django.contrib.admin", "django.contrib.sessions", "django.contrib.messages", "axes"}
]
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
# Each is async-capable: a stream's request never leaves the event loop for a thread.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Checks the Host header against ALLOWED_HOSTS, as the customer API does.
    "django.middleware.common.CommonMiddleware",
]
SILENCED_SYSTEM_CHECKS = ["security.W003"]
