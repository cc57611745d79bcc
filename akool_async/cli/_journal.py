"""The batch journal: a SQLite file that makes a batch resumable and never pays twice.

Every paid create follows one protocol: the *intent* is committed before the request is sent,
the job id right after the answer. A run killed at any instant (``kill -9``, a power cut)
leaves each task in a state the next run can act on safely:

* ``pending``: nothing was sent; create it.
* ``intent``: the create may have reached Akool and its answer was lost with the process. The
  next run turns it into ``unknown``: Akool has no idempotency key and no way to list jobs,
  so only the user may decide to pay for it again (``--resubmit-unknown``).
* ``created``: the id is known; poll it, never create it again.
* ``completed`` / ``failed``: the job's end, with its result recorded.
* ``unknown``: an ambiguous create (`SubmissionUnknown`), reported and left alone.
* ``accepted``: an unknown create the user closed as a loss (``--accept-unknown``): final.

A run stopped by Ctrl+C waits for the creates already sent and records their answers; a create
it withdrew before sending goes back to ``pending`` (`Journal.withdrawn`).

Outputs (downloaded files) are recorded with their sha256 after the file was renamed into
place, so a file that is missing or differs from its record is fetched again.

The file is written through the standard library's ``sqlite3`` in a worker thread, one
statement batch at a time, with ``synchronous=FULL``: a commit has reached the disk when the
call returns. A journal holds no credential.
"""

from __future__ import annotations

import enum
import json
import pathlib
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, Final, Self, TypeVar

import anyio
import anyio.to_thread
import attrs
import httpx

from akool_async._errors import AkoolError
from akool_async._models import JobKind
from akool_async._wire import shown

__all__ = [
    "JOURNAL_NAME",
    "Journal",
    "JournalError",
    "OutputRecord",
    "PlannedTask",
    "SyncReport",
    "TaskKind",
    "TaskRecord",
    "TaskState",
]

JOURNAL_NAME: Final = ".akool-journal.sqlite3"
SCHEMA_VERSION: Final = 3
"""2 added the ``accepted`` state (the tables are unchanged): a version that does not know it
refuses the file instead of misreading it. 3 added ``tasks.unreported`` (`_migrate`)."""
_LOST_ANSWER: Final = (
    "the run that sent this create ended before its answer was recorded: it may or may not "
    "have reached Akool"
)
_T = TypeVar("_T")
_KEYS_PER_QUERY: Final = 500
"""Task keys per ``IN (...)`` query: well under SQLite's bound on a statement's parameters."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    key          TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    row          INTEGER NOT NULL,
    prompt       TEXT NOT NULL,
    scale        TEXT NOT NULL,
    source_image TEXT,
    parent_key   TEXT REFERENCES tasks (key),
    button       TEXT,
    stem         TEXT NOT NULL,
    state        TEXT NOT NULL,
    job_id       TEXT,
    error        TEXT,
    info         TEXT,
    credits      REAL,
    creates_sent INTEGER NOT NULL DEFAULT 0,
    unreported   INTEGER NOT NULL DEFAULT 0,
    retryable    INTEGER NOT NULL DEFAULT 0,
    in_plan      INTEGER NOT NULL DEFAULT 1,
    position     INTEGER NOT NULL,
    updated_at   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outputs (
    task_key TEXT NOT NULL REFERENCES tasks (key),
    name     TEXT NOT NULL,
    url      TEXT NOT NULL,
    file     TEXT NOT NULL,
    sha256   TEXT NOT NULL,
    size     INTEGER NOT NULL,
    PRIMARY KEY (task_key, name)
);
"""


class JournalError(AkoolError):
    """The journal file cannot be used: unreadable, from a newer version, or another endpoint's."""


TaskKind = JobKind
"""What a task creates: a prompt grid, or a button press on one. The library's one `JobKind`
(its values are what the journal stores)."""


class TaskState(enum.Enum):
    """Where a task is in the create -> wait -> download protocol."""

    PENDING = "pending"
    INTENT = "intent"
    CREATED = "created"
    COMPLETED = "completed"
    FAILED = "failed"
    UNKNOWN = "unknown"
    ACCEPTED = "accepted"


