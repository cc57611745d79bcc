"""AkoolSession: owns the HTTP client, the wire, the engine and their task group."""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import os
import pathlib
from collections.abc import AsyncIterator, Callable, Iterable
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, cast

import anyio
import anyio.abc
import httpx
from anyio.streams.memory import MemoryObjectSendStream

from ._config import Credentials, resolve_base_url
from ._download import Download, download
from ._engine import Engine, JobEvent
from ._errors import AkoolError, InvalidInput
from ._job import DEFAULT_MAX_BYTES, ImageJob
from ._models import Button, ImageInfo, Scale
from ._pace import Pace
from ._polling import JobKind, Planner, PollPolicy
from ._retry import RetryPolicy
from ._validate import check_button, check_image_id, check_prompt, check_scale, check_url
from ._wire import Wire
from .webhooks._verify import DEFAULT_TOLERANCE

if TYPE_CHECKING:
    from .webhooks import WebhookEvent, WebhookReceiver

__all__ = ["NOT_GIVEN", "AkoolSession", "NotGiven"]

logger = logging.getLogger("akool_async")

CREATE_BY_PROMPT: Final = "/api/open/v3/content/image/createbyprompt"
CREATE_BY_BUTTON: Final = "/api/open/v3/content/image/createbybutton"
IMAGE_INFO: Final = "/api/open/v3/content/image/infobymodelid"
CREDIT_INFO: Final = "/api/open/v3/faceswap/quota/info"
WEBHOOK_PATH: Final = "/akool/webhook"
"""Where a session listening for callbacks (``webhook_listen``) receives them."""

DEFAULT_TIMEOUT: Final = httpx.Timeout(30.0, connect=10.0)
"""Per-request timeouts of a session's own client: 10 s to connect, 30 s for the rest."""

try:
    __version__ = version("akool-async")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"


class NotGiven(enum.Enum):
    """The type of `NOT_GIVEN`: "use the default", as distinct from ``None``."""

    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven.NOT_GIVEN


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


def _check_limits(rate: object, concurrent: object, jobs: object) -> None:
    if rate is not None and not (
        isinstance(rate, int | float) and math.isfinite(rate) and rate > 0
    ):
        raise InvalidInput(f"requests_per_second must be a number > 0 or None (got {rate!r})")
    _whole("max_concurrent_requests", concurrent)
    _whole("max_jobs_in_flight", jobs)


def _check_listen(listen: object) -> tuple[str, int] | None:
    if listen is None:
        return None
    parts: tuple[object, ...] = (
        tuple(cast("tuple[object, ...]", listen)) if isinstance(listen, tuple) else ()
    )
    if len(parts) == 2:  # noqa: PLR2004 - (host, port)
        host, port = parts
        if (
            isinstance(host, str)
            and host
            and isinstance(port, int)
            and not isinstance(port, bool)
            and 0 <= port <= 65535  # noqa: PLR2004 - the highest TCP port
        ):
            return host, port
    raise InvalidInput(
        f"webhook_listen must be (host, port), e.g. ('127.0.0.1', 0) (got {listen!r})"
    )


