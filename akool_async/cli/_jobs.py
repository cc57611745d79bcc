"""The single-job commands: ``status``, ``wait``, ``upscale``, ``vary`` and ``credit``."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Final

import anyio

from akool_async._errors import SubmissionUnknown
from akool_async._models import ImageInfo
from akool_async._paths import files_in, image_suffix, safe_stem
from akool_async._session import AkoolSession

from ._args import PROG
from ._report import write_out
from ._rows import UsageError
from ._shared import check_out, check_writable, going_on, open_session, tell

__all__ = ["JOB_COMMANDS", "refuse_fresh_emulator"]

EXIT_OK: Final = 0
_QUADRANTS: Final = 4
# Commands about a job made elsewhere: an emulator started in their own process knows no job.
_KNOWN_JOB_COMMANDS: Final = frozenset({"status", "wait", "upscale", "vary"})
_FRESH_EMULATOR: Final = (
    "--emulator starts a fresh emulator in this process, which knows no job ID; serve one with "
    "`python -m akool_async.testing` (or `akool-async emulator`) and point AKOOL_BASE_URL at it "
    "instead"
)


def refuse_fresh_emulator(options: argparse.Namespace) -> None:
    """``--emulator`` for a command about an existing job: refused, since it cannot work.

    Raises:
        UsageError: With a pointer to a served emulator.
    """
    if options.emulator and options.command in _KNOWN_JOB_COMMANDS:
        raise UsageError(_FRESH_EMULATOR)


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
        await check_out(options.out)
        await check_writable(options.out)
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
    await check_out(out)
    await check_writable(out)  # before the press, which is paid for
    button = f"{verb}{options.n}"
    async with open_session(options, after=partial(_tell_orphans, button, options)) as session:
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
        try:
            info = await child.wait()
        except anyio.get_cancelled_exc_class():
            tell(f"interrupted: {going_on(child.id, out)}")
            options.interruption_told = True
            raise
        files = await _save(session, info, out)
    _emit(
        options,
        {"event": "completed", "job": info.to_wire(), "files": files},
        [*_describe_info(info), *(f"  saved: {file['path']}" for file in files)],
    )
    return EXIT_OK


def _tell_orphans(button: str, options: argparse.Namespace, session: AkoolSession) -> None:
    """After an interrupted press: the job it made, if its answer came after the interruption."""
    for orphan in session.orphaned_creates:
        if isinstance(orphan, SubmissionUnknown):
            tell(
                f"the press of {button} on {options.id} may or may not have reached Akool "
                f"({orphan.reason}); `{PROG} status {options.id}` shows whether it is used"
            )
        else:
            tell(
                f"pressed {button} on {options.id}: job {orphan.id} (its answer came after the "
                f"interruption); run `{PROG} wait {orphan.id} --out {options.out}` to fetch it"
            )


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


JOB_COMMANDS: Final[dict[str, Callable[[argparse.Namespace], Awaitable[int]]]] = {
    "status": cmd_status,
    "wait": cmd_wait,
    "upscale": cmd_upscale,
    "vary": cmd_vary,
    "credit": cmd_credit,
}
