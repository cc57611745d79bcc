"""Money that adds up: credits in the display, the summary and the manifest equal the charges.

The console script runs in a child process against an emulator served from the test process
(tests/test_cli_resume.py's `served`), in plain-line mode: its last progress line is the
display's last word on credits, then the summary says its own. The emulator's accounting
(`AkoolEmulator.accounting`) is what each figure is checked against: every create and press it
charged, job by job.
"""

from __future__ import annotations

import json
import pathlib
import re
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any, Final

import attrs
import pytest

from akool_async.cli._app import _summarise
from akool_async.cli._batch import Tally
from akool_async.cli._journal import TaskKind, TaskRecord, TaskState
from akool_async.cli._manifest import (
    MANIFEST_NAME,
    ChargeStatus,
    ManifestFile,
    ManifestLine,
    OutputStatus,
    charge_of,
    manifest_chunks,
)
from akool_async.testing import AkoolEmulator
from test_cli_interrupt import ALL_BUTTONS, INTERRUPTED, interrupted
from test_cli_interrupt import batch_args as interrupt_batch_args
from test_cli_resume import (
    FAULTS,
    TIME_SCALE,
    akool,
    batch_args,
    manifest,
    nth,
    served,
    write_prompts,
)

pytestmark = [
    pytest.mark.real_time,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
]

_UNKNOWN: Final = r"(?: \+ (\d+) create\(s\) whose charge Akool never reported)?"
DISPLAY: Final = re.compile(rf"\] progress: .*credits spent ([\d.]+){_UNKNOWN}, creates sent (\d+)")
SUMMARY: Final = re.compile(rf"creates sent: (\d+); credits used: ([\d.]+){_UNKNOWN}( \(balance)?")


@attrs.frozen
class Money:
    """What one run said about money: its display's last line and its summary."""

    shown: float
    shown_unknown: int
    shown_creates: int
    used: float
    used_unknown: int
    creates: int

    @classmethod
    def of(cls, stdout: str) -> Money:
        """Read from a plain-mode run's standard output."""
        *_, last = DISPLAY.finditer(stdout)
        [summary] = SUMMARY.finditer(stdout)
        return cls(
            shown=float(last.group(1)),
            shown_unknown=int(last.group(2) or 0),
            shown_creates=int(last.group(3)),
            used=float(summary.group(2)),
            used_unknown=int(summary.group(3) or 0),
            creates=int(summary.group(1)),
        )


def manifest_credits(lines: list[dict[str, Any]]) -> float:
    """The sum of the manifest's ``credits`` column (nulls are unknown charges, counted apart)."""
    return sum(line["credits"] for line in lines if line["credits"] is not None)


def assert_lines_match_jobs(lines: list[dict[str, Any]], emulator: AkoolEmulator) -> None:
    """Each job's first manifest line carries what the emulator charged for that job."""
    charged = emulator.accounting().credits_per_job
    firsts = [line for line in lines if line["output"] in {"grid", "image"}]
    for line in firsts:
        if line["job_id"] is not None:
            assert (charged[line["job_id"]], "reported") == (
                line["credits"],
                line["credits_status"],
            ), line
    others = [line for line in lines if line["output"] not in {"grid", "image"}]
    assert {(0, "none")} >= {(line["credits"], line["credits_status"]) for line in others}


@pytest.mark.anyio
async def test_every_view_of_credits_equals_the_charges(tmp_path: pathlib.Path) -> None:
    """A batch pressing all eight buttons: the display's last line, the summary, the balance
    and the manifest's credits column all say what the emulator charged, job by job."""
    file = write_prompts(tmp_path / "prompts.txt", ["a copper kettle", "a salt marsh at noon"])
    out = tmp_path / "out"
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=5)
    async with served(emulator) as (url, _):
        run = await akool(url, batch_args(file, out, *ALL_BUTTONS), logs=tmp_path)

    assert 0 == run.status, run.stdout + run.stderr
    charged = emulator.accounting().credits_charged
    assert 36 == charged  # two grids and sixteen presses, 2 credits each
    money = Money.of(run.stdout)
    assert (charged, 0, 18, charged, 0, 18) == attrs.astuple(money)
    assert f"credits used: 36 (balance 10000 -> {10000 - charged:g})." in run.stdout
    lines = manifest(out)
    assert charged == manifest_credits(lines)
    assert_lines_match_jobs(lines, emulator)


