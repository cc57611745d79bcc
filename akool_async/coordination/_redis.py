"""`RedisCoordinator`: the processes of one app share callbacks and the request budget."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import math
import urllib.parse
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any, Final, cast

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from akool_async._errors import CoordinationUnavailable, InvalidInput, SessionStateError
from akool_async._models import ImageStatus
from akool_async._pace import SharedTurn
from akool_async._validate import is_job_id

from ._scripts import COUNT, REFUSED, TAKE

if TYPE_CHECKING:
    import coredis

__all__ = ["RedisCoordinator"]

logger = logging.getLogger("akool_async.coordination")

_SCHEMES: Final = ("redis", "rediss", "unix")
_MAX_MESSAGE: Final = 160
"""Bytes a bus message may have: ``<24-hex id> <status> <64-hex tag>`` is 91."""
_OUTBOX: Final = 4096
"""Callbacks waiting to be published at most; more are dropped (the safety-net polls remain)."""
_PREFIX_LONGEST: Final = 100
_TIMEOUT_LONGEST: Final = 60.0
_MESSAGE_PARTS: Final = 3
_AUTHENTICATION_HINT: Final = ": check the user name and password the URL gives"
_ANSWERS_EVERY: Final = 0.1
"""Seconds between reports of the answers that came in, when no call carried them."""
_RECONNECT_FIRST: Final = 0.5
_RECONNECT_LONGEST: Final = 30.0


class RedisCoordinator:
    """Share webhook callbacks and the request budget between the processes of one app.

    Give one to each process's session (``AkoolSession(coordinator=RedisCoordinator(url))``):
    a callback that reaches any worker resolves the ``wait()`` of the worker that created the
    job, and every worker takes its requests from one budget per Akool account, so a rate limit
    is discovered (or told) once for all of them.

    ```python
    from akool_async import AkoolSession
    from akool_async.coordination import RedisCoordinator

    session = AkoolSession(coordinator=RedisCoordinator("redis://localhost:6379/0"))
    ```

    Built on `coredis <https://coredis.readthedocs.io>`_ (the ``redis`` extra), which runs on
    asyncio and trio alike. When Redis cannot be reached, or restarts, each
    session goes on alone (its own budget; polling as the safety net for callbacks that reach
    another worker), logs it once, and comes back to the shared way by itself: Redis holds no
    job, so nothing is lost or created twice because of it.

    Callbacks travel over Redis pub/sub tagged with an HMAC keyed by the client secret: a
    message that someone else wrote into Redis is dropped (counted in ``rejected``). Even a
    genuine-looking one only makes the session read the job's status from Akool sooner.

    Args:
        url: Where Redis is: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...``
            (TLS) or ``unix:///path/to/socket``. The password never appears in a repr or a log.
        prefix: The start of every key and channel name, to keep apps on one Redis apart.
        timeout: Seconds a Redis call may take before the session goes on without Redis.
        client_factory: Makes the coredis client from the URL and the timeout; for TLS
            settings of your own. By default ``coredis.Redis.from_url(url,
            decode_responses=True, ...)`` with the timeout on connecting and on every answer,
            and no retries (a retried script could take two turns).

    Attributes:
        published: Callbacks received here and published to the other workers.
        delivered: Callbacks from other workers for jobs this session follows.
        rejected: Bus messages dropped: malformed, or not tagged with this account's key.
        outages: Times Redis became unreachable.
    """

    # Made on the event loop when a session opens (`running`): what stops listening, and the
    # wait before connecting again.
    _listening: anyio.CancelScope
    _napping: anyio.CancelScope
    _napping_between_reports: anyio.CancelScope

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "akool-async",
        timeout: float = 1.0,
        client_factory: Callable[[str, float], coredis.Redis[str]] | None = None,
    ) -> None:
        self._url, self._shown = _check_url(url)
        self._prefix = _check_prefix(prefix)
        self._timeout = _check_timeout(timeout)
        self._factory = client_factory if client_factory is not None else _default_client
        self._client: coredis.Redis[str] | None = None
        self._retry_at = 0.0
        self._down_since: float | None = None
        self._key: bytes | None = None
        self._state = self._counts = self._channel = ""
        self._deliver: Callable[[str, ImageStatus], bool] | None = None
        self._outbox: MemoryObjectSendStream[tuple[str, ImageStatus]] | None = None
        self._take: Any = None
        self._count: Any = None
        self._answers = 0
        self._refused: Any = None
        self._in_use = False
        self._stopping = False
        self.published = 0
        self.delivered = 0
        self.rejected = 0
        self.outages = 0

    def __repr__(self) -> str:
        state = "connected" if self._client is not None else "not connected"
        return f"<RedisCoordinator {self._shown!r} prefix={self._prefix!r} {state}>"

    # -- what the session uses ---------------------------------------------------------------

    @property
    def budget(self) -> RedisCoordinator:
        """The shared request budget (a `SharedBudget`): this object."""
        return self

    def available(self) -> bool:
        """Whether Redis is connected and was not just found failing."""
        return self._client is not None and anyio.current_time() >= self._retry_at

    def answered(self) -> None:
        """One more answer came in: told to Redis with the next call, or within 0.1 s (not while
        Redis is away: the answers of that time would all land in one second)."""
        if self._client is not None:
            self._answers += 1

    async def take(self, *, told: float | None, longest: float) -> SharedTurn:
        """Reserve one request's turn in the shared bucket (no wait longer than ``longest``)."""
        wait_ms, paused, rate_mhz = await self._call(
            self._take, [told or 0, self._answers_to_tell(), round(longest * 1000)]
        )
        return SharedTurn(
            wait=max(0.0, float(wait_ms)) / 1000,
            paused=bool(paused),
            rate=float(rate_mhz) / 1000 if rate_mhz else None,
        )

    async def refused(self, *, told: float | None, pause: float) -> bool:
        """Count a 429 over every worker; True when it completed a cluster."""
        clustered = await self._call(
            self._refused, [told or 0, self._answers_to_tell(), round(pause * 1000)]
        )
        return bool(clustered)

    def publish(self, job_id: str, status: ImageStatus) -> None:
        """Hand a verified callback on to the other workers (queued; never blocks)."""
        outbox = self._outbox
        if outbox is None or self._client is None:
            return
        with contextlib.suppress(
            anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError
        ):
            outbox.send_nowait((job_id, status))

    def running(
        self,
        *,
        account: str,
        secret: str | None,
        deliver: Callable[[str, ImageStatus], bool],
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Connect (and reconnect) to Redis for as long as the returned block runs.

        Args:
            account: What identifies the Akool account and endpoint (hashed into the names).
            secret: The client secret, to tag and check callbacks; None: no callbacks shared.
            deliver: Called with each callback another worker received; returns whether the
                job is one this session follows.

        Raises:
            SessionStateError: The coordinator is already in use by another session (raised
                here, before anything starts).
        """
        self._check_free()
        return self._running(account, secret, deliver)

    def _check_free(self) -> None:
        if self._in_use:
            raise SessionStateError(
                "this RedisCoordinator is already in use by an open session; give each session "
                "its own"
            )

    @contextlib.asynccontextmanager
    async def _running(
        self, account: str, secret: str | None, deliver: Callable[[str, ImageStatus], bool]
    ) -> AsyncGenerator[None]:
        self._check_free()  # two sessions opened at once, both past `running`'s check
        self._in_use = True
        self._stopping = False
        self._listening, self._napping = anyio.CancelScope(), anyio.CancelScope()
        self._napping_between_reports = anyio.CancelScope()
        name = hashlib.sha256(f"akool-async account\n{account}".encode()).hexdigest()[:24]
        self._state = f"{self._prefix}:{name}:budget"
        self._counts = f"{self._prefix}:{name}:answers"
        self._channel = f"{self._prefix}:{name}:callbacks"
        self._key = (
            hmac.new(secret.encode(), b"akool-async callbacks", hashlib.sha256).digest()
            if secret is not None
            else None
        )
        self._deliver = deliver
        send, receive = anyio.create_memory_object_stream[tuple[str, ImageStatus]](_OUTBOX)
        self._outbox = send
        try:
            async with anyio.create_task_group() as group:
                await group.start(self._keep_connected)
                group.start_soon(self._publish_all, receive)
                group.start_soon(self._tell_answers)
                try:
                    yield
                finally:
                    # Stop listening first and let the subscription end while its connection
                    # is still up (coredis unsubscribes then); cut it short only if that hangs.
                    self._stopping = True
                    send.close()
                    self._listening.cancel()
                    self._napping.cancel()
                    self._napping_between_reports.cancel()
                    group.cancel_scope.deadline = anyio.current_time() + 2 * self._timeout
        finally:
            send.close()
            self._outbox = None
            self._client = None
            self._deliver = None
            self._in_use = False

    # -- inside ------------------------------------------------------------------------------

    def _answers_to_tell(self) -> int:
        answers, self._answers = self._answers, 0
        return answers

    async def _tell_answers(self) -> None:
        """Tell Redis of the answers that came in, every 0.1 s, without waiting for a turn to
        carry them: a cluster of 429s is judged against every worker's answers, and a worker
        that answered many and asked nothing since must count too."""
        while True:
            self._napping_between_reports = anyio.CancelScope()  # one per wait
            if self._stopping:
                return
            with self._napping_between_reports:
                await anyio.sleep(_ANSWERS_EVERY)
            answers = self._answers_to_tell()
            if answers and self._client is not None:
                with contextlib.suppress(CoordinationUnavailable):
                    await self._call(self._count, [0, answers])

    async def _call(self, script: Any, args: list[float | int]) -> Any:
        client = self._client
        if client is None or script is None:
            raise CoordinationUnavailable("not connected to Redis")
        import coredis.exceptions  # noqa: PLC0415 - coredis is optional

        try:
            with anyio.fail_after(self._timeout):
                answer = await script(keys=[self._state, self._counts], args=args)
        except (TimeoutError, OSError, coredis.exceptions.RedisError) as error:
            self._failed(error)
            raise CoordinationUnavailable(f"Redis did not answer: {error}") from error
        except RuntimeError as error:
            if self._client is client:
                raise  # not a closed client: a bug, shown as one
            # The connection was given up (and its pool closed) while this call ran.
            raise CoordinationUnavailable("the connection to Redis was lost") from error
        self._recovered()  # a hang over: the connection itself never dropped
        return answer

    def _failed(self, error: BaseException) -> None:
        now = anyio.current_time()
        self._retry_at = now + _RECONNECT_FIRST
        if self._down_since is None:
            self._down_since = now
            self.outages += 1
            logger.warning(
                "Redis at %r cannot be reached (%s%s): this process goes on alone (its own "
                "request budget; polling for callbacks that reach another worker) until it "
                "can be reached again",
                self._shown,
                type(error).__name__,
                _AUTHENTICATION_HINT if "Authentication" in type(error).__name__ else "",
            )

    def _recovered(self) -> None:
        if self._down_since is not None:
            logger.warning(
                "Redis at %r can be reached again after %.0f s: callbacks and the request "
                "budget are shared again",
                self._shown,
                anyio.current_time() - self._down_since,
            )
            self._down_since = None
        self._retry_at = 0.0

    async def _keep_connected(self, *, task_status: TaskStatus[None]) -> None:
        started = False

        def ready() -> None:
            # The session starts once Redis answered, or failed, the first time: never waits.
            nonlocal started
            if not started:
                started = True
                task_status.started()

        delay = _RECONNECT_FIRST
        while True:
            try:
                async with self._factory(self._url, self._timeout) as client:
                    delay = await self._serve(client, ready)
            except Exception as error:
                # coredis' errors come out of its pool's task group in exception groups.
                if not _is_redis_failure(error):
                    raise
                self._client = None
                self._failed(_first_leaf(error))
            ready()
            self._napping = anyio.CancelScope()
            if self._stopping:  # the session closes: no more tries
                return
            with self._napping:
                await anyio.sleep(delay)
            delay = min(_RECONNECT_LONGEST, delay * 2)

    async def _serve(self, client: coredis.Redis[str], ready: Callable[[], None]) -> float:
        """Check the connection, then take in the other workers' callbacks until it fails."""
        from coredis.retry import NoRetryPolicy  # noqa: PLC0415 - coredis is optional

        await client.ping()
        self._take = client.register_script(TAKE)
        self._count = client.register_script(COUNT)
        self._refused = client.register_script(REFUSED)
        async with client.pubsub(
            channels=[self._channel],
            ignore_subscribe_messages=True,
            retry_policy=NoRetryPolicy(),
        ) as pubsub:
            self._client = client
            try:
                self._recovered()
                ready()
                self._listening = anyio.CancelScope()
                if self._stopping:
                    return _RECONNECT_FIRST
                with self._listening:
                    async for message in pubsub:
                        self._received(message.get("data"))
            finally:
                self._client = None  # before the client's pool closes: no call starts on it
        return _RECONNECT_FIRST

    async def _publish_all(
        self, outbox: MemoryObjectReceiveStream[tuple[str, ImageStatus]]
    ) -> None:
        import coredis.exceptions  # noqa: PLC0415 - coredis is optional

        async with outbox:
            async for job_id, status in outbox:
                client, key = self._client, self._key
                if client is None or key is None:
                    continue
                try:
                    with anyio.fail_after(self._timeout):
                        await client.publish(self._channel, _encode(key, job_id, status))
                except (TimeoutError, OSError, coredis.exceptions.RedisError) as error:
                    self._failed(error)
                except RuntimeError as error:
                    if self._client is client:
                        raise  # not a closed client: a bug, shown as one
                    self._failed(error)  # its pool closed under the publish: Redis went away
                else:
                    self.published += 1
                    self._recovered()

    def _received(self, data: object) -> None:
        key, deliver = self._key, self._deliver
        if key is None or deliver is None:
            return
        decoded = _decode(key, data)
        if decoded is None:
            self.rejected += 1
            if self.rejected == 1:  # then only counted: a flood must not flood the logs too
                logger.warning(
                    "dropped a message on the callbacks channel %r that is not this app's (not "
                    "tagged with this client secret); more are counted in `rejected`, not logged",
                    self._channel,
                )
            return
        if deliver(*decoded):
            self.delivered += 1


def _check_url(url: object) -> tuple[str, str]:
    """The URL as given, and as shown (no user name, password or query: they may hold secrets).

    Raises:
        InvalidInput: Not a ``redis://``, ``rediss://`` or ``unix://`` URL, or one coredis could
            not use (a port or database that is not a number).
    """
    if not isinstance(url, str) or not url or any(char.isspace() for char in url):
        raise InvalidInput(
            f"url must be a Redis URL such as 'redis://localhost:6379/0' (got {url!r})"
        )
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES or "://" not in url:
        raise InvalidInput(
            f"url must start with redis://, rediss:// or unix:// (got a URL with scheme {scheme!r})"
        )
    host = parts.hostname or ""
    shown = f"{scheme}://{parts.path}" if scheme == "unix" else f"{scheme}://{host}"
    try:
        port = parts.port
    except ValueError:
        raise InvalidInput(f"url's port must be a number from 1 to 65535 (got {shown!r})") from None
    if scheme != "unix":
        shown += f":{port}" if port is not None else ""
        database = parts.path.strip("/")
        shown += f"/{database}" if database else ""
        if database and not database.isdigit():
            raise InvalidInput(f"url's database must be a number, as in /0 (got {shown!r})")
    for name, value in urllib.parse.parse_qsl(parts.query):
        if name == "db" and not value.isdigit():
            raise InvalidInput(f"url's db must be a number (got {value!r})")
    return url, shown


def _check_prefix(prefix: object) -> str:
    if isinstance(prefix, str) and 0 < len(prefix) <= _PREFIX_LONGEST and prefix.isprintable():
        return prefix
    raise InvalidInput(
        f"prefix must be 1 to {_PREFIX_LONGEST} printable characters (got {prefix!r})"
    )


def _check_timeout(timeout: object) -> float:
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or math.isnan(timeout)
        or not 0 < timeout <= _TIMEOUT_LONGEST
    ):
        raise InvalidInput(f"timeout must be seconds in (0, 60] (got {timeout!r})")
    return float(timeout)


