"""What the engine knows about one job (`Tracker`), which jobs it keeps (`TrackerTable`), and one
wait for an outcome (`Round`); what it reports: progress events (`JobEvent`) and the session's
figures (`SessionStats`)."""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterator
from typing import Any, Final, Literal

import anyio
import attrs

from ._errors import AkoolError, SubmissionUnknown
from ._models import ImageInfo, ImageStatus, JobKind

__all__ = [
    "ENDED",
    "PENDING_EVENTS",
    "EventKind",
    "JobEvent",
    "Listener",
    "Outcome",
    "Reports",
    "Round",
    "SessionStats",
    "Tracker",
    "TrackerTable",
    "unwrap",
]

logger = logging.getLogger("akool_async")

EventKind = Literal[
    "created", "queueing", "processing", "completed", "failed", "read_failed", "orphaned"
]
Outcome = ImageInfo | AkoolError
"""How a round ends: the job's complete info, or the error it ended with."""
Listener = Callable[[Outcome], None]
"""Called with each round's outcome, synchronously, as the round ends."""

ENDED: Final = frozenset({ImageStatus.COMPLETED, ImageStatus.FAILED})
PENDING_EVENTS: Final[dict[ImageStatus, EventKind]] = {
    ImageStatus.QUEUEING: "queueing",
    ImageStatus.PROCESSING: "processing",
}


@attrs.frozen
class JobEvent:
    """A change in a job's life, for progress bars and logs.

    Kinds: ``created``, ``queueing``, ``processing``, ``completed`` and ``failed`` follow the
    job's own life. ``read_failed``: a status read of the job failed (an outage, a throttle, a
    garbled answer); ``error`` says why, and the job is read again after a backoff, however long
    the failures last. ``orphaned``: the job was created for a caller that was cancelled while
    its create was in flight; it runs (and is paid for) at Akool, and
    `AkoolSession.orphaned_creates` keeps a handle on it.

    Attributes:
        job_id: The job.
        kind: What happened (above).
        info: What Akool last said about the job; None only for a ``read_failed`` job this
            session has never read.
        at: The session's clock (``anyio.current_time()``) when it was seen.
        error: For ``read_failed``, the error the read ended with; else None.
    """

    job_id: str
    kind: EventKind
    info: ImageInfo | None
    at: float
    error: AkoolError | None = None


@attrs.frozen(kw_only=True)
class SessionStats:
    """What a session has done and what it follows, at one moment (`AkoolSession.stats`).

    For dashboards, logs and tests; every figure is cheap to read.

    Attributes:
        status_requests: Status reads the session's engine has sent (not counting
            `AkoolSession.get_image_info` or `ImageJob.refresh`).
        jobs_tracked: Jobs the session holds in memory now: those in play (created, waited
            on, followed), and ended ones for a short while after nobody waits on them any
            more. It falls back to 0 when the session is idle: memory stays flat however many
            jobs a long-lived session has seen.
        jobs_evicted: Jobs let go of so far: ended ones after their grace, unfinished ones
            nobody waited on for a day. Their handles keep working; a later ``wait()`` reads
            the job once.
        webhook_jobs: Jobs created with the session's own webhook URL, whose end a callback
            announces.
        pushes: Verified callbacks taken in for jobs the session follows.
        missed_pushes: Webhook jobs a safety-net read found ended before any callback said so;
            it stops counting once `push_healthy` is False.
        push_healthy: False once callbacks seem lost: webhook jobs are then polled as usual.
        failed_reads: Status reads that failed (transport errors, throttles, bad answers);
            each is tried again after a backoff.
        jobs_unreadable: Jobs whose last status read failed: above 0 during an outage.
        orphaned_creates: Creates whose caller was cancelled while they were in flight, and
            which reached (or may have reached) Akool: `AkoolSession.orphaned_creates`.
    """

    status_requests: int = 0
    jobs_tracked: int = 0
    jobs_evicted: int = 0
    webhook_jobs: int = 0
    pushes: int = 0
    missed_pushes: int = 0
    push_healthy: bool = True
    failed_reads: int = 0
    jobs_unreadable: int = 0
    orphaned_creates: int = 0


