"""``akool-async``: the batch flow (``batch``, ``generate``, ``demo``), Ctrl+C, and ``main``.

The single-job commands are in `_jobs`; what every command shares (its session, its log lines,
its output folder) is in `_shared`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import pathlib
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import anyio
import anyio.to_thread
import httpx

from akool_async._errors import (
    AkoolError,
    InvalidInput,
    MissingCredentials,
    WaitTimeout,
)
from akool_async._models import Scale
from akool_async._session import AkoolSession

from ._args import EMULATOR, PROG, parse_args
from ._batch import BatchAborted, BatchOptions, BatchRunner, Tally
from ._failures import (
    EXIT_FAILED,
    EXIT_USAGE,
    CommandError,
    explain,
    is_unreachable,
    os_error,
    unreachable_message,
)
from ._interrupt import Interruption
from ._jobs import JOB_COMMANDS, refuse_fresh_emulator
from ._journal import JOURNAL_NAME, Journal, JournalError, SyncReport, TaskState
from ._manifest import MANIFEST_NAME, ManifestLine, OutputStatus
from ._report import (
    JsonReporter,
    PlainReporter,
    RichReporter,
    Summary,
    make_reporter,
    terminal_safe,
    write_out,
)
from ._rows import Row, UsageError, check_row, parse_quadrants, plan_tasks, read_rows, slug
from ._shared import (
    IN_PROCESS_ENDPOINT,
    build_session,
    check_out,
    going_on,
    make_out,
    route_logs,
    tell,
)

__all__ = ["main"]

EXIT_OK: Final = 0
EXIT_INTERRUPTED: Final = 130
LOCK_NAME: Final = ".akool-journal.lock"
_BALANCE_WAIT: Final = 5.0  # seconds the optional balance read after a batch may take
_LISTED_AT_ONCE: Final = 2000  # file names written to stdout at a time by --list-files
# Seconds the first request of a batch (the balance) may take with its retries: enough for five
# quick failures to connect (refused, no such host, TLS), which then stop the batch at once.
_FIRST_REQUEST_WAIT: Final = 15.0

DEMO_PROMPTS: Final = (
    ("a red fox in fresh snow, morning light", "16:9"),
    ("a lighthouse on a cliff at dusk", "1:1"),
    ("a paper boat on a rainy street", "3:4"),
    ("an astronaut tending a rooftop garden", "9:16"),
    ("a steaming bowl of ramen, studio photo", "4:3"),
    ("a watercolour map of an imaginary island", "3:2"),
)


_NO_CREDENTIALS: Final = (
    "no Akool credentials found. Set AKOOL_API_KEY (or AKOOL_TOKEN, or AKOOL_CLIENT_ID and "
    "AKOOL_CLIENT_SECRET) in the environment, or pass --api-key; or add --emulator to run "
    "against the embedded Akool emulator, which needs no account and spends no credits "
    "(try: akool-async demo)."
)

logger = logging.getLogger("akool_async")


# -- sessions ------------------------------------------------------------------------------------


# -- batch and generate --------------------------------------------------------------------------


def _unknown_choices(
    options: argparse.Namespace,
) -> tuple[bool | frozenset[int], bool | frozenset[int]]:
    """``--resubmit-unknown`` and ``--accept-unknown``: each row may have one of them at most."""
    resubmit = getattr(options, "resubmit_unknown", False)
    accept = getattr(options, "accept_unknown", False)
    if resubmit is False or accept is False:
        return resubmit, accept
    if resubmit is True or accept is True:
        both = "every row"
    else:
        both = "row(s) " + ",".join(map(str, sorted(resubmit & accept)))
        if not resubmit & accept:
            return resubmit, accept
    raise UsageError(
        f"--resubmit-unknown and --accept-unknown both name {both}: choose one of them for each "
        "row (e.g. --resubmit-unknown 3 --accept-unknown 5,7)"
    )


async def _run_batch(
    options: argparse.Namespace,
    rows: list[Row],
    *,
    out: pathlib.Path,
    journal_path: str | None,
    title: str,
    interruption: Interruption,
) -> int:
    upscale = parse_quadrants("--upscale", options.upscale)
    vary = parse_quadrants("--vary", options.vary)
    resubmit, accept = _unknown_choices(options)
    await check_out(out)
    stem = None
    if journal_path is None:  # a one-off generate: names that do not collide with earlier ones
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        stem = f"{slug(rows[0].prompt)}-{stamp}"
    planned = plan_tasks(rows, upscale=upscale, vary=vary, stem=stem)
    row_count = len(rows)
    del rows  # the plan holds what the rows said; a long batch need not hold them too
    async with contextlib.AsyncExitStack() as stack:
        # Credentials are checked before the folder, its lock or its journal are made.
        session, endpoint = await build_session(
            options, stack, max_jobs=max(options.concurrency * 5, 100)
        )
        await make_out(out)
        if journal_path is not None:
            stack.push_async_callback(_release, await _lock(out))
        journal = await stack.enter_async_context(
            await Journal.open(journal_path or ":memory:", endpoint=endpoint)
        )
        report = await journal.sync(planned)
        keys = [task.key for task in planned]
        del planned  # the journal holds the plan now; a long batch need not hold it twice
        tally = Tally()
        reporter = make_reporter(tally, json_lines=options.json, title=title)
        stack.callback(route_logs(options, reporter))
        await stack.enter_async_context(session)
        runner = BatchRunner(
            session,
            journal,
            keys,
            BatchOptions(
                out=out,
                concurrency=options.concurrency,
                quadrants=options.quadrants,
                resubmit_unknown=resubmit,
                accept_unknown=accept,
                manifest=journal_path is not None,
            ),
            reporter,
            tally=tally,
            # An in-process emulator's jobs end with the process that ran it.
            relocated=endpoint == IN_PROCESS_ENDPOINT and bool(report.kept),
        )
        return await _drive(
            runner,
            reporter,
            report,
            row_count,
            manifest=out / MANIFEST_NAME if journal_path is not None else None,
            list_files=journal_path is None and not options.json,
            interruption=interruption,
        )


async def _drive(
    runner: BatchRunner,
    reporter: PlainReporter | JsonReporter | RichReporter,
    report: SyncReport,
    row_count: int,
    *,
    manifest: pathlib.Path | None,
    list_files: bool,
    interruption: Interruption,
) -> int:
    """Run a prepared batch with its display: notes, balance, the run, the summary."""
    out = runner.options.out
    rows_to_run = await runner.prepare()
    notes = _start_notes(report, runner.journal, row_count, out, journaled=manifest is not None)
    notes += _unmatched_rows(runner)
    before = after = None
    aborted: BatchAborted | None = None
    with anyio.CancelScope() as work:

        def stop() -> int:
            work.cancel()  # the balance read, or the rows (a create already sent is shielded)
            return runner.interrupt()

        with interruption.graceful(stop):
            if rows_to_run:
                before = await _balance(runner.session, first=True)
                if before is not None:
                    notes.append(f"Credit balance: {before:g}")
            else:
                notes.append("Nothing to do: every row is finished and its files check out.")
            reporter.start(notes)
            with reporter.running():
                try:
                    await runner.run(rows_to_run)
                except BatchAborted as error:
                    # The runner stops its rows itself and raises this one error, ungrouped.
                    aborted = error
    unreachable = aborted is not None and is_unreachable(aborted.__cause__ or aborted)
    if runner.interrupted:
        await runner.write_manifest()
    elif rows_to_run and not unreachable:
        after = await _balance(runner.session)
    summary = await _summarise(
        runner.tally,
        runner.manifest_lines(),
        report.removed,
        before=before,
        after=after,
        manifest=manifest,
        interrupted=runner.interrupted,
    )
    reporter.finish(summary)
    if runner.interrupted:
        return _interrupted(runner, reporter, journaled=manifest is not None)
    if aborted is not None:
        tell(_aborted_message(aborted, str(runner.session.base_url)))
        return EXIT_FAILED
    if list_files:
        await _list_files(runner, out)
    return summary.exit_status


def _interrupted(
    runner: BatchRunner, reporter: PlainReporter | JsonReporter | RichReporter, *, journaled: bool
) -> int:
    """Say the run was interrupted and, for a one-off generate (which, run again, would create
    anew), each job that goes on at Akool with the command that waits for it."""
    _tell_interrupted(reporter)
    if journaled:
        return EXIT_INTERRUPTED
    out = runner.options.out
    for record in runner.journal.tasks.values():
        if record.job_id is not None and record.state is TaskState.CREATED:
            tell(going_on(record.job_id, out))
    return EXIT_INTERRUPTED


def _tell_interrupted(reporter: PlainReporter | JsonReporter | RichReporter) -> None:
    """Say once that the run was interrupted: a text summary just said it; JSON lines did not
    in words, so stderr does."""
    if isinstance(reporter, JsonReporter):
        tell(
            "interrupted: every create that was sent has its answer recorded; run the same "
            "command again to go on"
        )


async def _list_files(runner: BatchRunner, out: pathlib.Path) -> None:
    """Print the path of every file the manifest lists, a few thousand at a time."""
    listed: list[str] = []
    async for line in runner.manifest_lines():
        if line.file:
            listed.append(f"{out / line.file}\n")
        if len(listed) >= _LISTED_AT_ONCE:
            write_out(sys.stdout, "".join(listed))
            listed.clear()
    write_out(sys.stdout, "".join(listed))


def _aborted_message(aborted: BatchAborted, base_url: str) -> str:
    cause = aborted.__cause__
    if cause is not None and is_unreachable(cause):
        return (
            f"stopped: {unreachable_message(cause, base_url)}. Nothing more was sent; run the "
            "same command again to go on."
        )
    return (
        f"stopped: Akool refused a create ({aborted}); nothing more was sent. Fix it and run "
        "the same command again to go on."
    )


async def _release(lock: Any) -> None:
    await anyio.to_thread.run_sync(lock.release)


async def _lock(out: pathlib.Path) -> Any:
    from filelock import FileLock, Timeout  # noqa: PLC0415 - the cli extra

    lock = FileLock(str(out / LOCK_NAME))
    try:
        await anyio.to_thread.run_sync(lambda: lock.acquire(timeout=0))
    except Timeout:
        raise UsageError(
            f"another akool-async run is working in {out} (it holds {out / LOCK_NAME}); wait for "
            "it to end, or choose another --out"
        ) from None
    return lock


async def _balance(session: AkoolSession, *, first: bool = False) -> float | None:
    """The credit balance: nice to show, never worth holding the batch for.

    With ``first`` it is the batch's first request, given time for its retries: a host that
    cannot be reached, credentials Akool refuses or an API root that is not Akool's then stop
    the batch here, before anything is paid for (a `CommandError`).
    """
    wait = _FIRST_REQUEST_WAIT if first else _BALANCE_WAIT
    with anyio.move_on_after(wait):
        try:
            return await session.get_credit()
        except AkoolError as error:
            failure = explain(error, str(session.base_url)) if first else None
            if failure is not None:
                raise failure from error
            logger.info("the credit balance is not available: %s", error)
            return None
    logger.info("the credit balance did not come within %g s; going on without it", wait)
    return None


def _start_notes(
    report: SyncReport, journal: Journal, row_count: int, out: pathlib.Path, *, journaled: bool
) -> list[str]:
    notes: list[str] = []
    if journaled:
        kept_rows = {journal.tasks[key].row for key in report.kept}
        notes.append(
            f"{row_count} row(s) in the file: {row_count - len(kept_rows)} new, "
            f"{len(kept_rows)} known from earlier runs; results in {out}/"
        )
    removed_rows = {journal.tasks[key].row for key in report.removed}
    if removed_rows:
        notes.append(
            f"{len(report.removed)} task(s) of {len(removed_rows)} earlier row(s) are no longer "
            "asked for: left alone (their files stay, the manifest keeps them with in_file false)"
        )
    if report.recovered:
        notes.append(
            f"{len(report.recovered)} create(s) were in flight when an earlier run ended: they "
            "may or may not have reached Akool and are reported as unknown"
        )
    return notes


def _unmatched_rows(runner: BatchRunner) -> list[str]:
    """A note per --resubmit-unknown / --accept-unknown that names rows with nothing unknown:
    a typo there would otherwise pass silently."""
    unknown = {
        record.row
        for record in runner.journal.tasks.values()
        if record.in_plan and record.state is TaskState.UNKNOWN
    }
    notes: list[str] = []
    for flag, chosen in (
        ("--resubmit-unknown", runner.options.resubmit_unknown),
        ("--accept-unknown", runner.options.accept_unknown),
    ):
        if isinstance(chosen, frozenset) and (idle := sorted(chosen - unknown)):
            rows = ", ".join(map(str, idle))
            notes.append(
                f"{flag}: row(s) {rows} have no unknown create or press; nothing to do for them"
            )
    return notes


async def _summarise(
    tally: Tally,
    lines: AsyncIterable[ManifestLine],
    removed: tuple[str, ...],
    *,
    before: float | None,
    after: float | None,
    manifest: pathlib.Path | None,
    interrupted: bool = False,
) -> Summary:
    # Each row's worst status so far, and the outputs per status: one pass over the lines.
    rows: dict[int, OutputStatus] = {}
    outputs: Counter[str] = Counter()
    unknown: list[str] = []
    lost: list[str] = []
    accepted: list[str] = []
    spent, untold = 0.0, 0  # over every run of the batch, the manifest's credits column
    async for line in lines:
        spent += line.credits or 0
        untold += line.unreported_creates
        if not line.in_file:
            continue
        outputs[line.status.value] += 1
        shown = rows.get(line.row)
        if shown is None or _WORST[line.status] < _WORST[shown]:
            rows[line.row] = line.status
        # The creates and presses accepted as lost; not the follow-ups of a grid accepted so,
        # which were never sent (they have no parent id).
        if line.status is OutputStatus.ACCEPTED_UNKNOWN and (line.button is None or line.parent_id):
            what = f" {line.button}" if line.button else ""
            accepted.append(f"row {line.row}{what}: {line.prompt!r}")
        if line.status is not OutputStatus.UNKNOWN or line.job_id is not None:
            continue
        if line.button is None:
            unknown.append(f"row {line.row}: {line.prompt!r}")
        elif not line.waiting_on_grid:
            lost.append(f"row {line.row} {line.button}: {line.prompt!r}")

    def count(status: OutputStatus) -> int:
        return sum(1 for shown in rows.values() if shown is status)

    return Summary(
        rows=len(rows),
        completed_rows=count(OutputStatus.COMPLETED),
        failed_rows=count(OutputStatus.FAILED),
        unknown_rows=count(OutputStatus.UNKNOWN),
        pending_rows=count(OutputStatus.PENDING),
        outputs=dict(outputs),
        files_written=tally.files,
        creates_sent=tally.creates,
        credits_used=tally.credits,
        unknown_charges=tally.unknown_charges,
        batch_credits=spent,
        batch_unknown_charges=untold,
        balance_before=before,
        balance_after=after,
        removed_rows=len(removed),
        unknown=tuple(unknown),
        lost_presses=tuple(lost),
        manifest=str(manifest) if manifest is not None else None,
        elapsed=time.monotonic() - tally.started_at,
        accepted_rows=count(OutputStatus.ACCEPTED_UNKNOWN),
        accepted=tuple(accepted),
        interrupted=interrupted,
    )


# A row's status is its worst output's, worst first (a loss accepted is worse than none, but
# closed).
_WORST: Final = {
    status: rank
    for rank, status in enumerate(
        (
            OutputStatus.FAILED,
            OutputStatus.UNKNOWN,
            OutputStatus.PENDING,
            OutputStatus.ACCEPTED_UNKNOWN,
            OutputStatus.COMPLETED,
        )
    )
}


async def cmd_batch(options: argparse.Namespace, interruption: Interruption) -> int:
    """``akool-async batch FILE --out DIR``."""
    # Read in the call, not kept here: `_run_batch` lets the rows go once they are planned.
    return await _run_batch(
        options,
        await anyio.to_thread.run_sync(
            lambda: read_rows(options.file, default_scale=options.scale)
        ),
        out=options.out,
        journal_path=str(options.out / JOURNAL_NAME),
        title=f"batch {options.file.name}",
        interruption=interruption,
    )


async def cmd_generate(options: argparse.Namespace, interruption: Interruption) -> int:
    """``akool-async generate PROMPT``."""
    fields = {
        "prompt": options.prompt,
        "scale": options.scale,
        "source_image": options.source_image,
    }
    try:
        row = check_row(1, 1, fields, options.scale, source_name="--source-image")
    except InvalidInput as error:
        raise UsageError(str(error)) from None
    options.concurrency = 1
    return await _run_batch(
        options,
        [row],
        out=options.out,
        journal_path=None,
        title="generate",
        interruption=interruption,
    )


async def cmd_demo(options: argparse.Namespace, interruption: Interruption) -> int:
    """``akool-async demo``: a short batch against the embedded emulator."""
    options.emulator = True
    options.upscale, options.vary, options.quadrants = "1", "2", True
    options.concurrency = len(DEMO_PROMPTS)
    options.resubmit_unknown = options.accept_unknown = False
    rows = [
        Row(number=number, line=number, prompt=prompt, scale=Scale(scale))
        for number, (prompt, scale) in enumerate(DEMO_PROMPTS, start=1)
    ]
    if not options.json:
        write_out(
            sys.stdout,
            f"Generating {len(rows)} prompts against the embedded Akool emulator (no account, "
            "no network): each grid, its quadrants, a U1 upscale and a V2 variation.\n",
        )
    return await _run_batch(
        options,
        rows,
        out=options.out,
        journal_path=str(options.out / JOURNAL_NAME),
        title="demo",
        interruption=interruption,
    )


# -- single jobs ---------------------------------------------------------------------------------


_BATCH_COMMANDS: Final[dict[str, Callable[[argparse.Namespace, Interruption], Awaitable[int]]]] = {
    "batch": cmd_batch,
    "generate": cmd_generate,
    "demo": cmd_demo,
}


async def _run_command(options: argparse.Namespace, interruption: Interruption) -> int:
    """Run the command while watching for Ctrl+C and SIGTERM (`Interruption`)."""
    name = options.command
    refuse_fresh_emulator(options)
    failure: Exception | None = None
    status = EXIT_INTERRUPTED
    scope = anyio.CancelScope()
    async with anyio.create_task_group() as group:
        await group.start(interruption.watch)
        with scope:

            def stop() -> int:
                scope.cancel()
                return 0

            with interruption.graceful(stop):
                try:
                    if name in _BATCH_COMMANDS:
                        status = await _BATCH_COMMANDS[name](options, interruption)
                    else:
                        status = await JOB_COMMANDS[name](options)
                except Exception as error:  # noqa: BLE001 - raised below, outside the group
                    failure = error
        group.cancel_scope.cancel()
    if failure is not None:
        raise failure
    if scope.cancelled_caught and not getattr(options, "interruption_told", False):
        tell("interrupted")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``akool-async``; the exit status (0 done, 1 failed or unknown, 2 usage, 130 Ctrl+C)."""
    options = parse_args(argv)
    if options.command == EMULATOR:
        from akool_async.testing.__main__ import serve  # noqa: PLC0415 - the emulator extra

        try:
            return anyio.run(serve, options, backend="asyncio")
        except KeyboardInterrupt:
            return EXIT_OK
    interruption = Interruption()
    try:
        # asyncio: `Interruption.stop_now` relies on it, and the journal's threads suit it.
        return anyio.run(_run_command, options, interruption, backend="asyncio")
    except (AkoolError, UsageError, httpx.HTTPError, OSError) as error:
        return _fail(*_explained(error))
    except KeyboardInterrupt:
        return _fail(_stopped_now(interruption), EXIT_INTERRUPTED)
    finally:
        if interruption.requested:
            # Everything is recorded and said: a signal more while the interpreter shuts down
            # must not turn exit status 130 into death by SIGINT.
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_IGN)


