"""The poll planner: every decision of *when* to read a job's status. Pure: fed plain facts.

The engine executes; this module decides. A job's duration (created -> complete result) follows a
law the session does not know in advance: Akool's timings vary by account, prompt, load and hour.
So the planner learns it from every look (see `_estimate`: "not done at age a" counts, not only
completions), and starts from a deliberately weak prior that only says where to begin.

For a job whose age is known (this session created it):

* **first look** at the age where the law says early finishers would otherwise be noticed late:
  ``quantile(early) + gap``, where ``gap`` is the spacing that keeps a finished job's lag within
  ``target_lag``. Until that age the job is *held*: its due time is re-evaluated when it comes,
  so when evidence moves the law later, held jobs move later for free;
* **sentinels**: while fewer than twenty jobs of a kind have finished, about one held job in
  six, and at least one, is read early (at ages spaced in proportion to the age, then every gap,
  or every two gaps once there are many of them), so that a law
  far earlier than believed shows up before the bulk is late. A finished sentinel pulls every
  held job of its kind forward, to at most a gap after the age it was seen done at (until
  the law's spread is known, its early quantile is not trusted to be later than that);
* then a look every ``gap`` through the bulk, and widening gaps far in the fitted tail;
* **self-check**: a job seen running before it was seen done has a known bound on its lag (the
  time between those two reads: a gap at most); a job done at its very first look has none,
  only the law's word. So the planner counts the jobs done at their first look and compares the
  count with what the law predicted for their ages: more than chance allows means the law misses
  early finishers, exactly where the lag promise is decided, and first looks move earlier
  (``early`` shrinks; at its floor, the older half of what was learned is forgotten, since
  Akool's timings change with load and hour). `Planner.lag_bounds` reports the evidence.

Also here: the quick rechecks of a grid that says "completed" before its quadrants, the safety
net under webhooks, backoff after failed reads, and the ranking of due reads when requests are
scarce (the chance each job finished since it was last seen).
"""

from __future__ import annotations

import collections
import math
import random
from collections.abc import Iterable
from typing import Final

from ._estimate import Interval, LogNormalLaw, censored_fit, log_interval
from ._models import JobKind
from ._poll_policy import JobFacts, PollPolicy

__all__ = ["JobFacts", "JobKind", "Planner", "PollPolicy"]

DEFAULT_EXPECTED_DURATION: Final = 40.0
"""Where a cold start begins, in seconds, when `PollPolicy.expected_duration` is not given."""
_PRIOR_SIGMA: Final = 0.5
"""The prior's spread of log(duration), in the middle of what services of this kind show."""
_HINT_SIGMA: Final = 0.3
"""The prior's spread when the user gave `PollPolicy.expected_duration`."""
_PRIOR_WEIGHT: Final = 2.0
"""The prior's spread counts as this many jobs per job seen finished: a handful overrule it."""
_PRIOR_CENTRE_SPREAD: Final = 1.5
"""How far off the prior's typical duration may be, in log-seconds (a factor of e^1.5 = 4.5)."""
_HINT_CENTRE_SPREAD: Final = 0.7
_PRIOR_FADE: Final = 4.0
"""Completions after which the prior counts half as much as at the start."""
_EARLY: Final = 0.02
"""The fraction of jobs the first look may find done more than a gap ago."""
_MIN_EARLY: Final = 0.002
_TAIL_QUANTILE: Final = 0.995
_SAFETY_NET_QUANTILE: Final = 0.99
SAFETY_NET_INTERVAL: Final = 30.0
"""With webhooks: seconds between safety-net polls of a job past its expected end."""
_MISSES_BEFORE_POLLING: Final = 2
_SENTINEL_SHARE: Final = 0.16
_FEW_SENTINELS: Final = 4
_CONFIDENT_AFTER: Final = 20.0
"""Completions of a kind (counted in jobs) after which no sentinels are needed."""
_REFIT_SHARE: Final = 0.05
_CHECK_WINDOW: Final = 200
_CHECK_MIN: Final = 20
_COMPLETED_KEPT: Final = 1000
_QUADRANT_LAGS_KEPT: Final = 200
_TRUSTED_QUADRANT_LAGS: Final = 5