class Round:
    """One wait for an outcome; a fatal read error ends a round without ending the job.

    The event is made only when someone waits: thousands of jobs followed through listeners
    (`as_completed`) or never waited on should not each carry one.
    """

    __slots__ = ("_event", "finished", "outcome")

    def __init__(self) -> None:
        self._event: anyio.Event | None = None
        self.finished = False
        self.outcome: Outcome | None = None

    async def wait(self) -> None:
        if self.finished:
            return
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()

    def finish(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.finished = True
        if self._event is not None:
            self._event.set()


class Tracker:
    """Everything the session knows about one job. The planner reads it as its `JobFacts`."""

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
        "last_error",
        "last_unfinished_age",
        "listeners",
        "polls",
        "pressed",
        "pressing",
        "pushed",
        "reported",
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
        self.round = Round()
        self.terminal = False
        self.interest = 0
        self.due: float | None = None
        self.sequence = 0
        self.last_unfinished_age: float | None = None
        self.completed_seen: float | None = None
        self.failures = 0
        self.last_error: AkoolError | None = None  # why the last status read failed, if it did
        self.reported: set[type[BaseException]] | None = None  # failure kinds already logged
        self.polls = 0
        self.in_flight = False
        self.pressed: set[str] = set()  # buttons claimed by this session
        self.pressing: set[str] = set()  # buttons whose press is in flight
        self.listeners: list[Listener] = []
        self.webhook = False  # created with the session's own webhook URL
        self.pushed: ImageStatus | None = None  # the last status a callback brought

    @property
    def job_kind(self) -> JobKind:
        return self.kind if self.kind is not None else JobKind.GRID

    @property
    def looks(self) -> int:
        return self.polls

    @property
    def final(self) -> Outcome | None:
        """The outcome the job ended with, once it has ended."""
        return self.round.outcome if self.terminal else None

    @property
    def idle(self) -> bool:
        """Nobody waits on, follows or presses a button of the job, and no read is in flight."""
        return not (self.interest or self.listeners or self.pressing or self.in_flight)


class TrackerTable:
    """The trackers an engine holds, by job id: every job in play, and for a while the idle ones.

    An idle tracker (see `Tracker.idle`) is kept for a grace: an ended one so that a wait right
    after the end costs no request (at most ``keep_ended`` of them, each for ``ended_for``
    seconds), an unfinished one so that a later wait knows its age (for ``unwatched_for``
    seconds). Then it is evicted, and a later wait reads the job afresh. What the planner
    learned from a job is aggregated as it is seen, so evicting its tracker loses none of it.

    Args:
        keep_ended: Idle ended trackers kept at most.
        ended_for: Seconds an idle ended tracker is kept.
        unwatched_for: Seconds an idle unfinished tracker is kept.
        forget: Called with each evicted tracker, to drop what others keep per job.
    """

    def __init__(
        self,
        *,
        keep_ended: int,
        ended_for: float,
        unwatched_for: float,
        forget: Callable[[Tracker], None],
    ) -> None:
        self._trackers: dict[str, Tracker] = {}
        # Idle trackers by job id, oldest first, with the time they became idle.
        self._ended: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._unwatched: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._keep_ended = keep_ended
        self._ended_for = ended_for
        self._unwatched_for = unwatched_for
        self._forget = forget
        self.evicted = 0
        """Trackers evicted so far."""

    def __len__(self) -> int:
        return len(self._trackers)

    def __iter__(self) -> Iterator[Tracker]:
        """The trackers, as a snapshot: evictions during the iteration do not disturb it."""
        return iter(list(self._trackers.values()))

    def get(self, job_id: str) -> Tracker | None:
        return self._trackers.get(job_id)

    def add(self, tracker: Tracker, now: float) -> None:
        """Hold a new tracker; idle until someone takes an interest."""
        self._trackers[tracker.id] = tracker
        self.settle(tracker, now)

    def settle(self, tracker: Tracker, now: float) -> None:
        """Note that ``tracker`` may have become idle (a wait, a listener or a read ended)."""
        if tracker.idle and self._trackers.get(tracker.id) is tracker:
            queue, other = (
                (self._ended, self._unwatched)
                if tracker.terminal
                else (self._unwatched, self._ended)
            )
            other.pop(tracker.id, None)
            queue.pop(tracker.id, None)
            queue[tracker.id] = now  # to the back: idle since now
        self.sweep(now)

    def sweep(self, now: float) -> None:
        """Evict the idle trackers whose grace is over."""
        ended = self._ended
        while ended and (
            len(ended) > self._keep_ended or next(iter(ended.values())) <= now - self._ended_for
        ):
            self._evict(ended.popitem(last=False)[0])
        unwatched = self._unwatched
        while unwatched and next(iter(unwatched.values())) <= now - self._unwatched_for:
            self._evict(unwatched.popitem(last=False)[0])

    def _evict(self, job_id: str) -> None:
        tracker = self._trackers.get(job_id)
        if tracker is None or not tracker.idle:
            return  # busy again since it was queued: queued afresh when idle again
        del self._trackers[job_id]
        self.evicted += 1
        self._forget(tracker)


class Reports:
    """What the engine tells beside outcomes: failed status reads and orphaned creates.

    A failed read is counted, sent as a ``read_failed`` event, kept as the job's `last_error`
    and logged once per job and kind of failure (a day's outage is not thousands of lines).

    Args:
        emit: Sends an event to the session's listeners.
        max_interval: The longest gap between reads of a waited-on job, for the log line.
    """

    def __init__(self, emit: Callable[[JobEvent], None], *, max_interval: float) -> None:
        self._emit = emit
        self._max_interval = max_interval
        self.failed_reads = 0
        """Status reads that failed so far."""
        self.unreadable = 0
        """Jobs held whose last status read failed."""
        self.orphans: list[ImageInfo | SubmissionUnknown] = []
        """Creates that reached (or may have reached) Akool after their caller was cancelled."""

    def read_failed(self, tracker: Tracker, error: Exception, now: float) -> None:
        """A status read of the job (or what followed it) failed."""
        self.failed_reads += 1
        if not tracker.failures:
            self.unreadable += 1
        tracker.failures += 1
        if isinstance(error, AkoolError):
            tracker.last_error = error
        else:
            tracker.last_error = AkoolError(
                f"unexpected error while polling job {tracker.id}: {error!r}"
            )
            tracker.last_error.__cause__ = error
        self.log_once(tracker, error)
        self._emit(JobEvent(tracker.id, "read_failed", tracker.info, now, tracker.last_error))

    def read_answered(self, tracker: Tracker) -> None:
        """A status read of the job was answered (a refusal included)."""
        if tracker.failures:
            self.unreadable -= 1
            logger.info(
                "job %s is readable again after %d failed status reads",
                tracker.id,
                tracker.failures,
            )
        tracker.failures = 0
        tracker.last_error = None

    def forgotten(self, tracker: Tracker) -> None:
        """The job's tracker was let go of."""
        if tracker.failures:
            self.unreadable -= 1

    def log_once(self, tracker: Tracker, error: Exception) -> None:
        """Log a failure about the job: the first of its kind as a warning (an error with the
        traceback when it is not an `AkoolError`: a bug), the others at debug level."""
        kinds = tracker.reported if tracker.reported is not None else set[type[BaseException]]()
        tracker.reported = kinds
        if type(error) in kinds:
            logger.debug("status read of job %s failed again: %s", tracker.id, error)
            return
        kinds.add(type(error))
        if isinstance(error, AkoolError):
            logger.warning(
                "status reads of job %s fail (%s); it is read again after a backoff, up to "
                "every %g s, for as long as it takes",
                tracker.id,
                error,
                self._max_interval,
            )
        else:
            logger.error(
                "unexpected error while polling job %s; it is read again after a backoff",
                tracker.id,
                exc_info=error,
            )

    def orphan(self, outcome: ImageInfo | SubmissionUnknown, now: float) -> None:
        """A create whose caller was cancelled while it was in flight reached Akool (its info)
        or may have (a `SubmissionUnknown` with what was sent)."""
        self.orphans.append(outcome)
        if isinstance(outcome, SubmissionUnknown):
            logger.warning(
                "a create sent to %s for a cancelled caller may or may not have reached Akool "
                "(%s); session.orphaned_creates keeps what was sent",
                outcome.endpoint,
                outcome.reason,
            )
            return
        logger.warning(
            "job %s was created for a cancelled caller: it runs, and is paid for, at Akool; "
            "session.orphaned_creates has a handle on it",
            outcome.id,
        )
        self._emit(JobEvent(outcome.id, "orphaned", outcome, now))


def unwrap(outcome: Outcome | None) -> ImageInfo:
    """The info of a round that ended well; else raise (a copy of) the error it ended with."""
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
