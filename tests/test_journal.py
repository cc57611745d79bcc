"""The batch journal on a real SQLite file: plan sync, the create protocol, reopening, refusals."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import sqlite3
import sys
import textwrap
from typing import Any

import anyio
import pytest

from akool_async.cli._journal import (
    JOURNAL_NAME,
    Journal,
    JournalError,
    OutputRecord,
    PlannedTask,
    TaskKind,
    TaskState,
)
from akool_async.testing import TEST_API_KEY, AkoolEmulator

ENDPOINT = "https://openapi.akool.test/"
LOST_ANSWER = (
    "the run that sent this create ended before its answer was recorded: it may or may not "
    "have reached Akool"
)
INFO: dict[str, Any] = {"_id": "job-1", "image_status": 3, "image": "https://cdn.test/1.png"}

# The journal works in real worker threads (and one test a real server): real time.
pytestmark = pytest.mark.real_time


def grid(key: str, row: int, prompt: str | None = None) -> PlannedTask:
    """A grid task for ``prompt`` (default: the key) at ``row``."""
    prompt = prompt if prompt is not None else f"prompt {key}"
    return PlannedTask(
        key=key,
        kind=TaskKind.GRID,
        row=row,
        prompt=prompt,
        scale="1:1",
        stem=f"{row:04d}-{key}",
    )


def upscale(parent: PlannedTask, number: int) -> PlannedTask:
    """Button U<number> on ``parent``."""
    return PlannedTask(
        key=f"{parent.key}/U{number}",
        kind=TaskKind.UPSCALE,
        row=parent.row,
        prompt=parent.prompt,
        scale=parent.scale,
        parent_key=parent.key,
        button=f"U{number}",
        stem=f"{parent.stem}-U{number}",
    )


def output(task_key: str, name: str = "grid") -> OutputRecord:
    """A downloaded file of ``task_key``."""
    return OutputRecord(
        task_key=task_key,
        name=name,
        url=f"https://cdn.test/{task_key}/{name}.png",
        file=f"{task_key}-{name}.png",
        sha256="ab" * 32,
        size=1234,
    )


async def open_journal(folder: pathlib.Path, endpoint: str = ENDPOINT) -> Journal:
    """The journal of ``folder``."""
    return await Journal.open(folder / JOURNAL_NAME, endpoint=endpoint)


def states(journal: Journal) -> dict[str, TaskState]:
    """Each task's state."""
    return {key: record.state for key, record in journal.tasks.items()}


def console_script() -> list[str]:
    """The installed ``akool-async`` script, or ``python -m akool_async.cli``."""
    script = pathlib.Path(sys.executable).with_name("akool-async")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "akool_async.cli"]


# -- the plan --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_sync_adds_keeps_and_removes(tmp_path: pathlib.Path) -> None:
    """New tasks are pending; known ones keep their state; dropped ones stay, out of the plan."""
    a, b, c = grid("a", 1), grid("b", 2), grid("c", 2)
    async with await open_journal(tmp_path) as journal:
        first = await journal.sync([a, upscale(a, 1), b])
        assert (("a", "a/U1", "b"), (), (), ()) == (
            first.added,
            first.kept,
            first.removed,
            first.recovered,
        )
        assert {"a": TaskState.PENDING, "a/U1": TaskState.PENDING, "b": TaskState.PENDING} == (
            states(journal)
        )
        await journal.intent("a")
        await journal.created("a", "job-a")
        await journal.completed("a", INFO, 1.0)

        second = await journal.sync([b, c])
        assert (("c",), ("b",), ("a", "a/U1"), ()) == (
            second.added,
            second.kept,
            second.removed,
            second.recovered,
        )
        removed = journal.tasks["a"]
        assert TaskState.COMPLETED == removed.state
        assert "job-a" == removed.job_id
        assert (None, INFO) == (removed.info, await journal.info("a"))  # read when wanted
        assert not removed.in_plan
        assert not journal.tasks["a/U1"].in_plan
        assert journal.tasks["b"].in_plan
        assert journal.tasks["c"].in_plan
        # Tasks keep the order they were first planned in.
        assert ["a", "a/U1", "b", "c"] == list(journal.tasks)
        assert [1, 2, 3, 4] == [record.position for record in journal.tasks.values()]

        third = await journal.sync([a, b, c])
        assert (("a", "b", "c"), ()) == (third.kept, third.added)
        assert ("a/U1",) == third.removed
        assert TaskState.COMPLETED == journal.tasks["a"].state
        assert journal.tasks["a"].in_plan


