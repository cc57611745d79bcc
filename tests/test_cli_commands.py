"""akool-async's single-job commands, generate, demo and emulator, through the real console script.

The subprocess tests serve an AkoolEmulator on loopback from the test process (real time, on
asyncio and trio) and point the CLI at it with AKOOL_BASE_URL, so every assertion can check what
the emulator saw: how many requests of each kind, which buttons were pressed, the bytes it served.
A few tests call ``akool_async.cli.main`` in-process with ``--emulator``.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import anyio
import httpx
import pytest

from akool_async.cli import main
from akool_async.testing import TEST_API_KEY, TEST_CLIENT_ID, TEST_CLIENT_SECRET, AkoolEmulator

TIME_SCALE = 0.01
"""The served emulators' time scale: a grid takes about half a second."""
POLL = ("--expected-duration", "0.5", "--target-lag", "0.1")
"""Poll planner priors sized to TIME_SCALE, so polls start at once rather than ~30 s late."""
CLI_DEADLINE = 60.0
"""Seconds one CLI run gets before the test fails."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JOB_ID = re.compile(r"[0-9a-f]{24}")
UNKNOWN_ID = "0123456789abcdef01234567"
FRESH_EMULATOR = (
    "akool-async: error: --emulator starts a fresh emulator in this process, which knows no job "
    "ID; serve one with `python -m akool_async.testing` (or `akool-async emulator`) and point "
    "AKOOL_BASE_URL at it instead\n"
)
NOT_FOUND = (
    "akool-async: error: Akool answered code 1008 from /api/open/v3/content/image/infobymodelid: "
    "The content you get does not exist\n"
)

# Real sockets and subprocesses need real time: plain loops, not the virtual clocks.
pytestmark = pytest.mark.real_time


def cli() -> list[str]:
    """The installed console script, or the module when the script is not beside Python."""
    script = pathlib.Path(sys.executable).with_name("akool-async")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "akool_async.cli"]


@pytest.fixture(autouse=True)
def _restore_library_logging() -> Iterator[None]:
    """An in-process batch routes the akool_async logger to its output; undo that afterwards."""
    logger = logging.getLogger("akool_async")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


class Ran(NamedTuple):
    """How one CLI run ended."""

    status: int
    out: str
    err: str


def env_for(base_url: str, **extra: str) -> dict[str, str]:
    """The environment of a CLI run against the emulator at ``base_url``."""
    return {
        **os.environ,
        "AKOOL_BASE_URL": base_url,
        "AKOOL_API_KEY": TEST_API_KEY,
        "PYTHONIOENCODING": "utf-8",
        **extra,
    }


async def run_cli(*args: str, env: Mapping[str, str], cwd: pathlib.Path) -> Ran:
    """Run ``akool-async ARGS`` to its end while this process's event loop keeps serving."""
    with anyio.fail_after(CLI_DEADLINE):
        done = await anyio.run_process([*cli(), *args], env=env, cwd=cwd, check=False)
    return Ran(done.returncode, done.stdout.decode(), done.stderr.decode())


async def create_grid(client: httpx.AsyncClient, prompt: str) -> str:
    """Create a prompt job on the served emulator, as another Akool client would; its id."""
    response = await client.post(
        "/api/open/v3/content/image/createbyprompt",
        json={"prompt": prompt, "scale": "1:1"},
        headers={"x-api-key": TEST_API_KEY},
    )
    job_id: str = response.json()["data"]["_id"]
    return job_id


async def until_complete(emulator: AkoolEmulator, job_id: str) -> None:
    """Sleep until the emulator's job has its result and quadrants."""
    await anyio.sleep(max(0.0, emulator.completion_time(job_id) - emulator.now()) + 0.05)


async def served_sha256(client: httpx.AsyncClient, job_id: str, name: str) -> str:
    """The sha256 of an image exactly as the emulator serves it."""
    response = await client.get(f"/_emulator/images/{job_id}/{name}.png")
    assert 200 == response.status_code
    return hashlib.sha256(response.content).hexdigest()


