"""What a batch has on the wire: which creates went out, which were withdrawn, and whether Akool
can be reached at all. Told by the HTTP client itself (httpx request and response hooks), not
guessed.

On Ctrl+C (`Outgoing.interrupt`) a create that went out runs to its answer, which the batch
records; one that has not is withdrawn: its caller is cancelled, and should its turn to be sent
come all the same (the session's pace may grant it as the caller goes), the request hook stops
it before a byte of it leaves.

A batch whose requests all fail to connect, with no answer from Akool, for `UNREACHABLE_FOR`
seconds stops: the session reads jobs again for as long as it takes, and nothing can succeed
until Akool can be reached again.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Generator
from typing import Any, Final, cast

import anyio
import attrs
import httpx

from akool_async._errors import AkoolError

__all__ = ["UNREACHABLE_FOR", "Creating", "Outgoing", "Signature", "Withdrawn"]

UNREACHABLE_FOR: Final = 10.0
"""Seconds without an answer, every request failing to connect, after which a batch stops."""
_CREATES: Final = frozenset({"createbyprompt", "createbybutton"})

Signature = tuple[str | None, ...]
"""What a create sends, as its request body says it: the endpoint and the fields that tell it
(``prompt``, ``scale`` and ``source_image``; or the grid's ``_id`` and the ``button``)."""


def _signature_of(endpoint: str, body: dict[str, Any]) -> Signature:
    if endpoint == "createbybutton":
        return (endpoint, body.get("_id"), body.get("button"))
    return (endpoint, body.get("prompt"), body.get("scale"), body.get("source_image"))


class Withdrawn(Exception):
    """Raised by the request hook to stop a withdrawn create before any byte of it is sent."""


@attrs.define
class Creating:
    """A create the batch is making: its cancel scope, what it sends, whether it went out, and
    whether `Outgoing.interrupt` withdrew it."""

    scope: anyio.CancelScope
    signature: Signature
    sent: bool = False
    withdrawn: bool = False


class Outgoing:
    """The creates a batch has in flight, and whether Akool answers (see the module)."""

    def __init__(self) -> None:
        self._creating: dict[str, Creating] = {}
        self._withdrawn: set[Signature] = set()
        self._untold = False
        # Since when (and why) no request could connect, while no answer has come since.
        self._unreachable: tuple[float, AkoolError] | None = None

    @contextlib.contextmanager
    def hooked(self, client: httpx.AsyncClient) -> Generator[None]:
        """Listen to ``client``'s requests and answers while the block runs."""
        hooks = {name: list(listed) for name, listed in client.event_hooks.items()}
        client.event_hooks = {
            **hooks,
            "request": [*hooks.get("request", []), self._on_request],
            "response": [*hooks.get("response", []), self._on_response],
        }
        try:
            yield
        finally:
            client.event_hooks = hooks

    @contextlib.contextmanager
    def creating(
        self, key: str, scope: anyio.CancelScope, signature: Signature
    ) -> Generator[Creating]:
        """Track the create of task ``key``, sent from within ``scope``, while the block runs."""
        creating = self._creating[key] = Creating(scope, signature)
        try:
            yield creating
        finally:
            del self._creating[key]

    def interrupt(self) -> int:
        """Withdraw every create that has not gone out (cancelling its scope).

        Returns:
            How many creates went out: those the batch still waits for.
        """
        # Two rows with the same content send the same body: if one of them went out, both
        # are waited for, so that a create sent is never withdrawn. The signatures withdrawn
        # and those waited for therefore never meet.
        sent = {creating.signature for creating in self._creating.values() if creating.sent}
        awaited = 0
        for creating in self._creating.values():
            if creating.signature in sent or self._untold:
                awaited += 1
            else:
                creating.withdrawn = True
                self._withdrawn.add(creating.signature)
                creating.scope.cancel()
        return awaited

    async def _on_request(self, request: httpx.Request) -> None:
        endpoint = request.url.path.rpartition("/")[2]
        if request.method != "POST" or endpoint not in _CREATES:
            return
        try:
            body = json.loads(request.content)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return
        signature = _signature_of(endpoint, cast("dict[str, Any]", body))
        if signature in self._withdrawn:
            # Withdrawn, yet its turn to be sent came: it stops here, unsent.
            raise Withdrawn(f"{endpoint} withdrawn by an interruption before it was sent")
        matching = [item for item in self._creating.values() if item.signature == signature]
        unsent = [item for item in matching if not item.sent]
        if unsent:
            unsent[0].sent = True
        elif not matching:
            # A create this batch cannot tell apart: no create in flight is withdrawn any more.
            self._untold = True

    async def _on_response(self, _: httpx.Response) -> None:
        self._unreachable = None  # Akool answered: it can be reached

    def cannot_reach(self, error: AkoolError) -> None:
        """A request could not connect: it counts towards stopping unless an answer comes."""
        if self._unreachable is None:
            self._unreachable = (anyio.current_time(), error)

    def unreachable(self) -> AkoolError | None:
        """Why no request has connected for `UNREACHABLE_FOR` seconds, if none has."""
        if self._unreachable is None:
            return None
        since, error = self._unreachable
        return error if anyio.current_time() - since >= UNREACHABLE_FOR else None
