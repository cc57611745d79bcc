"""What every ``akool-async`` command shares: its session, its log lines, its output folder.

A command's session is Akool's (credentials and ``AKOOL_*`` variables) or, with ``--emulator``,
an emulator's in this process. Its log lines go where ``-v`` says. Its output folder is checked
(and, for a batch, made) before anything is sent, so that a folder that cannot be written is
one line, not a traceback after a paid create.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import pathlib
import sys
import tempfile
from collections.abc import AsyncGenerator, Callable
from typing import Final

import anyio
import anyio.to_thread
import attrs

from akool_async._config import base_url_problem
from akool_async._errors import AkoolError
from akool_async._polling import PollPolicy
from akool_async._session import AkoolSession
from akool_async._validate import http_url
from akool_async._wire import shown

from ._args import PROG
from ._failures import explain
from ._report import terminal_safe, write_out
from ._rows import UsageError

__all__ = [
    "IN_PROCESS_ENDPOINT",
    "build_session",
    "check_out",
    "check_writable",
    "make_out",
    "open_session",
    "route_logs",
    "tell",
]

# With --emulator the target lag shrinks with --time-scale, but not below this floor, which keeps
# a sped-up run from spending its time on status requests.
_SHORTEST_EMULATED_LAG: Final = 0.1
IN_PROCESS_ENDPOINT: Final = "in-process emulator"
_RETRY_LOG: Final = "; retry %d of %d in %.2f s"  # the end of the wire's retry log lines


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


async def build_session(
    options: argparse.Namespace, stack: contextlib.AsyncExitStack, *, max_jobs: int = 100
) -> tuple[AkoolSession, str]:
    """The session a command runs in (not yet open: nothing sent), and what its ids belong to.

    Raises:
        MissingCredentials: Neither flags nor ``AKOOL_*`` variables give credentials.
    """
    if options.emulator:
        from akool_async.testing import AkoolEmulator  # noqa: PLC0415 - the emulator extra

        # Overdraft: a batch of any size is served, each create still charged and counted.
        emulator = AkoolEmulator(time_scale=options.time_scale, seed=options.seed, overdraft=True)
        http = await stack.enter_async_context(emulator.client(timeout=30.0))
        session = AkoolSession(
            api_key=emulator.api_key,
            http_client=http,
            poll_policy=_poll_policy(options, emulated=True),
            max_jobs_in_flight=max_jobs,
        )
        return session, IN_PROCESS_ENDPOINT
    if options.base_url is not None:  # refused by its flag's name, not the SDK argument's
        http_url(options.base_url, base_url_problem("--base-url", options.base_url))
    session = AkoolSession(
        api_key=options.api_key,
        token=options.token,
        client_id=options.client_id,
        client_secret=options.client_secret,
        base_url=options.base_url,
        poll_policy=_poll_policy(options, emulated=False),
        max_jobs_in_flight=max_jobs,
    )
    # What the journal keeps: never a password given in the URL's user info.
    return session, shown(str(session.base_url))


@contextlib.asynccontextmanager
async def open_session(
    options: argparse.Namespace, *, after: Callable[[AkoolSession], None] | None = None
) -> AsyncGenerator[AkoolSession]:
    """An open session for a single-job command, logging as ``-v`` asks.

    A failure the user must fix (an unreachable host, refused credentials, an API root that is
    not Akool's) becomes a one-line `CommandError`. ``after`` is called once the session has
    closed, however the block ended.
    """
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(route_logs(options, None))
        session, _ = await build_session(options, stack)
        if after is not None:
            stack.callback(after, session)  # left after the session: its creates are settled
        await stack.enter_async_context(session)
        try:
            yield session
        except AkoolError as error:
            failure = explain(error, str(session.base_url))
            if failure is None:
                raise
            raise failure from error


async def check_out(out: pathlib.Path) -> None:
    path = anyio.Path(out)
    if await path.exists() and not await path.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder: choose a folder for the results")


async def make_out(out: pathlib.Path) -> None:
    """Make the output folder, and check that files can be made in it."""
    try:
        await anyio.Path(out).mkdir(parents=True, exist_ok=True)
        probe = anyio.Path(out / f".akool-probe-{id(out)}.part")
        await probe.touch()
        await probe.unlink()
    except OSError as error:
        raise _unwritable(out, error.strerror or str(error)) from None


async def check_writable(out: pathlib.Path) -> None:
    """Check, making nothing, that ``out`` is or can be made a folder that can be written."""
    problem = await anyio.to_thread.run_sync(_writable_problem, out)
    if problem is not None:
        raise _unwritable(out, problem)


def _writable_problem(out: pathlib.Path) -> str | None:
    existing = out.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return os.strerror(errno.ENOTDIR)
    if not os.access(existing, os.W_OK | os.X_OK):
        return os.strerror(errno.EACCES)
    # The permission bits are not the whole answer (root is let in everywhere, yet /sys,
    # /proc and read-only mounts refuse new files): a file made and removed is.
    try:
        handle, probe = tempfile.mkstemp(prefix=".akool-probe-", suffix=".part", dir=existing)
    except OSError as error:
        return error.strerror or str(error)
    os.close(handle)
    pathlib.Path(probe).unlink()
    return None


def _unwritable(out: pathlib.Path, reason: str) -> UsageError:
    return UsageError(f"cannot write in --out {out} ({reason}): choose a folder you can write to")


def going_on(job_id: str, out: pathlib.Path) -> str:
    """What is said of a job an interrupted command leaves running at Akool: how to go on."""
    return f"job {job_id} goes on at Akool; run `{PROG} wait {job_id} --out {out}` to go on"


def tell(message: str) -> None:
    write_out(sys.stderr, f"{PROG}: {terminal_safe(message)}\n")


def route_logs(options: argparse.Namespace, reporter: object) -> Callable[[], None]:
    """Send the SDK's log records where the display wants them; returns how to undo it.

    ``-v`` adds each request (httpx's line, with the URL and the HTTP status, its query
    removed) and each retry; ``-vv`` everything the SDK logs.
    """
    verbose = getattr(options, "verbose", 0)
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    console = getattr(reporter, "console", None)
    handler: logging.Handler
    if console is not None:
        from rich.logging import RichHandler  # noqa: PLC0415 - the cli extra

        handler = RichHandler(console=console, show_path=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_shown_record if verbose else _quiet_record)
    # httpx says INFO once per request; its DEBUG lines are about its own set-up.
    levels = {"akool_async": level, "httpx": logging.INFO if verbose else logging.WARNING}
    saved: dict[str, tuple[list[logging.Handler], int, bool]] = {}
    for name, wanted in levels.items():
        routed = logging.getLogger(name)
        saved[name] = (routed.handlers[:], routed.level, routed.propagate)
        routed.handlers[:] = [handler]
        routed.setLevel(wanted)
        routed.propagate = False

    def restore() -> None:
        for name, (handlers, old_level, propagate) in saved.items():
            routed = logging.getLogger(name)
            routed.handlers[:], routed.propagate = handlers, propagate
            routed.setLevel(old_level)

    return restore


def _is_retry(record: logging.LogRecord) -> bool:
    return isinstance(record.msg, str) and record.msg.endswith(_RETRY_LOG)


def _quiet_record(record: logging.LogRecord) -> bool:
    """Without ``-v``: no line per retry (the row's outcome, or one stop message, says it)."""
    return not _is_retry(record)


def _shown_record(record: logging.LogRecord) -> bool:
    """With ``-v``: httpx's request lines without the URL's query, which may hold a secret."""
    if record.name == "httpx" and isinstance(record.args, tuple) and len(record.args) > 1:
        method, url, *rest = record.args
        record.args = (method, shown(str(url)), *rest)
    return True
