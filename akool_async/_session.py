"""AkoolSession: the calls users make. Its settings and lifetime are in `_session_base`."""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
from collections.abc import AsyncIterator, Callable, Iterable
from functools import partial
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from ._batch import Batch
from ._constants import CREATORS_PER_REQUEST_SLOT, DEFAULT_MAX_BYTES
from ._download import Download, download
from ._endpoints import CREATE_BY_BUTTON, CREATE_BY_PROMPT, CREDIT_INFO, IMAGE_INFO
from ._engine import Engine
from ._errors import AkoolError, InvalidInput, SubmissionUnknown
from ._job import ImageJob
from ._models import Button, ImageInfo, JobKind, Scale
from ._options import whole
from ._session_base import SessionBase
from ._tracker import Outcome
from ._validate import check_button, check_image_id, check_prompt, check_scale, check_url

__all__ = ["AkoolSession"]

logger = logging.getLogger("akool_async")


def _created(engine: Engine, kind: JobKind, webhook: bool, info: ImageInfo) -> None:
    engine.track(info.id, kind=kind, info=info, created=True, webhook=webhook)


def _forward_once(
    send: MemoryObjectSendStream[ImageJob], sent: set[str], handle: ImageJob, _: Outcome
) -> None:
    if handle.id in sent:
        return  # a job ends once for as_completed, even if a read error ended a round first
    sent.add(handle.id)
    with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
        send.send_nowait(handle)