def sha256_of(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- credit ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_credit_prints_the_balance_the_emulator_holds(tmp_path: pathlib.Path) -> None:
    """`credit` prints the balance as text, or one JSON object with --json; one request each."""
    emulator = AkoolEmulator(time_scale=TIME_SCALE, credit=1234.5)
    async with emulator.serve() as url:
        text = await run_cli("credit", env=env_for(url), cwd=tmp_path)
        as_json = await run_cli("credit", "--json", env=env_for(url), cwd=tmp_path)

    assert (0, "credit balance: 1234.5\n", "") == text
    assert (0, "") == (as_json.status, as_json.err)
    assert {"event": "credit", "credit": 1234.5} == json.loads(as_json.out)
    assert collections.Counter({"quota": 2}) == emulator.requests_per_endpoint()
    assert {"api_key"} == {request.auth for request in emulator.requests}


# -- status ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_status_sends_one_request_and_describes_the_job(tmp_path: pathlib.Path) -> None:
    """`status ID` is exactly one infobymodelid; --json carries the job's wire fields as sent."""
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=3)
    async with emulator.serve() as url, httpx.AsyncClient(base_url=url) as client:
        job_id = await create_grid(client, "a quiet harbour at night")
        await until_complete(emulator, job_id)
        before = len(emulator.requests)
        text = await run_cli("status", job_id, *POLL, env=env_for(url), cwd=tmp_path)
        seen_by_text = emulator.requests[before:]
        before = len(emulator.requests)
        as_json = await run_cli("status", job_id, "--json", *POLL, env=env_for(url), cwd=tmp_path)
        seen_by_json = emulator.requests[before:]
        wire = emulator.jobs[job_id].describe(emulator.now(), uid=emulator.uid)

    for seen in (seen_by_text, seen_by_json):
        assert [("infobymodelid", {"image_model_id": job_id}, 1000)] == [
            (request.endpoint, request.query, request.code) for request in seen
        ]
    assert (0, "") == (text.status, text.err)
    image_root = f"{url}/_emulator/images/{job_id}"
    lines = text.out.splitlines()
    assert [
        f"job {job_id}: completed",
        f"  image: {image_root}/grid.png",
        *(f"  quadrant {n}: {image_root}/{n}.png" for n in range(1, 5)),
        "  buttons: U1 U2 U3 U4 V1 V2 V3 V4",
    ] == lines[:-1]
    assert lines[-1].startswith("  results expire: ")

    assert (0, "") == (as_json.status, as_json.err)
    [line] = as_json.out.splitlines()
    answer = json.loads(line)
    assert "status" == answer["event"]
    job = answer["job"]
    for field in ("_id", "image_status", "image", "upscaled_urls", "buttons", "used_buttons"):
        assert field in job
    assert {field: wire[field] for field in job} == job


@pytest.mark.anyio
async def test_status_of_an_unknown_id_exits_1_with_akools_message(tmp_path: pathlib.Path) -> None:
    """An id Akool does not know: exit 1, Akool's 1008 message on stderr, nothing on stdout."""
    emulator = AkoolEmulator(time_scale=TIME_SCALE)
    async with emulator.serve() as url:
        ran = await run_cli("status", UNKNOWN_ID, *POLL, env=env_for(url), cwd=tmp_path)

    assert (1, "", NOT_FOUND) == ran
    assert [("infobymodelid", 1008)] == [
        (request.endpoint, request.code) for request in emulator.requests
    ]


# -- wait --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_wait_returns_when_complete_and_downloads_grid_and_quadrants(
    tmp_path: pathlib.Path,
) -> None:
    """`wait ID --out DIR` on a queued job waits, then saves the grid and 4 quadrants as served."""
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=4)
    async with emulator.serve() as url, httpx.AsyncClient(base_url=url) as client:
        job_id = await create_grid(client, "a kite over dunes")
        ran = await run_cli(
            "wait", job_id, "--out", "results", *POLL, env=env_for(url), cwd=tmp_path
        )
        finished_at = emulator.now()
        image_requests = [request for request in emulator.requests if request.endpoint == "image"]
        served = {
            name: await served_sha256(client, job_id, name) for name in ("grid", "1", "2", "3", "4")
        }

    assert (0, "") == (ran.status, ran.err)
    assert finished_at >= emulator.completion_time(job_id)
    # It asked for the images only once they existed: not one 404.
    assert [200] * 5 == [request.status_code for request in image_requests]
    lines = ran.out.splitlines()
    assert f"job {job_id}: completed" == lines[0]
    saved = [f"results/{job_id}.png", *(f"results/{job_id}-{n}.png" for n in range(1, 5))]
    assert [f"  saved: {path}" for path in saved] == lines[-5:]
    results = tmp_path / "results"
    assert sorted(pathlib.Path(path).name for path in saved) == sorted(
        path.name for path in results.iterdir()
    )
    assert served["grid"] == sha256_of(results / f"{job_id}.png")
    for n in range(1, 5):
        assert served[str(n)] == sha256_of(results / f"{job_id}-{n}.png")


