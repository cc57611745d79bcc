"""The engine's edges: bad settings, the pace's own rules, deadlines in batches, odd downloads."""

from __future__ import annotations

import logging
import pathlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import anyio
import pytest

import akool_async as ak
from akool_async._pace import Pace
from akool_async.testing import AkoolEmulator
from conftest import FIXED_TIMINGS

pytestmark = pytest.mark.anyio


@pytest.fixture
def emulator() -> AkoolEmulator:
    return AkoolEmulator(api_key="k", timings=FIXED_TIMINGS, seed=8)


@pytest.fixture
async def session(emulator: AkoolEmulator) -> AsyncIterator[ak.AkoolSession]:
    async with emulator.client() as http, ak.AkoolSession(api_key="k", http_client=http) as s:
        yield s


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attempts": 0}, "attempts must be a whole number >= 1"),
        ({"timeout": 0}, "timeout must be greater than 0"),
        ({"wait_initial": -1}, "wait_initial must be 0 or more"),
    ],
)
def test_retry_policy_refuses_nonsense(kwargs: dict[str, float], message: str) -> None:
    """A RetryPolicy that cannot work is refused with what is allowed."""
    with pytest.raises(ak.InvalidInput, match=message):
        ak.RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_poll_policy_refuses_a_jitter_of_one() -> None:
    """Jitter is a fraction below 1."""
    with pytest.raises(ak.InvalidInput, match="jitter must be from 0 up to 1"):
        ak.PollPolicy(jitter=1.0)


async def test_a_cancelled_acquire_gives_its_slot_back() -> None:
    """Cancelled while waiting for the rate, an acquire leaves no slot taken."""
    pace = Pace(max_concurrent=1, rate=0.5, max_pause=60.0)
    pace.release(await pace.acquire(create=True))
    with anyio.move_on_after(0.5):
        await pace.acquire(create=True)
    assert 0 == pace.in_flight


async def test_generate_many_with_a_deadline(session: ak.AkoolSession) -> None:
    """A per-job deadline shorter than the jobs gives each prompt a WaitTimeout."""
    results = await session.generate_many(["a", "b"], timeout=10)
    assert [ak.WaitTimeout, ak.WaitTimeout] == [type(r) for r in results]
    assert [] == await session.generate_many([])


async def test_a_failing_event_callback_is_logged_not_raised(
    emulator: AkoolEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """An on_event callback that raises is logged; the job still completes."""

    def broken(_: ak.JobEvent) -> None:
        raise RuntimeError("oops")

    async with (
        emulator.client() as http,
        ak.AkoolSession(api_key="k", http_client=http, on_event=broken) as session,
    ):
        info = await (await session.generate("a fox")).wait()
        assert session.status_requests >= 1
    assert ak.ImageStatus.COMPLETED == info.status
    assert any("on_event callback failed" in r.getMessage() for r in caplog.records)
    assert logging.ERROR in {r.levelno for r in caplog.records}


async def test_handles_refuse_what_cannot_work(
    session: ak.AkoolSession, tmp_path: pathlib.Path
) -> None:
    """Mismatched info, a negative timeout, a file for a folder, a foreign handle: clear errors."""
    job = await session.generate("a fox")
    with pytest.raises(ak.InvalidInput, match="info is for job"):
        ak.ImageJob(session, "other", info=job.info)
    with pytest.raises(ak.InvalidInput, match="timeout must be None or 0 or more"):
        await job.wait(timeout=-1)
    (tmp_path / "a-file").write_text("in the way")
    with pytest.raises(ak.InvalidInput, match="cannot be a folder: a file is in the way"):
        await job.download_quadrants(tmp_path / "a-file")
    with pytest.raises(ak.InvalidInput, match="url must be an absolute"):
        await session.download_url("ftp://x/y.png", tmp_path / "y.png")
    assert job != "not a job"
    other = ak.AkoolSession(api_key="k")
    with pytest.raises(ak.InvalidInput, match="belongs to another AkoolSession"):
        [j async for j in session.as_completed([ak.ImageJob(other, job.id)])]
    with pytest.raises(RuntimeError, match="not open"):
        _ = other.http_client


async def test_an_expired_result_is_refused_without_a_request(tmp_path: pathlib.Path) -> None:
    """A result whose seven days have passed (by its create_time) raises ResultExpired at once."""
    eight_days_ago = datetime.now(UTC) - timedelta(days=8)
    emulator = AkoolEmulator(api_key="k", timings=FIXED_TIMINGS, seed=8, start=eight_days_ago)
    async with emulator.client() as http, ak.AkoolSession(api_key="k", http_client=http) as session:
        job = await session.generate("a fox")
        old = await job.wait()
        stale = ak.ImageJob(session, job.id, info=old)
        assert old.expires_at is not None
        assert old.expires_at < datetime.now(UTC)
        before = len(emulator.requests)
        with pytest.raises(ak.ResultExpired, match="Akool keeps results for seven days"):
            await stale.download(tmp_path)
    assert before == len(emulator.requests)