@attrs.frozen(kw_only=True)
class PlannedTask:
    """One task a batch asks for: a row's grid, or one follow-up button on it.

    Attributes:
        key: A stable identity across runs (the row's content, not its position).
        kind: Grid, upscale or variation.
        row: The row's number in the current prompt file (1-based).
        prompt: The row's prompt.
        scale: The row's aspect ratio.
        source_image: The row's source image URL, for image-to-image.
        parent_key: For a follow-up, the key of the grid task it presses a button on.
        button: For a follow-up, ``U1``..``V4``.
        stem: The file name stem its outputs get; fixed when the task is first planned.
    """

    key: str
    kind: TaskKind
    row: int
    prompt: str
    scale: str
    source_image: str | None = None
    parent_key: str | None = None
    button: str | None = None
    stem: str


@attrs.frozen(kw_only=True)
class TaskRecord:
    """A task as the journal knows it.

    The job's final description is kept as the journal stores it, JSON text (``info_text``),
    and parsed on demand (`info`). The records the journal's methods return carry it; those of
    `Journal.tasks` do not (`Journal.info` reads it from the file).

    ``credits`` is the sum of the ``deduction_credit`` Akool reported for the task's creates
    (None when it reported none); ``unreported`` counts its creates whose answer was lost, each
    charged (or not) an amount Akool never reported. A create that is provably uncharged (a
    button Akool still offers) is taken back off it.
    """

    key: str
    kind: TaskKind
    row: int
    prompt: str
    scale: str
    source_image: str | None
    parent_key: str | None
    button: str | None
    stem: str
    state: TaskState
    job_id: str | None
    error: str | None
    info_text: str | None = attrs.field(default=None, repr=False)
    credits: float | None
    creates_sent: int
    unreported: int = 0
    retryable: bool
    in_plan: bool
    position: int

    @property
    def info(self) -> dict[str, Any] | None:
        """The job's final description (wire form), once it ended; else None."""
        return json.loads(self.info_text) if self.info_text is not None else None


@attrs.frozen(kw_only=True)
class OutputRecord:
    """A downloaded file: which task and result it is, where it is, and its sha256."""

    task_key: str
    name: str
    url: str
    file: str
    sha256: str
    size: int


@attrs.frozen(kw_only=True)
class SyncReport:
    """How the current plan compares with what the journal held."""

    added: tuple[str, ...]
    kept: tuple[str, ...]
    removed: tuple[str, ...]
    recovered: tuple[str, ...]


_COLUMNS: Final = (
    "key, kind, row, prompt, scale, source_image, parent_key, button, stem, state, job_id, "
    "error, info, credits, creates_sent, retryable, in_plan, position, unreported"
)


_COLUMNS_NO_INFO: Final = _COLUMNS.replace("info, ", "")
_SHARED_TEXT: Final = ("key", "prompt", "source_image", "parent_key", "button", "stem", "job_id",
                       "error")  # fmt: skip
"""A record's text fields, which the mirror shares with the record it replaces when equal."""


def _record(row: Sequence[Any]) -> TaskRecord:
    (key, kind, number, prompt, scale, source, parent, button, stem, state, job_id, error, info,
     cost, sent, retryable, in_plan, position, unreported) = row  # fmt: skip
    return TaskRecord(
        key=key,
        kind=TaskKind(kind),
        row=number,
        prompt=prompt,
        scale=sys.intern(scale),  # one of a few aspect ratios: one string each, not one a task
        source_image=source,
        parent_key=parent,
        button=button,
        stem=stem,
        state=TaskState(state),
        job_id=job_id,
        error=error,
        info_text=info,
        credits=cost,
        creates_sent=sent,
        unreported=unreported,
        retryable=bool(retryable),
        in_plan=bool(in_plan),
        position=position,
    )


