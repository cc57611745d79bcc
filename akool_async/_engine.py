"""The engine: one poll loop for every job the session watches, and the waiters on them.

Each job has a `Tracker` (what is known, who waits, when to look next), held in a bounded
`TrackerTable`. The loop keeps a heap of due times; when a poll is due and the `Pace` grants a
turn, the most promising due job (the one most likely to have finished since it was last seen)
is handed, with the turn, to one of a fixed set of poll workers, which asks the wire for the
status read. A read's answer updates the tracker, tells its waiters, emits progress events, and
schedules the next look. Jobs nobody waits on are not polled; an ended job's tracker is let go
of soon after nobody waits on it any more (a handle reads the job afresh).

Nothing in the loop can end it: a failed read, however long the failures last, and even a bug
in one poll are logged (once per job and kind), reported to the job's waiters (a ``read_failed``
event, and `WaitTimeout.last_error`), and the job is read again after a backoff.

The engine decides *when* (with the planner) and *whom* to look at; how a read is sent, retried
and decoded is the wire's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._claims import ButtonClaims
from ._constants import ENDED_JOBS_KEPT, ENDED_JOBS_KEPT_FOR, UNWATCHED_JOBS_KEPT_FOR
from ._errors import (
    APIError,
    JobFailed,
    RateLimited,
    SessionClosed,
    TooManyRequests,
    WaitTimeout,
)
from ._models import ImageInfo, ImageStatus, JobKind
from ._pace import Turn
from ._polling import Planner
from ._schedule import Schedule
from ._tracker import (
    ENDED,
    PENDING_EVENTS,
    JobEvent,
    Listener,
    Outcome,
    Reports,
    Round,
    SessionStats,
    Tracker,
    TrackerTable,
    unwrap,
)
from ._wire import Wire

__all__ = ["Engine"]

logger = logging.getLogger("akool_async")

_Poll = tuple[Tracker, Turn]
T = TypeVar("T")


class Engine:
    """Tracks jobs, runs the poll loop, and resolves waiters. Owned by one `AkoolSession`."""

    def __init__(
        self,
        wire: Wire,
        planner: Planner,
        emit: Callable[[JobEvent], None],
        *,
        workers: int,
    ) -> None:
        self._wire = wire
        self._pace = wire.pace
        self.planner = planner
        self._emit = emit
        self._workers = workers
        self._trackers = TrackerTable(
            keep_ended=ENDED_JOBS_KEPT,
            ended_for=ENDED_JOBS_KEPT_FOR,
            unwatched_for=UNWATCHED_JOBS_KEPT_FOR,
            forget=self._forget,
        )
        self._schedule = Schedule(self._trackers, self._chance)
        self.buttons = ButtonClaims(self._trackers, self.track, self._settle)
        """Buttons this session pressed or is pressing, so none is pressed twice."""
        self._closed = False
        self.reports = Reports(emit, max_interval=planner.policy.max_interval)
        """Failed reads and orphaned creates, counted and told."""
        self.status_requests = 0
        """Status reads sent so far."""
        self.pushes = 0
        """Verified callbacks taken in, for jobs this session follows."""
        self.webhook_jobs = 0
        """Jobs created with the session's own webhook URL."""

    @property
    def push_healthy(self) -> bool:
        """False while callbacks seem lost and jobs are polled as usual."""
        return self.planner.push_healthy

    def stats(self) -> SessionStats:
        """The figures `AkoolSession.stats` reports."""
        self._trackers.sweep(anyio.current_time())
        reports = self.reports
        return SessionStats(
            status_requests=self.status_requests,
            jobs_tracked=len(self._trackers),
            jobs_evicted=self._trackers.evicted,
            webhook_jobs=self.webhook_jobs,
            pushes=self.pushes,
            missed_pushes=self.planner.missed_pushes,
            push_healthy=self.planner.push_healthy,
            failed_reads=reports.failed_reads,
            jobs_unreadable=reports.unreadable,
            orphaned_creates=len(reports.orphans),
        )

    # -- tracking ---------------------------------------------------------------------------

    def track(
        self,
        job_id: str,
        *,
        kind: JobKind | None = None,
        info: ImageInfo | None = None,
        created: bool = False,
        webhook: bool = False,
    ) -> Tracker:
        """The tracker for ``job_id``, made on first sight. ``created``: this session made it;
        ``webhook``: with the session's webhook URL, so a callback will say when it ends."""
        tracker = self._trackers.get(job_id)
        if tracker is None:
            now = anyio.current_time()
            tracker = Tracker(job_id, kind=kind, born=now, age_known=created)
            tracker.webhook = webhook
            self.webhook_jobs += webhook
            if info is not None:
                tracker.info = info
                if created:
                    self._emit(JobEvent(job_id, "created", info, now))
                if info.status in PENDING_EVENTS:
                    self._emit(JobEvent(job_id, PENDING_EVENTS[info.status], info, now))
            self._trackers.add(tracker, now)
        elif kind is not None and tracker.kind is None:
            tracker.kind = kind
        return tracker

    def final(self, job_id: str) -> Outcome | None:
        """What the job ended with (its info, or the error); None while it goes on (or when
        this session no longer holds it)."""
        tracker = self._trackers.get(job_id)
        return tracker.final if tracker is not None else None

    def last_seen(self, job_id: str) -> ImageInfo | None:
        """The job as last seen by this session; None if it has not been read (or tracked)."""
        tracker = self._trackers.get(job_id)
        return tracker.info if tracker is not None else None

    def uses_webhook(self, job_id: str) -> bool:
        """Whether the job was created with the session's own webhook URL."""
        tracker = self._trackers.get(job_id)
        return tracker is not None and tracker.webhook

    def take_in(self, job_id: str, info: ImageInfo) -> None:
        """Take in a read made outside the poll loop (``ImageJob.refresh``): waiters learn from
        it as from a poll. A job that already ended keeps its outcome."""
        tracker = self.track(job_id)
        if not tracker.terminal:
            self.observe(tracker, info)
        self._settle(tracker)

    async def wait(self, job_id: str, timeout: float | None) -> ImageInfo:  # noqa: ASYNC109
        """Wait for the job's complete result; see `ImageJob.wait`."""
        if self._closed:
            raise SessionClosed("the session is closed")
        tracker = self.track(job_id)
        if tracker.terminal:
            return unwrap(tracker.round.outcome)
        tracker.interest += 1
        try:
            round_ = tracker.round
            if tracker.due is None and not tracker.in_flight:
                self._at(tracker, self._first_look(tracker))
            if timeout is None:
                await round_.wait()  # no cancel scope per job when there is no deadline
            else:
                try:
                    with anyio.fail_after(timeout):
                        await round_.wait()
                except TimeoutError:
                    raise WaitTimeout(job_id, timeout, last_error=tracker.last_error) from None
            return unwrap(round_.outcome)
        finally:
            tracker.interest -= 1
            self._settle(tracker)

    def add_listener(self, job_id: str, listener: Listener) -> Callable[[], None]:
        """Call ``listener(outcome)`` whenever a round of the job ends; returns a remover.

        The outcome is the `ImageInfo`, or the `AkoolError` the round ended with (`JobFailed`,
        a definite refusal, `SessionClosed`). The job's tracker is kept until it is removed.
        """
        tracker = self.track(job_id)
        tracker.listeners.append(listener)

        def remove() -> None:
            if listener in tracker.listeners:
                tracker.listeners.remove(listener)
                self._settle(tracker)

        return remove

    def hold(self, job_id: str) -> Callable[[], None]:
        """Keep the job polled, as a waiter would, until the returned release is called."""
        tracker = self.track(job_id)
        tracker.interest += 1
        if not tracker.terminal and tracker.due is None and not tracker.in_flight:
            self._at(tracker, self._first_look(tracker))
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                tracker.interest -= 1
                self._settle(tracker)

        return release

    def push(self, job_id: str, status: ImageStatus) -> bool:
        """Take in a verified webhook callback: the job reached ``status``.

        A job that ended is read once (the callback carries no quadrants, no buttons) as soon
        as someone waits on it, at once if someone already does. Returns False for a job this
        session does not hold.
        """
        tracker = self._trackers.get(job_id)
        if tracker is None:
            return False
        self.pushes += 1
        if self.planner.push_arrived():
            logger.info("webhook callbacks arrive again: polling only as a safety net")
        if status not in ENDED or tracker.terminal:
            return True
        now = anyio.current_time()
        tracker.pushed = status
        if status is ImageStatus.COMPLETED and tracker.completed_seen is None:
            tracker.completed_seen = now
        if tracker.interest > 0 and not tracker.in_flight:
            self._at(tracker, self._after_push(tracker, now))
        return True

    def _after_push(self, tracker: Tracker, now: float) -> float:
        return self.planner.after_push(
            kind=tracker.job_kind,
            completed=tracker.pushed is ImageStatus.COMPLETED,
            completed_at=tracker.completed_seen if tracker.completed_seen is not None else now,
            now=now,
        )

    def close(self) -> None:
        """End every open round with `SessionClosed`; the jobs go on at Akool."""
        self._closed = True
        for tracker in self._trackers:
            if not tracker.terminal:
                self._end_round(
                    tracker, SessionClosed("the session closed before the job finished")
                )

    def _settle(self, tracker: Tracker) -> None:
        self._trackers.settle(tracker, anyio.current_time())

    def _forget(self, tracker: Tracker) -> None:
        """An evicted tracker: nothing else may keep it, and its failures count no more."""
        self.planner.forget(tracker)
        self.reports.forgotten(tracker)

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll due jobs until cancelled, most promising first, as the pace allows.

        A fixed set of workers sends the reads, one per request slot: the pace never grants
        more turns than there are slots, so a picked job always finds a worker, and no task is
        started per poll.
        """
        send, receive = anyio.create_memory_object_stream[_Poll](self._workers)
        async with anyio.create_task_group() as workers, send, receive:
            for _ in range(self._workers):
                workers.start_soon(self._poll_worker, receive)
            await self._hand_out(send)

    async def _hand_out(self, polls: MemoryObjectSendStream[_Poll]) -> None:
        pace = self._pace
        while True:
            await self._await_due()
            turn = await pace.acquire()
            tracker = self._pick()
            if tracker is None:
                pace.release(turn)
                continue
            tracker.in_flight = True
            try:
                polls.send_nowait((tracker, turn))
            except anyio.WouldBlock:  # pragma: no cover - a turn per slot, a worker per slot
                await polls.send((tracker, turn))

    async def _poll_worker(self, polls: MemoryObjectReceiveStream[_Poll]) -> None:
        async for tracker, turn in polls:
            await self._poll(tracker, turn)

    async def _await_due(self) -> None:
        while True:
            self._promote(anyio.current_time())
            if self._schedule.ready:
                return
            await self._schedule.sleep()

    def _promote(self, now: float) -> None:
        """Queue the jobs now due for a turn, unless nobody waits or the evidence moved them."""
        for tracker, due in self._schedule.due(now):
            if not self._wanted(tracker):
                tracker.due = None  # nobody waits any more: a new waiter schedules afresh
                continue
            if tracker.pushed is None and not (tracker.webhook and self.push_healthy):
                later = self._guarded(tracker, partial(self._still_due, tracker, due, now))
                if later is not None:  # the evidence moved this job's first look later
                    self._at(tracker, later)
                    continue
            self._schedule.make_ready(tracker, now)

    def _still_due(self, tracker: Tracker, due: float, now: float) -> float | None:
        return self.planner.still_due(tracker, due, now)

    def _chance(self, tracker: Tracker, now: float) -> float:
        chance = self._guarded(tracker, lambda: self.planner.chance(tracker, now))
        return chance if chance is not None and math.isfinite(chance) else 0.5

    def _guarded(self, tracker: Tracker, plan: Callable[[], T]) -> T | None:
        """A planner's answer about one job; None (and a log line) if the planner failed."""
        try:
            return plan()
        except Exception as error:  # noqa: BLE001 - one job's bad plan must not stop the loop
            self.reports.log_once(tracker, error)
            return None

    def _pick(self) -> Tracker | None:
        return self._schedule.pick(anyio.current_time(), self._wanted)

    def _wanted(self, tracker: Tracker) -> bool:
        return tracker.interest > 0 and not tracker.terminal and not tracker.in_flight

    def _at(self, tracker: Tracker, when: float) -> None:
        if not math.isfinite(when):  # a NaN or an infinity would corrupt the heap's order
            when = anyio.current_time() + self.planner.policy.max_interval
        self._schedule.at(tracker, when)

    def _first_look(self, tracker: Tracker) -> float:
        now = anyio.current_time()
        if tracker.pushed in ENDED:
            return self._after_push(tracker, now)
        if tracker.info is None or not tracker.age_known:
            return now
        when = self._guarded(tracker, lambda: self._next_look(tracker, now))
        return now if when is None else when

    def _next_look(self, tracker: Tracker, now: float) -> float:
        if tracker.pushed in ENDED:
            # A callback said it ended and Akool's info does not show it yet: look again soon.
            return now + self.planner.quadrant_recheck()
        if tracker.webhook and self.push_healthy:
            # The callback will say when it ends; polls are only a safety net for a lost one.
            return self.planner.safety_net(tracker, now)
        return self.planner.next_look(tracker, now)

    def _missed_push(self, tracker: Tracker) -> None:
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
        for other in self._trackers:
            if other.webhook and self._wanted(other) and other.due is not None:
                self._at(other, min(other.due, self._next_look(other, now)))

    # -- one poll ---------------------------------------------------------------------------

    async def _poll(self, tracker: Tracker, turn: Turn) -> None:
        """One status read and what follows from it. Raises nothing but cancellation."""
        self.status_requests += 1
        tracker.polls += 1
        try:
            try:
                info = await self._wire.read_info(tracker.id, turn=turn)
            finally:
                tracker.in_flight = False
            self.reports.read_answered(tracker)
            self.observe(tracker, info)
        except RateLimited as error:
            self._read_failed(tracker, error)
        except APIError as error:
            # A definite refusal (unknown id, no permission): waiting longer cannot help.
            self.reports.read_answered(tracker)
            self._reschedule(tracker, None)
            self._end_round(tracker, error)
        except Exception as error:  # noqa: BLE001 - an outage, or a bug: never the loop's end
            self._read_failed(tracker, error)
        finally:
            self._settle(tracker)

    def _read_failed(self, tracker: Tracker, error: Exception) -> None:
        """A read failed (or what followed it did): report it, and look again after a backoff.

        However long the failures last, the job stays waitable: its waiters see the error in a
        ``read_failed`` event and in `WaitTimeout.last_error`.
        """
        now = anyio.current_time()
        self.reports.read_failed(tracker, error, now)
        retry_after = (
            error.retry_after if isinstance(error, TooManyRequests | RateLimited) else None
        )
        delay = self._guarded(tracker, lambda: self.planner.backoff(tracker.failures, retry_after))
        if delay is None or not 0 <= delay < math.inf:
            delay = self.planner.policy.max_interval
        self._reschedule(tracker, now + delay)

    def _reschedule(self, tracker: Tracker, when: float | None) -> None:
        tracker.in_flight = False
        if when is None or tracker.terminal or tracker.interest <= 0:
            tracker.due = None
            return
        self._at(tracker, when)

    def observe(self, tracker: Tracker, info: ImageInfo) -> None:
        """Take in what Akool said about a job, from a status read."""
        now = anyio.current_time()
        age = now - tracker.born
        previous = tracker.info
        tracker.info = info
        if tracker.kind is None:
            tracker.kind = JobKind.of_info(info)
        changed = previous is None or previous.status is not info.status
        if changed and info.status in PENDING_EVENTS:
            self._emit(JobEvent(tracker.id, PENDING_EVENTS[info.status], info, now))
        if info.status in ENDED:
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

    def _saw_running(self, tracker: Tracker, age: float) -> None:
        self.planner.saw_running(tracker, age)
        tracker.last_unfinished_age = age

    def _learn(self, tracker: Tracker, age: float, now: float) -> None:
        if tracker.completed_seen is not None:
            self.planner.learn_quadrant_lag(now - tracker.completed_seen)
        self.planner.saw_done(tracker, age)
        # A job seen done earlier than the law allowed pulls the held jobs of its kind forward.
        for other in self.planner.moved_earlier():
            if isinstance(other, Tracker) and other is not tracker and self._wanted(other):
                self._at(other, self._next_look(other, now))

    def _finish(self, tracker: Tracker, outcome: Outcome) -> None:
        tracker.terminal = True
        self._schedule.cancel(tracker)
        self.planner.forget(tracker)
        self._end_round(tracker, outcome)
        self._settle(tracker)

    def _end_round(self, tracker: Tracker, outcome: Outcome) -> None:
        round_ = tracker.round
        round_.finish(outcome)
        if not tracker.terminal:
            tracker.round = Round()
        for listener in list(tracker.listeners):
            try:
                listener(outcome)
            except Exception:  # a listener's bug must not stop the job's other listeners
                logger.exception("a listener on job %s failed", tracker.id)
