"""The session engine against the emulator, in virtual time: waits, follow-ups, batches."""

from __future__ import annotations

import hashlib
import logging
import pathlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import akool_async as ak
from akool_async.testing import AkoolEmulator, Duration, EmulatorTimings, Faults
from akool_async.testing._images import grid_png, quadrant_png, upscale_png
from conftest import FIXED_TIMINGS as TIMINGS

pytestmark = pytest.mark.anyio

INFO = "infobymodelid"


@pytest.fixture
def emulator() -> AkoolEmulator:
    return AkoolEmulator(api_key="k", timings=TIMINGS, seed=3)


@pytest.fixture
async def session(emulator: AkoolEmulator) -> AsyncIterator[ak.AkoolSession]:
    async with emulator.client() as http, ak.AkoolSession(api_key="k", http_client=http) as s:
        yield s


def reads_of(emulator: AkoolEmulator, job_id: str) -> int:
    return sum(
        1
        for r in emulator.requests
        if r.endpoint == INFO and r.query.get("image_model_id") == job_id
    )


async def test_wait_returns_a_grid_only_with_its_quadrants(
    session: ak.AkoolSession, emulator: AkoolEmulator
) -> None:
    """Status 3 at 44 s is not enough: wait() returns once the quadrants are there (46 s)."""
    started = anyio.current_time()
    job = await session.generate("a fox")
    info = await job.wait()
    waited = anyio.current_time() - started
    assert (ak.ImageStatus.COMPLETED, 4, 8) == (
        info.status,
        len(info.upscaled_urls),
        len(info.buttons),
    )
    assert 46.0 <= waited <= 46.0 + session.poll_policy.target_lag * 1.2
    # Cold and alone, the job is the session's sentinel: read early at widening ages, at most a
    # gap apart (so that a job far shorter than the prior guesses is not held to the guess: a
    # 1 s job is seen within a second, not 16 s late), then every gap: 21 reads for this 46 s
    # grid, where a 3 s poller makes 16. Jobs after the first few finishers cost far less.
    assert reads_of(emulator, job.id) <= 21


async def test_an_upscale_is_complete_with_its_image(session: ak.AkoolSession) -> None:
    """A U child has no quadrants: it is complete at status 3 with its image."""
    grid = await session.generate("a fox")
    child = await grid.upscale(2)
    info = await child.wait()
    assert (ak.ImageStatus.COMPLETED, (), "U2", grid.id) == (
        info.status,
        info.upscaled_urls,
        info.op_button,
        info.parent_id,
    )
    assert info.image is not None


async def test_follow_ups_wait_for_the_parent_and_vary_makes_a_grid(
    session: ak.AkoolSession, emulator: AkoolEmulator
) -> None:
    """vary() on an unfinished grid waits for it, then presses V3; the child is a grid."""
    grid = await session.generate("a lighthouse", scale="16:9")
    variation = await grid.vary(3)
    info = await variation.wait()
    assert (4, "V3") == (len(info.upscaled_urls), info.op_button)
    assert 1 == emulator.button_presses[grid.id, "V3"]


async def test_refused_follow_ups_send_nothing(
    session: ak.AkoolSession, emulator: AkoolEmulator
) -> None:
    """A bad n, a used button, a child's button: clear errors, and no create request."""
    grid = await session.generate("a fox")
    with pytest.raises(ak.InvalidInput, match="n must be 1, 2, 3 or 4"):
        await grid.upscale(5)
    with pytest.raises(ak.InvalidInput, match="got True"):
        await grid.vary(True)  # type: ignore[arg-type]
    child = await grid.upscale(1)
    presses = len([r for r in emulator.requests if r.endpoint == "createbybutton"])
    with pytest.raises(ak.ButtonUnavailable, match="U1 was already pressed"):
        await grid.upscale(1)
    with pytest.raises(
        ak.ButtonUnavailable, match=r"U3 is not available on job .*; Akool offers: none"
    ):
        await child.upscale(3)
    with pytest.raises(ak.ButtonUnavailable, match="an upscale: it has no quadrants"):
        await child.download_quadrants(".")
    assert presses == len([r for r in emulator.requests if r.endpoint == "createbybutton"])