class Journal:
    """The SQLite journal of one output folder. Open it with `Journal.open`.

    Every method commits before it returns, from a worker thread, one call at a time. The
    journal's view of every task is mirrored in memory (`tasks`), with the names of the outputs
    each has recorded (`has_output`), so the questions a batch asks of every row cost nothing.
    The mirror changes only on the caller's thread, after the commit. It leaves out each job's
    final description (`info` reads it) and the output records themselves (`outputs_of`,
    `outputs_for`): a batch holds what its rows in flight need, not every finished row's
    result.
    """

    def __init__(self, connection: sqlite3.Connection, path: pathlib.Path) -> None:
        self._db = connection
        self.path = path
        self._limiter = anyio.CapacityLimiter(1)
        self.tasks: dict[str, TaskRecord] = {}
        # Which outputs each task has recorded, by name only: the records themselves (URL, file,
        # sha256) stay in the file until they are asked for (`outputs_of`, `outputs_for`).
        self._names: dict[str, tuple[str, ...]] = {}
        self._shapes: dict[tuple[str, ...], tuple[str, ...]] = {}

    def __repr__(self) -> str:
        return f"<Journal {str(self.path)!r} tasks={len(self.tasks)} outputs={self.output_count}>"

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: str | pathlib.Path, *, endpoint: str) -> Journal:
        """Open (or create) the journal at ``path`` for work against ``endpoint``.

        Args:
            path: The SQLite file, e.g. ``out/.akool-journal.sqlite3``.
            endpoint: What the job ids belong to (the API base URL). A journal kept for one
                endpoint refuses another: its ids mean nothing there.

        Raises:
            JournalError: The file is not a journal, is from a newer version, or belongs to
                another endpoint.
        """
        path = pathlib.Path(path)
        connection = await anyio.to_thread.run_sync(partial(_connect, path, endpoint))
        journal = cls(connection, path)
        journal._mirror(*await journal._run(journal._load))
        return journal

    async def close(self) -> None:
        """Close the file; every change was already committed."""
        await self._run(self._db.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with anyio.CancelScope(shield=True):
            await self.close()

    # -- the plan --------------------------------------------------------------------------------

    async def sync(self, planned: Iterable[PlannedTask]) -> SyncReport:
        """Record the tasks the current run asks for; keep what earlier runs did.

        New tasks are added as pending. Known tasks keep their state, id and file names and take
        the row number they have now. Tasks no longer asked for are left alone (not deleted, not
        run) and reported as removed. Intents left by a run that ended before its create was
        answered become unknown.
        """
        planned = list(planned)
        report, tasks, outputs = await self._run(partial(self._sync, planned))
        self._mirror(tasks, outputs)
        return report

    async def resubmit(self, key: str, *, uncharged: bool = False) -> TaskRecord:
        """Make an unknown (or retryable failed) task pending again, so it is created anew.

        Its ``credits`` and ``unreported`` stay: what an earlier create of it was charged was
        spent all the same, told or not. With ``uncharged``, its unknown create is known to
        have had no effect (a button Akool still offers): no longer counted as unreported.
        """
        return await self._update(
            key,
            unreported_by=-1 if uncharged else 0,
            state=TaskState.PENDING,
            job_id=None,
            info=None,
            error=None,
            retryable=0,
        )

    # -- the create protocol ---------------------------------------------------------------------

    async def intent(self, key: str) -> TaskRecord:
        """Commit the intent to create ``key``; call it right before sending the create."""
        self._known(key)
        return self._keep(await self._run(partial(self._intent, key)))

    async def created(self, key: str, job_id: str, charged: float | None = None) -> TaskRecord:
        """Commit the id Akool gave ``key``'s create; call it as soon as the answer is in.

        ``charged``, when given, is the task's charge so far, this create's included (the
        ``deduction_credit`` its answer reported, added to what earlier creates were charged).
        """
        if charged is None:
            return await self._update(key, state=TaskState.CREATED, job_id=job_id, error=None)
        return await self._update(
            key, state=TaskState.CREATED, job_id=job_id, error=None, credits=charged
        )

    async def unknown(self, key: str, error: str) -> TaskRecord:
        """The create may or may not have reached Akool: never re-send it on its own.

        Its charge, if any, is one Akool never reported: counted in ``unreported``.
        """
        return await self._update(key, unreported_by=1, state=TaskState.UNKNOWN, error=error)

    async def withdrawn(self, key: str) -> TaskRecord:
        """The create whose intent was recorded was stopped before it was sent: pending again.

        Only a task still at its intent changes (its ``creates_sent`` taken back); any other
        is left as it is.
        """
        self._known(key)
        return self._keep(await self._run(partial(self._withdraw, key)))

    async def accept(self, key: str, reason: str) -> TaskRecord:
        """Close an unknown task as a loss the user accepts: final, never created again."""
        return await self._update(key, state=TaskState.ACCEPTED, error=reason, retryable=0)

    async def refused(self, key: str, error: str) -> TaskRecord:
        """The create provably made no job (Akool refused it, or it never left): retry next run."""
        return await self._update(key, state=TaskState.FAILED, error=error, retryable=1)

    async def completed(self, key: str, info: dict[str, Any], cost: float | None) -> TaskRecord:
        """The job finished with a result; ``info`` is its final description (wire form).

        ``cost`` is the task's charge so far; None leaves the recorded ``credits`` as they are.
        """
        return await self._update(
            key,
            state=TaskState.COMPLETED,
            info=json.dumps(info, sort_keys=True),
            error=None,
            **_charged(cost),
        )

    async def failed(
        self, key: str, error: str, info: dict[str, Any] | None, cost: float | None
    ) -> TaskRecord:
        """The job ended failed (Akool said so, or it vanished): final, not retried.

        ``cost`` is the task's charge so far; None (a create refused, a job that vanished)
        leaves the recorded ``credits`` as they are: what earlier creates of it were charged
        is never erased.
        """
        return await self._update(
            key,
            state=TaskState.FAILED,
            error=error,
            info=json.dumps(info, sort_keys=True) if info is not None else None,
            retryable=0,
            **_charged(cost),
        )

    async def note(self, key: str, error: str | None) -> TaskRecord:
        """Record why a task is not finished yet (its state is unchanged)."""
        return await self._update(key, error=error)

    # -- outputs ---------------------------------------------------------------------------------

    async def output(self, record: OutputRecord) -> None:
        """Record a file written into place (after its rename)."""
        await self._run(partial(self._output, record))
        names = self._names.get(record.task_key, ())
        if record.name not in names:
            # Keyed by the mirror's own string for the key, not the caller's copy of it.
            task = self.tasks.get(record.task_key)
            self._name(task.key if task is not None else record.task_key, (*names, record.name))

    async def forget_output(self, task_key: str, name: str) -> None:
        """Forget a file that is missing or no longer matches its sha256."""
        await self._run(partial(self._forget_output, task_key, name))
        names = self._names.get(task_key, ())
        if name in names:
            self._name(task_key, tuple(other for other in names if other != name))

    async def info(self, key: str) -> dict[str, Any] | None:
        """The final description (wire form) of ``key``'s job, once it ended; else None."""
        self._known(key)
        return (await self._run(partial(self._reload, key))).info

    def has_output(self, task_key: str, name: str) -> bool:
        """Whether ``task_key`` has a file recorded for its output ``name``."""
        return name in self._names.get(task_key, ())

    def output_names(self, task_key: str) -> tuple[str, ...]:
        """The names of the outputs recorded for one task, in the order they were recorded."""
        return self._names.get(task_key, ())

    @property
    def output_count(self) -> int:
        """How many outputs are recorded, over every task."""
        return sum(len(names) for names in self._names.values())

    async def outputs_of(self, task_key: str) -> list[OutputRecord]:
        """The files recorded for one task, read from the file."""
        return (await self.outputs_for([task_key])).get(task_key, [])

    async def outputs_for(self, task_keys: Sequence[str]) -> dict[str, list[OutputRecord]]:
        """The files recorded for each of ``task_keys`` (those with none are left out).

        Read from the file: ask for a bounded number of tasks at a time (a chunk of a
        manifest), not for a whole batch.
        """
        wanted = [key for key in task_keys if key in self._names]
        found: dict[str, list[OutputRecord]] = {}
        for start in range(0, len(wanted), _KEYS_PER_QUERY):
            chunk = wanted[start : start + _KEYS_PER_QUERY]
            for record in await self._run(partial(self._outputs, chunk)):
                found.setdefault(record.task_key, []).append(record)
        return found

    def _mirror(self, tasks: dict[str, TaskRecord], names: dict[str, list[str]]) -> None:
        self.tasks = tasks
        self._names = {}
        self._shapes = {}
        for task_key, recorded in names.items():
            self._name(tasks[task_key].key if task_key in tasks else task_key, tuple(recorded))

    def _name(self, task_key: str, names: tuple[str, ...]) -> None:
        # Most tasks have one of a few sets of names ("grid", "q1".."q4"): share the tuples.
        if not names:
            self._names.pop(task_key, None)
            return
        self._names[task_key] = self._shapes.setdefault(names, names)

    def _known(self, key: str) -> None:
        if key not in self.tasks:
            raise KeyError(key)

    # -- inside the worker thread ----------------------------------------------------------------

    async def _run(self, function: Callable[[], _T]) -> _T:
        # One call at a time: sqlite3 connections are not for concurrent use. The thread is
        # never abandoned, so a cancelled caller still leaves a committed (or untouched) file.
        return await anyio.to_thread.run_sync(function, limiter=self._limiter)

    async def _update(self, key: str, *, unreported_by: int = 0, **changes: Any) -> TaskRecord:
        self._known(key)
        return self._keep(await self._run(partial(self._set, key, changes, unreported_by)))

    def _keep(self, record: TaskRecord) -> TaskRecord:
        """Mirror ``record`` without its job info; return it whole.

        The mirrored record keeps the strings of the one it replaces where they are equal (the
        key, prompt and stem never change after `sync`): a task's long-lived text is the copy
        made when the mirror was loaded, not a new one each time its state changes, scattered
        among a running batch's short-lived objects.
        """
        previous = self.tasks.get(record.key)
        shared: dict[str, Any] = {"info_text": None}
        if previous is not None:
            for name in _SHARED_TEXT:
                value = getattr(previous, name)
                if value is not None and value == getattr(record, name):
                    shared[name] = value
        self.tasks[record.key] = attrs.evolve(record, **shared)
        return record

    def _load(self) -> tuple[dict[str, TaskRecord], dict[str, list[str]]]:
        # Without the job infos (`info` reads one when it is wanted) and without the output
        # records: only which names each task has.
        tasks: dict[str, TaskRecord] = {}
        for row in self._db.execute(f"SELECT {_COLUMNS_NO_INFO} FROM tasks ORDER BY position"):  # noqa: S608 - constant columns
            record = _record((*row[:12], None, *row[12:]))
            tasks[record.key] = record
        names: dict[str, list[str]] = {}
        for task_key, name in self._db.execute("SELECT task_key, name FROM outputs ORDER BY rowid"):
            names.setdefault(task_key, []).append(sys.intern(name))
        return tasks, names

    def _outputs(self, task_keys: list[str]) -> list[OutputRecord]:
        marks = ", ".join("?" * len(task_keys))
        rows = self._db.execute(
            "SELECT task_key, name, url, file, sha256, size FROM outputs "  # noqa: S608 - placeholders only
            f"WHERE task_key IN ({marks}) ORDER BY rowid",
            task_keys,
        )
        return [
            OutputRecord(task_key=key, name=name, url=url, file=file, sha256=sha256, size=size)
            for key, name, url, file, sha256, size in rows
        ]

    def _reload(self, key: str) -> TaskRecord:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM tasks WHERE key = ?", (key,)).fetchone()  # noqa: S608 - constant columns
        if row is None:
            raise KeyError(key)
        return _record(row)

    def _set(self, key: str, changes: dict[str, Any], unreported_by: int = 0) -> TaskRecord:
        for name, value in changes.items():
            if isinstance(value, TaskState):
                changes[name] = value.value
        assignments = ", ".join(f"{name} = ?" for name in changes)
        with self._db:
            self._db.execute(
                f"UPDATE tasks SET {assignments}, updated_at = ?, "  # noqa: S608 - column names are ours
                "unreported = MAX(unreported + ?, 0) WHERE key = ?",
                (*changes.values(), time.time(), unreported_by, key),
            )
        return self._reload(key)

    def _intent(self, key: str) -> TaskRecord:
        with self._db:
            self._db.execute(
                "UPDATE tasks SET state = ?, error = NULL, retryable = 0, "
                "creates_sent = creates_sent + 1, updated_at = ? WHERE key = ?",
                (TaskState.INTENT.value, time.time(), key),
            )
        return self._reload(key)

    def _withdraw(self, key: str) -> TaskRecord:
        with self._db:
            self._db.execute(
                "UPDATE tasks SET state = ?, creates_sent = MAX(creates_sent - 1, 0), "
                "updated_at = ? WHERE key = ? AND state = ?",
                (TaskState.PENDING.value, time.time(), key, TaskState.INTENT.value),
            )
        return self._reload(key)

    def _sync(
        self, planned: list[PlannedTask]
    ) -> tuple[SyncReport, dict[str, TaskRecord], dict[str, list[str]]]:
        now = time.time()
        added: list[str] = []
        kept: list[str] = []
        with self._db:
            recovered = self._recover()
            self._db.execute("UPDATE tasks SET in_plan = 0")
            (position,) = self._db.execute(
                "SELECT COALESCE(MAX(position), 0) FROM tasks"
            ).fetchone()
            stems: dict[str, str] = dict(self._db.execute("SELECT key, stem FROM tasks"))
            used = {stem.casefold() for stem in stems.values()}
            planned_stems = {task.key: task.stem for task in planned}
            for task in planned:
                changed = self._db.execute(
                    "UPDATE tasks SET row = ?, in_plan = 1 WHERE key = ?", (task.row, task.key)
                ).rowcount
                if changed:
                    kept.append(task.key)
                    continue
                stem = _new_stem(task, stems, planned_stems, used)
                stems[task.key] = stem
                used.add(stem.casefold())
                position += 1
                self._insert(task, stem, position, now)
                added.append(task.key)
            removed = [
                key for (key,) in self._db.execute("SELECT key FROM tasks WHERE in_plan = 0")
            ]
        report = SyncReport(
            added=tuple(added), kept=tuple(kept), removed=tuple(removed), recovered=tuple(recovered)
        )
        return (report, *self._load())

    def _recover(self) -> list[str]:
        """Mark the tasks a crash left between intent and answer unknown; return their keys."""
        recovered = [
            key
            for (key,) in self._db.execute(
                "SELECT key FROM tasks WHERE state = ?", (TaskState.INTENT.value,)
            )
        ]
        self._db.execute(
            "UPDATE tasks SET state = ?, error = ?, unreported = unreported + 1 WHERE state = ?",
            (TaskState.UNKNOWN.value, _LOST_ANSWER, TaskState.INTENT.value),
        )
        return recovered

    def _insert(self, task: PlannedTask, stem: str, position: int, now: float) -> None:
        self._db.execute(
            "INSERT INTO tasks (key, kind, row, prompt, scale, source_image, parent_key, "
            "button, stem, state, position, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                task.key,
                task.kind.value,
                task.row,
                task.prompt,
                task.scale,
                task.source_image,
                task.parent_key,
                task.button,
                stem,
                TaskState.PENDING.value,
                position,
                now,
            ),
        )

    def _output(self, record: OutputRecord) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO outputs (task_key, name, url, file, sha256, size) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (record.task_key, record.name, record.url, record.file, record.sha256, record.size),
            )

    def _forget_output(self, task_key: str, name: str) -> None:
        with self._db:
            self._db.execute(
                "DELETE FROM outputs WHERE task_key = ? AND name = ?", (task_key, name)
            )


