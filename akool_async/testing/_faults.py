"""Faults and throttling applied to API requests: which fault strikes, and how it is answered.

`Faults` (in ``_plan.py``) says how often each fault strikes; here a request draws its fault, the
rate limit's sliding window is kept, and a fault is answered before the work (an HTTP error, a
business code, a dropped connection) or after it (a late, cut short or dropped answer).
"""

from __future__ import annotations

import collections
import json
import math
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeAlias

import anyio

from akool_async._asgi import Send
from akool_async.testing._akool import Code
from akool_async.testing._http import (
    Answer,
    Incoming,
    as_object,
    drop,
    respond,
    respond_envelope,
    respond_refusal,
)
from akool_async.testing._plan import FaultKind, Faults, draw

__all__ = ["FaultInjector", "Record", "answer_after_work", "fail_before_work"]

_CREATES: Final = frozenset({"createbyprompt", "createbybutton"})
_TOO_MANY: Final = b'{"message":"Too Many Requests"}'

Record: TypeAlias = Callable[[int, int | None, FaultKind | None], None]
"""Records the request being answered: its HTTP status, business code and fault."""


class FaultInjector:
    """Draws each API request's fault and keeps the rate limit's one-second window."""

    def __init__(self) -> None:
        self._seen: collections.Counter[tuple[str, str]] = collections.Counter()
        self._window: collections.deque[float] = collections.deque()

    def pick(self, faults: Faults, seed: int, incoming: Incoming) -> FaultKind | None:
        """The fault ``incoming`` meets: drawn from ``seed``, the request and its repeats."""
        key = _fault_key(incoming.endpoint, incoming.query, incoming.body)
        self._seen[incoming.endpoint, key] += 1
        chance = draw(seed, "fault", incoming.endpoint, key, self._seen[incoming.endpoint, key])
        fault = faults.pick(incoming.endpoint, chance)
        if fault == "generate_error" and incoming.endpoint not in _CREATES:
            fault = None
        return fault

    async def throttle(self, faults: Faults, at: float, send: Send, record: Record) -> bool:
        """Answer 429 when the sliding one-second window is full; True if it was answered."""
        limit = faults.rate_limit
        if limit is None:
            return False
        while self._window and self._window[0] <= at - 1.0:
            self._window.popleft()
        if len(self._window) >= limit:
            retry_after = _seconds(self._window[0] + 1.0 - at)
            record(429, None, None)
            await respond(send, 429, _TOO_MANY, "application/json", {"retry-after": retry_after})
            return True
        self._window.append(at)
        return False


async def fail_before_work(
    send: Send,
    fault: FaultKind | None,
    faults: Faults,
    record: Record,
) -> bool:
    """Answer the faults that strike before any work is done; True if one was answered."""
    retry = {"retry-after": _seconds(faults.retry_after)}
    answers: dict[str, tuple[int, bytes, str, Mapping[str, str]]] = {
        "too_many_requests": (429, _TOO_MANY, "application/json", {}),
        "too_many_requests_retry_after": (429, _TOO_MANY, "application/json", retry),
        "server_error": (
            500,
            b'{"code":500,"msg":"Internal Server Error"}',
            "application/json",
            {},
        ),
        "bad_gateway": (
            502,
            b"<html><body><h1>502 Bad Gateway</h1></body></html>",
            "text/html",
            {},
        ),
        "unavailable": (
            503,
            b'{"code":503,"msg":"Service Unavailable"}',
            "application/json",
            retry,
        ),
    }
    if fault in answers:
        status, body, content_type, extra = answers[fault]
        record(status, None, fault)
        await respond(send, status, body, content_type, extra)
        return True
    if fault == "rate_limit_code":
        answer = Answer(Code.TOO_FREQUENT)
        record(200, answer.code, fault)
        await respond_refusal(send, answer)
        return True
    if fault == "drop_before_commit":
        record(200, None, fault)
        await drop(send)
    return False


async def answer_after_work(
    send: Send, payload: Mapping[str, Any], fault: FaultKind | None, faults: Faults
) -> None:
    """Send the work's answer, late, cut short or dropped as ``fault`` says."""
    if fault == "slow":
        # The work is done (a create is committed); only the answer is late, so a client
        # that gives up waiting has still paid.
        await anyio.sleep(faults.slow_delay)
    elif fault == "drop_after_commit":
        await drop(send)
    elif fault == "truncated":
        encoded = json.dumps(payload).encode()
        await respond(send, 200, encoded[: max(1, len(encoded) // 2)], "application/json")
        return
    await respond_envelope(send, payload)


def _fault_key(endpoint: str, query: Mapping[str, str], body: Any) -> str:
    if endpoint == "infobymodelid":
        return query.get("image_model_id", "")
    fields = as_object(body)
    if fields is not None:
        body = fields
        if endpoint == "createbyprompt":
            return str(body.get("prompt", ""))
        if endpoint == "createbybutton":
            return f"{body.get('_id', '')}\x1f{body.get('button', '')}"
    return ""


def _seconds(value: float) -> str:
    return str(max(1, math.ceil(value)))
