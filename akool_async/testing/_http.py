"""The emulator's HTTP over ASGI: reading a request, sending an answer, and the record of each.

Akool's ``{code, msg, data}`` envelope is sent from here too, and `Answer` carries a business-code
refusal from wherever a request is refused to where it is answered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, cast
from urllib.parse import parse_qs

import attrs

from akool_async._asgi import Receive, Scope, Send
from akool_async.testing._akool import MESSAGES, ROUTES, Code
from akool_async.testing._plan import FaultKind

__all__ = [
    "Answer",
    "EmulatedDisconnect",
    "Incoming",
    "RecordedRequest",
    "as_object",
    "drop",
    "incoming_of",
    "parse_json",
    "read_body",
    "recorded",
    "respond",
    "respond_envelope",
    "respond_refusal",
    "success",
]

_MAX_BODY: Final = 1 << 20


class EmulatedDisconnect(Exception):
    """Raised inside the app to drop the connection mid-answer, as a failing network would."""


@attrs.frozen
class RecordedRequest:
    """One request the emulator answered.

    Attributes:
        at: Emulator clock time it arrived.
        method: HTTP method.
        path: URL path.
        endpoint: ``createbyprompt``, ``createbybutton``, ``infobymodelid``, ``quota``,
            ``getToken``, ``image`` or ``unknown``.
        query: Query parameters (first value of each).
        body: The JSON body, with a getToken ``clientSecret`` replaced by ``"***"``.
        auth: ``"api_key"``, ``"bearer"`` or None: which header was sent (never its value).
        status_code: The HTTP status answered.
        code: Akool's business code answered, if an envelope was sent.
        fault: The injected fault, if any.
    """

    at: float
    method: str
    path: str
    endpoint: str
    query: Mapping[str, str]
    body: Any
    auth: str | None
    status_code: int
    code: int | None
    fault: FaultKind | None


class Answer(Exception):
    """A business-code answer, raised inside a request; it never escapes the app."""

    def __init__(self, code: Code) -> None:
        super().__init__(code)
        self.code = int(code)
        self.msg = MESSAGES[code]


@attrs.define(kw_only=True)
class Incoming:
    """One request as the app reads it."""

    at: float
    method: str
    path: str
    endpoint: str
    query: dict[str, str]
    headers: dict[str, str]
    origin: str
    body: Any = None


def incoming_of(scope: Scope, at: float) -> Incoming:
    """The request ``scope`` describes, arrived at ``at``; its body is read later."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    query_string = scope.get("query_string", b"").decode("latin-1")
    return Incoming(
        at=at,
        method=scope["method"],
        path=scope["path"],
        endpoint=ROUTES.get((scope["method"], scope["path"]), "unknown"),
        query={k: v[0] for k, v in parse_qs(query_string).items()},
        headers=headers,
        origin=f"{scope.get('scheme', 'http')}://{headers.get('host', 'akool-emulator.test')}",
    )


def recorded(
    incoming: Incoming, status: int, code: int | None, fault: FaultKind | None
) -> RecordedRequest:
    """The record of ``incoming``'s answer, its secret and its credentials left out."""
    body = incoming.body
    fields = as_object(body)
    if fields is not None and "clientSecret" in fields:
        body = {**fields, "clientSecret": "***"}
    headers = incoming.headers
    auth = "bearer" if headers.get("authorization") else None
    if auth is None and headers.get("x-api-key"):
        auth = "api_key"
    return RecordedRequest(
        at=incoming.at,
        method=incoming.method,
        path=incoming.path,
        endpoint=incoming.endpoint,
        query=dict(incoming.query),
        body=body,
        auth=auth,
        status_code=int(status),
        code=code,
        fault=fault,
    )


def success(**fields: Any) -> dict[str, Any]:
    """A success envelope: code 1000 and its msg, then ``fields`` (``data``, or a ``token``)."""
    return {"code": int(Code.OK), "msg": MESSAGES[Code.OK], **fields}


def as_object(value: Any) -> dict[str, Any] | None:
    """``value`` as a JSON object, or None if it is not one."""
    return cast("dict[str, Any]", value) if isinstance(value, dict) else None


def parse_json(body: bytes) -> Any:
    """The request's JSON, or None when it has none or it is not JSON (Akool then says 1003)."""
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


async def read_body(receive: Receive) -> bytes:
    """The request's body; empty when it is larger than the app reads."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise EmulatedDisconnect("the client went away")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            return b""
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def respond(
    send: Send, status: int, body: bytes, content_type: str, extra: Mapping[str, str] | None = None
) -> None:
    """Send a whole answer: status, headers (``extra`` among them) and body."""
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def respond_envelope(send: Send, payload: Mapping[str, Any]) -> None:
    """Send ``payload`` as a 200 JSON answer, compact as Akool's."""
    await respond(
        send, 200, json.dumps(payload, separators=(",", ":")).encode(), "application/json"
    )


async def respond_refusal(send: Send, answer: Answer) -> None:
    """Send a business-code refusal: its code and msg, no data."""
    await respond_envelope(send, {"code": answer.code, "msg": answer.msg})


async def drop(send: Send) -> None:
    """Start an answer that promises a body, then break the connection."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"code":', "more_body": True})
    raise EmulatedDisconnect("connection dropped by an injected fault")
