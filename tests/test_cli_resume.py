"""The real ``akool-async`` console script, killed with SIGKILL and run again until done.

Each test serves the emulator on a loopback socket from the test process and runs the console
script in a child process against it, so the emulator keeps answering while the child runs and
sees every request the child sends. A small ASGI middleware in front of the emulator (`Gate`)
picks the instant of the kill: it can hold a chosen request and every later one unanswered
(they never reach the emulator), let a download's headers and half its body through, or kill
the child as a request arrives. Every child runs under a watchdog, so a hung run fails its
test instead of hanging the suite.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import pathlib
import random
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, Final

import anyio
import anyio.abc
import anyio.to_thread
import attrs
import pytest

from akool_async._serve import Receive, Scope, Send, serve_asgi
from akool_async.testing import TEST_API_KEY, AkoolEmulator, Faults
from akool_async.testing._plan import draw

# Child processes and sockets need real time: plain loops, not the virtual clocks.
pytestmark = [
    pytest.mark.real_time,
    pytest.mark.skipif(
        sys.platform == "win32", reason="the runs are stopped with SIGKILL, which Windows lacks"
    ),
]

_SCRIPT: Final = pathlib.Path(sys.executable).with_name("akool-async")
COMMAND: Final = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "akool_async.cli"]
TIME_SCALE: Final = 0.01  # a grid takes (4 + 40 + 2) * 0.01 = 0.46 s
# Poll planner priors sized for that scale: without them the first poll comes ~30 s late.
POLLING: Final = ("--expected-duration", "0.46", "--target-lag", "0.1")
FOLLOW_UPS: Final = ("--upscale", "1", "--vary", "2")
CHILD_TIMEOUT: Final = 60.0  # seconds one child may take before its test fails
KILLED: Final = -signal.SIGKILL
JOURNAL: Final = ".akool-journal.sqlite3"
MANIFEST: Final = "manifest.jsonl"


# -- the gate in front of the emulator -----------------------------------------------------------


def endpoint_of(path: str) -> str:
    """The emulator's name for a request path: ``createbyprompt``, ``quota``, ``image``, ..."""
    if path.startswith("/_emulator/images/"):
        return "image"
    name = path.rsplit("/", 1)[-1]
    return "quota" if name == "info" else name


Trigger = Callable[[str, Counter[str]], bool]


