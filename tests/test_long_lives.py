"""Long lives: a day-long outage, tens of thousands of jobs, and callers cancelled mid-create.

A session that lives for days must survive a day of failed status reads (every job stays
waitable, its waiters see why), keep flat memory however many jobs pass through it, and never
lose a paid create to a caller's cancellation: every create that reached Akool is known to the
session, as a handle returned or as an orphan it reports.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import random
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import looptime
import pytest

import akool_async as ak
from akool_async._paid import PaidCreates
from akool_async._polling import Planner
from akool_async.testing import AkoolEmulator, Duration, EmulatorTimings, Faults
from conftest import FIXED_TIMINGS

pytestmark = pytest.mark.anyio

DAY = 86_400.0
READS = frozenset({"infobymodelid"})
CREATES = frozenset({"createbyprompt", "createbybutton"})


def reads_of(emulator: AkoolEmulator) -> int:
    return emulator.requests_per_endpoint()["infobymodelid"]


@pytest.fixture
def emulator() -> AkoolEmulator:
    return AkoolEmulator(api_key="k", timings=FIXED_TIMINGS, seed=11, credit=10**9)


@pytest.fixture
async def session(emulator: AkoolEmulator) -> AsyncIterator[ak.AkoolSession]:
    async with emulator.client() as http, ak.AkoolSession(api_key="k", http_client=http) as s:
        yield s


# -- a long outage is visible, never fatal ---------------------------------------------------------


def test_backoff_is_bounded_after_a_million_failures_whatever_the_server_says() -> None:
    """No overflow at 10**6 failures; a short Retry-After cannot make a long streak a flood."""
    planner = Planner(ak.PollPolicy(jitter=0), rng=random.Random(0))
    assert 60.0 == planner.backoff(10**6, None)
    assert 60.0 == planner.backoff(10**6, 1.0)
    assert 60.0 == planner.backoff(10**6, math.inf)
    assert [1.0, 2.75, 5.5, 11.0] == [planner.backoff(n, 1.0) for n in (1, 2, 3, 4)]
    assert 5.0 == planner.backoff(1, 5.0)  # a first refusal waits what the server asked
    assert 11.0 == planner.backoff(3, math.nan)  # an unusable Retry-After is ignored


async def test_a_day_long_outage_of_status_reads_leaves_every_job_waitable(
    emulator: AkoolEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """24 h of 503s on every status read: the session lives, waits time out with the last
    error, reads stay near one a minute per job, and every job completes once reads recover."""
    caplog.set_level(logging.DEBUG, logger="akool_async")
    failed_events: list[ak.JobEvent] = []

    def on_event(event: ak.JobEvent) -> None:
        if event.kind == "read_failed":
            failed_events.append(event)

    outcomes: dict[str, ak.ImageInfo] = {}
    async with (
        emulator.client() as http,
        ak.AkoolSession(api_key="k", http_client=http, on_event=on_event) as session,
    ):
        jobs = [await session.generate(f"fox {n}") for n in range(4)]
        emulator.faults = Faults(unavailable=1.0, retry_after=1.0, endpoints=READS)
        started, reads_before = anyio.current_time(), reads_of(emulator)
        async with anyio.create_task_group() as tg:

            async def wait(job: ak.ImageJob) -> None:
                outcomes[job.id] = await job.wait()

            for job in jobs:
                tg.start_soon(wait, job)
            await anyio.sleep(3_600)
            with pytest.raises(ak.WaitTimeout) as timed_out:
                await jobs[0].wait(timeout=60)
            # A handle on a job never read is waitable through the outage too.
            tg.start_soon(wait, session.job(jobs[0].id))
            await anyio.sleep(DAY - 3_660)
            during = session.stats
            outage_reads = reads_of(emulator) - reads_before
            emulator.faults = Faults()
            recovered_at = anyio.current_time()
        recovered_in = anyio.current_time() - recovered_at
        after = session.stats

    error = timed_out.value.last_error
    assert isinstance(error, ak.ServerError)
    assert 503 == error.status_code
    assert "its last status read failed: Akool answered HTTP 503" in str(timed_out.value)
    assert DAY == pytest.approx(recovered_at - started, abs=1)
    assert {job.id for job in jobs} == set(outcomes)
    assert all(info.is_result_ready for info in outcomes.values())
    assert recovered_in <= 66 + 5  # the next read, at most the 60 s cap plus jitter, succeeds
    # About one read a minute per job once the backoff reached its cap (cap minus 10 % jitter).
    assert outage_reads <= len(jobs) * (DAY / 54 + 10)
    assert (4, outage_reads) == (during.jobs_unreadable, during.failed_reads)
    assert (0, outage_reads) == (after.jobs_unreadable, after.failed_reads)
    assert outage_reads == len(failed_events)
    assert {job.id for job in jobs} == {event.job_id for event in failed_events}
    assert all(isinstance(event.error, ak.ServerError) for event in failed_events)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "fail (" in r.msg]
    assert len(jobs) == len(warnings)  # once per job and kind of failure, not per read
    print(f"status reads during the 24 h outage: {outage_reads} for {len(jobs)} jobs")  # noqa: T201


async def test_a_bug_in_one_poll_is_logged_once_and_the_job_read_again(
    session: ak.AkoolSession,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A planner that raises for a while costs a backoff, one logged traceback per job, and
    read_failed events: the loop lives on and the wait completes."""
    caplog.set_level(logging.DEBUG, logger="akool_async")
    calls = 0
    original = Planner.next_look

    def broken(self: Planner, job: Any, now: float) -> float:
        nonlocal calls
        calls += 1
        if calls <= 5:
            raise ZeroDivisionError("a planner bug")
        return original(self, job, now)

    monkeypatch.setattr(Planner, "next_look", broken)
    errors: list[ak.AkoolError | None] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _collect_read_errors(session, errors))
        info = await (await session.generate("a fox")).wait()
        tg.cancel_scope.cancel()

    assert info.is_result_ready
    assert calls > 5
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert 1 == len(logged)
    assert "unexpected error while polling job" in logged[0].getMessage()
    assert logged[0].exc_info is not None
    assert ZeroDivisionError is logged[0].exc_info[0]
    assert 1 <= len(errors)
    assert all(isinstance(error, ak.AkoolError) for error in errors)
    assert isinstance(errors[0].__cause__, ZeroDivisionError)


