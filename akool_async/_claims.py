"""Which grid buttons this session has pressed, or is pressing: no button is pressed twice.

Akool bills every press and has no idempotency key, so a button is claimed on the job's tracker
before its press is sent, and a second press of it by this session is refused. A claim is given
back only when its press provably never reached Akool.
"""

from __future__ import annotations

from collections.abc import Callable

from ._tracker import Tracker, TrackerTable

__all__ = ["ButtonClaims"]


class ButtonClaims:
    """The engine's claims on buttons, kept on the jobs' trackers."""

    def __init__(
        self,
        trackers: TrackerTable,
        track: Callable[[str], Tracker],
        settle: Callable[[Tracker], None],
    ) -> None:
        self._trackers = trackers
        self._track = track
        self._settle = settle

    def claimed(self, job_id: str, button: str) -> bool:
        """Whether this session has pressed (or is pressing) ``button`` on the job."""
        tracker = self._trackers.get(job_id)
        return tracker is not None and button in tracker.pressed

    def claim(self, job_id: str, button: str) -> None:
        """Claim ``button`` on the job before pressing it, so a concurrent press is refused."""
        self._track(job_id).pressed.add(button)

    def unclaim(self, job_id: str, button: str) -> None:
        """Give back a claim whose press provably did not reach Akool. A press still in flight
        (its caller cancelled) keeps the claim: `pressing` settles it when its answer is in."""
        tracker = self._trackers.get(job_id)
        if tracker is not None and button not in tracker.pressing:
            tracker.pressed.discard(button)

    def pressing(self, job_id: str, button: str) -> Callable[[bool], None]:
        """Note a press of ``button`` on the job as in flight; returns ``done(reached)``.

        Until ``done`` is called the job's tracker is kept and its claim on the button stands,
        whatever its caller does. A press that reached (or may have reached) Akool keeps the
        claim; one that provably did not gives it back.
        """
        tracker = self._track(job_id)
        tracker.pressing.add(button)

        def done(reached: bool) -> None:
            tracker.pressing.discard(button)
            if reached:
                tracker.pressed.add(button)
            else:
                tracker.pressed.discard(button)
            self._settle(tracker)

        return done