async def test_a_failed_parent_refuses_follow_ups(
    session: ak.AkoolSession, emulator: AkoolEmulator
) -> None:
    """A failed grid raises JobFailed from wait() and from upscale(), which sends nothing."""
    job = await session.generate("doomed [fail]")
    with pytest.raises(ak.JobFailed) as failed:
        await job.wait()
    assert (job.id, ak.ImageStatus.FAILED) == (failed.value.job_id, failed.value.info.status)
    with pytest.raises(ak.JobFailed):
        await job.upscale(1)
    assert 0 == emulator.requests_per_endpoint()["createbybutton"]


async def test_a_deadline_raises_wait_timeout_and_the_job_resumes(
    session: ak.AkoolSession, emulator: AkoolEmulator
) -> None:
    """wait(timeout=10) raises a TimeoutError naming the job; a new handle's wait() resumes."""
    job = await session.generate("a fox")
    with pytest.raises(TimeoutError) as timed_out:
        await job.wait(timeout=10)
    assert isinstance(timed_out.value, ak.WaitTimeout)
    assert (job.id, 10) == (timed_out.value.job_id, timed_out.value.timeout)
    info = await session.job(job.id).wait()
    assert 4 == len(info.upscaled_urls)
    assert 1 == emulator.creates_for("a fox")


async def test_cancelling_a_waiter_stops_its_polling(
    session: ak.AkoolSession, emulator: AkoolEmulator
) -> None:
    """After the only waiter is cancelled, no further status request is sent for the job."""
    job = await session.generate("a fox")
    with anyio.move_on_after(38):
        await job.wait()
    await anyio.sleep(1)  # one tick: a poll already in flight may finish
    seen = reads_of(emulator, job.id)
    await anyio.sleep(600)
    assert seen == reads_of(emulator, job.id)
    assert seen >= 1
    # Not forgotten: the session still knows the job and a new wait finishes it.
    assert job.info is not None
    assert ak.ImageStatus.COMPLETED == (await job.wait()).status


async def test_many_waiters_share_one_jobs_polls(
    session: ak.AkoolSession, emulator: AkoolEmulator
) -> None:
    """Ten waiters on one job cost what one waiter costs."""
    job = await session.generate("a fox")
    results: list[ak.ImageInfo] = []

    async def wait_once() -> None:
        results.append(await session.job(job.id).wait())

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(wait_once)
    assert 10 == len(results)
    # One schedule of reads for the job, as for a lone waiter in a fresh session (21 reads,
    # see test_wait_returns_a_grid_only_with_its_quadrants), not ten.
    assert (21, 21) == (reads_of(emulator, job.id), session.status_requests)


async def test_a_job_from_another_run_is_polled_steadily(emulator: AkoolEmulator) -> None:
    """A job this session did not create (age unknown) is looked at at once, then steadily."""
    async with emulator.client() as http, ak.AkoolSession(api_key="k", http_client=http) as first:
        job_id = (await first.generate("made earlier")).id
    await anyio.sleep(30)
    async with emulator.client() as http, ak.AkoolSession(api_key="k", http_client=http) as second:
        started = anyio.current_time()
        info = await second.job(job_id).wait()
        waited = anyio.current_time() - started
    assert 4 == len(info.upscaled_urls)
    assert 16 <= waited <= 16 + 6