async def _collect_read_errors(session: ak.AkoolSession, into: list[ak.AkoolError | None]) -> None:
    async for event in session.events():  # until cancelled: each error as it comes
        if event.kind == "read_failed":
            into.append(event.error)  # noqa: PERF401 - a comprehension would keep them all


# -- bounded memory --------------------------------------------------------------------------------


async def test_an_ended_job_is_let_go_of_and_its_handle_keeps_working(
    emulator: AkoolEmulator, session: ak.AkoolSession
) -> None:
    """A minute after nobody waits on it an ended job leaves memory; its handle keeps its info,
    a later wait costs exactly one read, and a wait right after the end costs none."""
    job = await session.generate("a fox")
    info = await job.wait()
    reads = reads_of(emulator)
    assert info == await job.wait()  # kept: no read
    assert (reads, 1, 0) == (reads_of(emulator), session.stats.jobs_tracked, 0)
    await anyio.sleep(61)
    stats = session.stats
    assert (0, 1) == (stats.jobs_tracked, stats.jobs_evicted)
    assert info == job.info  # the handle keeps what it saw
    again = await job.wait()
    assert reads + 1 == reads_of(emulator)
    assert (info.id, True) == (again.id, again.is_result_ready)
    assert again == await session.job(job.id).wait()
    assert reads + 1 == reads_of(emulator)


async def test_handles_from_as_completed_wait_without_a_read(
    emulator: AkoolEmulator, session: ak.AkoolSession
) -> None:
    """The handles as_completed yields are waited on at once, costing no request."""
    jobs = [await session.generate(f"fox {n}") for n in range(3)]
    seen: list[ak.ImageInfo] = []
    async for done in session.as_completed(jobs):
        reads = reads_of(emulator)
        seen.append(await done.wait())
        assert reads == reads_of(emulator)
    assert {job.id for job in jobs} == {info.id for info in seen}
    await anyio.sleep(61)
    assert (0, 3) == (session.stats.jobs_tracked, session.stats.jobs_evicted)


