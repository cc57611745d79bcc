"""The emulator's faults: each does what it says, and a seed reproduces it exactly."""

from __future__ import annotations

import random
from typing import Any

import anyio
import httpx
import pytest

import akool_async as ak
from akool_async.testing import (
    AkoolEmulator,
    Duration,
    EmulatorConfigError,
    EmulatorTimings,
    Faults,
)

pytestmark = pytest.mark.anyio

API = "/api/open/v3"
PROMPT = f"{API}/content/image/createbyprompt"
INFO = f"{API}/content/image/infobymodelid"
QUOTA = f"{API}/faceswap/quota/info"
TOKEN = f"{API}/getToken"


def make(seed: int = 7, **faults: Any) -> AkoolEmulator:
    return AkoolEmulator(api_key="k", seed=seed, faults=Faults(**faults))


async def outcome(
    client: httpx.AsyncClient, method: str, path: str, **kwargs: Any
) -> tuple[Any, ...]:
    """What a caller sees: status, Retry-After and business code, or that the connection broke."""
    try:
        response = await client.request(method, path, headers={"x-api-key": "k"}, **kwargs)
    except httpx.RemoteProtocolError:
        return ("dropped",)
    try:
        code = response.json().get("code")
    except ValueError:
        code = "not-json"
    return (response.status_code, response.headers.get("retry-after"), code)


async def run_script(emulator: AkoolEmulator) -> list[tuple[Any, ...]]:
    """A fixed mix of creates, reads and balance checks; every outcome in order, with its fault."""
    seen: list[tuple[Any, ...]] = []
    async with emulator.client(timeout=None) as client:
        seen += [
            await outcome(client, "POST", PROMPT, json={"prompt": f"prompt {n % 10}"})
            for n in range(30)
        ]
        job_ids = list(emulator.jobs)
        for n in range(30):
            params = {"image_model_id": job_ids[n % len(job_ids)]} if job_ids else {}
            seen.append(await outcome(client, "GET", INFO, params=params))
            seen.append(await outcome(client, "GET", QUOTA))
    faults = [request.fault for request in emulator.requests]
    return [(*seen_one, fault) for seen_one, fault in zip(seen, faults, strict=True)]


FAULT_EFFECTS = {
    "too_many_requests": (429, None, None),
    "too_many_requests_retry_after": (429, "2", None),
    "server_error": (500, None, 500),
    "bad_gateway": (502, None, "not-json"),
    "unavailable": (503, "2", 503),
    "truncated": (200, None, "not-json"),
    "slow": (200, None, 1000),
    "drop_before_commit": ("dropped",),
    "drop_after_commit": ("dropped",),
    "generate_error": (200, None, 1108),
    "rate_limit_code": (200, None, 1005),
}


@pytest.mark.parametrize("kind", sorted(FAULT_EFFECTS))
async def test_each_fault_shows_and_is_reproducible_under_a_seed(kind: str) -> None:
    """Same seed, same requests: the same faults in the same places; another seed differs."""
    first = await run_script(make(seed=11, retry_after=2.0, **{kind: 0.3}))
    again = await run_script(make(seed=11, retry_after=2.0, **{kind: 0.3}))
    other = await run_script(make(seed=12, retry_after=2.0, **{kind: 0.3}))
    assert first == again
    assert first != other
    assert (*FAULT_EFFECTS[kind], kind) in first
    assert {(*FAULT_EFFECTS[kind], kind), (200, None, 1000, None)} == set(first)


async def test_job_failures_are_reproducible_under_a_seed() -> None:
    """Which jobs fail, and every job's timeline, are the same for the same seed."""

    async def plan(seed: int) -> list[tuple[str, bool, float]]:
        emulator = AkoolEmulator(api_key="k", seed=seed, faults=Faults(job_failure_rate=0.3))
        async with emulator.client() as client:
            for n in range(40):
                await outcome(client, "POST", PROMPT, json={"prompt": f"prompt {n}"})
        return [
            (job.prompt, job.fails, job.complete_at - job.created_at)
            for job in emulator.jobs.values()
        ]

    first, again, other = await plan(21), await plan(21), await plan(22)
    assert first == again
    assert [fails for _, fails, _ in first] != [fails for _, fails, _ in other]
    assert [took for _, _, took in first] != [took for _, _, took in other]


async def test_faults_do_not_depend_on_request_interleaving() -> None:
    """Concurrent requests in a different order meet the same faults per prompt."""

    async def faults_per_prompt(order: list[int]) -> dict[str, list[tuple[Any, ...]]]:
        emulator = make(seed=3, server_error=0.4)
        result: dict[str, list[tuple[Any, ...]]] = {}
        async with emulator.client() as client:
            for n in order:
                prompt = f"prompt {n % 5}"
                got = await outcome(client, "POST", PROMPT, json={"prompt": prompt})
                result.setdefault(prompt, []).append(got)
        return result

    order = list(range(25))
    shuffled = order[:]
    random.Random(1).shuffle(shuffled)
    assert await faults_per_prompt(order) == await faults_per_prompt(shuffled)


