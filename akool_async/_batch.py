"""`AkoolSession.generate_many`: many prompts, a bounded number of jobs in flight, one outcome
per prompt in input order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from ._errors import AkoolError
from ._models import ImageInfo, Scale
from ._tracker import Outcome

if TYPE_CHECKING:
    from ._engine import Engine
    from ._job import ImageJob
    from ._session import AkoolSession

__all__ = ["Batch"]


class Batch:
    """One `generate_many` call: creators feed a bounded number of jobs in flight, and each job
    settles its prompt's place when it ends.

    A finished job is settled by a listener on its tracker, so thousands of jobs in flight cost
    no task and no waiter each; only a per-job deadline needs a waiting task. A listener is
    removed as its job settles, and whatever is still attached when the call ends (it was
    cancelled) is removed then: a long-lived session keeps nothing of a finished batch.

    Args:
        session: The session creating the jobs.
        engine: Its engine, which follows them.
        prompts: The checked prompts.
        scale: One aspect ratio for all of them.
        in_flight: Jobs created and not yet finished, at most.
        timeout: A deadline per job, in seconds, from its creation; None for none.
    """

    def __init__(
        self,
        session: AkoolSession,
        engine: Engine,
        prompts: Sequence[str],
        *,
        scale: Scale,
        in_flight: int,
        timeout: float | None,
    ) -> None:
        self._session = session
        self._engine = engine
        self._prompts = prompts
        self._scale = scale
        self._timeout = timeout
        self._slots = anyio.CapacityLimiter(in_flight)
        self._pending = iter(range(len(prompts)))
        self._results: list[Outcome | None] = [None] * len(prompts)
        self._unsettled = len(prompts)
        self._settled = anyio.Event()
        self._attached: dict[int, Callable[[], None]] = {}  # by prompt: detaches its listener

    async def run(self, creators: int) -> list[Outcome]:
        """Run the batch with ``creators`` creating tasks; the outcomes in input order."""
        if not self._prompts:
            return []
        try:
            async with anyio.create_task_group() as task_group:
                for _ in range(creators):
                    task_group.start_soon(self._create_next, task_group)
                await self._settled.wait()
        finally:
            for detach in list(self._attached.values()):
                detach()
            self._attached.clear()
        return [result for result in self._results if result is not None]

    async def _create_next(self, task_group: anyio.abc.TaskGroup) -> None:
        for index in self._pending:
            slot = object()
            await self._slots.acquire_on_behalf_of(slot)
            try:
                job = await self._session.generate(self._prompts[index], scale=self._scale)
            except AkoolError as error:
                self._settle(index, slot, error)
                continue
            if self._timeout is not None:
                task_group.start_soon(self._wait_with_deadline, index, slot, job)
                continue
            self._follow(index, slot, job.id)

    def _follow(self, index: int, slot: object, job_id: str) -> None:
        engine = self._engine
        final = engine.final(job_id)
        if final is not None:
            self._settle(index, slot, final)
            return
        release = engine.hold(job_id)
        remove = engine.add_listener(job_id, partial(self._settle, index, slot))

        def detach() -> None:
            remove()
            release()

        self._attached[index] = detach

    async def _wait_with_deadline(self, index: int, slot: object, job: ImageJob) -> None:
        try:
            outcome: ImageInfo | AkoolError = await job.wait(timeout=self._timeout)
        except AkoolError as error:
            outcome = error
        self._settle(index, slot, outcome)

    def _settle(self, index: int, slot: object, outcome: Outcome) -> None:
        detach = self._attached.pop(index, None)
        if detach is not None:
            detach()
        if self._results[index] is not None:
            return  # a job ends once for the batch, even if a read error ended a round first
        self._results[index] = outcome
        self._slots.release_on_behalf_of(slot)
        self._unsettled -= 1
        if self._unsettled == 0:
            self._settled.set()