@pytest.mark.anyio
async def test_sync_takes_new_row_numbers_but_keeps_stems(tmp_path: pathlib.Path) -> None:
    """A row that moved in the file gets its new number; its files keep their first name."""
    async with await open_journal(tmp_path) as journal:
        fox = grid("fox", 1)
        await journal.sync([fox, upscale(fox, 2)])
        moved = grid("fox", 3)
        report = await journal.sync([grid("owl", 1), moved, upscale(moved, 2)])
        assert ("fox", "fox/U2") == report.kept
        assert 3 == journal.tasks["fox"].row
        assert 3 == journal.tasks["fox/U2"].row
        assert "0001-fox" == journal.tasks["fox"].stem
        assert "0001-fox-U2" == journal.tasks["fox/U2"].stem
        assert "0001-owl" == journal.tasks["owl"].stem


@pytest.mark.anyio
async def test_a_follow_up_records_its_parent_and_button(tmp_path: pathlib.Path) -> None:
    """Kind, parent key, button, prompt and scale are stored as planned."""
    async with await open_journal(tmp_path) as journal:
        fox = grid("fox", 1, "a red fox")
        await journal.sync([fox, upscale(fox, 4)])
        record = journal.tasks["fox/U4"]
        assert (TaskKind.UPSCALE, "fox", "U4", "a red fox", "1:1", None) == (
            record.kind,
            record.parent_key,
            record.button,
            record.prompt,
            record.scale,
            record.source_image,
        )
        assert (0, False, None, None, None) == (
            record.creates_sent,
            record.retryable,
            record.job_id,
            record.error,
            record.credits,
        )


# -- the create protocol ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_intent_created_completed_survive_reopening(tmp_path: pathlib.Path) -> None:
    """Every step is committed: closing and reopening the file gives the same records."""
    fox, owl = grid("fox", 1), grid("owl", 2)
    async with await open_journal(tmp_path) as journal:
        await journal.sync([fox, owl])
        intent = await journal.intent("fox")
        assert (TaskState.INTENT, 1, None) == (intent.state, intent.creates_sent, intent.job_id)
        created = await journal.created("fox", "job-1")
        assert (TaskState.CREATED, "job-1") == (created.state, created.job_id)
        done = await journal.completed("fox", INFO, 2.5)
        assert (TaskState.COMPLETED, INFO, 2.5, None) == (
            done.state,
            done.info,
            done.credits,
            done.error,
        )
        await journal.output(output("fox", "grid"))
        await journal.output(output("fox", "q1"))
        await journal.intent("owl")
        await journal.created("owl", "job-2")
        await journal.note("owl", "still rendering")
        tasks, outputs = dict(journal.tasks), await journal.outputs_for(["fox", "owl"])

    async with await open_journal(tmp_path) as reopened:
        assert tasks == reopened.tasks
        assert outputs == await reopened.outputs_for(["fox", "owl"])
        assert [output("fox", "grid"), output("fox", "q1")] == await reopened.outputs_of("fox")
        assert ("grid", "q1") == reopened.output_names("fox")
        assert reopened.has_output("fox", "q1")
        assert not reopened.has_output("owl", "grid")
        assert "outputs=2>" in repr(reopened)
        assert (TaskState.CREATED, "job-2", "still rendering") == (
            reopened.tasks["owl"].state,
            reopened.tasks["owl"].job_id,
            reopened.tasks["owl"].error,
        )
        # A second sync of the same plan changes nothing of a created or completed task.
        report = await reopened.sync([fox, owl])
        assert ((), ("fox", "owl"), ()) == (report.added, report.kept, report.recovered)
        assert tasks["fox"] == reopened.tasks["fox"]