class _KindModel:
    """What is known about one kind of job: its censored looks and the law fitted to them."""

    def __init__(
        self, prior_mu: float, prior_sigma: float, centre_spread: float, *, learn: bool
    ) -> None:
        self.prior_mu = prior_mu
        self.centre_spread = centre_spread
        self.prior_sigma = prior_sigma
        self.learn = learn
        self.looks: collections.Counter[Interval] = collections.Counter()
        self.open: dict[int, Interval] = {}
        self.first_look: dict[int, float] = {}
        self.completed: collections.deque[Interval] = collections.deque()
        self.completions = 0
        self.law = LogNormalLaw(prior_mu, prior_sigma)
        self._changes = 0
        self.held: dict[int, JobFacts] = {}
        self.sentinels: set[int] = set()
        self.earliest_done: float | None = None
        self.scheduled_start = 0.0
        # The self-check: per completed job, (done at its first look, lag bound).
        self.checks: collections.deque[tuple[bool, float, float]] = collections.deque(
            maxlen=_CHECK_WINDOW
        )
        self.early = _EARLY
        self.checked_at = 0

    def _changed(self) -> None:
        self._changes += 1
        if self._changes >= max(1.0, _REFIT_SHARE * (self.completions + len(self.open))):
            self.refit()

    def refit(self) -> None:
        self._changes = 0
        if not self.learn:
            return
        # The prior fades as completions come: it only says where a cold start begins.
        centre_spread = self.centre_spread * math.sqrt(1 + self.completions / _PRIOR_FADE)
        # Looks at running jobs place the law but cannot tell its spread (every spread explains
        # "none of them is done yet"): the prior's spread holds until completions outweigh them.
        spread_weight = _PRIOR_WEIGHT * math.sqrt((1 + len(self.open)) / (1 + self.completions))
        self.law = censored_fit(
            self.looks,
            prior_mu=self.prior_mu,
            prior_sigma=self.prior_sigma,
            centre_spread=centre_spread,
            spread_weight=spread_weight,
            start=self.law,
        )

    def running(self, key: int, age: float) -> None:
        """Job ``key`` was not done at ``age``."""
        self._drop_open(key)
        self.first_look.setdefault(key, age)
        interval = log_interval(age, None)
        self.open[key] = interval
        self.looks[interval] += 1
        self._changed()

    def done(self, key: int, last_unfinished: float | None, age: float) -> None:
        """Job ``key`` was done at ``age``, not done at ``last_unfinished`` (None: never seen)."""
        self._drop_open(key)
        if self.earliest_done is None or age < self.earliest_done:
            self.earliest_done = age
        interval = log_interval(last_unfinished, age)
        self.looks[interval] += 1
        self.completed.append(interval)
        self.completions += 1
        if len(self.completed) > _COMPLETED_KEPT:
            self._remove(self.completed.popleft())
        if self.confident:
            self._changed()
        else:
            self.refit()  # every early completion matters

    def forget_older_half(self) -> None:
        for _ in range(len(self.completed) // 2):
            self._remove(self.completed.popleft())
        for _ in range(len(self.checks) // 2):
            self.checks.popleft()
        self.refit()

    def forget(self, key: int) -> None:
        self._drop_open(key)
        self.first_look.pop(key, None)
        self.held.pop(key, None)
        self.sentinels.discard(key)

    def _drop_open(self, key: int) -> None:
        interval = self.open.pop(key, None)
        if interval is not None:
            self._remove(interval)

    def _remove(self, interval: Interval) -> None:
        self.looks[interval] -= 1
        if self.looks[interval] <= 0:
            del self.looks[interval]

    @property
    def confident(self) -> bool:
        return self.completions >= _CONFIDENT_AFTER


class Planner:
    """Plans polls from a `PollPolicy` and what the session has seen. Pure: no I/O, no clock.

    Every method that depends on time takes ``now`` (the session clock) as an argument.
    """

    def __init__(self, policy: PollPolicy, *, rng: random.Random | None = None) -> None:
        self.policy = policy
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter
        hinted = policy.expected_duration is not None
        grid = policy.expected_duration if hinted else DEFAULT_EXPECTED_DURATION
        assert grid is not None  # noqa: S101 - narrowed above
        sigma = _HINT_SIGMA if hinted else _PRIOR_SIGMA
        centre = _HINT_CENTRE_SPREAD if hinted else _PRIOR_CENTRE_SPREAD
        self._models = {
            kind: _KindModel(math.log(grid * factor), sigma, centre, learn=policy.learn)
            for kind, factor in (
                (JobKind.GRID, 1.0),
                (JobKind.UPSCALE, policy.upscale_factor),
                (JobKind.VARIATION, policy.variation_factor),
            )
        }
        self._quadrant_lags: collections.deque[float] = collections.deque(
            maxlen=_QUADRANT_LAGS_KEPT
        )
        self.push_healthy = True
        self._missed_pushes = 0

    # -- the law ----------------------------------------------------------------------------

    @property
    def gap(self) -> float:
        """The interval between looks through the bulk: a job finishing between two looks is
        noticed at the second, within ``target_lag``."""
        return max(self.policy.min_interval, self.policy.target_lag)

    def law(self, kind: JobKind) -> LogNormalLaw:
        """The duration law the planner currently believes for ``kind``."""
        return self._models[kind].law

    def quantile(self, kind: JobKind, q: float) -> float:
        """The duration (seconds) a fraction ``q`` of jobs of ``kind`` finish within."""
        return self._models[kind].law.quantile(q)

    def cdf(self, kind: JobKind, age: float) -> float:
        """The probability a job of ``kind`` has finished by ``age`` seconds."""
        return self._models[kind].law.cdf(age)

    def first_look_age(self, kind: JobKind) -> float:
        """The age of a job's first regular look: early finishers then wait about a gap.

        While few jobs have finished, the law's spread is a guess, and a guess that is too wide
        puts the early quantile far after the first completions really come: so until the law
        stands on its own, a job seen done at age a means first looks at a plus a gap at most.
        """
        model = self._models[kind]
        start = model.law.quantile(model.early) + self.gap
        if not model.confident and model.earliest_done is not None:
            start = min(start, model.earliest_done + self.gap)
        return max(self.policy.min_interval, start)

    # -- when -------------------------------------------------------------------------------

    def first_look(self, job: JobFacts, now: float) -> float:
        """When to look first at a job that has just become wanted (absolute session time)."""
        if not job.age_known:
            return now
        return self.next_look(job, now)

    def next_look(self, job: JobFacts, now: float) -> float:
        """When to look next at a job last seen not done (or not yet seen), as of ``now``."""
        age = now - job.born
        if not job.age_known:
            return now + self._steady(job.job_kind)
        kind = job.job_kind
        model = self._models[kind]
        key = id(job)
        start = self.first_look_age(kind)
        never_seen = job.last_unfinished_age is None
        if age < start and (never_seen or key in model.sentinels) and self._is_sentinel(model, key):
            # Young sentinels look at ages spaced in proportion, so a law of a few seconds
            # is caught as early as one of minutes is, relative to its length. Many sentinels
            # read every two gaps find the first finishers sooner than half as many every gap,
            # at the same cost: the first of 48 finishes near the law's 2 % quantile.
            # A few sentinels are someone's only jobs: their own lag matters, so every gap.
            cap = self.gap if len(model.sentinels) <= _FEW_SENTINELS else 2 * self.gap
            spacing = min(cap, age / 2)
            return now + max(self.gap / 3 - age, self.policy.min_interval, spacing)
        # A job's first look, or a later one that the evidence says is too early to repeat
        # (a held job waits until the law says early finishers start).
        if never_seen or age < start - self.gap:
            # The phase of a held job's first look is spread over a part of the gap, so jobs
            # created together do not all ask at the same instant.
            when = job.born + start - self.gap * self.policy.jitter * self._rng.random()
            if when > now:
                model.held[key] = job
                model.scheduled_start = max(model.scheduled_start, start)
                return when
            if never_seen:
                model.held.pop(key, None)
                return now
        model.held.pop(key, None)
        model.sentinels.discard(key)
        tail = model.law.quantile(_TAIL_QUANTILE)
        if not model.confident or age < tail:
            return now + self.gap
        # Far past almost every job seen: widen the gap with how far past it the job is.
        wider = min(self.policy.max_interval, max(self.gap, 0.5 * (age - tail) + self.gap))
        return now + self._spread(wider)

    def still_due(self, job: JobFacts, due: float, now: float) -> float | None:
        """Re-check a due look: a later time when the evidence moved it, or None to look now.

        Only held jobs move: once a job's regular looks began, they go on at the gap.
        """
        if not job.age_known:
            return None
        model = self._models[job.job_kind]
        key = id(job)
        if key not in model.held:
            return None
        start = job.born + self.first_look_age(job.job_kind)
        if start > due + self.gap:
            return self.next_look(job, now)
        return None

    def _is_sentinel(self, model: _KindModel, key: int) -> bool:
        if key in model.sentinels:
            return True
        if model.confident or not self.policy.learn:
            return False
        # At least one: a session with a single job and a wrong guess would otherwise hold it
        # until the guess's first look, however early the job really finishes.
        if len(model.sentinels) < max(1, int(_SENTINEL_SHARE * (len(model.held) + 1))):
            model.held.pop(key, None)
            model.sentinels.add(key)
            return True
        return False

    def _steady(self, kind: JobKind) -> float:
        """The pace for a job of unknown age: steady and moderate, since no law applies."""
        steady = max(self.gap, 0.1 * self.quantile(kind, 0.5))
        return self._spread(min(steady, self.policy.max_interval))

    def safety_net(self, job: JobFacts, now: float) -> float:
        """With webhooks, when to read a job in case its callback is lost."""
        end = job.born + self.quantile(job.job_kind, _SAFETY_NET_QUANTILE)
        return end if now < end else now + SAFETY_NET_INTERVAL

    def after_push(
        self, *, kind: JobKind, completed: bool, completed_at: float, now: float
    ) -> float:
        """When to read a job a callback said ended: a grid's quadrants trail its status 3."""
        if completed and kind is not JobKind.UPSCALE:
            return max(now, completed_at + self.quadrant_delay())
        return now

    def chance(self, job: JobFacts, now: float) -> float:
        """How likely the job finished since it was last seen unfinished: the ranking of due
        reads when requests are scarce."""
        if not job.age_known:
            return 0.5
        law = self._models[job.job_kind].law
        last = job.last_unfinished_age or 0.0
        done_before = law.cdf(last)
        if done_before >= 1.0:
            return 1.0
        return max(0.0, (law.cdf(now - job.born) - done_before) / (1.0 - done_before))

    def backoff(self, failures: int, retry_after: float | None) -> float:
        """Seconds before polling again after ``failures`` failed status reads in a row.

        The gap, doubled with each failure, up to ``max_interval``. A server's ``Retry-After``
        is honoured (within ``min_interval`` and ``max_interval``), but from the second failure
        in a row the doubling holds whatever it says: a day-long outage that answers "retry
        after 1 s" is read about once a minute, not 86,400 times.
        """
        policy = self.policy
        # Capped before the power: a month-long outage must not overflow a float.
        doublings = min(max(failures - 1, 0), 32)
        if retry_after is None or not retry_after >= 0:  # none given, or NaN
            return self._spread(min(policy.max_interval, self.gap * 2.0**doublings))
        streak = self.gap * 2.0 ** (doublings - 1) if doublings else 0.0
        return min(max(retry_after, streak, policy.min_interval), policy.max_interval)

    # -- what was seen ----------------------------------------------------------------------

    def saw_running(self, job: JobFacts, age: float) -> None:
        """A read found the job not done at ``age``."""
        if job.age_known:
            self._models[job.job_kind].running(id(job), age)

    def saw_done(self, job: JobFacts, age: float) -> None:
        """A read found the job's result complete at ``age``; the self-check runs on it."""
        if not job.age_known:
            return
        model = self._models[job.job_kind]
        last = job.last_unfinished_age
        model.held.pop(id(job), None)
        model.sentinels.discard(id(job))
        first_age = model.first_look.pop(id(job), age)
        model.done(id(job), last, age)
        if last is None:
            model.checks.append((True, age, age))
        else:
            model.checks.append((False, first_age, age - last))
        self._self_check(model)

    def moved_earlier(self) -> list[JobFacts]:
        """Held jobs whose first look the evidence moved earlier since they were scheduled.

        The engine schedules each of them again with `next_look`.
        """
        moved: list[JobFacts] = []
        for kind, model in self._models.items():
            start = self.first_look_age(kind)
            if model.held and start < model.scheduled_start - self.gap / 2:
                moved.extend(model.held.values())
                model.held.clear()
                model.scheduled_start = 0.0
        return moved

    def forget(self, job: JobFacts) -> None:
        """The job is no longer watched (ended, or nobody waits): drop what is kept per job."""
        if job.age_known:
            self._models[job.job_kind].forget(id(job))

    def _self_check(self, model: _KindModel) -> None:
        """Move first looks earlier when more jobs were done at their first look than the law
        predicted: the law misses early finishers, whose lag nobody measured.

        A job seen running before it was seen done has a known bound on its lag (the time
        between those two reads, at most a gap). A job done at its first look has none: only
        the law says how long it had been done. So the check counts those jobs and compares the
        count with what the law predicts for their first-look ages; more than chance allows
        means the law is wrong exactly where the lag promise is decided.
        """
        checks = model.checks
        if len(checks) < _CHECK_MIN or model.completions - model.checked_at < _CHECK_MIN // 2:
            return
        model.checked_at = model.completions
        law = model.law
        observed = sum(1 for first, _, _ in checks if first)
        expected = sum(law.cdf(age) for _, age, _ in checks)
        # The first-look ages are those of jobs that finished, so F(age) over-predicts a bit:
        # a conservative test, it tightens only on clear evidence.
        slack = 2.0 * math.sqrt(expected) + 1.0
        if observed > expected + slack:
            if model.early <= _MIN_EARLY:
                # First looks are as early as the law allows and still too late: the law itself
                # has moved (Akool's timings change with load and hour). Forget the older half.
                model.forget_older_half()
            model.early = max(_MIN_EARLY, model.early * 0.6)
        elif observed < expected - slack and model.early < _EARLY:
            model.early = min(_EARLY, model.early * 1.25)

    def lag_bounds(self, kind: JobKind = JobKind.GRID) -> tuple[float, float]:
        """The self-check's evidence: (share of recent completed jobs done at their first look,
        95th percentile of the lag bounds of the others), for reports and tests."""
        checks = self._models[kind].checks
        if not checks:
            return (0.0, 0.0)
        bounds = sorted(bound for first, _, bound in checks if not first)
        share = sum(1 for first, _, _ in checks if first) / len(checks)
        p95 = bounds[min(len(bounds) - 1, int(0.95 * len(bounds)))] if bounds else 0.0
        return (share, p95)

    # -- grids' quadrants -------------------------------------------------------------------

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
        if len(self._quadrant_lags) < _TRUSTED_QUADRANT_LAGS:
            return 0.0
        return min(self._typical_quadrant_lag() or 0.0, self.gap)

    def _typical_quadrant_lag(self) -> float | None:
        """The median quadrant lag seen so far; None before the first."""
        return _median(self._quadrant_lags)

    def quadrant_limit(self) -> float:
        """How long to wait for quadrants after status 3 before returning what is there."""
        lags = sorted(self._quadrant_lags)
        if len(lags) < _TRUSTED_QUADRANT_LAGS:
            return self.policy.quadrant_timeout
        high = lags[int(0.95 * (len(lags) - 1))]
        return min(self.policy.quadrant_timeout, max(5 * high, 5 * self.gap))

    def learn_quadrant_lag(self, lag: float) -> None:
        """Record how long a grid's quadrants trailed its status 3."""
        if self.policy.learn and lag >= 0:
            self._quadrant_lags.append(lag)

    # -- webhooks ---------------------------------------------------------------------------

    def push_arrived(self) -> bool:
        """A callback arrived; True when that ends a spell of polling for lost callbacks."""
        self._missed_pushes = 0
        if self.push_healthy:
            return False
        self.push_healthy = True
        return True

    def push_missed(self) -> bool:
        """A safety-net read found a job ended with no callback; True when that switches the
        session back to regular polling (two such jobs in a row)."""
        if not self.push_healthy:
            return False
        self._missed_pushes += 1
        if self._missed_pushes < _MISSES_BEFORE_POLLING:
            return False
        self.push_healthy = False
        return True

    @property
    def missed_pushes(self) -> int:
        """Jobs found ended by a safety-net read since the last callback."""
        return self._missed_pushes

    def _spread(self, seconds: float) -> float:
        jitter = self.policy.jitter
        spread = seconds * (1 + self._rng.uniform(-jitter, jitter))
        return max(self.policy.min_interval, spread)


def _median(values: Iterable[float]) -> float | None:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else None