@pytest.mark.anyio
async def test_wait_with_too_small_a_timeout_exits_1(tmp_path: pathlib.Path) -> None:
    """--timeout shorter than the job: exit 1, a message naming the timeout and how to resume."""
    emulator = AkoolEmulator(time_scale=1.0)  # a grid takes ~46 s: it cannot finish in time
    async with emulator.serve() as url, httpx.AsyncClient(base_url=url) as client:
        job_id = await create_grid(client, "a glacier calving")
        ran = await run_cli(
            "wait", job_id, "--timeout", "0.3", "--out", "results", env=env_for(url), cwd=tmp_path
        )
        still_running = emulator.now() < emulator.completion_time(job_id)

    assert still_running
    assert (1, "") == (ran.status, ran.out)
    assert (
        f"akool-async: error: job {job_id} did not finish within 0.3 s; it goes on at Akool: "
        f"run `akool-async wait {job_id}` to wait for it again\n"
    ) == ran.err
    assert not (tmp_path / "results").exists()


# -- upscale and vary --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_upscale_and_vary_press_once_and_refuse_a_second_press(
    tmp_path: pathlib.Path,
) -> None:
    """Each press is one createbybutton with its button, printed id first, file saved; pressing a
    used button again exits 2 with "already pressed" and sends no createbybutton.
    """
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=5)
    async with emulator.serve() as url, httpx.AsyncClient(base_url=url) as client:
        env = env_for(url)
        grid = await create_grid(client, "a lantern in fog")
        # Not waited for: `upscale` waits for the grid itself before pressing.
        upscale = await run_cli(
            "upscale", grid, "2", "--out", "presses", *POLL, env=env, cwd=tmp_path
        )
        vary = await run_cli(
            "vary", grid, "3", "--out", "presses", "--json", *POLL, env=env, cwd=tmp_path
        )
        before = len(emulator.requests)
        again = await run_cli(
            "upscale", grid, "2", "--out", "presses", *POLL, env=env, cwd=tmp_path
        )
        seen_again = emulator.requests[before:]
        children = {job.button: job for job in emulator.jobs.values() if job.parent_id == grid}
        served_upscale = await served_sha256(client, children["U2"].id, "upscale")
        served_variation = {
            name: await served_sha256(client, children["V3"].id, name)
            for name in ("grid", "1", "2", "3", "4")
        }

    presses = tmp_path / "presses"
    upscaled, varied = children["U2"].id, children["V3"].id
    assert collections.Counter({(grid, "U2"): 1, (grid, "V3"): 1}) == emulator.button_presses
    assert 2 == emulator.requests_per_endpoint()["createbybutton"]

    assert (0, "") == (upscale.status, upscale.err)
    lines = upscale.out.splitlines()
    assert f"pressed U2 on {grid}: job {upscaled}" == lines[0]
    assert f"job {upscaled}: completed" == lines[1]
    assert f"  made by U2 on job {grid}" == lines[2]
    assert f"  saved: presses/{upscaled}.png" == lines[-1]
    assert served_upscale == sha256_of(presses / f"{upscaled}.png")

    assert (0, "") == (vary.status, vary.err)
    created, completed = (json.loads(line) for line in vary.out.splitlines())
    assert {"event": "created", "job_id": varied, "parent_id": grid, "button": "V3"} == created
    assert "completed" == completed["event"]
    assert (varied, "V3", grid) == (
        completed["job"]["_id"],
        completed["job"]["op_button"],
        completed["job"]["image_content_model_id"],
    )
    names = [f"{varied}.png", *(f"{varied}-{n}.png" for n in range(1, 5))]
    assert [f"presses/{name}" for name in names] == [file["path"] for file in completed["files"]]
    for name, file, served in zip(
        names, completed["files"], served_variation.values(), strict=True
    ):
        assert served == file["sha256"] == sha256_of(presses / name)

    assert (2, "") == (again.status, again.out)
    assert f"akool-async: error: U2 was already pressed on job {grid}\n" == again.err
    assert {"infobymodelid"} == {request.endpoint for request in seen_again}
    assert sorted([f"{upscaled}.png", *names]) == sorted(path.name for path in presses.iterdir())


