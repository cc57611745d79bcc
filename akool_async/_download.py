"""Streaming, atomic, checksummed downloads of result images.

The body streams into a hidden file beside the destination, hashed as it is written, then is
fsynced and renamed into place, once it has proved to be the whole image it claims to be: readers
see the old file or the new one, never part of one, and a failure or cancellation leaves nothing.
A download is a plain GET, so every transient failure is retried; answers are not.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pathlib
import secrets
from http import HTTPStatus
from typing import Final

import anyio
import anyio.to_thread
import attrs
import httpx

from ._errors import (
    AkoolError,
    ConnectError,
    InvalidInput,
    RemoteProtocolError,
    RequestTimeout,
    ServerError,
    TooManyRequests,
    TransportError,
)
from ._retry import RetryPolicy, parse_retry_after
from ._validate import check_url

__all__ = [
    "Download",
    "DownloadError",
    "NotAnImage",
    "ResponseTooLarge",
    "ResultExpired",
    "download",
]

logger = logging.getLogger("akool_async")

_EXPIRED_STATUSES: Final = frozenset({403, 404, 410})
_HEAD: Final = 16  # enough to tell PNG (signature + IHDR), JPEG, WebP and GIF apart
_TAIL: Final = 12  # a PNG's IEND chunk, the longest ending checked
_DRAIN_LIMIT: Final = 1 << 20  # bytes read after a failure while waiting for httpx to checkpoint
_PNG_END: Final = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_TYPE_ALIASES: Final = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}


class DownloadError(AkoolError):
    """A result could not be downloaded, and trying again would not help.

    Attributes:
        url: The URL that was downloaded.
        status_code: The HTTP status answered, when the status was the problem.
    """

    url: str
    status_code: int | None

    def __init__(self, message: str, *, url: str, status_code: int | None = None) -> None:
        self.url = url
        self.status_code = status_code
        super().__init__(message)


class ResponseTooLarge(DownloadError):
    """The body is larger than ``max_bytes``; nothing was kept."""


class NotAnImage(DownloadError):
    """The body is not a complete PNG, JPEG, WebP or GIF, or not the type it was sent as."""


class ResultExpired(DownloadError):
    """The result URL answered 403, 404 or 410: Akool's result URLs stop working after 7 days."""


@attrs.frozen
class Download:
    """A result written to disk.

    Attributes:
        path: Where the image now is.
        url: The URL it came from.
        sha256: The SHA-256 of the file's bytes, in hex.
        size: The file's size in bytes.
        content_type: The image type its bytes show (``image/png``, ``image/jpeg``, ...).
    """

    path: pathlib.Path
    url: str
    sha256: str
    size: int
    content_type: str


