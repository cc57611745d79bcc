"""The shared request budget (`Pace`) against simulated servers, in virtual time on both backends.

Each test drives a `Pace` the way the wire does (acquire a turn, send, release, report a 429 with
``throttled``) against a small server model: a one-second sliding window like the emulator's
``Faults(rate_limit=...)``, random refusals, or both.
"""

from __future__ import annotations

import random
from typing import Any

import anyio
import httpx
import pytest

import akool_async as ak
from akool_async._errors import CoordinationUnavailable
from akool_async._pace import Pace, SharedTurn
from akool_async.testing import AkoolEmulator, Faults
from conftest import FIXED_TIMINGS, envelope

pytestmark = pytest.mark.anyio

PROMPT_PATH = "/api/open/v3/content/image/createbyprompt"
JOB = {"_id": "64dd82eef0b6684651e90131", "image_status": 1, "deduction_credit": 2}


class Server:
    """Accepts at most ``limit`` requests in any one-second window (none: no limit), and refuses
    a random ``sporadic`` share of requests whatever the window holds."""

    def __init__(self, limit: int | None = None, sporadic: float = 0.0, seed: int = 0) -> None:
        self.limit = limit
        self.sporadic = sporadic
        self._random = random.Random(seed)
        self.accepted: list[float] = []
        self.refused: list[float] = []

    def answer(self, at: float) -> bool:
        """Whether a request arriving ``at`` is accepted (and record it)."""
        over = self.limit is not None and self.in_window(at) >= self.limit
        if over or (self.sporadic and self._random.random() < self.sporadic):
            self.refused.append(at)
            return False
        self.accepted.append(at)
        return True

    def in_window(self, at: float) -> int:
        """Accepted requests in the one-second window ending at ``at``."""
        return sum(1 for sent in self.accepted if at - 1.0 < sent <= at)

    def busiest_window(self) -> int:
        """The most accepted requests any one-second window held."""
        return max((self.in_window(at) for at in self.accepted), default=0)


async def drive(
    pace: Pace,
    server: Server,
    seconds: float,
    *,
    workers: int = 4,
    latency: float = 0.05,
    rates: list[tuple[float, float | None]] | None = None,
) -> None:
    """Keep ``workers`` tasks (half creates, half reads) sending flat out for ``seconds``.

    Each request takes ``latency`` seconds; a refused one reports ``throttled(1.0)``, as the
    wire does for a 429 with ``Retry-After: 1``. ``rates`` collects (time, rate) whenever a
    request goes out at a new rate.
    """
    started = anyio.current_time()

    async def worker(create: bool) -> None:
        while True:
            turn = await pace.acquire(create=create)
            now = anyio.current_time() - started
            rate = None if pace.rate is None else round(pace.rate, 3)
            if rates is not None and (not rates or rates[-1][1] != rate):
                rates.append((round(now, 2), rate))
            accepted = server.answer(now)
            await anyio.sleep(latency)
            pace.release(turn)
            if not accepted:
                pace.throttled(1.0)

    with anyio.move_on_after(seconds):
        async with anyio.create_task_group() as group:
            for number in range(workers):
                group.start_soon(worker, number % 2 == 0)


async def test_a_told_rate_never_fills_a_sliding_window() -> None:
    """Told 5/s, flat-out senders run at 4.85/s: 5 in the busiest second, never a refusal."""
    pace = Pace(max_concurrent=8, rate=5.0, max_pause=60.0)
    server = Server(limit=5)
    await drive(pace, server, 99.9)
    assert (4.85, 0, 5, 485) == (
        pace.rate,
        len(server.refused),
        server.busiest_window(),
        len(server.accepted),
    )


async def test_a_sporadic_429_only_delays_the_refused_request() -> None:
    """One 429 among 40 requests pauses no one and sets no rate; a told rate stays as it was."""
    unlimited = Pace(max_concurrent=4, rate=None, max_pause=60.0)
    told = Pace(max_concurrent=4, rate=10.0, max_pause=60.0)
    for pace in (unlimited, told):
        for _ in range(40):
            pace.release(await pace.acquire())
        pace.throttled(30.0)
    started = anyio.current_time()
    unlimited.release(await unlimited.acquire())
    assert (None, 9.7, 0.0, 1) == (
        unlimited.rate,
        told.rate,
        anyio.current_time() - started,
        unlimited.throttles,
    )