# -- generate ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_generate_with_upscale_creates_once_and_writes_its_files(
    tmp_path: pathlib.Path,
) -> None:
    """`generate PROMPT --upscale 1 --out DIR`: one createbyprompt, one U1 press, six files."""
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=6)
    prompt = "a fox at dawn"
    async with emulator.serve() as url, httpx.AsyncClient(base_url=url) as client:
        ran = await run_cli(
            "generate",
            prompt,
            "--upscale",
            "1",
            "--out",
            "gen",
            *POLL,
            env=env_for(url),
            cwd=tmp_path,
        )
        [grid] = [job for job in emulator.jobs.values() if job.parent_id is None]
        [upscaled] = [job for job in emulator.jobs.values() if job.parent_id == grid.id]
        served = {
            name: await served_sha256(client, grid.id, name)
            for name in ("grid", "1", "2", "3", "4")
        }
        served["U1"] = await served_sha256(client, upscaled.id, "upscale")

    assert (0, "") == (ran.status, ran.err)
    counts = emulator.requests_per_endpoint()
    assert (1, 1) == (counts["createbyprompt"], counts["createbybutton"])
    assert 1 == emulator.creates_for(prompt)
    assert collections.Counter({(grid.id, "U1"): 1}) == emulator.button_presses
    assert "1 of 1 row(s) completed, 0 failed, 0 unknown" in ran.out
    listed = ran.out.splitlines()[-6:]
    stem = re.fullmatch(r"gen/(a-fox-at-dawn-\d{8}-\d{6})_grid\.png", listed[0])
    assert stem is not None, listed
    outputs = {"grid": "grid", "q1": "1", "q2": "2", "q3": "3", "q4": "4", "U1": "U1"}
    assert [f"gen/{stem.group(1)}_{suffix}.png" for suffix in outputs] == listed
    # A one-off generate keeps no journal and no manifest: only the images.
    assert sorted(pathlib.Path(path).name for path in listed) == sorted(
        path.name for path in (tmp_path / "gen").iterdir()
    )
    for path, name in zip(listed, outputs.values(), strict=True):
        assert served[name] == sha256_of(tmp_path / path)


# -- credentials -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_wrong_api_key_exits_2_and_is_never_shown_or_written(
    tmp_path: pathlib.Path,
) -> None:
    """A refused --api-key: exit 2 with one line naming the authentication error and what to
    check, the batch stopped at its first request; the key is in no output, log line (-vv) or
    file, and no job was created.
    """
    secret = "wrong-key-Zq7xK2pL9vR4-do-not-print"
    (tmp_path / "prompts.txt").write_text("a red door\na blue door\na green door\n")
    emulator = AkoolEmulator(time_scale=TIME_SCALE)
    async with emulator.serve() as url:
        env = env_for(url)
        credit = await run_cli("credit", "--api-key", secret, "-vv", *POLL, env=env, cwd=tmp_path)
        batch = await run_cli(
            "batch", "prompts.txt", "--out", "out", "--api-key", secret, "-vv", *POLL,
            env=env, cwd=tmp_path,
        )  # fmt: skip

    refused = (
        "akool-async: error: Akool refused the credentials (Akool answered code 1101 from "
        "/api/open/v3/faceswap/quota/info: Invalid authorization or The request token has "
        "expired): check AKOOL_API_KEY or --api-key (or AKOOL_TOKEN, or AKOOL_CLIENT_ID and "
        "AKOOL_CLIENT_SECRET)\n"
    )
    assert (2, "") == (credit.status, credit.out)
    assert credit.err.endswith(refused)
    assert (2, "") == (batch.status, batch.out)
    assert batch.err.endswith(refused)
    assert "Traceback" not in batch.err
    assert {} == emulator.jobs
    assert {1101} == {request.code for request in emulator.requests}
    for ran in (credit, batch):
        assert secret not in ran.out
        assert secret not in ran.err
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert (tmp_path / "out" / ".akool-journal.sqlite3") in written
    for path in written:
        assert secret.encode() not in path.read_bytes(), path


