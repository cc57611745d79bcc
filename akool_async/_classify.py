"""What one attempt's outcome proves: the rule behind every retry and every `SubmissionUnknown`.

Each failed attempt is classified once, into a `Failure`: the typed error its caller would see,
and what it proves about the request's effect at Akool (`Delivery`), from which `_retry` decides
whether it may be sent again. A request with no answer (`classify_transport`), or none by the
request deadline (`past_deadline`), is ambiguous unless no connection was ever made.

Only a 2xx answer with a code-1000 envelope is a success; redirects are never followed. What
any other status proves:

* 429: refused before it ran (not delivered), so even a paid create is sent again.
* 5xx, and every status that is neither 2xx nor 4xx (a 3xx above all: a server may answer a
  POST it has carried out with a redirect): it may have run (ambiguous); a create that gets one
  raises `SubmissionUnknown`.
* Any other 4xx: refused (answered), with the business code of its envelope if it has one. A
  4xx whose envelope claims success (code 1000) contradicts itself and is ambiguous.

A 2xx answer then proves what its body does: unreadable (larger than `MAX_ANSWER_BYTES`,
undecodable, not JSON, nested deeper than `MAX_ANSWER_DEPTH`, without an integer ``code``, or not
of the endpoint's documented shape) it is ambiguous; a business code is a definite refusal.
Nothing quoted from an answer keeps a credential the wire knows (`Redactor`).
"""

from __future__ import annotations

import re
from typing import Any, Final, TypeVar

import httpx

from ._answers import BodyError, Redactor, parse_json
from ._constants import MAX_ANSWER_BYTES, MAX_ANSWER_DEPTH
from ._endpoints import Endpoint, as_object
from ._errors import (
    AkoolError,
    APIError,
    ConnectError,
    HTTPStatusError,
    InvalidInput,
    InvalidResponse,
    RateLimited,
    RemoteProtocolError,
    RequestTimeout,
    ServerError,
    TooManyRequests,
    TransportError,
    error_for_code,
)
from ._retry import Delivery, Failure, parse_retry_after

__all__ = [
    "SUCCESS",
    "classify_status",
    "classify_transport",
    "decode_answer",
    "excerpt",
    "past_deadline",
    "scrub",
    "status_failure",
    "unreadable",
    "unsendable",
]

T = TypeVar("T")

