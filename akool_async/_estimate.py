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
_ITERATIONS: Final = 40
_STEP: Final = 1e-4
_FAR: Final = 6.0
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


def _upper_tail(z: float) -> tuple[float, float]:
    """log(1 - Phi(z)) and the inverse Mills ratio phi(z) / (1 - Phi(z)), stable for large z."""
    if z < _FAR:
        tail = 0.5 * math.erfc(z / _SQRT2)
        return math.log(tail), _phi_pdf(z) / tail
    # Laplace's continued fraction for the Mills ratio; exact to many digits this far out.
    ratio = z + 1.0 / (z + 2.0 / (z + 3.0 / (z + 4.0 / (z + 5.0 / z))))
    return -0.5 * z * z - math.log(_SQRT2PI) - math.log(ratio), ratio


def _interval_terms(low: float, high: float) -> tuple[float, float, float]:
    """For the standard normal on (low, high]: log of its mass, and the derivatives of that log
    with respect to the mean (times sigma) and to log(sigma)."""
    if high == math.inf:
        log_mass, ratio = _upper_tail(low)
        return log_mass, ratio, low * ratio
    if low == -math.inf:
        log_mass, ratio = _upper_tail(-high)
        return log_mass, -ratio, -high * ratio
    if low > 0:  # both in the upper tail: subtract tails, not cumulative masses
        log_low, ratio_low = _upper_tail(low)
        log_high, ratio_high = _upper_tail(high)
        mass_low, mass_high = math.exp(log_low), math.exp(log_high)
        pdf_low, pdf_high = ratio_low * mass_low, ratio_high * mass_high
        mass = mass_low - mass_high
    elif high < 0:  # both in the lower tail: the mirror image of the upper one
        log_mass, by_mean, by_log_sigma = _interval_terms(-high, -low)
        return log_mass, -by_mean, by_log_sigma
    else:
        mass = _phi_cdf(high) - _phi_cdf(low)
        pdf_low, pdf_high = _phi_pdf(low), _phi_pdf(high)
    if mass <= _EDGE * 1e-3:
        # A sliver far out: its mass is about its width times the density at its inner edge.
        edge = low if low > 0 else high
        mass = max((high - low) * _phi_pdf(edge), 1e-300)
        return math.log(mass), edge, edge * edge
    return (
        math.log(mass),
        (pdf_low - pdf_high) / mass,
        (low * pdf_low - high * pdf_high) / mass,
    )


class _Objective:
    """The log-likelihood of the looks plus the prior, as a function of (mu, log sigma)."""

    def __init__(
        self,
        looks: collections.Counter[Interval],
        prior: tuple[float, float],
        weights: tuple[float, float],
    ) -> None:
        self.looks = list(looks.items())
        self.prior_mu, self.prior_sigma = prior
        self.centre_spread, self.spread_weight = weights

    def value_and_gradient(self, mu: float, log_sigma: float) -> tuple[float, float, float]:
        sigma = math.exp(log_sigma)
        value = d_mu = d_log_sigma = 0.0
        for (low, high), n in self.looks:
            z_low = (low - mu) / sigma if low != -math.inf else -math.inf
            z_high = (high - mu) / sigma if high != math.inf else math.inf
            log_mass, by_mean, by_log_sigma = _interval_terms(z_low, z_high)
            value += n * log_mass
            d_mu += n * by_mean / sigma
            d_log_sigma += n * by_log_sigma
        # The centre has a normal prior of its own (a guess within a factor of e^tau); the
        # spread's pseudo-jobs pull sigma toward the prior's.
        offset = mu - self.prior_mu
        spread = self.prior_sigma * self.prior_sigma
        value -= offset * offset / (2 * self.centre_spread * self.centre_spread)
        value -= self.spread_weight * (spread / (2 * sigma * sigma) + log_sigma)
        d_mu -= offset / (self.centre_spread * self.centre_spread)
        d_log_sigma += self.spread_weight * (spread / (sigma * sigma) - 1.0)
        return value, d_mu, d_log_sigma


def censored_fit(
    looks: collections.Counter[Interval],
    *,
    prior_mu: float,
    prior_sigma: float,
    centre_spread: float,
    spread_weight: float,
    start: LogNormalLaw | None = None,
) -> LogNormalLaw:
    """The log-normal law that best explains ``looks`` (intervals of log D with their counts).

    The prior: mu is normal around ``prior_mu`` with standard deviation ``centre_spread`` (a
    guess of the typical duration within a factor of e^centre_spread), and sigma counts
    ``spread_weight`` pseudo-jobs of spread ``prior_sigma``.
    The maximum is found by Newton's method on (mu, log sigma) with a line search. (The EM
    algorithm is simpler but crawls when most looks are censored, which is exactly the state
    of a fresh batch: each of its steps moved the law a few percent.)
    """
    objective = _Objective(looks, (prior_mu, prior_sigma), (centre_spread, spread_weight))
    mu = start.mu if start is not None else prior_mu
    log_sigma = math.log(start.sigma if start is not None else prior_sigma)
    low_bound, high_bound = math.log(_MIN_SIGMA), math.log(_MAX_SIGMA)
    value, g_mu, g_ls = objective.value_and_gradient(mu, log_sigma)
    for _ in range(_ITERATIONS):
        # The Hessian by central differences of the analytic gradient.
        h = _STEP
        _, a_mu, a_ls = objective.value_and_gradient(mu + h, log_sigma)
        _, b_mu, b_ls = objective.value_and_gradient(mu - h, log_sigma)
        _, c_mu, c_ls = objective.value_and_gradient(mu, log_sigma + h)
        _, d_mu, d_ls = objective.value_and_gradient(mu, log_sigma - h)
        h_mm = (a_mu - b_mu) / (2 * h)
        h_ss = (c_ls - d_ls) / (2 * h)
        h_ms = ((a_ls - b_ls) + (c_mu - d_mu)) / (4 * h)
        determinant = h_mm * h_ss - h_ms * h_ms
        if h_mm < 0 and determinant > 0:
            step_mu = -(h_ss * g_mu - h_ms * g_ls) / determinant
            step_ls = -(-h_ms * g_mu + h_mm * g_ls) / determinant
        else:  # not concave here: climb the gradient instead
            scale = 1.0 / (abs(h_mm) + abs(h_ss) + 1.0)
            step_mu, step_ls = g_mu * scale, g_ls * scale
        # At most a factor of e in sigma and two sigmas in mu per step.
        largest = max(abs(step_mu) / (2 * math.exp(log_sigma)), abs(step_ls))
        if largest > 1.0:
            step_mu, step_ls = step_mu / largest, step_ls / largest
        fraction = 1.0
        for _ in range(30):
            new_mu = mu + fraction * step_mu
            new_ls = min(high_bound, max(low_bound, log_sigma + fraction * step_ls))
            new_value, new_g_mu, new_g_ls = objective.value_and_gradient(new_mu, new_ls)
            if new_value >= value - 1e-12:
                break
            fraction /= 2
        else:
            break
        moved = abs(new_mu - mu) + abs(new_ls - log_sigma)
        mu, log_sigma, value, g_mu, g_ls = new_mu, new_ls, new_value, new_g_mu, new_g_ls
        if moved < _TOLERANCE:
            break
    return LogNormalLaw(mu, math.exp(log_sigma))


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
