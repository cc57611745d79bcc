"""Reading what a server sends, within bounds: a body's size, its decompression, its JSON.

A body is streamed as sent (``aiter_raw``) and decompressed here a bounded piece at a time, so
neither an endless body nor a small gzip body that inflates to gigabytes takes more memory than
the limit: the bytes as sent and the bytes once decoded are both counted against it. JSON is
parsed only after a cheap scan has shown it nests no deeper than asked, so a deeply nested answer
is a ValueError, never a RecursionError. `Redactor` blanks every credential the session knows
out of any text taken from an answer before it reaches a message, an error or a log line.

Everything here raises plain exceptions (`BodyError`, ValueError); the wire and the download
turn them into the typed errors their callers see.
"""

from __future__ import annotations

import contextlib
import json
import math
import zlib
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Sequence
from typing import Any, Final

import anyio
import httpx

from ._bounded_json import load as load_json
from ._constants import DOWNLOAD_DRAIN_LIMIT

__all__ = [
    "MAX_CODINGS",
    "PIECE",
    "BodyError",
    "Redactor",
    "parse_json",
    "paused",
    "read_body",
    "stream_body",
]

PIECE: Final = 64 * 1024
"""The most decompressed bytes produced, and handed on, at a time."""
MAX_CODINGS: Final = 3
"""The most compressions stacked in one ``Content-Encoding`` that are undone; more is refused."""

_GZIP: Final = frozenset({"gzip", "x-gzip"})
_DEFLATE: Final = "deflate"
_MASK: Final = "********"
# A "secret" of a few characters (a test's token "t") would blank every word it occurs in, and
# guards nothing: no real credential is that short.
_SHORTEST_SECRET: Final = 6


class BodyError(Exception):
    """A body broke a bound, or could not be decompressed.

    Attributes:
        too_large: The body is larger than a bound (else it could not be decompressed).
    """

    def __init__(self, message: str, *, too_large: bool) -> None:
        super().__init__(message)
        self.too_large = too_large


# -- decompression, a bounded piece at a time ---------------------------------------------------


class _Inflate:
    """Undoes one zlib-family content coding, producing at most `PIECE` bytes per step.

    As httpx does, a ``deflate`` body is read as zlib data, or as raw deflate when its first
    bytes are not a zlib header; data after the end of the compressed stream is ignored.
    """

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._fresh = True
        wbits = zlib.MAX_WBITS | 16 if coding in _GZIP else zlib.MAX_WBITS
        self._zlib = zlib.decompressobj(wbits)

    def pieces(self, data: bytes) -> Iterator[bytes]:
        """The decompressed form of ``data``, in pieces of at most `PIECE` bytes."""
        if not data:
            return
        while not self._zlib.eof:
            try:
                out = self._zlib.decompress(data, PIECE)
            except zlib.error as exc:
                if self._fresh and self._coding == _DEFLATE:
                    self._fresh = False
                    self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                message = f"its {self._coding} data could not be decompressed ({exc})"
                raise BodyError(message, too_large=False) from None
            self._fresh = False
            if out:
                yield out
            # A full piece may leave input unread, or output held in zlib: step again.
            data = self._zlib.unconsumed_tail
            if not data and len(out) < PIECE:
                return

    def finish(self) -> bytes:
        """What zlib still holds once the body has ended (nothing, after `pieces`).

        Raises:
            BodyError: The compressed stream had not ended: the body was cut short.
        """
        rest = self._zlib.flush()
        if not self._zlib.eof:
            raise BodyError(f"its {self._coding} data is cut short", too_large=False)
        return rest


def _stages(content_encoding: str) -> list[_Inflate]:
    """The codings to undo, last applied first. Others (identity, br, zstd, unknown ones) pass
    through untouched, as httpx leaves codings it cannot decode: such bytes cannot inflate.

    Raises:
        BodyError: More than `MAX_CODINGS` compressions are stacked: no server compresses twice
            over on purpose, and each layer is one more step for every piece of the body.
    """
    codings = [coding.strip().lower() for coding in content_encoding.split(",")]
    stages = [
        _Inflate(coding) for coding in reversed(codings) if coding in _GZIP or coding == _DEFLATE
    ]
    if len(stages) > MAX_CODINGS:
        message = f"it stacks {len(stages)} compressions; at most {MAX_CODINGS} are read"
        raise BodyError(message, too_large=False)
    return stages


def _through(stages: Sequence[_Inflate], data: bytes) -> Iterator[bytes]:
    # Recursion one level per stage: bounded by MAX_CODINGS.
    if not stages:
        if data:
            yield data
        return
    for piece in stages[0].pieces(data):
        yield from _through(stages[1:], piece)


def _finish(stages: Sequence[_Inflate]) -> Iterator[bytes]:
    for index, stage in enumerate(stages):
        yield from _through(stages[index + 1 :], stage.finish())


class _Tally:
    """Counts a body's bytes as sent and once decoded, against their bounds."""

    def __init__(self, max_raw: int, max_decoded: int) -> None:
        self.max_raw = max_raw
        self.max_decoded = max_decoded
        self.raw = 0
        self.decoded = 0

    def sent(self, size: int) -> None:
        self.raw += size
        if self.raw > self.max_raw:
            raise BodyError(f"more than {self.max_raw} bytes as sent", too_large=True)

    def kept(self, size: int) -> None:
        self.decoded += size
        if self.decoded > self.max_decoded:
            raise BodyError(f"more than {self.max_decoded} bytes once decoded", too_large=True)


