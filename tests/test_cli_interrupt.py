"""Ctrl+C and SIGTERM during ``akool-async batch``, and closing the books on unknown creates.

As in tests/test_cli_resume.py (whose gate and helpers these tests use), the emulator is served
on loopback from the test process and the console script runs in a child process against it:
the emulator's own record (every job it made, every button pressed) is what each test checks
the journal against. The gate picks the instant of the signal: as a chosen request arrives,
the child gets SIGINT (or SIGTERM) and the request then goes on to the emulator, so a create is
in flight when the signal lands.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pathlib
import random
import re
import select
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Final

import anyio
import anyio.abc
import attrs
import pytest

from akool_async.cli import main
from akool_async.cli._interrupt import Interruption
from akool_async.testing import TEST_API_KEY, AkoolEmulator, Faults
from test_cli_resume import (
    COMMAND,
    POLLING,
    TIME_SCALE,
    Gate,
    Task,
    Trigger,
    assert_all_complete,
    journal,
    manifest,
    nth,
    served,
    write_prompts,
)

pytestmark = [
    pytest.mark.real_time,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and pseudo-terminals"),
]

CHILD_TIMEOUT: Final = 60.0  # seconds one child may take before its test fails
INTERRUPTED: Final = 130
NOTICE: Final = re.compile(
    r"akool-async: interrupted: (?:waiting up to 10 s for (\d+) create\(s\) already sent|"
    r"stopping \(no create is in flight\)); press Ctrl\+C again to stop now\n"
)
ALL_BUTTONS: Final = ("--upscale", "all", "--vary", "all")
TASKS_PER_ROW: Final = 9  # the grid and its eight buttons


@attrs.frozen
class Stopped:
    """A child run that was sent a signal: how it ended, and how long it took to stop."""

    status: int
    stdout: str
    stderr: str
    stop_seconds: float | None

    def awaited(self) -> int:
        """How many creates already sent the child said it waited for (0 if it said none)."""
        [match] = NOTICE.finditer(self.stderr)
        return int(match.group(1) or 0)


_children = itertools.count(1)


async def interrupted(
    url: str,
    args: Sequence[str],
    *,
    gate: Gate,
    trigger: Trigger,
    logs: pathlib.Path,
    signum: signal.Signals = signal.SIGINT,
    mode: str = "kill",
    again_after: float | None = None,
    then_drop: bool = False,
) -> Stopped:
    """Run ``akool-async ARGS``; send it ``signum`` as the request ``trigger`` picks arrives.

    With ``mode="kill"`` the request then goes on to the emulator; with ``"hold"`` it and every
    later one are held unanswered (the signal follows shortly); with ``"partial"`` it is done
    by the emulator and half its answer sent (the signal follows that). With ``again_after``, a
    second signal follows that many seconds after the child said it was interrupted, and the
    stop is timed from that one. With ``then_drop``, the gate lets go of what it holds (ending
    a half-sent answer there) once the child said it was interrupted.
    """
    env = {**os.environ, "AKOOL_BASE_URL": url, "AKOOL_API_KEY": TEST_API_KEY}
    number = next(_children)
    out_path, err_path = logs / f"child{number}.out", logs / f"child{number}.err"
    signalled: list[float] = []
    with out_path.open("wb") as stdout, err_path.open("wb") as stderr:
        process = await anyio.open_process(
            [*COMMAND, *args], env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
        )

        def send_signal() -> None:
            signalled.append(anyio.current_time())
            with contextlib.suppress(ProcessLookupError):  # a second one after it ended
                process.send_signal(signum)

        gate.arm(trigger, mode=mode, on_trip=send_signal if mode == "kill" else None)
        try:
            with anyio.fail_after(CHILD_TIMEOUT):
                if mode == "hold":
                    await gate.tripped.wait()
                    await anyio.sleep(0.2)  # the held request has gone out of the child
                    send_signal()
                elif mode == "partial":
                    await gate.half_sent.wait()
                    send_signal()
                if again_after is not None or then_drop:
                    while "interrupted:" not in err_path.read_text():  # noqa: ASYNC110 - a file
                        await anyio.sleep(0.02)
                if then_drop:
                    gate.drop()
                if again_after is not None:
                    await anyio.sleep(again_after)
                    send_signal()
                status = await process.wait()
            ended = anyio.current_time()
        finally:
            if process.returncode is None:
                process.kill()
            with anyio.CancelScope(shield=True):
                await process.aclose()
    return Stopped(
        status,
        out_path.read_text(),
        err_path.read_text(),
        ended - signalled[-1] if signalled else None,
    )


async def finished(url: str, args: Sequence[str]) -> tuple[int, str, str]:
    """Run ``akool-async ARGS`` to its end: status, stdout, stderr."""
    env = {**os.environ, "AKOOL_BASE_URL": url, "AKOOL_API_KEY": TEST_API_KEY}
    with anyio.fail_after(CHILD_TIMEOUT):
        done = await anyio.run_process([*COMMAND, *args], env=env, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def assert_nothing_lost(emulator: AkoolEmulator, tasks: list[Task], context: str) -> None:
    """Every job the emulator made has its id in the journal; no create was sent twice; no
    create is left between its intent and its answer."""
    known = {task.job_id for task in tasks if task.job_id is not None}
    assert set() == set(emulator.jobs) - known, context
    assert [] == [task for task in tasks if task.state == "intent"], context
    prompts = Counter(job.prompt for job in emulator.jobs.values() if job.button is None)
    assert [] == [prompt for prompt, made in prompts.items() if made > 1], context
    assert [] == [press for press, times in emulator.button_presses.items() if times > 1], context


def batch_args(prompts: pathlib.Path, out: pathlib.Path, *extra: str) -> list[str]:
    return ["batch", str(prompts), "--out", str(out), *POLLING, "--no-quadrants", *extra]


# -- 1: twenty interruptions at random moments ---------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", dict[str, Any]()), id="asyncio")]
)
async def test_twenty_interruptions_lose_no_create_or_press(tmp_path: pathlib.Path) -> None:
    """Twenty SIGINTs (every fifth a SIGTERM) at random moments of a batch that presses all
    eight buttons: each run exits 130 well inside the grace, having recorded the job id of every
    create and press it sent (the emulator's own record says which it made), nothing sent twice,
    no intent left; a last plain run completes everything with exit 0."""
    rng = random.Random("akool-async interruptions")
    prompts = [f"a glass lighthouse at dawn, study {number}" for number in range(1, 4)]
    file = write_prompts(tmp_path / "prompts.txt", prompts)
    out = tmp_path / "out"
    args = batch_args(file, out, *ALL_BUTTONS, "--concurrency", "4")
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=21)
    stops: list[float] = []
    awaited: list[int] = []
    async with served(emulator) as (url, gate):
        for round_number in range(1, 21):
            # A new row each round: every run has a grid and eight presses to send at least.
            prompts.append(f"a paper boat on a canal, round {round_number}")
            write_prompts(file, prompts)
            # In turn: as a press goes out, as the new row's grid goes out, at any request.
            on_press, on_grid = round_number % 3 == 0, round_number % 3 == 1
            if on_press:
                trigger = nth("createbybutton", rng.randint(1, 6))
            elif on_grid:
                trigger = nth("createbyprompt", 1)
            else:
                trigger = nth(None, rng.randint(1, 25))
            signum = signal.SIGTERM if round_number % 5 == 0 else signal.SIGINT
            run = await interrupted(
                url, args, gate=gate, trigger=trigger, logs=tmp_path, signum=signum
            )
            gate.drop()
            context = f"round {round_number}:\n{run.stdout}\n{run.stderr}"
            assert INTERRUPTED == run.status, context
            assert "Traceback" not in run.stderr, context
            awaited.append(run.awaited())
            if on_press or on_grid:  # the create that tripped the gate went out: waited for
                assert run.awaited() >= 1, context
            assert run.stop_seconds is not None
            stops.append(run.stop_seconds)
            assert_nothing_lost(emulator, journal(out), context)

        status, stdout, stderr = await finished(url, args)

    assert 0 == status, stdout + stderr
    lines = manifest(out)
    assert len(prompts) * TASKS_PER_ROW == len(lines)
    assert_all_complete(out, lines)
    assert [1] * len(prompts) == [emulator.creates_for(prompt) for prompt in prompts]
    assert {1} == set(emulator.button_presses.values())
    assert len(prompts) * 8 == len(emulator.button_presses)
    assert_nothing_lost(emulator, journal(out), stdout)
    assert max(stops) < 5.0, stops  # well inside the 10 s grace (measured: under 0.5 s)
    assert sum(awaited) > 0, awaited
    sys.stderr.write(
        f"stop after the signal: max {max(stops):.2f} s, median "
        f"{sorted(stops)[len(stops) // 2]:.2f} s; creates waited for: {awaited}\n"
    )


# -- 2: a second Ctrl+C, and the grace's end ------------------------------------------------------


@pytest.mark.anyio
async def test_a_second_signal_stops_at_once_and_the_unanswered_press_is_kept(
    tmp_path: pathlib.Path,
) -> None:
    """A press held unanswered: the first SIGINT waits for it, a second one stops the run at
    once (exit 130, in well under the grace); the press stays an intent, which the next run takes
    up (Akool never saw it, so it presses it) and completes."""
    prompts = ["a fox in a snowy forest"]
    file = write_prompts(tmp_path / "prompts.txt", prompts)
    out = tmp_path / "out"
    args = batch_args(file, out, "--upscale", "2")
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=5)
    async with served(emulator) as (url, gate):
        run = await interrupted(
            url,
            args,
            gate=gate,
            trigger=nth("createbybutton", 1),
            logs=tmp_path,
            mode="hold",
            again_after=0.3,
        )
        gate.drop()
        assert INTERRUPTED == run.status, run.stderr
        assert 1 == run.awaited(), run.stderr
        assert "akool-async: error: stopped at once by a second signal." in run.stderr
        assert "Traceback" not in run.stderr
        assert run.stop_seconds is not None
        assert run.stop_seconds < 1.5
        [press] = [task for task in journal(out) if task.button == "U2"]
        assert ("intent", None) == (press.state, press.job_id)
        assert {} == emulator.button_presses

        status, stdout, stderr = await finished(url, args)

    assert 0 == status, stdout + stderr
    assert "U2 was never pressed" in stdout
    assert 1 == sum(emulator.button_presses.values())
    assert_all_complete(out, manifest(out))


@pytest.mark.anyio
async def test_a_second_signal_while_the_run_ends_leaves_exit_status_130(
    tmp_path: pathlib.Path,
) -> None:
    """SIGTERM, then another a moment later, at several moments around the run's end: whether
    it lands in the grace (a stop at once) or while the process shuts down (ignored), the
    status is 130, never death by the signal (it was -15 for the one at 0.05 s)."""
    file = write_prompts(tmp_path / "prompts.txt", ["a fox in a snowy forest"])
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=5)
    statuses: list[int] = []
    async with served(emulator) as (url, gate):
        for number, delay in enumerate((0.05, 0.15, 0.25, 0.35, 0.5)):
            out = tmp_path / f"out{number}"
            run = await interrupted(
                url,
                batch_args(file, out, "--no-quadrants"),
                gate=gate,
                trigger=nth("infobymodelid", 1),
                logs=tmp_path,
                signum=signal.SIGTERM,
                again_after=delay,
            )
            gate.drop()
            statuses.append(run.status)

    assert [INTERRUPTED] * 5 == statuses


def test_the_grace_ends_with_a_stop_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    """After the first SIGINT, a create that never answers holds the run only for the grace:
    then the event loop is left with KeyboardInterrupt, shields and all."""
    interruption = Interruption(grace=0.2)
    stopped_after: list[float] = []

    async def command() -> None:
        async with anyio.create_task_group() as group:
            await group.start(interruption.watch)
            with interruption.graceful(lambda: 1):
                signal.raise_signal(signal.SIGINT)
                started = anyio.current_time()
                try:
                    with anyio.CancelScope(shield=True):
                        await anyio.sleep(30)  # a sent create that never answers
                finally:
                    stopped_after.append(anyio.current_time() - started)

    with pytest.raises(KeyboardInterrupt):
        anyio.run(command, backend="asyncio")

    assert interruption.requested
    assert "stopped at once: the 0.2 s grace after Ctrl+C ended" == interruption.stopped_now
    assert (
        "akool-async: interrupted: waiting up to 0.2 s for 1 create(s) already sent; press "
        "Ctrl+C again to stop now\n"
    ) == capsys.readouterr().err
    assert stopped_after[0] < 2.0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_outside_the_main_thread_signals_are_left_alone() -> None:
    """Where signals cannot be caught (a thread other than the main one), watching them starts
    and does nothing: Ctrl+C stays a plain KeyboardInterrupt there."""
    interruption = Interruption()

    async def command() -> bool:
        async with anyio.create_task_group() as group:
            await group.start(interruption.watch)
            group.cancel_scope.cancel()
        return interruption.requested

    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(anyio.run(command)))
    thread.start()
    thread.join(timeout=10)
    assert [False] == result


# -- 3: single-job commands ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_interrupted_upscale_tells_the_job_its_press_made(tmp_path: pathlib.Path) -> None:
    """SIGINT as `upscale` presses, whose answer comes late: the press was sent, so its answer
    is awaited, and the run (exit 130) names the job it made, to fetch with `wait`."""
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=8)
    async with served(emulator) as (url, gate):
        status, _, stderr = await finished(
            url, ["generate", "a kite", "--no-quadrants", "--out", str(tmp_path), *POLLING]
        )
        assert 0 == status, stderr
        [grid] = emulator.jobs
        # Every answer comes half a second late: the signal lands while the press is answered.
        emulator.faults = Faults(slow=1.0, slow_delay=0.5)
        run = await interrupted(
            url,
            ["upscale", grid, "3", "--out", str(tmp_path), *POLLING],
            gate=gate,
            trigger=nth("createbybutton", 1),
            logs=tmp_path,
        )
        gate.drop()

    [(_, child)] = [(job.button, job_id) for job_id, job in emulator.jobs.items() if job.button]
    assert INTERRUPTED == run.status, run.stderr
    assert (
        f"akool-async: pressed U3 on {grid}: job {child} (its answer came after the "
        f"interruption); run `akool-async wait {child} --out {tmp_path}` to fetch it\n"
    ) in run.stderr
    assert run.stderr.endswith("akool-async: interrupted\n")


@pytest.mark.anyio
async def test_an_upscale_interrupted_while_it_waits_says_how_to_go_on(
    tmp_path: pathlib.Path,
) -> None:
    """SIGINT while `upscale` waits for the job its press made: exit 130 and one line naming
    the job and the `wait` command that goes on, not a bare 'interrupted'."""
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=9)
    async with served(emulator) as (url, gate):
        status, _, stderr = await finished(
            url, ["generate", "a kite", "--no-quadrants", "--out", str(tmp_path), *POLLING]
        )
        assert 0 == status, stderr
        [grid] = emulator.jobs
        run = await interrupted(
            url,
            ["upscale", grid, "2", "--out", str(tmp_path), *POLLING],
            gate=gate,
            trigger=lambda arrived, seen: "createbybutton" in seen and arrived == "infobymodelid",
            logs=tmp_path,
        )
        gate.drop()

    [child] = [job_id for job_id, job in emulator.jobs.items() if job.button]
    assert INTERRUPTED == run.status, run.stderr
    assert run.stderr.endswith(
        f"akool-async: interrupted: job {child} goes on at Akool; run `akool-async wait {child} "
        f"--out {tmp_path}` to go on\n"
    ), run.stderr


@pytest.mark.anyio
async def test_a_generate_interrupted_while_it_waits_names_its_job(tmp_path: pathlib.Path) -> None:
    """SIGINT while `generate` waits for the grid it created: running it again would create a
    new one, so the run names the job and the `wait` command that goes on."""
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=9)
    async with served(emulator) as (url, gate):
        run = await interrupted(
            url,
            ["generate", "a kite", "--no-quadrants", "--out", str(tmp_path), *POLLING],
            gate=gate,
            trigger=lambda arrived, seen: "createbyprompt" in seen and arrived == "infobymodelid",
            logs=tmp_path,
        )
        gate.drop()

    [grid] = emulator.jobs
    assert INTERRUPTED == run.status, run.stderr
    assert run.stderr.endswith(
        f"akool-async: job {grid} goes on at Akool; run `akool-async wait {grid} --out "
        f"{tmp_path}` to go on\n"
    ), run.stderr


@pytest.mark.anyio
async def test_an_interrupted_press_whose_answer_breaks_is_told_as_unknown(
    tmp_path: pathlib.Path,
) -> None:
    """SIGINT while `vary`'s press is half answered, then the answer breaks off: the press may
    or may not have reached Akool, and the run (exit 130) says so and how to find out."""
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=9)
    async with served(emulator) as (url, gate):
        status, _, stderr = await finished(
            url, ["generate", "a kite", "--no-quadrants", "--out", str(tmp_path), *POLLING]
        )
        assert 0 == status, stderr
        [grid] = emulator.jobs
        run = await interrupted(
            url,
            ["vary", grid, "4", "--out", str(tmp_path), *POLLING],
            gate=gate,
            trigger=nth("createbybutton", 1),
            logs=tmp_path,
            mode="partial",
            then_drop=True,
        )

    assert INTERRUPTED == run.status, run.stderr
    assert (
        f"akool-async: the press of V4 on {grid} may or may not have reached Akool ("
    ) in run.stderr
    assert f"; `akool-async status {grid}` shows whether it is used\n" in run.stderr
    assert {(grid, "V4"): 1} == dict(emulator.button_presses)


# -- 4: closing the books on unknown creates and presses -----------------------------------------


@pytest.mark.anyio
async def test_unknowns_are_retried_or_accepted_row_by_row(tmp_path: pathlib.Path) -> None:
    """Three rows whose create or press reached Akool while the run died (SIGKILL): a plain
    run exits 1 and lists them; --resubmit-unknown 1 says why a used button cannot be pressed
    again; --resubmit-unknown 2 --accept-unknown 1,3 creates row 2 again and closes rows 1 and
    3 as accepted losses (row 3's follow-up too): exit 0, and nothing more is ever sent."""
    prompts = ["a lost press", "a grid to retry", "a grid to accept"]
    file = tmp_path / "prompts.txt"
    out = tmp_path / "out"
    args = batch_args(file, out, "--upscale", "1", "--concurrency", "1", "--json")
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=13)
    async with served(emulator) as (url, gate):
        # Each run dies (SIGKILL) while its first create of the kind is answered: Akool made
        # the job, but the answer is lost with the run.
        for count, endpoint in (
            (1, "createbybutton"),
            (2, "createbyprompt"),
            (3, "createbyprompt"),
        ):
            write_prompts(file, prompts[:count])
            run = await interrupted(
                url, args, gate=gate, trigger=nth(endpoint, 1), logs=tmp_path,
                signum=signal.SIGKILL, mode="partial",
            )  # fmt: skip
            gate.drop()
            assert -signal.SIGKILL == run.status
        lost_press = next(job_id for job_id, job in emulator.jobs.items() if job.button == "U1")
        grid_one = emulator.jobs[lost_press].parent_id
        assert {(grid_one, "U1"): 1} == dict(emulator.button_presses)

        status, stdout, _ = await finished(url, args)
        assert 1 == status
        assert "row 1 U1: 'a lost press'" in stdout
        assert "row 2: 'a grid to retry'" in stdout
        assert "row 3: 'a grid to accept'" in stdout

        status, stdout, _ = await finished(url, [*args, "--resubmit-unknown", "1"])
        assert 1 == status
        assert (
            f"row 1: U1 cannot be pressed again on {grid_one}: Akool lists it as used, so the "
            "earlier press took effect (and was charged), but the job it made cannot be found. "
            "Run with --accept-unknown to close it"
        ) in stdout
        assert 1 == sum(emulator.button_presses.values())

        status, stdout, stderr = await finished(
            url, [*args, "--resubmit-unknown", "2", "--accept-unknown", "1,3"]
        )
        assert 0 == status, stdout + stderr
        sent = Counter(emulator.requests_per_endpoint())
        status, stdout, _ = await finished(url, [*args, "--accept-unknown", "2,9"])
        assert 0 == status
        for endpoint in ("createbyprompt", "createbybutton"):
            assert sent[endpoint] == emulator.requests_per_endpoint()[endpoint]
        # Rows named that have nothing unknown (any more, or at all) are said, not skipped.
        assert (
            "--accept-unknown: row(s) 2, 9 have no unknown create or press; nothing to do for them"
        ) in stdout

    assert [1, 2, 1] == [emulator.creates_for(prompt) for prompt in prompts]
    lines = manifest(out)
    assert [
        ("a lost press", None, "completed"),
        ("a lost press", "U1", "accepted_unknown"),
        ("a grid to retry", None, "completed"),
        ("a grid to retry", "U1", "completed"),
        ("a grid to accept", None, "accepted_unknown"),
        ("a grid to accept", "U1", "accepted_unknown"),
    ] == [(line["prompt"], line["button"], line["status"]) for line in lines]
    assert "not created: its grid was accepted as lost" == lines[5]["error"]
    assert lines[1]["error"].startswith("accepted as lost (--accept-unknown): ")
    assert_all_complete(out, [line for line in lines if line["status"] == "completed"])
    summary = [line for line in stdout.splitlines() if '"event": "summary"' in line]
    assert 1 == len(summary)
    assert '"accepted_rows": 2' in summary[0]
    assert '"accepted": ["row 1 U1: \'a lost press\'", "row 3: \'a grid to accept\'"]' in summary[0]


def test_one_row_cannot_be_both_resubmitted_and_accepted(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--resubmit-unknown 2,3 --accept-unknown 3: exit 2, naming row 3; nothing written; a
    ROWS that is not row numbers is refused by the parser."""
    file = write_prompts(tmp_path / "prompts.txt", ["a", "b", "c"])
    argv = ["batch", str(file), "--out", str(tmp_path / "out"), "--emulator"]
    status = main([*argv, "--resubmit-unknown", "2,3", "--accept-unknown", "3"])
    both = main([*argv, "--resubmit-unknown", "--accept-unknown", "1"])

    err = capsys.readouterr().err
    assert (2, 2) == (status, both)
    assert (
        "akool-async: error: --resubmit-unknown and --accept-unknown both name row(s) 3: "
        "choose one of them for each row (e.g. --resubmit-unknown 3 --accept-unknown 5,7)\n"
    ) in err
    assert "both name every row" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as refused:
        main([*argv, "--accept-unknown", "0,x"])
    assert 2 == refused.value.code
    assert "must be all, or row numbers from the summary" in capsys.readouterr().err


# -- 5: Ctrl+C on a terminal ----------------------------------------------------------------------

# The child becomes a session leader with the pseudo-terminal as its controlling terminal, so
# that the terminal turns a written Ctrl+C (0x03) into SIGINT for it, as a shell's would.
_CONTROLLING_TTY: Final = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)
_ANSI: Final = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]"
)


def _read_all(master: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([master], [], [], CHILD_TIMEOUT)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every holder of the terminal has closed it
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


async def in_terminal(
    url: str, args: Sequence[str], *, on_trip: Callable[[int], None] | None, gate: Gate,
    trigger: Trigger | None,
) -> tuple[int, str]:  # fmt: skip
    """Run ``akool-async ARGS`` in a pseudo-terminal; ``on_trip(master)`` as the trigger trips."""
    import fcntl  # noqa: PLC0415 - POSIX only
    import pty  # noqa: PLC0415
    import struct  # noqa: PLC0415
    import termios  # noqa: PLC0415

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {
        **os.environ,
        "AKOOL_BASE_URL": url,
        "AKOOL_API_KEY": TEST_API_KEY,
        "TERM": "xterm-256color",
        "COLUMNS": "120",
        "LINES": "40",
        "PYTHONIOENCODING": "utf-8",
    }
    try:
        process = await anyio.open_process(
            [sys.executable, "-c", _CONTROLLING_TTY, *COMMAND, *args],
            stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
        )  # fmt: skip
    finally:
        os.close(slave)
    if trigger is not None and on_trip is not None:
        gate.arm(trigger, mode="kill", on_trip=lambda: on_trip(master))
    try:
        with anyio.fail_after(CHILD_TIMEOUT):
            raw = await anyio.to_thread.run_sync(_read_all, master)
            status = await process.wait()
    finally:
        os.close(master)
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.aclose()
    return status, _ANSI.sub("", raw.decode(errors="replace")).replace("\r", "")


@pytest.mark.anyio
async def test_ctrl_c_on_a_terminal_then_a_resumed_run_whose_bar_counts_everything(
    tmp_path: pathlib.Path,
) -> None:
    """Ctrl+C typed on the terminal while presses go out: the live display gives way to the
    notice, the summary and exit 130, with every job made recorded; the resumed run's bar
    and its counts both count every task (the part done before included) and reach 27/27."""
    prompts = ["a red kite over green hills", "a cat asleep on a sill", "a harbour at low tide"]
    file = write_prompts(tmp_path / "prompts.txt", prompts)
    out = tmp_path / "out"
    args = batch_args(file, out, *ALL_BUTTONS)
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=17)
    async with served(emulator) as (url, gate):
        status, text = await in_terminal(
            url, args, gate=gate, trigger=nth("createbybutton", 3),
            on_trip=lambda master: os.write(master, b"\x03"),
        )  # fmt: skip
        gate.drop()
        assert INTERRUPTED == status, text
        assert "akool-async: interrupted: " in text
        assert "press Ctrl+C again to stop now" in text
        assert "Interrupted: the creates already sent have their answers recorded" in text
        assert "interrupted: every create that was sent" not in text  # said once, above
        tasks = journal(out)
        assert_nothing_lost(emulator, tasks, text)
        # Done: completed, every file in place (a task interrupted while its files came down
        # is completed in the journal, and its download is still work for the next run).
        outputs: dict[tuple[str, str | None], set[str]] = {}
        for line in manifest(out):
            outputs.setdefault((line["prompt"], line["button"]), set()).add(line["status"])
        done_before = sum(1 for statuses in outputs.values() if statuses == {"completed"})

        status, text = await in_terminal(url, args, gate=gate, trigger=None, on_trip=None)

    assert 0 == status, text
    assert f"{len(prompts) * TASKS_PER_ROW}/{len(prompts) * TASKS_PER_ROW}" in text
    assert re.search(r"\n\s*0\s+0\s+0\s+0\s+27\s+0\s+0\s*\n", text)
    # The first frame starts from the tasks done before, not from 0.
    first = re.search(r"batch prompts\.txt.*?(\d+)/27", text)
    assert first is not None
    assert done_before <= int(first.group(1)) < 27
    assert_all_complete(out, manifest(out))