@pytest.mark.anyio
async def test_credits_add_up_across_interrupted_and_resumed_runs(tmp_path: pathlib.Path) -> None:
    """Three runs stopped by SIGINT as a press goes out, then one to the end: what each run
    says it spent, summed, is what the emulator charged and what the manifest sums to."""
    file = write_prompts(tmp_path / "prompts.txt", [f"a lantern, study {n}" for n in range(3)])
    out = tmp_path / "out"
    args = batch_args(file, out, *ALL_BUTTONS, "--concurrency", "2")
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=8)
    runs: list[Money] = []
    async with served(emulator) as (url, gate):
        for press in (2, 5, 3):
            stopped = await interrupted(
                url, args, gate=gate, trigger=nth("createbybutton", press), logs=tmp_path,
                signum=signal.SIGINT,
            )  # fmt: skip
            gate.drop()
            assert INTERRUPTED == stopped.status, stopped.stdout + stopped.stderr
            runs.append(Money.of(stopped.stdout))
        last = await akool(url, args, logs=tmp_path)
        assert 0 == last.status, last.stdout + last.stderr
        runs.append(Money.of(last.stdout))

    charged = emulator.accounting().credits_charged
    assert 3 * 9 * 2 == charged
    assert [run.shown for run in runs] == [run.used for run in runs]
    assert [2 * run.creates for run in runs] == [run.used for run in runs]
    assert charged == sum(run.used for run in runs)
    assert all(run.used > 0 for run in runs[:3]), runs  # each stopped run had paid for some
    lines = manifest(out)
    assert charged == manifest_credits(lines)
    assert_lines_match_jobs(lines, emulator)


@pytest.mark.anyio
async def test_lost_answers_are_unknown_charges_and_the_rest_adds_up(
    tmp_path: pathlib.Path,
) -> None:
    """Under faults (lost answers, failed jobs, refusals): the known charges agree everywhere
    and equal the emulator's charges for the jobs the run knows; each lost answer is an
    explicit unknown (credits null, ``credits_status`` unknown), counted in the display and
    the summary, and the emulator's charges for jobs nobody was told of are among them."""
    prompts = [f"a greenhouse in winter, view {number}" for number in range(1, 9)]
    file = write_prompts(tmp_path / "prompts.txt", prompts)
    out = tmp_path / "out"
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=11, faults=FAULTS)
    async with served(emulator) as (url, _):
        run = await akool(url, batch_args(file, out, *ALL_BUTTONS), logs=tmp_path)

    assert 1 == run.status, run.stdout + run.stderr
    accounting = emulator.accounting()
    lines = manifest(out)
    money = Money.of(run.stdout)
    known_jobs = {line["job_id"] for line in lines if line["job_id"] is not None}
    known_charges = sum(accounting.credits_per_job[job] for job in known_jobs)
    untold = [job for job in accounting.credits_per_job if job not in known_jobs]
    unknown = [line for line in lines if line["credits_status"] == "unknown"]

    assert (known_charges, known_charges) == (money.shown, money.used)
    assert known_charges == manifest_credits(lines)
    assert_lines_match_jobs(lines, emulator)
    assert [None] * len(unknown) == [line["credits"] for line in unknown]
    assert {"unknown", "accepted_unknown"} >= {line["status"] for line in unknown}
    assert len(unknown) == money.used_unknown == money.shown_unknown
    assert 0 < len(unknown)  # the faults include answers lost after the job was made
    assert len(untold) <= len(unknown)
    assert accounting.credits_charged == known_charges + sum(
        accounting.credits_per_job[job] for job in untold
    )