# -- reading a body -------------------------------------------------------------------------------


@contextlib.contextmanager
def paused(deadline: anyio.CancelScope | None) -> Generator[None]:
    """Stop the clock of ``deadline`` (a request's) for the block, then move it on by as long.

    The deadline bounds the server's time, not the SDK's own work, such as writing a download to
    disk in a worker thread. (Under a virtual clock that jumps whenever every task waits, a wait
    on a thread would otherwise jump straight to the deadline.)
    """
    if deadline is None:
        yield
        return
    saved = deadline.deadline
    deadline.deadline = math.inf
    started = anyio.current_time()
    try:
        yield
    finally:
        deadline.deadline = saved + (anyio.current_time() - started)


async def stream_body(
    response: httpx.Response,
    sink: Callable[[bytes], Awaitable[None]],
    *,
    max_raw: int,
    max_decoded: int,
    deadline: anyio.CancelScope | None = None,
) -> None:
    """Hand ``response``'s body, decompressed, to ``sink`` in pieces of at most `PIECE` bytes.

    Args:
        response: A streamed response (``client.stream``), its body not read yet.
        sink: Takes each piece; an exception from it ends the reading and is raised.
        max_raw: The most bytes accepted as sent.
        max_decoded: The most bytes accepted once decompressed.
        deadline: The request's deadline, `paused` while ``sink`` works.

    Raises:
        BodyError: A bound was passed, or the body could not be decompressed.
        httpx.HTTPError: The body could not be read.
    """
    if response.is_stream_consumed:
        # An in-process transport (httpx.MockTransport given content=) answers with its body
        # already read and decoded: no bytes left to count as sent.
        content = response.content
        pieces = (content[start : start + PIECE] for start in range(0, len(content), PIECE))
        await _hand_on(pieces, sink, _Tally(max_raw, max_decoded), deadline)
        return
    await _read_raw(response, sink, _Tally(max_raw, max_decoded), deadline)


async def _read_raw(
    response: httpx.Response,
    sink: Callable[[bytes], Awaitable[None]],
    tally: _Tally,
    deadline: anyio.CancelScope | None,
) -> None:
    stages = _stages(response.headers.get("content-encoding", ""))
    failure: Exception | None = None
    drained = 0
    # A failure mid-body cancels the read rather than leaving the loop: the cancellation lands
    # inside httpx's nested async generators, so they finish here instead of in the garbage
    # collector, where trio reports each one as a ResourceWarning (encode/httpx#3686).
    with anyio.CancelScope() as reading:
        async for chunk in response.aiter_raw():
            if failure is not None:
                drained += len(chunk)  # what httpx had buffered before its next checkpoint
                if drained > DOWNLOAD_DRAIN_LIMIT:
                    break
                continue
            try:
                tally.sent(len(chunk))
                await _hand_on(_through(stages, chunk), sink, tally, deadline)
            except Exception as exc:  # noqa: BLE001 - raised below, once the stream is left
                failure = exc
                reading.cancel()
    if failure is not None:
        raise failure
    await _hand_on(_finish(stages), sink, tally, deadline)


async def _hand_on(
    pieces: Iterable[bytes],
    sink: Callable[[bytes], Awaitable[None]],
    tally: _Tally,
    deadline: anyio.CancelScope | None,
) -> None:
    for piece in pieces:
        tally.kept(len(piece))
        with paused(deadline):
            await sink(piece)


async def read_body(response: httpx.Response, *, limit: int) -> bytes:
    """``response``'s whole body, decompressed, if it is at most ``limit`` bytes both as sent
    and once decoded (see `stream_body`)."""
    body = bytearray()

    async def keep(piece: bytes) -> None:
        body.extend(piece)

    await stream_body(response, keep, max_raw=limit, max_decoded=limit)
    return bytes(body)


# -- JSON ----------------------------------------------------------------------------------------


def parse_json(content: bytes, *, max_depth: int) -> Any:
    """``content`` as JSON, if its arrays and objects nest at most ``max_depth`` deep.

    The nesting is read from the brackets outside strings before parsing, so a deep document
    costs one linear scan and no recursion; numbers are read into a range (`_bounded_json`).

    Raises:
        ValueError: Not JSON (UnicodeDecodeError and `UnreadableJSON` are ValueErrors), a
            number too long or too large to hold, or nested too deep.
    """
    text = content.decode(json.detect_encoding(content), "surrogatepass")
    return load_json(text, max_depth=max_depth)


# -- secrets -------------------------------------------------------------------------------------


class Redactor:
    """Blanks known credentials out of text and values taken from a server's answers.

    A server that echoes the request (its headers, its body) into an error page would otherwise
    have the api key, the token or the client secret quoted into errors and log lines.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        """Blank ``secret`` too from now on (a token fetched during the session, say)."""
        if secret and len(secret) >= _SHORTEST_SECRET and secret not in self._secrets:
            # Longest first: a secret that contains another is blanked whole.
            self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """``text`` with every known secret replaced by ``********``."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _MASK)
        return text

    def value(self, value: Any) -> Any:
        """A JSON-like value (dicts, lists, strings, numbers) with every string redacted."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            items: dict[Any, Any] = value  # pyright: ignore[reportUnknownVariableType]
            return {self.value(key): self.value(item) for key, item in items.items()}
        if isinstance(value, list | tuple):
            elements: list[Any] | tuple[Any, ...] = value  # pyright: ignore[reportUnknownVariableType]
            return [self.value(item) for item in elements]
        return value
