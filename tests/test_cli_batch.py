"""The batch runner in-process, against the emulator: the resume rules' edge cases.

The end-to-end runs of the console script (kill -9, faults, changed files) are in
tests/test_cli_resume.py; these drive `BatchRunner` directly, so each rule is shown alone.
The journal writes from worker threads, so these run in real time on a fast emulator.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pathlib
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import akool_async as ak
from akool_async.cli import main
from akool_async.cli._batch import BatchAborted, BatchOptions, BatchRunner
from akool_async.cli._journal import JOURNAL_NAME, Journal, TaskState
from akool_async.cli._manifest import MANIFEST_NAME
from akool_async.cli._report import Summary
from akool_async.cli._rows import Row, plan_tasks
from akool_async.testing import AkoolEmulator, Faults

TIME_SCALE = 0.005  # a grid in about 0.25 s
POLICY = ak.PollPolicy(expected_duration=0.25, target_lag=0.05, min_interval=0.05)

# The journal writes from worker threads, which would let a virtual clock run ahead.
pytestmark = pytest.mark.real_time


class Events:
    """A reporter that keeps what it is told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, str | None, str | None]] = []
        self.notes: list[str] = []

    def event(self, kind: str, record: Any, detail: str | None = None) -> None:
        self.events.append((kind, record.row, record.button, detail))

    def note(self, message: str) -> None:
        self.notes.append(message)

    def refresh(self) -> None:
        pass

    def kinds(self, kind: str) -> list[tuple[int, str | None]]:
        return [(row, button) for seen, row, button, _ in self.events if seen == kind]


def rows(*prompts: str) -> list[Row]:
    return [
        Row(number=number, line=number, prompt=prompt, scale=ak.Scale.RATIO_1_1)
        for number, prompt in enumerate(prompts, start=1)
    ]


async def run(
    emulator: AkoolEmulator,
    out: pathlib.Path,
    batch: list[Row],
    *,
    upscale: tuple[int, ...] = (),
    vary: tuple[int, ...] = (),
    quadrants: bool = False,
    resubmit_unknown: bool = False,
    raise_aborted: bool = True,
) -> tuple[Events, Journal, list[dict[str, Any]]]:
    """One run of the batch, as the console script does it; returns its events and manifest."""
    out.mkdir(exist_ok=True)
    planned = plan_tasks(batch, upscale=upscale, vary=vary)
    events = Events()
    async with (
        emulator.client() as http,
        ak.AkoolSession(api_key=emulator.api_key, http_client=http, poll_policy=POLICY) as session,
        await Journal.open(out / JOURNAL_NAME, endpoint="test") as journal,
    ):
        await journal.sync(planned)
        runner = BatchRunner(
            session,
            journal,
            [task.key for task in planned],
            BatchOptions(out=out, quadrants=quadrants, resubmit_unknown=resubmit_unknown),
            events,
        )
        todo = await runner.prepare()
        try:
            await runner.run(todo)
        except BatchAborted:
            await runner.write_manifest()
            if raise_aborted:
                raise
    manifest = [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]
    return events, journal, manifest


@pytest.mark.anyio
async def test_a_refusal_for_the_whole_account_stops_the_batch_and_the_next_run_goes_on(
    tmp_path: pathlib.Path,
) -> None:
    """Out of credit: the batch stops with what was created recorded; topped up, it goes on."""
    emulator = AkoolEmulator(time_scale=TIME_SCALE, credit=2)
    batch = rows("one", "two", "three")

    with pytest.raises(BatchAborted, match="1006"):
        await run(emulator, tmp_path, batch)

    # The three creates went out together; one was paid for, two refused, then nothing more.
    assert 3 == emulator.requests_per_endpoint()["createbyprompt"]
    assert 2 == emulator.credits_used
    async with await Journal.open(tmp_path / JOURNAL_NAME, endpoint="test") as journal:
        states = sorted(task.state.value for task in journal.tasks.values())
        assert ["created", "failed", "failed"] == states
        assert all(
            task.retryable for task in journal.tasks.values() if task.state.value == "failed"
        )
    emulator.credit = 100
    _events, journal, manifest = await run(emulator, tmp_path, batch)

    assert [1, 1, 1] == [emulator.creates_for(prompt) for prompt in ("one", "two", "three")]
    assert {"completed"} == {line["status"] for line in manifest}
    # The journal counts what was sent: the refused two went out twice, and were created once.
    assert [1, 2, 2] == sorted(task.creates_sent for task in journal.tasks.values())


@pytest.mark.anyio
async def test_try_again_later_is_tried_again_by_the_next_run(tmp_path: pathlib.Path) -> None:
    """Code 1108 made no job: the row is failed in this run, and created by the next."""
    emulator = AkoolEmulator(time_scale=TIME_SCALE, faults=Faults(generate_error=1.0))
    _, _, manifest = await run(emulator, tmp_path, rows("a heron"))

    assert ["failed"] == [line["status"] for line in manifest]
    assert "the next run tries again" in manifest[0]["error"]
    assert 0 == emulator.creates_for("a heron")

    emulator.faults = Faults()
    _, _, manifest = await run(emulator, tmp_path, rows("a heron"))
    assert ["completed"] == [line["status"] for line in manifest]
    assert 1 == emulator.creates_for("a heron")


