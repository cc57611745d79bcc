"""The emulator's accounting: what it created, pressed, answered and charged, in-process and served.

``AkoolEmulator.accounting()`` in-process, ``GET /_emulator/accounting`` for clients in any
language (in-process and on a real socket), the summary the served emulator prints when it
stops, and ``overdraft``: an account that serves any number of creates.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from typing import Any

import httpx
import pytest

import akool_async as ak
from akool_async.testing import (
    ACCOUNTING_PATH,
    TEST_API_KEY,
    AkoolEmulator,
    EmulatorAccounting,
)
from conftest import FIXED_TIMINGS

CREATE = "/api/open/v3/content/image/createbyprompt"
QUOTA = "/api/open/v3/faceswap/quota/info"
KEY = {"x-api-key": TEST_API_KEY}
SERVE = (sys.executable, "-m", "akool_async.testing")
DEADLINE = 30.0
"""Seconds a child process gets to start or stop before the test kills it and fails."""


def _ids(emulator: AkoolEmulator) -> list[str]:
    return list(emulator.jobs)


async def _fox_owl_and_presses(session: ak.AkoolSession) -> tuple[ak.ImageJob, ...]:
    """Three creates (one prompt twice), then U2 and V3 on the first grid."""
    fox = await session.generate("a fox")
    owl = await session.generate("an owl")
    fox_again = await session.generate("a fox")
    upscale = await fox.upscale(2)
    variation = await fox.vary(3)
    return fox, owl, fox_again, upscale, variation


@pytest.mark.anyio
async def test_accounting_counts_creates_presses_requests_and_credits() -> None:
    """Each create under its prompt, each press under its parent and button, credits per job."""
    emulator = AkoolEmulator(timings=FIXED_TIMINGS, seed=3)
    async with (
        emulator.client() as http,
        ak.AkoolSession(api_key=emulator.api_key, http_client=http) as session,
    ):
        fox, owl, fox_again, upscale, variation = await _fox_owl_and_presses(session)
        balance = await session.get_credit()

    accounting = emulator.accounting()

    assert {"a fox": (fox.id, fox_again.id), "an owl": (owl.id,)} == accounting.creates
    assert {(fox.id, "U2"): (upscale.id,), (fox.id, "V3"): (variation.id,)} == accounting.presses
    assert (3, 2) == (accounting.create_count, accounting.press_count)
    assert dict.fromkeys(_ids(emulator), 2) == accounting.credits_per_job
    assert (10.0, 9990, 9990) == (accounting.credits_charged, accounting.balance, balance)
    reads = emulator.requests_per_endpoint()["infobymodelid"]
    assert {
        "createbyprompt": {200: 3},
        "createbybutton": {200: 2},
        "infobymodelid": {200: reads},
        "quota": {200: 1},
    } == accounting.requests
    assert {
        "createbyprompt": {1000: 3},
        "createbybutton": {1000: 2},
        "infobymodelid": {1000: reads},
        "quota": {1000: 1},
    } == accounting.codes
    assert len(emulator.requests) == accounting.request_count


@pytest.mark.anyio
async def test_refusals_and_unknown_paths_are_counted_by_status_and_code() -> None:
    """A 1003, a 1008, a 404 and a 405 each land under their endpoint, status and code."""
    emulator = AkoolEmulator()
    async with emulator.client() as http:
        await http.post(CREATE, headers=KEY, json={"prompt": ""})
        await http.get(
            "/api/open/v3/content/image/infobymodelid",
            headers=KEY,
            params={"image_model_id": "0" * 24},
        )
        await http.get("/api/open/v3/nothing/here", headers=KEY)
        await http.get(CREATE, headers=KEY)

    accounting = emulator.accounting()

    assert {
        "createbyprompt": {200: 1},
        "infobymodelid": {200: 1},
        "unknown": {404: 1, 405: 1},
    } == accounting.requests
    assert {"createbyprompt": {1003: 1}, "infobymodelid": {1008: 1}} == accounting.codes
    assert ({}, {}, {}, 0.0) == (
        accounting.creates,
        accounting.presses,
        accounting.credits_per_job,
        accounting.credits_charged,
    )


@pytest.mark.anyio
async def test_the_endpoint_answers_the_documented_json_and_is_not_counted() -> None:
    """GET /_emulator/accounting is the JSON shape of the docs; asking twice counts nothing."""
    emulator = AkoolEmulator(timings=FIXED_TIMINGS, seed=3)
    async with (
        emulator.client() as http,
        ak.AkoolSession(api_key=emulator.api_key, http_client=http) as session,
    ):
        fox, owl, fox_again, upscale, variation = await _fox_owl_and_presses(session)
        requests_before = len(emulator.requests)
        first = await http.get(ACCOUNTING_PATH)
        second = await http.get(ACCOUNTING_PATH)

    assert requests_before == len(emulator.requests)
    assert first.json() == second.json()
    assert (200, "application/json", "no-store") == (
        first.status_code,
        first.headers["content-type"],
        first.headers["cache-control"],
    )
    body = first.json()
    reads = emulator.requests_per_endpoint()["infobymodelid"]
    assert {
        "creates": {
            "total": 3,
            "per_prompt": {
                "a fox": {"count": 2, "job_ids": [fox.id, fox_again.id]},
                "an owl": {"count": 1, "job_ids": [owl.id]},
            },
        },
        "presses": {
            "total": 2,
            "per_parent": {
                fox.id: {
                    "U2": {"count": 1, "job_ids": [upscale.id]},
                    "V3": {"count": 1, "job_ids": [variation.id]},
                }
            },
        },
        "requests": {
            "total": 5 + reads,
            "per_endpoint": {
                "createbyprompt": {"count": 3, "per_status": {"200": 3}, "per_code": {"1000": 3}},
                "createbybutton": {"count": 2, "per_status": {"200": 2}, "per_code": {"1000": 2}},
                "infobymodelid": {
                    "count": reads,
                    "per_status": {"200": reads},
                    "per_code": {"1000": reads},
                },
            },
        },
        "credits": {
            "charged": 10.0,
            "balance": 9990,
            "per_job": dict.fromkeys(_ids(emulator), 2),
        },
    } == body
    assert emulator.accounting().to_json() == body


@pytest.mark.anyio
async def test_the_endpoint_answers_only_get() -> None:
    """Any other method is 405 with Allow: GET, and changes nothing."""
    emulator = AkoolEmulator()
    async with emulator.client() as http:
        response = await http.post(ACCOUNTING_PATH, json={})

    assert (405, "GET", "Method Not Allowed") == (
        response.status_code,
        response.headers["allow"],
        response.text,
    )
    assert [] == emulator.requests


def test_summary_says_what_happened_in_four_lines() -> None:
    """Creates (and repeats), presses (and on how many grids), requests, credits and balance."""
    accounting = EmulatorAccounting(
        creates={"a fox": ("f1", "f2"), "an owl": ("o1",)},
        presses={("f1", "U1"): ("u1",), ("f1", "V2"): ("v2",), ("o1", "U4"): ("u4",)},
        requests={"quota": {200: 1}, "createbyprompt": {200: 3, 429: 2}},
        codes={"quota": {1000: 1}, "createbyprompt": {1000: 3}},
        credits_per_job=dict.fromkeys(("f1", "f2", "o1", "u1", "v2", "u4"), 2),
        credits_charged=12,
        balance=-2.5,
    )

    assert [
        "creates: 3 (distinct prompts 2, created more than once 1)",
        "button presses: 3 (on 2 grids)",
        "requests: 6 (createbyprompt 5, quota 1)",
        "credits charged: 12 (balance now -2.5)",
    ] == accounting.summary()


def test_summary_of_an_emulator_that_did_nothing() -> None:
    """Zeros everywhere, and no empty parentheses."""
    assert [
        "creates: 0 (distinct prompts 0, created more than once 0)",
        "button presses: 0 (on 0 grids)",
        "requests: 0",
        "credits charged: 0 (balance now 10000)",
    ] == AkoolEmulator().accounting().summary()


@pytest.mark.anyio
async def test_without_overdraft_an_empty_account_refuses_with_1006() -> None:
    """Credit for one create: the second is refused (1006) and charged nothing."""
    emulator = AkoolEmulator(credit=2)
    async with emulator.client() as http:
        answers = [
            (await http.post(CREATE, headers=KEY, json={"prompt": p})).json()["code"]
            for p in ("one", "two")
        ]

    assert [1000, 1006] == answers
    assert (2.0, 0) == (emulator.credits_used, emulator.credit)


@pytest.mark.anyio
async def test_overdraft_serves_creates_past_the_balance_and_charges_each() -> None:
    """With overdraft every create is accepted; the balance goes below zero by each charge."""
    emulator = AkoolEmulator(credit=3, overdraft=True)
    async with emulator.client() as http:
        answers = [
            (await http.post(CREATE, headers=KEY, json={"prompt": f"row {n}"})).json()
            for n in range(4)
        ]
        quota = (await http.get(QUOTA, headers=KEY)).json()

    assert [(1000, 2)] * 4 == [(a["code"], a["data"]["deduction_credit"]) for a in answers]
    assert {"credit": -5} == quota["data"]
    accounting = emulator.accounting()
    assert (8.0, -5, 4) == (
        accounting.credits_charged,
        accounting.balance,
        len(accounting.credits_per_job),
    )


# -- on a real socket ---------------------------------------------------------------------------

QUICK_POLLS = ak.PollPolicy(expected_duration=0.2, target_lag=0.05, min_interval=0.02)


@pytest.mark.real_time  # real sockets need real time: plain loops, not the virtual clocks
@pytest.mark.anyio
async def test_served_accounting_matches_what_the_sdk_did() -> None:
    """Served on loopback: the SDK creates and presses, httpx reads the exact counts back."""
    emulator = AkoolEmulator(timings=FIXED_TIMINGS, time_scale=0.004, seed=5)
    async with (
        emulator.serve(port=0) as base_url,
        ak.AkoolSession(
            api_key=emulator.api_key, base_url=base_url, poll_policy=QUICK_POLLS
        ) as session,
        httpx.AsyncClient(base_url=base_url) as observer,
    ):
        fox, owl, fox_again, upscale, variation = await _fox_owl_and_presses(session)
        response = await observer.get(ACCOUNTING_PATH)

    body: dict[str, Any] = response.json()
    assert 200 == response.status_code
    assert {
        "a fox": {"count": 2, "job_ids": [fox.id, fox_again.id]},
        "an owl": {"count": 1, "job_ids": [owl.id]},
    } == body["creates"]["per_prompt"]
    assert {
        fox.id: {
            "U2": {"count": 1, "job_ids": [upscale.id]},
            "V3": {"count": 1, "job_ids": [variation.id]},
        }
    } == body["presses"]["per_parent"]
    per_endpoint = body["requests"]["per_endpoint"]
    assert ({"200": 3}, {"200": 2}) == (
        per_endpoint["createbyprompt"]["per_status"],
        per_endpoint["createbybutton"]["per_status"],
    )
    assert (10, 9990, 5) == (
        body["credits"]["charged"],
        body["credits"]["balance"],
        len(body["credits"]["per_job"]),
    )


def _read_announcement(process: subprocess.Popen[str]) -> str:
    """The base URL, from the six lines the emulator prints once it listens."""
    assert process.stdout is not None
    lines = [process.stdout.readline().rstrip("\n") for _ in range(6)]
    match = re.fullmatch(r"Akool emulator listening on (http://127\.0\.0\.1:\d+)", lines[0])
    assert match is not None, lines
    return match.group(1)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_served_emulator_reports_over_http_and_prints_a_summary_on_ctrl_c() -> None:
    """python -m akool_async.testing: the accounting over plain HTTP; on SIGINT, a summary."""
    process = subprocess.Popen(  # noqa: S603 - our own interpreter running our own module
        [*SERVE, "--port", "0", "--credit", "4", "--overdraft"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(DEADLINE, process.kill)
    watchdog.start()
    try:
        base_url = _read_announcement(process)
        with httpx.Client(base_url=base_url, headers=KEY) as client:
            codes = [
                client.post(CREATE, json={"prompt": prompt}).json()["code"]
                for prompt in ("a fox", "an owl", "a fox")
            ]
            client.get(QUOTA)
            accounting = client.get(ACCOUNTING_PATH).json()
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate()
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert [1000, 1000, 1000] == codes
    assert (3, [2, 1], 4, 6, -2) == (
        accounting["creates"]["total"],
        [entry["count"] for entry in accounting["creates"]["per_prompt"].values()],
        accounting["requests"]["total"],
        accounting["credits"]["charged"],
        accounting["credits"]["balance"],
    )
    assert 0 == process.returncode, stderr
    assert "Traceback" not in stderr
    assert [
        "Akool emulator stopped.",
        "creates: 3 (distinct prompts 2, created more than once 1)",
        "button presses: 0 (on 0 grids)",
        "requests: 4 (createbyprompt 3, quota 1)",
        "credits charged: 6 (balance now -2)",
    ] == stdout.splitlines()


def test_the_accounting_json_round_trips_through_json() -> None:
    """Plain JSON: odd prompts come back as sent, whole credits print without a ".0"."""
    accounting = EmulatorAccounting(
        creates={'狐狸 "in" snow': ("a",)},
        presses={},
        requests={"createbyprompt": {200: 1}},
        codes={"createbyprompt": {1000: 1}},
        credits_per_job={"a": 2.0},
        credits_charged=2.0,
        balance=7.5,
    )

    body = accounting.to_json()

    assert body == json.loads(json.dumps(body, ensure_ascii=False))
    assert {'狐狸 "in" snow': {"count": 1, "job_ids": ["a"]}} == body["creates"]["per_prompt"]
    assert '{"charged": 2, "balance": 7.5, "per_job": {"a": 2}}' == json.dumps(body["credits"])