async def test_commit_semantics_of_each_create_fault() -> None:
    """Throttles, 5xx, 1108 and an early drop create nothing; slow, truncated or late drops do."""
    committed = {}
    for kind in FAULT_EFFECTS:
        emulator = make(**{kind: 1.0})
        async with emulator.client(timeout=None) as client:
            await outcome(client, "POST", PROMPT, json={"prompt": "p"})
        committed[kind] = emulator.creates_for("p")
    assert {
        "too_many_requests": 0,
        "too_many_requests_retry_after": 0,
        "server_error": 0,
        "bad_gateway": 0,
        "unavailable": 0,
        "truncated": 1,
        "slow": 1,
        "drop_before_commit": 0,
        "drop_after_commit": 1,
        "generate_error": 0,
        "rate_limit_code": 0,
    } == committed


async def test_slow_answers_take_the_delay_in_virtual_time() -> None:
    """A slow answer arrives slow_delay seconds late, and is otherwise normal."""
    emulator = make(slow=1.0, slow_delay=25.0)
    async with emulator.client(timeout=60.0) as client:
        started = anyio.current_time()
        got = await outcome(client, "GET", QUOTA)
        assert 25.0 == pytest.approx(anyio.current_time() - started, abs=0.01)
    assert (200, None, 1000) == got
    assert ["slow"] == [r.fault for r in emulator.requests]


async def test_slow_create_times_out_to_submission_unknown_yet_is_committed() -> None:
    """Through the SDK: a create slower than the read timeout is SubmissionUnknown, created once."""
    emulator = make(slow=1.0, slow_delay=60.0)
    async with (
        emulator.client() as http,
        ak.AkoolSession(api_key="k", http_client=http, timeout=httpx.Timeout(5.0)) as session,
    ):
        with pytest.raises(ak.SubmissionUnknown):
            await session.create_by_prompt("slow one")
    assert 1 == emulator.creates_for("slow one")


async def test_server_side_rate_limit() -> None:
    """Above the limit in a one-second window, HTTP 429 with Retry-After; nothing is created."""
    emulator = make(rate_limit=5)
    async with emulator.client() as client:
        burst = [await outcome(client, "POST", PROMPT, json={"prompt": f"p{n}"}) for n in range(8)]
        await anyio.sleep(1.0)
        after = await outcome(client, "POST", PROMPT, json={"prompt": "later"})
    assert [(200, None, 1000)] * 5 + [(429, "1", None)] * 3 == burst
    assert (200, None, 1000) == after
    assert 6 == len(emulator.jobs)


async def test_tokens_expire_mid_run() -> None:
    """With token_ttl, a token works until it is that old, then gets 1101."""
    emulator = AkoolEmulator(client_id="c", client_secret="s" * 24, faults=Faults(token_ttl=60.0))
    async with emulator.client() as client:
        token = (await client.post(TOKEN, json={"clientId": "c", "clientSecret": "s" * 24})).json()[
            "token"
        ]
        bearer = {"authorization": f"Bearer {token}"}
        early = (await client.get(QUOTA, headers=bearer)).json()["code"]
        await anyio.sleep(60.0)
        late = (await client.get(QUOTA, headers=bearer)).json()["code"]
    assert (1000, 1101) == (early, late)


async def test_sdk_renews_an_expired_emulator_token() -> None:
    """The SDK's 1101 renewal works against the emulator's token expiry."""
    emulator = AkoolEmulator(client_id="c", client_secret="s" * 24, faults=Faults(token_ttl=60.0))
    async with (
        emulator.client() as http,
        ak.AkoolSession(client_id="c", client_secret="s" * 24, http_client=http) as session,
    ):
        await session.get_credit()
        await anyio.sleep(61.0)
        await session.get_credit()
    assert ["getToken", "quota", "quota", "getToken", "quota"] == [
        r.endpoint for r in emulator.requests
    ]


async def test_jobs_fail_by_marker_and_by_rate() -> None:
    """A prompt with the marker always fails; job_failure_rate fails a seeded share of the rest."""
    timings = EmulatorTimings(grid_processing=Duration(10.0, 0.0), grid_queue=Duration(1.0, 0.0))
    emulator = AkoolEmulator(
        api_key="k", timings=timings, faults=Faults(job_failure_rate=0.25), seed=5
    )
    async with emulator.client() as http, ak.AkoolSession(api_key="k", http_client=http) as session:
        marked = await session.create_by_prompt("this one [fail]s")
        others = [await session.create_by_prompt(f"prompt {n}") for n in range(200)]
        await anyio.sleep(12.0)
        assert ak.ImageStatus.FAILED == (await session.get_image_info(marked.id)).status
        statuses = [(await session.get_image_info(job.id)).status for job in others]
    failed = statuses.count(ak.ImageStatus.FAILED)
    assert 200 == failed + statuses.count(ak.ImageStatus.COMPLETED)
    assert 30 <= failed <= 70


async def test_bad_fault_plans_are_refused() -> None:
    """Rates outside 0..1, rates adding up past 1 and unknown endpoints are clear errors."""
    with pytest.raises(EmulatorConfigError, match="probability from 0 to 1"):
        Faults(server_error=1.5)
    with pytest.raises(EmulatorConfigError, match=r"add up to 1\.2"):
        Faults(server_error=0.6, bad_gateway=0.6)
    with pytest.raises(EmulatorConfigError, match="allowed: createbybutton"):
        Faults(endpoints={"image"})
    with pytest.raises(EmulatorConfigError, match="time_scale"):
        AkoolEmulator(time_scale=0)
