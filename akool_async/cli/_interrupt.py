"""Ctrl+C and SIGTERM: the first stops a command gracefully; a second, or the grace's end, at once.

Gracefully means: nothing new is sent, and the creates already sent get their answers into the
journal (each is paid for at Akool whatever happens here), for at most `GRACE` seconds. The
command then ends with status 130. A second signal, or the end of the grace, stops the process at
once; a create still unanswered then stays an intent in the journal, which the next run reports
as unknown, never forgets.

Stopping at once has to get past the shields that keep a sent create running until its answer
(`akool_async._paid`): no cancellation does that by design. The command line runs on asyncio
(`main` chooses it), where a `KeyboardInterrupt` raised from a loop callback leaves the loop at
once; ``asyncio.run`` then cancels what is left, and ``main`` reports the interruption.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Generator
from typing import Final

import anyio
import anyio.abc

from ._args import PROG
from ._report import write_out

__all__ = ["GRACE", "Interruption"]

GRACE: Final = 10.0
"""Seconds the creates already sent get for their answers after the first Ctrl+C."""
_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)

Graceful = Callable[[], int]
"""Asks the running command to stop; returns how many creates already sent it waits for."""


class Interruption:
    """Watches for SIGINT and SIGTERM while a command runs (see the module's docstring).

    Args:
        grace: Seconds the creates already sent get after the first signal.
    """

    def __init__(self, *, grace: float = GRACE) -> None:
        self.grace = grace
        self.requested = False
        """Whether a first signal came: the command is stopping."""
        self.stopped_now: str | None = None
        """Why the process was stopped at once, if it was."""
        self._graceful: list[Graceful] = []

    @contextlib.contextmanager
    def graceful(self, stop: Graceful) -> Generator[None]:
        """While the block runs, a first signal calls ``stop`` (the innermost one only)."""
        self._graceful.append(stop)
        try:
            yield
        finally:
            self._graceful.remove(stop)

    async def watch(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Handle the signals until cancelled. Where signals cannot be caught this way (not the
        main thread, or Windows), Ctrl+C stays a plain `KeyboardInterrupt`."""
        with contextlib.ExitStack() as stack:
            try:
                signals = stack.enter_context(anyio.open_signal_receiver(*_SIGNALS))
            except (NotImplementedError, RuntimeError, ValueError):
                task_status.started()
                return
            task_status.started()
            async with anyio.create_task_group() as group:
                async for _ in signals:
                    if self.requested:
                        self.stop_now("stopped at once by a second signal")
                        continue
                    self.requested = True
                    awaited = self._graceful[-1]() if self._graceful else 0
                    write_out(sys.stderr, f"{PROG}: {self._notice(awaited)}\n")
                    group.start_soon(self._grace_ends)

    def _notice(self, awaited: int) -> str:
        if awaited:
            return (
                f"interrupted: waiting up to {self.grace:g} s for {awaited} create(s) already "
                "sent; press Ctrl+C again to stop now"
            )
        return "interrupted: stopping (no create is in flight); press Ctrl+C again to stop now"

    async def _grace_ends(self) -> None:
        await anyio.sleep(self.grace)
        self.stop_now(f"stopped at once: the {self.grace:g} s grace after Ctrl+C ended")

    def stop_now(self, why: str) -> None:
        """Leave the event loop at once with `KeyboardInterrupt` (see the module's docstring)."""
        if self.stopped_now is not None:
            return
        self.stopped_now = why
        asyncio.get_running_loop().call_soon(_interrupt)


def _interrupt() -> None:
    raise KeyboardInterrupt