class AkoolSession(SessionBase):
    """A session with Akool's image API. Use it as ``async with AkoolSession(...) as session:``.

    Credentials come from the arguments or, when none is given, from ``AKOOL_API_KEY``,
    ``AKOOL_TOKEN``, or ``AKOOL_CLIENT_ID`` with ``AKOOL_CLIENT_SECRET``. An api key is sent as
    ``x-api-key``; a token as ``Authorization: Bearer``; client credentials fetch a token from
    getToken once, share it between all requests and renew it once when Akool answers 1101.

    Args:
        api_key: Akool API key (the dashboard's key, the same value as the client secret).
        token: A bearer token from getToken.
        client_id: Client id, for getToken, and to verify webhook callbacks.
        client_secret: Client secret, for getToken, and to open webhook callbacks. Next to an
            api key, client credentials only verify callbacks; requests use the key.
        base_url: The API root; default ``AKOOL_BASE_URL``, else ``https://openapi.akool.com``.
            A passed ``http_client``'s own ``base_url`` is used when this is not given.
        timeout: Per-request timeouts, in seconds or as an ``httpx.Timeout``; ``None`` for none.
            Not given: 10 s to connect and 30 s otherwise for the session's own client, the
            passed client's own setting for ``http_client``.
        request_deadline: Seconds one attempt of a request may take in all, from sending to
            the last byte of the answer (headers and body together), on top of the per-phase
            ``timeout``: a server that trickles its answer in, each byte within the read
            timeout, is cut off here with `RequestTimeout` (for a create, `SubmissionUnknown`:
            it may have run). It bounds every API call and each download attempt. Not given:
            the sum of the timeout's connect, write, read and pool phases (100 s by default,
            20 s for ``timeout=5``), none when one of them is unlimited. ``None``: no limit.
        retry: How transient failures are retried (`RetryPolicy`).
        http_client: An ``httpx.AsyncClient`` to use. The session then does not close it.
        http2: Let the session's own client speak HTTP/2 where the server offers it (agreed
            in the TLS handshake), every request then sharing one connection; needs the
            ``http2`` extra. Elsewhere it speaks HTTP/1.1. Off by default: whether Akool's
            endpoint offers HTTP/2 is not known.
        poll_policy: How results are polled for (`PollPolicy`).
        requests_per_second: Akool's limit on requests per second, creates and polls together,
            if you know it: the session then never exceeds it (it runs at 97 % of it). None:
            no cap until 429s come in a cluster, after which the session finds the limit itself
            and runs at 95 % of it; a sporadic 429 only delays the request it refused.
        max_concurrent_requests: Requests in flight at once, whatever the number of jobs.
        max_jobs_in_flight: Default concurrency of `generate_many`: jobs created and not yet
            finished at once.
        on_event: Called with each `JobEvent` (created, queueing, processing, completed,
            failed) for progress bars and logs. It must not block.
        webhook_listen: ``(host, port)`` to receive Akool's callbacks on, within the session
            (asyncio and trio; port 0 picks a free one). Needs client credentials and the
            ``webhooks`` extra. Creates then send `webhook_url` as ``webhookUrl``, and waits
            resolve on the callback, with polls only as a slow safety net.
        webhook_public_url: The URL Akool must call, when it is not the listening address
            (behind a proxy or a tunnel, or with `webhook_app` mounted in your own app).
        webhook_tolerance: Seconds a callback's timestamp may be away from this machine's
            clock; None accepts any.
        max_prompt_length: The longest prompt sent, in characters (default
            `MAX_PROMPT_LENGTH`, 4,000: Akool documents no limit); a longer one is
            `InvalidInput` before any request.
        coordinator: Share callbacks and the request budget with the app's other processes
            (web workers, containers): `akool_async.coordination.RedisCoordinator`, one per
            session, needing the ``redis`` extra. A callback that reaches any worker then
            resolves the wait of the worker that created the job, and every worker takes its
            requests from one budget per account (``requests_per_second`` is then the
            account's limit, for all of them). Without Redis the session goes on alone.

    Raises:
        MissingCredentials: No credentials given or found.
        InvalidInput: A credential, the base URL or another option is malformed, ``coordinator``
            is not a coordinator, or
            ``webhook_public_url``'s path does not end in ``/`` while the session does not
            serve the receiver itself (a mount answers the bare path with a redirect).
        MissingDependency: ``http2=True`` without the ``http2`` extra, or webhooks without
            the ``webhooks`` extra (an `AkoolError` and an ``ImportError``).
    """

    # -- the wire calls, one request each (plus retries) -----------------------------------

    async def create_by_prompt(
        self,
        prompt: str,
        *,
        scale: Scale | str = Scale.RATIO_1_1,
        source_image: str | None = None,
        webhook_url: str | None = None,
    ) -> ImageInfo:
        """Create a text-to-image job, or image-to-image with ``source_image``. Costs credits.

        Cancelling the call before the create is sent sends nothing. Once it is sent it runs
        to its answer in the session's own task (bounded by the request deadline), whatever
        happens to the caller: a job created for a caller that has gone is in
        `orphaned_creates`.

        Args:
            prompt: What to draw.
            scale: One of the seven aspect ratios (`Scale` or its string).
            source_image: URL of an image to start from (image-to-image).
            webhook_url: URL Akool calls back on status changes.

        Returns:
            The new job as Akool first describes it (usually queueing).

        Raises:
            InvalidInput: A bad argument; nothing was sent.
            SubmissionUnknown: The create may or may not have reached Akool; it was not retried.
            APIError: Akool refused it (a subclass per business code).
            TransportError: It provably did not reach Akool, after retries.
            SessionClosed: The session closed before the create was sent.
        """
        body: dict[str, Any] = {
            "prompt": check_prompt(prompt, max_length=self._max_prompt_length),
            "scale": check_scale(scale).value,
        }
        if source_image is not None:
            body["source_image"] = check_url("source_image", source_image)
        callback_url, own = self._webhook_for(webhook_url)
        if callback_url is not None:
            body["webhookUrl"] = callback_url
        wire, engine = self._require_wire(), self._require_engine()
        return await self._require_paid().send(
            CREATE_BY_PROMPT.path,
            body,
            partial(wire.call, CREATE_BY_PROMPT, json=body),
            taken=partial(_created, engine, JobKind.GRID, own),
        )

    async def create_by_button(
        self,
        image_id: str,
        button: Button | str,
        *,
        webhook_url: str | None = None,
    ) -> ImageInfo:
        """Press a button (U1..U4 upscale, V1..V4 vary) on a finished grid. Costs credits.

        Cancelled, it behaves as `create_by_prompt` does; a press that reached (or may have
        reached) Akool keeps this session's claim on the button even so.

        Args:
            image_id: The grid job's id.
            button: ``U1``..``U4`` or ``V1``..``V4``.
            webhook_url: URL Akool calls back on status changes.

        Returns:
            The new child job; its `parent_id` is ``image_id``.

        Raises:
            InvalidInput: A bad argument; nothing was sent.
            SubmissionUnknown: The create may or may not have reached Akool; it was not retried.
            APIError: Akool refused it, e.g. `OperationNotAllowed` for a used button.
            TransportError: It provably did not reach Akool, after retries.
            SessionClosed: The session closed before the create was sent.
        """
        body: dict[str, Any] = {
            "_id": check_image_id(image_id),
            "button": check_button(button).value,
        }
        callback_url, own = self._webhook_for(webhook_url)
        if callback_url is not None:
            body["webhookUrl"] = callback_url
        wire, engine = self._require_wire(), self._require_engine()
        paid = self._require_paid()
        # The parent is held, and its claim on the button kept, until the press is settled,
        # even if this caller is cancelled meanwhile.
        settled = engine.buttons.pressing(body["_id"], body["button"])
        return await paid.send(
            CREATE_BY_BUTTON.path,
            body,
            partial(wire.call, CREATE_BY_BUTTON, json=body),
            taken=partial(_created, engine, JobKind.of_button(check_button(button)), own),
            settled=settled,
        )

    def _webhook_for(self, webhook_url: str | None) -> tuple[str | None, bool]:
        """The ``webhookUrl`` a create sends (checked), and whether it is the session's own."""
        own = self.webhook_url
        url = own if webhook_url is None else check_url("webhook_url", webhook_url)
        return url, own is not None and url == own

    async def get_image_info(self, image_id: str) -> ImageInfo:
        """Read a job's current state (``infobymodelid``). Free; retried on transient failures.

        Raises:
            InvalidInput: An empty or malformed id; nothing was sent.
            ContentNotFound: Akool knows no such job (code 1008).
            APIError: Another refusal.
            TransportError: The read failed after retries.
        """
        params = {"image_model_id": check_image_id(image_id)}
        wire = self._require_wire()
        return await wire.call(IMAGE_INFO, params=params)

    async def get_credit(self) -> float:
        """The account's credit balance (``quota/info``).

        Raises:
            APIError: Akool refused the request.
            TransportError: The read failed after retries.
        """
        wire = self._require_wire()
        return await wire.call(CREDIT_INFO)

    # -- job handles -------------------------------------------------------------------------

    async def generate(
        self,
        prompt: str,
        *,
        scale: Scale | str = Scale.RATIO_1_1,
        source_image: str | None = None,
        webhook_url: str | None = None,
    ) -> ImageJob:
        """Create a prompt job and return a handle on it. Costs credits.

        Takes the arguments of `create_by_prompt` and raises what it raises.
        """
        info = await self.create_by_prompt(
            prompt, scale=scale, source_image=source_image, webhook_url=webhook_url
        )
        logger.info("created image job %s (%s)", info.id, info.status.name.lower())
        return ImageJob(self, info.id, info=info)

    @property
    def orphaned_creates(self) -> tuple[ImageJob | SubmissionUnknown, ...]:
        """Creates whose caller was cancelled while they were in flight, oldest first.

        A create already sent is never cut off by its caller's cancellation: it runs until its
        answer is in (at most the request deadline). If the caller has gone by then, the job is
        still paid for at Akool, so it is kept here: a handle on it (tracked like any job, with
        an ``orphaned`` `JobEvent` and a warning in the log), or a `SubmissionUnknown` with what
        was sent when its answer never came. Readable during and after the session.
        """
        engine = self._engine
        if engine is None:
            return ()
        return tuple(
            ImageJob(self, orphan.id, info=orphan) if isinstance(orphan, ImageInfo) else orphan
            for orphan in engine.reports.orphans
        )

    def job(self, image_id: str) -> ImageJob:
        """A handle on an existing job, e.g. one created by an earlier run. Sends nothing.

        Raises:
            InvalidInput: An empty or malformed id.
        """
        return ImageJob(self, check_image_id(image_id))

    async def generate_many(
        self,
        prompts: Iterable[str],
        *,
        scale: Scale | str = Scale.RATIO_1_1,
        concurrency: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a deadline per job, not for the call
    ) -> list[ImageInfo | AkoolError]:
        """Generate many images at once; one outcome per prompt, in input order.

        Every prompt is checked before anything is sent. A failure (a failed job, a refused or
        ambiguous create, a deadline) is returned in that prompt's place and never cancels the
        others.

        Args:
            prompts: The prompts.
            scale: One aspect ratio for all of them.
            concurrency: Jobs in flight at once (created, not yet finished); default the
                session's ``max_jobs_in_flight``.
            timeout: A deadline per job, in seconds, from its creation.

        Returns:
            For each prompt, its completed `ImageInfo` or the `AkoolError` it ended with
            (`JobFailed`, `SubmissionUnknown`, `WaitTimeout`, an `APIError`, ...).

        Raises:
            InvalidInput: A prompt, the scale or the concurrency is bad; nothing was sent.
        """
        checked = [check_prompt(prompt, max_length=self._max_prompt_length) for prompt in prompts]
        scale = check_scale(scale)
        limit = whole(
            "concurrency", self._max_jobs_in_flight if concurrency is None else concurrency
        )
        engine = self._require_engine()
        batch = Batch(self, engine, checked, scale=scale, in_flight=limit, timeout=timeout)
        creators = min(
            limit, len(checked), CREATORS_PER_REQUEST_SLOT * self._max_concurrent_requests
        )
        return await batch.run(creators)

    async def as_completed(self, jobs: Iterable[ImageJob]) -> AsyncIterator[ImageJob]:
        """Yield the handles as their jobs reach an end: completed, failed, or unreadable.

        The jobs are polled while the iteration runs (and only then); call ``wait()`` on a
        yielded handle for its result or error, which is then immediate.

        Raises:
            InvalidInput: A handle belongs to another session.
        """
        handles = list(dict.fromkeys(jobs))
        for handle in handles:
            if handle.session is not self:
                raise InvalidInput(f"job {handle.id} belongs to another AkoolSession")
        engine = self._require_engine()
        send, receive = anyio.create_memory_object_stream[ImageJob](max(1, len(handles)))
        cleanups: list[Callable[[], None]] = []
        sent: set[str] = set()
        try:
            for handle in handles:
                final = engine.final(handle.id)
                if final is not None:
                    _forward_once(send, sent, handle, final)
                    continue
                cleanups.append(
                    engine.add_listener(handle.id, partial(_forward_once, send, sent, handle))
                )
                cleanups.append(engine.hold(handle.id))
            for _ in handles:
                yield await receive.receive()
        finally:
            for cleanup in cleanups:
                cleanup()
            send.close()
            receive.close()

    async def download_url(
        self, url: str, dest: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> Download:
        """Download one result URL to ``dest`` (a file path), atomically, with its sha256.

        Raises:
            InvalidInput: ``url`` is not an http(s) URL or ``dest``'s folder does not exist.
            DownloadError: The body was too large, not an image, or the URL has expired.
            TransportError: The download failed after retries.
        """
        check_url("url", url)
        return await download(
            self.http_client,
            url,
            pathlib.Path(dest),
            retry=self._retry,
            max_bytes=max_bytes,
            deadline=self._request_deadline,
        )
