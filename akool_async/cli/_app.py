"""``akool-async``: credentials, the emulator switch, the batch flow and the single-job commands."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import pathlib
import sys
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import anyio
import anyio.to_thread
import attrs
import httpx

from akool_async._errors import (
    AkoolError,
    InvalidInput,
    JobFailed,
    MissingCredentials,
    WaitTimeout,
)
from akool_async._models import ImageInfo, Scale
from akool_async._paths import files_in, image_suffix, safe_stem
from akool_async._polling import PollPolicy
from akool_async._session import AkoolSession

from ._args import EMULATOR, PROG, parse_args
from ._batch import BatchAborted, BatchOptions, BatchRunner, Tally
from ._journal import JOURNAL_NAME, Journal, JournalError, SyncReport
from ._manifest import MANIFEST_NAME, ManifestLine, OutputStatus, final_status
from ._report import JsonReporter, PlainReporter, RichReporter, Summary, make_reporter, write_out
from ._rows import Row, UsageError, check_row, parse_quadrants, plan_tasks, read_rows, slug

__all__ = ["main"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
# With --emulator the target lag shrinks with --time-scale, but not below this floor, which keeps
# a sped-up run from spending its time on status requests.
_SHORTEST_EMULATED_LAG: Final = 0.1
IN_PROCESS_ENDPOINT: Final = "in-process emulator"
LOCK_NAME: Final = ".akool-journal.lock"
_BALANCE_WAIT: Final = 5.0  # seconds the optional balance read may take
_QUADRANTS: Final = 4

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


def _emulator_grid_seconds() -> float:
    """A typical grid's duration (queue, render, quadrants) under the emulator's default timings.

    At time scale 1: about 46 s. Imports the emulator, so only for ``--emulator``.
    """
    from akool_async.testing import (  # noqa: PLC0415 - the emulator extra
        Duration,
        EmulatorTimings,
        Mixture,
        Pareto,
    )

    def typical(law: Duration | Mixture | Pareto) -> float:
        if isinstance(law, Duration):
            return law.median
        if isinstance(law, Pareto):
            return law.minimum * 2 ** (1 / law.shape)  # its median
        total = sum(weight for weight, _ in law.components)
        return sum(weight * typical(part) for weight, part in law.components) / total

    timings = EmulatorTimings()
    return sum(map(typical, (timings.grid_queue, timings.grid_processing, timings.quadrant_lag)))


def _poll_policy(options: argparse.Namespace, *, emulated: bool) -> PollPolicy:
    policy = PollPolicy()
    expected = options.expected_duration
    lag = options.target_lag
    if emulated:
        # The emulator's jobs take --time-scale times its default timings: so do these defaults.
        expected = expected or _emulator_grid_seconds() * options.time_scale
        lag = lag or max(policy.target_lag * options.time_scale, _SHORTEST_EMULATED_LAG)
    if expected is not None:
        policy = attrs.evolve(policy, expected_duration=expected)
    if lag is not None:
        policy = attrs.evolve(policy, target_lag=lag, min_interval=min(policy.min_interval, lag))
    return policy


async def _build_session(
    options: argparse.Namespace, stack: contextlib.AsyncExitStack, *, max_jobs: int = 100
) -> tuple[AkoolSession, str]:
    """The session a command runs in (not yet open: nothing sent), and what its ids belong to.

    Raises:
        MissingCredentials: Neither flags nor ``AKOOL_*`` variables give credentials.
    """
    if options.emulator:
        from akool_async.testing import AkoolEmulator  # noqa: PLC0415 - the emulator extra

        emulator = AkoolEmulator(time_scale=options.time_scale, seed=options.seed)
        http = await stack.enter_async_context(emulator.client(timeout=30.0))
        session = AkoolSession(
            api_key=emulator.api_key,
            http_client=http,
            poll_policy=_poll_policy(options, emulated=True),
            max_jobs_in_flight=max_jobs,
        )
        return session, IN_PROCESS_ENDPOINT
    session = AkoolSession(
        api_key=options.api_key,
        token=options.token,
        client_id=options.client_id,
        client_secret=options.client_secret,
        base_url=options.base_url,
        poll_policy=_poll_policy(options, emulated=False),
        max_jobs_in_flight=max_jobs,
    )
    return session, str(session.base_url)


@contextlib.asynccontextmanager
async def open_session(options: argparse.Namespace) -> AsyncGenerator[AkoolSession]:
    """An open session for a single-job command."""
    async with contextlib.AsyncExitStack() as stack:
        session, _ = await _build_session(options, stack)
        yield await stack.enter_async_context(session)


def _emit(options: argparse.Namespace, data: dict[str, Any], text: Sequence[str]) -> None:
    if options.json:
        write_out(sys.stdout, json.dumps(data, ensure_ascii=False, default=str) + "\n")
    else:
        write_out(sys.stdout, "".join(line + "\n" for line in text))


def _describe_info(info: ImageInfo) -> list[str]:
    lines = [f"job {info.id}: {info.status.name.lower()}"]
    if info.parent_id:
        lines.append(f"  made by {info.op_button or '?'} on job {info.parent_id}")
    if info.image:
        lines.append(f"  image: {info.image}")
    for number, url in enumerate(info.upscaled_urls, start=1):
        lines.append(f"  quadrant {number}: {url}")
    if info.buttons:
        lines.append(f"  buttons: {' '.join(info.buttons)}")
    if info.expires_at is not None:
        lines.append(f"  results expire: {info.expires_at:%Y-%m-%d %H:%M} UTC")
    return lines


# -- batch and generate --------------------------------------------------------------------------


async def _check_out(out: pathlib.Path) -> None:
    path = anyio.Path(out)
    if await path.exists() and not await path.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder: choose a folder for the results")


async def _run_batch(
    options: argparse.Namespace,
    rows: list[Row],
    *,
    out: pathlib.Path,
    journal_path: str | None,
    title: str,
) -> int:
    upscale = parse_quadrants("--upscale", options.upscale)
    vary = parse_quadrants("--vary", options.vary)
    await _check_out(out)
    stem = None
    if journal_path is None:  # a one-off generate: names that do not collide with earlier ones
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        stem = f"{slug(rows[0].prompt)}-{stamp}"
    planned = plan_tasks(rows, upscale=upscale, vary=vary, stem=stem)
    async with contextlib.AsyncExitStack() as stack:
        # Credentials are checked before the folder, its lock or its journal are made.
        session, endpoint = await _build_session(
            options, stack, max_jobs=max(options.concurrency * 5, 100)
        )
        await anyio.Path(out).mkdir(parents=True, exist_ok=True)
        if journal_path is not None:
            stack.push_async_callback(_release, await _lock(out))
        journal = await stack.enter_async_context(
            await Journal.open(journal_path or ":memory:", endpoint=endpoint)
        )
        report = await journal.sync(planned)
        tally = Tally()
        reporter = make_reporter(tally, json_lines=options.json, title=title)
        stack.callback(_route_logs(options, reporter))
        await stack.enter_async_context(session)
        runner = BatchRunner(
            session,
            journal,
            [task.key for task in planned],
            BatchOptions(
                out=out,
                concurrency=options.concurrency,
                quadrants=options.quadrants,
                resubmit_unknown=getattr(options, "resubmit_unknown", False),
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
            rows,
            manifest=out / MANIFEST_NAME if journal_path is not None else None,
            list_files=journal_path is None and not options.json,
        )


async def _drive(
    runner: BatchRunner,
    reporter: PlainReporter | JsonReporter | RichReporter,
    report: SyncReport,
    rows: list[Row],
    *,
    manifest: pathlib.Path | None,
    list_files: bool,
) -> int:
    """Run a prepared batch with its display: notes, balance, the run, the summary."""
    out = runner.options.out
    rows_to_run = await runner.prepare()
    notes = _start_notes(report, runner.journal, rows, out, journaled=manifest is not None)
    before = after = None
    if rows_to_run:
        before = await _balance(runner.session)
        if before is not None:
            notes.append(f"Credit balance: {before:g}")
    else:
        notes.append("Nothing to do: every row is finished and its files check out.")
    reporter.start(notes)
    aborted: BatchAborted | None = None
    with reporter.running():
        try:
            await runner.run(rows_to_run)
        except BatchAborted as error:
            # The runner stops its rows itself and raises this one error, ungrouped.
            aborted = error
    if rows_to_run:
        after = await _balance(runner.session)
    lines = runner.manifest_lines()
    summary = _summarise(
        runner.tally, lines, report.removed, before=before, after=after, manifest=manifest
    )
    reporter.finish(summary)
    if aborted is not None:
        sys.stderr.write(
            f"{PROG}: stopped: Akool refused a create ({aborted}); nothing more was sent. "
            "Fix it and run the same command again to go on.\n"
        )
        return EXIT_FAILED
    if list_files:
        write_out(sys.stdout, "".join(f"{out / line.file}\n" for line in lines if line.file))
    return summary.exit_status


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


async def _balance(session: AkoolSession) -> float | None:
    # Nice to show, never worth holding the batch for: one short try, no long backoff.
    with anyio.move_on_after(_BALANCE_WAIT):
        try:
            return await session.get_credit()
        except AkoolError as error:
            logger.info("the credit balance is not available: %s", error)
            return None
    logger.info("the credit balance did not come within %g s; going on without it", _BALANCE_WAIT)
    return None


def _start_notes(
    report: SyncReport, journal: Journal, rows: list[Row], out: pathlib.Path, *, journaled: bool
) -> list[str]:
    notes: list[str] = []
    if journaled:
        kept_rows = {journal.tasks[key].row for key in report.kept}
        notes.append(
            f"{len(rows)} row(s) in the file: {len(rows) - len(kept_rows)} new, "
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


def _summarise(
    tally: Tally,
    lines: list[ManifestLine],
    removed: tuple[str, ...],
    *,
    before: float | None,
    after: float | None,
    manifest: pathlib.Path | None,
) -> Summary:
    rows: dict[int, set[OutputStatus]] = {}
    unknown: list[str] = []
    lost: list[str] = []
    for line in lines:
        if not line.in_file:
            continue
        rows.setdefault(line.row, set()).add(line.status)
        if line.status is not OutputStatus.UNKNOWN or line.job_id is not None:
            continue
        if line.button is None:
            unknown.append(f"row {line.row}: {line.prompt!r}")
        elif not line.waiting_on_grid:
            lost.append(f"row {line.row} {line.button}: {line.prompt!r}")

    def count(status: OutputStatus) -> int:
        return sum(1 for statuses in rows.values() if _row_status(statuses) is status)

    return Summary(
        rows=len(rows),
        completed_rows=count(OutputStatus.COMPLETED),
        failed_rows=count(OutputStatus.FAILED),
        unknown_rows=count(OutputStatus.UNKNOWN),
        pending_rows=count(OutputStatus.PENDING),
        outputs=dict(final_status(lines)),
        files_written=tally.files,
        creates_sent=tally.creates,
        credits_used=tally.credits,
        balance_before=before,
        balance_after=after,
        removed_rows=len(removed),
        unknown=tuple(unknown),
        lost_presses=tuple(lost),
        manifest=str(manifest) if manifest is not None else None,
        elapsed=time.monotonic() - tally.started_at,
    )


def _row_status(statuses: set[OutputStatus]) -> OutputStatus:
    """A row's status: its worst output's."""
    for status in (OutputStatus.FAILED, OutputStatus.UNKNOWN, OutputStatus.PENDING):
        if status in statuses:
            return status
    return OutputStatus.COMPLETED


def _route_logs(options: argparse.Namespace, reporter: object) -> Callable[[], None]:
    """Send the SDK's log records where the display wants them; returns how to undo it."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(options.verbose, logging.DEBUG)
    console = getattr(reporter, "console", None)
    handler: logging.Handler
    if console is not None:
        from rich.logging import RichHandler  # noqa: PLC0415 - the cli extra

        handler = RichHandler(console=console, show_path=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("akool_async")
    saved = (root.handlers[:], root.level, root.propagate)
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False

    def restore() -> None:
        root.handlers[:], level, root.propagate = saved
        root.setLevel(level)

    return restore


async def cmd_batch(options: argparse.Namespace) -> int:
    """``akool-async batch FILE --out DIR``."""
    rows = await anyio.to_thread.run_sync(
        lambda: read_rows(options.file, default_scale=options.scale)
    )
    return await _run_batch(
        options,
        rows,
        out=options.out,
        journal_path=str(options.out / JOURNAL_NAME),
        title=f"batch {options.file.name}",
    )


async def cmd_generate(options: argparse.Namespace) -> int:
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
    return await _run_batch(options, [row], out=options.out, journal_path=None, title="generate")


async def cmd_demo(options: argparse.Namespace) -> int:
    """``akool-async demo``: a short batch against the embedded emulator."""
    options.emulator = True
    options.upscale, options.vary, options.quadrants = "1", "2", True
    options.concurrency = len(DEMO_PROMPTS)
    options.resubmit_unknown = False
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
    )


