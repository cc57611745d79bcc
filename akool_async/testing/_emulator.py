"""AkoolEmulator: an ASGI application that answers as Akool's image API does.

Faithful to the documented wire format (the ``{code, msg, data}`` envelope, field names and types,
auth precedence, business codes) and to Akool's behaviour in time (queueing -> processing ->
completed/failed, quadrants that lag status 3, buttons, 7-day URLs), with faults on demand and
accounting that lets a test assert "created exactly once" and measure detection lag.

This module routes requests and keeps the accounting; the endpoints' business logic is in
``_endpoints.py``, faults and throttling in ``_faults.py``, reading and answering over ASGI in
``_http.py`` and the in-process transport in ``_transport.py``.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import json
import math
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime
from functools import partial
from http import HTTPStatus
from typing import Any, Final

import anyio
import httpx

from akool_async._asgi import Receive, Scope, Send, answer_lifespan
from akool_async.testing._accounting import EmulatorAccounting
from akool_async.testing._akool import RESULT_LIFETIME_SECONDS, ROUTES, Code, ImageStatus
from akool_async.testing._deliveries import DeliveryPolicy, WebhookDispatcher
from akool_async.testing._endpoints import Endpoints
from akool_async.testing._errors import EmulatorConfigError
from akool_async.testing._faults import FaultInjector, answer_after_work, fail_before_work
from akool_async.testing._http import (
    Answer,
    Incoming,
    RecordedRequest,
    incoming_of,
    parse_json,
    read_body,
    recorded,
    respond,
    respond_refusal,
)
from akool_async.testing._jobs import EmulatedJob
from akool_async.testing._plan import EmulatorTimings, FaultKind, Faults, rng_for
from akool_async.testing._transport import EmulatorTransport

__all__ = [
    "ACCOUNTING_PATH",
    "TEST_API_KEY",
    "TEST_CLIENT_ID",
    "TEST_CLIENT_SECRET",
    "AkoolEmulator",
]

TEST_API_KEY: Final = "akool-emulator-api-key"
TEST_CLIENT_ID: Final = "akool-emulator-client"
TEST_CLIENT_SECRET: Final = "akool-emulator-secret-24"  # noqa: S105 - a public test value
IN_PROCESS_URL: Final = "http://akool-emulator.test"
ACCOUNTING_PATH: Final = "/_emulator/accounting"
"""Where the emulator answers `AkoolEmulator.accounting` as JSON; outside Akool's ``/api``."""
_IMAGES_PATH: Final = "/_emulator/images/"

_EXPIRED: Final = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"


