"""How many requests run at once, and how fast they start: one budget for creates and polls.

Akool publishes no rate limit, so by default the pace is limited only by concurrency until Akool
pushes back. On HTTP 429 (or code 1005) the pace drops to a little under the rate actually
achieved in the last second, everyone pauses for ``Retry-After``, and the rate then creeps back
up slowly, so that throttles stay rare (a probe every half minute or so) instead of constant.
"""

from __future__ import annotations

import collections
import math
from typing import Final

import anyio

__all__ = ["Pace", "Turn"]

_WINDOW: Final = 1.0
_BACKOFF: Final = 0.85
_PROBE_EVERY: Final = 30.0
_PROBE_STEP: Final = 1.05
_PROBE_ADD: Final = 0.25
_MIN_RATE: Final = 0.2
_DEFAULT_PAUSE: Final = 1.0
_MEANINGFUL: Final = 5
_EPSILON: Final = 1e-9
_MIN_SLEEP: Final = 1e-6
_CREATE_SHARE: Final = 0.75


class Turn:
    """One request's claim on a concurrency slot."""

    __slots__ = ("create",)

    def __init__(self, *, create: bool) -> None:
        self.create = create


class Pace:
    """A concurrency limit plus an adaptive token bucket, both through anyio (virtual time too).

    Args:
        max_concurrent: Requests in flight at once.
        rate: Requests per second to start from; None: unlimited until the first throttle.
        max_pause: The longest ``Retry-After`` honoured, in seconds.
    """

    def __init__(self, *, max_concurrent: int, rate: float | None, max_pause: float) -> None:
        self._slots = anyio.CapacityLimiter(max_concurrent)
        # Creates may hold at most three quarters of the slots, so a burst of thousands of
        # creates never shuts status reads out: finished jobs must still be noticed.
        self._create_slots = anyio.CapacityLimiter(max(1, int(max_concurrent * _CREATE_SHARE)))
        self._turns = anyio.Lock()
        self._priority_turns = anyio.Lock()
        self._rate = rate
        self._max_pause = max_pause
        self._tokens = 1.0
        self._refilled = anyio.current_time()
        self._paused_until = 0.0
        self._last_change = anyio.current_time()
        self._sent: collections.deque[float] = collections.deque()
        self.throttles = 0

    @property
    def rate(self) -> float | None:
        """The current requests-per-second limit, or None when there is none."""
        return self._rate

    @property
    def in_flight(self) -> int:
        """Requests holding a slot now."""
        return int(self._slots.borrowed_tokens)

    async def acquire(self, *, create: bool = False) -> Turn:
        """Wait for a free slot and for the rate to allow one more request; take both.

        Args:
            create: The request is a create. Creates share their own queue and at most three
                quarters of the slots; other requests (status reads) have a queue of their own,
                so they never wait behind a long line of creates.

        Returns:
            The turn, to hand back with `release` (from any task: the poll loop takes turns
            that the poll tasks give back).
        """
        turn = Turn(create=create)
        if create:
            await self._create_slots.acquire_on_behalf_of(turn)
        try:
            await self._slots.acquire_on_behalf_of(turn)
            try:
                async with self._turns if create else self._priority_turns:
                    await self._await_token()
            except BaseException:
                self._slots.release_on_behalf_of(turn)
                raise
        except BaseException:
            if create:
                self._create_slots.release_on_behalf_of(turn)
            raise
        return turn

    def release(self, turn: Turn) -> None:
        """Give back the slot taken by `acquire`."""
        self._slots.release_on_behalf_of(turn)
        if turn.create:
            self._create_slots.release_on_behalf_of(turn)

    async def _await_token(self) -> None:
        while True:
            now = anyio.current_time()
            if now < self._paused_until:
                await anyio.sleep(max(self._paused_until - now, _MIN_SLEEP))
                continue
            self._probe(now)
            rate = self._rate
            if rate is None:
                break
            # A bucket of at most one token: no bursts, so any one-second window holds about
            # `rate` requests, which is what a server's sliding-window limit counts.
            self._tokens = min(1.0, self._tokens + (now - self._refilled) * rate)
            self._refilled = now
            # Float sums of refills fall a hair short of 1.0; a virtual clock would then be asked
            # to sleep less than it can resolve, forever.
            if self._tokens >= 1.0 - _EPSILON:
                self._tokens = max(0.0, self._tokens - 1.0)
                break
            await anyio.sleep(max((1.0 - self._tokens) / rate, _MIN_SLEEP))
        self._sent.append(anyio.current_time())
        while self._sent and self._sent[0] < anyio.current_time() - _WINDOW:
            self._sent.popleft()

    def throttled(self, retry_after: float | None) -> None:
        """Akool said too many requests: slow down and pause everyone for ``retry_after``."""
        now = anyio.current_time()
        self.throttles += 1
        recent = sum(1 for sent in self._sent if sent >= now - _WINDOW)
        if recent >= _MEANINGFUL:
            # We were near the limit: it is a little under what we just achieved.
            current = self._rate if self._rate is not None else math.inf
            self._rate = max(_MIN_RATE, min(current, recent / _WINDOW) * _BACKOFF)
        elif self._rate is not None:
            self._rate = max(_MIN_RATE, self._rate * _BACKOFF)
        # else: a throttle at a trickle says nothing about our rate (a shared account, a
        # longer window): pause as asked, and keep the pace.
        self._tokens = 0.0
        self._refilled = now
        pause = min(retry_after if retry_after is not None else _DEFAULT_PAUSE, self._max_pause)
        self._paused_until = max(self._paused_until, now + pause)
        self._last_change = now

    def _probe(self, now: float) -> None:
        """After a quiet spell, try a little faster: the limit may have been a passing one."""
        if self._rate is not None and self.throttles and now - self._last_change >= _PROBE_EVERY:
            self._rate = self._rate * _PROBE_STEP + _PROBE_ADD
            self._last_change = now
