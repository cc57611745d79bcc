"""AkoolEmulator: an ASGI application that answers as Akool's image API does.

Faithful to the documented wire format (the ``{code, msg, data}`` envelope, field names and types,
auth precedence, business codes) and to Akool's behaviour in time (queueing -> processing ->
completed/failed, quadrants that lag status 3, buttons, 7-day URLs), with faults on demand and
accounting that lets a test assert "created exactly once" and measure detection lag.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import importlib.util
import json
import math
import string
from collections.abc import AsyncGenerator, Callable, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Final, cast
from urllib.parse import parse_qs

import anyio
import attrs
import httpx

from akool_async._asgi import Receive, Scope, Send, answer_lifespan
from akool_async.testing._akool import (
    BUTTONS,
    CREDIT_PER_JOB,
    DEFAULT_SCALE,
    MESSAGES,
    RESULT_LIFETIME_SECONDS,
    ROUTES,
    SCALES,
    UPSCALE_BUTTONS,
    Code,
    ImageStatus,
    button_quadrant,
)
from akool_async.testing._deliveries import DeliveryPolicy, WebhookDispatcher
from akool_async.testing._errors import EmulatorConfigError
from akool_async.testing._jobs import EmulatedJob, JobKind, View
from akool_async.testing._plan import EmulatorTimings, FaultKind, Faults, draw, rng_for

__all__ = [
    "TEST_API_KEY",
    "TEST_CLIENT_ID",
    "TEST_CLIENT_SECRET",
    "AkoolEmulator",
    "EmulatedDisconnect",
    "RecordedRequest",
]

TEST_API_KEY: Final = "akool-emulator-api-key"
TEST_CLIENT_ID: Final = "akool-emulator-client"
TEST_CLIENT_SECRET: Final = "akool-emulator-secret-24"  # noqa: S105 - a public test value
IN_PROCESS_URL: Final = "http://akool-emulator.test"


_CREATES: Final = frozenset({"createbyprompt", "createbybutton"})
_MAX_BODY: Final = 1 << 20
_EXPIRED: Final = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
_TOO_MANY: Final = b'{"message":"Too Many Requests"}'


class EmulatedDisconnect(Exception):
    """Raised inside the app to drop the connection mid-answer, as a failing network would."""


@attrs.frozen
class RecordedRequest:
    """One request the emulator answered.

    Attributes:
        at: Emulator clock time it arrived.
        method: HTTP method.
        path: URL path.
        endpoint: ``createbyprompt``, ``createbybutton``, ``infobymodelid``, ``quota``,
            ``getToken``, ``image`` or ``unknown``.
        query: Query parameters (first value of each).
        body: The JSON body, with a getToken ``clientSecret`` replaced by ``"***"``.
        auth: ``"api_key"``, ``"bearer"`` or None: which header was sent (never its value).
        status_code: The HTTP status answered.
        code: Akool's business code answered, if an envelope was sent.
        fault: The injected fault, if any.
    """

    at: float
    method: str
    path: str
    endpoint: str
    query: Mapping[str, str]
    body: Any
    auth: str | None
    status_code: int
    code: int | None
    fault: FaultKind | None


class _Answer(Exception):
    """A business-code answer, raised inside a request; it never escapes the app."""

    def __init__(self, code: Code) -> None:
        super().__init__(code)
        self.code = int(code)
        self.msg = MESSAGES[code]


@attrs.define(kw_only=True)
class _Incoming:
    """One request as the app reads it."""

    at: float
    method: str
    path: str
    endpoint: str
    query: dict[str, str]
    headers: dict[str, str]
    origin: str
    body: Any = None


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
        self._client_secret = client_secret
        self.time_scale = float(time_scale)
        self.seed = seed
        self.faults = faults if faults is not None else Faults()
        self.timings = timings if timings is not None else EmulatorTimings()
        self.credit = credit
        self.uid = uid
        self._clock = clock
        self._start = start if start is not None else datetime.now(UTC)
        self._clock_zero: float | None = None
        self.jobs: dict[str, EmulatedJob] = {}
        self.requests: list[RecordedRequest] = []
        self.creates_by_prompt: collections.Counter[str] = collections.Counter()
        self.button_presses: collections.Counter[tuple[str, str]] = collections.Counter()
        self.credits_used = 0.0
        self._tokens: dict[str, float] = {}
        self._seen: collections.Counter[tuple[str, str]] = collections.Counter()
        self._window: collections.deque[float] = collections.deque()
        self._next_id = 0
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

    def completion_time(self, job_id: str) -> float:
        """When job ``job_id``'s result became (or becomes) complete, on the emulator clock."""
        return self.jobs[job_id].complete_at

    # -- ways to run it --------------------------------------------------------------------------

    def transport(self) -> httpx.AsyncBaseTransport:
        """An httpx transport that calls this app in-process, dropped connections included."""
        return _EmulatorTransport(self)

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
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query_string = scope.get("query_string", b"").decode("latin-1")
        incoming = _Incoming(
            at=self.now(),
            method=scope["method"],
            path=scope["path"],
            endpoint=ROUTES.get((scope["method"], scope["path"]), "unknown"),
            query={k: v[0] for k, v in parse_qs(query_string).items()},
            headers=headers,
            origin=f"{scope.get('scheme', 'http')}://{headers.get('host', 'akool-emulator.test')}",
        )
        if incoming.method == "GET" and incoming.path.startswith("/_emulator/images/"):
            incoming.endpoint = "image"
            await self._serve_image(incoming, send)
            return
        incoming.body = _parse_json(await _read_body(receive))
        if incoming.endpoint == "unknown":
            known_path = any(route_path == incoming.path for _, route_path in ROUTES)
            status = HTTPStatus.METHOD_NOT_ALLOWED if known_path else HTTPStatus.NOT_FOUND
            self._record(incoming, status, None)
            await _send(send, status, status.phrase.encode(), "text/plain")
            return
        await self._api(incoming, send)

    async def _api(self, incoming: _Incoming, send: Send) -> None:
        """One API request's whole story: throttle, fault, the endpoint, then the answer."""
        key = _fault_key(incoming.endpoint, incoming.query, incoming.body)
        self._seen[incoming.endpoint, key] += 1
        chance = draw(
            self.seed, "fault", incoming.endpoint, key, self._seen[incoming.endpoint, key]
        )
        fault = self.faults.pick(incoming.endpoint, chance)
        if fault == "generate_error" and incoming.endpoint not in _CREATES:
            fault = None
        retry_after = self._over_rate_limit(incoming.at)
        if retry_after is not None:
            self._record(incoming, 429, None)
            await _send(send, 429, _TOO_MANY, "application/json", {"retry-after": retry_after})
            return
        if await self._fail_before_work(incoming, fault, send):
            return
        try:
            payload = self._dispatch(incoming, fault)
        except _Answer as answer:
            self._record(incoming, 200, answer.code, fault)
            await _send_envelope(send, {"code": answer.code, "msg": answer.msg})
            return
        self._record(incoming, 200, int(Code.OK), fault)
        if fault == "slow":
            # The work is done (a create is committed); only the answer is late, so a client
            # that gives up waiting has still paid.
            await anyio.sleep(self.faults.slow_delay)
        elif fault == "drop_after_commit":
            await _drop(send)
        elif fault == "truncated":
            encoded = json.dumps(payload).encode()
            await _send(send, 200, encoded[: max(1, len(encoded) // 2)], "application/json")
            return
        await _send_envelope(send, payload)

    async def _fail_before_work(
        self, incoming: _Incoming, fault: FaultKind | None, send: Send
    ) -> bool:
        """Answer the faults that strike before any work is done; True if one was answered."""
        retry = {"retry-after": _seconds(self.faults.retry_after)}
        answers: dict[str, tuple[int, bytes, str, Mapping[str, str]]] = {
            "too_many_requests": (429, _TOO_MANY, "application/json", {}),
            "too_many_requests_retry_after": (429, _TOO_MANY, "application/json", retry),
            "server_error": (
                500,
                b'{"code":500,"msg":"Internal Server Error"}',
                "application/json",
                {},
            ),
            "bad_gateway": (
                502,
                b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                "text/html",
                {},
            ),
            "unavailable": (
                503,
                b'{"code":503,"msg":"Service Unavailable"}',
                "application/json",
                retry,
            ),
        }
        if fault in answers:
            status, body, content_type, extra = answers[fault]
            self._record(incoming, status, None, fault)
            await _send(send, status, body, content_type, extra)
            return True
        if fault == "rate_limit_code":
            answer = _Answer(Code.TOO_FREQUENT)
            self._record(incoming, 200, answer.code, fault)
            await _send_envelope(send, {"code": answer.code, "msg": answer.msg})
            return True
        if fault == "drop_before_commit":
            self._record(incoming, 200, None, fault)
            await _drop(send)
        return False

    def _dispatch(self, incoming: _Incoming, fault: FaultKind | None) -> dict[str, Any]:
        """The endpoint's work and its envelope; a refusal is raised as `_Answer`."""
        if incoming.endpoint == "getToken":
            return self._get_token(incoming.body, incoming.at)
        self._authenticate(incoming.headers, incoming.at)
        if fault == "generate_error":
            raise _Answer(Code.GENERATE_ERROR)
        if incoming.endpoint == "createbyprompt":
            return self._create_by_prompt(incoming.body, incoming.origin, incoming.at)
        if incoming.endpoint == "createbybutton":
            return self._create_by_button(incoming.body, incoming.origin, incoming.at)
        if incoming.endpoint == "infobymodelid":
            return self._info(incoming.query, incoming.at)
        return _success(data={"credit": self.credit})

    def _record(
        self, incoming: _Incoming, status: int, code: int | None, fault: FaultKind | None = None
    ) -> None:
        body = incoming.body
        fields = _object(body)
        if fields is not None and "clientSecret" in fields:
            body = {**fields, "clientSecret": "***"}
        headers = incoming.headers
        auth = "bearer" if headers.get("authorization") else None
        if auth is None and headers.get("x-api-key"):
            auth = "api_key"
        self.requests.append(
            RecordedRequest(
                at=incoming.at,
                method=incoming.method,
                path=incoming.path,
                endpoint=incoming.endpoint,
                query=dict(incoming.query),
                body=body,
                auth=auth,
                status_code=int(status),
                code=code,
                fault=fault,
            )
        )

    def _over_rate_limit(self, at: float) -> str | None:
        """The Retry-After to send when the sliding one-second window is full, else None."""
        limit = self.faults.rate_limit
        if limit is None:
            return None
        while self._window and self._window[0] <= at - 1.0:
            self._window.popleft()
        if len(self._window) >= limit:
            return _seconds(self._window[0] + 1.0 - at)
        self._window.append(at)
        return None

    # -- endpoints --------------------------------------------------------------------------------

    def _authenticate(self, headers: Mapping[str, str], at: float) -> None:
        authorization = headers.get("authorization")
        if authorization:
            # Akool: when both headers are present, Authorization wins and x-api-key is ignored.
            scheme, _, token = authorization.partition(" ")
            issued = self._tokens.get(token) if scheme.lower() == "bearer" else None
            ttl = self.faults.token_ttl
            if issued is None or (ttl is not None and at - issued >= ttl):
                raise _Answer(Code.INVALID_AUTHORIZATION)
            return
        api_key = headers.get("x-api-key")
        if not api_key:
            raise _Answer(Code.AUTHORIZATION_EMPTY)
        if api_key != self.api_key:
            raise _Answer(Code.INVALID_AUTHORIZATION)

    def _get_token(self, request_body: Any, at: float) -> dict[str, Any]:
        body = _object(request_body)
        if body is None or not body.get("clientId") or not body.get("clientSecret"):
            raise _Answer(Code.PARAMETER_ERROR)
        if body["clientId"] != self.client_id or body["clientSecret"] != self._client_secret:
            raise _Answer(Code.INVALID_AUTHORIZATION)
        token = "emu." + "".join(
            rng_for(self.seed, "token", len(self._tokens)).choices(
                string.ascii_letters + string.digits, k=40
            )
        )
        self._tokens[token] = at
        return _success(token=token)

    def _new_id(self) -> str:
        """24 hex digits, the shape of Akool's ``_id`` (a MongoDB ObjectId)."""
        self._next_id += 1
        return (
            hashlib.sha256(f"{self.seed}\x1fid".encode()).hexdigest()[:16] + f"{self._next_id:08x}"
        )

    def _charge(self) -> None:
        if self.credit < CREDIT_PER_JOB:
            raise _Answer(Code.INSUFFICIENT_CREDIT)
        self.credit -= CREDIT_PER_JOB
        self.credits_used += CREDIT_PER_JOB

    def _timeline(self, kind: JobKind, key: str, at: float) -> tuple[float, float, float, bool]:
        rng = rng_for(self.seed, "timing", key)
        timings = self.timings
        queue, processing = {
            JobKind.GRID: (timings.grid_queue, timings.grid_processing),
            JobKind.UPSCALE: (timings.upscale_queue, timings.upscale_processing),
            JobKind.VARIATION: (timings.variation_queue, timings.variation_processing),
        }[kind]
        started = at + queue.sample(rng) * self.time_scale
        finished = started + processing.sample(rng) * self.time_scale
        lag = (
            timings.quadrant_lag.sample(rng) * self.time_scale
            if kind is not JobKind.UPSCALE
            else 0.0
        )
        fails = draw(self.seed, "fails", key) < self.faults.job_failure_rate
        return started, finished, finished + lag, fails

    def _create_by_prompt(self, request_body: Any, origin: str, at: float) -> dict[str, Any]:
        body = _object(request_body)
        if body is None:
            raise _Answer(Code.PARAMETER_ERROR)
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise _Answer(Code.PARAMETER_ERROR)
        scale = body.get("scale") or DEFAULT_SCALE
        source_image = _optional_url(body.get("source_image"))
        webhook_url = _optional_url(body.get("webhookUrl"))
        if not isinstance(scale, str) or scale not in SCALES:
            raise _Answer(Code.PARAMETER_ERROR)
        self._charge()
        self.creates_by_prompt[prompt] += 1
        key = f"prompt\x1f{prompt}\x1f{self.creates_by_prompt[prompt]}"
        started, finished, complete, fails = self._timeline(JobKind.GRID, key, at)
        marker = self.faults.fail_marker
        job = EmulatedJob(
            id=self._new_id(),
            kind=JobKind.GRID,
            prompt=prompt,
            scale=scale,
            seed=int(draw(self.seed, "image", key) * 2**31),
            created_at=at,
            started_at=started,
            finished_at=finished,
            complete_at=complete,
            fails=fails or bool(marker and marker in prompt),
            source_image=source_image,
            webhook_url=webhook_url,
            origin=origin,
            create_time_ms=self.wall_ms(),
        )
        return self._commit(job, at)

    def _create_by_button(self, request_body: Any, origin: str, at: float) -> dict[str, Any]:
        body = _object(request_body)
        if body is None:
            raise _Answer(Code.PARAMETER_ERROR)
        parent_id, button = body.get("_id"), body.get("button")
        if not isinstance(parent_id, str) or not parent_id or button not in BUTTONS:
            raise _Answer(Code.PARAMETER_ERROR)
        parent = self.jobs.get(parent_id)
        if parent is None:
            raise _Answer(Code.NOT_FOUND)
        available = parent.describe(at, uid=self.uid)["buttons"]
        if button not in available:
            raise _Answer(Code.CANNOT_OPERATE)
        webhook_url = _optional_url(body.get("webhookUrl"))
        self._charge()
        parent.used_buttons.append(button)
        self.button_presses[parent_id, button] += 1
        kind = JobKind.UPSCALE if button in UPSCALE_BUTTONS else JobKind.VARIATION
        key = f"button\x1f{parent_id}\x1f{button}"
        started, finished, complete, fails = self._timeline(kind, key, at)
        job = EmulatedJob(
            id=self._new_id(),
            kind=kind,
            prompt=parent.prompt,
            scale=parent.scale,
            seed=parent.seed
            if kind is JobKind.UPSCALE
            else _variation_seed(parent.seed, button_quadrant(button)),
            created_at=at,
            started_at=started,
            finished_at=finished,
            complete_at=complete,
            fails=fails,
            parent_id=parent_id,
            button=button,
            message_id="".join(
                rng_for(self.seed, "message", key).choices(
                    string.ascii_letters + string.digits, k=20
                )
            ),
            webhook_url=webhook_url,
            origin=origin,
            create_time_ms=self.wall_ms(),
        )
        return self._commit(job, at)

    def _commit(self, job: EmulatedJob, at: float) -> dict[str, Any]:
        self.jobs[job.id] = job
        if job.webhook_url is not None:
            for due, event in job.webhook_events():
                self.webhooks.schedule(url=job.webhook_url, due=due, payload=event)
        view: View = "prompt_create" if job.kind is JobKind.GRID else "button_create"
        return _success(data=job.describe(at, uid=self.uid, view=view))

    def _info(self, query: Mapping[str, str], at: float) -> dict[str, Any]:
        job_id = query.get("image_model_id")
        if not job_id:
            raise _Answer(Code.PARAMETER_ERROR)
        job = self.jobs.get(job_id)
        if job is None:
            raise _Answer(Code.NOT_FOUND)
        return _success(data=job.describe(at, uid=self.uid))

    # -- images ---------------------------------------------------------------------------------

    async def _serve_image(self, incoming: _Incoming, send: Send) -> None:
        job_id, _, file_name = incoming.path.removeprefix("/_emulator/images/").partition("/")
        job = self.jobs.get(job_id)
        name = file_name.removesuffix(".png")
        if job is None or not _image_available(job, name, incoming.at):
            self._record(incoming, 404, None)
            await _send(send, 404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
            return
        if incoming.at - job.created_at >= RESULT_LIFETIME_SECONDS:
            # Akool's URLs stop working after seven days, as a CDN's expired object does.
            self._record(incoming, 403, None)
            await _send(send, 403, _EXPIRED, "application/xml")
            return
        # Rendered on the event loop, not in a worker thread: waiting on a thread lets a virtual
        # clock jump ahead, which would time out the very request being answered. An image
        # takes tens of milliseconds and is cached after its first request.
        data = _render(job, name)
        self._record(incoming, 200, None)
        await _send(send, 200, data, "image/png", {"cache-control": "max-age=604800"})


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


def _variation_seed(seed: int, quadrant: int) -> int:
    from akool_async.testing._images import variation_seed  # noqa: PLC0415 - Pillow is optional

    return variation_seed(seed, quadrant)


def _optional_url(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise _Answer(Code.PARAMETER_ERROR)
    return value


def _fault_key(endpoint: str, query: Mapping[str, str], body: Any) -> str:
    if endpoint == "infobymodelid":
        return query.get("image_model_id", "")
    fields = _object(body)
    if fields is not None:
        body = fields
        if endpoint == "createbyprompt":
            return str(body.get("prompt", ""))
        if endpoint == "createbybutton":
            return f"{body.get('_id', '')}\x1f{body.get('button', '')}"
    return ""


def _seconds(value: float) -> str:
    return str(max(1, math.ceil(value)))


def _check_time_scale(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise EmulatorConfigError(f"time_scale must be a number greater than 0 (got {value!r})")
    if value <= 0:
        raise EmulatorConfigError(f"time_scale must be a number greater than 0 (got {value!r})")


def _success(**fields: Any) -> dict[str, Any]:
    """A success envelope: code 1000 and its msg, then ``fields`` (``data``, or a ``token``)."""
    return {"code": int(Code.OK), "msg": MESSAGES[Code.OK], **fields}


def _object(value: Any) -> dict[str, Any] | None:
    """``value`` as a JSON object, or None if it is not one."""
    return cast("dict[str, Any]", value) if isinstance(value, dict) else None


def _parse_json(body: bytes) -> Any:
    """The request's JSON, or None when it has none or it is not JSON (Akool then says 1003)."""
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise EmulatedDisconnect("the client went away")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            return b""
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(
    send: Send, status: int, body: bytes, content_type: str, extra: Mapping[str, str] | None = None
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_envelope(send: Send, payload: Mapping[str, Any]) -> None:
    await _send(send, 200, json.dumps(payload, separators=(",", ":")).encode(), "application/json")


async def _drop(send: Send) -> None:
    """Start an answer that promises a body, then break the connection."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"code":', "more_body": True})
    raise EmulatedDisconnect("connection dropped by an injected fault")


class _EmulatorTransport(httpx.AsyncBaseTransport):
    """ASGITransport, but a dropped connection surfaces as httpx's own RemoteProtocolError."""

    def __init__(self, app: AkoolEmulator) -> None:
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
