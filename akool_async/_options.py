"""`AkoolSession`'s options, checked when the session is made: nothing is sent with a bad one."""

from __future__ import annotations

import enum
import importlib.util
import math
from importlib.metadata import PackageNotFoundError, version
from typing import Final, cast

import httpx

from ._coordinator import Coordinator
from ._errors import InvalidInput, MissingDependency

__all__ = [
    "NOT_GIVEN",
    "NotGiven",
    "__version__",
    "check_coordinator",
    "check_http2",
    "check_limits",
    "check_listen",
    "check_max_prompt_length",
    "check_request_deadline",
    "user_agent",
    "whole",
]

try:
    __version__ = version("akool-async")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"


class NotGiven(enum.Enum):
    """The type of `NOT_GIVEN`: "use the default", as distinct from ``None``."""

    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven.NOT_GIVEN


def user_agent() -> str:
    """What requests send as ``User-Agent``."""
    return f"akool-async/{__version__} httpx/{httpx.__version__}"


def whole(name: str, value: object) -> int:
    """``value`` if it is a whole number of at least 1; else a clear error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{name} must be a whole number >= 1 (got {value!r})")
    return value


def check_coordinator(coordinator: object) -> Coordinator | None:
    """A coordinator, or None; anything else (a Redis URL, a Redis client) is refused."""
    if coordinator is None or isinstance(coordinator, Coordinator):
        return coordinator
    raise InvalidInput(
        "coordinator must be a coordinator such as "
        "akool_async.coordination.RedisCoordinator('redis://host:6379/0') (got "
        f"{type(coordinator).__name__})"
    )


def check_limits(rate: object, concurrent: object, jobs: object) -> None:
    """``requests_per_second``, ``max_concurrent_requests`` and ``max_jobs_in_flight``."""
    if rate is not None and not (
        isinstance(rate, int | float) and math.isfinite(rate) and rate > 0
    ):
        raise InvalidInput(f"requests_per_second must be a number > 0 or None (got {rate!r})")
    whole("max_concurrent_requests", concurrent)
    whole("max_jobs_in_flight", jobs)


def check_request_deadline(given: object, timeout: httpx.Timeout) -> float | None:
    """``request_deadline``: seconds one attempt may take, headers and body together.

    Not given, it is the sum of ``timeout``'s four phases (connect, write, read and pool: 100 s
    for the default timeouts, 20 s for ``timeout=5``), so no phase can be starved, yet a body
    that trickles in, each byte within the read timeout, ends; None when a phase is unlimited.

    Raises:
        InvalidInput: Neither a number > 0 nor None.
    """
    if isinstance(given, NotGiven):
        phases = [timeout.connect, timeout.write, timeout.read, timeout.pool]
        limited = [phase for phase in phases if phase is not None]
        return sum(limited) if len(limited) == len(phases) else None
    if given is None:
        return None
    if isinstance(given, bool) or not isinstance(given, int | float) or not given > 0:
        raise InvalidInput(
            f"request_deadline must be a number of seconds > 0, or None (got {given!r})"
        )
    if not math.isfinite(given):
        return None
    return float(given)


def check_listen(listen: object) -> tuple[str, int] | None:
    """``webhook_listen``: None, or a ``(host, port)`` pair."""
    if listen is None:
        return None
    parts: tuple[object, ...] = (
        tuple(cast("tuple[object, ...]", listen)) if isinstance(listen, tuple) else ()
    )
    if len(parts) == 2:  # noqa: PLR2004 - (host, port)
        host, port = parts
        if (
            isinstance(host, str)
            and host
            and isinstance(port, int)
            and not isinstance(port, bool)
            and 0 <= port <= 65535  # noqa: PLR2004 - the highest TCP port
        ):
            return host, port
    raise InvalidInput(
        f"webhook_listen must be (host, port), e.g. ('127.0.0.1', 0) (got {listen!r})"
    )


def check_http2(http2: object, *, own_client: bool) -> bool:
    """``http2``: a bool, for the session's own client only, with ``h2`` installed.

    Raises:
        InvalidInput: Not a bool, or given with ``http_client`` (whose own setting applies).
        MissingDependency: ``h2`` is missing (an `AkoolError` and an `ImportError`).
    """
    if not isinstance(http2, bool):
        raise InvalidInput(f"http2 must be True or False (got {http2!r})")
    if http2 and not own_client:
        raise InvalidInput(
            "http2 applies to the session's own client; with http_client=, create that "
            "client with httpx.AsyncClient(http2=True) instead"
        )
    if http2 and importlib.util.find_spec("h2") is None:
        raise MissingDependency(
            "http2=True needs the h2 package, which is not installed: install the package's "
            "http2 extra (pip install '.[http2]' from a checkout) or h2 itself (pip install h2); "
            "or leave http2 off",
            name="h2",
        )
    return http2


def check_max_prompt_length(given: object) -> int:
    """``max_prompt_length``: the longest prompt sent, a whole number of characters >= 1."""
    if isinstance(given, bool) or not isinstance(given, int) or given < 1:
        raise InvalidInput(
            f"max_prompt_length must be a whole number of characters >= 1 (got {given!r})"
        )
    return given