async def test_events_follow_each_job(emulator: AkoolEmulator) -> None:
    """on_event and events() both see created, queueing, processing and completed, in order."""
    seen: list[tuple[str, str]] = []
    streamed: list[tuple[str, str]] = []
    async with (
        emulator.client() as http,
        ak.AkoolSession(
            api_key="k", http_client=http, on_event=lambda e: seen.append((e.job_id, e.kind))
        ) as session,
    ):

        async def listen() -> None:
            # One by one: the listener is cancelled mid-stream, and must keep what it saw.
            async for event in session.events():
                streamed.append((event.job_id, event.kind))  # noqa: PERF401

        async with anyio.create_task_group() as tg:
            tg.start_soon(listen)
            await anyio.lowlevel.checkpoint()
            job = await session.generate("a fox")
            await job.wait()
            failing = await session.generate("no [fail]")
            with pytest.raises(ak.JobFailed):
                await failing.wait()
            tg.cancel_scope.cancel()
    expected = [
        (job.id, "created"),
        (job.id, "queueing"),
        (job.id, "processing"),
        (job.id, "completed"),
        (failing.id, "created"),
        (failing.id, "queueing"),
        (failing.id, "processing"),
        (failing.id, "failed"),
    ]
    assert expected == seen == streamed


async def test_generate_many_gives_one_outcome_per_prompt_in_order(
    session: ak.AkoolSession, emulator: AkoolEmulator
) -> None:
    """Outcomes come back in input order; a failure takes its place and spares the others."""
    prompts = [f"prompt {n}" for n in range(20)] + ["the odd one [fail]"] + ["last"]
    results = await session.generate_many(prompts, scale="3:2", concurrency=5)
    assert len(prompts) == len(results)
    assert [ak.JobFailed] == [type(r) for r in results if not isinstance(r, ak.ImageInfo)]
    assert isinstance(results[20], ak.JobFailed)
    completed = [r for r in results if isinstance(r, ak.ImageInfo)]
    assert [emulator.jobs[r.id].prompt for r in completed] == [
        p for p in prompts if "[fail]" not in p
    ]
    assert {1} == {emulator.creates_for(p) for p in prompts}


async def test_generate_many_checks_every_prompt_first(
    session: ak.AkoolSession, emulator: AkoolEmulator
) -> None:
    """A blank prompt anywhere in the batch is refused before anything is created."""
    with pytest.raises(ak.InvalidInput, match="prompt must not be empty"):
        await session.generate_many(["fine", "also fine", "   "])
    with pytest.raises(ak.InvalidInput, match="concurrency must be a whole number"):
        await session.generate_many(["fine"], concurrency=0)
    assert [] == emulator.requests


async def test_as_completed_yields_in_completion_order(session: ak.AkoolSession) -> None:
    """Upscales (17 s) finish before grids (46 s), and failures are yielded too."""
    grid = await session.generate("a fox")
    await grid.wait()
    failing = await session.generate("bad [fail]")  # fails 44 s from now
    await anyio.sleep(10)
    slow = await session.generate("slow grid")  # done 56 s from now
    upscale = await grid.upscale(4)  # done 27 s from now
    order = [job async for job in session.as_completed([slow, upscale, failing])]
    assert [upscale, failing, slow] == order


async def test_downloads_are_intact(
    session: ak.AkoolSession, emulator: AkoolEmulator, tmp_path: pathlib.Path
) -> None:
    """The composite, the quadrants and an upscale land on disk byte-for-byte as rendered."""
    job = await session.generate("a fox", scale="4:3")
    path = await job.download(tmp_path)
    quadrants = await job.download_quadrants(tmp_path)
    upscale = await job.upscale(2)
    upscale_path = await upscale.download(tmp_path / "U2.png")
    seed = emulator.jobs[job.id].seed
    assert grid_png("a fox", ak.Scale.RATIO_4_3, seed=seed) == path.read_bytes()
    assert [quadrant_png("a fox", ak.Scale.RATIO_4_3, n, seed=seed) for n in (1, 2, 3, 4)] == [
        q.read_bytes() for q in quadrants
    ]
    assert upscale_png("a fox", ak.Scale.RATIO_4_3, 2, seed=seed) == upscale_path.read_bytes()
    assert job.last_download is not None
    assert hashlib.sha256(path.read_bytes()).hexdigest() == job.last_download.sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{job.id}.png", *(f"{job.id}-{n}.png" for n in (1, 2, 3, 4)), "U2.png"]
    )


