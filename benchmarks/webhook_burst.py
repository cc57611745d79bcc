"""Real time: a burst of concurrent webhook deliveries, and how many senders see their 200.

Run from the repository root::

    python benchmarks/webhook_burst.py                   # 1,000 deliveries, 20 senders
    python benchmarks/webhook_burst.py --deliveries 3000 # a bigger burst
    python benchmarks/webhook_burst.py --help

One JSON document goes to stdout; progress notes go to stderr.

Akool POSTs a callback per job and status and delivers again whatever is not answered 200, so
a burst that loses answers multiplies the load when it is highest. Each phase sends
``--deliveries`` genuine, signed and encrypted callbacks (distinct jobs) all at once over real
loopback sockets, one connection each, from ``--senders`` ``httpx.AsyncClient`` s that split the
connections between them (one client with 1,000 connections spends about 23 s of CPU in its
own pool, which would measure httpx, not the server). Servers, side by side, on both loops:

* ``hypercorn_backlog_128``: the serving helper as it was, hypercorn with a listen backlog of
  128, serving a `WebhookReceiver` (the ``before`` figure);
* ``session_listener``: an ``AkoolSession(webhook_listen=("127.0.0.1", 0))`` as users open it,
  receiving at ``session.webhook_url`` (the serving helper as it is now);
* ``uvicorn`` (asyncio only, and only if uvicorn is installed; it is no dependency of the
  package): uvicorn with its defaults (backlog 2048) serving the same receiver.

Each phase reports the senders' outcomes (HTTP 200, or the error they saw), how many callbacks
the receiver handed on, and the wall time from the first send to the last answer.
"""

from __future__ import annotations

import argparse
import collections
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any, Final

import anyio
import httpx
from _common import environment, note, print_json

import akool_async as ak
from akool_async._serve import serve_asgi
from akool_async._webhook_crypto import make_envelope
from akool_async.webhooks import WebhookEvent, WebhookReceiver, WebhookVerifier

CLIENT_ID: Final = "burst-client-id"
CLIENT_SECRET: Final = "burst-secret-of-24-bytes"  # noqa: S105 - a made-up test account
OLD_BACKLOG: Final = 128

Server = Callable[[], AbstractAsyncContextManager[tuple[str, WebhookReceiver]]]


def bodies(count: int) -> list[bytes]:
    """Genuine callbacks for ``count`` distinct jobs, stamped now."""
    now_ms = int(time.time() * 1000)
    return [
        httpx.Request(
            "POST",
            "http://x",
            json=make_envelope(
                {"_id": f"{n:024x}", "status": 3, "type": "image", "url": f"https://x/{n}.png"},
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                timestamp_ms=now_ms,
                nonce=str(n),
            ),
        ).content
        for n in range(count)
    ]


def receiver() -> WebhookReceiver:
    events: list[WebhookEvent] = []
    return WebhookReceiver(WebhookVerifier(CLIENT_ID, CLIENT_SECRET), events.append)


@asynccontextmanager
async def hypercorn_backlog_128() -> AsyncIterator[tuple[str, WebhookReceiver]]:
    app = receiver()
    async with serve_asgi(app, backlog=OLD_BACKLOG) as url:
        yield f"{url}/akool/webhook", app


@asynccontextmanager
async def session_listener() -> AsyncIterator[tuple[str, WebhookReceiver]]:
    async with ak.AkoolSession(
        api_key="unused", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        webhook_listen=("127.0.0.1", 0),
    ) as session:  # fmt: skip
        url = session.listening_url
        if url is None:
            raise RuntimeError("the session is not listening")
        yield url, session.webhook_app


@asynccontextmanager
async def uvicorn_server() -> AsyncIterator[tuple[str, WebhookReceiver]]:
    import asyncio  # noqa: PLC0415 - uvicorn runs on asyncio only

    import uvicorn  # noqa: PLC0415 - optional, for comparison only

    app = receiver()
    config = uvicorn.Config(app, lifespan="off", log_level="warning")
    sock = socket.create_server(("127.0.0.1", 0), backlog=config.backlog)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await anyio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/akool/webhook", app
    finally:
        server.should_exit = True
        await task
        sock.close()


async def burst(server: Server, deliveries: int, senders: int) -> dict[str, Any]:
    """Send every delivery at once; what the senders saw and what the receiver handed on."""
    payloads = bodies(deliveries)
    outcomes: collections.Counter[str] = collections.Counter()
    per_sender = -(-deliveries // senders)
    limits = httpx.Limits(max_connections=per_sender, max_keepalive_connections=per_sender)
    clients = [httpx.AsyncClient(limits=limits, timeout=60) for _ in range(senders)]
    async with server() as (url, app):

        async def deliver(client: httpx.AsyncClient, body: bytes) -> None:
            try:
                response = await client.post(url, content=body)
            except httpx.HTTPError as error:
                outcomes[type(error).__name__] += 1
            else:
                outcomes[f"HTTP {response.status_code}"] += 1

        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for index, body in enumerate(payloads):
                group.start_soon(deliver, clients[index % senders], body)
        wall = time.perf_counter() - started
        for client in clients:
            await client.aclose()
        processed = app.accepted
    return {
        "deliveries": deliveries,
        "success_share": outcomes["HTTP 200"] / deliveries,
        "outcomes": dict(sorted(outcomes.items())),
        "processed": processed,
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--deliveries", type=int, default=1000, help="callbacks at once (1000)")
    parser.add_argument("--senders", type=int, default=20, help="httpx clients sharing them (20)")
    arguments = parser.parse_args()
    servers: dict[str, Server] = {
        "hypercorn_backlog_128": hypercorn_backlog_128,
        "session_listener": session_listener,
    }
    try:
        import uvicorn  # noqa: F401, PLC0415 - only: is it installed?
    except ImportError:
        note("uvicorn is not installed: its phase is left out")
    else:
        servers["uvicorn"] = uvicorn_server
    results: dict[str, dict[str, Any]] = {}
    for name, server in servers.items():
        for backend in ("asyncio", "trio"):
            if name == "uvicorn" and backend == "trio":
                continue
            run = partial(burst, server, arguments.deliveries, arguments.senders)
            result = anyio.run(run, backend=backend)
            results[f"{name}/{backend}"] = result
            note(
                f"[{name}/{backend}] {result['success_share']:.1%} answered 200, "
                f"{result['processed']} processed, {result['wall_s']:.2f} s"
            )
    print_json(
        {
            "benchmark": "webhook_burst",
            "deliveries": arguments.deliveries,
            "senders": arguments.senders,
            "results": results,
            "environment": environment(),
        }
    )


if __name__ == "__main__":
    main()