async def test_everything_refused_pauses_everyone_but_sets_no_rate() -> None:
    """Three requests, three 429s with Retry-After: 3: everyone waits 3 s; no rate is set."""
    pace = Pace(max_concurrent=4, rate=None, max_pause=60.0)
    for _ in range(3):
        pace.release(await pace.acquire())
        pace.throttled(3.0)
    started = anyio.current_time()
    pace.release(await pace.acquire())
    assert (None, 3.0) == (pace.rate, anyio.current_time() - started)


async def test_three_percent_random_429s_leave_the_pace_unlimited() -> None:
    """Two minutes of 80 requests/s with 3 % refused at random: 306 429s, the rate never set."""
    pace = Pace(max_concurrent=8, rate=None, max_pause=60.0)
    server = Server(sporadic=0.03, seed=1)
    rates: list[tuple[float, float | None]] = []
    await drive(pace, server, 120.0, rates=rates)
    assert ([(0.0, None)], 306, 306) == (rates, len(server.refused), pace.throttles)


async def test_a_burst_over_a_limit_sets_the_rate_to_what_was_accepted() -> None:
    """Unlimited against 20/s: the sixth 429 makes a cluster; 95 % of the 20 accepted, after 1 s."""
    pace = Pace(max_concurrent=64, rate=None, max_pause=60.0)
    server = Server(limit=20)
    refusals = 0
    while pace.rate is None:
        turn = await pace.acquire()
        pace.release(turn)
        if not server.answer(anyio.current_time()):
            refusals += 1
            pace.throttled(1.0)
    started = anyio.current_time()
    sent = []
    for _ in range(3):
        pace.release(await pace.acquire())
        sent.append(anyio.current_time() - started)
    assert (6, 19.0) == (refusals, pace.rate)
    assert [1.0, 1.0 + 1 / 19, 1.0 + 2 / 19] == pytest.approx(sent)


async def test_a_discovered_limit_settles_under_it_with_rare_probes() -> None:
    """Against 20/s for 5 minutes: 19/s; probes after 10 s, then 20, 40, 80 s apart, 2 429s each."""
    pace = Pace(max_concurrent=8, rate=None, max_pause=60.0)
    server = Server(limit=20)
    rates: list[tuple[float, float | None]] = []
    await drive(pace, server, 300.0, rates=rates)
    probes = [at for at, rate in rates if rate == 24.0]
    first = server.refused[0]
    after = [at for at in server.refused if at > first + 1.0]
    assert [10.4, 30.9, 71.4, 151.9] == pytest.approx(probes, abs=0.1)
    assert (19.0, 8) == (pace.rate, len(after))
    assert 0.94 < len(server.accepted) / 300 / 20 < 0.96


async def test_a_discovered_limit_of_five_is_used_at_95_percent() -> None:
    """Against 5/s, the pace settles at 4.75/s and under 1 % of requests are refused after."""
    pace = Pace(max_concurrent=8, rate=None, max_pause=60.0)
    server = Server(limit=5)
    await drive(pace, server, 300.0)
    first = server.refused[0]
    after = [at for at in server.refused if at > first + 1.0]
    sent_after = [at for at in server.accepted if at > first] + after
    assert 4.75 == pace.rate
    assert len(after) / len(sent_after) < 0.01
    assert len(server.accepted) / 300 > 0.94 * 5


async def test_a_limit_that_falls_is_found_again() -> None:
    """A 20/s limit falling to 15/s at one minute: the pace follows it down to 95 % of 15."""

    class Falling(Server):
        def answer(self, at: float) -> bool:
            if at >= 60.0:
                self.limit = 15
            return super().answer(at)

    pace = Pace(max_concurrent=8, rate=None, max_pause=60.0)
    await drive(pace, Falling(limit=20), 120.0)
    assert 0.95 * 15 == pytest.approx(pace.rate, abs=0.5)


async def test_a_told_rate_that_is_too_high_is_corrected_below_it() -> None:
    """Told 10/s against a 5/s server: a cluster cuts the pace to 4.75; probes stay under 9.7."""
    pace = Pace(max_concurrent=8, rate=10.0, max_pause=60.0)
    server = Server(limit=5)
    rates: list[tuple[float, float | None]] = []
    await drive(pace, server, 120.0, rates=rates)
    assert [9.7, 4.75, 6.0, 4.75, 6.0, 4.75, 6.0, 4.75] == [rate for _, rate in rates]


