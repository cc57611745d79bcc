"""A hostile HTTP server on loopback, for tests of what the SDK accepts from a server.

It is a raw anyio TCP listener (asyncio and trio alike) that speaks just enough HTTP/1.1 to read
a request and send a scripted answer, including the ones no well-behaved server sends: a body
that trickles in a byte at a time, one that never ends, a gzip bomb, headers larger than any
client reads, a redirect carrying a success envelope, the request's own headers echoed back as
text, JSON nested a hundred thousand deep.

```python
async with hostile_server() as server:
    server.on(CREATE_PATH, gzip_bomb(2 << 30))
    async with ak.AkoolSession(api_key="k", base_url=server.url) as session: ...
    assert 1 == len(server.seen(CREATE_PATH))
```

Every connection carries one request and is closed after its answer (``Connection: close``).
A behaviour is an ``async (stream, request) -> None`` that writes the whole answer; the
factories below make the usual ones. What each request looked like is kept in `requests`, with
the bytes the server managed to send before the client hung up.
"""

from __future__ import annotations

import contextlib
import json
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, Final
from urllib.parse import urlsplit

import anyio
import anyio.abc
import attrs

__all__ = [
    "PNG",
    "PNG_START",
    "Behaviour",
    "HostileServer",
    "SeenRequest",
    "answer",
    "deep_json",
    "echo_in_broken_header",
    "echo_request",
    "endless",
    "gzip_bomb",
    "hostile_server",
    "huge_headers",
    "json_answer",
    "redirect",
    "trickle",
]

MAX_HEAD: Final = 64 * 1024
"""The largest request head read; httpx's are a few hundred bytes."""
ZEROS: Final = bytes(1 << 20)
PNG_START: Final = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
"""A PNG's first 16 bytes: enough for the SDK to take a body for a PNG and keep reading."""
PNG: Final = PNG_START + bytes(17) + b"\x00\x00\x00\x00IEND\xaeB`\x82"
"""A body the SDK's download accepts as a whole PNG: its start and its end."""
_GONE: Final = (
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    ConnectionError,
    OSError,
)


@attrs.define
class SeenRequest:
    """One request the server read, and how much of its answer went out.

    Attributes:
        method: ``GET``, ``POST``, ...
        target: The request target: path and query.
        headers: The header lines, names lowercased, in order.
        body: The request body (by ``Content-Length``).
        head: The raw request head, as received.
        sent: Bytes of the answer written before it ended or the client hung up.
    """

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    head: bytes
    sent: int = 0

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    def json(self) -> Any:
        return json.loads(self.body)


class _Counting:
    """The connection, counting the bytes written to it."""

    def __init__(self, stream: anyio.abc.ByteStream, request: SeenRequest) -> None:
        self._stream = stream
        self._request = request

    async def send(self, data: bytes) -> None:
        await self._stream.send(data)
        self._request.sent += len(data)


Behaviour = Callable[[_Counting, SeenRequest], Awaitable[None]]


class HostileServer:
    """The server's routes and what it saw; made by `hostile_server`."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.requests: list[SeenRequest] = []
        self._routes: dict[str, Behaviour] = {}

    def on(self, path: str, behaviour: Behaviour) -> None:
        """Answer requests for ``path`` (query ignored) with ``behaviour``; others get a 404."""
        self._routes[path] = behaviour

    def seen(self, path: str) -> list[SeenRequest]:
        """The requests for ``path``, in order."""
        return [request for request in self.requests if request.path == path]

    async def handle(self, stream: anyio.abc.ByteStream) -> None:
        async with stream:
            with contextlib.suppress(*_GONE):
                request = await _read_request(stream)
                if request is None:
                    return
                self.requests.append(request)
                behaviour = self._routes.get(request.path, answer(404, b"no such route"))
                await behaviour(_Counting(stream, request), request)


@contextlib.asynccontextmanager
async def hostile_server() -> AsyncIterator[HostileServer]:
    """A `HostileServer` listening on 127.0.0.1 (a free port) for the ``async with`` block."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - anyio, not Django
    server = HostileServer(port)
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, server.handle)
        try:
            yield server
        finally:
            group.cancel_scope.cancel()