# -- demo --------------------------------------------------------------------------------------


def test_demo_runs_offline_and_a_rerun_has_nothing_to_do(tmp_path: pathlib.Path) -> None:
    """`demo` needs no key and no network: 6 grids and 66 valid PNGs, a manifest of 66 completed
    outputs whose sha256 match the files; a second run changes nothing and exits 0.
    """
    # No key, and a base URL nobody listens on: the demo must not need either.
    env = {**os.environ, "AKOOL_BASE_URL": "http://127.0.0.1:9", "PYTHONIOENCODING": "utf-8"}
    command = [*cli(), "demo", "--out", "demo", "--time-scale", str(TIME_SCALE)]
    first = subprocess.run(  # noqa: S603 - our own console script
        command,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_DEADLINE,
        check=False,
    )
    demo = tmp_path / "demo"
    pngs = sorted(demo.glob("*.png"))
    before = {path.name: sha256_of(path) for path in pngs}
    second = subprocess.run(  # noqa: S603 - our own console script
        command,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_DEADLINE,
        check=False,
    )

    assert (0, "") == (first.returncode, first.stderr)
    assert first.stdout.startswith("Generating 6 prompts against the embedded Akool emulator")
    assert "6 of 6 row(s) completed, 0 failed, 0 unknown" in first.stdout
    assert (
        "Files written this run: 66; creates sent: 18; credits used: 36 (balance 10000 -> 9964)."
        in first.stdout
    )
    assert 66 == len(pngs)
    for path in pngs:
        assert path.read_bytes().startswith(PNG_SIGNATURE), path
    grids = [path for path in pngs if path.name.endswith("_grid.png") and "_V2_" not in path.name]
    assert [f"{row:04d}" for row in range(1, 7)] == [path.name[:4] for path in grids]
    manifest = [json.loads(line) for line in (demo / "manifest.jsonl").read_text().splitlines()]
    assert 66 == len(manifest)
    assert {"completed"} == {line["status"] for line in manifest}
    assert before == {line["file"]: line["sha256"] for line in manifest}

    assert (0, "") == (second.returncode, second.stderr)
    assert "Nothing to do: every row is finished and its files check out." in second.stdout
    assert "Files written this run: 0; creates sent: 0; credits used: 0." in second.stdout
    assert before == {path.name: sha256_of(path) for path in sorted(demo.glob("*.png"))}


