"""Serve an ASGI app with hypercorn on a real loopback socket, from asyncio or trio alike.

Used by the emulator (extra `emulator`) and the webhook receiver (extra `webhooks`)."""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Final, Literal, cast

import anyio
import anyio.abc
from hypercorn.config import Config, Sockets
from hypercorn.typing import ASGIFramework

from akool_async._asgi import ASGIApp, Receive, Scope, Send, answer_lifespan

__all__ = ["BACKLOG", "ASGIApp", "Receive", "Scope", "Send", "serve_asgi"]

logger = logging.getLogger("akool_async.server")

READ_TIMEOUT: Final = 10
"""Seconds a served connection may send nothing before it is closed (hypercorn's
``read_timeout``), so an idle or half-sent request does not hold a socket forever."""
GRACEFUL_TIMEOUT: Final = 1.0
"""Seconds open requests get to finish at shutdown before they are cancelled."""

BACKLOG: Final = 4096
"""Connections the kernel may hold for the server before it accepts them (capped by the
system's own limit, ``net.core.somaxconn``: 4096 on Linux since 5.4, 128 on macOS).

A burst of callbacks arrives faster than one event loop accepts connections. With 128 (Python's
default, which this used to be), 1,000 concurrent deliveries overflowed the queues: Linux
answered with SYN cookies, dropped the handshakes it had no room to accept, then reset them,
so 13-61 % of the senders saw their connection reset (and Akool would deliver again exactly
when it is busiest). With 4096 none did, on asyncio and trio; see
``benchmarks/webhook_burst.py``. A waiting connection costs the kernel a few hundred bytes;
uvicorn and gunicorn use 2048.
"""


class _PreboundConfig(Config):
    """A hypercorn config that serves one socket we bound ourselves.

    Binding it here, rather than through ``Config.bind``, is what lets port 0 work: we learn the
    real port before the server starts. Hypercorn takes ownership of the socket object (its
    listener closes it); there is no second file descriptor that could be closed twice.
    """

    def __init__(self, sock: socket.socket, on_listening: Callable[[], None]) -> None:
        super().__init__()
        self._socket = sock
        self._on_listening = on_listening

    def create_sockets(self) -> Sockets:
        # Both hypercorn workers call this once, after lifespan startup and right before they
        # accept: the one moment that means "serving" on either backend.
        self._on_listening()
        return Sockets(secure_sockets=[], insecure_sockets=[self._socket], quic_sockets=[])


def _running_backend() -> Literal["asyncio", "trio"]:
    """Name the event loop running this task, without sniffio (anyio no longer requires it)."""
    trio = sys.modules.get("trio")
    if trio is not None:
        # No trio import means no trio loop; if trio is imported, ask it directly.
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            pass
        else:
            return "trio"
    import asyncio  # noqa: PLC0415 - only to ask whether an asyncio loop runs this task

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return "asyncio"
    raise RuntimeError("serve_asgi must be called from an asyncio or trio event loop")


def _without_lifespan(app: ASGIApp) -> ASGIApp:
    """Wrap ``app`` so hypercorn's lifespan scope never reaches it.

    Hypercorn always runs a lifespan scope, and its two backends disagree on apps that ignore
    it: hypercorn.asyncio accepts an app that just returns, but hypercorn.trio then fails to
    start (``trio.ClosedResourceError`` on sending ``lifespan.startup``), and an app that raises
    gets a warning logged on both. So the wrapper speaks the protocol itself.
    """

    async def app_without_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        await answer_lifespan(receive, send)

    return app_without_lifespan