class Gate:
    """ASGI middleware: forwards requests to the emulator until an armed trigger trips.

    ``arm(trigger, mode=...)`` starts a run's count of requests per endpoint. When ``trigger``
    returns True for an arriving request, `tripped` is set and, by mode:

    * ``"hold"``: that request and every later one wait unanswered and are never forwarded;
    * ``"partial"``: that request is forwarded, but only its answer's headers and half of its
      body go out, then it waits; every later request waits unanswered, never forwarded;
    * ``"kill"``: ``on_trip`` (the kill) runs, then the request is forwarded as usual.

    `drop` ends the waits (the held requests are answered with nothing) and disarms the gate.
    """

    def __init__(self, app: AkoolEmulator) -> None:
        self.app = app
        self.seen: Counter[str] = Counter()
        self.active = 0  # forwarded requests the emulator is still answering
        self.tripped = anyio.Event()
        self.half_sent = anyio.Event()
        self._trigger: Trigger | None = None
        self._mode = "hold"
        self._on_trip: Callable[[], None] | None = None
        self._holding = False
        self._dropped = anyio.Event()

    def arm(
        self, trigger: Trigger, *, mode: str = "hold", on_trip: Callable[[], None] | None = None
    ) -> None:
        self.seen = Counter()
        self.tripped = anyio.Event()
        self.half_sent = anyio.Event()
        self._dropped = anyio.Event()
        self._trigger = trigger
        self._mode = mode
        self._on_trip = on_trip
        self._holding = False

    def drop(self) -> None:
        self._dropped.set()
        self._trigger = None
        self._holding = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        dropped = self._dropped
        if self._holding:
            await dropped.wait()
            return
        endpoint = endpoint_of(scope["path"])
        self.seen[endpoint] += 1
        if self._trigger is not None and self._trigger(endpoint, self.seen):
            self._trigger = None
            self.tripped.set()
            if self._mode == "hold":
                self._holding = True
                await dropped.wait()
                return
            if self._mode == "partial":
                self._holding = True
                await self.app(scope, receive, self._half(send, dropped))
                return
            if self._on_trip is not None:
                self._on_trip()
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1

    def _half(self, send: Send, dropped: anyio.Event) -> Send:
        async def half_send(message: dict[str, Any]) -> None:
            if message["type"] != "http.response.body":
                await send(message)
                return
            body: bytes = message.get("body", b"")
            await send(
                {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
            )
            self.half_sent.set()
            await dropped.wait()

        return half_send


def nth(endpoint: str | None, count: int) -> Trigger:
    """Trips on the ``count``-th request to ``endpoint`` (any endpoint when None) of the run."""

    def trigger(arrived: str, seen: Counter[str]) -> bool:
        if endpoint is None:
            return sum(seen.values()) == count
        return arrived == endpoint and seen[endpoint] == count

    return trigger


@contextlib.asynccontextmanager
async def served(emulator: AkoolEmulator) -> AsyncGenerator[tuple[str, Gate]]:
    """The emulator behind a gate, on a loopback socket: its base URL and the gate."""
    gate = Gate(emulator)
    async with serve_asgi(gate) as url:
        try:
            yield url, gate
        finally:
            gate.drop()


# -- running the console script ------------------------------------------------------------------


@attrs.frozen
class Run:
    """One child run: its exit status and what it printed."""

    status: int
    stdout: str
    stderr: str

    def events(self) -> list[dict[str, Any]]:
        """The JSON lines of a ``--json`` run."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def summary(self) -> dict[str, Any]:
        """The ``--json`` run's final summary event."""
        [summary] = [event for event in self.events() if event["event"] == "summary"]
        return summary


_runs = itertools.count(1)


async def akool(
    url: str,
    args: Sequence[str],
    *,
    logs: pathlib.Path,
    kill_when: Callable[[], Awaitable[None]] | None = None,
    started: Callable[[anyio.abc.Process], None] | None = None,
) -> Run:
    """Run ``akool-async ARGS`` against ``url``; SIGKILL it once ``kill_when()`` returns.

    Fails the test if the child outlives `CHILD_TIMEOUT`, or ends before ``kill_when()`` does.
    """
    env = {**os.environ, "AKOOL_BASE_URL": url, "AKOOL_API_KEY": TEST_API_KEY}
    number = next(_runs)
    stdout_path, stderr_path = logs / f"run{number}.out", logs / f"run{number}.err"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = await anyio.open_process(
            [*COMMAND, *args], env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
        )
        try:
            if started is not None:
                started(process)
            with anyio.fail_after(CHILD_TIMEOUT):
                if kill_when is not None:
                    ended_first = await _first(kill_when, process)
                    assert not ended_first, (
                        f"the child ended (status {process.returncode}) before the kill point:\n"
                        f"{stdout_path.read_text()}\n{stderr_path.read_text()}"
                    )
                    kill(process)
                status = await process.wait()
        finally:
            if process.returncode is None:
                kill(process)
                with anyio.CancelScope(shield=True):
                    await process.wait()
            with anyio.CancelScope(shield=True):
                await process.aclose()
    return Run(status, stdout_path.read_text(), stderr_path.read_text())


_END_GRACE: Final = 0.5  # seconds a condition gets to finish once the child has ended


def kill(process: anyio.abc.Process) -> None:
    """SIGKILL, unless the process is already gone."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()


async def _first(condition: Callable[[], Awaitable[None]], process: anyio.abc.Process) -> bool:
    """Wait for ``condition()`` or the process's end, whichever comes first; True if the end."""
    ended = False
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            nonlocal ended
            await process.wait()
            # A kill made by the condition itself (the gate's "kill" mode) can be seen here
            # first; give the condition a moment to finish, so only a child that ended on its
            # own counts as ending first.
            await anyio.sleep(_END_GRACE)
            ended = True
            group.cancel_scope.cancel()

        group.start_soon(watch)
        await condition()
        group.cancel_scope.cancel()
    return ended


def batch_args(prompts: pathlib.Path, out: pathlib.Path, *extra: str) -> list[str]:
    """``batch PROMPTS --out OUT`` with the emulator-sized polling options."""
    return ["batch", str(prompts), "--out", str(out), *POLLING, *extra]


# -- what the runs left behind -------------------------------------------------------------------


@attrs.frozen
class Task:
    """A row of the journal's ``tasks`` table."""

    key: str
    kind: str
    row: int
    prompt: str
    button: str | None
    state: str
    job_id: str | None
    parent_key: str | None


def journal(out: pathlib.Path) -> list[Task]:
    """The journal's tasks, read from the file read-only (as a watching script would)."""
    path = out / JOURNAL
    if not path.exists():
        return []
    uri = f"file:{path}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        rows = db.execute(
            "SELECT key, kind, row, prompt, button, state, job_id, parent_key FROM tasks"
        ).fetchall()
    return [Task(*row) for row in rows]