# -- single jobs ---------------------------------------------------------------------------------


async def cmd_status(options: argparse.Namespace) -> int:
    """``akool-async status ID``: one request."""
    async with open_session(options) as session:
        info = await session.get_image_info(options.id)
    _emit(options, {"event": "status", "job": info.to_wire()}, _describe_info(info))
    return EXIT_OK


async def cmd_wait(options: argparse.Namespace) -> int:
    """``akool-async wait ID``."""
    if options.out is not None:
        # The files are named after the id: one that cannot be a file name is refused unsent.
        safe_stem(options.id, what="job id", from_server=False)
        await _check_out(options.out)
    async with open_session(options) as session:
        job = session.job(options.id)
        info = await job.wait(timeout=options.timeout)
        files = await _save(session, info, options.out) if options.out is not None else []
    _emit(
        options,
        {"event": "completed", "job": info.to_wire(), "files": files},
        [*_describe_info(info), *(f"  saved: {file['path']}" for file in files)],
    )
    return EXIT_OK


async def _save(session: AkoolSession, info: ImageInfo, out: pathlib.Path) -> list[dict[str, Any]]:
    """Download a finished job's image (and a grid's quadrants) into ``out``, named by its id.

    Every name is checked, and ``out`` made, before the first byte is fetched.
    """
    stem = safe_stem(info.id, what="job id", from_server=True)
    wanted: list[tuple[str, str]] = []
    if info.image:
        wanted.append((f"{stem}{image_suffix(info.image)}", info.image))
    if not info.is_upscale:
        wanted.extend(
            (f"{stem}-{number}{image_suffix(url)}", url)
            # Four quadrants at most, however many URLs the answer lists.
            for number, url in enumerate(info.upscaled_urls[:_QUADRANTS], start=1)
        )
    paths = await files_in(out, [name for name, _ in wanted])
    files: list[dict[str, Any]] = []
    for path, (_, url) in zip(paths, wanted, strict=True):
        download = await session.download_url(url, path)
        files.append({"path": str(download.path), "sha256": download.sha256, "size": download.size})
    return files


