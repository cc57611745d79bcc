"""What a session needs from a coordinator shared by the processes of one app.

`akool_async.coordination.RedisCoordinator` is the one the SDK ships; the session knows it only
by this shape, so that the core never imports an optional dependency.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

from ._models import ImageStatus
from ._pace import SharedBudget

__all__ = ["Coordinator"]


@runtime_checkable
class Coordinator(Protocol):
    """Callbacks and a request budget shared by every process of one app."""

    @property
    def budget(self) -> SharedBudget:
        """The request budget every process takes its turns from."""
        ...  # pragma: no cover - a protocol

    def running(
        self,
        *,
        account: str,
        secret: str | None,
        deliver: Callable[[str, ImageStatus], bool],
    ) -> AbstractAsyncContextManager[None]:
        """Be connected while the block runs; ``deliver`` takes the other processes' callbacks."""
        ...  # pragma: no cover - a protocol

    def publish(self, job_id: str, status: ImageStatus) -> None:
        """Hand a verified callback for a job this process does not follow to the others."""
        ...  # pragma: no cover - a protocol
