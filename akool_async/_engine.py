"""The engine: one poll loop for every job the session watches, and the waiters on them.

Each job has a `_Tracker` (what is known, who waits, when to look next). The loop keeps a heap
of due times; when a poll is due and the `Pace` grants a turn, the most promising due job (the
one most likely to have finished since it was last seen) is polled. A poll's answer updates the
tracker, tells its waiters, emits progress events, and schedules the next look. Jobs nobody waits
on are not polled, but never forgotten: their tracker keeps what was last seen.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from typing import Any, Final, Literal

import anyio
import anyio.abc
import attrs

from ._errors import (
    AkoolError,
    APIError,
    InvalidResponse,
    JobFailed,
    RateLimited,
    TooManyRequests,
    TransportError,
    WaitTimeout,
)
from ._models import ImageInfo, ImageStatus
from ._pace import Turn
from ._polling import JobKind, Planner
from ._retry import RetryPolicy
from ._wire import Wire

__all__ = ["Engine", "EventKind", "JobEvent", "SessionClosed"]

logger = logging.getLogger("akool_async")

INFO_PATH: Final = "/api/open/v3/content/image/infobymodelid"
_ONE_ATTEMPT: Final = RetryPolicy(attempts=1)
_RERANK_EVERY: Final = 1.0
_MIN_SLEEP: Final = 1e-6
_ENDED: Final = frozenset({ImageStatus.COMPLETED, ImageStatus.FAILED})

EventKind = Literal["created", "queueing", "processing", "completed", "failed"]
Listener = Callable[["_Tracker", "ImageInfo | AkoolError"], None]


class SessionClosed(AkoolError, RuntimeError):
    """The session closed while this wait was still in progress; the job itself goes on."""


@attrs.frozen
class JobEvent:
    """A change in a job's life, for progress bars and logs.

    Attributes:
        job_id: The job.
        kind: ``created``, ``queueing``, ``processing``, ``completed`` or ``failed``.
        info: What Akool said at that moment.
        at: The session's clock (``anyio.current_time()``) when it was seen.
    """

    job_id: str
    kind: EventKind
    info: ImageInfo
    at: float


_PENDING_EVENTS: Final[dict[ImageStatus, EventKind]] = {
    ImageStatus.QUEUEING: "queueing",
    ImageStatus.PROCESSING: "processing",
}


class _Round:
    """One wait for an outcome; a fatal read error ends a round without ending the job.

    The event is made only when someone waits: thousands of jobs followed through listeners
    (`as_completed`) or never waited on should not each carry one.
    """

    __slots__ = ("_event", "finished", "outcome")

    def __init__(self) -> None:
        self._event: anyio.Event | None = None
        self.finished = False
        self.outcome: ImageInfo | AkoolError | None = None

    async def wait(self) -> None:
        if self.finished:
            return
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()

    def finish(self, outcome: ImageInfo | AkoolError) -> None:
        self.outcome = outcome
        self.finished = True
        if self._event is not None:
            self._event.set()


class _Tracker:
    """Everything the session knows about one job."""

    __slots__ = (
        "age_known",
        "born",
        "completed_seen",
        "due",
        "failures",
        "id",
        "in_flight",
        "info",
        "interest",
        "kind",
        "last_unfinished_age",
        "listeners",
        "polls",
        "pressed",
        "pushed",
        "round",
        "sequence",
        "terminal",
        "webhook",
    )

    def __init__(self, job_id: str, *, kind: JobKind | None, born: float, age_known: bool) -> None:
        self.id = job_id
        self.kind = kind
        self.born = born
        self.age_known = age_known
        self.info: ImageInfo | None = None
        self.round = _Round()
        self.terminal = False
        self.interest = 0
        self.due: float | None = None
        self.sequence = 0
        self.last_unfinished_age: float | None = None
        self.completed_seen: float | None = None
        self.failures = 0
        self.polls = 0
        self.in_flight = False
        self.pressed: set[str] = set()
        self.listeners: list[Listener] = []
        self.webhook = False  # created with the session's own webhook URL
        self.pushed: ImageStatus | None = None  # the last status a callback brought

    @property
    def job_kind(self) -> JobKind:
        return self.kind if self.kind is not None else JobKind.GRID

    @property
    def looks(self) -> int:
        return self.polls


class Engine:
    """Tracks jobs, runs the poll loop, and resolves waiters. Owned by one `AkoolSession`."""

    def __init__(
        self,
        wire: Wire,
        planner: Planner,
        task_group: anyio.abc.TaskGroup,
        emit: Callable[[JobEvent], None],
    ) -> None:
        self._wire = wire
        self.planner = planner
        self._task_group = task_group
        self._emit = emit
        self.trackers: dict[str, _Tracker] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._ready: list[tuple[float, int, str]] = []
        self._wake = anyio.Event()
        self._ranked_at = 0.0
        self._closed = False
        self.status_requests = 0
        self.pushes = 0

    @property
    def push_healthy(self) -> bool:
        """False while callbacks seem lost and jobs are polled as usual."""
        return self.planner.push_healthy

    @property
    def _missed_pushes(self) -> int:
        return self.planner.missed_pushes

    # -- tracking ---------------------------------------------------------------------------

    def track(
        self,
        job_id: str,
        *,
        kind: JobKind | None = None,
        info: ImageInfo | None = None,
        created: bool = False,
        webhook: bool = False,
    ) -> _Tracker:
        """The tracker for ``job_id``, made on first sight. ``created``: this session made it;
        ``webhook``: with the session's webhook URL, so a callback will say when it ends."""
        tracker = self.trackers.get(job_id)
        if tracker is None:
            tracker = _Tracker(job_id, kind=kind, born=anyio.current_time(), age_known=created)
            tracker.webhook = webhook
            self.trackers[job_id] = tracker
            if info is not None:
                tracker.info = info
                if created:
                    self._emit(JobEvent(job_id, "created", info, tracker.born))
                if info.status in _PENDING_EVENTS:
                    self._emit(JobEvent(job_id, _PENDING_EVENTS[info.status], info, tracker.born))
        elif kind is not None and tracker.kind is None:
            tracker.kind = kind
        return tracker

    async def wait(self, job_id: str, timeout: float | None) -> ImageInfo:  # noqa: ASYNC109
        """Wait for the job's complete result; see `ImageJob.wait`."""
        tracker = self.track(job_id)
        if self._closed:
            raise SessionClosed("the session is closed")
        if tracker.terminal:
            return _unwrap(tracker.round.outcome)
        tracker.interest += 1
        try:
            round_ = tracker.round
            if tracker.due is None and not tracker.in_flight:
                self._schedule(tracker, self._first_look(tracker))
            if timeout is None:
                await round_.wait()  # no cancel scope per job when there is no deadline
            else:
                try:
                    with anyio.fail_after(timeout):
                        await round_.wait()
                except TimeoutError:
                    raise WaitTimeout(job_id, timeout) from None
            return _unwrap(round_.outcome)
        finally:
            tracker.interest -= 1

    def add_listener(self, job_id: str, listener: Listener) -> Callable[[], None]:
        """Call ``listener(tracker, outcome)`` whenever a round of the job ends; returns a remover.

        The outcome is the `ImageInfo`, or the `AkoolError` the round ended with (`JobFailed`,
        a definite refusal, `SessionClosed`). ``tracker.terminal`` tells whether the job ended.
        """
        tracker = self.track(job_id)
        tracker.listeners.append(listener)

        def remove() -> None:
            if listener in tracker.listeners:
                tracker.listeners.remove(listener)

        return remove

    def hold(self, job_id: str) -> Callable[[], None]:
        """Keep the job polled, as a waiter would, until the returned release is called."""
        tracker = self.track(job_id)
        tracker.interest += 1
        if not tracker.terminal and tracker.due is None and not tracker.in_flight:
            self._schedule(tracker, self._first_look(tracker))
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                tracker.interest -= 1

        return release

    def push(self, job_id: str, status: ImageStatus) -> bool:
        """Take in a verified webhook callback: the job reached ``status``.

        A job that ended is read once (the callback carries no quadrants, no buttons) as soon
        as someone waits on it, at once if someone already does. Returns False for a job this
        session does not know.
        """
        tracker = self.trackers.get(job_id)
        if tracker is None:
            return False
        self.pushes += 1
        if self.planner.push_arrived():
            logger.info("webhook callbacks arrive again: polling only as a safety net")
        if status not in _ENDED or tracker.terminal:
            return True
        now = anyio.current_time()
        tracker.pushed = status
        if status is ImageStatus.COMPLETED and tracker.completed_seen is None:
            tracker.completed_seen = now
        if tracker.interest > 0 and not tracker.in_flight:
            self._schedule(tracker, self._after_push(tracker, now))
        return True

    def _after_push(self, tracker: _Tracker, now: float) -> float:
        return self.planner.after_push(
            kind=tracker.job_kind,
            completed=tracker.pushed is ImageStatus.COMPLETED,
            completed_at=tracker.completed_seen if tracker.completed_seen is not None else now,
            now=now,
        )

    def close(self) -> None:
        """End every open round with `SessionClosed`; the jobs go on at Akool."""
        self._closed = True
        for tracker in self.trackers.values():
            if not tracker.terminal:
                self._end_round(
                    tracker, SessionClosed("the session closed before the job finished")
                )

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll due jobs forever, most promising first, as the pace allows."""
        pace = self._wire.pace
        while True:
            await self._await_due()
            turn = await pace.acquire()
            tracker = self._pick()
            if tracker is None:
                pace.release(turn)
                continue
            tracker.in_flight = True
            self._task_group.start_soon(self._poll, tracker, turn)

    async def _await_due(self) -> None:
        while True:
            self._promote(anyio.current_time())
            if self._ready:
                return
            self._wake = anyio.Event()
            delay = self._heap[0][0] - anyio.current_time() if self._heap else None
            # Never sleep less than a virtual clock can resolve, or it would never move on.
            with anyio.move_on_after(None if delay is None else max(delay, _MIN_SLEEP)):
                await self._wake.wait()

    def _promote(self, now: float) -> None:
        """Move due heap entries into the ready queue, ranked by how likely they are done."""
        while self._heap and self._heap[0][0] <= now:
            due, sequence, job_id = heapq.heappop(self._heap)
            tracker = self.trackers[job_id]
            if sequence != tracker.sequence:
                continue  # superseded by a later schedule
            if not self._wanted(tracker):
                tracker.due = None  # nobody waits any more: a new waiter schedules afresh
                continue
            if tracker.pushed is None and not (tracker.webhook and self.push_healthy):
                later = self.planner.still_due(tracker, due, now)
                if later is not None:  # the evidence moved this job's first look later
                    self._schedule(tracker, later)
                    continue
            heapq.heappush(self._ready, (-self._chance(tracker, now), sequence, job_id))

    def _chance(self, tracker: _Tracker, now: float) -> float:
        return self.planner.chance(tracker, now)

    def _rerank(self, now: float) -> None:
        """Rank waiting jobs by their chance *now*: it grows while they wait for a turn."""
        if len(self._ready) > 1 and now - self._ranked_at >= _RERANK_EVERY:
            self._ready = [
                (-self._chance(self.trackers[job_id], now), sequence, job_id)
                for _, sequence, job_id in self._ready
            ]
            heapq.heapify(self._ready)
            self._ranked_at = now

    def _pick(self) -> _Tracker | None:
        self._rerank(anyio.current_time())
        while self._ready:
            _, sequence, job_id = heapq.heappop(self._ready)
            tracker = self.trackers[job_id]
            if sequence != tracker.sequence:
                continue
            tracker.due = None
            if self._wanted(tracker):
                return tracker
        return None

    def _wanted(self, tracker: _Tracker) -> bool:
        return tracker.interest > 0 and not tracker.terminal and not tracker.in_flight

    def _schedule(self, tracker: _Tracker, when: float) -> None:
        earliest = self._heap[0][0] if self._heap else float("inf")
        tracker.sequence += 1
        tracker.due = when
        heapq.heappush(self._heap, (when, tracker.sequence, tracker.id))
        if when < earliest:
            self._wake.set()

    def _first_look(self, tracker: _Tracker) -> float:
        now = anyio.current_time()
        if tracker.pushed in _ENDED:
            return self._after_push(tracker, now)
        if tracker.info is None or not tracker.age_known:
            return now
        return self._next_look(tracker, now)

    def _next_look(self, tracker: _Tracker, now: float) -> float:
        if tracker.pushed in _ENDED:
            # A callback said it ended and Akool's info does not show it yet: look again soon.
            return now + self.planner.quadrant_recheck()
        if tracker.webhook and self.push_healthy:
            # The callback will say when it ends; polls are only a safety net for a lost one.
            return self.planner.safety_net(tracker, now)
        return self.planner.next_look(tracker, now)

    def _missed_push(self, tracker: _Tracker) -> None:
        """A safety-net poll found a job ended that no callback announced."""
        if not tracker.webhook or tracker.pushed is not None:
            return
        if not self.planner.push_missed():
            return
        logger.warning(
            "%d jobs ended without a webhook callback: polling as usual until callbacks arrive",
            self.planner.missed_pushes,
        )
        now = anyio.current_time()
        for other in self.trackers.values():
            if other.webhook and self._wanted(other) and other.due is not None:
                self._schedule(other, min(other.due, self._next_look(other, now)))

    # -- one poll ---------------------------------------------------------------------------

    async def _poll(self, tracker: _Tracker, turn: Turn) -> None:
        self.status_requests += 1
        tracker.polls += 1
        try:
            info = await self._wire.call(
                "GET",
                INFO_PATH,
                params={"image_model_id": tracker.id},
                decode=ImageInfo.from_wire,
                retry=_ONE_ATTEMPT,
                paced=True,
            )
        except (TransportError, RateLimited, InvalidResponse) as error:
            # A failed status read never fails a job: look again after a backoff.
            tracker.failures += 1
            retry_after = (
                error.retry_after if isinstance(error, TooManyRequests | RateLimited) else None
            )
            delay = self.planner.backoff(tracker.failures, retry_after)
            logger.debug("status read of %s failed (%s); again in %.1f s", tracker.id, error, delay)
            self._reschedule(tracker, anyio.current_time() + delay)
            return
        except APIError as error:
            # A definite refusal (unknown id, no permission): waiting longer cannot help.
            self._reschedule(tracker, None)
            self._end_round(tracker, error)
            return
        except Exception as error:  # a bug must reach the waiters, not kill the session
            logger.exception("unexpected error while polling job %s", tracker.id)
            self._reschedule(tracker, None)
            failure = AkoolError(f"unexpected error while polling job {tracker.id}: {error!r}")
            failure.__cause__ = error
            self._end_round(tracker, failure)
            return
        finally:
            self._wire.pace.release(turn)
            tracker.in_flight = False
        tracker.failures = 0
        self.observe(tracker, info)

    def _reschedule(self, tracker: _Tracker, when: float | None) -> None:
        tracker.in_flight = False
        if when is None or tracker.terminal or tracker.interest <= 0:
            tracker.due = None
            return
        self._schedule(tracker, when)

    def observe(self, tracker: _Tracker, info: ImageInfo) -> None:
        """Take in what Akool said about a job, from a poll (or, later, a webhook)."""
        now = anyio.current_time()
        age = now - tracker.born
        previous = tracker.info
        tracker.info = info
        if tracker.kind is None:
            tracker.kind = _kind_of(info)
        changed = previous is None or previous.status is not info.status
        if changed and info.status in _PENDING_EVENTS:
            self._emit(JobEvent(tracker.id, _PENDING_EVENTS[info.status], info, now))
        if info.status in _ENDED:
            self._missed_push(tracker)
        if info.status is ImageStatus.FAILED:
            self._emit(JobEvent(tracker.id, "failed", info, now))
            self._finish(tracker, JobFailed(info))
            return
        if info.is_result_ready:
            self._learn(tracker, age, now)
            self._emit(JobEvent(tracker.id, "completed", info, now))
            self._finish(tracker, info)
            return
        if info.status is ImageStatus.COMPLETED:
            # Akool's grid quirk: "completed" before the four quadrants are filled in.
            if tracker.completed_seen is None:
                tracker.completed_seen = now
            waited = now - tracker.completed_seen
            if waited >= self.planner.quadrant_limit():
                logger.warning(
                    "job %s has been completed for %.0f s without its quadrant images; "
                    "returning it as it is",
                    tracker.id,
                    waited,
                )
                self._emit(JobEvent(tracker.id, "completed", info, now))
                self._finish(tracker, info)
                return
            self._saw_running(tracker, age)
            self._reschedule(tracker, now + self.planner.quadrant_recheck())
            return
        self._saw_running(tracker, age)
        self._reschedule(tracker, self._next_look(tracker, now))

    def _saw_running(self, tracker: _Tracker, age: float) -> None:
        self.planner.saw_running(tracker, age)
        tracker.last_unfinished_age = age

    def _learn(self, tracker: _Tracker, age: float, now: float) -> None:
        if tracker.completed_seen is not None:
            self.planner.learn_quadrant_lag(now - tracker.completed_seen)
        self.planner.saw_done(tracker, age)
        # A job seen done earlier than the law allowed pulls the held jobs of its kind forward.
        for other in self.planner.moved_earlier():
            if isinstance(other, _Tracker) and other is not tracker and self._wanted(other):
                self._schedule(other, self._next_look(other, now))

    def _finish(self, tracker: _Tracker, outcome: ImageInfo | AkoolError) -> None:
        tracker.terminal = True
        tracker.due = None
        tracker.sequence += 1
        self.planner.forget(tracker)
        self._end_round(tracker, outcome)

    def _end_round(self, tracker: _Tracker, outcome: ImageInfo | AkoolError) -> None:
        round_ = tracker.round
        round_.finish(outcome)
        if not tracker.terminal:
            tracker.round = _Round()
        for listener in list(tracker.listeners):
            listener(tracker, outcome)


def _kind_of(info: ImageInfo) -> JobKind:
    button = (info.op_button or "").upper()
    if button.startswith("U"):
        return JobKind.UPSCALE
    if button.startswith("V"):
        return JobKind.VARIATION
    return JobKind.GRID


def _unwrap(outcome: ImageInfo | AkoolError | None) -> ImageInfo:
    if isinstance(outcome, ImageInfo):
        return outcome
    if outcome is None:  # pragma: no cover - a round only ends with an outcome
        raise RuntimeError("a wait ended without an outcome")
    # A copy per waiter: raising one exception object from many tasks tangles tracebacks.
    raise _copy_error(outcome)


def _copy_error(error: AkoolError) -> AkoolError:
    copy: Any = error.__reduce__()
    rebuilt: AkoolError = copy[0](*copy[1])
    rebuilt.__cause__ = error.__cause__
    return rebuilt
