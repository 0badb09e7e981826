"""The ASGI application: the event stream server (`uvicorn brokerage.asgi:application`
with DJANGO_SETTINGS_MODULE=settings.stream; see events.stream)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.stream")

application = get_asgi_application()