def _task(state: TaskState, cost: float | None, unreported: int, job_id: str | None) -> TaskRecord:
    return TaskRecord(
        key="k", kind=TaskKind.GRID, row=1, prompt="a row", scale="1:1", source_image=None,
        parent_key=None, button=None, stem="0001-a-row", state=state, job_id=job_id, error=None,
        credits=cost, creates_sent=unreported + 1, unreported=unreported, retryable=False,
        in_plan=True, position=1,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("state", "cost", "unreported", "job_id", "expected"),
    [
        (TaskState.PENDING, None, 0, None, (0, ChargeStatus.NONE, 0)),
        (TaskState.COMPLETED, 2.0, 0, "job", (2.0, ChargeStatus.REPORTED, 0)),
        (TaskState.UNKNOWN, None, 1, None, (None, ChargeStatus.UNKNOWN, 1)),
        (TaskState.ACCEPTED, None, 2, None, (None, ChargeStatus.UNKNOWN, 2)),
        (TaskState.COMPLETED, 2.0, 1, "job", (2.0, ChargeStatus.PARTLY_UNKNOWN, 1)),
        (TaskState.FAILED, 4.0, 2, "job", (4.0, ChargeStatus.PARTLY_UNKNOWN, 2)),
        (TaskState.INTENT, None, 0, None, (None, ChargeStatus.UNKNOWN, 1)),
        (TaskState.INTENT, 2.0, 1, None, (2.0, ChargeStatus.PARTLY_UNKNOWN, 2)),
        (TaskState.COMPLETED, None, 0, "job", (None, ChargeStatus.UNKNOWN, 1)),
        (TaskState.COMPLETED, None, 1, "job", (None, ChargeStatus.UNKNOWN, 2)),
    ],
)
def test_a_task_s_charge_counts_every_create_whose_charge_was_never_reported(
    state: TaskState,
    cost: float | None,
    unreported: int,
    job_id: str | None,
    expected: tuple[float | None, ChargeStatus, int],
) -> None:
    """Reported credits, and beside them the creates whose answers were lost, the one in
    flight (an intent), and a job whose charge neither its create nor its end told."""
    assert expected == charge_of(_task(state, cost, unreported, job_id))


@pytest.mark.anyio
async def test_the_summary_adds_up_every_run_of_the_batch_when_it_differs() -> None:
    """The manifest's credits and unreported creates, over every line (rows no longer in the
    file too), said on their own line when earlier runs spent something; not when this run's
    figures are the batch's."""
    lines = [
        attrs.evolve(_line(1, OutputStatus.COMPLETED), credits=2.0),
        attrs.evolve(_line(2, OutputStatus.COMPLETED), credits=2.0, unreported_creates=1),
        attrs.evolve(_line(3, OutputStatus.UNKNOWN), credits=None, unreported_creates=1),
        attrs.evolve(_line(4, OutputStatus.COMPLETED), credits=2.0, in_file=False),
    ]
    tally = Tally(credits=2.0, creates=1)
    summary = await _summarise(tally, _each(lines), (), before=None, after=None, manifest=None)

    assert (6.0, 2) == (summary.batch_credits, summary.batch_unknown_charges)
    assert (
        "Over every run of this batch: credits 6 + 2 create(s) whose charge Akool never "
        "reported (the manifest's credits column)."
    ) == summary.lines()[2]
    assert (6.0, 2) == (
        summary.as_json()["batch_credits"],
        summary.as_json()["batch_unknown_charges"],
    )
    same = await _summarise(
        Tally(credits=6.0, unknown_charges=2), _each(lines), (), before=None, after=None,
        manifest=None,
    )  # fmt: skip
    assert not any(line.startswith("Over every run") for line in same.lines())


# -- the pieces behind them -----------------------------------------------------------------------


def _line(row: int, status: OutputStatus, *, output: str = "grid") -> ManifestLine:
    return ManifestLine(
        prompt=f"a row {row}", row=row, job_id=None, parent_id=None, button=None, status=status,
        error=None, credits=0, output=output, kind=TaskKind.GRID, scale="1:1", in_file=True,
    )  # fmt: skip


