"""The in-process transport: httpx calls the emulator's ASGI app as if over a socket."""

from __future__ import annotations

import anyio
import httpx

from akool_async._asgi import ASGIApp
from akool_async.testing._http import EmulatedDisconnect

__all__ = ["EmulatorTransport"]


class EmulatorTransport(httpx.AsyncBaseTransport):
    """ASGITransport, but a dropped connection surfaces as httpx's own RemoteProtocolError."""

    def __init__(self, app: ASGIApp) -> None:
        self._inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # httpx enforces timeouts in its network layer, which an in-process call skips: apply
        # the read timeout here so a slow emulator answer times out as it would over a socket.
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        read_timeout = timeouts.get("read")
        try:
            with anyio.fail_after(read_timeout):
                return await self._inner.handle_async_request(request)
        except TimeoutError as exc:
            raise httpx.ReadTimeout("timed out waiting for the emulator", request=request) from exc
        except EmulatedDisconnect as exc:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body", request=request
            ) from exc

    async def aclose(self) -> None:
        await self._inner.aclose()
