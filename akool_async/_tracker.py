"""What the engine knows about one job (`Tracker`) and one wait for its outcome (`Round`); what
it reports: progress events (`JobEvent`) and the session's figures (`SessionStats`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal

import anyio
import attrs

from ._errors import AkoolError
from ._models import ImageInfo, ImageStatus, JobKind

__all__ = [
    "ENDED",
    "PENDING_EVENTS",
    "EventKind",
    "JobEvent",
    "Listener",
    "Outcome",
    "Round",
    "SessionStats",
    "Tracker",
    "unwrap",
]

EventKind = Literal["created", "queueing", "processing", "completed", "failed"]
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


@attrs.frozen(kw_only=True)
class SessionStats:
    """What a session has done and what it follows, at one moment (`AkoolSession.stats`).

    For dashboards, logs and tests; every figure is cheap to read.

    Attributes:
        status_requests: Status reads the session's engine has sent (not counting
            `AkoolSession.get_image_info` or `ImageJob.refresh`).
        jobs_tracked: Jobs the session knows: created by it, waited on, or read; ended ones
            included.
        webhook_jobs: Of those, jobs created with the session's own webhook URL, whose end a
            callback announces.
        pushes: Verified callbacks taken in for jobs the session follows.
        missed_pushes: Webhook jobs a safety-net read found ended before any callback said so;
            it stops counting once `push_healthy` is False.
        push_healthy: False once callbacks seem lost: webhook jobs are then polled as usual.
    """

    status_requests: int = 0
    jobs_tracked: int = 0
    webhook_jobs: int = 0
    pushes: int = 0
    missed_pushes: int = 0
    push_healthy: bool = True


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
        self.round = Round()
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

    @property
    def final(self) -> Outcome | None:
        """The outcome the job ended with, once it has ended."""
        return self.round.outcome if self.terminal else None


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