SUCCESS: Final = 1000
_HTTP_TOO_MANY_REQUESTS: Final = 429
_HTTP_SERVER_ERROR: Final = 500
_EXCERPT: Final = 120
_MAX_MSG: Final = 500  # characters of Akool's ``msg`` kept in an APIError
# What h11 accepts as a header value (RFC 9110 field-value): a request with any other is
# refused by httpx before a byte of it is written.
_FIELD_VALUE: Final = re.compile(rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?")


# -- no answer, or an answer's status --------------------------------------------------------------


def classify_transport(exc: httpx.HTTPError, *, endpoint: str, target: str) -> Failure:
    """A request that got no answer. Only a connection never made, or never taken from the pool,
    proves nothing was sent; any other timeout or break may have come after the request left.

    Args:
        exc: What httpx raised.
        endpoint: Where the request went, for the error's ``endpoint``: an API path, or a
            result URL without its query.
        target: Who was asked, for the message: ``Akool``, or the URL.
    """
    if isinstance(exc, httpx.LocalProtocolError) and _illegal_header(exc):
        return unsendable(endpoint=endpoint, target=target, cause=exc)
    name = type(exc).__name__
    detail = f"{name}: {exc}" if str(exc) else name
    if isinstance(exc, httpx.ConnectError):
        error: AkoolError = ConnectError(
            f"could not connect to {target} ({detail})", endpoint=endpoint
        )
        return Failure(error, Delivery.NOT_DELIVERED, cause=exc)
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        error = RequestTimeout(f"{target} timed out before sending ({detail})", endpoint=endpoint)
        return Failure(error, Delivery.NOT_DELIVERED, cause=exc)
    if isinstance(exc, httpx.TimeoutException):
        error = RequestTimeout(f"{target} timed out after sending ({detail})", endpoint=endpoint)
        return Failure(error, Delivery.AMBIGUOUS, cause=exc)
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
        error = RemoteProtocolError(
            f"the connection to {target} broke mid-request ({detail})", endpoint=endpoint
        )
        return Failure(error, Delivery.AMBIGUOUS, cause=exc)
    error = TransportError(f"the request to {target} failed ({detail})", endpoint=endpoint)
    return Failure(error, Delivery.AMBIGUOUS, cause=exc)


def unsendable(*, endpoint: str, target: str, cause: Exception) -> Failure:
    """A request httpx could not encode (a header or body character HTTP cannot carry): it
    provably never left, and sending it again cannot mend it. Nothing of it is quoted, since a
    header may be a credential."""
    error = InvalidInput(
        f"the request to {target} could not be sent: a header or the body holds a character "
        "HTTP cannot carry (a credential with a stray space, newline or non-ASCII character?); "
        f"nothing was sent to {endpoint}"
    )
    return Failure(error, Delivery.NOT_DELIVERED, cause=cause)


def _illegal_header(exc: httpx.LocalProtocolError) -> bool:
    """Whether the request ``exc`` refused carries a header value h11 refuses before sending."""
    try:
        headers = exc.request.headers.raw
    except RuntimeError:  # pragma: no cover - httpx always sets the request it refused
        return False
    return any(_FIELD_VALUE.fullmatch(value) is None for _, value in headers)


def classify_status(response: httpx.Response, *, endpoint: str, target: str) -> Failure | None:
    """An answer whose HTTP status alone says the request failed: 429 (refused before it ran,
    so even a paid create may be resent) or a 5xx (it may have run). None for anything else."""
    status = response.status_code
    if status != _HTTP_TOO_MANY_REQUESTS and status < _HTTP_SERVER_ERROR:
        return None
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status == _HTTP_TOO_MANY_REQUESTS:
        error: AkoolError = TooManyRequests(
            f"{target} answered HTTP 429 (too many requests)"
            + (f", retry after {retry_after:g} s" if retry_after is not None else ""),
            retry_after=retry_after,
            endpoint=endpoint,
        )
        return Failure(error, Delivery.NOT_DELIVERED, retry_after)
    error = ServerError(f"{target} answered HTTP {status}", status_code=status, endpoint=endpoint)
    return Failure(error, Delivery.AMBIGUOUS, retry_after)


def past_deadline(deadline: float | None, *, endpoint: str, target: str) -> Failure:
    """An attempt that had no complete answer by the request deadline: it may have been sent,
    and run, so it is ambiguous (a create is not sent again)."""
    error = RequestTimeout(
        f"{target} sent no complete answer within the request deadline of {deadline} s "
        "(headers and body together; the session's request_deadline)",
        endpoint=endpoint,
    )
    return Failure(error, Delivery.AMBIGUOUS)


# -- an answer's body and envelope ----------------------------------------------------------------


def scrub(error: AkoolError, redact: Redactor) -> None:
    """Blank known credentials out of an error built from a server's words: its message, an
    APIError's ``msg``, and the httpx or parser error it is raised from."""
    error.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in error.args)
    if isinstance(error, APIError):
        error.msg = redact(error.msg)
    cause = error.__cause__
    if cause is not None and redact(str(cause)) != str(cause):
        error.__cause__ = ValueError(redact(str(cause)))


def status_failure(response: httpx.Response, path: str) -> Failure | None:
    """The failure an answer's status alone proves, before its body is read: 429 and 5xx
    (`classify_status`), and anything neither 2xx nor 4xx, a redirect above all, which may
    come after a request was carried out and is never followed."""
    failure = classify_status(response, endpoint=path, target="Akool")
    if failure is not None or response.is_success or response.is_client_error:
        return failure
    status = response.status_code
    kind = " (a redirect, not followed)" if response.is_redirect else ""
    error = HTTPStatusError(
        f"Akool answered HTTP {status}{kind}: only a 2xx answer is a success, so whether the "
        "request was carried out is unknown",
        status_code=status,
        endpoint=path,
    )
    return Failure(error, Delivery.AMBIGUOUS)


def unreadable(response: httpx.Response, path: str, problem: BodyError) -> Failure:
    """An answer whose body broke a bound or could not be decompressed: a 4xx still refused the
    request; a 2xx may have carried it out."""
    status = response.status_code
    if not response.is_success:
        error: AkoolError = HTTPStatusError(
            f"Akool answered HTTP {status}", status_code=status, endpoint=path
        )
        return Failure(error, Delivery.ANSWERED)
    limit = f" (Akool's answers are a few KB; at most {MAX_ANSWER_BYTES} bytes are read)"
    error = InvalidResponse(
        f"Akool's answer (HTTP {status}) is unreadable: {problem}"
        + (limit if problem.too_large else ""),
        endpoint=path,
    )
    return Failure(error, Delivery.AMBIGUOUS)