async def _press(options: argparse.Namespace, verb: str) -> int:
    out: pathlib.Path = options.out
    await _check_out(out)
    async with open_session(options) as session:
        parent = session.job(options.id)
        child = await (parent.upscale(options.n) if verb == "U" else parent.vary(options.n))
        # The id first, so that an interrupted wait can be resumed with `akool-async wait ID`.
        _emit(
            options,
            {
                "event": "created",
                "job_id": child.id,
                "parent_id": parent.id,
                "button": f"{verb}{options.n}",
            },
            [f"pressed {verb}{options.n} on {parent.id}: job {child.id}"],
        )
        info = await child.wait()
        files = await _save(session, info, out)
    _emit(
        options,
        {"event": "completed", "job": info.to_wire(), "files": files},
        [*_describe_info(info), *(f"  saved: {file['path']}" for file in files)],
    )
    return EXIT_OK


async def cmd_upscale(options: argparse.Namespace) -> int:
    """``akool-async upscale ID N``."""
    return await _press(options, "U")


async def cmd_vary(options: argparse.Namespace) -> int:
    """``akool-async vary ID N``."""
    return await _press(options, "V")


async def cmd_credit(options: argparse.Namespace) -> int:
    """``akool-async credit``: one request."""
    async with open_session(options) as session:
        credit = await session.get_credit()
    _emit(options, {"event": "credit", "credit": credit}, [f"credit balance: {credit:g}"])
    return EXIT_OK


