"""The few ASGI pieces the emulator and its server share: types, and answering lifespan."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

__all__ = ["ASGIApp", "Receive", "Scope", "Send", "answer_lifespan"]

Scope: TypeAlias = MutableMapping[str, Any]
"""An ASGI connection scope."""
Receive: TypeAlias = Callable[[], Awaitable[MutableMapping[str, Any]]]
"""The ASGI ``receive`` callable."""
Send: TypeAlias = Callable[[MutableMapping[str, Any]], Awaitable[None]]
"""The ASGI ``send`` callable."""
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI 3 application: ``await app(scope, receive, send)``."""


async def answer_lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge a lifespan scope's startup and shutdown; there is nothing to start."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
