"""The support staff's admin (`gunicorn brokerage.wsgi --env
DJANGO_SETTINGS_MODULE=settings.admin`): the same settings, serving only the admin and the
health check, in a process of its own so that hashing staff passwords (slow on purpose)
never competes with customers' placements."""

from settings.base import *  # noqa: F403

ROOT_URLCONF = "brokerage.admin_urls"
# Staff sessions, never the customers' (settings.base): neither cookie means anything to
# the other's process.
SESSION_COOKIE_NAME = "brokerage_staff_session"