def _charged(cost: float | None) -> dict[str, Any]:
    """The ``credits`` change a job's end makes: none when it tells no charge."""
    return {} if cost is None else {"credits": cost}


def _new_stem(
    task: PlannedTask, stems: dict[str, str], planned: dict[str, str], used: set[str]
) -> str:
    """The stem a new task's files get: its planned one, unless an earlier task has it.

    A follow-up takes its grid's stem as recorded, so a grid renamed here keeps its follow-ups
    beside it. A grid whose stem is taken (a new row that got an old row's number and the same
    slug) gets ``-2``, ``-3``, ...: two tasks never write the same file.
    """
    if task.parent_key is not None and task.parent_key in stems:
        planned_parent = planned.get(task.parent_key, "")
        if task.stem.startswith(planned_parent):
            return stems[task.parent_key] + task.stem[len(planned_parent) :]
    stem, number = task.stem, 1
    while stem.casefold() in used:
        number += 1
        stem = f"{task.stem}-{number}"
    return stem


def _connect(path: pathlib.Path, endpoint: str) -> sqlite3.Connection:
    """Open the file, create or check its schema, and claim it for ``endpoint``. Blocking."""
    try:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as error:
        raise JournalError(f"cannot open the journal {str(path)!r}: {error}") from error
    try:
        _prepare(connection, path, endpoint)
    except BaseException:
        connection.close()
        raise
    # Statements run in explicit transactions (``with connection:``) from here on.
    connection.isolation_level = "DEFERRED"
    return connection