async def _each(lines: list[ManifestLine]) -> AsyncIterator[ManifestLine]:
    """``lines`` one at a time, as the batch's manifest makes them."""
    for line in lines:
        yield line


@pytest.mark.anyio
async def test_the_manifest_is_written_a_chunk_at_a_time_and_renamed_into_place(
    tmp_path: pathlib.Path,
) -> None:
    """Five lines in chunks of two: three pieces, each whole lines; the file appears only at
    the commit, and a discarded one leaves the manifest in place as it was and no part file."""
    lines = [_line(row, OutputStatus.COMPLETED) for row in range(1, 6)]
    chunks = [chunk async for chunk in manifest_chunks(_each(lines), size=2)]
    assert [2, 2, 1] == [chunk.count(b"\n") for chunk in chunks]
    assert "completed" == json.loads(chunks[2])["status"]
    assert "reported" != json.loads(chunks[2])["credits_status"]

    manifest = ManifestFile(tmp_path)
    for chunk in chunks:
        manifest.write(chunk)
    assert not (tmp_path / MANIFEST_NAME).exists()
    manifest.commit()
    assert b"".join(chunks) == (tmp_path / MANIFEST_NAME).read_bytes()

    dropped = ManifestFile(tmp_path)
    dropped.write(b"half a line")
    dropped.discard()
    assert b"".join(chunks) == (tmp_path / MANIFEST_NAME).read_bytes()
    assert [MANIFEST_NAME] == [path.name for path in tmp_path.iterdir()]


def test_a_manifest_that_cannot_be_renamed_into_place_leaves_no_part_file(
    tmp_path: pathlib.Path,
) -> None:
    """A folder where the manifest should go: the commit fails and removes its part file."""
    (tmp_path / MANIFEST_NAME).mkdir()
    manifest = ManifestFile(tmp_path)
    manifest.write(b"{}\n")
    with pytest.raises(OSError, match=r"[Ii]s a directory"):
        manifest.commit()
    assert [MANIFEST_NAME] == [path.name for path in tmp_path.iterdir()]


@pytest.mark.anyio
async def test_the_summary_counts_each_row_by_its_worst_output_in_one_pass() -> None:
    """Lines read once (a generator): a row is failed if any output failed, unknown before
    pending, an accepted loss is worse only than completed; outputs are counted per status."""
    lines = [
        _line(1, OutputStatus.COMPLETED),
        _line(1, OutputStatus.FAILED, output="q1"),
        _line(2, OutputStatus.PENDING),
        _line(2, OutputStatus.UNKNOWN, output="q1"),
        _line(3, OutputStatus.ACCEPTED_UNKNOWN),
        _line(3, OutputStatus.PENDING, output="q1"),
        _line(4, OutputStatus.COMPLETED),
        _line(5, OutputStatus.COMPLETED),
        _line(5, OutputStatus.ACCEPTED_UNKNOWN, output="q1"),
    ]

    summary = await _summarise(Tally(), _each(lines), (), before=None, after=None, manifest=None)

    assert (5, 1, 1, 1, 1, 1) == (
        summary.rows,
        summary.completed_rows,
        summary.failed_rows,
        summary.unknown_rows,
        summary.pending_rows,
        summary.accepted_rows,
    )
    expected = {"completed": 3, "failed": 1, "pending": 2, "unknown": 1, "accepted_unknown": 2}
    assert expected == summary.outputs


@pytest.mark.anyio
async def test_the_summary_says_when_the_balance_moved_by_another_amount() -> None:
    """Credits used as Akool reported them, the unknown ones apart, and a balance that moved
    by more (another user of the account, or an unreported charge) said as such."""
    tally = Tally(credits=10.0, unknown_charges=2, creates=7)
    summary = await _summarise(tally, _each([]), (), before=100.0, after=86.0, manifest=None)

    assert (
        "Files written this run: 0; creates sent: 7; credits used: 10 + 2 create(s) whose "
        "charge Akool never reported (balance 100 -> 86: it moved 14)."
    ) == summary.lines()[1]
    assert 2 == summary.as_json()["unknown_charges"]