async def false_alarm(pace: Pace) -> None:
    """Twenty requests accepted, then six refused in a row: a cluster, so a limit is set."""
    for _ in range(20):
        pace.release(await pace.acquire())
    for _ in range(6):
        pace.release(await pace.acquire())
        pace.throttled(1.0)


async def test_after_a_false_alarm_the_pace_recovers_to_unlimited() -> None:
    """A cluster that was no limit: three probes pass, each bigger and sooner; unlimited at 24 s."""
    pace = Pace(max_concurrent=64, rate=None, max_pause=60.0)
    await false_alarm(pace)
    rates: list[tuple[float, float | None]] = []
    await drive(pace, Server(), 30.0, rates=rates)
    # Each probe runs 2 s above the limit, then waits for its answers at the settled rate; the
    # new limit is the rate the probe got through (give or take the bucket's one token).
    assert [19.0, 24.0, 22.8, 33.6, 22.8, 32.3, 61.2, 32.3] == pytest.approx(
        [rate for _, rate in rates[:-1]], rel=0.03
    )
    assert None is rates[-1][1]
    # Settled at 1 s (after the pause), probes 9, then 7 (5 + 2), then 4.5 (2.5 + 2) s apart.
    assert [1.0, 10.0, 17.0, 21.6, 23.7] == pytest.approx(
        [rates[index][0] for index in (0, 1, 3, 6, 8)], abs=0.15
    )


async def test_a_refused_probe_returns_to_the_limit_at_once() -> None:
    """Two 429s during a probe end it: the pace is back at 95 % of the limit, with no pause."""
    pace = Pace(max_concurrent=64, rate=None, max_pause=60.0)
    await false_alarm(pace)
    with anyio.move_on_after(12.0):
        while True:
            pace.release(await pace.acquire())
    probing = pace.rate
    pace.throttled(1.0)
    pace.throttled(1.0)
    started = anyio.current_time()
    pace.release(await pace.acquire())
    assert (24.0, 19.0) == (probing, pace.rate)
    assert anyio.current_time() - started <= 1 / 19  # one turn of the pace, not a pause


async def test_scarce_says_when_requests_wait_for_the_rate() -> None:
    """Requests queued behind a rate make the budget scarce; without a rate it never is."""
    pace = Pace(max_concurrent=8, rate=1.0, max_pause=60.0)
    seen: list[tuple[int, bool]] = []
    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(pace.acquire)
        await anyio.sleep(0.5)
        seen.append((pace.waiting, pace.scarce))
    seen.append((pace.waiting, pace.scarce))
    unlimited = Pace(max_concurrent=1, rate=None, max_pause=60.0)
    turn = await unlimited.acquire()
    async with anyio.create_task_group() as group:
        group.start_soon(unlimited.acquire)
        await anyio.sleep(0.5)
        seen.append((unlimited.waiting, unlimited.scarce))
        unlimited.release(turn)
    assert [(2, True), (0, False), (1, False)] == seen


async def test_a_create_is_not_lost_while_the_budget_is_slow(fake: Any, make_session: Any) -> None:
    """A create refused three times with the budget at one request per 103 s is still made."""
    throttle = httpx.Response(429, headers={"Retry-After": "1"})
    fake.on(PROMPT_PATH, throttle, throttle, throttle, envelope(JOB))
    async with make_session(requests_per_second=0.01) as session:
        started = anyio.current_time()
        info = await session.create_by_prompt("a fox")
        took = anyio.current_time() - started
    assert (JOB["_id"], 4) == (info.id, len(fake.sent(PROMPT_PATH)))
    assert 3 / 0.0097 == pytest.approx(took, abs=0.01)


async def test_a_session_told_the_limit_gets_no_429() -> None:
    """60 jobs through a session told 5/s, against an emulator enforcing 5/s: not one 429."""
    emulator = AkoolEmulator(
        api_key="k", timings=FIXED_TIMINGS, faults=Faults(rate_limit=5), seed=3
    )
    async with (
        emulator.client() as http,
        ak.AkoolSession(api_key="k", http_client=http, requests_per_second=5) as session,
    ):
        results = await session.generate_many([f"p{n}" for n in range(60)], concurrency=60)
    assert [ak.ImageInfo] * 60 == [type(result) for result in results]
    assert 0 == sum(1 for request in emulator.requests if request.status_code == 429)