_COMMANDS: Final = {
    "batch": cmd_batch,
    "generate": cmd_generate,
    "demo": cmd_demo,
    "status": cmd_status,
    "wait": cmd_wait,
    "upscale": cmd_upscale,
    "vary": cmd_vary,
    "credit": cmd_credit,
}


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911 - one status per outcome
    """Run ``akool-async``; the exit status (0 done, 1 failed or unknown, 2 usage, 130 Ctrl+C)."""
    options = parse_args(argv)
    if options.command == EMULATOR:
        from akool_async.testing.__main__ import serve  # noqa: PLC0415 - the emulator extra

        try:
            return anyio.run(serve, options, backend="asyncio")
        except KeyboardInterrupt:
            return EXIT_OK
    command = _COMMANDS[options.command]
    try:
        return anyio.run(command, options, backend="asyncio")
    except MissingCredentials:
        return _fail(_NO_CREDENTIALS, EXIT_USAGE)
    except (UsageError, JournalError, InvalidInput) as error:
        return _fail(str(error), EXIT_USAGE)
    except JobFailed as error:
        return _fail(str(error), EXIT_FAILED)
    except WaitTimeout as error:
        return _fail(
            f"job {error.job_id} did not finish within {error.timeout:g} s; it goes on at Akool: "
            f"run `{PROG} wait {error.job_id}` to wait for it again",
            EXIT_FAILED,
        )
    except AkoolError as error:
        return _fail(str(error), EXIT_FAILED)
    except httpx.HTTPError as error:
        return _fail(f"the request failed: {error}", EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail(
            "interrupted. Everything finished so far is recorded; run the same command again to "
            "resume.",
            EXIT_INTERRUPTED,
        )


def _fail(message: str, status: int) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return status
