"""``manifest.jsonl``: one typed line per output of a batch, rebuilt from the journal.

The manifest is what a batch hands its user: every output the current plan asks for, in row
order, then those of tasks no longer asked for, each with its status, file and sha256. It is
rewritten whole and atomically (a hidden part file, fsynced, renamed into place), a hundred
lines at a time (`ManifestFile`, `manifest_chunks`): a batch of any length never holds its
whole manifest in memory.
"""

from __future__ import annotations

import enum
import json
import os
import pathlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, Final

import attrs

from ._files import part_file_for
from ._journal import Journal, OutputRecord, TaskKind, TaskRecord, TaskState

__all__ = [
    "ENDED_STATUS",
    "MANIFEST_NAME",
    "ChargeStatus",
    "ManifestFile",
    "ManifestLine",
    "OutputStatus",
    "manifest_chunks",
    "manifest_lines",
    "orphan_status",
]

MANIFEST_NAME: Final = "manifest.jsonl"
_CHUNK_LINES: Final = 100  # manifest lines serialised and written at a time (about 40 KB)
_CHUNK_TASKS: Final = 500  # tasks whose recorded files are read from the journal at a time


class OutputStatus(enum.StrEnum):
    """How an output stands: a manifest line's ``status``, and the ending a task is reported with.

    ``pending`` has no ending yet; the others are final for this run. ``accepted_unknown`` is an
    unknown create or press the user closed as a loss (``--accept-unknown``).
    """

    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    UNKNOWN = "unknown"
    ACCEPTED_UNKNOWN = "accepted_unknown"


class ChargeStatus(enum.StrEnum):
    """What a manifest line's ``credits`` says (its ``credits_status``).

    ``reported``: what Akool reported the job cost (``deduction_credit``), on the first line
    of a task. ``none``: nothing charged on this line (0): a task's other outputs, or a task
    never created. ``unknown``: a create or press that may have reached Akool and been charged,
    by an amount Akool never reported (its answer was lost): ``credits`` is null.
    ``partly_unknown``: ``credits`` is what Akool reported for some of the task's creates (one
    created again with ``--resubmit-unknown``); others were charged an amount it never
    reported. A line's ``unreported_creates`` says how many, in both unknown cases.
    """

    REPORTED = "reported"
    NONE = "none"
    UNKNOWN = "unknown"
    PARTLY_UNKNOWN = "partly_unknown"


ENDED_STATUS: Final[Mapping[TaskState, OutputStatus]] = {
    TaskState.COMPLETED: OutputStatus.COMPLETED,
    TaskState.FAILED: OutputStatus.FAILED,
    TaskState.UNKNOWN: OutputStatus.UNKNOWN,
    TaskState.ACCEPTED: OutputStatus.ACCEPTED_UNKNOWN,
}
"""The journal's final task states, as a manifest says them: the endings a task is reported with."""


# Not frozen: a batch of 10,000 rows rebuilds its 50,000 lines on the event loop every few
# seconds, and frozen attrs instances made that a third slower (measured: 160 ms against 120 ms).
@attrs.define(kw_only=True)
class ManifestLine:
    """One line of ``manifest.jsonl``: one output of one task. The fields are its keys, in order.

    Attributes:
        prompt: The row's prompt.
        row: The row's number in the prompt file the task was last planned from.
        job_id: Akool's id of the task's job; None before (or without) a create's answer.
        parent_id: For a follow-up, its grid's job id.
        button: For a follow-up, ``U1``..``V4``.
        status: How the output stands.
        file: The file's name in the output folder, once downloaded.
        sha256: The file's SHA-256, once downloaded.
        error: Why the output is not completed, when there is a reason.
        credits: What the task's creates were charged (Akool's ``deduction_credit``), on its
            first output only (0 on the others, and on a task never created); null when a
            create may have been charged an amount Akool never reported.
        credits_status: What ``credits`` says (`ChargeStatus`).
        unreported_creates: How many of the task's creates may have been charged an amount
            Akool never reported (their answers were lost), on its first output only.
        output: Which output: ``grid``, ``q1``..``q4``, or an upscale's ``image``.
        kind: Grid, upscale or variation.
        scale: The row's aspect ratio.
        in_file: Whether the current prompt file still asks for the task.
        waiting_on_grid: A follow-up never created because its grid did not complete (failed,
            unknown or unfinished), as opposed to one whose create may have reached Akool.
            Not written to the file.
    """

    prompt: str
    row: int
    job_id: str | None
    parent_id: str | None
    button: str | None
    status: OutputStatus
    file: str | None = None
    sha256: str | None = None
    error: str | None
    credits: float | None
    credits_status: ChargeStatus = ChargeStatus.NONE
    unreported_creates: int = 0
    output: str
    kind: TaskKind
    scale: str
    in_file: bool
    waiting_on_grid: bool = False

    def to_json(self) -> dict[str, Any]:
        """The line's JSON object, as written to the manifest: these keys, in this order."""
        return {
            "prompt": self.prompt,
            "row": self.row,
            "job_id": self.job_id,
            "parent_id": self.parent_id,
            "button": self.button,
            "status": self.status.value,
            "file": self.file,
            "sha256": self.sha256,
            "error": self.error,
            "credits": self.credits,
            "credits_status": self.credits_status.value,
            "unreported_creates": self.unreported_creates,
            "output": self.output,
            "kind": self.kind.value,
            "scale": self.scale,
            "in_file": self.in_file,
        }


