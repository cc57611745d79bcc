"""An ASGI app that receives Akool's callbacks: verify, answer fast, de-duplicate, hand on."""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import Final

import anyio
import attrs

from akool_async._asgi import Receive, Scope, Send, answer_lifespan
from akool_async._constants import CALLBACK_BODY_DEADLINE, MAX_BODY_BYTES, REMEMBERED_CALLBACKS
from akool_async._errors import WebhookVerificationError

from ._verify import WebhookEvent, WebhookVerifier

__all__ = ["WebhookReceiver"]

logger = logging.getLogger("akool_async.webhooks")

_ACCEPTED: Final = b'{"ok": true}'
_DUPLICATE: Final = b'{"ok": true, "duplicate": true}'
_HANDLER_FAILED: Final = b'{"error": "handler failed"}'
_USE_POST: Final = b'{"error": "use POST"}'
_REFUSED_STATUS: Final = 400
"""The status of every refused POST, whatever was wrong with it."""
_REFUSED_BODY: Final = b'{"error": "invalid callback"}'
"""The body of every refused POST: the reason is counted and logged here, never sent back."""


class WebhookReceiver:
    """An ASGI 3 app for Akool's callbacks; mount it anywhere (FastAPI, Starlette, ...).

    Each POST is verified with a `WebhookVerifier` and answered at once: 200 for a genuine
    callback (also when it repeats one already seen, so Akool stops resending it), 405 for
    another method, and one answer for every other request, byte for byte the same whatever
    was wrong (too large, not Akool's envelope, forged, stale, not decryptable, not a job
    status): ``400 {"error": "invalid callback"}``. Telling those apart would hand whoever knows
    the (public) client id a decryption oracle; the reason is counted in ``rejected`` and
    logged instead. No body gets a 5xx. A callback is handed to ``on_event`` once per job and
    status, however often Akool delivers it.

    ```python
    app.mount("/akool/webhook", session.webhook_app)  # FastAPI / Starlette
    ```

    It answers on whatever path a request reaches it by, with or without a trailing slash.
    Starlette, though, answers a POST to a mount point without its trailing slash with a
    redirect before the request reaches the mounted app, so give Akool the URL with the slash
    (``https://example.com/akool/webhook/``); as a route, add it at that same path:
    ``app.add_route("/akool/webhook/", receiver, methods=["POST"])``. An `AkoolSession`
    refuses a ``webhook_public_url`` without the slash unless it serves the receiver itself.

    Args:
        verifier: Checks and opens each callback.
        on_event: Called with each new event, synchronously, before the answer is sent; keep
            it quick. An exception in it is logged and answered 500 (the one 5xx, and only
            for a genuine callback), so Akool sends it again.

    Attributes:
        accepted: New events handed on.
        duplicates: Genuine callbacks already seen.
        rejected: Refused requests, by reason: the verifier's (``too_large``, ``malformed``,
            ``signature``, ``stale``, ``decrypt``), ``disconnected`` (the sender left before
            the body ended), or ``error`` (the verifier itself failed: a bug, logged).
    """

    def __init__(
        self, verifier: WebhookVerifier, on_event: Callable[[WebhookEvent], object]
    ) -> None:
        self.verifier = verifier
        self._on_event = on_event
        self._seen: collections.OrderedDict[tuple[str, int], None] = collections.OrderedDict()
        self.accepted = 0
        self.duplicates = 0
        self.rejected: collections.Counter[str] = collections.Counter()

    def __repr__(self) -> str:
        return (
            f"<WebhookReceiver accepted={self.accepted} duplicates={self.duplicates} "
            f"rejected={sum(self.rejected.values())}>"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets and anything newer: not ours to serve
        if scope["method"] != "POST":
            await _answer(send, 405, _USE_POST, allow=True)
            return
        body = await _read(receive)
        status, answer = self._handle(body)
        await _answer(send, status, answer)

    def _handle(self, body: bytes | _Unread) -> tuple[int, bytes]:
        """Verify one callback and hand it on; the HTTP status and JSON body to answer with."""
        if isinstance(body, _Unread):
            return self._refuse(body.reason)
        try:
            event = self.verifier.verify(body)
        except WebhookVerificationError as error:
            logger.warning("refused a webhook callback: %s", error)
            return self._refuse(error.reason)
        except Exception:
            # verify() raises nothing else by design; should it, the sender still learns
            # nothing and gets no 5xx.
            logger.exception("the webhook verifier failed; the callback was refused")
            return self._refuse("error")
        key = (event.id, int(event.status))
        if key in self._seen:
            self.duplicates += 1
            return 200, _DUPLICATE
        try:
            self._on_event(event)
        except Exception:
            logger.exception("the webhook handler failed on job %s; Akool will resend", event.id)
            return 500, _HANDLER_FAILED
        self._remember(key)
        self.accepted += 1
        return 200, _ACCEPTED

    def _refuse(self, reason: str) -> tuple[int, bytes]:
        self.rejected[reason] += 1
        return _REFUSED_STATUS, _REFUSED_BODY

    def _remember(self, key: tuple[str, int]) -> None:
        self._seen[key] = None
        if len(self._seen) > REMEMBERED_CALLBACKS:
            self._seen.popitem(last=False)


@attrs.frozen
class _Unread:
    """A body that was not read whole, and why."""

    reason: str


async def _read(receive: Receive) -> bytes | _Unread:
    """The request body; or why not, once it grows past the limit (the rest is not read), the
    sender disconnects before its end, or it takes longer than `CALLBACK_BODY_DEADLINE`."""
    with anyio.move_on_after(CALLBACK_BODY_DEADLINE):
        return await _read_whole(receive)
    return _Unread("too_slow")


async def _read_whole(receive: Receive) -> bytes | _Unread:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return _Unread("disconnected")
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return _Unread("too_large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send: Send, status: int, body: bytes, *, allow: bool = False) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if allow:
        headers.append((b"allow", b"POST"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