@pytest.mark.anyio
async def test_an_open_intent_is_recovered_as_unknown(tmp_path: pathlib.Path) -> None:
    """A create whose answer was never recorded becomes unknown on the next sync, and stays so."""
    fox, owl = grid("fox", 1), grid("owl", 2)
    async with await open_journal(tmp_path) as journal:
        await journal.sync([fox, owl])
        await journal.intent("fox")
        await journal.intent("owl")
        await journal.created("owl", "job-2")

    async with await open_journal(tmp_path) as journal:
        assert TaskState.INTENT == journal.tasks["fox"].state
        report = await journal.sync([fox, owl])
        assert ("fox",) == report.recovered
        assert ("fox", "owl") == report.kept
        record = journal.tasks["fox"]
        assert (TaskState.UNKNOWN, LOST_ANSWER, None, 1) == (
            record.state,
            record.error,
            record.job_id,
            record.creates_sent,
        )
        assert TaskState.CREATED == journal.tasks["owl"].state
        # Recovered once: the next sync reports nothing new and leaves it unknown.
        again = await journal.sync([fox, owl])
        assert () == again.recovered
        assert TaskState.UNKNOWN == journal.tasks["fox"].state


@pytest.mark.anyio
async def test_an_intent_dropped_from_the_plan_is_still_recovered(tmp_path: pathlib.Path) -> None:
    """A create that may have been paid for is reported even if its row left the file."""
    async with await open_journal(tmp_path) as journal:
        await journal.sync([grid("fox", 1)])
        await journal.intent("fox")
        report = await journal.sync([grid("owl", 1)])
        assert (("fox",), ("fox",)) == (report.recovered, report.removed)
        assert TaskState.UNKNOWN == journal.tasks["fox"].state


@pytest.mark.anyio
async def test_creates_sent_counts_every_intent(tmp_path: pathlib.Path) -> None:
    """Each intent is a create that may have been paid for: the count never goes back."""
    async with await open_journal(tmp_path) as journal:
        await journal.sync([grid("fox", 1)])
        await journal.intent("fox")
        await journal.unknown("fox", "the connection dropped")
        resubmitted = await journal.resubmit("fox")
        assert (TaskState.PENDING, 1) == (resubmitted.state, resubmitted.creates_sent)
        await journal.intent("fox")
        await journal.refused("fox", "rate limited")
        await journal.intent("fox")
        record = await journal.created("fox", "job-3")
        assert (3, TaskState.CREATED, None, False) == (
            record.creates_sent,
            record.state,
            record.error,
            record.retryable,
        )


@pytest.mark.anyio
async def test_resubmit_clears_the_earlier_attempt(tmp_path: pathlib.Path) -> None:
    """An unknown (or failed) task made pending again carries no id, error or info; what it was
    charged stays."""
    async with await open_journal(tmp_path) as journal:
        await journal.sync([grid("fox", 1)])
        await journal.intent("fox")
        await journal.created("fox", "job-1")
        failed = await journal.failed("fox", "Akool says: failed", INFO, 1.0)
        assert (TaskState.FAILED, "job-1", "Akool says: failed", INFO, 1.0, False) == (
            failed.state,
            failed.job_id,
            failed.error,
            failed.info,
            failed.credits,
            failed.retryable,
        )
        record = await journal.resubmit("fox")
        assert (TaskState.PENDING, None, None, None, 1.0, False, 1) == (
            record.state,
            record.job_id,
            record.error,
            record.info,
            record.credits,
            record.retryable,
            record.creates_sent,
        )


@pytest.mark.anyio
async def test_refused_is_retryable_and_an_intent_clears_it(tmp_path: pathlib.Path) -> None:
    """A create Akool refused made no job: failed, retryable; the next intent resets that."""
    async with await open_journal(tmp_path) as journal:
        await journal.sync([grid("fox", 1)])
        await journal.intent("fox")
        refused = await journal.refused("fox", "insufficient credit")
        assert (TaskState.FAILED, "insufficient credit", True, None) == (
            refused.state,
            refused.error,
            refused.retryable,
            refused.job_id,
        )
        intent = await journal.intent("fox")
        assert (TaskState.INTENT, None, False) == (intent.state, intent.error, intent.retryable)
        failed = await journal.failed("fox", "job failed", None, None)
        assert (False, None) == (failed.retryable, failed.info)

    async with await open_journal(tmp_path) as journal:
        assert journal.tasks["fox"].retryable is False


