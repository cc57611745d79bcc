"""What the session has learned about how long jobs take: a log-normal law fitted to censored looks.

Every status read is a fact about one job's duration D (seconds from create to complete result):

* "not done at age a" says D > a (right-censored);
* "done at age b", after the last "not done" at age a, says a < D <= b (interval-censored);
* "done at the first look, at age b" says only D <= b (left-censored).

Estimating from completions alone biases early: the jobs still running are exactly the long ones.
So every look counts, and the law is the maximum of the likelihood of all of them (plus a weak
prior, a few pseudo-jobs, so that a cold start has somewhere to begin), found by expectation
maximisation on log(D). Looks are grouped by their interval on a fine log grid, so a fit costs the
number of distinct intervals, not the number of jobs. Pure: no clock, no I/O.
"""

from __future__ import annotations

import collections
import math
from statistics import NormalDist
from typing import Final

__all__ = ["LogNormalLaw", "censored_fit"]

_GRID: Final = 0.01
"""Width, in log-seconds, of the grid looks are grouped on (1 % of a duration)."""
_ITERATIONS: Final = 60
_TOLERANCE: Final = 1e-5
_MIN_SIGMA: Final = 0.03
_MAX_SIGMA: Final = 2.5
_SQRT2: Final = math.sqrt(2.0)
_SQRT2PI: Final = math.sqrt(2.0 * math.pi)
_STANDARD: Final = NormalDist()
_EDGE: Final = 1e-12

Interval = tuple[float, float]
"""(low, high] bounds of log(duration); -inf and inf for censoring on one side."""


class LogNormalLaw:
    """A log-normal duration law: log(D) ~ N(mu, sigma^2)."""

    __slots__ = ("mu", "sigma")

    def __init__(self, mu: float, sigma: float) -> None:
        self.mu = mu
        self.sigma = sigma

    def __repr__(self) -> str:
        return f"LogNormalLaw(median={math.exp(self.mu):.3g} s, sigma={self.sigma:.3g})"

    @property
    def median(self) -> float:
        """The median duration in seconds."""
        return math.exp(self.mu)

    def cdf(self, seconds: float) -> float:
        """The fraction of jobs done by ``seconds``."""
        if seconds <= 0:
            return 0.0
        return _phi_cdf((math.log(seconds) - self.mu) / self.sigma)

    def quantile(self, q: float) -> float:
        """The duration a fraction ``q`` of jobs finish within, in seconds."""
        return math.exp(self.mu + self.sigma * _phi_inv(q))


def _phi_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / _SQRT2)


def _phi_pdf(z: float) -> float:
    return math.exp(-0.5 * z * z) / _SQRT2PI


def _phi_inv(q: float) -> float:
    """The standard normal quantile, with q kept off 0 and 1."""
    return _STANDARD.inv_cdf(min(max(q, _EDGE), 1 - _EDGE))


def _truncated_moments(low: float, high: float) -> tuple[float, float, float]:
    """Mass, first and second moments of the standard normal restricted to (low, high]."""
    if low == -math.inf:
        mass = _phi_cdf(high)
        pdf_low, low_term = 0.0, 0.0
    else:
        mass = -_phi_cdf(low)
        pdf_low = _phi_pdf(low)
        low_term = low * pdf_low
    if high == math.inf:
        mass += 1.0
        pdf_high, high_term = 0.0, 0.0
    else:
        if low != -math.inf:
            mass += _phi_cdf(high)
        pdf_high = _phi_pdf(high)
        high_term = high * pdf_high
    if mass < _EDGE:
        # Far out in a tail the interval's mass underflows: its point nearest the bulk stands in.
        edge = low if low > 0 else high
        return 0.0, edge, edge * edge + 1e-6
    first = (pdf_low - pdf_high) / mass
    second = 1.0 + (low_term - high_term) / mass
    return mass, first, second


def censored_fit(
    looks: collections.Counter[Interval],
    *,
    prior_mu: float,
    prior_sigma: float,
    prior_weight: float,
    spread_weight: float | None = None,
    start: LogNormalLaw | None = None,
) -> LogNormalLaw:
    """The log-normal law that best explains ``looks`` (intervals of log D with their counts).

    The prior counts as ``prior_weight`` jobs at ``prior_mu`` for the centre, and as
    ``spread_weight`` jobs (default: ``prior_weight``) of spread ``prior_sigma`` for the spread.
    Each iteration replaces every interval by the expected log D and log D^2 under the current
    law, restricted to that interval (the EM algorithm for censored normal data).
    """
    mu = start.mu if start is not None else prior_mu
    sigma = start.sigma if start is not None else prior_sigma
    spread_weight = prior_weight if spread_weight is None else spread_weight
    seen = sum(looks.values())
    for _ in range(_ITERATIONS):
        total = prior_weight * prior_mu
        deviation = spread_weight * prior_sigma * prior_sigma
        moments: list[tuple[int, float, float]] = []
        for (low, high), n in looks.items():
            z_low = (low - mu) / sigma if low != -math.inf else -math.inf
            z_high = (high - mu) / sigma if high != math.inf else math.inf
            _, first, second = _truncated_moments(z_low, z_high)
            total += n * (mu + sigma * first)
            moments.append((n, first, second))
        new_mu = total / (prior_weight + seen)
        # E[(x - new_mu)^2] for x = mu + sigma z: sigma^2 E[z^2] + 2 sigma (mu - new_mu) E[z] + d^2.
        shift = mu - new_mu
        for n, first, second in moments:
            deviation += n * (sigma * sigma * second + 2 * sigma * shift * first + shift * shift)
        # The prior's pseudo-jobs add spread of their own only as the prior's sigma: a centre far
        # from the data must not widen the law it helped to find.
        variance = deviation / (spread_weight + seen)
        new_sigma = min(_MAX_SIGMA, max(_MIN_SIGMA, math.sqrt(max(variance, 0.0))))
        done = abs(new_mu - mu) < _TOLERANCE and abs(new_sigma - sigma) < _TOLERANCE
        mu, sigma = new_mu, new_sigma
        if done:
            break
    return LogNormalLaw(mu, sigma)


def log_interval(low_age: float | None, high_age: float | None) -> Interval:
    """The interval of log D for "not done at ``low_age``" and "done at ``high_age``", on the grid.

    None on either side: censored on that side. Ages snap outward to the grid so that looks at
    nearly the same ages share one entry.
    """
    low = (
        -math.inf if not low_age or low_age <= 0 else math.floor(math.log(low_age) / _GRID) * _GRID
    )
    high = (
        math.inf if high_age is None else math.ceil(math.log(max(high_age, 1e-3)) / _GRID) * _GRID
    )
    return (low, max(high, low + _GRID) if high != math.inf else high)