def _default_client(url: str, timeout: float) -> coredis.Redis[str]:
    import coredis  # noqa: PLC0415 - coredis is optional
    from coredis.retry import NoRetryPolicy  # noqa: PLC0415

    return coredis.Redis.from_url(
        url,
        decode_responses=True,
        connect_timeout=timeout,
        stream_timeout=timeout,
        pool_timeout=timeout,
        retry_policy=NoRetryPolicy(),
    )


def _is_redis_failure(error: BaseException) -> bool:
    """Whether ``error`` (or every error in its group) says Redis cannot be used now."""
    import coredis.exceptions  # noqa: PLC0415 - coredis is optional

    members = _members(error)
    if members:
        return all(_is_redis_failure(inner) for inner in members)
    return isinstance(error, TimeoutError | OSError | coredis.exceptions.RedisError)


def _first_leaf(error: BaseException) -> BaseException:
    while members := _members(error):
        error = members[0]
    return error


def _members(error: BaseException) -> tuple[BaseException, ...]:
    """The errors of an exception group (coredis raises through task groups); () otherwise."""
    if isinstance(error, BaseExceptionGroup):
        return tuple(cast("BaseExceptionGroup[BaseException]", error).exceptions)
    return ()


def _tag(key: bytes, body: str) -> str:
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def _encode(key: bytes, job_id: str, status: ImageStatus) -> str:
    body = f"{job_id} {int(status)}"
    return f"{body} {_tag(key, body)}"


def _decode(key: bytes, data: object) -> tuple[str, ImageStatus] | None:
    """``(job id, status)`` from a bus message, or None when it is not a genuine one."""
    if isinstance(data, bytes):
        try:
            data = data.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(data, str) or len(data) > _MAX_MESSAGE:
        return None
    parts = data.split(" ")
    if len(parts) != _MESSAGE_PARTS:
        return None
    job_id, status, tag = parts
    if not hmac.compare_digest(tag, _tag(key, f"{job_id} {status}")):
        return None
    if not is_job_id(job_id) or status not in {str(int(value)) for value in ImageStatus}:
        return None
    return job_id, ImageStatus(int(status))