async def _read_request(stream: anyio.abc.ByteStream) -> SeenRequest | None:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEAD:
            return None
        buffer += await stream.receive()
    head, _, rest = buffer.partition(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _version = request_line.split(" ", 2)
    headers = [
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(":") for line in lines)
    ]
    length = int(dict(headers).get("content-length", "0"))
    body = rest
    while len(body) < length:
        body += await stream.receive()
    return SeenRequest(method, target, headers, body[:length], head + b"\r\n\r\n")


def _head(status: int, headers: Iterable[tuple[str, str]], reason: str = "") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason or 'Whatever'}", "connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# -- behaviours ------------------------------------------------------------------------------------


def answer(
    status: int = 200,
    body: bytes = b"",
    headers: Iterable[tuple[str, str]] = (("content-type", "application/json"),),
) -> Behaviour:
    """A plain, complete answer with a ``Content-Length``."""
    fixed = [*headers, ("content-length", str(len(body)))]

    async def behaviour(stream: _Counting, _: SeenRequest) -> None:
        await stream.send(_head(status, fixed) + body)

    return behaviour


def json_answer(value: Any, status: int = 200) -> Behaviour:
    """``value`` as a JSON body (NaN and Infinity allowed, as Python writes them)."""
    return answer(status, json.dumps(value).encode())


def trickle(
    body: bytes,
    *,
    every: float,
    headers_too: bool = False,
    content_type: str = "application/json",
) -> Behaviour:
    """``body`` one byte every ``every`` seconds (its headers too, with ``headers_too``), each
    byte well within any read timeout longer than ``every``."""
    head = _head(200, [("content-type", content_type), ("content-length", str(len(body)))])

    async def behaviour(stream: _Counting, _: SeenRequest) -> None:
        if not headers_too:
            await stream.send(head)
        for index in range(len(body) + (len(head) if headers_too else 0)):
            await anyio.sleep(every)
            data = head + body if headers_too else body
            await stream.send(data[index : index + 1])

    return behaviour


def endless(
    *,
    start: bytes = b"",
    content_type: str = "application/json",
    chunk: int = 64 * 1024,
    status: int = 200,
    headers: Iterable[tuple[str, str]] = (),
) -> Behaviour:
    """A chunked body that never ends, sent as fast as the client reads: ``start``, then spaces
    (with ``status`` and ``headers``: a redirect's body, say)."""
    filler = b" " * chunk
    head = [*headers, ("content-type", content_type), ("transfer-encoding", "chunked")]

    async def behaviour(stream: _Counting, _: SeenRequest) -> None:
        await stream.send(_head(status, head) + _chunk(start or filler))
        while True:
            await stream.send(_chunk(filler))

    return behaviour


def gzip_bomb(
    inflated: int,
    *,
    start: bytes = b"",
    coding: str = "gzip",
    content_type: str = "application/json",
    status: int = 200,
    headers: Iterable[tuple[str, str]] = (),
) -> Behaviour:
    """A chunked gzip (or ``deflate``) body of ``start`` and zeros, ``inflated`` bytes in all once
    decompressed: about a thousandth of that as sent (see `bomb`)."""
    head = [
        *headers,
        ("content-type", content_type),
        ("content-encoding", coding),
        ("transfer-encoding", "chunked"),
    ]

    async def behaviour(stream: _Counting, _: SeenRequest) -> None:
        await stream.send(_head(status, head))
        for compressed in bomb(inflated, start=start, coding=coding):
            await stream.send(_chunk(compressed))
        await stream.send(b"0\r\n\r\n")

    return behaviour


