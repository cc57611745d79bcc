"""Shared fixtures: both backends in virtual time, a clean environment, a recording fake Akool."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import looptime
import pytest
import trio.testing

import akool_async as ak
from akool_async.testing import Duration, EmulatorTimings
from redis_server import RedisServer, collect_coredis_leftovers, require_redis_server

API_KEY = "test-api-key-9f8e7d"
TOKEN = "test-bearer-token-1a2b3c"
CLIENT_ID = "test-client-id"
CLIENT_SECRET = "test-client-secret-24-by"
SECRETS = (API_KEY, TOKEN, CLIENT_SECRET)
BASE_URL = "https://openapi.akool.test"

# Fixed, spread-free emulator timings, so every phase boundary is known: a grid is queued 4 s,
# renders 40 s and its quadrants follow 2 s later (46 s); an upscale takes 2 + 15 s; a variation
# 3 + 35 s, plus 2 s for its quadrants.
FIXED_TIMINGS = EmulatorTimings(
    grid_queue=Duration(4.0, 0.0),
    grid_processing=Duration(40.0, 0.0),
    upscale_queue=Duration(2.0, 0.0),
    upscale_processing=Duration(15.0, 0.0),
    variation_queue=Duration(3.0, 0.0),
    variation_processing=Duration(35.0, 0.0),
    quadrant_lag=Duration(2.0, 0.0),
)


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"loop_factory": looptime.new_event_loop}), id="asyncio"),
        pytest.param(("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Every async test runs on asyncio and trio, both in virtual time: sleeps cost nothing.

    Tests marked ``real_time`` (real sockets, worker threads, child processes, whose waits a
    virtual clock would skip past) run on plain loops instead.
    """
    backend, options = request.param
    if request.node.get_closest_marker("real_time") is not None:
        return backend, {}
    if backend == "trio":
        # A fresh clock per test, so one test's virtual hours do not leak into the next.
        options = {"clock": trio.testing.MockClock(autojump_threshold=0)}
    return backend, options


@pytest.fixture(autouse=True)
def _clean_akool_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AKOOL_* variable from the developer's shell leaks into a test."""
    for name in (
        "AKOOL_API_KEY",
        "AKOOL_TOKEN",
        "AKOOL_CLIENT_ID",
        "AKOOL_CLIENT_SECRET",
        "AKOOL_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)


Responder = Callable[[httpx.Request], httpx.Response]


def envelope(
    data: Any = None, *, code: int = 1000, msg: str = "OK", **extra: Any
) -> dict[str, Any]:
    """Akool's JSON envelope."""
    body: dict[str, Any] = {"code": code, "msg": msg}
    if data is not None:
        body["data"] = data
    body.update(extra)
    return body


class FakeAkool:
    """An httpx.MockTransport handler that records every request and answers from a script.

    ``routes`` maps a path to a list of responders, used in turn (the last one repeats). A
    responder is a callable taking the request, or an ``httpx.Response``, or an exception to raise.
    """

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.routes: dict[str, list[Any]] = {}

    def on(self, path: str, *responses: Any) -> None:
        self.routes[path] = list(responses)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        script = self.routes.get(request.url.path)
        if not script:
            return httpx.Response(404, text="no route in FakeAkool")
        step = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, httpx.Response):
            return step
        if isinstance(step, dict):
            return httpx.Response(200, json=step)
        return step(request)

    def sent(self, path: str | None = None) -> list[httpx.Request]:
        return [r for r in self.requests if path is None or r.url.path == path]

    @staticmethod
    def body(request: httpx.Request) -> Any:
        return json.loads(request.content)


@pytest.fixture
def fake() -> FakeAkool:
    return FakeAkool()


@pytest.fixture
def no_wait_retry() -> ak.RetryPolicy:
    """Retries without jitter, so the waits are exact and tests can assert them."""
    return ak.RetryPolicy(attempts=4, wait_initial=1.0, wait_max=8.0, jitter=False)


@pytest.fixture
def make_session(fake: FakeAkool, no_wait_retry: ak.RetryPolicy) -> Callable[..., ak.AkoolSession]:
    """Build a session whose HTTP goes to the FakeAkool handler."""

    def build(**kwargs: Any) -> ak.AkoolSession:
        if not any(k in kwargs for k in ("api_key", "token", "client_id")):
            kwargs["api_key"] = API_KEY
        kwargs.setdefault("retry", no_wait_retry)
        client = httpx.AsyncClient(transport=httpx.MockTransport(fake))
        return ak.AkoolSession(base_url=BASE_URL, http_client=client, **kwargs)

    return build


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real ``redis-server`` on a free loopback port, for this test alone (skipped, saying
    why, where the system has none)."""
    server = RedisServer(require_redis_server())
    server.start()
    try:
        yield server
    finally:
        server.kill()
        collect_coredis_leftovers()