# -- emulator ----------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_emulator_subcommand_serves_until_sigterm(tmp_path: pathlib.Path) -> None:
    """`emulator --port 0` prints the AKOOL_* lines, serves the CLI, exits 0 on SIGTERM."""
    process = subprocess.Popen(  # noqa: S603 - our own console script
        [*cli(), "emulator", "--port", "0", "--time-scale", "0.01", "--credit", "77"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(CLI_DEADLINE, process.kill)
    watchdog.start()
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().rstrip("\n") for _ in range(6)]
        match = re.fullmatch(r"Akool emulator listening on (http://127\.0\.0\.1:\d+)", lines[0])
        assert match is not None, lines
        base_url = match.group(1)
        assert [
            f"AKOOL_BASE_URL={base_url}",
            f"AKOOL_API_KEY={TEST_API_KEY}",
            f"AKOOL_CLIENT_ID={TEST_CLIENT_ID}",
            f"AKOOL_CLIENT_SECRET={TEST_CLIENT_SECRET}",
            "Press Ctrl+C to stop.",
        ] == lines[1:]
        credit = subprocess.run(  # noqa: S603 - our own console script
            [*cli(), "credit"],
            cwd=tmp_path,
            env=env_for(base_url),
            capture_output=True,
            text=True,
            timeout=CLI_DEADLINE,
            check=False,
        )
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate()
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert (0, "credit balance: 77\n", "") == (credit.returncode, credit.stdout, credit.stderr)
    assert 0 == process.returncode, stderr
    assert "Traceback" not in stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(base_url)


PARSE_AND_REPORT = """
import sys
from akool_async.cli._args import parse_args

for argv in sys.argv[1:]:
    options = parse_args(argv.split())
    print(options.command, "akool_async.testing" in sys.modules)
"""


def test_only_the_emulator_subcommand_imports_the_emulator_to_parse() -> None:
    """Parsing any other command line, --emulator included, leaves the emulator extra unimported."""
    ran = subprocess.run(  # noqa: S603 - our own interpreter
        [
            sys.executable,
            "-c",
            PARSE_AND_REPORT,
            "batch prompts.txt --out out --upscale all",
            "credit --emulator --json",
            "status job-1",
            "emulator --port 0 --credit 5",
        ],
        capture_output=True,
        text=True,
        timeout=CLI_DEADLINE,
        check=False,
    )

    expected = "batch False\ncredit False\nstatus False\nemulator True\n"
    assert (0, expected, "") == (ran.returncode, ran.stdout, ran.stderr)


def test_emulator_help_lists_the_emulators_options() -> None:
    """`akool-async emulator --help` shows the emulator's own options under its own name."""
    ran = subprocess.run(  # noqa: S603 - our own console script
        [*cli(), "emulator", "--help"],
        capture_output=True,
        text=True,
        timeout=CLI_DEADLINE,
        check=False,
    )

    assert 0 == ran.returncode, ran.stderr
    assert ran.stdout.startswith("usage: akool-async emulator")
    assert all(option in ran.stdout for option in ("--host", "--port", "--time-scale", "--credit"))


# -- in-process main() -------------------------------------------------------------------------


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` as JSON (fails on any line that is not)."""
    return [json.loads(line) for line in text.splitlines()]


def test_main_credit_with_the_emulator(capsys: pytest.CaptureFixture[str]) -> None:
    """main(["credit", "--emulator", "--json"]) prints the embedded emulator's balance."""
    status = main(["credit", "--emulator", "--json"])

    captured = capsys.readouterr()
    assert (0, "") == (status, captured.err)
    assert [{"event": "credit", "credit": 10_000}] == json_lines(captured.out)


def test_main_demo_json(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """main(["demo", "--json"]) prints only JSON lines, ending with a summary of exit_status 0."""
    status = main(["demo", "--out", str(tmp_path), "--json", "--time-scale", str(TIME_SCALE)])

    captured = capsys.readouterr()
    events = json_lines(captured.out)
    assert (0, "") == (status, captured.err)
    assert {"event": "start", "tasks": 18, "todo": 18} == {
        key: events[0][key] for key in ("event", "tasks", "todo")
    }
    summary = events[-1]
    assert ("summary", 0) == (summary["event"], summary["exit_status"])
    assert (6, 6, 66, 18, 36) == (
        summary["rows"],
        summary["completed_rows"],
        summary["files_written"],
        summary["creates_sent"],
        summary["credits_used"],
    )
    kinds = collections.Counter(event["event"] for event in events)
    assert (18, 18, 66) == (kinds["created"], kinds["completed"], kinds["downloaded"])
    assert 66 == len(list(tmp_path.glob("*.png")))


def test_main_generate_with_the_emulator(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """main(["generate", ...]) writes the grid, its quadrants and the U1 upscale, and lists them."""
    out = tmp_path / "gen"
    argv = ["generate", "a fox", "--emulator", "--out", str(out), "--upscale", "1"]
    status = main([*argv, "--time-scale", str(TIME_SCALE)])

    captured = capsys.readouterr()
    assert (0, "") == (status, captured.err)
    listed = [pathlib.Path(line) for line in captured.out.splitlines()[-6:]]
    assert ["grid", "q1", "q2", "q3", "q4", "U1"] == [
        path.stem.rsplit("_", 1)[1] for path in listed
    ]
    assert sorted(listed) == sorted(out.iterdir())
    for path in listed:
        assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_main_status_with_the_emulator_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """main(["status", ID, "--emulator"]): an emulator started for it would know no job, so it
    is refused with exit 2 and a pointer to a served emulator."""
    status = main(["status", UNKNOWN_ID, "--emulator"])

    assert (2, "", FRESH_EMULATOR) == (status, *capsys.readouterr())


def test_main_without_credentials_exits_2_and_says_what_to_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No key anywhere: exit 2, one paragraph naming AKOOL_API_KEY and --emulator, nothing sent."""
    status = main(["credit"])

    captured = capsys.readouterr()
    assert (2, "") == (status, captured.out)
    assert captured.err.startswith(
        "akool-async: error: no Akool credentials found. Set AKOOL_API_KEY"
    )
    assert "--emulator" in captured.err
    assert 1 == captured.err.count("\n")
