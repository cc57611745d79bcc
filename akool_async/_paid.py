"""Paid creates that no cancellation can lose: each runs in the session's own task, shielded
from the moment its request goes out until its answer is in, and reported if its caller has gone.

Akool has no idempotency key and no list endpoint, so a create whose answer is dropped is a
job paid for and known to nobody. Cancelling the caller (a timeout, a web request that ends, a
batch stopped) must therefore never cut a create off between its request and its answer:

* The create runs in a task of the session (`PaidCreates`), not the caller's, so even a
  cancellation that ignores anyio's shields (``asyncio.timeout``, ``Task.cancel``) only stops
  the caller's wait.
* While it waits for its turn from the pace, nothing has been sent: a caller that goes then
  takes the create with it. Once the pace grants the turn, the request goes out, and the task
  is shielded (`GuardedPace` tells it) until the answer is in, bounded by the request deadline.
  A create that is sent again (only after an attempt that provably did not reach Akool) is
  cancellable again while it waits for the next turn.
* A create that reached Akool (or may have) after its caller went is an orphan: the engine
  tracks its job, logs a warning, emits an ``orphaned`` event and keeps it for
  `AkoolSession.orphaned_creates`.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any, Final

import anyio
import anyio.abc

from ._errors import SessionClosed, SubmissionUnknown
from ._models import ImageInfo
from ._pace import Pace, Turn

__all__ = ["GuardedPace", "PaidCreates"]

logger = logging.getLogger("akool_async")

LONGEST_SHIELD: Final = 300.0
"""Seconds a sent create is shielded when the session sets no request deadline."""
_MARGIN: Final = 5.0
"""Seconds beyond the request deadline, so the wire's own deadline ends an attempt first."""

_SENDING: contextvars.ContextVar[_Submission | None] = contextvars.ContextVar(
    "akool_async_paid_create", default=None
)
"""The create the current task sends, if it is one of `PaidCreates`' tasks."""

Settled = Callable[[bool], None]
"""Told, once, whether the create reached (or may have reached) Akool."""


class GuardedPace(Pace):
    """The session's pace, which also tells a paid create when its turn is granted (its request
    goes out at once) and when its answer is in."""

    async def acquire(self, *, create: bool = False) -> Turn:
        """`Pace.acquire`; a paid create's task is shielded once its turn is granted."""
        submission = _SENDING.get() if create else None
        if submission is not None:
            submission.between_attempts()
        turn = await super().acquire(create=create)
        if submission is not None:
            submission.sending(turn)
        return turn

    def release(self, turn: Turn) -> None:
        """`Pace.release`; a paid create's task learns that its answer is in."""
        super().release(turn)
        submission = _SENDING.get()
        if submission is not None:
            submission.answered(turn)


