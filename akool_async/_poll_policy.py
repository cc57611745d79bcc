"""What the planner is given: the user's `PollPolicy`, and the facts it reads about each job
(`JobFacts`, which the engine's tracker provides). Pure: no clock, no I/O."""

from __future__ import annotations

import math
from typing import Protocol

import attrs

from ._errors import InvalidInput
from ._models import JobKind

__all__ = ["JobFacts", "PollPolicy"]


def _positive(_: object, attribute: attrs.Attribute[float], value: object) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise InvalidInput(
            f"PollPolicy.{attribute.name} must be a number greater than 0 (got {value!r})"
        )


def _positive_or_none(_: object, attribute: attrs.Attribute[float], value: object) -> None:
    if value is not None:
        _positive(_, attribute, value)


def _fraction(_: object, attribute: attrs.Attribute[float], value: object) -> None:
    if not (isinstance(value, int | float) and 0 <= value < 1):
        raise InvalidInput(f"PollPolicy.{attribute.name} must be from 0 up to 1 (got {value!r})")


@attrs.frozen(kw_only=True)
class PollPolicy:
    """How the session polls for results.

    Attributes:
        target_lag: The detection lag to aim for, in seconds: about 95 % of jobs are noticed
            within it of being complete, on any duration law, once the session has seen a
            handful of jobs finish. Smaller costs more requests.
        expected_duration: An optional hint, in seconds, for a grid job's duration (create to
            complete result). Only where a cold start begins: the session learns the real law
            from its first jobs and a wrong hint is overruled after a handful. None: 40 s, held
            loosely.
        upscale_factor: An upscale's expected duration as a fraction of a grid's, for the prior.
        variation_factor: A variation's expected duration as a fraction of a grid's.
        min_interval: Never poll one job more often than this, in seconds; at most
            ``target_lag`` (a smaller ``target_lag`` is refused: lower this with it).
        max_interval: Never leave a waited-on job unpolled longer than this, in seconds.
        quadrant_timeout: Upper bound, in seconds, on waiting for a grid's quadrants after Akool
            says completed. Past the lag learned so far (times five, and at most this), `wait()`
            returns what is there and logs a warning.
        jitter: Spread of first looks and of tail intervals, as a fraction of the gap, so the
            polls of jobs created together do not bunch.
        learn: Learn durations from what this session sees. False: the prior is the law.
    """

    target_lag: float = attrs.field(default=2.75, validator=_positive)
    expected_duration: float | None = attrs.field(default=None, validator=_positive_or_none)
    upscale_factor: float = attrs.field(default=0.4, validator=_positive)
    variation_factor: float = attrs.field(default=0.85, validator=_positive)
    min_interval: float = attrs.field(default=0.25, validator=_positive)
    max_interval: float = attrs.field(default=60.0, validator=_positive)
    quadrant_timeout: float = attrs.field(default=60.0, validator=_positive)
    jitter: float = attrs.field(default=0.1, validator=_fraction)
    learn: bool = True

    def __attrs_post_init__(self) -> None:
        if self.min_interval > self.max_interval:
            raise InvalidInput(
                f"PollPolicy.min_interval ({self.min_interval:g}) must not exceed "
                f"max_interval ({self.max_interval:g})"
            )
        if self.target_lag < self.min_interval:
            # A job is never read more often than min_interval, so a smaller lag could not be
            # kept: refused rather than quietly raised to min_interval.
            raise InvalidInput(
                f"PollPolicy.target_lag ({self.target_lag:g}) must not be below min_interval "
                f"({self.min_interval:g}), the shortest gap between two reads of a job: lower "
                f"min_interval too, e.g. PollPolicy(target_lag={self.target_lag:g}, "
                f"min_interval={self.target_lag:g})"
            )


class JobFacts(Protocol):
    """What the planner needs to know about one job; the engine's tracker provides it."""

    @property
    def born(self) -> float:
        """Session clock when the job was created (or first seen)."""
        ...

    @property
    def age_known(self) -> bool:
        """True when this session created the job, so ``born`` is its creation."""
        ...

    @property
    def job_kind(self) -> JobKind: ...

    @property
    def looks(self) -> int:
        """Status reads answered so far."""
        ...

    @property
    def last_unfinished_age(self) -> float | None:
        """Age at the last read that found it not done; None before any."""
        ...
