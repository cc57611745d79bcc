"""The batch runner: create -> wait -> follow-ups -> download, journaled, resumable at any point.

Every paid create goes intent (committed) -> request -> id (committed), so a run killed at any
instant never loses a job id it received and never sends a create twice on its own. A re-run
walks the same tasks: ids it knows are polled, finished tasks are skipped, files that are
missing or differ from their recorded sha256 are fetched again.

A run that is asked to stop (`BatchRunner.interrupt`, on Ctrl+C) sends nothing more: a create
not yet sent is withdrawn (pending again), and one already sent runs to its answer, which is
recorded, while everything else stops. Which creates went out is told by the HTTP client
(`_outgoing`). A batch that cannot reach Akool at all stops instead of retrying for ever.
"""

from __future__ import annotations

import enum
import pathlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Final, Protocol

import anyio
import anyio.to_thread
import attrs

from akool_async._download import DownloadError, ResultExpired
from akool_async._errors import (
    AccountBanned,
    AkoolError,
    AuthenticationError,
    ContentNotFound,
    InsufficientCredit,
    InvalidInput,
    JobFailed,
    OperationNotAllowed,
    ParameterError,
    PaymentRequired,
    PermissionDenied,
    SubmissionUnknown,
    TransportError,
)
from akool_async._job import DEFAULT_MAX_BYTES
from akool_async._models import ImageInfo
from akool_async._paths import files_in
from akool_async._session import AkoolSession

from ._failures import is_unreachable
from ._files import broken_outputs, file_name, remove_part_files
from ._journal import Journal, OutputRecord, TaskKind, TaskRecord, TaskState
from ._manifest import (
    ENDED_STATUS,
    ManifestFile,
    ManifestLine,
    OutputStatus,
    manifest_chunks,
    manifest_lines,
    orphan_status,
)
from ._outgoing import Outgoing, Signature

__all__ = [
    "BatchAborted",
    "BatchOptions",
    "BatchRunner",
    "DisplayState",
    "Reporter",
    "Tally",
]

_MANIFEST_EVERY: Final = 2.0  # seconds between manifest rewrites while a batch runs
_REACH_CHECK_EVERY: Final = 1.0  # seconds between looks at whether Akool can be reached
_CHECK_TASKS: Final = 2000  # tasks whose recorded files are checked (read, hashed) at a time
_QUADRANTS: Final = ("q1", "q2", "q3", "q4")
# Refusals that say the account cannot create anything now: stop the batch instead of
# sending the same refused create for every row.
_FATAL: Final = (AuthenticationError, AccountBanned, InsufficientCredit, PaymentRequired,
                 PermissionDenied)  # fmt: skip
# Refusals of this create in particular, which repeating it would not change. Anything else
# (1108 "try again later", a rate limit, a create that provably never left) made no job: the
# next run tries again.
_FINAL: Final = (ParameterError, OperationNotAllowed, ContentNotFound, InvalidInput)


class DisplayState(enum.StrEnum):
    """Where the progress display shows a task, in the order it shows them.

    The last three are the endings a task is reported with (`OutputStatus`); the display has no
    ``pending``: a task not yet started this run is ``queued``.
    """

    QUEUED = "queued"
    CREATING = "creating"
    RUNNING = "running"
    DOWNLOADING = "downloading"
    COMPLETED = "completed"
    FAILED = "failed"
    UNKNOWN = "unknown"
    ACCEPTED_UNKNOWN = "accepted_unknown"


# How a task that ends in this run shows: as its ending, which has the same name.
_SHOWN_ENDING: Final = {ending: DisplayState(ending.value) for ending in ENDED_STATUS.values()}
_ENDINGS_SHOWN: Final = frozenset(_SHOWN_ENDING.values())
# How a task an earlier run finished shows, when this run has nothing left to do for it.
_SHOWN_ENDED: Final = {state: _SHOWN_ENDING[ending] for state, ending in ENDED_STATUS.items()}


class BatchAborted(AkoolError):
    """Akool refused a create for a reason that would refuse every other one (auth, credit), or
    could not be reached at all; its ``__cause__`` is that error."""


