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
# None: Django's own middleware would run on a thread for every stream opened (they are
# sync at heart), and a stream needs none of them (it builds no URL from the Host header,
# sets no cookie, renders no page).
MIDDLEWARE = []
SILENCED_SYSTEM_CHECKS = ["security.W003"]
