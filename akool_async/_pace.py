"""How many requests run at once, and how fast they start: one budget for creates and polls.

A 429 (or code 1005) means one of three things, and each gets its own answer:

* **A limit the session was told** (``AkoolSession(requests_per_second=R)``) is a ceiling. The
  pace runs at 97 % of ``R``, so a server counting a one-second sliding window never sees
  ``R + 1`` requests even with some 30 ms of jitter, and nothing ever raises it above that.
* **A limit the session discovers** shows as 429s in a cluster: more of them, over the last 2,
  10 or 60 seconds, than a sporadic 5 % of the requests answered then would plausibly give (5 %
  of them, plus three standard deviations, plus one; at least 3). The server just accepted as
  many requests over that window as were answered without a 429, so that rate is the limit: the
  pace drops to 95 % of it and everyone waits out ``Retry-After`` (a cluster with next to nothing
  accepted, an outage or a long window spent, only does the waiting). Now and then a probe runs
  2 s a little above the limit to see whether it has risen: two 429s end it at once and the next
  comes twice as late; none raises the limit, and the next probe comes sooner and bolder; three
  passed in a row forget the limit (those 429s were no limit after all). A limit found under a
  told one lowers the pace the same way: the told value was too high.
* **A sporadic 429** (load shedding, a shared account's burst) is anything short of a cluster.
  Only the refused request waits (its caller honours ``Retry-After``); the pace and everyone else
  go on. A pace a hair above a limit would look the same, which is why a discovered limit is
  paced 5 % under what the server accepted and probed above only briefly.

Requests are counted when their answer is in (`Pace.release`, `Pace.throttled`), so a request
still in flight never passes for an accepted one. All time is anyio's: virtual time works.

Several processes of one app (web workers, containers) can share one budget per account
(`SharedBudget`, e.g. `akool_async.coordination.RedisCoordinator`): the same rules then run over
every worker's answers, atomically in the store, and every request takes its turn there. While
the store cannot be reached, each process falls back to its own bucket, as above.
"""

from __future__ import annotations

import collections
import math
from typing import Final, Protocol

import anyio
import attrs

from ._errors import CoordinationUnavailable

__all__ = ["TUNING", "Pace", "SharedBudget", "SharedTurn", "Turn"]

_TOLD_SHARE: Final = 0.97
"""A told limit is paced at this share of it: R + 1 requests span 1 / 0.97 s, 31 ms of slack."""
_SETTLE_SHARE: Final = 0.95
"""A discovered limit is paced at this share of it."""
_WINDOW: Final = 1.0
"""The window a server counts its limit over, as far as we can tell (Akool does not say)."""
_SHORT_WINDOW: Final = 2.0
"""Clusters seen within it: a burst over a limit."""
_LONG_WINDOWS: Final = (10.0, 60.0)
"""Clusters seen within them: a pace steadily over a limit, by a little or by jitter."""
_CLUSTER_MIN: Final = 3
_MEANINGFUL: Final = 3
"""Accepted requests a cluster's window must hold to say what rate the server allows."""
_SPORADIC_SHARE: Final = 0.05
"""Refusals up to about this share of requests can be sporadic; more are a limit."""
_PROBE_FIRST: Final = 10.0
"""Seconds of steady pace before the first probe after a limit is found."""
_PROBE_SHORTEST: Final = 2.0
_PROBE_LONGEST: Final = 300.0
_PROBE_SPAN: Final = 2.0
_PROBE_STEP: Final = 0.2
"""A first probe runs this much above the limit (and at least one request/s above it)."""
_PROBE_STEP_MOST: Final = 1.0
_PROBE_FAILS_AT: Final = 2
"""429s that end a probe at once: the limit is where it was."""
_PROBE_BUSY: Final = 0.9
"""A probe counts only if it sent at least this share of what its rate allowed."""
_JUDGE_MOST: Final = 30.0
"""Seconds after a probe's span that its last answers are waited for, at most."""
_FORGET_AFTER: Final = 3
"""Probes passed in a row after which a discovered limit is forgotten."""
_MIN_RATE: Final = 0.2
_DEFAULT_PAUSE: Final = 1.0
_EPSILON: Final = 1e-9
_MIN_SLEEP: Final = 1e-6
_CREATE_SHARE: Final = 0.75