@attrs.frozen(kw_only=True)
class BatchOptions:
    """How a batch runs.

    Attributes:
        out: The output folder; files, the manifest and the journal go there.
        concurrency: Rows in flight at once (created and not yet finished and downloaded).
        quadrants: Also download each grid's four quadrant images.
        resubmit_unknown: Create again the unknown creates (ambiguous, or lost with a run) of
            every row (True), or of these row numbers.
        accept_unknown: Close the creates and presses still unknown as accepted losses, in
            every row (True) or in these row numbers.
        downloads: Downloads in flight at once.
        manifest: Write ``manifest.jsonl`` (off for a one-off ``generate``).
    """

    out: pathlib.Path
    concurrency: int = 32
    quadrants: bool = True
    resubmit_unknown: bool | frozenset[int] = False
    accept_unknown: bool | frozenset[int] = False
    downloads: int = 8
    manifest: bool = True

    def resubmits(self, row: int) -> bool:
        """Whether the unknown creates of ``row`` are to be created again."""
        return _chosen(self.resubmit_unknown, row)

    def accepts(self, row: int) -> bool:
        """Whether the unknown creates and presses of ``row`` are to be closed as losses."""
        return _chosen(self.accept_unknown, row)


def _chosen(rows: bool | frozenset[int], row: int) -> bool:
    return rows if isinstance(rows, bool) else row in rows


