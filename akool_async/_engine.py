"""The engine: one poll loop for every job the session watches, and the waiters on them.

Each job has a `Tracker` (what is known, who waits, when to look next). The loop keeps a heap
of due times; when a poll is due and the `Pace` grants a turn, the most promising due job (the
one most likely to have finished since it was last seen) is handed, with the turn, to one of a
fixed set of poll workers, which asks the wire for the status read. A read's answer updates the
tracker, tells its waiters, emits progress events, and schedules the next look. Jobs nobody waits
on are not polled, but never forgotten: their tracker keeps what was last seen.

The engine decides *when* (with the planner) and *whom* to look at; how a read is sent, retried
and decoded is the wire's.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._constants import MIN_SLEEP, RERANK_EVERY
from ._errors import (
    AkoolError,
    APIError,
    InvalidResponse,
    JobFailed,
    RateLimited,
    SessionClosed,
    TooManyRequests,
    TransportError,
    WaitTimeout,
)
from ._models import ImageInfo, ImageStatus, JobKind
from ._pace import Turn
from ._polling import Planner
from ._tracker import (
    ENDED,
    PENDING_EVENTS,
    JobEvent,
    Listener,
    Outcome,
    Round,
    SessionStats,
    Tracker,
    unwrap,
)
from ._wire import Wire

__all__ = ["Engine"]

logger = logging.getLogger("akool_async")

_Poll = tuple[Tracker, Turn]


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
        self._trackers: dict[str, Tracker] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._ready: list[tuple[float, int, str]] = []
        self._wake = anyio.Event()
        self._ranked_at = 0.0
        self._closed = False
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
        return SessionStats(
            status_requests=self.status_requests,
            jobs_tracked=len(self._trackers),
            webhook_jobs=self.webhook_jobs,
            pushes=self.pushes,
            missed_pushes=self.planner.missed_pushes,
            push_healthy=self.planner.push_healthy,
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
            tracker = Tracker(job_id, kind=kind, born=anyio.current_time(), age_known=created)
            tracker.webhook = webhook
            self.webhook_jobs += webhook
            self._trackers[job_id] = tracker
            if info is not None:
                tracker.info = info
                if created:
                    self._emit(JobEvent(job_id, "created", info, tracker.born))
                if info.status in PENDING_EVENTS:
                    self._emit(JobEvent(job_id, PENDING_EVENTS[info.status], info, tracker.born))
        elif kind is not None and tracker.kind is None:
            tracker.kind = kind
        return tracker

    def final(self, job_id: str) -> Outcome | None:
        """What the job ended with (its info, or the error); None while it goes on."""
        return self.track(job_id).final

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

    def claimed(self, job_id: str, button: str) -> bool:
        """Whether this session has pressed (or is pressing) ``button`` on the job."""
        tracker = self._trackers.get(job_id)
        return tracker is not None and button in tracker.pressed

    def claim_button(self, job_id: str, button: str) -> None:
        """Claim ``button`` on the job before pressing it, so a concurrent press is refused."""
        self.track(job_id).pressed.add(button)

    def unclaim_button(self, job_id: str, button: str) -> None:
        """Give back a claim whose press provably did not reach Akool."""
        self.track(job_id).pressed.discard(button)

    async def wait(self, job_id: str, timeout: float | None) -> ImageInfo:  # noqa: ASYNC109
        """Wait for the job's complete result; see `ImageJob.wait`."""
        tracker = self.track(job_id)
        if self._closed:
            raise SessionClosed("the session is closed")
        if tracker.terminal:
            return unwrap(tracker.round.outcome)
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
            return unwrap(round_.outcome)
        finally:
            tracker.interest -= 1

    def add_listener(self, job_id: str, listener: Listener) -> Callable[[], None]:
        """Call ``listener(outcome)`` whenever a round of the job ends; returns a remover.

        The outcome is the `ImageInfo`, or the `AkoolError` the round ended with (`JobFailed`,
        a definite refusal, `SessionClosed`).
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
            self._schedule(tracker, self._after_push(tracker, now))
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
        for tracker in self._trackers.values():
            if not tracker.terminal:
                self._end_round(
                    tracker, SessionClosed("the session closed before the job finished")
                )

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
            if self._ready:
                return
            self._wake = anyio.Event()
            delay = self._heap[0][0] - anyio.current_time() if self._heap else None
            # Never sleep less than a virtual clock can resolve, or it would never move on.
            with anyio.move_on_after(None if delay is None else max(delay, MIN_SLEEP)):
                await self._wake.wait()

    def _promote(self, now: float) -> None:
        """Move due heap entries into the ready queue, ranked by how likely they are done."""
        while self._heap and self._heap[0][0] <= now:
            due, sequence, job_id = heapq.heappop(self._heap)
            tracker = self._trackers[job_id]
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

    def _chance(self, tracker: Tracker, now: float) -> float:
        return self.planner.chance(tracker, now)

    def _rerank(self, now: float) -> None:
        """Rank waiting jobs by their chance *now*: it grows while they wait for a turn."""
        if len(self._ready) > 1 and now - self._ranked_at >= RERANK_EVERY:
            self._ready = [
                (-self._chance(self._trackers[job_id], now), sequence, job_id)
                for _, sequence, job_id in self._ready
            ]
            heapq.heapify(self._ready)
            self._ranked_at = now

    def _pick(self) -> Tracker | None:
        self._rerank(anyio.current_time())
        while self._ready:
            _, sequence, job_id = heapq.heappop(self._ready)
            tracker = self._trackers[job_id]
            if sequence != tracker.sequence:
                continue
            tracker.due = None
            if self._wanted(tracker):
                return tracker
        return None

    def _wanted(self, tracker: Tracker) -> bool:
        return tracker.interest > 0 and not tracker.terminal and not tracker.in_flight

    def _schedule(self, tracker: Tracker, when: float) -> None:
        earliest = self._heap[0][0] if self._heap else float("inf")
        tracker.sequence += 1
        tracker.due = when
        heapq.heappush(self._heap, (when, tracker.sequence, tracker.id))
        if when < earliest:
            self._wake.set()

    def _first_look(self, tracker: Tracker) -> float:
        now = anyio.current_time()
        if tracker.pushed in ENDED:
            return self._after_push(tracker, now)
        if tracker.info is None or not tracker.age_known:
            return now
        return self._next_look(tracker, now)

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
        for other in self._trackers.values():
            if other.webhook and self._wanted(other) and other.due is not None:
                self._schedule(other, min(other.due, self._next_look(other, now)))

    # -- one poll ---------------------------------------------------------------------------

    async def _poll(self, tracker: Tracker, turn: Turn) -> None:
        self.status_requests += 1
        tracker.polls += 1
        try:
            info = await self._wire.read_info(tracker.id, turn=turn)
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
            tracker.in_flight = False
        tracker.failures = 0
        self.observe(tracker, info)

    def _reschedule(self, tracker: Tracker, when: float | None) -> None:
        tracker.in_flight = False
        if when is None or tracker.terminal or tracker.interest <= 0:
            tracker.due = None
            return
        self._schedule(tracker, when)

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
                self._schedule(other, self._next_look(other, now))

    def _finish(self, tracker: Tracker, outcome: Outcome) -> None:
        tracker.terminal = True
        tracker.due = None
        tracker.sequence += 1
        self.planner.forget(tracker)
        self._end_round(tracker, outcome)

    def _end_round(self, tracker: Tracker, outcome: Outcome) -> None:
        round_ = tracker.round
        round_.finish(outcome)
        if not tracker.terminal:
            tracker.round = Round()
        for listener in list(tracker.listeners):
            listener(outcome)