class _Submission:
    """One paid create, run by `PaidCreates`; its caller awaits `result`."""

    def __init__(
        self,
        endpoint: str,
        payload: Mapping[str, Any],
        send: Callable[[], Awaitable[ImageInfo]],
        *,
        taken: Callable[[ImageInfo], None],
        settled: Settled | None,
        shield_for: float,
        orphaned: Callable[[ImageInfo | SubmissionUnknown], None],
    ) -> None:
        self._endpoint = endpoint
        self._payload = payload
        self._send = send
        self._taken = taken
        self._settled = settled
        self._shield_for = shield_for
        self._orphaned = orphaned
        self._abandon = anyio.CancelScope()  # cancelled when the caller goes
        self._shield = anyio.CancelScope()  # raised while a request is in flight
        self._turn: Turn | None = None
        self._outcome: ImageInfo | Exception | None = None
        self._done = anyio.Event()
        self._caller_gone = False
        self._reported = False

    # -- told by the pace ------------------------------------------------------------------

    def sending(self, turn: Turn) -> None:
        self._turn = turn
        self._shield.shield = True
        self._shield.deadline = anyio.current_time() + self._shield_for

    def answered(self, turn: Turn) -> None:
        if turn is self._turn:
            self._turn = None
            self._shield.deadline = math.inf  # the answer is in: the shield stays up until used

    def between_attempts(self) -> None:
        self._shield.shield = False  # the last attempt provably did not reach Akool

    # -- the create's own task -----------------------------------------------------------------

    async def run(self) -> None:
        _SENDING.set(self)
        try:
            with self._abandon, self._shield:
                try:
                    info = await self._send()
                except Exception as error:  # noqa: BLE001 - handed to the caller as it is
                    self._outcome = error
                else:
                    self._outcome = info
                    try:
                        self._taken(info)  # tracked at once, whoever waits for it
                    except Exception:
                        logger.exception("could not track job %s", info.id)
            if self._outcome is None and self._shield.cancelled_caught:
                self._outcome = SubmissionUnknown(
                    self._endpoint,
                    self._payload,
                    f"no answer within {self._shield_for:g} s of sending it",
                )
        finally:
            self.finish()

    def finish(self) -> None:
        """Settle the create, once: with its outcome, or as never sent (cancelled first)."""
        outcome = self._outcome
        if self._settled is not None:
            self._settled(isinstance(outcome, ImageInfo | SubmissionUnknown))
        self._done.set()
        if self._caller_gone:
            self._report()

    # -- the caller's side ---------------------------------------------------------------------

    async def result(self) -> ImageInfo:
        try:
            await self._done.wait()
        except BaseException:
            self._caller_gone = True
            if self._done.is_set():
                self._report()  # it ended, but its caller never took the result
            else:
                self._abandon.cancel()  # takes effect only while nothing is in flight
            raise
        outcome = self._outcome
        if isinstance(outcome, ImageInfo):
            return outcome
        if outcome is None:
            raise SessionClosed("the session closed before the create was sent; nothing was paid")
        raise outcome

    def _report(self) -> None:
        outcome = self._outcome
        if not self._reported and isinstance(outcome, ImageInfo | SubmissionUnknown):
            self._reported = True
            self._orphaned(outcome)


class PaidCreates:
    """Runs a session's paid creates in tasks of its own (see the module's docstring).

    Args:
        shield_for: Seconds a sent create is shielded, at most: the request deadline.
        orphaned: Told of each create that reached Akool (or may have) after its caller went.
    """

    def __init__(
        self,
        *,
        shield_for: float | None,
        orphaned: Callable[[ImageInfo | SubmissionUnknown], None],
    ) -> None:
        self._shield_for = (LONGEST_SHIELD if shield_for is None else shield_for) + _MARGIN
        self._orphaned = orphaned
        self._group: anyio.abc.TaskGroup | None = None
        self._pending: set[_Submission] = set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncGenerator[None]:
        """Accept creates while the block runs; on leaving, stop those not sent yet and wait
        for the answers of those in flight."""
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                try:
                    yield
                finally:
                    self._group = None
                    group.cancel_scope.cancel()
        finally:
            for submission in list(self._pending):  # cancelled before they ever ran
                submission.finish()

    async def send(
        self,
        endpoint: str,
        payload: Mapping[str, Any],
        send: Callable[[], Awaitable[ImageInfo]],
        *,
        taken: Callable[[ImageInfo], None],
        settled: Settled | None = None,
    ) -> ImageInfo:
        """``await send()`` in a task of the session, and return its answer to the caller.

        Args:
            endpoint: The create's path, for a `SubmissionUnknown`.
            payload: What it sends, for a `SubmissionUnknown`.
            send: Makes the call (through the wire, whose pace is a `GuardedPace`).
            taken: Called with the answer at once, in the create's task (to track the job).
            settled: Told once whether the create reached (or may have reached) Akool.

        Raises:
            SessionClosed: The session closed before the create was sent.
            Whatever ``send`` raises.
        """
        group = self._group
        if group is None:
            if settled is not None:
                settled(False)  # noqa: FBT003 - the callback's one flag: not sent
            raise SessionClosed("the session is closed; nothing was sent")
        submission = _Submission(
            endpoint,
            payload,
            send,
            taken=taken,
            settled=settled,
            shield_for=self._shield_for,
            orphaned=self._orphaned,
        )
        self._pending.add(submission)
        group.start_soon(self._run, submission)
        return await submission.result()

    async def _run(self, submission: _Submission) -> None:
        try:
            await submission.run()
        finally:
            self._pending.discard(submission)