@attrs.define
class Tally:
    """Live counts for the progress display.

    ``credits`` is the one definition of credits spent that the display, the summary and the
    manifest share: the ``deduction_credit`` Akool reported for each job this run created,
    counted when the create's answer is recorded (or, if the answer did not say, when the job
    ends), once per create. The manifest's ``credits`` column sums the same amounts over every
    run. ``unknown_charges`` counts this run's creates and presses whose answer never came:
    they may have been charged, by an amount nobody was told.
    """

    tasks: int = 0
    todo: int = 0
    states: Counter[DisplayState] = attrs.field(factory=Counter[DisplayState])
    files: int = 0
    bytes: int = 0
    credits: float = 0.0
    unknown_charges: int = 0
    creates: int = 0
    finished: int = 0
    started_at: float = attrs.field(factory=time.monotonic)

    @property
    def done(self) -> int:
        """Tasks done: those earlier runs finished, and those this run finished."""
        return self.tasks - self.todo + self.finished

    def rate(self) -> float:
        """Tasks finished per second since the run started."""
        elapsed = time.monotonic() - self.started_at
        return self.finished / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds until the remaining tasks are done, at the rate so far."""
        rate = self.rate()
        remaining = self.todo - self.finished
        if rate <= 0 or remaining <= 0:
            return None if remaining > 0 else 0.0
        return remaining / rate


class Reporter(Protocol):
    """What the runner tells the progress display."""

    def event(self, kind: str, record: TaskRecord, detail: str | None = None) -> None:
        """Something happened to a task.

        ``kind`` is ``created``, ``downloaded``, or the `OutputStatus` the task ended with.
        """

    def note(self, message: str) -> None:
        """A line worth showing once (a resumed task, a re-fetched file)."""

    def refresh(self) -> None:
        """The tally changed."""


class BatchRunner:
    """Runs one batch's tasks against a session, recording every step in the journal."""

    def __init__(
        self,
        session: AkoolSession,
        journal: Journal,
        planned: Sequence[str],
        options: BatchOptions,
        reporter: Reporter,
        *,
        tally: Tally | None = None,
        relocated: bool = False,
    ) -> None:
        self.session = session
        self.journal = journal
        self.options = options
        self.reporter = reporter
        self.tally = tally if tally is not None else Tally()
        self._planned = list(planned)
        self._relocated = relocated
        self._rows = anyio.CapacityLimiter(options.concurrency)
        self._downloads = anyio.CapacityLimiter(options.downloads)
        # Why an output (task key, output name) could not be downloaded this run.
        self._download_errors: dict[tuple[str, str], str] = {}
        self._manifest_cost = 0.0
        # Where the display shows each task in flight; a task that ended this run is let go
        # (it ends once a run), so this holds the rows in flight, not every row of the batch.
        self._shown: dict[str, DisplayState] = {}
        self._stop = anyio.CancelScope()  # the rows: cancelled to stop them, even before they run
        self._aborted: AkoolError | None = None
        self._stopping = False
        self._outgoing = Outgoing()
        children: dict[str, list[str]] = {}
        for key in self._planned:
            parent = journal.tasks[key].parent_key
            if parent is not None:
                children.setdefault(parent, []).append(key)
        self._children = children

    # -- before any request ----------------------------------------------------------------------

    async def prepare(self) -> list[str]:
        """Check the files already recorded and clear leftovers; return the rows that need work.

        Sends nothing. A file that is missing or does not match its recorded sha256 is
        forgotten, so it is downloaded again.
        """
        await anyio.to_thread.run_sync(remove_part_files, self.options.out)
        for start in range(0, len(self._planned), _CHECK_TASKS):
            chunk = self._planned[start : start + _CHECK_TASKS]
            recorded = [
                output
                for outputs in (await self.journal.outputs_for(chunk)).values()
                for output in outputs
            ]
            broken = await anyio.to_thread.run_sync(broken_outputs, self.options.out, recorded)
            for output, reason in broken:
                await self.journal.forget_output(output.task_key, output.name)
                self.reporter.note(f"{output.file} {reason}: downloading it again")
        if self._relocated:
            await self._recreate_lost_jobs()
        todo = {key for key in self._planned if self._needs_work(key)}
        self.tally.tasks = len(self._planned)
        self.tally.todo = len(todo)
        for key in self._planned:
            self.tally.states[self._display_state(key, needs_work=key in todo)] += 1
        grids = [key for key in self._planned if self.journal.tasks[key].parent_key is None]
        return [
            key
            for key in grids
            if key in todo or any(child in todo for child in self._children.get(key, ()))
        ]

    async def _recreate_lost_jobs(self) -> None:
        # The jobs of an in-process emulator ended with the process that ran it: what is not
        # finished, or not downloaded, is created again (emulated credits cost nothing).
        for key in self._planned:
            record = self.journal.tasks[key]
            lost = record.state in {TaskState.CREATED, TaskState.UNKNOWN, TaskState.INTENT}
            if record.state is TaskState.COMPLETED and self._needs_work(key):
                lost = True
                for name in self.journal.output_names(key):
                    await self.journal.forget_output(key, name)
            if lost:
                await self.journal.resubmit(key)
                self.reporter.note(
                    f"row {record.row}: {record.button or 'grid'} job {record.job_id or '?'} "
                    "lived in an earlier run's in-process emulator; creating it again"
                )

    def _needs_work(self, key: str) -> bool:
        record = self.journal.tasks[key]
        if record.state is TaskState.COMPLETED:
            # Which outputs a job has depends on its kind, not on its info (which the journal's
            # mirror leaves out).
            info = ImageInfo.from_wire({"_id": record.job_id, "image_status": 3})
            return any(
                not self.journal.has_output(key, name) for name, _ in self._outputs_of(record, info)
            )
        if record.state is TaskState.FAILED:
            return record.retryable
        if record.state is TaskState.UNKNOWN:
            return (
                self.options.resubmits(record.row)
                or self.options.accepts(record.row)
                or record.parent_key is not None
            )
        return record.state is not TaskState.ACCEPTED

    # -- the run ---------------------------------------------------------------------------------

    @property
    def interrupted(self) -> bool:
        """Whether the run was asked to stop (`interrupt`)."""
        return self._stopping

    def interrupt(self) -> int:
        """Stop: send nothing more, withdraw the creates not sent yet, and let those already sent
        run to their answers (recorded as usual) while everything else stops.

        Returns:
            How many creates already sent the run still waits for.
        """
        self._stopping = True
        awaited = self._outgoing.interrupt()
        self._stop.cancel()  # the rows; a create already sent is shielded from it
        return awaited

    async def run(self, rows: Sequence[str]) -> None:
        """Run every row that needs work, ``concurrency`` at a time."""
        with self._outgoing.hooked(self.session.http_client):
            async with anyio.create_task_group() as group:
                group.start_soon(self._keep_manifest)
                group.start_soon(self._watch_reads)
                group.start_soon(self._watch_reach)
                with self._stop:
                    async with anyio.create_task_group() as row_group:
                        for key in rows:
                            slot = object()
                            await self._rows.acquire_on_behalf_of(slot)
                            row_group.start_soon(self._row, key, slot)
                group.cancel_scope.cancel()
        await self.write_manifest()
        if self._aborted is not None:
            raise BatchAborted(str(self._aborted)) from self._aborted

    async def _watch_reads(self) -> None:
        async for event in self.session.events():
            error = event.error
            if event.kind == "read_failed" and error is not None and is_unreachable(error):
                self._outgoing.cannot_reach(error)

    async def _watch_reach(self) -> None:
        """Stop the batch once no request has connected for a while (`Outgoing.unreachable`):
        status reads are retried without end, and nothing can succeed until Akool is back."""
        while True:
            await anyio.sleep(_REACH_CHECK_EVERY)
            error = self._outgoing.unreachable()
            if error is not None:
                self._abort(error)
                return

    def _abort(self, error: AkoolError) -> None:
        """Stop every row: ``error`` would refuse (or fail) every other create alike."""
        if self._aborted is None:
            self._aborted = error
        self._stop.cancel()

    async def _keep_manifest(self) -> None:
        # Every few seconds, but never more than about 5 % of the time: a manifest of a
        # 10,000-row batch takes a while to write.
        while True:
            await anyio.sleep(max(_MANIFEST_EVERY, 20 * self._manifest_cost))
            await self.write_manifest()

    def manifest_lines(self) -> AsyncIterator[ManifestLine]:
        """The manifest as it stands: one line per output, made as they are asked for."""
        return manifest_lines(self.journal, self._planned, self._download_errors)

    async def write_manifest(self) -> None:
        """Rewrite ``manifest.jsonl`` from the journal, atomically, a hundred lines at a time:
        the lines are made and encoded here, between the journal's changes, and written in a
        worker thread."""
        if not self.options.manifest:
            return
        started = time.monotonic()
        with anyio.CancelScope(shield=True):
            manifest = await anyio.to_thread.run_sync(ManifestFile, self.options.out)
            try:
                async for chunk in manifest_chunks(self.manifest_lines()):
                    await anyio.to_thread.run_sync(manifest.write, chunk)
            except BaseException:
                await anyio.to_thread.run_sync(manifest.discard)
                raise
            await anyio.to_thread.run_sync(manifest.commit)
        self._manifest_cost = time.monotonic() - started

    async def _row(self, key: str, slot: object) -> None:
        try:
            info = await self._task(key, None)
            children = self._children.get(key, [])
            if self._stopping or self._aborted is not None:
                return
            if info is None:
                grid = self.journal.tasks[key]
                status, reason = orphan_status(grid)
                for child in children:
                    if self._needs_work(child):
                        record = self.journal.tasks[child]
                        if status is OutputStatus.ACCEPTED_UNKNOWN:
                            record = await self.journal.accept(child, reason)
                        self._finish(record, status, reason)
            elif children:
                async with anyio.create_task_group() as group:
                    for child in children:
                        group.start_soon(self._task, child, info)
        finally:
            self._rows.release_on_behalf_of(slot)

    async def _task(self, key: str, parent: ImageInfo | None) -> ImageInfo | None:
        record = self.journal.tasks[key]
        if record.state is TaskState.UNKNOWN:
            record = await self._reconsider_unknown(record, parent)
            if record.state is TaskState.UNKNOWN and self.options.accepts(record.row):
                reason = f"accepted as lost (--accept-unknown): {record.error or 'unknown'}"
                record = await self.journal.accept(key, reason)
                self._finish(record, OutputStatus.ACCEPTED_UNKNOWN, reason)
                return None
            if record.state is TaskState.UNKNOWN:
                if parent is not None:
                    self._finish(record, OutputStatus.UNKNOWN, record.error)
                return None
        if record.state is TaskState.FAILED and record.retryable:
            record = await self.journal.resubmit(key)
        if record.state is TaskState.PENDING:
            record = await self._create(record, parent)
        if self._stopping:
            return None
        if record.state is TaskState.CREATED:
            record = await self._wait(record)
        if record.state is not TaskState.COMPLETED:
            return None
        # A task an earlier run completed comes from the journal's mirror, without its info.
        wire = record.info if record.info_text is not None else await self.journal.info(key)
        info = ImageInfo.from_wire(wire or {})
        await self._download_all(record, info)
        return info

    async def _reconsider_unknown(self, record: TaskRecord, parent: ImageInfo | None) -> TaskRecord:
        if record.parent_key is not None and parent is not None and record.button is not None:
            # A button can be pressed once: if Akool still offers it, the ambiguous press never
            # took effect and pressing it now cannot pay twice.
            try:
                fresh = await self.session.get_image_info(parent.id)
            except AkoolError as error:
                self.reporter.event(OutputStatus.UNKNOWN, record, f"cannot check the grid: {error}")
                return record
            if record.button in fresh.buttons and record.button not in fresh.used_buttons:
                self.reporter.note(
                    f"row {record.row}: {record.button} was never pressed on {parent.id} "
                    "(Akool still offers it); pressing it now"
                )
                return await self.journal.resubmit(record.key, uncharged=True)
            if self.options.resubmits(record.row):
                self.reporter.note(
                    f"row {record.row}: {record.button} cannot be pressed again on {parent.id}: "
                    "Akool lists it as used, so the earlier press took effect (and was charged), "
                    "but the job it made cannot be found. Run with --accept-unknown to close it"
                )
            return record
        if self.options.resubmits(record.row):
            self.reporter.note(f"row {record.row}: creating again (--resubmit-unknown)")
            return await self.journal.resubmit(record.key)
        return record

    async def _create(self, record: TaskRecord, parent: ImageInfo | None) -> TaskRecord:
        key = record.key
        if self._stopping:
            return record
        # Shielded from the row's cancellation: a create once sent runs to its answer, which is
        # recorded. `interrupt` cancels the scope of a create not sent yet, which withdraws it.
        with (
            anyio.CancelScope(shield=True) as scope,
            self._outgoing.creating(key, scope, _signature(record, parent)) as creating,
        ):
            try:
                return await self._send_create(record, parent)
            except anyio.get_cancelled_exc_class():
                if creating.withdrawn and not creating.sent:
                    with anyio.CancelScope(shield=True):
                        await self.journal.withdrawn(key)
                raise
        return self.journal.tasks[key]  # withdrawn before it was sent

    async def _send_create(self, record: TaskRecord, parent: ImageInfo | None) -> TaskRecord:
        """Intent, create, answer: each recorded in the journal before the next step."""
        key = record.key
        await self.journal.intent(key)
        self._move(record, DisplayState.CREATING)
        try:
            if record.kind is TaskKind.GRID:
                info = await self.session.create_by_prompt(
                    record.prompt, scale=record.scale, source_image=record.source_image
                )
            else:
                assert parent is not None  # noqa: S101 - children run after their grid
                assert record.button is not None  # noqa: S101 - children have a button
                info = await self.session.create_by_button(parent.id, record.button)
        except SubmissionUnknown as error:
            updated = await self.journal.unknown(key, str(error))
            self.tally.unknown_charges += 1
            self._finish(updated, OutputStatus.UNKNOWN, str(error))
            return updated
        except _FINAL as error:
            updated = await self.journal.failed(key, str(error), None, None)
            self._finish(updated, OutputStatus.FAILED, str(error))
            return updated
        except AkoolError as error:
            if is_unreachable(error):
                # Never sent (no connection was made), and no create can be until Akool is
                # back: pending again, told once by the batch's stop line, not row by row.
                self._outgoing.cannot_reach(error)
                updated = await self.journal.withdrawn(key)
                self._move(updated, DisplayState.QUEUED)
                self._abort(error)
                return updated
            if not isinstance(error, _FATAL):
                # Provably not delivered (after retries) or refused for now: no job, no charge.
                return await self._refused(key, f"{error} (not created: the next run tries again)")
            updated = await self._refused(
                key, f"{error} (not created: the batch stopped here; the next run goes on)"
            )
            # Every other create would be refused (or fail) alike: stop them all, keep what is done.
            self._abort(error)
            return updated
        cost = info.deduction_credit
        charged = None if cost is None else (self.journal.tasks[key].credits or 0) + cost
        updated = await self.journal.created(key, info.id, charged)
        self.tally.creates += 1
        self.tally.credits += cost or 0
        self._move(updated, DisplayState.RUNNING)
        self.reporter.event("created", updated, info.id)
        return updated

    async def _refused(self, key: str, reason: str) -> TaskRecord:
        """Record a create that made no job: failed in this run, created again by the next."""
        updated = await self.journal.refused(key, reason)
        self._finish(updated, OutputStatus.FAILED, reason)
        return updated

    async def _wait(self, record: TaskRecord) -> TaskRecord:
        assert record.job_id is not None  # noqa: S101 - created tasks have an id
        self._move(record, DisplayState.RUNNING)
        try:
            info = await self.session.job(record.job_id).wait()
        except JobFailed as error:
            final = error.info
            updated = await self.journal.failed(
                record.key, str(error), final.to_wire(), self._charge(record, final)
            )
            self._finish(updated, OutputStatus.FAILED, str(error))
            return updated
        except ContentNotFound as error:
            updated = await self.journal.failed(record.key, str(error), None, None)
            self._finish(updated, OutputStatus.FAILED, str(error))
            return updated
        except AkoolError as error:
            updated = await self.journal.note(
                record.key, f"still running when this run gave up waiting: {error}"
            )
            self._finish(updated, OutputStatus.UNKNOWN, str(error))
            return updated
        updated = await self.journal.completed(
            record.key, info.to_wire(), self._charge(record, info)
        )
        self._move(updated, DisplayState.DOWNLOADING)
        return updated

    async def _download_all(self, record: TaskRecord, info: ImageInfo) -> None:
        wanted = [
            (name, url)
            for name, url in self._outputs_of(record, info)
            if not self.journal.has_output(record.key, name)
        ]
        if not wanted:
            return
        self._move(record, DisplayState.DOWNLOADING)
        async with anyio.create_task_group() as group:
            for name, url in wanted:
                group.start_soon(self._download, record, info, name, url)
        failed = [name for name, _ in wanted if (record.key, name) in self._download_errors]
        if failed:
            self._finish(record, OutputStatus.FAILED, self._download_errors[record.key, failed[0]])
        else:
            self._finish(record, OutputStatus.COMPLETED, None)

    async def _download(
        self, record: TaskRecord, info: ImageInfo, name: str, url: str | None
    ) -> None:
        self._download_errors.pop((record.key, name), None)
        if url is None:
            self._download_errors[record.key, name] = (
                f"job {info.id} completed without a URL for its {name} image"
            )
            return
        expires = info.expires_at
        if expires is not None and datetime.now(UTC) >= expires:
            self._download_errors[record.key, name] = (
                f"the result expired at {expires:%Y-%m-%d %H:%M} UTC: Akool keeps results for "
                "seven days"
            )
            return
        try:
            file = file_name(record, name, url)
            [path] = await files_in(self.options.out, [file])
        except InvalidInput as error:  # a journal edited by hand, or a link out of the folder
            self._download_errors[record.key, name] = str(error)
            return
        try:
            async with self._downloads:
                download = await self.session.download_url(url, path, max_bytes=DEFAULT_MAX_BYTES)
        except (DownloadError, TransportError) as error:
            if is_unreachable(error):
                self._outgoing.cannot_reach(error)
            final = isinstance(error, ResultExpired)
            note = "" if final else " (the next run tries again)"
            self._download_errors[record.key, name] = f"{error}{note}"
            return
        await self.journal.output(
            OutputRecord(
                task_key=record.key,
                name=name,
                url=url,
                file=file,
                sha256=download.sha256,
                size=download.size,
            )
        )
        self.tally.files += 1
        self.tally.bytes += download.size
        self.reporter.event("downloaded", record, file)

    def _outputs_of(self, record: TaskRecord, info: ImageInfo) -> list[tuple[str, str | None]]:
        if record.kind is TaskKind.UPSCALE:
            return [("image", info.image)]
        outputs: list[tuple[str, str | None]] = [("grid", info.image)]
        if self.options.quadrants:
            urls = list(info.upscaled_urls) + [None] * len(_QUADRANTS)
            outputs.extend(zip(_QUADRANTS, urls, strict=False))
        return outputs

    # -- the tally -------------------------------------------------------------------------------

    def _display_state(self, key: str, *, needs_work: bool) -> DisplayState:
        if needs_work:
            return DisplayState.QUEUED
        return _SHOWN_ENDED.get(self.journal.tasks[key].state, DisplayState.QUEUED)

    def _move(self, record: TaskRecord, state: DisplayState) -> None:
        previous = self._shown.get(record.key, DisplayState.QUEUED)
        if previous == state:
            return
        if state in _ENDINGS_SHOWN:
            self._shown.pop(record.key, None)
        else:
            self._shown[record.key] = state
        self.tally.states[previous] -= 1
        self.tally.states[state] += 1
        self.reporter.refresh()

    def _finish(self, record: TaskRecord, ending: OutputStatus, detail: str | None) -> None:
        self._move(record, _SHOWN_ENDING[ending])
        self.tally.finished += 1
        self.reporter.event(ending, record, detail)

    def _charge(self, record: TaskRecord, info: ImageInfo) -> float | None:
        """What ``record`` was charged, once its job ended with ``info``.

        The charge its create's answer reported, when it did (counted then); else the job's
        own ``deduction_credit``, counted now, once.
        """
        if record.credits is not None or info.deduction_credit is None:
            return record.credits
        self.tally.credits += info.deduction_credit
        return info.deduction_credit


def _signature(record: TaskRecord, parent: ImageInfo | None) -> Signature:
    """What ``record``'s create will send, as the request hook reads it back (`_outgoing`)."""
    if record.kind is TaskKind.GRID:
        return ("createbyprompt", record.prompt, record.scale, record.source_image)
    return ("createbybutton", parent.id if parent is not None else None, record.button)