def _whole(name: str, value: object) -> int:
    """``value`` if it is a whole number of at least 1; else a clear error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{name} must be a whole number >= 1 (got {value!r})")
    return value


def _forward_once(
    send: MemoryObjectSendStream[ImageJob],
    sent: set[str],
    handle: ImageJob,
    *_: object,
) -> None:
    if handle.id in sent:
        return  # a job ends once for as_completed, even if a read error ended a round first
    sent.add(handle.id)
    with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
        send.send_nowait(handle)


def _decode_info(data: Any) -> ImageInfo:
    return ImageInfo.from_wire(data)


def _decode_credit(data: Any) -> float:
    credit = cast("dict[str, Any]", data).get("credit") if isinstance(data, dict) else None
    if isinstance(credit, bool) or not isinstance(credit, int | float) or not math.isfinite(credit):
        raise TypeError("quota/info answered without a finite numeric 'credit'")
    return credit


class AkoolSession:
    """A session with Akool's image API. Use it as ``async with AkoolSession(...) as session:``.

    Credentials come from the arguments or, when none is given, from ``AKOOL_API_KEY``,
    ``AKOOL_TOKEN``, or ``AKOOL_CLIENT_ID`` with ``AKOOL_CLIENT_SECRET``. An api key is sent as
    ``x-api-key``; a token as ``Authorization: Bearer``; client credentials fetch a token from
    getToken once, share it between all requests and renew it once when Akool answers 1101.

    Args:
        api_key: Akool API key (the dashboard's key, the same value as the client secret).
        token: A bearer token from getToken.
        client_id: Client id, for getToken, and to verify webhook callbacks.
        client_secret: Client secret, for getToken, and to open webhook callbacks. Next to an
            api key, client credentials only verify callbacks; requests use the key.
        base_url: The API root; default ``AKOOL_BASE_URL``, else ``https://openapi.akool.com``.
            A passed ``http_client``'s own ``base_url`` is used when this is not given.
        timeout: Per-request timeouts, in seconds or as an ``httpx.Timeout``; ``None`` for none.
            Not given: 10 s to connect and 30 s otherwise for the session's own client, the
            passed client's own setting for ``http_client``.
        retry: How transient failures are retried (`RetryPolicy`).
        http_client: An ``httpx.AsyncClient`` to use. The session then does not close it.
        poll_policy: How results are polled for (`PollPolicy`).
        requests_per_second: Akool's limit on requests per second, creates and polls together,
            if you know it: the session then never exceeds it (it runs at 97 % of it). None:
            no cap until 429s come in a cluster, after which the session finds the limit itself
            and runs at 95 % of it; a sporadic 429 only delays the request it refused.
        max_concurrent_requests: Requests in flight at once, whatever the number of jobs.
        max_jobs_in_flight: Default concurrency of `generate_many`: jobs created and not yet
            finished at once.
        on_event: Called with each `JobEvent` (created, queueing, processing, completed,
            failed) for progress bars and logs. It must not block.
        webhook_listen: ``(host, port)`` to receive Akool's callbacks on, within the session
            (asyncio and trio; port 0 picks a free one). Needs client credentials and the
            ``webhooks`` extra. Creates then send `webhook_url` as ``webhookUrl``, and waits
            resolve on the callback, with polls only as a slow safety net.
        webhook_public_url: The URL Akool must call, when it is not the listening address
            (behind a proxy or a tunnel, or with `webhook_app` mounted in your own app).
        webhook_tolerance: Seconds a callback's timestamp may be away from this machine's
            clock; None accepts any.

    Raises:
        MissingCredentials: No credentials given or found.
        InvalidInput: A credential or the base URL is malformed.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        base_url: str | httpx.URL | None = None,
        timeout: float | httpx.Timeout | NotGiven | None = NOT_GIVEN,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
        poll_policy: PollPolicy | None = None,
        requests_per_second: float | None = None,
        max_concurrent_requests: int = 16,
        max_jobs_in_flight: int = 100,
        on_event: Callable[[JobEvent], object] | None = None,
        webhook_listen: tuple[str, int] | None = None,
        webhook_public_url: str | None = None,
        webhook_tolerance: float | None = DEFAULT_TOLERANCE,
    ) -> None:
        _check_limits(requests_per_second, max_concurrent_requests, max_jobs_in_flight)
        self._poll_policy = poll_policy if poll_policy is not None else PollPolicy()
        self._requests_per_second = requests_per_second
        self._max_concurrent_requests = max_concurrent_requests
        self._max_jobs_in_flight = max_jobs_in_flight
        self._on_event = on_event
        self._subscribers: list[MemoryObjectSendStream[JobEvent]] = []
        self._engine: Engine | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._credentials = Credentials.resolve(
            api_key=api_key, token=token, client_id=client_id, client_secret=client_secret
        )
        self._base_url = resolve_base_url(base_url, http_client=http_client)
        self._timeout: httpx.Timeout | None
        if isinstance(timeout, NotGiven):
            self._timeout = DEFAULT_TIMEOUT if http_client is None else None
            self._request_timeout_given = False
        else:
            self._timeout = httpx.Timeout(timeout) if timeout is not None else httpx.Timeout(None)
            self._request_timeout_given = True
        self._retry = retry if retry is not None else RetryPolicy()
        self._webhook_listen = _check_listen(webhook_listen)
        self._webhook_public_url = (
            None
            if webhook_public_url is None
            else check_url("webhook_public_url", webhook_public_url)
        )
        self._webhook_tolerance = webhook_tolerance
        self._webhook_app: WebhookReceiver | None = None
        self._listening_url: str | None = None
        self._webhook_group: anyio.abc.TaskGroup | None = None
        self._webhook_stop = anyio.Event()
        if self._webhook_listen is not None or self._webhook_public_url is not None:
            self._webhook_app = self._make_webhook_app()
        self._given_client = http_client
        self._client: httpx.AsyncClient | None = None
        self._wire: Wire | None = None
        self._state = _State.UNOPENED

    def __repr__(self) -> str:
        return (
            f"<AkoolSession {self._state.value} base_url={str(self._base_url)!r} "
            f"auth={self._credentials.mode.value!r}>"
        )

    @property
    def base_url(self) -> httpx.URL:
        """The API root requests go to."""
        return self._base_url

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy in force."""
        return self._retry

    @property
    def poll_policy(self) -> PollPolicy:
        """The poll policy in force."""
        return self._poll_policy

    @property
    def status_requests(self) -> int:
        """How many status reads the engine has sent so far."""
        return self._engine.status_requests if self._engine is not None else 0

    @property
    def webhook_url(self) -> str | None:
        """The URL creates send as ``webhookUrl``: `webhook_public_url`, else the address the
        session listens on (known once it is open); None without webhooks."""
        return self._webhook_public_url or self._listening_url

    @property
    def webhook_app(self) -> WebhookReceiver:
        """The ASGI app that receives Akool's callbacks for this session's jobs.

        Mount it in your web app (``app.mount("/akool/webhook", session.webhook_app)``) and
        give its public URL as ``webhook_public_url`` (with Starlette's mounts, end it with a
        slash: a POST to the bare mount point is answered with a redirect); ``webhook_listen``
        serves it for you.

        Raises:
            InvalidInput: The session has no client id and secret to verify callbacks with.
        """
        if self._webhook_app is None:
            self._webhook_app = self._make_webhook_app()
        return self._webhook_app

    def _make_webhook_app(self) -> WebhookReceiver:
        from .webhooks import WebhookReceiver, WebhookVerifier  # noqa: PLC0415 - cryptography is optional

        credentials = self._credentials
        if credentials.client_id is None or credentials.client_secret is None:
            raise InvalidInput(
                "webhooks need client_id and client_secret: Akool signs its callbacks with the "
                "client id and encrypts them with the client secret (an api key can still "
                "authenticate the requests)"
            )
        verifier = WebhookVerifier(
            credentials.client_id,
            credentials.client_secret.reveal(),
            tolerance=self._webhook_tolerance,
        )
        return WebhookReceiver(verifier, self._on_callback)

    def _on_callback(self, event: WebhookEvent) -> None:
        engine = self._engine
        if engine is None or not engine.push(event.id, event.status):
            logger.debug(
                "webhook callback for job %s, which this session does not follow", event.id
            )

    async def _serve_webhooks(
        self, *, task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        from ._serve import serve_asgi  # noqa: PLC0415 - hypercorn is optional

        assert self._webhook_listen is not None  # noqa: S101 - only started when asked for
        host, port = self._webhook_listen
        async with serve_asgi(self.webhook_app, host=host, port=port) as url:
            task_status.started(f"{url}{WEBHOOK_PATH}")
            await self._webhook_stop.wait()

    @property
    def http_client(self) -> httpx.AsyncClient:
        """The httpx client requests and downloads go through (open sessions only)."""
        if self._client is None:
            self._require_wire()
        assert self._client is not None  # noqa: S101 - _require_wire raised otherwise
        return self._client

    async def __aenter__(self) -> Self:
        if self._state is _State.CLOSED:
            raise RuntimeError("this AkoolSession is closed and cannot be reopened; make a new one")
        if self._state is _State.OPEN:
            raise RuntimeError("this AkoolSession is already open")
        if self._given_client is None:
            client = httpx.AsyncClient(
                timeout=self._timeout,
                # A bounded pool: the engine, not the pool queue, decides how many requests wait.
                limits=httpx.Limits(max_connections=20, max_keepalive_connections=20),
            )
            await client.__aenter__()
        else:
            client = self._given_client
        self._client = client
        pace = Pace(
            max_concurrent=self._max_concurrent_requests,
            rate=self._requests_per_second,
            max_pause=self._retry.max_retry_after,
        )
        self._wire = Wire(
            client,
            base_url=self._base_url,
            credentials=self._credentials,
            retry=self._retry,
            timeout=self._timeout if self._request_timeout_given else None,
            user_agent=f"akool-async/{__version__} httpx/{httpx.__version__}",
            pace=pace,
        )
        if self._webhook_listen is not None:
            await self._start_webhooks()
        # Every background task lives in this group; leaving the session cancels them all.
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self._engine = Engine(self._wire, Planner(self._poll_policy), task_group, self._emit)
        task_group.start_soon(self._engine.run)
        self._state = _State.OPEN
        return self

    async def _start_webhooks(self) -> None:
        # A group of its own, entered before the session's and left after it: the server is
        # stopped by its shutdown trigger, never cancelled mid-request.
        group = anyio.create_task_group()
        await group.__aenter__()
        self._webhook_group = group
        try:
            self._listening_url = await group.start(self._serve_webhooks)
        except BaseException:
            self._webhook_stop.set()
            await group.__aexit__(None, None, None)
            self._webhook_group = None
            await self._close_client()
            self._state = _State.CLOSED
            raise
        logger.info("receiving webhook callbacks at %s", self._listening_url)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._state = _State.CLOSED
        engine, task_group = self._engine, self._task_group
        if engine is not None:
            engine.close()
        if task_group is not None:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
        webhooks, self._webhook_group = self._webhook_group, None
        if webhooks is not None:
            self._webhook_stop.set()
            await webhooks.__aexit__(None, None, None)
        for stream in self._subscribers:
            stream.close()
        await self._close_client()

    async def _close_client(self) -> None:
        """Let go of the wire, and close the httpx client if the session made it."""
        client, self._client, self._wire = self._client, None, None
        if client is not None and self._given_client is None:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    def _require_engine(self) -> Engine:
        self._require_wire()
        assert self._engine is not None  # noqa: S101 - set with the wire
        return self._engine

    def _emit(self, event: JobEvent) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                logger.exception("on_event callback failed for %s", event)
        for stream in list(self._subscribers):
            try:
                stream.send_nowait(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.remove(stream)

    def _require_wire(self) -> Wire:
        if self._wire is None:
            if self._state is _State.CLOSED:
                raise RuntimeError("this AkoolSession is closed; make a new one")
            raise RuntimeError(
                "this AkoolSession is not open: use `async with AkoolSession(...) as session:`"
            )
        return self._wire

    # -- the wire calls, one request each (plus retries) -----------------------------------

    async def create_by_prompt(
        self,
        prompt: str,
        *,
        scale: Scale | str = Scale.RATIO_1_1,
        source_image: str | None = None,
        webhook_url: str | None = None,
    ) -> ImageInfo:
        """Create a text-to-image job, or image-to-image with ``source_image``. Costs credits.

        Args:
            prompt: What to draw.
            scale: One of the seven aspect ratios (`Scale` or its string).
            source_image: URL of an image to start from (image-to-image).
            webhook_url: URL Akool calls back on status changes.

        Returns:
            The new job as Akool first describes it (usually queueing).

        Raises:
            InvalidInput: A bad argument; nothing was sent.
            SubmissionUnknown: The create may or may not have reached Akool; it was not retried.
            APIError: Akool refused it (a subclass per business code).
            TransportError: It provably did not reach Akool, after retries.
        """
        body: dict[str, Any] = {"prompt": check_prompt(prompt), "scale": check_scale(scale).value}
        if source_image is not None:
            body["source_image"] = check_url("source_image", source_image)
        callback_url, own = self._webhook_for(webhook_url)
        if callback_url is not None:
            body["webhookUrl"] = callback_url
        wire = self._require_wire()
        info = await wire.call(
            "POST", CREATE_BY_PROMPT, json_body=body, decode=_decode_info, paid=True
        )
        self._require_engine().track(
            info.id, kind=JobKind.GRID, info=info, created=True, webhook=own
        )
        return info

    async def create_by_button(
        self,
        image_id: str,
        button: Button | str,
        *,
        webhook_url: str | None = None,
    ) -> ImageInfo:
        """Press a button (U1..U4 upscale, V1..V4 vary) on a finished grid. Costs credits.

        Args:
            image_id: The grid job's id.
            button: ``U1``..``U4`` or ``V1``..``V4``.
            webhook_url: URL Akool calls back on status changes.

        Returns:
            The new child job; its `parent_id` is ``image_id``.

        Raises:
            InvalidInput: A bad argument; nothing was sent.
            SubmissionUnknown: The create may or may not have reached Akool; it was not retried.
            APIError: Akool refused it, e.g. `OperationNotAllowed` for a used button.
            TransportError: It provably did not reach Akool, after retries.
        """
        body: dict[str, Any] = {
            "_id": check_image_id(image_id),
            "button": check_button(button).value,
        }
        callback_url, own = self._webhook_for(webhook_url)
        if callback_url is not None:
            body["webhookUrl"] = callback_url
        wire = self._require_wire()
        info = await wire.call(
            "POST", CREATE_BY_BUTTON, json_body=body, decode=_decode_info, paid=True
        )
        kind = JobKind.UPSCALE if check_button(button).is_upscale else JobKind.VARIATION
        self._require_engine().track(info.id, kind=kind, info=info, created=True, webhook=own)
        return info

    def _webhook_for(self, webhook_url: str | None) -> tuple[str | None, bool]:
        """The ``webhookUrl`` a create sends (checked), and whether it is the session's own."""
        own = self.webhook_url
        url = own if webhook_url is None else check_url("webhook_url", webhook_url)
        return url, own is not None and url == own

    async def get_image_info(self, image_id: str) -> ImageInfo:
        """Read a job's current state (``infobymodelid``). Free; retried on transient failures.

        Raises:
            InvalidInput: An empty or malformed id; nothing was sent.
            ContentNotFound: Akool knows no such job (code 1008).
            APIError: Another refusal.
            TransportError: The read failed after retries.
        """
        params = {"image_model_id": check_image_id(image_id)}
        wire = self._require_wire()
        return await wire.call("GET", IMAGE_INFO, params=params, decode=_decode_info)

    async def get_credit(self) -> float:
        """The account's credit balance (``quota/info``).

        Raises:
            APIError: Akool refused the request.
            TransportError: The read failed after retries.
        """
        wire = self._require_wire()
        return await wire.call("GET", CREDIT_INFO, decode=_decode_credit)

    # -- job handles -------------------------------------------------------------------------

    async def generate(
        self,
        prompt: str,
        *,
        scale: Scale | str = Scale.RATIO_1_1,
        source_image: str | None = None,
        webhook_url: str | None = None,
    ) -> ImageJob:
        """Create a prompt job and return a handle on it. Costs credits.

        Takes the arguments of `create_by_prompt` and raises what it raises.
        """
        info = await self.create_by_prompt(
            prompt, scale=scale, source_image=source_image, webhook_url=webhook_url
        )
        logger.info("created image job %s (%s)", info.id, info.status.name.lower())
        return ImageJob(self, info.id, info=info)

    def job(self, image_id: str) -> ImageJob:
        """A handle on an existing job, e.g. one created by an earlier run. Sends nothing.

        Raises:
            InvalidInput: An empty or malformed id.
        """
        return ImageJob(self, check_image_id(image_id))

    async def generate_many(  # noqa: C901 - one batch's whole flow, kept in one place
        self,
        prompts: Iterable[str],
        *,
        scale: Scale | str = Scale.RATIO_1_1,
        concurrency: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a deadline per job, not for the call
    ) -> list[ImageInfo | AkoolError]:
        """Generate many images at once; one outcome per prompt, in input order.

        Every prompt is checked before anything is sent. A failure (a failed job, a refused or
        ambiguous create, a deadline) is returned in that prompt's place and never cancels the
        others.

        Args:
            prompts: The prompts.
            scale: One aspect ratio for all of them.
            concurrency: Jobs in flight at once (created, not yet finished); default the
                session's ``max_jobs_in_flight``.
            timeout: A deadline per job, in seconds, from its creation.

        Returns:
            For each prompt, its completed `ImageInfo` or the `AkoolError` it ended with
            (`JobFailed`, `SubmissionUnknown`, `WaitTimeout`, an `APIError`, ...).

        Raises:
            InvalidInput: A prompt, the scale or the concurrency is bad; nothing was sent.
        """
        checked = [check_prompt(prompt) for prompt in prompts]
        scale = check_scale(scale)
        limit = _whole(
            "concurrency", self._max_jobs_in_flight if concurrency is None else concurrency
        )
        engine = self._require_engine()
        results: list[ImageInfo | AkoolError | None] = [None] * len(checked)
        in_flight = anyio.CapacityLimiter(limit)
        pending = iter(range(len(checked)))
        settled = anyio.Event()
        unsettled = len(checked)

        def settle(index: int, slot: object, outcome: ImageInfo | AkoolError) -> None:
            nonlocal unsettled
            if results[index] is not None:
                return
            results[index] = outcome
            in_flight.release_on_behalf_of(slot)
            unsettled -= 1
            if unsettled == 0:
                settled.set()

        async def create_next() -> None:
            # A few creators feed the jobs in flight; a finished job is settled by a listener
            # on its tracker, so thousands of jobs in flight cost no task, no waiter each.
            for index in pending:
                slot = object()
                await in_flight.acquire_on_behalf_of(slot)
                try:
                    job = await self.generate(checked[index], scale=scale)
                except AkoolError as error:
                    settle(index, slot, error)
                    continue
                if timeout is not None:
                    task_group.start_soon(wait_with_deadline, index, slot, job)
                    continue
                tracker = engine.track(job.id)
                if tracker.terminal and tracker.round.outcome is not None:
                    settle(index, slot, tracker.round.outcome)
                    continue
                release = engine.hold(job.id)

                def ended(
                    _: object,
                    outcome: ImageInfo | AkoolError,
                    index: int = index,
                    slot: object = slot,
                    release: Callable[[], None] = release,
                ) -> None:
                    release()
                    settle(index, slot, outcome)

                engine.add_listener(job.id, ended)

        async def wait_with_deadline(index: int, slot: object, job: ImageJob) -> None:
            try:
                outcome: ImageInfo | AkoolError = await job.wait(timeout=timeout)
            except AkoolError as error:
                outcome = error
            settle(index, slot, outcome)

        if not checked:
            return []
        async with anyio.create_task_group() as task_group:
            for _ in range(min(limit, len(checked), 4 * self._max_concurrent_requests)):
                task_group.start_soon(create_next)
            await settled.wait()
        return [result for result in results if result is not None]

    async def as_completed(self, jobs: Iterable[ImageJob]) -> AsyncIterator[ImageJob]:
        """Yield the handles as their jobs reach an end: completed, failed, or unreadable.

        The jobs are polled while the iteration runs (and only then); call ``wait()`` on a
        yielded handle for its result or error, which is then immediate.

        Raises:
            InvalidInput: A handle belongs to another session.
        """
        handles = list(dict.fromkeys(jobs))
        for handle in handles:
            if handle.session is not self:
                raise InvalidInput(f"job {handle.id} belongs to another AkoolSession")
        engine = self._require_engine()
        send, receive = anyio.create_memory_object_stream[ImageJob](max(1, len(handles)))
        cleanups: list[Callable[[], None]] = []
        sent: set[str] = set()
        try:
            for handle in handles:
                tracker = engine.track(handle.id)
                if tracker.terminal:
                    _forward_once(send, sent, handle, None)
                    continue
                cleanups.append(
                    engine.add_listener(handle.id, partial(_forward_once, send, sent, handle))
                )
                cleanups.append(engine.hold(handle.id))
            for _ in handles:
                yield await receive.receive()
        finally:
            for cleanup in cleanups:
                cleanup()
            send.close()
            receive.close()

    async def events(self) -> AsyncIterator[JobEvent]:
        """Every `JobEvent` from now on, as an async iterator (for progress displays).

        ```python
        async for event in session.events():
            print(event.job_id, event.kind)
        ```
        The iteration ends when the session closes.
        """
        self._require_engine()
        send, receive = anyio.create_memory_object_stream[JobEvent](math.inf)
        self._subscribers.append(send)
        try:
            async with receive:
                async for event in receive:
                    yield event
        finally:
            send.close()
            if send in self._subscribers:
                self._subscribers.remove(send)

    async def download_url(
        self, url: str, dest: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> Download:
        """Download one result URL to ``dest`` (a file path), atomically, with its sha256.

        Raises:
            InvalidInput: ``url`` is not an http(s) URL or ``dest``'s folder does not exist.
            DownloadError: The body was too large, not an image, or the URL has expired.
            TransportError: The download failed after retries.
        """
        check_url("url", url)
        wire = self._require_wire()
        del wire
        return await download(
            self.http_client, url, pathlib.Path(dest), retry=self._retry, max_bytes=max_bytes
        )
