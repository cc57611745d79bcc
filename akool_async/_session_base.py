"""What a session is set to, and its lifetime: the HTTP client, the wire, the engine, and the
task group they run in. `AkoolSession` (in `_session`) adds the calls users make."""

from __future__ import annotations

import contextlib
import enum
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio
import httpx
from anyio.streams.memory import MemoryObjectSendStream

from ._config import Credentials, resolve_base_url
from ._constants import (
    DEFAULT_MAX_CONCURRENT_REQUESTS,
    DEFAULT_MAX_JOBS_IN_FLIGHT,
    DEFAULT_TIMEOUT,
    DEFAULT_TOLERANCE,
    POOL_LIMITS,
)
from ._coordinator import Coordinator
from ._engine import Engine
from ._errors import SessionClosed, SessionStateError, SubmissionUnknown
from ._lifetime import Background, HostScopes
from ._models import ImageInfo
from ._options import (
    NOT_GIVEN,
    NotGiven,
    check_coordinator,
    check_http2,
    check_limits,
    check_listen,
    check_max_prompt_length,
    check_request_deadline,
    user_agent,
)
from ._paid import GuardedPace, PaidCreates
from ._polling import Planner, PollPolicy
from ._retry import RetryPolicy
from ._tracker import JobEvent, SessionStats
from ._validate import MAX_PROMPT_LENGTH, check_url
from ._wire import Wire

if TYPE_CHECKING:
    from .webhooks import WebhookEvent, WebhookReceiver
    from .webhooks._listener import WebhookListener

__all__ = ["SessionBase"]