def orphan_status(grid: TaskRecord) -> tuple[OutputStatus, str]:
    """How a follow-up stands when its grid did not complete: its status and why."""
    if grid.state is TaskState.FAILED:
        return OutputStatus.FAILED, "not created: its grid is failed"
    if grid.state is TaskState.UNKNOWN:
        return OutputStatus.UNKNOWN, "not created: its grid is unknown"
    if grid.state is TaskState.ACCEPTED:
        return OutputStatus.ACCEPTED_UNKNOWN, "not created: its grid was accepted as lost"
    return OutputStatus.UNKNOWN, "not created yet: its grid is not finished (the next run goes on)"


async def manifest_lines(
    journal: Journal,
    planned: Sequence[str],
    download_errors: Mapping[tuple[str, str], str] | None = None,
) -> AsyncIterator[ManifestLine]:
    """One line per output: the current plan's tasks in row order, then tasks no longer in it.

    Lines are made as they are asked for, from the journal as it stands then: the files of a
    few hundred tasks at a time are read from the journal's file, never a whole batch's.

    Args:
        journal: The batch's journal.
        planned: The keys of the tasks the current run asks for, in plan order.
        download_errors: Why a ``(task key, output name)`` could not be downloaded this run.
    """
    failures: dict[str, dict[str, str]] = {}
    for (task_key, name), error in (download_errors or {}).items():
        failures.setdefault(task_key, {})[name] = error
    for chunk in _ordered_chunks(journal, planned):
        outputs = await journal.outputs_for(
            [record.key for record in chunk if record.state is TaskState.COMPLETED]
        )
        for record in chunk:
            recorded = {output.name: output for output in outputs.get(record.key, ())}
            for line in _lines_of(
                journal, record, recorded, failures.get(record.key, {}), in_plan=record.in_plan
            ):
                yield line


def _ordered_chunks(journal: Journal, planned: Sequence[str]) -> Iterator[list[TaskRecord]]:
    """The journal's tasks in manifest order, ``_CHUNK_TASKS`` at a time: the plan's in plan
    order, then those no longer in it by row. Made a chunk at a time, with nothing held per
    task of the plan (a manifest is made every few seconds, at a long batch's peak memory)."""
    for start in range(0, len(planned), _CHUNK_TASKS):
        yield [journal.tasks[key] for key in planned[start : start + _CHUNK_TASKS]]
    # The plan is what the journal was synced with: its tasks are the ones marked in it.
    removed = sorted(
        (record for record in journal.tasks.values() if not record.in_plan),
        key=lambda record: (record.row, record.position),
    )
    for start in range(0, len(removed), _CHUNK_TASKS):
        yield removed[start : start + _CHUNK_TASKS]


def _lines_of(
    journal: Journal,
    record: TaskRecord,
    outputs: Mapping[str, OutputRecord],
    failures: Mapping[str, str],
    *,
    in_plan: bool,
) -> list[ManifestLine]:
    parent = journal.tasks.get(record.parent_key) if record.parent_key else None
    primary = "image" if record.kind is TaskKind.UPSCALE else "grid"
    line = partial(
        ManifestLine,
        prompt=record.prompt,
        row=record.row,
        job_id=record.job_id,
        parent_id=parent.job_id if parent is not None else None,
        button=record.button,
        kind=record.kind,
        scale=record.scale,
        in_file=in_plan,
    )
    if record.state is TaskState.COMPLETED:
        return _completed_lines(record, outputs, failures, primary, line)
    status, error, waiting_on_grid = _standing(record, parent)
    cost, charge, unreported = charge_of(record)
    return [
        line(
            output=primary,
            status=status,
            error=error,
            credits=cost,
            credits_status=charge,
            unreported_creates=unreported,
            waiting_on_grid=waiting_on_grid,
        )
    ]