async def test_grid_without_quadrants_returns_after_the_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A grid stuck at status 3 without quadrants is returned as it is, with a warning."""
    timings = EmulatorTimings(
        grid_queue=Duration(4.0, 0.0),
        grid_processing=Duration(40.0, 0.0),
        quadrant_lag=Duration(10_000.0, 0.0),
    )
    emulator = AkoolEmulator(api_key="k", timings=timings)
    policy = ak.PollPolicy(quadrant_timeout=30.0)
    async with (
        emulator.client() as http,
        ak.AkoolSession(api_key="k", http_client=http, poll_policy=policy) as s,
    ):
        job = await s.generate("stuck")
        started = anyio.current_time()
        info = await job.wait()
        waited = anyio.current_time() - started
    assert (ak.ImageStatus.COMPLETED, ()) == (info.status, info.upscaled_urls)
    # Status 3 is noticed within a poll gap (~2.8 s); the limit runs from then, checked per gap.
    assert 44 + 30 <= waited <= 44 + 30 + 2 * 2.9 + 1
    assert any(
        "without its quadrant images" in r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING
    )


async def test_status_read_errors_never_fail_a_job() -> None:
    """With 30 % of status reads failing (5xx, resets, truncation, 429), every job completes."""
    faults = Faults(
        server_error=0.1,
        drop_after_commit=0.05,
        truncated=0.05,
        too_many_requests_retry_after=0.1,
        endpoints={"infobymodelid"},
    )
    emulator = AkoolEmulator(api_key="k", timings=TIMINGS, faults=faults, seed=9)
    async with emulator.client() as http, ak.AkoolSession(api_key="k", http_client=http) as session:
        results = await session.generate_many([f"p{n}" for n in range(30)])
    assert all(isinstance(r, ak.ImageInfo) for r in results)
    assert sum(1 for r in emulator.requests if r.fault is not None) > 10


async def test_leaving_the_session_ends_waits_and_polling(emulator: AkoolEmulator) -> None:
    """A wait still running when its session closes raises SessionClosed; polling stops."""
    outcome: list[BaseException] = []

    async with emulator.client() as http:
        async with (
            anyio.create_task_group() as tg,
            ak.AkoolSession(api_key="k", http_client=http) as session,
        ):
            job = await session.generate("a fox")

            async def waiter() -> None:
                try:
                    await job.wait()
                except ak.SessionClosed as error:
                    outcome.append(error)

            tg.start_soon(waiter)
            await anyio.sleep(35)
        before = len(emulator.requests)
        await anyio.sleep(600)
    assert [ak.SessionClosed] == [type(e) for e in outcome]
    assert before == len(emulator.requests)
    with pytest.raises(RuntimeError, match="closed"):
        await job.wait()


async def test_the_pace_learns_a_server_rate_limit() -> None:
    """Against 10 requests/s, the session slows to the limit: few 429s after the first."""
    emulator = AkoolEmulator(api_key="k", timings=TIMINGS, faults=Faults(rate_limit=10), seed=2)
    async with emulator.client() as http, ak.AkoolSession(api_key="k", http_client=http) as session:
        results = await session.generate_many([f"p{n}" for n in range(300)], concurrency=300)
    assert all(isinstance(r, ak.ImageInfo) for r in results)
    throttled = [r for r in emulator.requests if r.status_code == 429]
    first = emulator.requests.index(throttled[0])
    after = emulator.requests[first + 1 :]
    assert sum(1 for r in after if r.status_code == 429) / len(after) < 0.02
    assert {1} == {emulator.creates_for(f"p{n}") for n in range(300)}


FAULTY = Faults(
    too_many_requests_retry_after=0.04,
    server_error=0.03,
    bad_gateway=0.02,
    drop_after_commit=0.02,
    drop_before_commit=0.02,
    truncated=0.02,
    job_failure_rate=0.05,
)


async def run_faulty_batch(
    session: ak.AkoolSession, emulator: AkoolEmulator, folder: pathlib.Path, prompts: list[str]
) -> None:
    """The shared body of the fault tests: every prompt one outcome, none created twice."""
    outcomes: dict[str, Any] = {}

    async def one(prompt: str) -> None:
        try:
            job = await session.generate(prompt)
            await job.wait()
            outcomes[prompt] = await job.download(folder)
        except ak.AkoolError as error:
            outcomes[prompt] = error

    async with anyio.create_task_group() as tg:
        for prompt in prompts:
            tg.start_soon(one, prompt)
    assert sorted(prompts) == sorted(outcomes)
    assert {0, 1} >= {emulator.creates_for(p) for p in prompts}
    kinds = {type(o).__name__ for o in outcomes.values()}
    assert kinds <= {"PosixPath", "WindowsPath", "JobFailed", "SubmissionUnknown"}
    for prompt, outcome in outcomes.items():
        if isinstance(outcome, pathlib.Path):
            job = emulator.jobs[outcome.stem]
            assert grid_png(prompt, job.scale, seed=job.seed) == outcome.read_bytes()
            assert 1 == emulator.creates_for(prompt)
        elif isinstance(outcome, ak.JobFailed):
            assert emulator.jobs[outcome.job_id].fails
        else:
            assert isinstance(outcome, ak.SubmissionUnknown)
            assert prompt == outcome.payload["prompt"]
    assert "SubmissionUnknown" in kinds
    assert "JobFailed" in kinds


async def test_two_hundred_jobs_with_faults(tmp_path: pathlib.Path) -> None:
    """200 jobs through 429s, 5xx, resets and truncation: one outcome each, nothing paid twice."""
    emulator = AkoolEmulator(api_key="k", faults=FAULTY, seed=4)
    async with emulator.client() as http, ak.AkoolSession(api_key="k", http_client=http) as session:
        await run_faulty_batch(session, emulator, tmp_path, [f"prompt {n}" for n in range(200)])


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("asyncio", {}), id="asyncio"), pytest.param(("trio", {}), id="trio")],
)
async def test_faulty_batch_over_a_real_socket(anyio_backend: Any, tmp_path: pathlib.Path) -> None:
    """The same over loopback, in real time, against the served emulator."""
    emulator = AkoolEmulator(api_key="k", faults=FAULTY, seed=5, time_scale=0.01)
    policy = ak.PollPolicy(expected_duration=0.45, target_lag=0.1, min_interval=0.02)
    retry = ak.RetryPolicy(wait_initial=0.05, wait_max=0.2, max_retry_after=0.2)
    async with (
        emulator.serve() as url,
        ak.AkoolSession(api_key="k", base_url=url, poll_policy=policy, retry=retry) as session,
    ):
        with anyio.fail_after(60):
            await run_faulty_batch(session, emulator, tmp_path, [f"prompt {n}" for n in range(60)])


async def test_bad_engine_settings_are_refused() -> None:
    """Nonsense limits and policies are refused with what is allowed."""
    with pytest.raises(ak.InvalidInput, match="requests_per_second"):
        ak.AkoolSession(api_key="k", requests_per_second=0)
    with pytest.raises(ak.InvalidInput, match="max_concurrent_requests"):
        ak.AkoolSession(api_key="k", max_concurrent_requests=0)
    with pytest.raises(ak.InvalidInput, match="target_lag"):
        ak.PollPolicy(target_lag=-1)
    with pytest.raises(ak.InvalidInput, match="min_interval"):
        ak.PollPolicy(min_interval=5, max_interval=1)


def test_poll_policy_is_documented_by_its_defaults() -> None:
    """The one knob is the 2.75 s target lag; the duration is a hint, not given by default."""
    policy = ak.PollPolicy()
    assert (None, 2.75, 0.4, 0.85) == (
        policy.expected_duration,
        policy.target_lag,
        policy.upscale_factor,
        policy.variation_factor,
    )


_: Callable[..., Any] = reads_of