logger = logging.getLogger("akool_async")


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class SessionBase:
    """An `AkoolSession`'s settings and lifetime; see `AkoolSession` for the arguments."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        base_url: str | httpx.URL | None = None,
        timeout: float | httpx.Timeout | NotGiven | None = NOT_GIVEN,
        request_deadline: float | NotGiven | None = NOT_GIVEN,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
        http2: bool = False,
        poll_policy: PollPolicy | None = None,
        requests_per_second: float | None = None,
        max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS,
        max_jobs_in_flight: int = DEFAULT_MAX_JOBS_IN_FLIGHT,
        on_event: Callable[[JobEvent], object] | None = None,
        webhook_listen: tuple[str, int] | None = None,
        webhook_public_url: str | None = None,
        webhook_tolerance: float | None = DEFAULT_TOLERANCE,
        max_prompt_length: int = MAX_PROMPT_LENGTH,
        coordinator: Coordinator | None = None,
    ) -> None:
        check_limits(requests_per_second, max_concurrent_requests, max_jobs_in_flight)
        self._max_prompt_length = check_max_prompt_length(max_prompt_length)
        self._http2 = check_http2(http2, own_client=http_client is None)
        self._poll_policy = poll_policy if poll_policy is not None else PollPolicy()
        self._requests_per_second = requests_per_second
        self._max_concurrent_requests = max_concurrent_requests
        self._max_jobs_in_flight = max_jobs_in_flight
        self._on_event = on_event
        self._subscribers: list[MemoryObjectSendStream[JobEvent]] = []
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
        in_force = self._timeout
        if in_force is None:  # the passed client's own timeouts apply
            in_force = http_client.timeout if http_client is not None else DEFAULT_TIMEOUT
        self._request_deadline = check_request_deadline(request_deadline, in_force)
        self._retry = retry if retry is not None else RetryPolicy()
        self._webhook_listen = check_listen(webhook_listen)
        self._webhook_public_url = (
            None
            if webhook_public_url is None
            else check_url("webhook_public_url", webhook_public_url)
        )
        self._webhook_tolerance = webhook_tolerance
        self._coordinator = check_coordinator(coordinator)
        self._listener: WebhookListener | None = None
        if self._webhook_listen is not None or self._webhook_public_url is not None:
            self._listener = self._make_listener()
        self._given_client = http_client
        self._client: httpx.AsyncClient | None = None
        self._wire: Wire | None = None
        self._engine: Engine | None = None
        self._background = Background()
        self._paid: PaidCreates | None = None
        self._host_scopes: HostScopes | None = None
        self._state = _State.UNOPENED

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self._state.value} base_url={str(self._base_url)!r} "
            f"auth={self._credentials.mode.value!r}>"
        )

    # -- what it is set to, and what it is doing ---------------------------------------------

    @property
    def base_url(self) -> httpx.URL:
        """The API root requests go to."""
        return self._base_url

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy in force."""
        return self._retry

    @property
    def request_deadline(self) -> float | None:
        """Seconds one request attempt may take, headers and body together (None: no limit)."""
        return self._request_deadline

    @property
    def poll_policy(self) -> PollPolicy:
        """The poll policy in force."""
        return self._poll_policy

    @property
    def status_requests(self) -> int:
        """How many status reads the engine has sent so far."""
        return self._engine.status_requests if self._engine is not None else 0

    @property
    def stats(self) -> SessionStats:
        """What the session has done and follows now: status reads, jobs tracked, callbacks
        taken in and missed (a `SessionStats`). Readable before, during and after the session;
        after it, the figures it closed with."""
        return self._engine.stats() if self._engine is not None else SessionStats()

    @property
    def http_client(self) -> httpx.AsyncClient:
        """The httpx client requests and downloads go through (open sessions only)."""
        self._require_wire()
        assert self._client is not None  # noqa: S101 - set with the wire
        return self._client

    # -- webhooks ------------------------------------------------------------------------------

    @property
    def webhook_url(self) -> str | None:
        """The URL creates send as ``webhookUrl``: `webhook_public_url`, else the address the
        session listens on (known once it is open); None without webhooks."""
        return self._listener.url if self._listener is not None else None

    @property
    def listening_url(self) -> str | None:
        """The address the session receives callbacks on (``webhook_listen``), once it is open;
        None when it does not listen itself (``webhook_public_url`` alone opens no socket)."""
        return self._listener.listening_url if self._listener is not None else None

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
        if self._listener is None:
            self._listener = self._make_listener()
        return self._listener.app

    def _make_listener(self) -> WebhookListener:
        from .webhooks._listener import WebhookListener  # noqa: PLC0415 - cryptography is optional

        return WebhookListener(
            self._credentials,
            self._on_callback,
            tolerance=self._webhook_tolerance,
            listen=self._webhook_listen,
            public_url=self._webhook_public_url,
        )

    def _on_callback(self, event: WebhookEvent) -> None:
        engine = self._engine
        if engine is not None and engine.push(event.id, event.status):
            return
        if self._coordinator is not None:
            self._coordinator.publish(event.id, event.status)  # another worker's job, perhaps
            return
        logger.debug("webhook callback for job %s, which this session does not follow", event.id)

    def _coordinated(self, engine: Engine) -> contextlib.AbstractAsyncContextManager[None]:
        """The coordinator, connected while the session is open; callbacks it brings from
        other workers go to the engine like this session's own."""
        assert self._coordinator is not None  # noqa: S101 - only called with one
        credentials = self._credentials
        # The account, hashed into Redis' key names (never stored as it is): Akool's api key is
        # the client secret's value, so a worker with one and a worker with the other share.
        key = credentials.api_key or credentials.client_secret or credentials.token
        identity = key.reveal() if key is not None else ""
        secret = credentials.client_secret
        return self._coordinator.running(
            account=f"{self._base_url}\n{identity}",
            secret=secret.reveal() if secret is not None else None,
            deliver=engine.push,
        )

    # -- lifetime --------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is _State.CLOSED:
            raise SessionClosed(
                "this AkoolSession is closed and cannot be reopened; make a new one"
            )
        if self._state is _State.OPEN:
            raise SessionStateError("this AkoolSession is already open")
        self._state = _State.OPEN
        try:
            async with contextlib.AsyncExitStack() as stack:
                client = await stack.enter_async_context(self._client_in_use())
                wire = self._make_wire(client)
                engine = Engine(
                    wire,
                    Planner(self._poll_policy),
                    self._emit,
                    workers=self._max_concurrent_requests,
                )
                self._client, self._wire, self._engine = client, wire, engine
                # Before the task group: a coordinator another open session holds is refused
                # here, as itself, not inside an exception group.
                coordinated = self._coordinated(engine) if self._coordinator is not None else None
                # Every background task runs in this group, inside one task that `_shut_down`
                # stops: leaving the session then only leaves a group with nothing in it.
                task_group = await stack.enter_async_context(anyio.create_task_group())
                # Left last: creates in flight get their answers while the rest shuts down.
                self._paid = PaidCreates(
                    shield_for=self._request_deadline,
                    orphaned=partial(_orphaned, engine),
                )
                contexts: list[contextlib.AbstractAsyncContextManager[object]] = [
                    self._paid.running()
                ]
                if self._listener is not None:
                    contexts.append(self._listener.serving())
                if coordinated is not None:
                    contexts.append(coordinated)
                await task_group.start(self._background.run, contexts, [engine.run])
                self._host_scopes = HostScopes(stack.pop_all(), "an AkoolSession")
        except BaseException:
            self._state = _State.CLOSED
            self._client = self._wire = None
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        scopes = self._host_scopes
        if self._state is not _State.OPEN or scopes is None:
            return
        scopes.check_task()  # a close from the wrong task changes nothing
        self._state = _State.CLOSED
        self._host_scopes = None
        try:
            await self._shut_down()
        finally:
            await scopes.release()

    async def _shut_down(self) -> None:
        """End every wait, stop the background tasks, close what the session made."""
        if self._engine is not None:
            self._engine.close()
        self._background.stop()
        await self._background.stopped()
        for stream in self._subscribers:
            stream.close()
        await self._close_client()

    @contextlib.asynccontextmanager
    async def _client_in_use(self) -> AsyncGenerator[httpx.AsyncClient]:
        if self._given_client is not None:
            yield self._given_client  # the caller's: left open
            return
        client = httpx.AsyncClient(timeout=self._timeout, limits=POOL_LIMITS, http2=self._http2)
        try:
            yield client
        finally:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    async def _close_client(self) -> None:
        """Let go of the wire, and close the httpx client if the session made it."""
        client, self._client, self._wire = self._client, None, None
        if client is not None and self._given_client is None:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    def _make_wire(self, client: httpx.AsyncClient) -> Wire:
        pace = GuardedPace(
            max_concurrent=self._max_concurrent_requests,
            rate=self._requests_per_second,
            max_pause=self._retry.max_retry_after,
            shared=self._coordinator.budget if self._coordinator is not None else None,
        )
        return Wire(
            client,
            base_url=self._base_url,
            credentials=self._credentials,
            retry=self._retry,
            timeout=self._timeout if self._request_timeout_given else None,
            user_agent=user_agent(),
            pace=pace,
            deadline=self._request_deadline,
        )

    def _require_wire(self) -> Wire:
        if self._wire is None:
            if self._state is _State.CLOSED:
                raise SessionClosed("this AkoolSession is closed; make a new one")
            raise SessionStateError(
                "this AkoolSession is not open: use `async with AkoolSession(...) as session:`"
            )
        return self._wire

    def _require_paid(self) -> PaidCreates:
        self._require_wire()
        assert self._paid is not None  # noqa: S101 - set with the wire
        return self._paid

    def _require_engine(self) -> Engine:
        self._require_wire()
        assert self._engine is not None  # noqa: S101 - set with the wire
        return self._engine

    def _engine_for_handles(self, *, required: bool) -> Engine | None:
        """The engine `ImageJob` handles use; with ``required``, only while the session is open."""
        return self._require_engine() if required else self._engine

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


def _orphaned(engine: Engine, outcome: ImageInfo | SubmissionUnknown) -> None:
    engine.reports.orphan(outcome, anyio.current_time())
