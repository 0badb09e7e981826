"""The exchange's callback receiver (`gunicorn brokerage.wsgi --env
DJANGO_SETTINGS_MODULE=settings.callbacks`): the same settings, but only the callback and
the health check are served, with none of the customer API's sessions, cookies,
CSRF or admin. The port the exchange can reach exposes nothing else."""

from settings.base import *  # noqa: F403

ROOT_URLCONF = "brokerage.callback_urls"
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "brokerage.middleware.RequestBodyLimitMiddleware",
]
