"""What the emulator decides by chance: job timings, faults, failures — all reproducible.

Every draw is a pure function of the seed and *what* is being decided (which endpoint, which
prompt or id, the how-many-th request for it), never of the order concurrent requests arrive in.
So a seeded run gives the same faults and timings however the client interleaves its requests.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal, TypeAlias, cast, get_args

import attrs

from akool_async.testing._akool import ROUTES
from akool_async.testing._errors import EmulatorConfigError

__all__ = [
    "Duration",
    "DurationLaw",
    "EmulatorTimings",
    "FaultKind",
    "Faults",
    "Mixture",
    "Pareto",
    "draw",
    "rng_for",
]

FaultKind = Literal[
    "too_many_requests",
    "too_many_requests_retry_after",
    "server_error",
    "bad_gateway",
    "unavailable",
    "truncated",
    "slow",
    "drop_before_commit",
    "drop_after_commit",
    "generate_error",
    "rate_limit_code",
]

ENDPOINTS: Final = frozenset(ROUTES.values())


def _seed_bytes(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()


def draw(*parts: object) -> float:
    """A uniform number in [0, 1) fixed by ``parts``."""
    return int.from_bytes(_seed_bytes(*parts)[:8], "big") / 2**64


def rng_for(*parts: object) -> random.Random:
    """A ``random.Random`` seeded by ``parts``."""
    return random.Random(int.from_bytes(_seed_bytes(*parts)[:16], "big"))  # noqa: S311 - simulation


def _non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise EmulatorConfigError(f"Duration.{name} must be 0 or more (got {value!r})")


@attrs.frozen
class Duration:
    """A log-normal duration in seconds: ``median * exp(N(0, spread))``, at least ``minimum``.

    Attributes:
        median: The typical duration.
        spread: Standard deviation of the logarithm; 0 makes every draw the median.
        minimum: The shortest duration drawn.

    Raises:
        EmulatorConfigError: ``median`` or ``spread`` is below 0.
    """

    median: float = attrs.field(validator=lambda _, __, value: _non_negative("median", value))
    spread: float = attrs.field(
        default=0.3, validator=lambda _, __, value: _non_negative("spread", value)
    )
    minimum: float = 0.0

    def sample(self, rng: random.Random) -> float:
        """One draw."""
        value = self.median * math.exp(rng.gauss(0.0, self.spread)) if self.spread else self.median
        return max(self.minimum, value)


def _positive_finite(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise EmulatorConfigError(f"{name} must be a number greater than 0 (got {value!r})")


def _pareto_maximum(instance: Pareto, _: object, value: float | None) -> None:
    if value is not None and not instance.minimum <= value < math.inf:
        raise EmulatorConfigError(
            f"Pareto.maximum must be None or at least minimum={instance.minimum!r} (got {value!r})"
        )


# Beyond exp(700) a float overflows: a draw that far out is "never", and stays finite.
_LARGEST_EXPONENT: Final = 700.0


@attrs.frozen
class Pareto:
    """A heavy-tailed duration in seconds: a Pareto law from ``minimum``, cut at ``maximum``.

    The chance that a draw exceeds ``x`` is ``(minimum / x) ** shape``: with ``shape=1.5``, one
    draw in 32 is over 10 times the minimum and one in 1,000 over 100 times. Half the draws are
    under ``minimum * 2 ** (1 / shape)``. Mixed with a `Duration` in a `Mixture`, it gives a
    log-normal body with a long tail: ``Mixture([(0.85, Duration(20, 0.3)), (0.15,
    Pareto(40, 1.5, maximum=1800))])``.

    Attributes:
        minimum: The shortest duration drawn (the law's scale), greater than 0.
        shape: The tail index, greater than 0: the smaller, the heavier the tail. At 2 or less
            the variance is infinite, at 1 or less the mean too.
        maximum: The longest duration drawn (longer draws are cut to it), or None for no bound.

    Raises:
        EmulatorConfigError: ``minimum`` or ``shape`` is not a finite number above 0, or
            ``maximum`` is below ``minimum``.
    """

    minimum: float = attrs.field(
        validator=lambda _, __, value: _positive_finite("Pareto.minimum", value)
    )
    shape: float = attrs.field(
        default=1.5, validator=lambda _, __, value: _positive_finite("Pareto.shape", value)
    )
    maximum: float | None = attrs.field(default=None, validator=_pareto_maximum)

    def sample(self, rng: random.Random) -> float:
        """One draw."""
        # 1 - random() lies in (0, 1], so its logarithm is finite and at most 0.
        exponent = -math.log(1.0 - rng.random()) / self.shape
        value = self.minimum * math.exp(min(exponent, _LARGEST_EXPONENT))
        return value if self.maximum is None else min(value, self.maximum)


def _weight(value: object) -> float:
    _positive_finite("a Mixture weight", value)
    return float(cast("float", value))


def _components(
    value: Iterable[tuple[float, DurationLaw]],
) -> tuple[tuple[float, DurationLaw], ...]:
    # Checked as whatever a caller may really pass, not as annotated.
    given = cast("object", value)
    example = "e.g. Mixture([(0.7, Duration(30, 0.2)), (0.3, Duration(110, 0.2))])"
    if isinstance(given, str | bytes) or not isinstance(given, Iterable):
        raise EmulatorConfigError(
            f"Mixture takes a list of (weight, law) pairs, {example} (got {given!r})"
        )
    pairs: list[tuple[float, DurationLaw]] = []
    for pair in cast("Iterable[object]", given):
        items = cast("Sequence[object]", pair) if isinstance(pair, tuple | list) else ()
        if len(items) != 2:  # noqa: PLR2004 - a pair
            raise EmulatorConfigError(
                f"each Mixture component is a (weight, law) pair, {example} (got {pair!r})"
            )
        weight, law = items
        if not isinstance(law, _LAWS):
            raise EmulatorConfigError(
                f"a Mixture component's law is a Duration, Pareto or Mixture (got {law!r})"
            )
        pairs.append((_weight(weight), law))
    if not pairs:
        raise EmulatorConfigError(f"a Mixture needs at least one (weight, law) pair, {example}")
    return tuple(pairs)


@attrs.frozen
class Mixture:
    """A duration drawn from one of several laws, picked at random in proportion to its weight.

    ``Mixture([(0.7, Duration(30, 0.2)), (0.3, Duration(110, 0.2))])``: 70 % of jobs take about
    30 s and 30 % about 110 s. Usable wherever a `Duration` is, in `EmulatorTimings`.

    Attributes:
        components: ``(weight, law)`` pairs. Weights are relative (they need not add up to 1),
            each greater than 0; each law is a `Duration`, a `Pareto` or another `Mixture`.

    Raises:
        EmulatorConfigError: ``components`` is empty or not a list of such pairs.
    """

    components: tuple[tuple[float, DurationLaw], ...] = attrs.field(converter=_components)

    def sample(self, rng: random.Random) -> float:
        """One draw: a component by weight, then a draw of its law (both from ``rng``)."""
        pick = rng.random() * sum(weight for weight, _ in self.components)
        for weight, law in self.components[:-1]:
            if pick < weight:
                return law.sample(rng)
            pick -= weight
        return self.components[-1][1].sample(rng)


DurationLaw: TypeAlias = Duration | Mixture | Pareto
"""A law the emulator draws a phase's duration from: a `Duration`, `Pareto` or `Mixture`."""

_LAWS: Final = (Duration, Mixture, Pareto)


def _law(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, _LAWS):
        raise EmulatorConfigError(
            f"{type(instance).__name__}.{attribute.name} must be a Duration, Mixture or Pareto "
            f"(got {value!r})"
        )


@attrs.frozen(kw_only=True)
class EmulatorTimings:
    """How long Akool's phases take, before ``time_scale`` is applied.

    The defaults follow what Akool's own demo and users report: a grid queues for a few
    seconds and renders in roughly 30 to 60 s; an upscale is quicker; a variation is a new grid.
    ``quadrant_lag`` is the time between status 3 and the four quadrant URLs appearing. Each
    phase takes a `Duration` (log-normal), a `Pareto` (heavy-tailed) or a `Mixture` of them.

    Raises:
        EmulatorConfigError: A phase is given something other than one of those laws.
    """

    grid_queue: DurationLaw = attrs.field(default=Duration(4.0, 0.6, 0.5), validator=_law)
    grid_processing: DurationLaw = attrs.field(default=Duration(40.0, 0.25, 15.0), validator=_law)
    upscale_queue: DurationLaw = attrs.field(default=Duration(2.0, 0.6, 0.3), validator=_law)
    upscale_processing: DurationLaw = attrs.field(default=Duration(15.0, 0.3, 5.0), validator=_law)
    variation_queue: DurationLaw = attrs.field(default=Duration(3.0, 0.6, 0.5), validator=_law)
    variation_processing: DurationLaw = attrs.field(
        default=Duration(35.0, 0.25, 12.0), validator=_law
    )
    quadrant_lag: DurationLaw = attrs.field(default=Duration(2.0, 0.5, 0.0), validator=_law)


def _rate(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise EmulatorConfigError(
            f"Faults.{attribute.name} is a probability from 0 to 1 (got {value!r})"
        )


def _positive_or_none(
    _: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None and not value > 0:
        raise EmulatorConfigError(
            f"Faults.{attribute.name} must be greater than 0 or None (got {value!r})"
        )


@attrs.frozen(kw_only=True)
class Faults:
    """Faults the emulator injects, each a per-request probability, reproducible under the seed.

    A request draws at most one fault. Faults apply to the API endpoints named in ``endpoints``
    (``createbyprompt``, ``createbybutton``, ``infobymodelid``, ``quota``, ``getToken``); images
    are served as a CDN would, without faults.

    Attributes:
        too_many_requests: HTTP 429 without ``Retry-After``. Nothing is created.
        too_many_requests_retry_after: HTTP 429 with ``Retry-After: retry_after``.
        retry_after: The ``Retry-After`` seconds sent with throttles and 503s.
        server_error: HTTP 500 with a JSON body. A create is *not* committed.
        bad_gateway: HTTP 502 with an HTML body, as a proxy sends it. Not committed.
        unavailable: HTTP 503 with ``Retry-After``. Not committed.
        truncated: HTTP 200 whose JSON body is cut short. A create *is* committed.
        slow: The answer is delayed by ``slow_delay`` seconds (then given normally).
        slow_delay: Seconds a slow answer waits.
        drop_before_commit: The connection drops mid-answer, the create not committed.
        drop_after_commit: The connection drops mid-answer after the create was committed.
        generate_error: Business code 1108 on a create. Not committed.
        rate_limit_code: Business code 1005 ("too frequent") on any request. Not committed.
        job_failure_rate: Chance a created job ends in status 4 (failed).
        fail_marker: A prompt containing this text always fails; None to disable.
        rate_limit: Requests per second the API accepts (a one-second sliding window); above it,
            HTTP 429 with ``Retry-After``. None for no limit.
        token_ttl: Seconds a getToken token stays valid; after that, code 1101. None: forever.
        endpoints: The endpoints the per-request faults apply to.

    Raises:
        EmulatorConfigError: A rate is outside 0 to 1, the per-request rates add up to more than
            1, ``rate_limit`` or ``token_ttl`` is 0 or less, or ``endpoints`` names an unknown
            endpoint.
    """

    too_many_requests: float = attrs.field(default=0.0, validator=_rate)
    too_many_requests_retry_after: float = attrs.field(default=0.0, validator=_rate)
    retry_after: float = 1.0
    server_error: float = attrs.field(default=0.0, validator=_rate)
    bad_gateway: float = attrs.field(default=0.0, validator=_rate)
    unavailable: float = attrs.field(default=0.0, validator=_rate)
    truncated: float = attrs.field(default=0.0, validator=_rate)
    slow: float = attrs.field(default=0.0, validator=_rate)
    slow_delay: float = 30.0
    drop_before_commit: float = attrs.field(default=0.0, validator=_rate)
    drop_after_commit: float = attrs.field(default=0.0, validator=_rate)
    generate_error: float = attrs.field(default=0.0, validator=_rate)
    rate_limit_code: float = attrs.field(default=0.0, validator=_rate)
    job_failure_rate: float = attrs.field(default=0.0, validator=_rate)
    fail_marker: str | None = "[fail]"
    rate_limit: float | None = attrs.field(default=None, validator=_positive_or_none)
    token_ttl: float | None = attrs.field(default=None, validator=_positive_or_none)
    endpoints: frozenset[str] = attrs.field(default=ENDPOINTS, converter=frozenset)

    def __attrs_post_init__(self) -> None:
        total = sum(rate for _, rate in self._per_request())
        if total > 1.0 + 1e-9:
            raise EmulatorConfigError(f"the per-request fault rates add up to {total:g}; at most 1")
        unknown = self.endpoints - ENDPOINTS
        if unknown:
            raise EmulatorConfigError(
                f"Faults.endpoints has {sorted(unknown)}; allowed: {', '.join(sorted(ENDPOINTS))}"
            )

    def _per_request(self) -> list[tuple[FaultKind, float]]:
        # Each fault kind is also the name of the field holding its rate.
        return [(kind, float(getattr(self, kind))) for kind in get_args(FaultKind)]

    def pick(self, endpoint: str, chance: float) -> FaultKind | None:
        """The fault for a request on ``endpoint`` whose uniform draw is ``chance``, if any."""
        if endpoint not in self.endpoints:
            return None
        for kind, rate in self._per_request():
            if chance < rate:
                return kind
            chance -= rate
        return None