def charge_of(record: TaskRecord) -> tuple[float | None, ChargeStatus, int]:
    """What a task was charged, as its first manifest line says it: the credits Akool
    reported, their status, and how many creates were charged an amount it never reported.

    Those are the creates whose answer was lost (the journal's ``unreported``), one in flight
    (an intent: a run's last words about it), and a job whose create's answer and end both
    left its charge untold.
    """
    cost = record.credits
    unreported = record.unreported + (record.state is TaskState.INTENT)
    if cost is None and record.job_id is not None:
        unreported += 1
    if not unreported:
        return (0, ChargeStatus.NONE, 0) if cost is None else (cost, ChargeStatus.REPORTED, 0)
    if cost is None:
        return None, ChargeStatus.UNKNOWN, unreported
    return cost, ChargeStatus.PARTLY_UNKNOWN, unreported


def _completed_lines(
    record: TaskRecord,
    outputs: Mapping[str, OutputRecord],
    failures: Mapping[str, str],
    primary: str,
    line: Callable[..., ManifestLine],
) -> list[ManifestLine]:
    """A completed task's lines: one per output, downloaded, failed or not yet downloaded."""
    names = sorted({*outputs, *failures, primary}, key=_output_order)
    lines: list[ManifestLine] = []
    first = charge_of(record)
    for index, name in enumerate(names):
        cost, charge, unreported = first if index == 0 else (0, ChargeStatus.NONE, 0)
        output = outputs.get(name)
        failure = failures.get(name)
        if output is not None:
            status, error, file, sha256 = OutputStatus.COMPLETED, None, output.file, output.sha256
        elif failure is not None:
            status, error, file, sha256 = OutputStatus.FAILED, failure, None, None
        else:
            status, error, file, sha256 = OutputStatus.PENDING, None, None, None
        lines.append(
            line(
                output=name,
                status=status,
                file=file,
                sha256=sha256,
                error=error,
                credits=cost,
                credits_status=charge,
                unreported_creates=unreported,
            )
        )
    return lines


def _standing(
    record: TaskRecord, parent: TaskRecord | None
) -> tuple[OutputStatus, str | None, bool]:
    """How a task that is not completed stands: its status, why, and if it waits on its grid."""
    status, error, waiting_on_grid = OutputStatus.PENDING, record.error, False
    if record.state in ENDED_STATUS:
        status = ENDED_STATUS[record.state]
    elif record.state is TaskState.PENDING and parent is not None:
        if parent.state in {TaskState.FAILED, TaskState.UNKNOWN, TaskState.ACCEPTED} or (
            parent.state is TaskState.CREATED and parent.error
        ):
            (status, error), waiting_on_grid = orphan_status(parent), True
    elif record.state is TaskState.CREATED and record.error:
        status = OutputStatus.UNKNOWN
    return status, error, waiting_on_grid


def _output_order(name: str) -> tuple[int, str]:
    return (0 if name in {"grid", "image"} else 1, name)


async def manifest_chunks(
    lines: AsyncIterable[ManifestLine], size: int = _CHUNK_LINES
) -> AsyncIterator[bytes]:
    """The manifest's text, UTF-8 encoded, ``size`` lines at a time.

    Small chunks, encoded here on the caller's thread: the worker thread that writes one
    (`ManifestFile.write`) allocates nothing for it. A manifest is rewritten every few
    seconds, and large short-lived blocks (chunks of a megabyte), made in whichever worker
    thread wrote them, stayed with the C allocator's pool of each thread: a long batch's peak
    RSS grew with its length.
    """
    chunk: list[str] = []
    async for line in lines:
        chunk.append(json.dumps(line.to_json(), ensure_ascii=False) + "\n")
        if len(chunk) >= size:
            yield "".join(chunk).encode("utf-8")
            chunk.clear()
    if chunk:
        yield "".join(chunk).encode("utf-8")


class ManifestFile:
    """A manifest being written: a hidden part file, renamed into place by `commit`.

    Every method blocks (run them in a worker thread); written in pieces, so that the text of
    a long batch's manifest is never whole in memory.
    """

    def __init__(self, out: pathlib.Path) -> None:
        self.target = out / MANIFEST_NAME
        self.temporary = part_file_for(self.target)
        self._file = self.temporary.open("wb")

    def write(self, data: bytes) -> None:
        """Append ``data``: UTF-8 text of whole lines (`manifest_chunks`)."""
        self._file.write(data)

    def commit(self) -> None:
        """Flush and fsync the part file, and rename it into place."""
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self.temporary.replace(self.target)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Close and remove the part file; the manifest in place is left as it was."""
        self._file.close()
        self.temporary.unlink(missing_ok=True)