def grids(out: pathlib.Path) -> dict[str, Task]:
    """The journal's grid tasks by prompt."""
    return {task.prompt: task for task in journal(out) if task.kind == "grid"}


def manifest(out: pathlib.Path) -> list[dict[str, Any]]:
    """The manifest's lines."""
    text = (out / MANIFEST).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def part_files(out: pathlib.Path) -> list[str]:
    """Hidden partial files a download (or the manifest writer) left behind."""
    return sorted(path.name for path in out.glob(".*.part"))


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_all_complete(out: pathlib.Path, lines: list[dict[str, Any]]) -> None:
    """Every manifest line is completed, its file exists and has the recorded sha256."""
    assert [] == [line for line in lines if line["status"] != "completed"]
    for line in lines:
        assert sha256(out / line["file"]) == line["sha256"], line["file"]
    assert [] == part_files(out)


async def journal_caught_up(gate: Gate, emulator: AkoolEmulator, out: pathlib.Path) -> None:
    """Wait until the emulator answers nothing and every job it made has its id in the journal.

    Called once the gate holds every new request: past this point a kill loses no job id.
    """
    while True:
        if gate.active == 0:
            known = {task.job_id for task in await anyio.to_thread.run_sync(journal, out)}
            if set(emulator.jobs) <= known:
                return
        await anyio.sleep(0.01)


def write_prompts(path: pathlib.Path, prompts: Sequence[str]) -> pathlib.Path:
    path.write_text("".join(f"{prompt}\n" for prompt in prompts), encoding="utf-8")
    return path


def unknown_listing(lines: list[dict[str, Any]]) -> list[str]:
    """How the summary names the rows whose create may or may not have reached Akool."""
    return [
        f"row {line['row']}: {line['prompt']!r}"
        for line in lines
        if line["in_file"] and line["kind"] == "grid" and line["status"] == "unknown"
    ]


# -- 1: one batch killed at chosen points --------------------------------------------------------