TUNING: Final = {
    "told_share": _TOLD_SHARE,
    "settle_share": _SETTLE_SHARE,
    "window": _WINDOW,
    "short_window": _SHORT_WINDOW,
    "long_window": _LONG_WINDOWS[0],
    "longest_window": _LONG_WINDOWS[1],
    "cluster_min": _CLUSTER_MIN,
    "meaningful": _MEANINGFUL,
    "sporadic_share": _SPORADIC_SHARE,
    "probe_first": _PROBE_FIRST,
    "probe_shortest": _PROBE_SHORTEST,
    "probe_longest": _PROBE_LONGEST,
    "probe_span": _PROBE_SPAN,
    "probe_step": _PROBE_STEP,
    "probe_step_most": _PROBE_STEP_MOST,
    "probe_fails_at": _PROBE_FAILS_AT,
    "probe_busy": _PROBE_BUSY,
    "forget_after": _FORGET_AFTER,
    "min_rate": _MIN_RATE,
}
"""The pace's rules in numbers, for a shared budget that runs them elsewhere (in Redis)."""


@attrs.frozen
class SharedTurn:
    """A shared budget's answer to one request asking for its turn.

    Attributes:
        wait: Seconds to wait before the request goes (its turn is reserved), or, with
            ``paused``, before asking again.
        paused: Everyone waits out a ``Retry-After``; ask again after ``wait``.
        rate: The shared pace in requests per second, or None when there is no limit.
    """

    wait: float
    paused: bool
    rate: float | None


class SharedBudget(Protocol):
    """A request budget shared by every process that uses one Akool account.

    Its methods raise `CoordinationUnavailable` when the store cannot be reached; the pace then
    goes on with its own bucket until `available` says otherwise.
    """

    def available(self) -> bool:
        """Whether to ask the store now (False for a while after it failed)."""
        ...  # pragma: no cover - a protocol

    def answered(self) -> None:
        """One more answer came in (counted by every worker's clusters); never blocks."""
        ...  # pragma: no cover - a protocol

    async def take(self, *, told: float | None, longest: float) -> SharedTurn:
        """Reserve one request's turn. No wait is longer than ``longest`` seconds, whatever the
        store holds."""
        ...  # pragma: no cover - a protocol

    async def refused(self, *, told: float | None, pause: float) -> bool:
        """Count a 429; True when it completed a cluster, so everyone now waits ``pause``
        seconds."""
        ...  # pragma: no cover - a protocol


class Turn:
    """One request's claim on a concurrency slot."""

    __slots__ = ("create", "probe")

    def __init__(self, *, create: bool) -> None:
        self.create = create
        self.probe: _Probe | None = None


def _cluster_threshold(answered: int) -> float:
    """Refusals among ``answered`` requests that a sporadic 5 % would reach well under 1 % of
    the time (its mean plus three standard deviations plus one), and at least 3.
    """
    expected = _SPORADIC_SHARE * answered
    return max(_CLUSTER_MIN, expected + 3 * math.sqrt(expected) + 1)


class _Window:
    """The requests answered, and those refused, in the last ``seconds``.

    Both are counted when the answer arrives, so requests still in flight count in neither: a
    request sent but not yet refused must not pass for an accepted one.
    """

    __slots__ = ("answered", "refused", "seconds", "since")

    def __init__(self, seconds: float, now: float) -> None:
        self.seconds = seconds
        self.since = now
        self.answered: collections.deque[float] = collections.deque()
        self.refused: collections.deque[float] = collections.deque()

    def forget_before(self, now: float) -> None:
        horizon = now - self.seconds
        while self.answered and self.answered[0] <= horizon:
            self.answered.popleft()
        while self.refused and self.refused[0] <= horizon:
            self.refused.popleft()

    def clustered(self) -> bool:
        return len(self.refused) >= _cluster_threshold(len(self.answered))

    @property
    def accepted(self) -> int:
        return max(0, len(self.answered) - len(self.refused))

    def accepted_per_second(self, now: float) -> float:
        """Requests accepted per second over the window (or what of it has passed, and 1 s)."""
        return self.accepted / max(min(self.seconds, now - self.since), _WINDOW)

    def clear(self, now: float) -> None:
        self.since = now
        self.answered.clear()
        self.refused.clear()