def decode_answer(
    response: httpx.Response,
    content: bytes,
    endpoint: Endpoint[T],
    redact: Redactor,
    asked_id: str | None = None,
) -> T:
    """Akool's envelope: JSON, then ``code``, then the endpoint's decoder, then the id asked
    about. The status is 2xx or 4xx here (`status_failure` took the others)."""
    path = endpoint.path
    status = response.status_code
    fields, code = _envelope(response, content, endpoint, redact)
    if code != SUCCESS:
        raise _refusal(response, code, fields.get("msg"), path, redact)
    if not response.is_success:
        error: AkoolError = HTTPStatusError(
            f"Akool answered HTTP {status} with a success envelope (code 1000): only a 2xx "
            "answer is a success, so whether the request was carried out is unknown",
            status_code=status,
            endpoint=path,
        )
        raise Failure(error, Delivery.AMBIGUOUS)
    data = fields if endpoint.whole_envelope else fields.get("data")
    if not endpoint.secret_answer:
        # A server that echoes a credential into a value (a result URL, a prompt) must not get
        # it into a model, and so into a log line, a journal or a manifest.
        data = redact.value(data)
    try:
        result = endpoint.decode(data)
    except (ValueError, TypeError, KeyError) as exc:
        error = InvalidResponse(
            f"Akool's answer is not of the documented shape: {redact(str(exc))}", endpoint=path
        )
        # Code 1000 came back, so a create did happen; but without a readable id it is lost to us.
        raise Failure(error, Delivery.AMBIGUOUS, cause=exc) from exc
    if asked_id is not None and getattr(result, "id", None) != asked_id:
        error = InvalidResponse(
            f"Akool's answer describes job {redact(str(getattr(result, 'id', None)))} where "
            f"job {asked_id} was asked about",
            endpoint=path,
        )
        raise Failure(error, Delivery.AMBIGUOUS)
    return result


def _envelope(
    response: httpx.Response, content: bytes, endpoint: Endpoint[Any], redact: Redactor
) -> tuple[dict[str, Any], int]:
    """The envelope's fields and its integer ``code``; else the failure the body proves: a 4xx
    without an envelope is still a refusal, a 2xx without one may have been carried out."""
    path = endpoint.path
    status = response.status_code
    quote = not endpoint.secret_answer
    refused = HTTPStatusError(f"Akool answered HTTP {status}", status_code=status, endpoint=path)
    try:
        envelope = parse_json(content, max_depth=MAX_ANSWER_DEPTH)
    except ValueError as exc:
        # Not the parser's own error as the cause: it holds the whole body, which may quote a
        # credential back.
        cause = ValueError(str(exc))
        if not response.is_success:
            raise Failure(refused, Delivery.ANSWERED, cause=cause) from None
        shown = excerpt(content, quote=quote, redact=redact)
        error = InvalidResponse(
            f"Akool's answer (HTTP {status}) is unreadable, {exc}: {shown}", endpoint=path
        )
        raise Failure(error, Delivery.AMBIGUOUS, cause=cause) from None
    fields = as_object(envelope)
    code = fields.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        if not response.is_success:
            raise Failure(refused, Delivery.ANSWERED)
        error = InvalidResponse(
            "Akool's answer has no integer 'code': " + excerpt(content, quote=quote, redact=redact),
            endpoint=path,
        )
        raise Failure(error, Delivery.AMBIGUOUS)
    return fields, code


def _refusal(
    response: httpx.Response, code: int, msg: object, path: str, redact: Redactor
) -> Failure:
    """A business code other than 1000: a definite refusal; a rate limit (1005) proves the
    request was not carried out, so it may be sent again."""
    text = redact(msg)[:_MAX_MSG] if isinstance(msg, str) else ""
    api_error = error_for_code(code, text, endpoint=path)
    if isinstance(api_error, RateLimited):
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        api_error.retry_after = retry_after
        return Failure(api_error, Delivery.NOT_DELIVERED, retry_after)
    return Failure(api_error, Delivery.ANSWERED)


def excerpt(content: bytes, *, quote: bool, redact: Redactor) -> str:
    if not quote:
        return "(body not shown: it may carry a credential)"
    # Blanked before it is cut short, so no part of a credential survives at the cut.
    text = redact(content.decode("utf-8", "replace"))
    return repr(text[:_EXCERPT] + ("..." if len(text) > _EXCERPT else ""))