# -- a budget shared with other processes ----------------------------------------------------


class FakeShared:
    """A shared budget that grants what it is told to, records what it is asked, and can be
    made unreachable (as Redis going away)."""

    def __init__(self, grants: list[SharedTurn]) -> None:
        self.grants = grants
        self.up = True
        self.taken: list[tuple[float | None, int]] = []  # told, answers told of before it
        self.longest: list[float] = []
        self.refusals: list[tuple[float | None, int, float]] = []
        self.answers = 0

    def available(self) -> bool:
        return True

    def answered(self) -> None:
        self.answers += 1

    async def take(self, *, told: float | None, longest: float) -> SharedTurn:
        if not self.up:
            raise CoordinationUnavailable("Redis did not answer")
        self.taken.append((told, self.answers))
        self.longest.append(longest)
        return self.grants.pop(0) if self.grants else SharedTurn(wait=0.0, paused=False, rate=None)

    async def refused(self, *, told: float | None, pause: float) -> bool:
        if not self.up:
            raise CoordinationUnavailable("Redis did not answer")
        self.refusals.append((told, self.answers, pause))
        return False


async def test_turns_come_from_the_shared_budget_pauses_included() -> None:
    """A paused grant is waited out and asked again; a reserved one is waited out and taken;
    the answers seen since the last call ride along; the rate shown is the shared one."""
    shared = FakeShared(
        [
            SharedTurn(wait=2.0, paused=True, rate=None),
            SharedTurn(wait=0.5, paused=False, rate=4.0),
        ]
    )
    pace = Pace(max_concurrent=4, rate=5.0, max_pause=60.0, shared=shared)
    started = anyio.current_time()
    turn = await pace.acquire()
    waited = anyio.current_time() - started
    pace.release(turn)
    pace.release(await pace.acquire())

    assert waited == pytest.approx(2.5)
    assert [(5.0, 0), (5.0, 0), (5.0, 1)] == shared.taken
    assert [60.0] * 3 == shared.longest  # the pace's max_pause: no wait is longer
    assert pace.rate is None  # the third grant: no limit


async def test_a_wait_the_store_asks_is_never_longer_than_the_pace_honours() -> None:
    """A store that asks for an hour (a bug, or someone with write access to Redis) gets the
    pace's longest pause, once: the turn then goes."""
    shared = FakeShared([SharedTurn(wait=3600.0, paused=False, rate=1.0)])
    pace = Pace(max_concurrent=4, rate=None, max_pause=30.0, shared=shared)
    started = anyio.current_time()
    pace.release(await pace.acquire())

    assert anyio.current_time() - started == pytest.approx(30.0)


async def test_a_429_is_told_to_the_shared_budget_and_not_judged_here() -> None:
    shared = FakeShared([])
    pace = Pace(max_concurrent=4, rate=None, max_pause=30.0, shared=shared)
    for _ in range(3):
        pace.release(await pace.acquire())
    await pace.refused(retry_after=90.0)

    # Each answer is told to the shared budget as it comes in, before the next call.
    assert [(None, 0), (None, 1), (None, 2)] == shared.taken
    assert [(None, 3, 30.0)] == shared.refusals  # the pause capped at max_pause
    assert 1 == pace.throttles


async def test_without_the_shared_budget_the_pace_goes_on_with_its_own_bucket() -> None:
    """The store fails: this request takes its turn from the process's own bucket, at the
    process's own told rate; a 429 is then judged here."""
    shared = FakeShared([SharedTurn(wait=0.0, paused=False, rate=40.0)])
    pace = Pace(max_concurrent=4, rate=2.0, max_pause=30.0, shared=shared)
    pace.release(await pace.acquire())
    shared_rate = pace.rate
    shared.up = False
    started = anyio.current_time()
    for _ in range(3):
        pace.release(await pace.acquire())
    alone = anyio.current_time() - started
    await pace.refused(retry_after=None)

    assert shared_rate == 40.0
    assert pace.rate == pytest.approx(2.0 * 0.97)
    assert alone == pytest.approx(2 / (2.0 * 0.97), rel=0.05)  # its own 1.94/s, not 40/s
    assert ([], 1) == (shared.refusals, pace.throttles)