# The CLI child always runs on asyncio; the backend only changes the test's own server. This
# scenario (a hundred rows, six runs) is the slow one, so it runs once, on asyncio; the smaller
# scenarios below run under both backends.
@pytest.mark.anyio
@pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", dict[str, Any]()), id="asyncio")]
)
async def test_killed_before_creates_mid_creates_and_mid_downloads_then_finished(
    tmp_path: pathlib.Path,
) -> None:
    """A 100-row batch killed before its first create, mid-creates and mid-downloads ends with
    every prompt created once, every button pressed once, every file verified; the creates
    whose answer was lost are reported unknown until --resubmit-unknown creates them; a last
    run sends nothing at all."""
    prompts = [f"a lantern-lit harbour, study number {number}" for number in range(1, 101)]
    file = write_prompts(tmp_path / "prompts.txt", prompts)
    out = tmp_path / "out"
    args = batch_args(file, out, *FOLLOW_UPS, "--no-quadrants", "--concurrency", "45")
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=7)
    async with served(emulator) as (url, gate):
        # (a) Killed while its first request (the credit balance, read before any create) is
        # held unanswered: nothing reached Akool, every task is still pending.
        gate.arm(nth(None, 1))
        run = await akool(url, args, logs=tmp_path, kill_when=gate.tripped.wait)
        gate.drop()
        assert KILLED == run.status
        assert [] == emulator.requests
        assert {"pending"} == {task.state for task in journal(out)}
        assert 300 == len(journal(out))

        # (b) The 40th create is held with everything after it; once every job Akool made has
        # its id in the journal, the run is killed. The held creates never reached Akool.
        gate.arm(nth("createbyprompt", 40))

        async def caught_up() -> None:
            await gate.tripped.wait()
            await journal_caught_up(gate, emulator, out)

        run = await akool(url, args, logs=tmp_path, kill_when=caught_up)
        gate.drop()
        assert KILLED == run.status
        assert 39 == emulator.requests_per_endpoint()["createbyprompt"]
        in_flight = {task.prompt for task in grids(out).values() if task.state == "intent"}
        assert 1 <= len(in_flight) <= 6  # the 40th to 45th rows' creates, those already sent
        assert {prompt for prompt in prompts if emulator.creates_for(prompt)} == {
            task.prompt for task in grids(out).values() if task.job_id is not None
        }

        # (c) Killed as the 45th image of the next run is half downloaded (all later requests
        # held): a partial file is left behind.
        gate.arm(nth("image", 45), mode="partial")

        async def mid_download() -> None:
            await gate.half_sent.wait()
            # The child writes it: a file to poll, not an event to await.
            while not [name for name in part_files(out) if ".png." in name]:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            await journal_caught_up(gate, emulator, out)

        run = await akool(url, args, logs=tmp_path, kill_when=mid_download)
        gate.drop()
        assert KILLED == run.status
        assert [] != part_files(out)

        # A plain re-run finishes everything it may: the creates whose answer was lost stay
        # unknown, named in the summary, and are not sent again.
        run = await akool(url, args, logs=tmp_path)
        lines = manifest(out)
        states = {prompt: task.state for prompt, task in grids(out).items()}
        unknown = [prompt for prompt in prompts if states[prompt] == "unknown"]
        assert 1 == run.status, run.stdout + run.stderr
        assert in_flight <= set(unknown)
        assert [0] * len(unknown) == [emulator.creates_for(prompt) for prompt in unknown]
        assert len(prompts) - len(unknown) == emulator.requests_per_endpoint()["createbyprompt"]
        listing = unknown_listing(lines)
        assert len(unknown) == len(listing)
        assert (
            f"{len(unknown)} create(s) may or may not have reached Akool (no job id was recorded)"
            in run.stdout.replace("\n", " ")
        )
        for item in listing[:20]:
            assert f"  {item}\n" in run.stdout
        for line in lines:
            row_unknown = line["prompt"] in unknown
            assert ("unknown" if row_unknown else "completed") == line["status"], line
        assert [] == part_files(out)

        # --resubmit-unknown creates them; then every prompt was created exactly once.
        run = await akool(url, [*args, "--resubmit-unknown"], logs=tmp_path)
        assert 0 == run.status, run.stdout + run.stderr
        assert [1] * len(prompts) == [emulator.creates_for(prompt) for prompt in prompts]

        # A run with nothing to do sends nothing: no create, no status read, no download.
        sent = len(emulator.requests)
        run = await akool(url, args, logs=tmp_path)
        assert 0 == run.status, run.stdout + run.stderr
        assert sent == len(emulator.requests)
        assert "Nothing to do" in run.stdout

    lines = manifest(out)
    assert 300 == len(lines)
    assert_all_complete(out, lines)
    grid_ids = {line["job_id"] for line in lines if line["kind"] == "grid"}
    assert 100 == len(grid_ids)
    assert Counter({(grid, button): 1 for grid in grid_ids for button in ("U1", "V2")}) == (
        emulator.button_presses
    )
    assert 300 == len(emulator.jobs)


# -- 2: a kill at a random instant ---------------------------------------------------------------


