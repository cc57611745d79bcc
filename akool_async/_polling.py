"""The poll planner: *when* to ask about which job, so few requests buy a small detection lag.

A job's duration (created -> result complete) is modelled as log-normal per kind of job (grid,
upscale, variation), starting from `PollPolicy`'s prior and learning from the completions this
session sees. From that model the planner derives a schedule per job:

* no poll while completion is still improbable (before the duration's 3 % quantile);
* polls every ``target_lag * 0.96 / 0.95`` seconds through the bulk of the distribution (up to
  its 99 % quantile), so that about 95 % of jobs are noticed within ``target_lag``: the few
  that finish before the first look spend the rest of the 5 %;
* gaps that widen, up to ``max_interval``, in the unlikely tail;
* quick polls once Akool says "completed" but the grid's four quadrants are not there yet.

When requests are scarce (a rate limit), due polls are ranked by the probability that the job
finished since it was last seen, so the budget goes where completions are likely.
"""

from __future__ import annotations

import enum
import math
import random
from statistics import NormalDist
from typing import Final

import attrs

from ._errors import InvalidInput

__all__ = ["JobKind", "Planner", "PollPolicy"]

_START_QUANTILE: Final = 0.03
_BULK_END_QUANTILE: Final = 0.99
# Polls every g seconds give the jobs finishing in the bulk (96 % of them) a detection lag uniform
# in [0, g); g = target * 0.96 / 0.95 puts the 95th percentile of all jobs' lag at the target.
_GAP_FACTOR: Final = 0.95 / (_BULK_END_QUANTILE - _START_QUANTILE)
_PRIOR_WEIGHT: Final = 8.0
# The spread of log(duration) before anything is learned: Akool's grids take 30 to 70 s.
_PRIOR_SIGMA: Final = 0.22
_MIN_SIGMA: Final = 0.05


class JobKind(enum.Enum):
    """What a job renders, which sets its expected duration."""

    GRID = "grid"
    UPSCALE = "upscale"
    VARIATION = "variation"


def _positive(_: object, attribute: attrs.Attribute[float], value: object) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise InvalidInput(
            f"PollPolicy.{attribute.name} must be a number greater than 0 (got {value!r})"
        )


def _fraction(_: object, attribute: attrs.Attribute[float], value: object) -> None:
    if not (isinstance(value, int | float) and 0 <= value < 1):
        raise InvalidInput(f"PollPolicy.{attribute.name} must be from 0 up to 1 (got {value!r})")


@attrs.frozen(kw_only=True)
class PollPolicy:
    """How the session polls for results.

    Attributes:
        expected_duration: Prior for a grid job's duration in seconds, from create to complete
            result. Follow-ups scale from it. Testing against a fast emulator? Set it small.
        target_lag: The detection lag to aim for, in seconds: about 95 % of jobs are noticed
            within it. Smaller costs more requests. The default is a little under what
            Akool's own demo (polling every 3 s) gives, at about half its requests.
        upscale_factor: An upscale's expected duration as a fraction of a grid's.
        variation_factor: A variation's expected duration as a fraction of a grid's.
        min_interval: Never poll one job more often than this, in seconds.
        max_interval: Never leave a waited-on job unpolled longer than this, in seconds.
        quadrant_timeout: Upper bound, in seconds, on waiting for a grid's quadrants after Akool
            says completed. Past the lag learned so far (times five, and at most this), `wait()`
            returns what is there and logs a warning.
        jitter: Spread of each interval, as a fraction (0.1 = +-10 %), so polls do not bunch.
        learn: Learn durations from the completions seen in this session.
    """

    expected_duration: float = attrs.field(default=45.0, validator=_positive)
    target_lag: float = attrs.field(default=2.75, validator=_positive)
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


@attrs.define
class _Estimate:
    """A log-normal duration estimate: prior pseudo-observations plus what was seen."""

    prior_mu: float
    count: int = 0
    log_sum: float = 0.0
    log_square_sum: float = 0.0

    def add(self, seconds: float) -> None:
        value = math.log(max(seconds, 1e-3))
        self.count += 1
        self.log_sum += value
        self.log_square_sum += value * value

    def distribution(self) -> NormalDist:
        """The normal distribution of log(duration)."""
        weight = _PRIOR_WEIGHT + self.count
        mu = (_PRIOR_WEIGHT * self.prior_mu + self.log_sum) / weight
        # Pooled second moment about the blended mean: prior spread plus the observed one.
        prior_part = _PRIOR_WEIGHT * (_PRIOR_SIGMA**2 + (self.prior_mu - mu) ** 2)
        seen_part = self.log_square_sum - 2 * mu * self.log_sum + self.count * mu * mu
        sigma = math.sqrt(max((prior_part + seen_part) / weight, _MIN_SIGMA**2))
        return NormalDist(mu, sigma)