class _Transient(Exception):
    """A failed attempt that may succeed if repeated, and the error to raise if none does."""

    def __init__(self, error: AkoolError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


async def download(
    client: httpx.AsyncClient,
    url: str,
    dest: pathlib.Path,
    *,
    retry: RetryPolicy,
    max_bytes: int = 64 * 1024 * 1024,
    timeout: httpx.Timeout | None = None,  # noqa: ASYNC109 - httpx's per-attempt timeouts
) -> Download:
    """Download the image at ``url`` to ``dest``, atomically, retrying transient failures.

    Args:
        client: The client to send the GET with; redirects are followed.
        url: An absolute http(s) URL, such as an `ImageInfo.image`.
        dest: The file to write; its directory must exist. An existing file is replaced.
        retry: How transient failures (no connection, timeouts, resets, HTTP 429 and 5xx,
            a body shorter than its ``Content-Length``) are retried.
        max_bytes: The largest body accepted.
        timeout: httpx timeouts for each attempt; the client's own when None.

    Returns:
        Where the image was written, with its SHA-256, size and type.

    Raises:
        InvalidInput: ``url`` is not an http(s) URL, ``max_bytes`` is below 1, or ``dest`` is
            a directory or in one that does not exist; nothing was sent.
        ResultExpired: The URL answered 403, 404 or 410.
        ResponseTooLarge: The body is larger than ``max_bytes``.
        NotAnImage: The body is not a complete image of the type it was sent as.
        DownloadError: Any other 4xx answer.
        TransportError: A transient failure outlasted ``retry``: `ConnectError`,
            `RequestTimeout`, `RemoteProtocolError` (a reset or a truncated body),
            `TooManyRequests` or `ServerError`, raised ``from`` the httpx error if there was one.
        OSError: The file could not be written.
    """
    check_url("url", url)
    if max_bytes < 1:
        raise InvalidInput(f"max_bytes must be a whole number >= 1 (got {max_bytes!r})")
    if not await anyio.Path(dest.parent).is_dir():
        raise InvalidInput(f"the directory {str(dest.parent)!r} does not exist: create it first")
    if await anyio.Path(dest).is_dir():
        raise InvalidInput(f"dest {str(dest)!r} is a directory: pass the image file's path")
    started = anyio.current_time()
    retries = 0
    while True:
        try:
            return await _attempt(client, url, dest, max_bytes=max_bytes, timeout=timeout)
        except _Transient as transient:
            retries += 1
            wait = retry.backoff(retries, transient.retry_after)
            if retries >= retry.attempts or anyio.current_time() - started + wait > retry.timeout:
                raise transient.error from transient.error.__cause__
            logger.warning(
                "download of %s failed (%s); retry %d of %d in %.2f s",
                _shown(url),
                transient.error,
                retries,
                retry.attempts - 1,
                wait,
            )
            await anyio.sleep(wait)


async def _attempt(
    client: httpx.AsyncClient,
    url: str,
    dest: pathlib.Path,
    *,
    max_bytes: int,
    timeout: httpx.Timeout | None,  # noqa: ASYNC109 - httpx's per-attempt timeouts
) -> Download:
    shown = _shown(url)
    # Identity encoding keeps Content-Length comparable with the bytes written.
    headers = {"accept-encoding": "identity", "accept": "image/*"}
    timeouts = httpx.USE_CLIENT_DEFAULT if timeout is None else timeout
    try:
        async with client.stream(
            "GET", url, headers=headers, follow_redirects=True, timeout=timeouts
        ) as response:
            _check_status(response, url)
            declared = _content_length(response)
            if declared is not None and declared > max_bytes:
                raise _too_large(url, max_bytes)
            sent_as = (response.headers.get("content-type") or "").partition(";")[0]
            sent_as = _TYPE_ALIASES.get(sent_as.strip().lower(), sent_as.strip().lower())
            # No checkpoint between creating the part file and the try that removes it.
            part = await anyio.to_thread.run_sync(_PartFile, dest)
            try:
                kind = await _write_body(response, part, url, sent_as=sent_as, max_bytes=max_bytes)
                if declared is not None and part.size != declared:
                    message = f"{shown} sent {part.size} of {declared} bytes"
                    raise _Transient(RemoteProtocolError(message, endpoint=shown))
                kind = kind or _identify(part.head, sent_as, url)
                if not _is_complete(kind, part):
                    raise NotAnImage(
                        f"{shown} sent an incomplete {kind} ({part.size} bytes)", url=url
                    )
                await anyio.to_thread.run_sync(part.commit, dest)
            finally:
                if not part.committed:
                    with anyio.CancelScope(shield=True):  # cancelled too, the part file must go
                        await anyio.to_thread.run_sync(part.discard)
    except httpx.HTTPError as exc:
        error = _transport_error(exc, shown)
        error.__cause__ = exc  # still the cause when raised after the last retry
        if isinstance(error, ConnectError | RequestTimeout | RemoteProtocolError):
            raise _Transient(error) from exc
        raise error from exc
    logger.debug("downloaded %s: %d bytes, sha256 %s", shown, part.size, part.sha256.hexdigest())
    return Download(dest, url, part.sha256.hexdigest(), part.size, kind)


async def _write_body(
    response: httpx.Response, part: _PartFile, url: str, *, sent_as: str, max_bytes: int
) -> str | None:
    """Stream the body into ``part``; returns its image type once 16 bytes have shown it."""
    kind: str | None = None
    failure: DownloadError | OSError | None = None
    drained = 0
    # A failure mid-body cancels the read rather than leaving the loop: the cancellation lands
    # inside httpx's nested async generators, so they finish here instead of in the garbage
    # collector, where trio reports each one as a ResourceWarning (encode/httpx#3686).
    with anyio.CancelScope() as reading:
        async for chunk in response.aiter_bytes():
            if failure is not None:
                drained += len(chunk)  # what httpx had buffered before its next checkpoint
                if drained > _DRAIN_LIMIT:
                    break
                continue
            try:
                if part.size + len(chunk) > max_bytes:
                    raise _too_large(url, max_bytes)
                await anyio.to_thread.run_sync(part.write, chunk)
                if kind is None and len(part.head) == _HEAD:
                    kind = _identify(part.head, sent_as, url)
            except (DownloadError, OSError) as exc:
                failure = exc
                reading.cancel()
    if failure is not None:
        raise failure
    return kind


class _PartFile:
    """The hidden file a download is written to, then renamed into place. Blocking: thread only."""

    def __init__(self, dest: pathlib.Path) -> None:
        self.path = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.part")
        # O_EXCL: never write into someone else's file; 0o666 lets the umask decide, as open() does.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        self._file = os.fdopen(os.open(self.path, flags, 0o666), "wb")
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.head = self.tail = b""  # the first and last bytes, for the format checks
        self.committed = False

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self.sha256.update(chunk)
        self.size += len(chunk)
        self.head += chunk[: _HEAD - len(self.head)]
        self.tail = (self.tail + chunk[-_TAIL:])[-_TAIL:]

    def commit(self, dest: pathlib.Path) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self.path.replace(dest)
        self.committed = True
        # Makes the rename itself durable; where the system refuses, it is still atomic.
        with contextlib.suppress(OSError):
            directory = os.open(dest.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


def _check_status(response: httpx.Response, url: str) -> None:
    status, shown = response.status_code, _shown(url)
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if response.is_success:
        return
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        message = f"{shown} answered HTTP 429 (too many requests)"
        error = TooManyRequests(message, retry_after=retry_after, endpoint=shown)
        raise _Transient(error, retry_after)
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        message = f"{shown} answered HTTP {status}"
        raise _Transient(ServerError(message, status_code=status, endpoint=shown), retry_after)
    if status in _EXPIRED_STATUSES:
        raise ResultExpired(
            f"{shown} answered HTTP {status}: Akool's result URLs stop working 7 days after the "
            "job is created. Re-read the job's info for its current URL; if the job is older "
            "than 7 days, the result is gone and must be generated again",
            url=url,
            status_code=status,
        )
    raise DownloadError(
        f"{shown} answered HTTP {status}, not an image", url=url, status_code=status
    )


def _transport_error(exc: httpx.HTTPError, shown: str) -> TransportError:
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return ConnectError(f"could not connect to {shown} ({detail})", endpoint=shown)
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeout(f"downloading {shown} timed out ({detail})", endpoint=shown)
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
        message = f"the connection broke downloading {shown} ({detail})"
        return RemoteProtocolError(message, endpoint=shown)
    return TransportError(f"downloading {shown} failed ({detail})", endpoint=shown)


def _content_length(response: httpx.Response) -> int | None:
    """The declared length of the decoded body, if the server declared one."""
    if response.headers.get("content-encoding", "identity").strip().lower() != "identity":
        return None  # it counts encoded bytes; max_bytes still bounds the decoded ones
    value = response.headers.get("content-length", "").strip()
    return int(value) if value.isascii() and value.isdigit() else None


def _too_large(url: str, max_bytes: int) -> ResponseTooLarge:
    message = f"{_shown(url)} is larger than max_bytes={max_bytes}; raise max_bytes to accept it"
    return ResponseTooLarge(message, url=url)


def _identify(head: bytes, sent_as: str, url: str) -> str:
    """The image type ``head`` starts, which must agree with an ``image/*`` Content-Type."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        kind = "image/png"
    elif head.startswith(b"\xff\xd8\xff"):
        kind = "image/jpeg"
    elif head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        kind = "image/webp"
    elif head.startswith((b"GIF87a", b"GIF89a")):
        kind = "image/gif"
    else:
        raise NotAnImage(
            f"{_shown(url)} did not send a PNG, JPEG, WebP or GIF image "
            f"(Content-Type {sent_as or 'none'!r}, body starts {head!r})",
            url=url,
        )
    if sent_as.startswith("image/") and sent_as != kind:
        raise NotAnImage(f"{_shown(url)} was sent as {sent_as} but is a {kind}", url=url)
    return kind


def _is_complete(kind: str, part: _PartFile) -> bool:
    """Whether the image ends as its format says a whole file ends."""
    if kind == "image/png":
        return part.tail == _PNG_END
    if kind == "image/jpeg":
        return part.tail.endswith(b"\xff\xd9")
    if kind == "image/webp":
        return part.size >= int.from_bytes(part.head[4:8], "little") + 8  # RIFF size + header
    return part.tail.endswith(b";")  # GIF's trailer


def _shown(url: str) -> str:
    """The URL without credentials, query or fragment, any of which may hold a secret."""
    return str(httpx.URL(url).copy_with(userinfo=b"", query=None, fragment=None))