def _listening_socket(family: int, address: tuple[Any, ...], backlog: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if sys.platform != "win32":
            # Lets a test restart on the port it just used; on Windows this would instead let
            # two servers share a port, so it stays off there.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)  # noqa: FBT003 - the socket API's own signature
    except BaseException:
        sock.close()
        raise
    return sock


def _base_url(sock: socket.socket) -> str:
    host, port = cast("tuple[str, int]", sock.getsockname()[:2])
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _config(sock: socket.socket, on_listening: Callable[[], None], backlog: int) -> Config:
    config = _PreboundConfig(sock, on_listening)
    # Hypercorn listens on the socket again with this (asyncio's start_server, trio's run).
    config.backlog = backlog
    config.accesslog = None
    # A Logger instance is used as is: no handler of hypercorn's own, so errors and warnings
    # reach the application's logging setup, and the "Running on ..." line stays at INFO.
    config.errorlog = logger
    config.graceful_timeout = GRACEFUL_TIMEOUT
    # A connection that sends nothing for this long is closed: no idle socket is held forever.
    config.read_timeout = READ_TIMEOUT
    return config


async def _hypercorn_serve(
    backend: Literal["asyncio", "trio"],
    app: ASGIApp,
    config: Config,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
) -> None:
    # Hypercorn types apps with its own TypedDict scopes and events; ours are the plain
    # mappings of the ASGI spec, which is what hypercorn actually passes. Its `serve` also
    # accepts WSGI apps, typed with a bare `dict`: hence the "partially unknown" ignores.
    framework = cast("ASGIFramework", app)
    if backend == "trio":
        import hypercorn.trio  # noqa: PLC0415 - needs trio, which asyncio users may not have

        await hypercorn.trio.serve(  # pyright: ignore[reportUnknownMemberType]
            framework, config, shutdown_trigger=shutdown_trigger, mode="asgi"
        )
    else:
        import hypercorn.asyncio  # noqa: PLC0415 - imported where used, like the trio one

        await hypercorn.asyncio.serve(  # pyright: ignore[reportUnknownMemberType]
            framework, config, shutdown_trigger=shutdown_trigger, mode="asgi"
        )


async def _run_server(
    backend: Literal["asyncio", "trio"],
    app: ASGIApp,
    sock: socket.socket,
    shutdown: anyio.Event,
    backlog: int,
    *,
    task_status: anyio.abc.TaskStatus[None],
) -> None:
    config = _config(sock, task_status.started, backlog)
    await _hypercorn_serve(backend, app, config, shutdown_trigger=shutdown.wait)


@contextlib.asynccontextmanager
async def serve_asgi(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    lifespan: bool = False,
    backlog: int = BACKLOG,
) -> AsyncGenerator[str, None]:
    """Serve an ASGI app with hypercorn on a real socket, for as long as the block runs.

    Works from asyncio and from trio: the running event loop picks ``hypercorn.asyncio`` or
    ``hypercorn.trio``. The socket is bound and listening before the block starts, so port 0
    gives a free port and the yielded URL names the real one. Leaving the block shuts the
    server down: requests still running get `GRACEFUL_TIMEOUT` seconds, then the socket is
    closed and connecting to the port is refused.

    ```python
    async with serve_asgi(emulator) as base_url:  # e.g. "http://127.0.0.1:54321"
        ...
    ```

    Args:
        app: The ASGI 3 application.
        host: The address to listen on; the loopback interface by default.
        port: The TCP port; 0 lets the operating system pick a free one.
        lifespan: Pass the ASGI lifespan scope on to ``app``, which must then answer
            ``lifespan.startup`` and ``lifespan.shutdown`` (under hypercorn.trio an app that
            just returns stops the server from starting). Off by default: the server answers
            them itself, so an app that only speaks HTTP needs no lifespan handling.
        backlog: Connections the kernel queues before the server accepts them; see
            `BACKLOG`. A smaller one loses connections under a burst.

    Yields:
        The server's base URL, such as ``"http://127.0.0.1:54321"``.

    Raises:
        OSError: The address could not be resolved or bound (for instance, the port is in use).
        RuntimeError: Not called from an asyncio or trio event loop.
    """
    backend = _running_backend()
    family, _, _, _, address = (
        await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    )[0]
    served_app = app if lifespan else _without_lifespan(app)
    shutdown = anyio.Event()
    sock = _listening_socket(family, address, backlog)
    body_error: Exception | None = None
    try:
        url = _base_url(sock)
        async with anyio.create_task_group() as task_group:
            await task_group.start(_run_server, backend, served_app, sock, shutdown, backlog)
            logger.debug("serving on %s (%s)", url, backend)
            try:
                yield url
            except Exception as error:  # noqa: BLE001 - re-raised below, outside the task group
                # Raised from inside the task group, the caller's own error would come back
                # wrapped in an ExceptionGroup; keep it as it was.
                body_error = error
            finally:
                shutdown.set()
    finally:
        # Hypercorn's asyncio server closes the socket as it stops, trio's listener need not,
        # and a failed start never reached either; closing twice is harmless.
        sock.close()
    if body_error is not None:
        raise body_error
