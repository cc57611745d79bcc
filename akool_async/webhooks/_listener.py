"""Callbacks for one session: its receiver app and, with ``webhook_listen``, a server for it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Callable

import httpx

from akool_async._config import Credentials
from akool_async._constants import WEBHOOK_PATH
from akool_async._errors import InvalidInput

from ._receiver import WebhookReceiver
from ._verify import WebhookEvent, WebhookVerifier

__all__ = ["WebhookListener", "check_mounted_url"]

logger = logging.getLogger("akool_async.webhooks")


class WebhookListener:
    """What an `AkoolSession` needs to take in callbacks: a verifying receiver, the URL creates
    send as ``webhookUrl``, and (when asked to listen) a loopback server for the receiver.

    Args:
        credentials: The session's; the client id and secret verify and open callbacks.
        on_event: Called with each new, verified event.
        tolerance: Seconds a callback's timestamp may be away from this machine's clock.
        listen: ``(host, port)`` to serve the receiver on, or None to serve nothing (the
            receiver is then mounted in the user's own app).
        public_url: The URL Akool must call, when it is not the listening address.

    Raises:
        InvalidInput: No client id and secret to verify callbacks with; or a ``public_url``
            whose path does not end with a slash while nothing is served here (see
            `check_mounted_url`).
    """

    def __init__(
        self,
        credentials: Credentials,
        on_event: Callable[[WebhookEvent], object],
        *,
        tolerance: float | None,
        listen: tuple[str, int] | None = None,
        public_url: str | None = None,
    ) -> None:
        if credentials.client_id is None or credentials.client_secret is None:
            raise InvalidInput(
                "webhooks need client_id and client_secret: Akool signs its callbacks with the "
                "client id and encrypts them with the client secret (an api key can still "
                "authenticate the requests)"
            )
        if listen is None and public_url is not None:
            check_mounted_url(public_url)
        verifier = WebhookVerifier(
            credentials.client_id, credentials.client_secret.reveal(), tolerance=tolerance
        )
        self.app = WebhookReceiver(verifier, on_event)
        self.listen = listen
        self.public_url = public_url
        self.listening_url: str | None = None
        """Where the receiver is served, once `serving` has started; None otherwise."""

    @property
    def url(self) -> str | None:
        """The URL creates send as ``webhookUrl``: the public URL, else the listening one."""
        return self.public_url or self.listening_url

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncGenerator[str | None]:
        """Serve the receiver for as long as the block runs (when there is an address to listen
        on); yields the listening URL, or None. Leaving the block stops the server by its
        shutdown trigger: requests still running get a grace period, never a cancellation."""
        if self.listen is None:
            yield None
            return
        from akool_async._serve import serve_asgi  # noqa: PLC0415 - hypercorn is optional

        host, port = self.listen
        async with serve_asgi(self.app, host=host, port=port) as base_url:
            self.listening_url = f"{base_url}{WEBHOOK_PATH}"
            logger.info("receiving webhook callbacks at %s", self.listening_url)
            yield self.listening_url


def check_mounted_url(public_url: str) -> None:
    """Refuse a public URL for a mounted receiver whose path does not end with a slash.

    Starlette (so FastAPI) and other routers answer a POST to a mount point's bare path, the
    one without the slash, with a 307 redirect to the path with it; webhook senders do not
    follow redirects, so every callback would be lost and each job found only by the slow
    safety-net polls. Every router can serve the path with the slash (a mount does so by
    itself), so that is the one form accepted. The session's own server (``webhook_listen``)
    answers on any path, so this applies only when the app is mounted elsewhere.

    Raises:
        InvalidInput: The path does not end with ``/``; the message gives the URL that works.
    """
    url = httpx.URL(public_url)
    if url.path.endswith("/"):
        return
    fixed = str(url.copy_with(path=f"{url.path}/"))
    raise InvalidInput(
        f"webhook_public_url must end with a slash when you mount session.webhook_app in "
        f"your own app (got {public_url!r}; give {fixed!r}): a mount such as "
        f"app.mount({url.path!r}, session.webhook_app) answers a POST without the slash with "
        "a redirect, which webhook senders do not follow; with a route instead of a mount, "
        "route the path with the slash"
    )