@pytest.mark.anyio
async def test_follow_ups_of_a_failed_grid_are_not_created(tmp_path: pathlib.Path) -> None:
    """A failed grid has no buttons: its follow-ups are reported failed, never sent."""
    emulator = AkoolEmulator(time_scale=TIME_SCALE)
    _, _, manifest = await run(emulator, tmp_path, rows("a ruin [fail]"), upscale=(1,), vary=(2,))

    assert [("failed", None), ("failed", "U1"), ("failed", "V2")] == [
        (line["status"], line["button"]) for line in manifest
    ]
    assert ["not created: its grid is failed"] * 2 == [line["error"] for line in manifest[1:]]
    assert 0 == emulator.requests_per_endpoint()["createbybutton"]


async def _leave_press_unknown(tmp_path: pathlib.Path, emulator: AkoolEmulator) -> str:
    """Run a grid with U1 to the end, then rewrite the journal as if U1's answer was lost."""
    await run(emulator, tmp_path, rows("a kite"), upscale=(1,))
    async with await Journal.open(tmp_path / JOURNAL_NAME, endpoint="test") as journal:
        child = next(task for task in journal.tasks.values() if task.button == "U1")
        await journal.intent(child.key)
        await journal.sync(plan_tasks(rows("a kite"), upscale=(1,), vary=()))
        assert TaskState.UNKNOWN is journal.tasks[child.key].state
        return child.key


@pytest.mark.anyio
async def test_an_unknown_press_that_took_effect_stays_unknown(tmp_path: pathlib.Path) -> None:
    """Akool lists the button as used: the press is paid for, so it is not pressed again."""
    emulator = AkoolEmulator(time_scale=TIME_SCALE)
    key = await _leave_press_unknown(tmp_path, emulator)
    presses = sum(emulator.button_presses.values())

    events, journal, manifest = await run(emulator, tmp_path, rows("a kite"), upscale=(1,))

    assert presses == sum(emulator.button_presses.values())
    assert TaskState.UNKNOWN is journal.tasks[key].state
    assert [(1, "U1")] == events.kinds("unknown")
    assert ["completed", "unknown"] == [line["status"] for line in manifest]


@pytest.mark.anyio
async def test_an_unknown_press_that_never_took_effect_is_pressed(tmp_path: pathlib.Path) -> None:
    """Akool still offers the button: the press never happened, so pressing it cannot pay twice."""
    emulator = AkoolEmulator(time_scale=TIME_SCALE)
    await run(emulator, tmp_path, rows("a kite"))  # the grid only
    async with await Journal.open(tmp_path / JOURNAL_NAME, endpoint="test") as journal:
        planned = plan_tasks(rows("a kite"), upscale=(2,), vary=())
        await journal.sync(planned)
        await journal.intent(planned[1].key)  # sent, as far as the journal knows; never arrived
        await journal.sync(planned)

    events, journal, manifest = await run(emulator, tmp_path, rows("a kite"), upscale=(2,))

    assert 1 == sum(emulator.button_presses.values())
    assert any("U2 was never pressed" in note for note in events.notes)
    assert ["completed", "completed"] == [line["status"] for line in manifest]


@pytest.mark.anyio
async def test_unknown_grids_wait_for_resubmit_unknown(tmp_path: pathlib.Path) -> None:
    """An ambiguous create is reported and left alone until --resubmit-unknown."""
    emulator = AkoolEmulator(time_scale=TIME_SCALE, faults=Faults(drop_after_commit=1.0))
    _, _, manifest = await run(emulator, tmp_path, rows("a moth"))
    assert ["unknown"] == [line["status"] for line in manifest]
    assert 1 == emulator.creates_for("a moth")  # it did reach Akool, and was paid for

    emulator.faults = Faults()
    events, _, manifest = await run(emulator, tmp_path, rows("a moth"))
    assert 1 == emulator.creates_for("a moth")
    assert ["unknown"] == [line["status"] for line in manifest]
    assert [] == events.kinds("created")

    events, _, manifest = await run(emulator, tmp_path, rows("a moth"), resubmit_unknown=True)
    assert 2 == emulator.creates_for("a moth")  # the user chose to pay again
    assert ["completed"] == [line["status"] for line in manifest]


