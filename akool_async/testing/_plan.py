"""What the emulator decides by chance: job timings, faults, failures — all reproducible.

Every draw is a pure function of the seed and *what* is being decided (which endpoint, which
prompt or id, the how-many-th request for it), never of the order concurrent requests arrive in.
So a seeded run gives the same faults and timings however the client interleaves its requests.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Final, Literal, get_args

import attrs

from akool_async._errors import InvalidInput

__all__ = ["Duration", "EmulatorTimings", "FaultKind", "Faults", "draw", "rng_for"]

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

ENDPOINTS: Final = frozenset(
    {"createbyprompt", "createbybutton", "infobymodelid", "quota", "getToken"}
)


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
        raise InvalidInput(f"Duration.{name} must be 0 or more (got {value!r})")


@attrs.frozen
class Duration:
    """A log-normal duration in seconds: ``median * exp(N(0, spread))``, at least ``minimum``.

    Attributes:
        median: The typical duration.
        spread: Standard deviation of the logarithm; 0 makes every draw the median.
        minimum: The shortest duration drawn.
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


@attrs.frozen(kw_only=True)
class EmulatorTimings:
    """How long Akool's phases take, before ``time_scale`` is applied.

    The defaults follow what Akool's own demo and users report: a grid queues for a few
    seconds and renders in roughly 30 to 60 s; an upscale is quicker; a variation is a new grid.
    ``quadrant_lag`` is the time between status 3 and the four quadrant URLs appearing.
    """

    grid_queue: Duration = Duration(4.0, 0.6, 0.5)
    grid_processing: Duration = Duration(40.0, 0.25, 15.0)
    upscale_queue: Duration = Duration(2.0, 0.6, 0.3)
    upscale_processing: Duration = Duration(15.0, 0.3, 5.0)
    variation_queue: Duration = Duration(3.0, 0.6, 0.5)
    variation_processing: Duration = Duration(35.0, 0.25, 12.0)
    quadrant_lag: Duration = Duration(2.0, 0.5, 0.0)


def _rate(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise InvalidInput(f"Faults.{attribute.name} is a probability from 0 to 1 (got {value!r})")


def _positive_or_none(
    _: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None and not value > 0:
        raise InvalidInput(
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
            raise InvalidInput(f"the per-request fault rates add up to {total:g}; at most 1")
        unknown = self.endpoints - ENDPOINTS
        if unknown:
            raise InvalidInput(
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
