"""The exchange's callback receiver (`gunicorn brokerage.wsgi --env
DJANGO_SETTINGS_MODULE=settings.callbacks`): the same settings, but only the callback and
the health check are served, with none of the customer API's sessions, cookies, CSRF or
admin. The port the exchange can reach exposes nothing else."""

from settings.base import *  # noqa: F403
from settings.base import INSTALLED_APPS

ROOT_URLCONF = "brokerage.callback_urls"
INSTALLED_APPS = [
    app
    for app in INSTALLED_APPS
    if app
    not in {"django.contrib.admin", "django.contrib.sessions", "django.contrib.messages", "axes"}
]
# Nobody logs in here: no login lockouts to keep.
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
MIDDLEWARE = [
    # A request id, an access line and brokerage_http_requests_total, as everywhere.
    "brokerage.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "brokerage.middleware.RequestBodyLimitMiddleware",
    # Checks the Host header against ALLOWED_HOSTS, as the customer API does.
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# No cookies and no browser: the callback is authenticated by its signature alone.
SILENCED_SYSTEM_CHECKS = ["security.W003"]
