"""When each watched job is next read, and which due job goes first: the engine's timetable.

Due times sit in a heap of ``(due, sequence, job id)``. A job's newer schedule supersedes its
older entries by sequence number, drawn from one count for every tracker, so an entry left
behind by an evicted tracker can never pass for a later tracker of the same job. Jobs that are
due wait in a ready heap, ranked by their chance of having finished since they were last seen,
and ranked again as they wait for a turn (the chance grows with time).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator

import anyio

from ._constants import MIN_SLEEP, RERANK_EVERY
from ._tracker import Tracker, TrackerTable

__all__ = ["Schedule"]

_Entry = tuple[float, int, str]


class Schedule:
    """The due times of the jobs an engine watches.

    Args:
        trackers: The engine's trackers, to find a job's by its id.
        chance: How likely a job finished since it was last seen, as of a time.
    """

    def __init__(self, trackers: TrackerTable, chance: Callable[[Tracker, float], float]) -> None:
        self._trackers = trackers
        self._chance = chance
        self._heap: list[_Entry] = []
        self._ready: list[_Entry] = []
        self._sequence = itertools.count(1)
        self._wake = anyio.Event()
        self._ranked_at = 0.0

    @property
    def ready(self) -> bool:
        """Some job is due and waits for a turn."""
        return bool(self._ready)

    def at(self, tracker: Tracker, when: float) -> None:
        """Look at the job at ``when`` (session time); any earlier schedule of it is void."""
        earliest = self._heap[0][0] if self._heap else float("inf")
        tracker.sequence = next(self._sequence)
        tracker.due = when
        heapq.heappush(self._heap, (when, tracker.sequence, tracker.id))
        if when < earliest:
            self._wake.set()

    def cancel(self, tracker: Tracker) -> None:
        """Void every schedule of the job."""
        tracker.sequence = next(self._sequence)
        tracker.due = None

    def due(self, now: float) -> Iterator[tuple[Tracker, float]]:
        """Take out the jobs due by ``now``, each with the time it was due."""
        while self._heap and self._heap[0][0] <= now:
            due, _, tracker = self._current(heapq.heappop(self._heap))
            if tracker is not None:
                yield tracker, due

    def make_ready(self, tracker: Tracker, now: float) -> None:
        """Queue a due job for a turn, ranked by its chance now."""
        heapq.heappush(self._ready, (-self._chance(tracker, now), tracker.sequence, tracker.id))

    async def sleep(self) -> None:
        """Sleep until the next due time, or until an earlier one is scheduled."""
        self._wake = anyio.Event()
        delay = self._heap[0][0] - anyio.current_time() if self._heap else None
        # Never sleep less than a virtual clock can resolve, or it would never move on.
        with anyio.move_on_after(None if delay is None else max(delay, MIN_SLEEP)):
            await self._wake.wait()

    def pick(self, now: float, wanted: Callable[[Tracker], bool]) -> Tracker | None:
        """The ready job most likely to have finished that is still ``wanted``."""
        self._rerank(now)
        while self._ready:
            _, _, tracker = self._current(heapq.heappop(self._ready))
            if tracker is None:
                continue
            tracker.due = None
            if wanted(tracker):
                return tracker
        return None

    def _rerank(self, now: float) -> None:
        """Rank waiting jobs by their chance *now*: it grows while they wait for a turn."""
        if len(self._ready) > 1 and now - self._ranked_at >= RERANK_EVERY:
            ranked: list[_Entry] = []
            for entry in self._ready:
                _, sequence, tracker = self._current(entry)
                if tracker is not None:
                    ranked.append((-self._chance(tracker, now), sequence, tracker.id))
            heapq.heapify(ranked)
            self._ready = ranked
            self._ranked_at = now

    def _current(self, entry: _Entry) -> tuple[float, int, Tracker | None]:
        """The entry's tracker, or None when the entry is void (superseded, or let go of)."""
        key, sequence, job_id = entry
        tracker = self._trackers.get(job_id)
        if tracker is None or sequence != tracker.sequence:
            return key, sequence, None
        return key, sequence, tracker