def bomb(inflated: int, *, start: bytes = b"", coding: str = "gzip") -> Iterator[bytes]:
    """A valid gzip (or zlib ``deflate``) stream of ``start`` and zeros, ``inflated`` bytes in
    all, in pieces of about a kilobyte.

    Each MiB of zeros is compressed once and its bytes repeated: after a full flush, deflate
    encodes equal blocks alike. So the server stays cheap (it shares the event loop with the
    client under test) however far the client reads; the checksum is kept as it goes.
    """
    gzipped = coding == "gzip"
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31 if gzipped else 15)
    yield compressor.compress(start) + compressor.flush(zlib.Z_FULL_FLUSH)
    unit = compressor.compress(ZEROS) + compressor.flush(zlib.Z_FULL_FLUSH)
    checksum = zlib.crc32(start) if gzipped else zlib.adler32(start)
    left = inflated - len(start)
    while left > 0:
        block = ZEROS[: min(left, len(ZEROS))]
        left -= len(block)
        if len(block) < len(ZEROS):
            unit = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
        checksum = zlib.crc32(block, checksum) if gzipped else zlib.adler32(block, checksum)
        yield unit
    end = b"\x03\x00"  # an empty final block, the stream being byte-aligned after each flush
    if gzipped:
        yield end + struct.pack("<II", checksum, inflated & 0xFFFFFFFF)
    else:
        yield end + struct.pack(">I", checksum)


def huge_headers(size: int) -> Behaviour:
    """A 200 whose headers are ``size`` bytes long, then a valid envelope."""
    body = json.dumps({"code": 1000, "data": {}}).encode()
    headers = [("x-filler", "a" * size), ("content-length", str(len(body)))]

    async def behaviour(stream: _Counting, _: SeenRequest) -> None:
        await stream.send(_head(200, headers) + body)

    return behaviour


def redirect(status: int, location: str, body: Any) -> Behaviour:
    """A redirect to ``location`` whose body is ``body`` as JSON (a success envelope, say)."""
    return answer(
        status,
        json.dumps(body).encode(),
        headers=[("location", location), ("content-type", "application/json")],
    )


CREDENTIAL_HEADERS: Final = frozenset({"authorization", "x-api-key"})


def echo_request(status: int = 200, *, as_msg: bool = False) -> Behaviour:
    """The request's header lines (those carrying credentials first, so any excerpt shows
    them) and body sent back: as a ``text/plain`` body, or (``as_msg``) as the ``msg`` of a
    refusal envelope (code 1003)."""

    async def behaviour(stream: _Counting, request: SeenRequest) -> None:
        lines = sorted(request.headers, key=lambda header: header[0] not in CREDENTIAL_HEADERS)
        echoed = "".join(f"{name}: {value}\r\n" for name, value in lines).encode("latin-1")
        echoed += request.body
        if as_msg:
            text = echoed.decode("latin-1")
            await answer(status, json.dumps({"code": 1003, "msg": text}).encode())(stream, request)
            return
        await answer(status, echoed, headers=[("content-type", "text/plain")])(stream, request)

    return behaviour


def echo_in_broken_header() -> Behaviour:
    """A 200 whose first header line (no colon: not HTTP) quotes the request's credentials,
    so the client's own parser error quotes them."""

    async def behaviour(stream: _Counting, request: SeenRequest) -> None:
        quoted = " ".join(value for name, value in request.headers if name in CREDENTIAL_HEADERS)
        await stream.send(f"HTTP/1.1 200 OK\r\necho {quoted}\r\n\r\n".encode("latin-1"))

    return behaviour


def deep_json(depth: int, *, where: str = "data") -> Behaviour:
    """A success envelope whose ``where`` holds arrays nested ``depth`` deep."""
    nested = "[" * depth + "]" * depth
    return answer(200, f'{{"code": 1000, "msg": "OK", "{where}": {nested}}}'.encode())


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"