class _Probe:
    """A short spell above a discovered limit, to see whether it has risen."""

    __slots__ = ("ends", "outstanding", "rate", "refused", "sending", "sent", "started")

    def __init__(self, *, started: float, rate: float) -> None:
        self.started = started
        self.ends = started + _PROBE_SPAN
        self.rate = rate
        self.sending = True
        """Still sending at the probe's rate; then waiting for the answers to what it sent."""
        self.sent = 0
        self.outstanding = 0
        self.refused = 0


class Pace:
    """A concurrency limit plus an adaptive token bucket, both through anyio (virtual time too).

    Args:
        max_concurrent: Requests in flight at once.
        rate: A requests-per-second limit the server is known to enforce (a hard ceiling, paced
            at 97 % of it); None: unlimited until 429s show a limit.
        max_pause: The longest ``Retry-After`` everyone waits for at once, in seconds.
        shared: A budget shared with the app's other processes; None: this process alone.
    """

    def __init__(
        self,
        *,
        max_concurrent: int,
        rate: float | None,
        max_pause: float,
        shared: SharedBudget | None = None,
    ) -> None:
        self._slots = anyio.CapacityLimiter(max_concurrent)
        # Creates may hold at most three quarters of the slots, so a burst of thousands of
        # creates never shuts status reads out: finished jobs must still be noticed.
        self._create_slots = anyio.CapacityLimiter(max(1, int(max_concurrent * _CREATE_SHARE)))
        self._turns = anyio.Lock()
        self._priority_turns = anyio.Lock()
        self._told = rate
        self._shared = shared
        self._ceiling = rate * _TOLD_SHARE if rate is not None else None
        self._limit: float | None = None
        self._rate = self._ceiling
        # The shared budget's rate, while turns come from it (None: they do not, or no limit).
        self._shared_rate: float | None = None
        self._sharing = False
        self._max_pause = max_pause
        now = anyio.current_time()
        self._tokens = 1.0
        self._refilled = now
        self._paused_until = 0.0
        self._windows = tuple(_Window(seconds, now) for seconds in (_SHORT_WINDOW, *_LONG_WINDOWS))
        self._probe: _Probe | None = None
        self._probe_every = _PROBE_FIRST
        self._probe_step = _PROBE_STEP
        self._passes = 0
        self._steady_since = now
        self._saturated = False
        self._waiting = 0
        self.throttles = 0
        """Every 429 (or code 1005) reported, sporadic ones included."""

    @property
    def rate(self) -> float | None:
        """The requests per second requests start at now, or None when there is no limit."""
        return self._shared_rate if self._sharing else self._rate

    @property
    def in_flight(self) -> int:
        """Requests holding a slot now."""
        return int(self._slots.borrowed_tokens)

    @property
    def waiting(self) -> int:
        """Requests waiting in `acquire` now, for a slot or for the rate."""
        return self._waiting

    @property
    def scarce(self) -> bool:
        """Requests queue for a requests-per-second limit: the budget, not the work, decides.

        For a planner: while this holds, each read sent is one not sent elsewhere, so reads are
        worth ranking by how likely they are to find a job done.
        """
        return self.rate is not None and self._waiting > 0

    async def acquire(self, *, create: bool = False) -> Turn:
        """Wait for a free slot and for the rate to allow one more request; take both.

        Args:
            create: The request is a create. Creates share their own queue and at most three
                quarters of the slots; other requests (status reads) have a queue of their own,
                so they never wait behind a long line of creates.

        Returns:
            The turn, to hand back with `release` once the answer is in (from any task: the
            poll loop takes turns that the poll tasks give back).
        """
        turn = Turn(create=create)
        self._waiting += 1
        try:
            if create:
                await self._create_slots.acquire_on_behalf_of(turn)
            try:
                await self._slots.acquire_on_behalf_of(turn)
                try:
                    async with self._turns if create else self._priority_turns:
                        await self._await_token(turn)
                except BaseException:
                    self._slots.release_on_behalf_of(turn)
                    raise
            except BaseException:
                if create:
                    self._create_slots.release_on_behalf_of(turn)
                raise
        finally:
            self._waiting -= 1
        return turn

    def release(self, turn: Turn) -> None:
        """Give back the slot taken by `acquire`: the request's answer is in."""
        self._slots.release_on_behalf_of(turn)
        if turn.create:
            self._create_slots.release_on_behalf_of(turn)
        if turn.probe is not None:
            turn.probe.outstanding -= 1
        if self._shared is not None:
            self._shared.answered()
        now = anyio.current_time()
        # Answers that arrive while everyone waits out a cluster's Retry-After were sent before
        # it: the cluster already told what they tell.
        if now >= self._paused_until:
            for window in self._windows:
                window.forget_before(now)
                window.answered.append(now)

    async def refused(self, retry_after: float | None) -> None:
        """Akool refused a request (HTTP 429 or code 1005): tell the shared budget, if there
        is one and it can be reached; else judge it here (`throttled`)."""
        shared = self._shared
        if shared is not None and shared.available():
            pause = min(retry_after if retry_after is not None else _DEFAULT_PAUSE, self._max_pause)
            try:
                await shared.refused(told=self._told, pause=pause)
            except CoordinationUnavailable:
                pass  # the shared budget logs it; this process judges on its own meanwhile
            else:
                self.throttles += 1
                return
        self.throttled(retry_after)

    def throttled(self, retry_after: float | None) -> None:
        """Akool refused a request (HTTP 429 or code 1005): a limit, or a sporadic refusal?

        The refused request's caller waits ``retry_after`` itself. Here the budget learns: a
        cluster of refusals sets the pace to the limit they show and pauses everyone; refusals
        during a probe say it went too far; a sporadic one changes nothing.
        """
        now = anyio.current_time()
        self.throttles += 1
        pause = min(retry_after if retry_after is not None else _DEFAULT_PAUSE, self._max_pause)
        if now < self._paused_until:
            self._paused_until = max(self._paused_until, now + pause)
            return
        for window in self._windows:
            window.forget_before(now)
            window.refused.append(now)
        probe = self._probe
        if probe is not None:
            probe.refused += 1
            if probe.refused >= _PROBE_FAILS_AT:
                self._end_probe(now)
            return
        clustered = next((window for window in self._windows if window.clustered()), None)
        if clustered is None:
            return  # sporadic: only the refused request waits
        accepted, per_second = clustered.accepted, clustered.accepted_per_second(now)
        # The cluster is spent: what comes after the pause is judged on its own.
        for window in self._windows:
            window.clear(now)
        self._paused_until = now + pause
        self._tokens = 0.0
        self._refilled = now
        if accepted < _MEANINGFUL:
            # Nearly everything refused (an outage, a longer window spent): that says nothing of
            # a rate. Everyone waits out Retry-After, and the pace stays as it was.
            return
        self._found_limit(now, per_second)

    def _found_limit(self, now: float, accepted: float) -> None:
        """A cluster of 429s: the limit is what the server accepted over the cluster's window."""
        # A limit found again was overrun again (it fell, or a probe passed on a server's burst
        # allowance): probe less often. A first one starts the probes afresh.
        again = self._limit is not None
        self._probe_every = min(_PROBE_LONGEST, self._probe_every * 2) if again else _PROBE_FIRST
        self._limit = max(accepted, _MIN_RATE / _SETTLE_SHARE)
        self._probe_step = _PROBE_STEP
        self._passes = 0
        self._settle(now)

    def _settle(self, now: float) -> None:
        """Pace at the discovered limit (or the told one), and start counting a steady spell."""
        self._probe = None
        self._steady_since = now
        self._saturated = False
        ceiling, limit = self._ceiling, self._limit
        if ceiling is not None and limit is not None and limit * _SETTLE_SHARE >= ceiling:
            self._limit = None  # it no longer binds: the told ceiling does
        self._rate = self._settled_rate()

    def _settled_rate(self) -> float | None:
        if self._limit is None:
            return self._ceiling
        rate = max(_MIN_RATE, self._limit * _SETTLE_SHARE)
        return rate if self._ceiling is None else min(rate, self._ceiling)

    def _review(self, now: float) -> None:
        """Move a probe along (send, then judge), or start one after a long enough spell."""
        probe = self._probe
        if probe is not None:
            if probe.sending and now >= probe.ends:
                probe.sending = False
                self._rate = self._settled_rate()
            if not probe.sending and (probe.outstanding <= 0 or now >= probe.ends + _JUDGE_MOST):
                self._end_probe(now)
            return
        limit = self._limit
        if limit is None or not self._saturated or now - self._steady_since < self._probe_every:
            return
        rate = max(limit * (1 + self._probe_step), limit + 1.0)
        if self._ceiling is not None:
            rate = min(rate, self._ceiling)
        self._probe = _Probe(started=now, rate=rate)
        self._rate = rate

    def _end_probe(self, now: float) -> None:
        probe = self._probe
        assert probe is not None  # noqa: S101 - only called during a probe
        limit = self._limit
        assert limit is not None  # noqa: S101 - probes run only above a discovered limit
        span = min(now, probe.ends) - probe.started
        busy = span > 0 and probe.sent >= _PROBE_BUSY * probe.rate * _PROBE_SPAN
        if probe.refused >= _PROBE_FAILS_AT:
            # The limit holds: probe again, and twice as late.
            self._probe_every = min(_PROBE_LONGEST, self._probe_every * 2)
            self._probe_step = _PROBE_STEP
            self._passes = 0
            for window in self._windows:
                window.refused.clear()  # explained by the probe
        elif busy and not probe.refused:
            # The server took every request of the probe: the limit is at least its rate.
            self._limit = max(limit, probe.sent / span)
            self._probe_every = max(_PROBE_SHORTEST, self._probe_every / 2)
            self._probe_step = min(_PROBE_STEP_MOST, self._probe_step * 2)
            self._passes += 1
            if self._passes >= _FORGET_AFTER:
                self._limit = None
        # else: too few requests wanted to go, or one refusal (sporadic, or the limit?): it
        # tells nothing, so try again after the same spell.
        self._settle(now)

    async def _await_shared_turn(self, shared: SharedBudget) -> bool:
        """Take the turn from the shared budget; False if it cannot be reached."""
        while True:
            try:
                granted = await shared.take(told=self._told, longest=self._max_pause)
            except CoordinationUnavailable:
                # This process's own bucket takes over, at its own pace (not the shared one,
                # which is every worker's together).
                self._sharing = False
                return False
            self._sharing, self._shared_rate = True, granted.rate
            if granted.wait > 0:
                await anyio.sleep(min(granted.wait, self._max_pause))
            if not granted.paused:
                return True

    async def _await_token(self, turn: Turn) -> None:
        shared = self._shared
        if shared is not None and shared.available() and await self._await_shared_turn(shared):
            return
        while True:
            now = anyio.current_time()
            if now < self._paused_until:
                await anyio.sleep(max(self._paused_until - now, _MIN_SLEEP))
                continue
            self._review(now)
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
            self._saturated = True
            await anyio.sleep(max((1.0 - self._tokens) / rate, _MIN_SLEEP))
        probe = self._probe
        if probe is not None and probe.sending:
            probe.sent += 1
            probe.outstanding += 1
            turn.probe = probe
