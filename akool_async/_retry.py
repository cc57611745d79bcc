"""What may be retried, and how long to wait: the one small policy every request goes through.

The wire (`_wire`) makes each attempt, classifies its failure once as a `Failure` (the error,
and what it proves about delivery), and asks `is_retryable` and `RetryPolicy.backoff` here
whether and when to try again; API calls and result downloads alike.

The core install is exactly httpx, anyio, attrs and cattrs, so the backoff is written here rather
than taken from stamina or tenacity: it is a few lines of arithmetic, and it must sleep through
anyio (for virtual time under trio's MockClock and asyncio test loops), honour ``Retry-After``,
and keep the paid-create rule below in one place.

The rule for paid creates: a create is retried only when it provably did not reach Akool
(no connection was made, HTTP 429, a rate-limit business code). Anything ambiguous becomes
`SubmissionUnknown` instead.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

import attrs

from ._errors import (
    AkoolError,
    ConnectError,
    InvalidInput,
    InvalidResponse,
    RateLimited,
    RemoteProtocolError,
    RequestTimeout,
    ServerError,
    TooManyRequests,
)

__all__ = ["ONE_ATTEMPT", "Delivery", "Failure", "RetryPolicy", "is_retryable", "parse_retry_after"]


class Delivery(enum.Enum):
    """Whether a failed request's effect at Akool is known."""

    NOT_DELIVERED = "not delivered"
    """Provably did nothing at Akool: no connection, or refused before running (429, 1005)."""
    AMBIGUOUS = "ambiguous"
    """May have run at Akool: sent, then the answer was lost, garbled or a 5xx."""
    ANSWERED = "answered"
    """Akool answered with a definite outcome (a business code)."""


class Failure(Exception):
    """One attempt's failure, classified once: the error to raise and what it proves.

    Attributes:
        error: The error the caller sees if no retry mends it; its ``__cause__`` is the httpx
            or json error, if there was one.
        delivery: What the failure proves about the request's effect at Akool.
        retry_after: Seconds the server asked to wait, when it said so.
        submission: For a paid create, the path and the JSON body sent: an ambiguous failure
            becomes `SubmissionUnknown` with them.
        stale_token: The bearer token the attempt sent, so a renewal replaces only that one.
        queued: Seconds the attempt waited for its turn from the pace before it was sent.
    """

    def __init__(
        self,
        error: AkoolError,
        delivery: Delivery,
        retry_after: float | None = None,
        *,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(str(error))
        if cause is not None:
            # The error users see keeps the httpx / json error as its cause.
            error.__cause__ = cause
        self.error = error
        self.delivery = delivery
        self.retry_after = retry_after
        self.submission: tuple[str, Mapping[str, Any]] | None = None
        self.stale_token: object = None
        self.queued = 0.0


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise InvalidInput(f"RetryPolicy.{attribute.name} must be greater than 0 (got {value!r})")


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise InvalidInput(f"RetryPolicy.{attribute.name} must be 0 or more (got {value!r})")


def _at_least_one(_: object, attribute: attrs.Attribute[int], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(
            f"RetryPolicy.{attribute.name} must be a whole number >= 1 (got {value!r})"
        )


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How transient failures are retried: exponential backoff with full jitter, bounded.

    The wait before retry *n* (counting from 1) is a uniform draw from
    ``[0, min(wait_max, wait_initial * 2 ** (n - 1))]``, unless the server sent ``Retry-After``,
    which is honoured up to ``max_retry_after``.

    Attributes:
        attempts: Tries in all, the first included. ``1`` disables retries.
        timeout: Total seconds a call may spend retrying; no retry starts after it. Time spent
            queued for the session's shared request budget does not count.
        wait_initial: The backoff cap for the first retry, in seconds.
        wait_max: The largest backoff cap, in seconds.
        max_retry_after: The longest ``Retry-After`` honoured; a longer one is cut to this.
        jitter: Draw waits at random in ``[0, cap]`` (full jitter). Off, the wait is the cap.
    """

    attempts: int = attrs.field(default=5, validator=_at_least_one)
    timeout: float = attrs.field(default=120.0, validator=_positive)
    wait_initial: float = attrs.field(default=0.5, validator=_non_negative)
    wait_max: float = attrs.field(default=30.0, validator=_non_negative)
    max_retry_after: float = attrs.field(default=60.0, validator=_non_negative)
    jitter: bool = True

    def backoff(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        cap = min(self.wait_max, self.wait_initial * 2 ** (retry - 1))
        return random.uniform(0, cap) if self.jitter else cap  # noqa: S311 - jitter, not crypto


ONE_ATTEMPT: Final = RetryPolicy(attempts=1)
"""For status reads the engine makes: a failed read is looked at again after the engine's own
backoff, so the wire does not repeat it."""


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date; None if unusable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and seconds == seconds else None  # noqa: PLR0124 - NaN check
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    # An HTTP date is wall-clock time by definition, so it is compared with the wall clock.
    current = datetime.now(UTC) if now is None else now
    return max((when - current).total_seconds(), 0.0)


def is_retryable(error: AkoolError, delivery: Delivery, *, paid: bool) -> bool:
    """Whether a failed request may be sent again.

    Reads (and getToken) are retried on any transient failure. A paid create is retried only
    when the failure proves it did nothing at Akool, and never when it could not be encoded
    (`InvalidInput`): the same bytes would fail the same way.
    """
    if paid:
        return delivery is Delivery.NOT_DELIVERED and not isinstance(error, InvalidInput)
    return isinstance(
        error,
        ConnectError
        | RequestTimeout
        | RemoteProtocolError
        | TooManyRequests
        | ServerError
        | InvalidResponse
        | RateLimited,
    )