@pytest.mark.anyio
async def test_killed_at_a_random_request_never_creates_twice(
    tmp_path: pathlib.Path, anyio_backend_name: str
) -> None:
    """Killed as a randomly chosen request arrives (the request still reaches Akool), plain
    re-runs create nothing twice, know only ids Akool gave, and report as unknown every create
    whose answer was lost; --resubmit-unknown then creates what has no id."""
    rng = random.Random(f"akool-async resume {anyio_backend_name}")
    # A full run of these 24 rows sends at least 218 requests: 72 creates, 72 downloads, two
    # balance reads and a poll or more per job. The kill lands well inside it.
    count = rng.randint(1, 150)
    prompts = [f"a paper crane over a quiet city, take {number}" for number in range(1, 25)]
    file = write_prompts(tmp_path / "prompts.txt", prompts)
    out = tmp_path / "out"
    args = batch_args(file, out, *FOLLOW_UPS, "--no-quadrants", "--json")
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=11)
    async with served(emulator) as (url, gate):
        child: list[anyio.abc.Process] = []
        gate.arm(nth(None, count), mode="kill", on_trip=lambda: kill(child[0]))
        run = await akool(
            url, args, logs=tmp_path, started=child.append, kill_when=gate.tripped.wait
        )
        gate.drop()
        assert KILLED == run.status, f"request {count}"

        run = await akool(url, args, logs=tmp_path)
        lines = manifest(out)
        tasks = journal(out)
        assert [] == [prompt for prompt in prompts if emulator.creates_for(prompt) > 1]
        assert [] == [press for press, times in emulator.button_presses.items() if times > 1]
        for task in tasks:
            if task.job_id is not None:
                assert task.job_id in emulator.jobs, task
                job = emulator.jobs[task.job_id]
                assert (task.prompt, task.button) == (job.prompt, job.button)
        grid_lines = {line["prompt"]: line for line in lines if line["kind"] == "grid"}
        made = {job.prompt for job in emulator.jobs.values() if job.button is None}
        for prompt in made - {task.prompt for task in tasks if task.job_id and not task.button}:
            assert ("unknown", None) == (
                grid_lines[prompt]["status"],
                grid_lines[prompt]["job_id"],
            )
        lost_presses: set[tuple[str, str]] = set()
        for line in lines:
            grid = grid_lines[line["prompt"]]
            if line["job_id"] is not None:
                assert "completed" == line["status"], line
            elif grid["job_id"] is None:
                assert "unknown" == line["status"], line
            else:  # a press whose answer was lost: it reached Akool, so it is not pressed again
                assert "unknown" == line["status"], line
                assert 1 == emulator.button_presses[grid["job_id"], line["button"]]
                lost_presses.add((line["prompt"], line["button"]))
        unknown_grids = {line["prompt"] for line in grid_lines.values() if line["job_id"] is None}
        assert (1 if unknown_grids or lost_presses else 0) == run.status, run.stderr
        assert unknown_listing(lines) == run.summary()["unknown"]

        # Another plain run changes nothing: it sends no create and the rows stay as they are.
        creates = Counter(emulator.requests_per_endpoint())
        run = await akool(url, args, logs=tmp_path)
        assert (1 if unknown_grids or lost_presses else 0) == run.status, run.stderr
        assert 0 == run.summary()["creates_sent"]
        for endpoint in ("createbyprompt", "createbybutton"):
            assert creates[endpoint] == emulator.requests_per_endpoint()[endpoint]
        assert [line["status"] for line in lines] == [line["status"] for line in manifest(out)]

        created = {prompt: emulator.creates_for(prompt) for prompt in prompts}
        run = await akool(url, [*args, "--resubmit-unknown"], logs=tmp_path)
        assert (1 if lost_presses else 0) == run.status, run.stderr
        assert {prompt: created[prompt] + (prompt in unknown_grids) for prompt in prompts} == {
            prompt: emulator.creates_for(prompt) for prompt in prompts
        }
        lines = manifest(out)
        for line in lines:
            lost = (line["prompt"], line["button"]) in lost_presses
            assert ("unknown" if lost else "completed") == line["status"], line
        assert_all_complete(out, [line for line in lines if line["status"] == "completed"])


# -- 3: faults -----------------------------------------------------------------------------------

FAULTS: Final = Faults(
    server_error=0.04,
    bad_gateway=0.02,
    unavailable=0.02,
    # Few throttles: each one delays the request it refused; only a cluster slows the pace.
    too_many_requests=0.005,
    too_many_requests_retry_after=0.005,
    rate_limit_code=0.005,
    slow=0.04,
    slow_delay=0.3,
    drop_before_commit=0.04,
    drop_after_commit=0.05,
    truncated=0.02,
    generate_error=0.02,
    job_failure_rate=0.1,
)
# Fault draws depend on the seed, the endpoint, the prompt (or job id) and the attempt. With this
# seed the rows' first creates meet a refusal (1108), an answer cut short after the job was made
# and a connection dropped after it; the third balance read (the re-run's first) is throttled.
# Polls draw their faults by job id, so which ones fail depends on the order of the creates.
FAULT_SEED: Final = 11
CERTAIN_FAULTS: Final = frozenset(
    {"generate_error", "truncated", "drop_after_commit", "too_many_requests_retry_after"}
)


