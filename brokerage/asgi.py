"""The ASGI application: the event stream server (`uvicorn brokerage.asgi:application`
with DJANGO_SETTINGS_MODULE=settings.stream; see events.stream). Websockets at /stream
are Alpaca's trade_updates (alpaca_compat.stream); everything else is Django's."""

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.stream")

django_application = get_asgi_application()

from alpaca_compat.stream import trade_updates  # noqa: E402 - needs Django set up


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        if scope["path"].rstrip("/") == "/stream":
            await trade_updates(scope, receive, send)
        else:
            await send({"type": "websocket.close", "code": 1008})
        return
    await django_application(scope, receive, send)