@pytest.mark.anyio
async def test_expired_results_are_reported_without_a_request(tmp_path: pathlib.Path) -> None:
    """A missing file whose job is older than seven days is failed as expired, not fetched."""
    emulator = AkoolEmulator(time_scale=TIME_SCALE)
    await run(emulator, tmp_path, rows("an old map"))
    async with await Journal.open(tmp_path / JOURNAL_NAME, endpoint="test") as journal:
        (task,) = journal.tasks.values()
        recorded = await journal.info(task.key)
        assert recorded is not None
        old = datetime.now(UTC) - timedelta(days=8)
        info = dict(recorded, create_time=int(old.timestamp() * 1000))
        await journal.completed(task.key, info, task.credits)
        (output,) = await journal.outputs_of(task.key)
    (tmp_path / output.file).unlink()
    images = emulator.requests_per_endpoint()["image"]

    _, _, manifest = await run(emulator, tmp_path, rows("an old map"))

    assert images == emulator.requests_per_endpoint()["image"]
    assert ["failed"] == [line["status"] for line in manifest]
    assert "expired" in manifest[0]["error"]


@pytest.mark.anyio
async def test_a_new_row_never_takes_an_earlier_rows_file_names(tmp_path: pathlib.Path) -> None:
    """A new row 1 with the same slug as the old row 1 gets '-2': no file is written twice."""
    emulator = AkoolEmulator(time_scale=TIME_SCALE)
    await run(emulator, tmp_path, rows("fox!"), upscale=(1,))
    _, _, manifest = await run(emulator, tmp_path, rows("fox?", "fox!"), upscale=(1,))

    files = {(line["prompt"], line["output"]): line["file"] for line in manifest}
    assert {
        ("fox!", "grid"): "0001-fox_grid.png",
        ("fox!", "image"): "0001-fox_U1.png",
        ("fox?", "grid"): "0001-fox-2_grid.png",
        ("fox?", "image"): "0001-fox-2_U1.png",
    } == files
    for line in manifest:
        digest = hashlib.sha256((tmp_path / line["file"]).read_bytes()).hexdigest()
        assert line["sha256"] == digest


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes")
def test_a_reader_that_goes_away_does_not_stop_the_batch(tmp_path: pathlib.Path) -> None:
    """`akool-async demo --json | head -1`: the batch finishes quietly, every file written."""
    script = pathlib.Path(sys.executable).with_name("akool-async")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "akool_async.cli"]
    with subprocess.Popen(  # noqa: S603 - our own console script
        [*command, "demo", "--out", str(tmp_path), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        first = json.loads(process.stdout.readline())
        process.stdout.close()  # what `head -1` does
        errors = process.stderr.read().decode()
        status = process.wait(timeout=120)

    assert "start" == first["event"]
    assert (0, "") == (status, errors)
    manifest = (tmp_path / MANIFEST_NAME).read_text().splitlines()
    assert 66 == len(manifest)
    assert {"completed"} == {json.loads(line)["status"] for line in manifest}


def test_a_batch_run_in_process_leaves_logging_as_it_was(tmp_path: pathlib.Path) -> None:
    """main() routes the SDK's log records while it runs, and puts them back afterwards."""
    logger = logging.getLogger("akool_async")
    before = (logger.handlers[:], logger.level, logger.propagate)

    assert 0 == main(["demo", "--out", str(tmp_path), "--json", "-v"])

    assert before == (logger.handlers[:], logger.level, logger.propagate)


def test_the_summary_names_lost_presses_apart_from_resubmittable_creates() -> None:
    """Unknown grids can be sent again; a press whose answer was lost is pressed again only if
    Akool still offers the button, which the next run reads."""
    summary = Summary(
        rows=2,
        completed_rows=0,
        failed_rows=0,
        unknown_rows=2,
        pending_rows=0,
        outputs={"unknown": 2},
        files_written=0,
        creates_sent=0,
        credits_used=0.0,
        balance_before=None,
        balance_after=None,
        removed_rows=0,
        unknown=("row 1: 'a moth'",),
        lost_presses=("row 2 U1: 'a kite'",),
        manifest=None,
        elapsed=1.0,
    )

    lines = summary.lines()

    resubmit = next(index for index, line in enumerate(lines) if "--resubmit-unknown" in line)
    assert "  row 1: 'a moth'" == lines[resubmit + 1]
    lost = next(index for index, line in enumerate(lines) if "button press(es)" in line)
    assert (
        "1 button press(es) may or may not have reached Akool (their answers were lost). Run the "
        "same command again: it reads each grid anew and presses a button again only if Akool "
        "still offers it (so it cannot pay twice); a button Akool lists as used was charged, and "
        "the job it made cannot be found. Run with --accept-unknown to close them as lost:"
    ) == lines[lost]
    assert "  row 2 U1: 'a kite'" == lines[lost + 1]
    assert ["row 2 U1: 'a kite'"] == summary.as_json()["lost_presses"]
    assert 1 == summary.exit_status


def test_python_dash_m_runs_the_same_command_line() -> None:
    """`python -m akool_async.cli` is the console script, for environments without its shim."""
    ran = subprocess.run(
        [sys.executable, "-m", "akool_async.cli", "batch", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert 0 == ran.returncode
    assert ran.stdout.startswith("usage: akool-async batch")
    assert "--resubmit-unknown" in ran.stdout