@pytest.mark.anyio
async def test_faults_leave_one_outcome_per_row_and_nothing_created_twice(
    tmp_path: pathlib.Path,
) -> None:
    """Under server errors, throttles, slow answers, dropped connections and failed jobs, each
    row ends completed, failed or unknown with one line for its grid; failed jobs and refused
    creates are "failed", lost answers "unknown"; nothing is created twice, not even by a
    re-run."""
    seed = FAULT_SEED
    # Rows that always fail, chosen so their first create meets no fault: they get a job id.
    marked = [
        prompt
        for prompt in (f"[fail] a melted clock, attempt {number}" for number in range(50))
        if FAULTS.pick("createbyprompt", _draw(seed, prompt)) is None
    ][:3]
    assert 3 == len(marked)
    prompts = [f"a greenhouse in winter, view {number}" for number in range(1, 10)]
    prompts[2:2], prompts[6:6], prompts[10:10] = marked[:1], marked[1:2], marked[2:]
    file = write_prompts(tmp_path / "prompts.txt", prompts)
    out = tmp_path / "out"
    args = batch_args(file, out, *FOLLOW_UPS, "--json")
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=seed, faults=FAULTS)
    async with served(emulator) as (url, _):
        run = await akool(url, args, logs=tmp_path)
        assert 1 == run.status, run.stderr
        lines = manifest(out)
        assert {"completed", "failed", "unknown"} >= {line["status"] for line in lines}
        primaries = Counter(
            line["prompt"] for line in lines if line["kind"] == "grid" and line["output"] == "grid"
        )
        assert dict.fromkeys(prompts, 1) == primaries
        assert [] == [prompt for prompt in prompts if emulator.creates_for(prompt) > 1]
        assert [] == [press for press, times in emulator.button_presses.items() if times > 1]
        grid_lines = {
            line["prompt"]: line
            for line in lines
            if line["kind"] == "grid" and line["output"] == "grid"
        }
        for prompt in marked:
            assert "failed" == grid_lines[prompt]["status"]
            assert emulator.jobs[grid_lines[prompt]["job_id"]].fails
        for line in lines:
            if line["job_id"] is not None:
                job = emulator.jobs[line["job_id"]]
                assert (line["prompt"], line["button"]) == (job.prompt, job.button)
                assert ("failed" if job.fails else "completed") == line["status"], line
            elif line["status"] == "failed" and line["kind"] == "grid":
                assert 0 == emulator.creates_for(line["prompt"]), line  # refused: not created
        assert unknown_listing(lines) == run.summary()["unknown"]

        # A re-run never creates again what has an id or may have reached Akool.
        settled = {
            task.prompt: emulator.creates_for(task.prompt)
            for task in journal(out)
            if task.kind == "grid" and (task.job_id is not None or task.state == "unknown")
        }
        pressed = Counter(emulator.button_presses)
        run = await akool(url, args, logs=tmp_path)
        assert 1 == run.status, run.stderr
        assert settled == {prompt: emulator.creates_for(prompt) for prompt in settled}
        assert [] == [prompt for prompt in prompts if emulator.creates_for(prompt) > 1]
        assert [] == [press for press, times in emulator.button_presses.items() if times > 1]
        assert pressed == {press: emulator.button_presses[press] for press in pressed}
        assert CERTAIN_FAULTS <= {request.fault for request in emulator.requests}
        assert [] == part_files(out)


def _draw(seed: int, prompt: str) -> float:
    """The emulator's fault draw for the first create of ``prompt``."""
    return draw(seed, "fault", "createbyprompt", prompt, 1)


# -- 4: the prompt file changes between runs -----------------------------------------------------