class AkoolEmulator:
    """An ASGI app emulating Akool's image API, for demos, tests and benchmarks.

    Run it in-process (``httpx.AsyncClient(transport=emulator.transport(),
    base_url=emulator.base_url)``), on a real loopback socket (``async with emulator.serve() as
    url``), or from a shell (``python -m akool_async.testing``).

    Args:
        api_key: The API key it accepts in ``x-api-key``.
        client_id: The client id getToken accepts; also the webhook IV.
        client_secret: The client secret getToken accepts; also the webhook AES key.
        time_scale: Multiplies every job duration: 0.01 makes a 40 s grid take 0.4 s.
        seed: Fixes timings, faults, failures, ids and images.
        faults: Faults to inject.
        timings: Duration distributions of Akool's phases.
        credit: The account's starting balance; each create costs 2.
        overdraft: Let the balance go below zero rather than refuse a create for want of
            credit (1006): an account that serves any number of creates, each still charged
            and counted, its balance still moving by each charge.
        clock: The emulator's clock; default ``anyio.current_time``, so it runs in virtual time.
        start: The wall-clock time the clock's current reading maps to (``create_time``).
        webhooks: Delivery policy for callbacks (retries, duplicates).
        uid: The account's ``uid``.

    Raises:
        EmulatorConfigError: ``time_scale`` is not a finite number greater than 0, a credential
            is empty, or ``client_secret`` is not 16, 24 or 32 bytes in UTF-8 (the AES key of its
            webhooks).
        ImportError: The ``emulator`` extra (Pillow, hypercorn, cryptography) is not installed.
    """

    def __init__(
        self,
        api_key: str = TEST_API_KEY,
        client_id: str = TEST_CLIENT_ID,
        client_secret: str = TEST_CLIENT_SECRET,
        *,
        time_scale: float = 1.0,
        seed: int = 0,
        faults: Faults | None = None,
        timings: EmulatorTimings | None = None,
        credit: float = 10_000,
        overdraft: bool = False,
        clock: Callable[[], float] = anyio.current_time,
        start: datetime | None = None,
        webhooks: DeliveryPolicy | None = None,
        uid: int = 378337,
    ) -> None:
        _require_extra()
        _check_time_scale(time_scale)
        for name, value in (
            ("api_key", api_key),
            ("client_id", client_id),
            ("client_secret", client_secret),
        ):
            if not value:
                raise EmulatorConfigError(f"{name} must not be empty")
        self.api_key = api_key
        self.client_id = client_id
        self.time_scale = float(time_scale)
        self.seed = seed
        self.faults = faults if faults is not None else Faults()
        self.timings = timings if timings is not None else EmulatorTimings()
        self.credit = credit
        self.overdraft = overdraft
        self.uid = uid
        self._clock = clock
        self._start = start if start is not None else datetime.now(UTC)
        self._clock_zero: float | None = None
        self.jobs: dict[str, EmulatedJob] = {}
        self.requests: list[RecordedRequest] = []
        self.creates_by_prompt: collections.Counter[str] = collections.Counter()
        self.button_presses: collections.Counter[tuple[str, str]] = collections.Counter()
        self.credits_used = 0.0
        self._endpoints = Endpoints(self, client_secret)
        self._faults = FaultInjector()
        self.webhooks = WebhookDispatcher(
            client_id=client_id,
            client_secret=client_secret,
            clock=self.now,
            policy=webhooks if webhooks is not None else DeliveryPolicy(),
            rng=rng_for(seed, "webhooks"),
            wall_clock_ms=self.wall_ms,
        )

    def __repr__(self) -> str:
        return (
            f"<AkoolEmulator jobs={len(self.jobs)} requests={len(self.requests)} "
            f"time_scale={self.time_scale:g} seed={self.seed}>"
        )

    # -- clock ----------------------------------------------------------------------------------

    def now(self) -> float:
        """The emulator's clock reading."""
        return self._clock()

    def wall_ms(self) -> int:
        """Wall-clock epoch milliseconds for the clock's current reading."""
        now = self.now()
        if self._clock_zero is None:
            self._clock_zero = now
        elapsed = now - self._clock_zero
        return round(self._start.timestamp() * 1000 + elapsed * 1000)

    # -- accounting ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The base URL to give an in-process client (``transport()``)."""
        return IN_PROCESS_URL

    def creates_for(self, prompt: str) -> int:
        """How many prompt jobs were committed for ``prompt``."""
        return self.creates_by_prompt[prompt]

    def requests_per_endpoint(self) -> collections.Counter[str]:
        """Requests answered, by endpoint name."""
        return collections.Counter(request.endpoint for request in self.requests)

    def accounting(self) -> EmulatorAccounting:
        """What the emulator has committed, answered and charged so far, in one snapshot.

        The same figures ``GET /_emulator/accounting`` answers as JSON and the served emulator
        prints when it stops: creates per prompt and presses per parent and button (with the
        ids of the jobs they made), requests per endpoint and HTTP status, credits per job.
        """
        return EmulatorAccounting.of(
            self.jobs.values(),
            self.requests,
            credits_charged=self.credits_used,
            balance=self.credit,
        )

    def completion_time(self, job_id: str) -> float:
        """When job ``job_id``'s result became (or becomes) complete, on the emulator clock."""
        return self.jobs[job_id].complete_at

    # -- ways to run it --------------------------------------------------------------------------

    def transport(self) -> httpx.AsyncBaseTransport:
        """An httpx transport that calls this app in-process, dropped connections included."""
        return EmulatorTransport(self)

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` talking to this emulator in-process."""
        return httpx.AsyncClient(transport=self.transport(), base_url=self.base_url, **kwargs)

    @contextlib.asynccontextmanager
    async def running(
        self, *, webhook_client: httpx.AsyncClient | None = None
    ) -> AsyncGenerator[None]:
        """Run the background work (webhook deliveries) while the block runs.

        Args:
            webhook_client: The client deliveries are POSTed with; a new one by default.
        """
        async with contextlib.AsyncExitStack() as stack:
            client = webhook_client
            if client is None:
                client = await stack.enter_async_context(httpx.AsyncClient())
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.webhooks.run, client)
                try:
                    yield
                finally:
                    tg.cancel_scope.cancel()

    @contextlib.asynccontextmanager
    async def serve(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_client: httpx.AsyncClient | None = None,
    ) -> AsyncGenerator[str]:
        """Serve the emulator on a real socket (asyncio or trio); yields its base URL."""
        from akool_async._serve import serve_asgi  # noqa: PLC0415 - hypercorn is in the emulator extra

        async with (
            serve_asgi(self, host=host, port=port) as url,
            self.running(webhook_client=webhook_client),
        ):
            yield url

    # -- ASGI -----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        incoming = incoming_of(scope, self.now())
        if incoming.method == "GET" and incoming.path.startswith(_IMAGES_PATH):
            incoming.endpoint = "image"
            await self._serve_image(incoming, send)
            return
        if incoming.path == ACCOUNTING_PATH:
            # The observer's own requests are left out of the figures it reports.
            await self._serve_accounting(incoming, send)
            return
        incoming.body = parse_json(await read_body(receive))
        if incoming.endpoint == "unknown":
            known_path = any(route_path == incoming.path for _, route_path in ROUTES)
            status = HTTPStatus.METHOD_NOT_ALLOWED if known_path else HTTPStatus.NOT_FOUND
            self._record(incoming, status, None)
            await respond(send, status, status.phrase.encode(), "text/plain")
            return
        await self._api(incoming, send)

    async def _api(self, incoming: Incoming, send: Send) -> None:
        """One API request's whole story: throttle, fault, the endpoint, then the answer."""
        fault = self._faults.pick(self.faults, self.seed, incoming)
        record = partial(self._record, incoming)
        if await self._faults.throttle(self.faults, incoming.at, send, record):
            return
        if await fail_before_work(send, fault, self.faults, record):
            return
        try:
            payload = self._endpoints.dispatch(incoming, fault)
        except Answer as answer:
            record(200, answer.code, fault)
            await respond_refusal(send, answer)
            return
        record(200, int(Code.OK), fault)
        await answer_after_work(send, payload, fault, self.faults)

    def _record(
        self, incoming: Incoming, status: int, code: int | None, fault: FaultKind | None = None
    ) -> None:
        self.requests.append(recorded(incoming, status, code, fault))

    async def _serve_accounting(self, incoming: Incoming, send: Send) -> None:
        if incoming.method != "GET":
            status = HTTPStatus.METHOD_NOT_ALLOWED
            await respond(send, status, status.phrase.encode(), "text/plain", {"allow": "GET"})
            return
        body = json.dumps(self.accounting().to_json(), ensure_ascii=False).encode()
        await respond(send, 200, body, "application/json", {"cache-control": "no-store"})

    # -- images ---------------------------------------------------------------------------------

    async def _serve_image(self, incoming: Incoming, send: Send) -> None:
        job_id, _, file_name = incoming.path.removeprefix(_IMAGES_PATH).partition("/")
        job = self.jobs.get(job_id)
        name = file_name.removesuffix(".png")
        if job is None or not _image_available(job, name, incoming.at):
            self._record(incoming, 404, None)
            await respond(send, 404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
            return
        if incoming.at - job.created_at >= RESULT_LIFETIME_SECONDS:
            # Akool's URLs stop working after seven days, as a CDN's expired object does.
            self._record(incoming, 403, None)
            await respond(send, 403, _EXPIRED, "application/xml")
            return
        # Rendered on the event loop, not in a worker thread: waiting on a thread lets a virtual
        # clock jump ahead, which would time out the very request being answered. An image
        # takes tens of milliseconds and is cached after its first request.
        data = _render(job, name)
        self._record(incoming, 200, None)
        await respond(send, 200, data, "image/png", {"cache-control": "max-age=604800"})


def _image_available(job: EmulatedJob, name: str, at: float) -> bool:
    """Whether Akool would have handed out this image's URL by time ``at``."""
    if job.status_at(at) is not ImageStatus.COMPLETED:
        return False
    if not job.is_grid:
        return name == "upscale"
    return name == "grid" or (name in {"1", "2", "3", "4"} and at >= job.complete_at)


def _require_extra() -> None:
    """Fail where the emulator is built, with the fix, rather than at the first image served."""
    missing = [
        name
        for name in ("PIL", "hypercorn", "cryptography")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise ImportError(
            f"the Akool emulator needs {', '.join(missing)}: pip install 'akool-async[emulator]'"
        )


def _render(job: EmulatedJob, name: str) -> bytes:
    from akool_async.testing._images import grid_png, quadrant_png, upscale_png  # noqa: PLC0415 - Pillow is optional

    if name == "grid":
        return grid_png(job.prompt, job.scale, seed=job.seed)
    if name == "upscale":
        quadrant = job.quadrant or 1
        return upscale_png(job.prompt, job.scale, quadrant, seed=job.seed)
    return quadrant_png(job.prompt, job.scale, int(name), seed=job.seed)


def _check_time_scale(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise EmulatorConfigError(f"time_scale must be a number greater than 0 (got {value!r})")
    if value <= 0:
        raise EmulatorConfigError(f"time_scale must be a number greater than 0 (got {value!r})")