@pytest.mark.anyio
async def test_a_resubmitted_create_keeps_the_unreported_charge_of_the_one_before(
    tmp_path: pathlib.Path,
) -> None:
    """Row 2's create reaches Akool as the run is killed (its answer lost), then is created
    again with --resubmit-unknown: its line says the 2 credits reported and the one create
    whose charge was never reported, and so does the summary, for every run of the batch."""
    file = write_prompts(tmp_path / "prompts.txt", ["a tin roof", "a paper boat"])
    out = tmp_path / "out"
    args = interrupt_batch_args(file, out, "--concurrency", "1")
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=21)
    async with served(emulator) as (url, gate):
        killed = await interrupted(
            url, args, gate=gate, trigger=nth("createbyprompt", 2), logs=tmp_path,
            signum=signal.SIGKILL, mode="partial",
        )  # fmt: skip
        gate.drop()
        assert -signal.SIGKILL == killed.status
        run = await akool(url, [*args, "--resubmit-unknown", "2"], logs=tmp_path)

    assert 0 == run.status, run.stdout + run.stderr
    accounting = emulator.accounting()
    assert [2, 2, 2] == list(accounting.credits_per_job.values())
    [first, second] = accounting.creates["a paper boat"]
    lines = manifest(out)
    assert first not in {line["job_id"] for line in lines}
    assert [(2.0, "reported", 0), (2.0, "partly_unknown", 1)] == [
        (line["credits"], line["credits_status"], line["unreported_creates"]) for line in lines
    ]
    assert second == lines[1]["job_id"]
    assert accounting.credits_charged == manifest_credits(lines) + 2 * sum(
        line["unreported_creates"] for line in lines
    )
    assert (2, 0, 1, 2, 0, 1) == attrs.astuple(Money.of(run.stdout))
    assert (
        "Over every run of this batch: credits 4 + 1 create(s) whose charge Akool never "
        "reported (the manifest's credits column)."
    ) in run.stdout.splitlines()


@pytest.mark.anyio
async def test_a_resubmitted_job_that_vanishes_keeps_what_its_create_was_charged(
    tmp_path: pathlib.Path,
) -> None:
    """A create lost as the run is killed, created again (charged 2), whose job then vanishes
    (Akool answers 1008 at its first poll): the row fails, and its line keeps the 2 credits
    reported and the one create whose charge was never reported, as the emulator charged."""
    file = write_prompts(tmp_path / "prompts.txt", ["a glass lighthouse"])
    out = tmp_path / "out"
    args = interrupt_batch_args(file, out)
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=22)
    async with served(emulator) as (url, gate):
        killed = await interrupted(
            url, args, gate=gate, trigger=nth("createbyprompt", 1), logs=tmp_path,
            signum=signal.SIGKILL, mode="partial",
        )  # fmt: skip
        gate.drop()
        assert -signal.SIGKILL == killed.status
        vanished: list[str] = []

        def vanish() -> None:
            job_id = list(emulator.jobs)[-1]
            del emulator.jobs[job_id]
            vanished.append(job_id)

        gate.arm(nth("infobymodelid", 1), mode="kill", on_trip=vanish)
        run = await akool(url, [*args, "--resubmit-unknown"], logs=tmp_path)

    assert 1 == run.status, run.stdout + run.stderr
    assert 4 == emulator.accounting().credits_charged
    [line] = manifest(out)
    assert (vanished[0], "failed", 2.0, "partly_unknown", 1) == (
        line["job_id"],
        line["status"],
        line["credits"],
        line["credits_status"],
        line["unreported_creates"],
    )
    assert (2, 0, 1, 2, 0, 1) == attrs.astuple(Money.of(run.stdout))