async def test_generate_many_leaves_nothing_attached(session: ak.AkoolSession) -> None:
    """After generate_many (finished, or cancelled halfway) no listener or hold of it remains:
    its jobs leave memory, and nothing of the batch stays reachable."""
    results = await session.generate_many([f"fox {n}" for n in range(20)])
    assert all(isinstance(result, ak.ImageInfo) for result in results)
    await anyio.sleep(61)
    assert (0, 20) == (session.stats.jobs_tracked, session.stats.jobs_evicted)

    with anyio.move_on_after(10):  # the jobs take 46 s: cancelled with all of them running
        await session.generate_many([f"cat {n}" for n in range(20)])
    gc.collect()
    assert [] == [o for o in gc.get_objects() if type(o).__name__ == "Batch"]
    # Unfinished and unwatched now: kept a day (their age tells a later wait when to look).
    assert 20 == session.stats.jobs_tracked
    await anyio.sleep(DAY + 1)
    assert (0, 40) == (session.stats.jobs_tracked, session.stats.jobs_evicted)


SOAK_TIMINGS = EmulatorTimings(
    grid_queue=Duration(0.5, 0.0),
    grid_processing=Duration(2.0, 0.0),
    upscale_queue=Duration(0.5, 0.0),
    upscale_processing=Duration(1.0, 0.0),
    variation_queue=Duration(0.5, 0.0),
    variation_processing=Duration(2.0, 0.0),
    quadrant_lag=Duration(0.0, 0.0),
)


class FreshEmulators(httpx.AsyncBaseTransport):
    """An in-process emulator, replaced by a fresh one between chunks of jobs: the emulator keeps
    every job and request for tests to inspect, which must not count as the session's memory."""

    def __init__(self) -> None:
        self.chunks = 0
        self.creates = 0
        self.fresh()

    def fresh(self) -> None:
        if self.chunks:
            self.creates += self.emulator.requests_per_endpoint()["createbyprompt"]
        self.chunks += 1
        # A seed per chunk: each emulator's job ids differ from every earlier one's.
        self.emulator = AkoolEmulator(
            api_key="k", timings=SOAK_TIMINGS, credit=10**9, seed=self.chunks
        )
        self._transport = self.emulator.transport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport.handle_async_request(request)


async def _idle_memory(session: ak.AkoolSession, server: FreshEmulators) -> tuple[int, int]:
    """Python's allocated blocks, and the jobs the session holds, once it has idled a minute."""
    server.fresh()
    await anyio.sleep(61)
    tracked = session.stats.jobs_tracked
    gc.collect()
    return sys.getallocatedblocks(), tracked


