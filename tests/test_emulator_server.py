"""serve_asgi: hypercorn on a real loopback socket, from asyncio and from trio."""

from __future__ import annotations

import json
import logging

import anyio
import httpx
import pytest

from akool_async._serve import Receive, Scope, Send, serve_asgi

# Real sockets need real time: these tests run on plain loops, not the virtual clocks.
pytestmark = pytest.mark.real_time


class PathEcho:
    """An ASGI app answering every HTTP request with its path as JSON; records scope types."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay
        self.scope_types: list[str] = []
        self.request_started = anyio.Event()

    async def __call__(self, scope: Scope, _receive: Receive, send: Send) -> None:
        self.scope_types.append(scope["type"])
        if scope["type"] != "http":
            return
        self.request_started.set()
        await anyio.sleep(self.delay)
        body = json.dumps({"path": scope["path"]}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class LifespanAware(PathEcho):
    """PathEcho that also speaks the lifespan protocol and records its messages."""

    def __init__(self) -> None:
        super().__init__()
        self.lifespan_messages: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await super().__call__(scope, receive, send)
            return
        self.scope_types.append("lifespan")
        while True:
            message = await receive()
            self.lifespan_messages.append(message["type"])
            await send({"type": f"{message['type']}.complete"})
            if message["type"] == "lifespan.shutdown":
                return


@pytest.mark.anyio
async def test_serves_requests_on_the_reported_port() -> None:
    """Port 0 picks a free port; the yielded URL names it and requests reach the app."""
    app = PathEcho()
    async with serve_asgi(app) as url, httpx.AsyncClient() as client:
        response = await client.get(f"{url}/api/hello?x=1")

    port = httpx.URL(url).port
    assert port is not None
    assert port > 0
    assert "http://127.0.0.1" == f"{httpx.URL(url).scheme}://{httpx.URL(url).host}"
    assert 200 == response.status_code
    assert {"path": "/api/hello"} == response.json()


@pytest.mark.anyio
async def test_port_refuses_connections_after_exit() -> None:
    """Leaving the block closes the listening socket."""
    async with serve_asgi(PathEcho()) as url, httpx.AsyncClient() as client:
        assert 200 == (await client.get(f"{url}/")).status_code

    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{url}/")


@pytest.mark.anyio
async def test_two_servers_get_different_ports() -> None:
    """Two servers at once each get their own port and their own app."""
    first_app, second_app = PathEcho(), PathEcho()
    async with (
        serve_asgi(first_app) as first,
        serve_asgi(second_app) as second,
        httpx.AsyncClient() as client,
    ):
        first_response = await client.get(f"{first}/one")
        second_response = await client.get(f"{second}/two")

    assert httpx.URL(first).port != httpx.URL(second).port
    assert {"path": "/one"} == first_response.json()
    assert {"path": "/two"} == second_response.json()
    assert ["http"] == first_app.scope_types
    assert ["http"] == second_app.scope_types


@pytest.mark.anyio
async def test_busy_port_raises_oserror() -> None:
    """Asking for a port another server holds fails at once with OSError."""
    async with serve_asgi(PathEcho()) as url:
        port = httpx.URL(url).port
        assert port is not None
        with pytest.raises(OSError):
            async with serve_asgi(PathEcho(), port=port):
                pass


@pytest.mark.anyio
async def test_caller_error_comes_out_unwrapped() -> None:
    """An error raised in the block propagates as itself, not inside an ExceptionGroup."""
    with pytest.raises(LookupError, match="from the block"):
        async with serve_asgi(PathEcho()):
            raise LookupError("from the block")


@pytest.mark.anyio
async def test_cancelling_the_block_stops_the_server() -> None:
    """A cancel scope around the block ends it, and the server with it."""
    urls: list[str] = []
    with anyio.move_on_after(0.2) as scope:
        async with serve_asgi(PathEcho()) as url:
            urls.append(url)
            await anyio.sleep_forever()

    assert scope.cancelled_caught
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{urls[0]}/")


@pytest.mark.anyio
async def test_request_in_flight_finishes_at_shutdown() -> None:
    """A request still running when the block ends gets its graceful moment to answer."""
    app = PathEcho(delay=0.2)
    responses: list[httpx.Response] = []
    # The server leaves first; the task group then waits for the request it was answering.
    async with (
        httpx.AsyncClient() as client,
        anyio.create_task_group() as task_group,
        serve_asgi(app) as url,
    ):

        async def request() -> None:
            responses.append(await client.get(f"{url}/slow"))

        task_group.start_soon(request)
        await app.request_started.wait()

    assert [200] == [response.status_code for response in responses]
    assert {"path": "/slow"} == responses[0].json()


@pytest.mark.anyio
async def test_app_never_sees_lifespan_by_default(caplog: pytest.LogCaptureFixture) -> None:
    """Without lifespan=True the app gets only HTTP scopes and nothing is logged as a problem."""
    app = PathEcho()
    with caplog.at_level(logging.DEBUG, logger="akool_async.server"):
        async with serve_asgi(app) as url, httpx.AsyncClient() as client:
            await client.get(f"{url}/")

    assert ["http"] == app.scope_types
    assert [] == [record for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.mark.anyio
async def test_lifespan_reaches_the_app_when_asked() -> None:
    """With lifespan=True the app answers startup before serving and shutdown after."""
    app = LifespanAware()
    async with serve_asgi(app, lifespan=True) as url, httpx.AsyncClient() as client:
        assert ["lifespan.startup"] == app.lifespan_messages
        await client.get(f"{url}/")

    assert ["lifespan.startup", "lifespan.shutdown"] == app.lifespan_messages
    assert ["lifespan", "http"] == app.scope_types
