"""Streaming, atomic, checksummed downloads of result images.

The body streams into a hidden file beside the destination, hashed as it is written, then is
fsynced and renamed into place, once it has proved to be the whole image it claims to be: readers
see the old file or the new one, never part of one, and a failure or cancellation leaves nothing.
The request itself goes through the wire's one path (`_wire.fetch`): a download is a plain GET,
so every transient failure is retried, by the rule API reads follow; answers are not.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pathlib
import secrets
from typing import Final

import anyio
import anyio.to_thread
import attrs
import httpx

from ._answers import BodyError, paused, stream_body
from ._constants import DEFAULT_MAX_BYTES
from ._errors import (
    DownloadError,
    InvalidInput,
    NotAnImage,
    RemoteProtocolError,
    ResponseTooLarge,
    ResultExpired,
)
from ._retry import Delivery, Failure, RetryPolicy
from ._validate import check_url
from ._wire import fetch, shown

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
_PNG_END: Final = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_TYPE_ALIASES: Final = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}
# Identity encoding keeps Content-Length comparable with the bytes written.
_HEADERS: Final = {"accept-encoding": "identity", "accept": "image/*"}


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


async def download(
    client: httpx.AsyncClient,
    url: str,
    dest: pathlib.Path,
    *,
    retry: RetryPolicy,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: httpx.Timeout | None = None,  # noqa: ASYNC109 - httpx's per-attempt timeouts
    deadline: float | None = None,
) -> Download:
    """Download the image at ``url`` to ``dest``, atomically, retrying transient failures.

    Args:
        client: The client to send the GET with; redirects are followed.
        url: An absolute http(s) URL, such as an `ImageInfo.image`.
        dest: The file to write; its directory must exist. An existing file is replaced.
        retry: How transient failures (no connection, timeouts, resets, HTTP 429 and 5xx,
            a body shorter than its ``Content-Length``) are retried.
        max_bytes: The largest body accepted, counted once decompressed (a server may
            compress even when asked not to); the bytes as sent may be at most twice as many.
        timeout: httpx timeouts for each attempt; the client's own when None.
        deadline: Seconds each attempt may take, headers and body together; None: no limit.

    Returns:
        Where the image was written, with its SHA-256, size and type.

    Raises:
        InvalidInput: ``url`` is not an http(s) URL, ``max_bytes`` is below 1, or ``dest`` is
            a directory or in one that does not exist; nothing was sent.
        ResultExpired: The URL answered 403, 404 or 410.
        ResponseTooLarge: The body is larger than ``max_bytes``.
        NotAnImage: The body is not a complete image of the type it was sent as, or its
            compression is broken.
        DownloadError: Any other 4xx answer.
        TransportError: A transient failure outlasted ``retry``: `ConnectError`,
            `RequestTimeout` (a phase's timeout, or the ``deadline``), `RemoteProtocolError`
            (a reset or a truncated body),
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
    sink = _ImageSink(url, dest, max_bytes)
    return await fetch(
        client, url, sink.save, retry=retry, headers=_HEADERS, timeout=timeout, deadline=deadline
    )


class _ImageSink:
    """Takes one answer's body and keeps it at ``dest``, if it is a whole image."""

    def __init__(self, url: str, dest: pathlib.Path, max_bytes: int) -> None:
        self.url = url
        self.dest = dest
        self.max_bytes = max_bytes

    async def save(self, response: httpx.Response, deadline: anyio.CancelScope) -> Download:
        url, dest = self.url, self.dest
        _check_status(response, url)
        declared = _content_length(response)
        if declared is not None and declared > self.max_bytes:
            raise _too_large(url, self.max_bytes)
        sent_as = (response.headers.get("content-type") or "").partition(";")[0]
        sent_as = _TYPE_ALIASES.get(sent_as.strip().lower(), sent_as.strip().lower())
        # No checkpoint between creating the part file and the try that removes it.
        with paused(deadline):  # the deadline is the server's time, not the disk's
            part = await anyio.to_thread.run_sync(_PartFile, dest)
        try:
            kind = await _write_body(
                response, part, url, sent_as=sent_as, max_bytes=self.max_bytes, deadline=deadline
            )
            if declared is not None and part.size != declared:
                message = f"{shown(url)} sent {part.size} of {declared} bytes"
                truncated = RemoteProtocolError(message, endpoint=shown(url))
                raise Failure(truncated, Delivery.AMBIGUOUS)
            kind = kind or _identify(part.head, sent_as, url)
            if not _is_complete(kind, part):
                raise NotAnImage(
                    f"{shown(url)} sent an incomplete {kind} ({part.size} bytes)", url=url
                )
            with paused(deadline):
                await anyio.to_thread.run_sync(part.commit, dest)
        finally:
            if not part.committed:
                with anyio.CancelScope(shield=True):  # cancelled too, the part file must go
                    await anyio.to_thread.run_sync(part.discard)
        digest = part.sha256.hexdigest()
        logger.debug("downloaded %s: %d bytes, sha256 %s", shown(url), part.size, digest)
        return Download(dest, url, digest, part.size, kind)


async def _write_body(
    response: httpx.Response,
    part: _PartFile,
    url: str,
    *,
    sent_as: str,
    max_bytes: int,
    deadline: anyio.CancelScope,
) -> str | None:
    """Stream the body, decompressed within bounds, into ``part``; returns its image type once
    16 bytes have shown it."""
    kind: str | None = None

    async def write(piece: bytes) -> None:
        nonlocal kind
        await anyio.to_thread.run_sync(part.write, piece)
        if kind is None and len(part.head) == _HEAD:
            kind = _identify(part.head, sent_as, url)

    try:
        await stream_body(
            response, write, max_raw=2 * max_bytes, max_decoded=max_bytes, deadline=deadline
        )
    except BodyError as problem:
        if problem.too_large:
            raise _too_large(url, max_bytes) from None
        raise NotAnImage(
            f"{shown(url)} sent a body that is not an image: {problem}", url=url
        ) from None
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
    """A 4xx answer is final (429 and 5xx never get here: the wire retries them)."""
    status = response.status_code
    if response.is_success:
        return
    if status in _EXPIRED_STATUSES:
        raise ResultExpired(
            f"{shown(url)} answered HTTP {status}: Akool's result URLs stop working 7 days after "
            "the job is created. Re-read the job's info for its current URL; if the job is older "
            "than 7 days, the result is gone and must be generated again",
            url=url,
            status_code=status,
        )
    raise DownloadError(
        f"{shown(url)} answered HTTP {status}, not an image", url=url, status_code=status
    )


def _content_length(response: httpx.Response) -> int | None:
    """The declared length of the decoded body, if the server declared one."""
    if response.headers.get("content-encoding", "identity").strip().lower() != "identity":
        return None  # it counts encoded bytes; max_bytes still bounds the decoded ones
    value = response.headers.get("content-length", "").strip()
    return int(value) if value.isascii() and value.isdigit() else None


def _too_large(url: str, max_bytes: int) -> ResponseTooLarge:
    message = f"{shown(url)} is larger than max_bytes={max_bytes}; raise max_bytes to accept it"
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
            f"{shown(url)} did not send a PNG, JPEG, WebP or GIF image "
            f"(Content-Type {sent_as or 'none'!r}, body starts {head!r})",
            url=url,
        )
    if sent_as.startswith("image/") and sent_as != kind:
        raise NotAnImage(f"{shown(url)} was sent as {sent_as} but is a {kind}", url=url)
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