@pytest.mark.anyio
async def test_unknown_and_note_keep_what_they_do_not_name(tmp_path: pathlib.Path) -> None:
    """unknown() sets state and error; note() only the error; the job id stays."""
    async with await open_journal(tmp_path) as journal:
        await journal.sync([grid("fox", 1)])
        await journal.intent("fox")
        await journal.created("fox", "job-1")
        noted = await journal.note("fox", "waiting")
        assert (TaskState.CREATED, "job-1", "waiting") == (
            noted.state,
            noted.job_id,
            noted.error,
        )
        cleared = await journal.note("fox", None)
        assert cleared.error is None
        unknown = await journal.unknown("fox", "timed out")
        assert (TaskState.UNKNOWN, "job-1", "timed out") == (
            unknown.state,
            unknown.job_id,
            unknown.error,
        )


@pytest.mark.anyio
async def test_a_job_end_that_tells_no_charge_erases_nothing(tmp_path: pathlib.Path) -> None:
    """A create refused for good, a job that vanished, or one that ended without a charge
    (``cost`` None) keeps the credits earlier creates of the task were charged."""
    async with await open_journal(tmp_path) as journal:
        await journal.sync([grid("fox", 1)])
        await journal.intent("fox")
        await journal.created("fox", "job-1", 2.0)
        vanished = await journal.failed("fox", "Akool knows no such job", None, None)
        assert (TaskState.FAILED, 2.0) == (vanished.state, vanished.credits)
        completed = await journal.completed("fox", INFO, None)
        assert (TaskState.COMPLETED, 2.0) == (completed.state, completed.credits)
        charged = await journal.failed("fox", "Akool says: failed", INFO, 4.0)
        assert 4.0 == charged.credits

    async with await open_journal(tmp_path) as journal:
        assert 4.0 == journal.tasks["fox"].credits


@pytest.mark.anyio
async def test_a_task_counts_its_creates_whose_charge_was_never_reported(
    tmp_path: pathlib.Path,
) -> None:
    """A lost answer (unknown, or an intent a run left) adds one to ``unreported``; creating the
    task again, and its job's end, keep it and the credits; a press Akool shows never took
    effect is taken back off."""
    fox = grid("fox", 1)
    press = upscale(fox, 1)
    async with await open_journal(tmp_path) as journal:
        await journal.sync([fox, press])
        await journal.intent(fox.key)
        lost = await journal.unknown(fox.key, "the connection dropped")
        assert (None, 1) == (lost.credits, lost.unreported)
        assert 1 == (await journal.resubmit(fox.key)).unreported
        await journal.intent(fox.key)
        created = await journal.created(fox.key, "job-2", 2.0)
        assert (2.0, 1) == (created.credits, created.unreported)
        vanished = await journal.failed(fox.key, "Akool knows no such job", None, None)
        assert (TaskState.FAILED, 2.0, 1) == (vanished.state, vanished.credits, vanished.unreported)
        await journal.intent(press.key)

    async with await open_journal(tmp_path) as journal:
        assert 0 == journal.tasks[press.key].unreported
        await journal.sync([fox, press])
        assert (TaskState.UNKNOWN, 1) == (
            journal.tasks[press.key].state,
            journal.tasks[press.key].unreported,
        )
        again = await journal.resubmit(press.key, uncharged=True)
        assert (TaskState.PENDING, 0, 1) == (again.state, again.unreported, again.creates_sent)
        assert 0 == (await journal.resubmit(press.key, uncharged=True)).unreported
        assert 1 == journal.tasks[fox.key].unreported