@pytest.mark.anyio
async def test_rows_added_and_removed_between_runs(tmp_path: pathlib.Path) -> None:
    """New rows run; removed rows are left alone and stay in the manifest with in_file false;
    kept rows are not created again although their row numbers changed."""
    old = [f"a quiet library at night, shelf {number}" for number in range(1, 7)]
    new = [f"a windmill by the sea, sketch {number}" for number in range(1, 4)]
    removed = [old[1], old[4]]
    file = write_prompts(tmp_path / "prompts.txt", old)
    out = tmp_path / "out"
    args = batch_args(file, out, "--upscale", "1")
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=3)
    async with served(emulator) as (url, _):
        run = await akool(url, args, logs=tmp_path)
        assert 0 == run.status, run.stdout + run.stderr
        first = {(line["prompt"], line["output"], line["button"]): line for line in manifest(out)}
        known_ids = set(emulator.jobs)
        sent = len(emulator.requests)

        kept = [prompt for prompt in old if prompt not in removed]
        write_prompts(file, [new[0], new[1], *kept[:2], new[2], *kept[2:]])  # rows shift
        run = await akool(url, args, logs=tmp_path)
        assert 0 == run.status, run.stdout + run.stderr
        assert "7 row(s) in the file: 3 new, 4 known from earlier runs" in run.stdout
        assert "4 task(s) of 2 earlier row(s) are no longer asked for: left alone" in run.stdout
        assert "4 task(s) from earlier runs are no longer asked for" in run.stdout
        assert dict.fromkeys(old + new, 1) == {
            prompt: emulator.creates_for(prompt) for prompt in old + new
        }
        # Nothing of the earlier rows' jobs was asked for: no status, no download, no press.
        touched = [request for request in emulator.requests[sent:] if _job_of(request) in known_ids]
        assert [] == touched

        lines = manifest(out)
        now = [new[0], new[1], *kept[:2], new[2], *kept[2:]]
        assert {prompt: row for row, prompt in enumerate(now, start=1)} == {
            line["prompt"]: line["row"] for line in lines if line["in_file"]
        }
        for line in lines:
            assert "completed" == line["status"]
            assert (line["prompt"] not in removed) == line["in_file"]
            if line["prompt"] in old:  # kept or removed: the same job and file as before
                before = first[line["prompt"], line["output"], line["button"]]
                assert (before["job_id"], before["file"], before["sha256"]) == (
                    line["job_id"],
                    line["file"],
                    line["sha256"],
                )
        assert_all_complete(out, lines)

        sent = len(emulator.requests)
        run = await akool(url, args, logs=tmp_path)
        assert 0 == run.status
        assert sent == len(emulator.requests)


def _job_of(request: Any) -> str | None:
    """The job id a recorded request is about, if any."""
    if request.endpoint == "image":
        return str(request.path).removeprefix("/_emulator/images/").partition("/")[0]
    if request.endpoint == "infobymodelid":
        return request.query.get("image_model_id")
    if request.endpoint == "createbybutton":
        return request.body.get("_id")
    return None


# -- 5: files deleted or corrupted between runs --------------------------------------------------


@pytest.mark.anyio
async def test_deleted_and_corrupted_files_are_downloaded_again(tmp_path: pathlib.Path) -> None:
    """A deleted file and a corrupted one (same size, other bytes) are fetched again, and only
    they: two image GETs, no create, no status read."""
    prompts = [f"a red kite above the dunes, frame {number}" for number in range(1, 5)]
    file = write_prompts(tmp_path / "prompts.txt", prompts)
    out = tmp_path / "out"
    args = batch_args(file, out, "--upscale", "1")
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=4)
    async with served(emulator) as (url, _):
        run = await akool(url, args, logs=tmp_path)
        assert 0 == run.status, run.stdout + run.stderr
        lines = manifest(out)
        [deleted] = [line for line in lines if line["row"] == 2 and line["output"] == "q3"]
        [corrupted] = [line for line in lines if line["row"] == 3 and line["kind"] == "upscale"]
        (out / deleted["file"]).unlink()
        data = bytearray((out / corrupted["file"]).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (out / corrupted["file"]).write_bytes(bytes(data))
        sent = len(emulator.requests)

        run = await akool(url, args, logs=tmp_path)
        assert 0 == run.status, run.stdout + run.stderr
        assert f"{deleted['file']} is missing: downloading it again" in run.stdout
        assert (
            f"{corrupted['file']} does not match its recorded sha256: downloading it again"
            in run.stdout
        )
        again = emulator.requests[sent:]
        assert sorted(
            [
                f"/_emulator/images/{deleted['job_id']}/3.png",
                f"/_emulator/images/{corrupted['job_id']}/upscale.png",
            ]
        ) == sorted(request.path for request in again if request.endpoint == "image")
        assert {"image": 2} == {
            endpoint: count
            for endpoint, count in Counter(request.endpoint for request in again).items()
            if endpoint != "quota"
        }
        assert lines == manifest(out)
        assert_all_complete(out, lines)