@pytest.mark.soak
async def test_memory_stays_flat_over_tens_of_thousands_of_jobs(anyio_backend_name: str) -> None:
    """50,000 jobs through one session (10,000 on asyncio, slower per job): after the first
    fifth, memory stays within 1 %, and the session holds no job when idle.

    Memory is Python's count of allocated blocks (`sys.getallocatedblocks`): the whole heap,
    freed blocks subtracted, at no cost per allocation. tracemalloc costs five times the run
    here (minutes for 50,000 jobs), and tracing only a late window would count bounded state
    that is merely replaced (the planner's last 1,000 completions, the pace's last minute of
    answers) as growth.
    """
    total = 50_000 if anyio_backend_name == "trio" else 10_000
    chunk = 5_000 if anyio_backend_name == "trio" else 2_000
    server = FreshEmulators()
    started = time.perf_counter()
    marks: dict[int, tuple[int, int]] = {}
    async with (
        httpx.AsyncClient(transport=server, base_url=server.emulator.base_url) as http,
        ak.AkoolSession(api_key="k", http_client=http) as session,
    ):
        done = 0
        while done < total:
            results = await session.generate_many(["a fox"] * chunk, concurrency=1_000)
            assert chunk == sum(isinstance(result, ak.ImageInfo) for result in results)
            del results
            done += chunk
            assert session.stats.jobs_tracked <= 1_000  # the ended jobs kept are bounded
            # Idle after every chunk, so each mark follows the same traffic: the pace's windows
            # hold the last minute's answers, however many jobs came before.
            memory = await _idle_memory(session, server)
            if done in (total // 5, total):
                marks[done] = memory
        stats = session.stats
    soaked = time.perf_counter() - started

    (early_blocks, early_tracked), (late_blocks, late_tracked) = marks.values()
    assert (0, 0) == (early_tracked, late_tracked)
    assert late_blocks < early_blocks * 1.01
    assert total == server.creates == stats.jobs_evicted
    print(  # noqa: T201 - the figures for the record
        f"{anyio_backend_name}: {total} jobs in {soaked:.1f} s; allocated blocks "
        f"{early_blocks} after {total // 5} jobs, {late_blocks} after {total}"
    )


# -- cancellation never loses a paid job -----------------------------------------------------------

SLOW_CREATES = Faults(slow=0.5, slow_delay=2.0, endpoints=CREATES)
"""Half the creates are answered 2 s after the job is made: cancellations land mid-flight."""


def created_ids(emulator: AkoolEmulator) -> set[str]:
    return set(emulator.jobs)


async def test_creates_cancelled_at_random_moments_are_never_lost() -> None:
    """60 callers cancelled at random (queued for a turn, mid-flight, after the answer): every
    job the emulator made is a handle returned or an orphan reported, never both, never none."""
    emulator = AkoolEmulator(api_key="k", timings=FIXED_TIMINGS, faults=SLOW_CREATES, seed=5)
    rng = random.Random(7)
    returned: list[ak.ImageJob] = []
    orphan_events: list[ak.JobEvent] = []

    def on_event(event: ak.JobEvent) -> None:
        if event.kind == "orphaned":
            orphan_events.append(event)

    async with (
        emulator.client() as http,
        ak.AkoolSession(
            api_key="k", http_client=http, max_concurrent_requests=4, on_event=on_event
        ) as session,
    ):

        async def caller(n: int, patience: float) -> None:
            with anyio.move_on_after(patience):
                returned.append(await session.generate(f"fox {n}"))

        async with anyio.create_task_group() as tg:
            for n in range(60):
                tg.start_soon(caller, n, rng.uniform(0, 6))
    # Read once the session closed: a create still in flight then has had its answer.
    orphans = session.orphaned_creates
    stats = session.stats

    orphan_ids = [orphan.id for orphan in orphans if isinstance(orphan, ak.ImageJob)]
    assert len(orphan_ids) == len(orphans) == stats.orphaned_creates
    assert 0 < len(orphan_ids)
    assert 0 < len(returned)
    assert len(created_ids(emulator)) < 60  # some callers went before their create was sent
    assert created_ids(emulator) == {job.id for job in returned} | set(orphan_ids)
    assert not {job.id for job in returned} & set(orphan_ids)
    assert orphan_ids == [event.job_id for event in orphan_events]
    assert {1} == set(emulator.creates_by_prompt.values())
    assert all(orphan.info is not None for orphan in orphans if isinstance(orphan, ak.ImageJob))


@pytest.mark.parametrize(
    "anyio_backend", [("asyncio", {"loop_factory": looptime.new_event_loop})], ids=["asyncio"]
)
async def test_a_create_cancelled_by_asyncio_itself_is_kept() -> None:
    """asyncio.wait_for cancels natively, past anyio's shields: the create still gets its
    answer, in the session's own task, and its job is reported."""
    emulator = AkoolEmulator(api_key="k", timings=FIXED_TIMINGS, faults=SLOW_CREATES, seed=5)
    outcomes: list[object] = []
    async with emulator.client() as http, ak.AkoolSession(api_key="k", http_client=http) as session:
        for n in range(6):
            try:
                outcomes.append(await asyncio.wait_for(session.generate(f"fox {n}"), 1.0))
            except TimeoutError:
                outcomes.append(None)
        await anyio.sleep(3)
        orphans = session.orphaned_creates
    returned = {job.id for job in outcomes if isinstance(job, ak.ImageJob)}
    assert None in outcomes
    assert created_ids(emulator) == returned | {o.id for o in orphans if isinstance(o, ak.ImageJob)}
    assert len(orphans) == outcomes.count(None)


async def test_a_cancelled_press_keeps_its_claim_and_reports_the_child(
    emulator: AkoolEmulator, session: ak.AkoolSession
) -> None:
    """U1 cancelled mid-flight: a second U1 is refused at once, the press reaches Akool once,
    and the upscale it made is an orphan with the grid as its parent."""
    grid = await session.generate("a fox")
    await grid.wait()
    emulator.faults = Faults(slow=1.0, slow_delay=2.0, endpoints=CREATES)
    with anyio.move_on_after(1):
        await grid.upscale(1)
    with pytest.raises(ak.ButtonUnavailable, match="U1 was already pressed"):
        await grid.upscale(1)
    await anyio.sleep(2)
    with pytest.raises(ak.ButtonUnavailable, match="U1 was already pressed"):
        await grid.upscale(1)
    (orphan,) = session.orphaned_creates
    assert isinstance(orphan, ak.ImageJob)
    assert orphan.info is not None
    assert grid.id == orphan.info.parent_id
    assert 1 == emulator.button_presses[grid.id, "U1"]
    assert (await orphan.wait()).is_result_ready


async def test_a_press_cancelled_before_it_was_sent_gives_its_claim_back(
    emulator: AkoolEmulator,
) -> None:
    """A press still waiting for its turn when its caller goes sends nothing, and the button
    can be pressed again once the press has settled (at the next scheduling point)."""
    async with (
        emulator.client() as http,
        ak.AkoolSession(api_key="k", http_client=http, requests_per_second=0.5) as session,
    ):
        grid = await session.generate("a fox")
        await grid.wait()
        with anyio.move_on_after(0.01):  # the rate makes the press wait for its turn
            await grid.upscale(2)
        await anyio.sleep(0.1)
        assert 0 == emulator.button_presses[grid.id, "U2"]
        child = await grid.upscale(2)
        assert grid.id == (await child.wait()).parent_id
        assert () == session.orphaned_creates
    assert 1 == emulator.button_presses[grid.id, "U2"]


async def test_closing_the_session_answers_a_create_in_flight_and_drops_queued_ones() -> None:
    """Leaving the session waits for the answer of a create already sent; creates still queued
    for a turn are not sent, and their callers get SessionClosed."""
    faults = Faults(slow=1.0, slow_delay=2.0, endpoints=CREATES)
    emulator = AkoolEmulator(api_key="k", timings=FIXED_TIMINGS, faults=faults, seed=5)
    outcomes: list[object] = []
    async with (
        emulator.client() as http,
        anyio.create_task_group() as tg,  # its callers outlive the session
        ak.AkoolSession(api_key="k", http_client=http, max_concurrent_requests=1) as s,
    ):

        async def caller(n: int) -> None:
            try:
                outcomes.append(await s.generate(f"fox {n}"))
            except ak.SessionClosed as error:
                outcomes.append(error)

        for n in range(3):
            tg.start_soon(caller, n)
        await anyio.sleep(0.5)
    (sent,) = [o for o in outcomes if isinstance(o, ak.ImageJob)]
    closed = [o for o in outcomes if isinstance(o, ak.SessionClosed)]
    assert 2 == len(closed)
    assert all("before the create was sent; nothing was paid" in str(e) for e in closed)
    assert {sent.id} == created_ids(emulator)


@pytest.mark.parametrize(
    ("request_deadline", "reason"),
    [(10.0, "request deadline of 10.0 s"), (None, "no answer within 305 s of sending it")],
)
async def test_a_create_whose_answer_never_comes_is_reported_unknown(
    request_deadline: float | None, reason: str
) -> None:
    """A caller gone and no answer by the deadline (the wire's, or the shield's own 300 s
    without one): the create is an orphan SubmissionUnknown carrying what was sent."""
    faults = Faults(slow=1.0, slow_delay=1_000.0, endpoints=CREATES)
    emulator = AkoolEmulator(api_key="k", timings=FIXED_TIMINGS, faults=faults, seed=5)
    async with (
        emulator.client(timeout=None) as http,
        ak.AkoolSession(
            api_key="k", http_client=http, timeout=None, request_deadline=request_deadline
        ) as session,
    ):
        with anyio.move_on_after(1):
            await session.generate("a slow fox")
        assert () == session.orphaned_creates  # still waiting for its answer
        await anyio.sleep(310)
        (orphan,) = session.orphaned_creates
    assert isinstance(orphan, ak.SubmissionUnknown)
    assert {"prompt": "a slow fox", "scale": "1:1"} == orphan.payload
    assert reason in orphan.reason
    assert 1 == len(emulator.jobs)


@pytest.mark.real_time
async def test_creates_cancelled_over_loopback_are_never_lost() -> None:
    """Real sockets, real time: 200 creates cancelled 0-300 ms in; every create the server
    made is known to the session."""
    emulator = AkoolEmulator(api_key="k", seed=5)
    rng = random.Random(3)
    returned: list[ak.ImageJob] = []
    async with emulator.serve() as url, ak.AkoolSession(api_key="k", base_url=url) as session:

        async def caller(n: int, patience: float) -> None:
            with anyio.move_on_after(patience):
                returned.append(await session.generate(f"fox {n}"))

        async with anyio.create_task_group() as tg:
            for n in range(200):
                tg.start_soon(caller, n, rng.uniform(0, 0.3))
    orphans = session.orphaned_creates
    orphan_ids = {o.id for o in orphans if isinstance(o, ak.ImageJob)}
    assert len(orphan_ids) == len(orphans)
    assert created_ids(emulator) == {job.id for job in returned} | orphan_ids
    print(  # noqa: T201 - the figures for the record
        f"{len(created_ids(emulator))} of 200 cancelled creates reached the server: "
        f"{len(returned)} returned, {len(orphan_ids)} reported as orphans"
    )


async def test_a_planner_that_answers_nonsense_never_stops_the_loop(
    session: ak.AkoolSession, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Rankings that raise, looks and backoffs that are NaN, a listener that raises: each is
    replaced by a safe default (and logged), and the job still completes."""

    def nan(*_: object) -> float:
        return math.nan

    def broken(*_: object) -> float:
        raise ArithmeticError("a ranking bug")

    monkeypatch.setattr(Planner, "chance", broken)
    monkeypatch.setattr(Planner, "next_look", nan)
    monkeypatch.setattr(Planner, "backoff", nan)
    job = await session.generate("a fox")

    def bad_listener(_: object) -> None:
        raise RuntimeError("a listener bug")

    engine = session._engine  # listeners are internal: as_completed and generate_many's
    assert engine is not None
    remove = engine.add_listener(job.id, bad_listener)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _collect_read_errors(session, []))
        info = await job.wait()
        tg.cancel_scope.cancel()
    remove()
    assert info.is_result_ready
    messages = {r.getMessage() for r in caplog.records if r.levelno == logging.ERROR}
    assert f"a listener on job {job.id} failed" in messages
    assert f"unexpected error while polling job {job.id}; it is read again after a backoff" in (
        messages
    )


async def test_an_unwatched_unreadable_job_is_let_go_of_after_a_day(
    emulator: AkoolEmulator, session: ak.AkoolSession
) -> None:
    """A wait given up during an outage leaves the job unwatched: a day later it leaves memory
    and no longer counts as unreadable; its handle still waits it out once reads recover."""
    job = await session.generate("a fox")
    emulator.faults = Faults(unavailable=1.0, endpoints=READS)
    with pytest.raises(ak.WaitTimeout, match="its last status read failed"):
        await job.wait(timeout=120)
    assert (1, 1) == (session.stats.jobs_unreadable, session.stats.jobs_tracked)
    await anyio.sleep(DAY + 1)
    assert (0, 0, 1) == (
        session.stats.jobs_unreadable,
        session.stats.jobs_tracked,
        session.stats.jobs_evicted,
    )
    emulator.faults = Faults()
    assert (await job.wait()).is_result_ready


async def test_paid_creates_started_as_the_session_closes_are_refused_not_hung() -> None:
    """A create that never got its turn before the session closed, or that comes after, gets
    SessionClosed; nothing is sent, and a press's claim is given back."""
    paid = PaidCreates(shield_for=10.0, orphaned=lambda _: None)
    sent: list[int] = []
    settled: list[bool] = []

    async def send() -> ak.ImageInfo:
        await anyio.sleep(1)  # waits for a turn: cancellable
        sent.append(1)
        raise AssertionError("never sent")

    outcomes: list[BaseException] = []

    async def caller() -> None:
        try:
            await paid.send("/x", {}, send, taken=lambda _: None, settled=settled.append)
        except ak.SessionClosed as error:
            outcomes.append(error)

    async with anyio.create_task_group() as tg:
        async with paid.running():
            tg.start_soon(caller)
            await anyio.sleep(0.5)  # its create waits for its turn
        await caller()
    assert [] == sent
    assert [False, False] == settled
    assert {
        "the session closed before the create was sent; nothing was paid",
        "the session is closed; nothing was sent",
    } == {str(outcome) for outcome in outcomes}


async def test_a_create_whose_tracking_fails_still_returns_its_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failure to track a created job is logged; the caller still gets the job's info."""
    info = ak.ImageInfo.from_wire({"_id": "64dd82eef0b6684651e90131", "image_status": 1})
    paid = PaidCreates(shield_for=10.0, orphaned=lambda _: None)

    async def send() -> ak.ImageInfo:
        return info

    def taken(_: ak.ImageInfo) -> None:
        raise KeyError("a tracking bug")

    async with paid.running():
        assert info == await paid.send("/x", {}, send, taken=taken)
    assert any("could not track job" in r.getMessage() for r in caplog.records)
