"""An hour of Akool traffic in virtual time: 1,000 jobs of realistic duration, in seconds."""

from __future__ import annotations

import random

import anyio
import pytest

import akool_async as ak
from akool_async.testing import AkoolEmulator

pytestmark = pytest.mark.anyio

JOBS = 1_000
SPREAD = 3_300.0  # creates arrive over 55 minutes; with ~45 s jobs the run spans an hour
POLL = 5.0


async def test_a_thousand_realistic_jobs_in_virtual_time() -> None:
    """Jobs created across an hour all complete, each at the time the emulator planned."""
    emulator = AkoolEmulator(api_key="k", seed=42)
    rng = random.Random(0)
    arrivals = sorted(rng.uniform(0, SPREAD) for _ in range(JOBS))
    detected: dict[str, float] = {}
    started = anyio.current_time()

    async def one(n: int, session: ak.AkoolSession) -> None:
        await anyio.sleep(arrivals[n])
        job = await session.create_by_prompt(f"prompt number {n}", scale="16:9")
        while True:
            await anyio.sleep(POLL)
            info = await session.get_image_info(job.id)
            if info.is_result_ready:
                detected[job.id] = anyio.current_time()
                return

    async with (
        emulator.client() as http,
        ak.AkoolSession(api_key="k", http_client=http) as s,
        anyio.create_task_group() as tg,
    ):
        for n in range(JOBS):
            tg.start_soon(one, n, s)
    elapsed = anyio.current_time() - started

    assert JOBS == len(detected) == len(emulator.jobs) == emulator.credits_used / 2
    assert 3_300 < elapsed < 3_600
    durations = sorted(job.complete_at - job.created_at for job in emulator.jobs.values())
    # Realistic: a median of roughly 45 s, none instant, a long tail that stays within minutes.
    assert 35 < durations[JOBS // 2] < 60
    assert 15 < durations[0]
    assert durations[-1] < 300
    # Every detection follows the planned completion by less than one polling interval.
    lags = [detected[job_id] - emulator.completion_time(job_id) for job_id in detected]
    assert 0 <= min(lags)
    assert max(lags) <= POLL + 1e-6