_SCHEMA_2_TASKS = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tasks (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, row INTEGER NOT NULL, prompt TEXT NOT NULL,
    scale TEXT NOT NULL, source_image TEXT, parent_key TEXT REFERENCES tasks (key), button TEXT,
    stem TEXT NOT NULL, state TEXT NOT NULL, job_id TEXT, error TEXT, info TEXT, credits REAL,
    creates_sent INTEGER NOT NULL DEFAULT 0, retryable INTEGER NOT NULL DEFAULT 0,
    in_plan INTEGER NOT NULL DEFAULT 1, position INTEGER NOT NULL, updated_at REAL NOT NULL
);
PRAGMA user_version = 2;
"""


@pytest.mark.anyio
async def test_a_schema_2_journal_gets_its_unreported_creates(tmp_path: pathlib.Path) -> None:
    """A journal of the version before: opening it adds ``unreported``, 1 for a task whose last
    create's answer was lost (unknown, or accepted as lost after being sent), and the intent
    it left is counted when recovered; the file is schema 3 from then on."""
    path = tmp_path / JOURNAL_NAME
    connection = sqlite3.connect(path)
    try:
        connection.executescript(_SCHEMA_2_TASKS)
        connection.execute("INSERT INTO meta VALUES ('endpoint', ?)", (ENDPOINT,))
        rows = [  # key, state, credits, creates sent
            ("lost", "unknown", None, 1),
            ("again", "unknown", 2.0, 2),
            ("closed", "accepted", None, 1),
            ("never-sent", "accepted", None, 0),
            ("done", "completed", 2.0, 1),
            ("flying", "intent", None, 1),
        ]
        for position, (key, state, cost, sent) in enumerate(rows, start=1):
            connection.execute(
                "INSERT INTO tasks (key, kind, row, prompt, scale, stem, state, credits, "
                "creates_sent, position, updated_at) VALUES (?, 'grid', ?, ?, '1:1', ?, ?, ?, ?, "
                "?, 0)",
                (key, position, f"prompt {key}", key, state, cost, sent, position),
            )
        connection.commit()
    finally:
        connection.close()

    async with await open_journal(tmp_path) as journal:
        expected = {"lost": 1, "again": 1, "closed": 1, "never-sent": 0, "done": 0, "flying": 0}
        assert expected == {key: task.unreported for key, task in journal.tasks.items()}
        await journal.sync([grid(key, number) for number, (key, *_) in enumerate(rows, 1)])
        assert (TaskState.UNKNOWN, 1) == (
            journal.tasks["flying"].state,
            journal.tasks["flying"].unreported,
        )
        assert 2.0 == journal.tasks["again"].credits
    connection = sqlite3.connect(path)
    try:
        assert (3,) == connection.execute("PRAGMA user_version").fetchone()
    finally:
        connection.close()
    async with await open_journal(tmp_path) as journal:
        assert 1 == journal.tasks["lost"].unreported


@pytest.mark.anyio
async def test_updating_a_task_that_was_never_planned_raises(tmp_path: pathlib.Path) -> None:
    """A typo in a key is a KeyError, not a silent no-op."""
    async with await open_journal(tmp_path) as journal:
        await journal.sync([grid("fox", 1)])
        with pytest.raises(KeyError):
            await journal.created("owl", "job-1")
        with pytest.raises(KeyError):
            await journal.intent("owl")
        assert ["fox"] == list(journal.tasks)


@pytest.mark.anyio
async def test_outputs_are_recorded_replaced_and_forgotten(tmp_path: pathlib.Path) -> None:
    """A file's record can be replaced (re-downloaded) or forgotten (missing), durably."""
    async with await open_journal(tmp_path) as journal:
        await journal.sync([grid("fox", 1)])
        await journal.output(output("fox", "grid"))
        await journal.output(output("fox", "q1"))
        newer = OutputRecord(
            task_key="fox",
            name="grid",
            url="https://cdn.test/new.png",
            file="0001-fox-grid.png",
            sha256="cd" * 32,
            size=99,
        )
        await journal.output(newer)
        await journal.forget_output("fox", "q1")
        await journal.forget_output("fox", "q4")  # never recorded: nothing to do
        assert [newer] == await journal.outputs_of("fox")
        assert ("grid",) == journal.output_names("fox")

    async with await open_journal(tmp_path) as journal:
        assert [newer] == await journal.outputs_of("fox")
        assert ("grid",) == journal.output_names("fox")
        assert {} == await journal.outputs_for(["owl", "nobody"])