def _explained(error: AkoolError | UsageError | httpx.HTTPError | OSError) -> tuple[str, int]:  # noqa: PLR0911 - one per kind
    """What a command that ended with ``error`` says, and its exit status."""
    if isinstance(error, MissingCredentials):
        return _NO_CREDENTIALS, EXIT_USAGE
    if isinstance(error, CommandError):
        return str(error), error.status
    if isinstance(error, UsageError | JournalError | InvalidInput):
        return str(error), EXIT_USAGE
    if isinstance(error, WaitTimeout):
        message = (
            f"job {error.job_id} did not finish within {error.timeout:g} s; it goes on at Akool: "
            f"run `{PROG} wait {error.job_id}` to wait for it again"
        )
        return message, EXIT_FAILED
    if isinstance(error, AkoolError):  # JobFailed, refusals, transport errors
        return str(error), EXIT_FAILED
    if isinstance(error, httpx.HTTPError):
        return f"the request failed: {error}", EXIT_FAILED
    return os_error(error), EXIT_USAGE


def _stopped_now(interruption: Interruption) -> str:
    if interruption.stopped_now is None:
        return (
            "interrupted. Everything finished so far is recorded; run the same command again to "
            "resume."
        )
    return (
        f"{interruption.stopped_now}. A create sent without its answer yet stays an intent in "
        "the journal: the next run reports it as unknown. Run the same command again to resume."
    )


def _fail(message: str, status: int) -> int:
    sys.stderr.write(f"{PROG}: error: {terminal_safe(message)}\n")
    return status
