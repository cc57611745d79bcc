"""An ASGI app that receives Akool's callbacks: verify, answer fast, de-duplicate, hand on."""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import Callable
from typing import Any, Final

from akool_async._asgi import Receive, Scope, Send, answer_lifespan
from akool_async._constants import MAX_BODY_BYTES, REMEMBERED_CALLBACKS
from akool_async._errors import WebhookVerificationError

from ._verify import WebhookEvent, WebhookVerifier

__all__ = ["WebhookReceiver"]

logger = logging.getLogger("akool_async.webhooks")

_STATUS_FOR: Final = {
    "malformed": 400,
    "payload": 400,
    "too_large": 413,
    "signature": 401,
    "decrypt": 401,
    "stale": 401,
}


class WebhookReceiver:
    """An ASGI 3 app for Akool's callbacks; mount it anywhere (FastAPI, Starlette, ...).

    Each POST is verified with a `WebhookVerifier` and answered at once: 200 for a genuine
    callback (also when it repeats one already seen, so Akool stops resending it), 4xx for
    anything else (400 malformed, 401 forged or stale, 405 not a POST, 413 too large) and never
    a 5xx for a bad body. A callback is handed to ``on_event`` once per job and status, however
    often Akool delivers it.

    ```python
    app.mount("/akool/webhook", session.webhook_app)  # FastAPI / Starlette
    ```

    Starlette answers a POST to a mount point without its trailing slash with a redirect, so
    give Akool the URL with the slash (``https://example.com/akool/webhook/``), or add the
    receiver as a route: ``app.add_route("/akool/webhook", receiver, methods=["POST"])``.

    Args:
        verifier: Checks and opens each callback.
        on_event: Called with each new event, synchronously, before the answer is sent; keep
            it quick. An exception in it is logged and answered 500, so Akool sends it again.

    Attributes:
        accepted: New events handed on.
        duplicates: Genuine callbacks already seen.
        rejected: Refused requests, by reason (``signature``, ``stale``, ``malformed``, ...).
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
            await _answer(send, 405, {"error": "use POST"}, allow=True)
            return
        body = await _read(receive)
        status, answer = self._handle(body)
        await _answer(send, status, answer)

    def _handle(self, body: bytes | None) -> tuple[int, dict[str, Any]]:
        """Verify one callback and hand it on; the HTTP status and JSON body to answer with."""
        if body is None:
            self.rejected["too_large"] += 1
            return 413, {"error": f"more than {MAX_BODY_BYTES} bytes"}
        try:
            event = self.verifier.verify(body)
        except WebhookVerificationError as error:
            self.rejected[error.reason] += 1
            logger.warning("refused a webhook callback: %s", error)
            return _STATUS_FOR.get(error.reason, 400), {"error": error.reason}
        key = (event.id, int(event.status))
        if key in self._seen:
            self.duplicates += 1
            return 200, {"ok": True, "duplicate": True}
        try:
            self._on_event(event)
        except Exception:
            logger.exception("the webhook handler failed on job %s; Akool will resend", event.id)
            return 500, {"error": "handler failed"}
        self._remember(key)
        self.accepted += 1
        return 200, {"ok": True}

    def _remember(self, key: tuple[str, int]) -> None:
        self._seen[key] = None
        if len(self._seen) > REMEMBERED_CALLBACKS:
            self._seen.popitem(last=False)


async def _read(receive: Receive) -> bytes | None:
    """The request body, or None once it grows past the limit (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _answer(send: Send, status: int, body: dict[str, Any], *, allow: bool = False) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if allow:
        headers.append((b"allow", b"POST"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