@pytest.mark.anyio
async def test_an_in_memory_journal_works(tmp_path: pathlib.Path) -> None:
    """``generate`` runs on a ':memory:' journal: same protocol, no file."""
    async with await Journal.open(":memory:", endpoint=ENDPOINT) as journal:
        await journal.sync([grid("fox", 1)])
        await journal.intent("fox")
        assert TaskState.CREATED == (await journal.created("fox", "job-1")).state
    assert [] == list(tmp_path.iterdir())


# -- refusals --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_another_endpoint_is_refused_naming_both(tmp_path: pathlib.Path) -> None:
    """Job ids of one endpoint mean nothing at another: the journal says whose it is."""
    async with await open_journal(tmp_path) as journal:
        await journal.sync([grid("fox", 1)])
        await journal.intent("fox")
    with pytest.raises(JournalError) as caught:
        await open_journal(tmp_path, "http://127.0.0.1:8123/")
    path = tmp_path / JOURNAL_NAME
    assert (
        f"the journal {str(path)!r} holds jobs of {ENDPOINT}, not of http://127.0.0.1:8123/: "
        "their ids mean nothing there. Run against the same endpoint, or choose another output "
        "folder"
    ) == str(caught.value)
    # The refusal changed nothing: the right endpoint still opens it.
    async with await open_journal(tmp_path) as journal:
        assert ["fox"] == list(journal.tasks)


@pytest.mark.anyio
async def test_a_journal_that_never_sent_anything_takes_another_endpoint(
    tmp_path: pathlib.Path,
) -> None:
    """A run that stopped before its first create (a wrong URL or key) binds nothing: the next
    endpoint takes the journal, its tasks kept; once one is sent, the endpoint is bound."""
    async with await open_journal(tmp_path, "http://127.0.0.1:1/") as journal:
        await journal.sync([grid("fox", 1)])
    async with await open_journal(tmp_path) as journal:
        assert {"fox": TaskState.PENDING} == states(journal)
        await journal.intent("fox")
    with pytest.raises(JournalError, match=f"holds jobs of {ENDPOINT}, not of http://127"):
        await open_journal(tmp_path, "http://127.0.0.1:1/")


@pytest.mark.anyio
async def test_an_endpoint_stored_with_a_password_is_the_same_endpoint_without_it(
    tmp_path: pathlib.Path,
) -> None:
    """An older journal that kept user info in its endpoint opens for the bare URL and forgets
    the password; another host is refused without showing it."""
    stored = "https://user:s3cretpw@openapi.akool.test/"
    async with await open_journal(tmp_path, stored) as journal:
        await journal.sync([grid("fox", 1)])
        await journal.intent("fox")
    with pytest.raises(JournalError) as caught:
        await open_journal(tmp_path, "http://127.0.0.1:9/")
    assert f"holds jobs of {ENDPOINT}, not of http://127.0.0.1:9/" in str(caught.value)
    async with await open_journal(tmp_path) as journal:
        assert ["fox"] == list(journal.tasks)
    with contextlib.closing(sqlite3.connect(tmp_path / JOURNAL_NAME)) as connection:
        query = "SELECT value FROM meta WHERE key = 'endpoint'"
        assert [(ENDPOINT,)] == connection.execute(query).fetchall()


@pytest.mark.anyio
async def test_a_newer_schema_is_refused(tmp_path: pathlib.Path) -> None:
    """A journal from a newer akool-async is not guessed at: the message says to upgrade."""
    async with await open_journal(tmp_path) as journal:
        await journal.sync([grid("fox", 1)])
    path = tmp_path / JOURNAL_NAME
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA user_version = 99")
        connection.commit()
    finally:
        connection.close()
    with pytest.raises(JournalError) as caught:
        await open_journal(tmp_path)
    assert (
        f"the journal {str(path)!r} was written by a newer akool-async (schema 99); upgrade "
        "akool-async to resume it"
    ) == str(caught.value)
    connection = sqlite3.connect(path)
    try:
        assert (99,) == connection.execute("PRAGMA user_version").fetchone()
    finally:
        connection.close()


