"""The emulator's webhook dispatcher: one loop that POSTs Akool-style callbacks when they fall due.

The emulator's ASGI app calls `WebhookDispatcher.schedule` (a plain function) when a job's status
changes; `WebhookDispatcher.run`, started once in the emulator's task group, sleeps until the
earliest due callback, sends it as Akool would (signed, AES-encrypted, see `_webhook_signing`),
retries when the receiver does not answer 200, and now and then sends a callback twice, because
Akool's receivers must cope with both.

Time is the ``clock`` the emulator passes in and sleeping is `anyio.sleep`-like waiting, so an
hour of callbacks runs in moments under trio's ``MockClock`` or a looptime event loop. The clock
may be offset from anyio's (the emulator may start its jobs at its own zero) but must advance at
the same rate.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import anyio
import anyio.abc
import attrs
import httpx

from akool_async.testing._errors import EmulatorConfigError
from akool_async.testing._webhook_signing import WebhookSigner

__all__ = ["DeliveryAttempt", "DeliveryPolicy", "WebhookDispatcher"]

_HTTP_OK: Final = 200
_DUE_SLACK: Final = 1e-6
"""A callback this close to due is due: virtual clocks round, and a loop must not spin on 1e-12."""
_NONCE_RANGE: Final = 10_000
"""Akool's nonces are short decimal strings ("1529" in its docs), so they repeat across events:
the emulator keeps them short so that a receiver which dedupes on the nonce fails here first."""


def _to_delays(value: Iterable[float]) -> tuple[float, ...]:
    return tuple(float(delay) for delay in value)


def _check_delays(_: object, attribute: attrs.Attribute[Any], value: tuple[float, ...]) -> None:
    if not all(math.isfinite(delay) and delay >= 0 for delay in value):
        raise EmulatorConfigError(
            f"DeliveryPolicy.{attribute.name} must be finite numbers of seconds, 0 or more "
            f"(got {value!r})"
        )


def _check_rate(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise EmulatorConfigError(
            f"DeliveryPolicy.{attribute.name} must be between 0.0 and 1.0 (got {value!r})"
        )


def _check_positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise EmulatorConfigError(
            f"DeliveryPolicy.{attribute.name} must be greater than 0 (got {value!r})"
        )


def _check_count(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EmulatorConfigError(
            f"DeliveryPolicy.{attribute.name} must be an int, 1 or more (got {value!r})"
        )


@attrs.frozen
class DeliveryPolicy:
    """How the emulator delivers webhooks. Akool publishes none of this; these are assumptions.

    Attributes:
        retry_delays: Seconds to wait after each failed attempt before the next one; when they
            run out, the callback is given up. ``()`` means one attempt only.
        duplicate_rate: Chance, from 0.0 to 1.0, that a callback answered with 200 is sent a
            second time, byte for byte the same (same signature, nonce and timestamp).
        timeout: Seconds to wait for the receiver's answer before counting the attempt failed.
        concurrency: How many callbacks may be in flight at once, to different URLs; callbacks
            to one URL are always sent one at a time.

    Raises:
        EmulatorConfigError: A delay is negative or not finite, ``duplicate_rate`` is outside
            0.0 to 1.0, ``timeout`` or ``concurrency`` is not above 0, or ``concurrency`` is not
            an int.
    """

    retry_delays: tuple[float, ...] = attrs.field(
        default=(5, 10, 30, 60, 120), converter=_to_delays, validator=_check_delays
    )
    duplicate_rate: float = attrs.field(default=0.0, converter=float, validator=_check_rate)
    timeout: float = attrs.field(default=10.0, converter=float, validator=_check_positive)
    concurrency: int = attrs.field(default=16, validator=_check_count)


@attrs.frozen
class DeliveryAttempt:
    """One POST of a callback, as the emulator saw it.

    Attributes:
        url: Where it was sent.
        job_id: The callback's ``_id``.
        status: The callback's ``status`` (2, 3 or 4).
        attempt: 1 for the first try, 2 for the first retry, and so on; a duplicate carries the
            number of the attempt it copies.
        at: The dispatcher's clock when the POST started.
        http_status: The receiver's HTTP status, or None when there was no answer.
        error: Why there was no answer (transport error, timeout), or None.
        duplicate: True for the deliberate second copy of a delivered callback.
    """

    url: str
    job_id: str
    status: int
    attempt: int
    at: float
    http_status: int | None
    error: str | None
    duplicate: bool

    @property
    def ok(self) -> bool:
        """Whether the receiver answered 200, which is what Akool requires."""
        return self.http_status == _HTTP_OK


@attrs.define(eq=False)
class _Callback:
    """A callback waiting for its turn; ``attempt`` is the number of its next POST."""

    url: str
    payload: dict[str, Any]
    attempt: int = 1


_Entry = tuple[float, int, _Callback]
"""Heap entry: due time, then scheduling order, so equal due times keep their order."""


class WebhookDispatcher:
    """Sends the emulator's webhook callbacks when they fall due: one loop, no task per job.

    Callbacks to one URL go out one at a time in order of due time (a retry is due when its delay
    has passed); callbacks to different URLs go out concurrently, so one slow receiver does not
    hold up the others. Every POST is recorded in `attempts`; callbacks given up after the last
    retry are also in `given_up`.

    Args:
        client_id: The account's client id: part of the signature, and the AES IV.
        client_secret: The account's client secret: the AES key (16, 24 or 32 bytes in UTF-8).
        clock: Now, in seconds; advances with anyio's clock (``anyio.current_time`` or an offset).
        policy: Retries, duplicates, timeout and concurrency.
        rng: The source of nonces and duplicate decisions, so a seeded run repeats exactly.
        wall_clock_ms: Now as milliseconds since the epoch, for each envelope's ``timestamp``.

    Raises:
        EmulatorConfigError: ``client_secret`` is not 16, 24 or 32 bytes long in UTF-8.
        ImportError: ``cryptography`` (the ``emulator`` or ``webhooks`` extra) is not installed.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        clock: Callable[[], float],
        policy: DeliveryPolicy,
        rng: random.Random,
        wall_clock_ms: Callable[[], int],
    ) -> None:
        # Fail where the emulator is configured, not at its first callback: a bad key length
        # (EmulatorConfigError) or no cryptography installed (ImportError) show up here.
        self._signer = WebhookSigner(client_id=client_id, client_secret=client_secret)
        self._clock = clock
        self._policy = policy
        self._rng = rng
        self._wall_clock_ms = wall_clock_ms
        self._queue: list[_Entry] = []
        # Due callbacks whose URL is busy wait here, so the loop never wakes for them in vain.
        self._held: dict[str, list[_Entry]] = {}
        self._busy_urls: set[str] = set()
        self._order = itertools.count()
        self._wake: anyio.Event | None = None
        self._running = False
        self.attempts: list[DeliveryAttempt] = []
        """Every POST, in the order they were answered (or failed); ``at`` is when each began."""
        self.given_up: list[DeliveryAttempt] = []
        """The last attempt of each callback that ran out of retries."""

    def __repr__(self) -> str:
        # Never the secret; the id is not secret but adds nothing here.
        return (
            f"WebhookDispatcher(pending={self.pending}, attempts={len(self.attempts)}, "
            f"given_up={len(self.given_up)})"
        )

    @property
    def policy(self) -> DeliveryPolicy:
        """How callbacks are delivered."""
        return self._policy

    @property
    def pending(self) -> int:
        """Callbacks not yet delivered or given up: waiting, or being sent right now."""
        held = sum(len(entries) for entries in self._held.values())
        return len(self._queue) + held + len(self._busy_urls)

    def schedule(self, *, url: str, due: float, payload: Mapping[str, Any]) -> None:
        """Queue a callback. Plain (not async), so the emulator's ASGI app can call it directly.

        Call it from the thread running the event loop. If `run` is waiting for a later
        callback, it wakes up for this one.

        Args:
            url: The job's ``webhookUrl``: an absolute http or https URL.
            due: When to send it, on the dispatcher's clock; a time in the past means now.
            payload: What Akool would encrypt: ``{"_id": str, "status": int, "type": "image",
                "url": ...}``. It is copied, so later changes by the caller do not leak in.

        Raises:
            ValueError: ``url`` is not an absolute http(s) URL, or ``due`` is not a finite number.
            TypeError: ``payload`` lacks a string ``_id`` or an integer ``status``, or holds
                something JSON cannot encode.
        """
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"webhook url must be an absolute http or https URL (got {url!r})")
        if not math.isfinite(due):
            raise ValueError(f"due must be a finite time on the dispatcher's clock (got {due!r})")
        job_id = payload.get("_id")
        status = payload.get("status")
        if not isinstance(job_id, str) or isinstance(status, bool) or not isinstance(status, int):
            raise TypeError(
                "payload needs a string '_id' and an integer 'status' "
                f"(got _id={job_id!r}, status={status!r})"
            )
        # A JSON round trip both checks that it encodes and takes a deep copy.
        snapshot: dict[str, Any] = json.loads(json.dumps(payload))
        self._push(float(due), _Callback(url=url, payload=snapshot))

    async def run(self, client: httpx.AsyncClient) -> None:
        """Deliver callbacks as they fall due, until cancelled.

        Callbacks being sent when `run` is cancelled go back to the queue, so a later `run`
        sends them again (receivers must tolerate repeats anyway).

        Args:
            client: Sends the POSTs; an ``httpx.ASGITransport`` client reaches an in-process
                receiver. It is left open.

        Raises:
            RuntimeError: `run` is already running.
        """
        if self._running:
            raise RuntimeError("WebhookDispatcher.run() is already running; run it once")
        self._running = True
        try:
            async with anyio.create_task_group() as senders:
                while True:
                    # A fresh event before looking, so a schedule() after the look still wakes us.
                    self._wake = anyio.Event()
                    self._start_due(senders, client)
                    delay = self._next_delay()
                    if delay is None:
                        await self._wake.wait()
                    else:
                        with anyio.move_on_after(delay):
                            await self._wake.wait()
        finally:
            self._running = False
            self._wake = None

    def _push(self, due: float, callback: _Callback) -> None:
        heapq.heappush(self._queue, (due, next(self._order), callback))
        self._notify()

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _start_due(self, senders: anyio.abc.TaskGroup, client: httpx.AsyncClient) -> None:
        now = self._clock()
        while self._queue and len(self._busy_urls) < self._policy.concurrency:
            due, _, callback = self._queue[0]
            if due > now + _DUE_SLACK:
                return
            entry = heapq.heappop(self._queue)
            if callback.url in self._busy_urls:
                heapq.heappush(self._held.setdefault(callback.url, []), entry)
                continue
            self._busy_urls.add(callback.url)
            senders.start_soon(self._send, client, entry, name=f"webhook to {callback.url}")

    def _next_delay(self) -> float | None:
        if not self._queue or len(self._busy_urls) >= self._policy.concurrency:
            return None  # Nothing to wait for but a schedule() or a finished send.
        return max(0.0, self._queue[0][0] - self._clock())

    async def _send(self, client: httpx.AsyncClient, entry: _Entry) -> None:
        due, order, callback = entry
        finished = False
        try:
            await self._deliver(client, callback)
            finished = True
        finally:
            if not finished:
                # Cancelled mid-send: keep it, in its old place, for the next run().
                heapq.heappush(self._queue, (due, order, callback))
            self._busy_urls.discard(callback.url)
            for held in self._held.pop(callback.url, []):
                heapq.heappush(self._queue, held)
            self._notify()

    async def _deliver(self, client: httpx.AsyncClient, callback: _Callback) -> None:
        envelope = self._signer.envelope(
            callback.payload,
            timestamp_ms=self._wall_clock_ms(),
            nonce=str(self._rng.randrange(_NONCE_RANGE)),
        )
        attempt = await self._post(client, callback, envelope, duplicate=False)
        if attempt.ok:
            rate = self._policy.duplicate_rate
            if rate > 0 and self._rng.random() < rate:
                await self._post(client, callback, envelope, duplicate=True)
            return
        delays = self._policy.retry_delays
        if callback.attempt > len(delays):
            self.given_up.append(attempt)
            return
        delay = delays[callback.attempt - 1]
        callback.attempt += 1
        self._push(self._clock() + delay, callback)

    async def _post(
        self,
        client: httpx.AsyncClient,
        callback: _Callback,
        envelope: dict[str, Any],
        *,
        duplicate: bool,
    ) -> DeliveryAttempt:
        started = self._clock()
        http_status: int | None = None
        error: str | None = None
        timeout = self._policy.timeout
        # An anyio deadline as well as httpx's: ASGITransport ignores httpx timeouts, and this
        # one runs on the virtual clock.
        with anyio.move_on_after(timeout) as deadline:
            try:
                response = await client.post(callback.url, json=envelope, timeout=timeout)
            # Any failure is a failed delivery, as it would be for Akool; that includes an
            # in-process receiver's own exception, which ASGITransport raises here.
            except Exception as exc:  # noqa: BLE001
                error = f"{type(exc).__name__}: {exc}"
            else:
                http_status = response.status_code
        if deadline.cancelled_caught:
            error = f"no answer within {timeout:g} s"
        attempt = DeliveryAttempt(
            url=callback.url,
            job_id=callback.payload["_id"],
            status=callback.payload["status"],
            attempt=callback.attempt,
            at=started,
            http_status=http_status,
            error=error,
            duplicate=duplicate,
        )
        self.attempts.append(attempt)
        return attempt
