"""Scopes a session leaves on the stack of the task that opened it, released in a safe order.

A session's task group is entered in the task that opens the session, so its cancel scope sits
on that task's stack; anyio and trio both require scopes to be left in the reverse order of their
entering. Sessions opened A then B and closed A first would leave A's scope while B's is still
inside it ("cancel scope that isn't the current task's" on asyncio, "Nursery stack corrupted" on
trio).

So a session runs all its tasks in one background task, which it stops without touching any
scope of its opener's, and what stays on the opener's stack is only the task group that
background task ran in: empty once it has stopped. `HostScopes.release` leaves those scopes at
once when they are the innermost ones open in the task; otherwise as soon as every scope opened
after them has been released, in the right order. Closed in any order, sessions just work.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import anyio
import anyio.abc

from ._errors import SessionStateError

__all__ = ["Background", "HostScopes"]

_OPEN: contextvars.ContextVar[tuple[HostScopes, ...]] = contextvars.ContextVar(
    "akool_async_open_scopes", default=()
)
"""Scopes opened in this task (a task's context is its own), outermost first."""


class HostScopes:
    """The scopes one object left on its opener's stack, as an exit stack to close later.

    Args:
        stack: The exit stack holding the scopes (``AsyncExitStack.pop_all()`` of the block
            that entered them). Made in the task that entered them.
        owner: What the scopes belong to, for the error message.
    """

    __slots__ = ("_owner", "_released", "_stack", "_task")

    def __init__(self, stack: contextlib.AsyncExitStack, owner: str) -> None:
        self._stack = stack
        self._owner = owner
        self._task = anyio.get_current_task().id
        self._released = False
        _OPEN.set((*_OPEN.get(), self))

    def check_task(self) -> None:
        """Refuse, with a reason, to be released from another task than the opener's.

        Raises:
            SessionStateError: This is not the task that opened the scopes (a cancel scope can
                only be left by the task that entered it).
        """
        if anyio.get_current_task().id != self._task:
            raise SessionStateError(
                f"{self._owner} must be closed by the task that opened it: its task group "
                "belongs to that task (close it there, e.g. with `async with`); it is still open"
            )

    async def release(self) -> None:
        """Leave the scopes now if no scope opened after them is still open; else later, right
        after the last of those is released.

        Raises:
            SessionStateError: Called from another task than the one that opened the scopes.
        """
        if self._released:
            return
        self.check_task()
        self._released = True
        opened = _OPEN.get()
        if self not in opened:  # pragma: no cover - the opener's context was replaced
            await self._stack.aclose()
            return
        # Leave every released scope at the top of the stack, innermost first; one that fails
        # to close does not keep those below it open.
        failure: BaseException | None = None
        while opened and opened[-1]._released:  # noqa: SLF001 - the same class
            innermost, opened = opened[-1], opened[:-1]
            _OPEN.set(opened)
            try:
                await innermost._stack.aclose()  # noqa: SLF001 - the same class
            except BaseException as error:  # noqa: BLE001 - re-raised once all are closed
                failure = failure or error
        if failure is not None:
            raise failure


class Background:
    """One task that runs an object's own tasks, so that stopping them touches no scope of the
    task that opened the object (see the module's docstring).

    Start it with ``await task_group.start(background.run, contexts, tasks)``; `stop` cancels
    its tasks, and `stopped` waits until the contexts it entered have been left.
    """

    __slots__ = ("_done", "_scope")

    def __init__(self) -> None:
        self._scope: anyio.CancelScope | None = None
        self._done = anyio.Event()

    async def run(
        self,
        contexts: Sequence[contextlib.AbstractAsyncContextManager[object]],
        tasks: Sequence[Callable[[], Coroutine[Any, Any, object]]],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Enter ``contexts`` in order, run ``tasks`` until `stop`, then leave the contexts in
        reverse order (never cancelled: a server among them shuts down gracefully)."""
        try:
            async with contextlib.AsyncExitStack() as stack:
                for context in contexts:
                    await stack.enter_async_context(context)
                async with anyio.create_task_group() as task_group:
                    self._scope = task_group.cancel_scope
                    for task in tasks:
                        task_group.start_soon(task)
                    task_status.started()
        finally:
            self._done.set()

    def stop(self) -> None:
        """Cancel the tasks; the contexts are then left. Idempotent; safe from any task."""
        if self._scope is not None:
            self._scope.cancel()

    async def stopped(self) -> None:
        """Wait until the tasks have ended and the contexts have been left."""
        await self._done.wait()