@pytest.mark.anyio
async def test_a_file_that_is_not_sqlite_is_refused(tmp_path: pathlib.Path) -> None:
    """Random bytes where the journal should be: refused, and left as they were."""
    path = tmp_path / JOURNAL_NAME
    garbage = bytes(range(256)) * 16
    path.write_bytes(garbage)
    with pytest.raises(JournalError) as caught:
        await open_journal(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{str(path)!r} is not a usable akool-async journal (")
    assert message.endswith("move it away or choose another output folder")
    assert garbage == path.read_bytes()


@pytest.mark.anyio
async def test_a_journal_in_a_missing_folder_is_refused(tmp_path: pathlib.Path) -> None:
    """SQLite cannot create a file in a folder that does not exist: a JournalError says so."""
    with pytest.raises(JournalError) as caught:
        await open_journal(tmp_path / "missing")
    assert str(tmp_path / "missing" / JOURNAL_NAME) in str(caught.value)


@pytest.mark.anyio
async def test_a_batch_journal_holds_no_credential(tmp_path: pathlib.Path) -> None:
    """After a real batch, no file in --out holds the API key; the journal keeps the base URL."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox\nan owl\n", encoding="utf-8")
    out = tmp_path / "out"
    emulator = AkoolEmulator(time_scale=0.01, seed=3)
    async with emulator.serve() as url:
        env = {**os.environ, "AKOOL_BASE_URL": url, "AKOOL_API_KEY": TEST_API_KEY}
        result = await anyio.run_process(
            [
                *console_script(),
                "batch",
                str(prompts),
                "--out",
                str(out),
                "--upscale",
                "1",
                "--expected-duration",
                "0.5",
                "--target-lag",
                "0.1",
            ],
            env=env,
            check=False,
        )
    assert 0 == result.returncode, result.stderr.decode()
    assert 2 == emulator.requests_per_endpoint()["createbyprompt"]
    files = [path for path in out.rglob("*") if path.is_file()]
    assert out / JOURNAL_NAME in files
    for path in files:
        assert TEST_API_KEY.encode() not in path.read_bytes(), path
    connection = sqlite3.connect(out / JOURNAL_NAME)
    try:
        meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
        columns = {row[1] for row in connection.execute("PRAGMA table_info(tasks)")}
        columns |= {row[1] for row in connection.execute("PRAGMA table_info(outputs)")}
    finally:
        connection.close()
    assert {"endpoint", "created_at"} == set(meta)
    assert url.rstrip("/") + "/" == meta["endpoint"]
    assert not {"api_key", "token", "client_secret", "headers"} & columns


# -- durability ------------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import anyio
    from akool_async.cli._journal import Journal, PlannedTask, TaskKind

    async def main() -> None:
        journal = await Journal.open(sys.argv[1], endpoint=sys.argv[2])
        tasks = [
            PlannedTask(key=key, kind=TaskKind.GRID, row=row, prompt=key, scale="1:1", stem=key)
            for row, key in enumerate(["fox", "owl"], start=1)
        ]
        await journal.sync(tasks)
        await journal.intent("fox")
        await journal.created("fox", "job-fox")
        await journal.intent("owl")
        print("committed", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    anyio.run(main)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
@pytest.mark.anyio
async def test_commits_survive_a_kill_9(tmp_path: pathlib.Path) -> None:
    """A process killed right after its commits leaves both the id and the open intent on disk."""
    path = tmp_path / JOURNAL_NAME
    result = await anyio.run_process(
        [sys.executable, "-c", CHILD, str(path), ENDPOINT], check=False
    )
    assert -signal.SIGKILL == result.returncode, result.stderr.decode()
    assert b"committed\n" == result.stdout

    async with await Journal.open(path, endpoint=ENDPOINT) as journal:
        fox, owl = journal.tasks["fox"], journal.tasks["owl"]
        assert (TaskState.CREATED, "job-fox", 1) == (fox.state, fox.job_id, fox.creates_sent)
        assert (TaskState.INTENT, None, 1) == (owl.state, owl.job_id, owl.creates_sent)
        report = await journal.sync([grid("fox", 1), grid("owl", 2)])
        assert ("owl",) == report.recovered
        assert TaskState.UNKNOWN == journal.tasks["owl"].state
        assert TaskState.CREATED == journal.tasks["fox"].state