class Planner:
    """Plans polls from a `PollPolicy` and what the session has seen. Pure: no I/O, no clock."""

    def __init__(self, policy: PollPolicy, *, rng: random.Random | None = None) -> None:
        self.policy = policy
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter
        expected = policy.expected_duration
        self._estimates = {
            JobKind.GRID: _Estimate(math.log(expected)),
            JobKind.UPSCALE: _Estimate(math.log(expected * policy.upscale_factor)),
            JobKind.VARIATION: _Estimate(math.log(expected * policy.variation_factor)),
        }
        self._quadrant_lags: list[float] = []

    @property
    def gap(self) -> float:
        """The interval between polls through the bulk of the distribution."""
        return max(self.policy.min_interval, self.policy.target_lag / _GAP_FACTOR)

    def quantile(self, kind: JobKind, q: float) -> float:
        """The duration (seconds) a fraction ``q`` of jobs of ``kind`` finish within."""
        return math.exp(self._estimates[kind].distribution().inv_cdf(q))

    def cdf(self, kind: JobKind, age: float) -> float:
        """The probability a job of ``kind`` has finished by ``age`` seconds."""
        if age <= 0:
            return 0.0
        return self._estimates[kind].distribution().cdf(math.log(age))

    def next_age(self, kind: JobKind, age: float, *, age_known: bool = True) -> float:
        """The age at which to poll next, for a job last seen unfinished at ``age``.

        Args:
            kind: The job's kind.
            age: Seconds since the job was created (or first seen), at the last look.
            age_known: False for a job this session did not create: its true age is unknown, so
                the schedule cannot skip ahead and polls at a steady, moderate pace instead.
        """
        policy = self.policy
        gap = self.gap
        if not age_known:
            steady = max(gap, 0.1 * self.quantile(kind, 0.5))
            return age + self._spread(min(steady, policy.max_interval))
        start = self.quantile(kind, _START_QUANTILE)
        # The first look is jittered around `start`; a job seen at or after the earliest
        # jittered start has had its first look and goes on to the bulk schedule.
        if age < start * (1 - policy.jitter / 4):
            return start * (1 + self._rng.uniform(-policy.jitter, policy.jitter) / 4)
        bulk_end = self.quantile(kind, _BULK_END_QUANTILE)
        if age < bulk_end:
            return age + self._spread(gap)
        # In the unlikely tail, widen the gap with how far past the bulk the job is.
        return age + self._spread(min(policy.max_interval, max(gap, 0.5 * (age - bulk_end) + gap)))

    def quadrant_recheck(self) -> float:
        """Seconds until the next look at a grid that is completed but lacks its quadrants."""
        typical = self._typical_quadrant_lag()
        typical = self.gap if typical is None else typical
        return self._spread(max(self.policy.min_interval, min(self.gap, typical)))

    def quadrant_delay(self) -> float:
        """Seconds to wait after a grid's status 3 before the first look for its quadrants.

        The typical lag learned so far (0 until five are seen), but never more than the gap
        between looks: a waiter is then told within ``target_lag`` either way.
        """
        if len(self._quadrant_lags) < 5:  # noqa: PLR2004 - too few to trust
            return 0.0
        return min(self._typical_quadrant_lag() or 0.0, self.gap)

    def _typical_quadrant_lag(self) -> float | None:
        """The median quadrant lag seen so far; None before the first."""
        lags = sorted(self._quadrant_lags)
        return lags[len(lags) // 2] if lags else None

    def quadrant_limit(self) -> float:
        """How long to wait for quadrants after status 3 before returning what is there."""
        lags = sorted(self._quadrant_lags)
        if len(lags) < 5:  # noqa: PLR2004 - too few to trust
            return self.policy.quadrant_timeout
        high = lags[int(0.95 * (len(lags) - 1))]
        return min(self.policy.quadrant_timeout, max(5 * high, 5 * self.gap))

    def priority(self, kind: JobKind, last_age: float, age: float) -> float:
        """The probability the job finished between ``last_age`` and ``age``, given it had not."""
        done_before = self.cdf(kind, last_age)
        if done_before >= 1.0:
            return 1.0
        return max(0.0, (self.cdf(kind, age) - done_before) / (1.0 - done_before))

    def learn(self, kind: JobKind, duration: float) -> None:
        """Record that a job of ``kind`` took about ``duration`` seconds."""
        if self.policy.learn and duration > 0:
            self._estimates[kind].add(duration)

    def learn_quadrant_lag(self, lag: float) -> None:
        """Record how long a grid's quadrants trailed its status 3."""
        if self.policy.learn and lag >= 0:
            self._quadrant_lags.append(lag)
            del self._quadrant_lags[:-200]

    def backoff(self, failures: int, retry_after: float | None) -> float:
        """Seconds before polling again after ``failures`` failed status reads in a row."""
        if retry_after is not None:
            return min(max(retry_after, self.policy.min_interval), self.policy.max_interval)
        return self._spread(min(self.policy.max_interval, self.gap * 2 ** (failures - 1)))

    def _spread(self, seconds: float) -> float:
        jitter = self.policy.jitter
        spread = seconds * (1 + self._rng.uniform(-jitter, jitter))
        return max(self.policy.min_interval, spread)