def _sent_anything(connection: sqlite3.Connection) -> bool:
    """Whether any task was ever sent (an intent recorded, or a job id): its ids bind the
    journal to its endpoint."""
    return (
        connection.execute(
            "SELECT 1 FROM tasks WHERE creates_sent > 0 OR job_id IS NOT NULL OR state != ? "
            "LIMIT 1",
            (TaskState.PENDING.value,),
        ).fetchone()
        is not None
    )


def _prepare(connection: sqlite3.Connection, path: pathlib.Path, endpoint: str) -> None:
    where = str(path)
    try:
        # WAL keeps the file readable by others (a watching script) while a run writes; FULL
        # makes every commit durable before the call returns, power cut included.
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA foreign_keys = ON")
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"the journal {where!r} was written by a newer akool-async (schema {version}); "
                "upgrade akool-async to resume it"
            )
        connection.executescript(_SCHEMA)
        _migrate(connection)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        row = connection.execute("SELECT value FROM meta WHERE key = 'endpoint'").fetchone()
    except sqlite3.DatabaseError as error:
        raise JournalError(
            f"{where!r} is not a usable akool-async journal ({error}); move it away or choose "
            "another output folder"
        ) from error
    if row is None:
        connection.execute(
            "INSERT INTO meta (key, value) VALUES ('endpoint', ?), ('created_at', ?)",
            (endpoint, str(time.time())),
        )
    elif row[0] != endpoint and (_bare(row[0]) == endpoint or not _sent_anything(connection)):
        # The same endpoint stored with its user info (never kept now), or a journal whose runs
        # never sent a create (a run that stopped at a wrong URL or key): it takes this one.
        connection.execute("UPDATE meta SET value = ? WHERE key = 'endpoint'", (endpoint,))
    elif row[0] != endpoint:
        raise JournalError(
            f"the journal {where!r} holds jobs of {_bare(row[0])}, not of {endpoint}: their ids "
            "mean nothing there. Run against the same endpoint, or choose another output folder"
        )


def _migrate(connection: sqlite3.Connection) -> None:
    """Bring a file of schema 1 or 2 to 3: add ``tasks.unreported``, in one transaction.

    A task whose last create's answer was lost (unknown, or accepted as lost) gets 1; what
    earlier creates of a task created again were charged was not recorded by those versions.
    """
    columns = {row[1] for row in connection.execute("PRAGMA table_info(tasks)")}
    if "unreported" in columns:
        return
    with connection:  # commits, or rolls back what an error interrupted
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ALTER TABLE tasks ADD COLUMN unreported INTEGER NOT NULL DEFAULT 0")
        connection.execute(
            "UPDATE tasks SET unreported = 1 WHERE creates_sent > 0 AND state IN (?, ?)",
            (TaskState.UNKNOWN.value, TaskState.ACCEPTED.value),
        )


def _bare(endpoint: str) -> str:
    """A stored endpoint without the user info older versions kept in it."""
    if "@" not in endpoint:
        return endpoint
    try:
        return shown(endpoint)
    except (httpx.InvalidURL, ValueError):
        return endpoint
