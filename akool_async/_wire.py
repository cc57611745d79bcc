"""One call -> one decoded answer: auth headers, JSON, business codes, and the retry loop.

The wire knows *how* to talk to Akool; it does not know about jobs or polling. Every failure is
classified once, here, by what it proves about delivery (see `_retry`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar, cast

import anyio
import httpx

from ._config import AuthMode, Credentials, Secret
from ._errors import (
    AkoolError,
    APIError,
    AuthenticationError,
    ConnectError,
    HTTPStatusError,
    InvalidResponse,
    RateLimited,
    RemoteProtocolError,
    RequestTimeout,
    ServerError,
    SubmissionUnknown,
    TooManyRequests,
    TransportError,
    error_for_code,
)
from ._pace import Pace
from ._retry import Delivery, RetryPolicy, is_retryable, parse_retry_after

__all__ = ["TOKEN_PATH", "Wire"]

logger = logging.getLogger("akool_async")

T = TypeVar("T")

TOKEN_PATH: Final = "/api/open/v3/getToken"  # noqa: S105 - a path, not a secret
SUCCESS: Final = 1000
EXPIRED_TOKEN: Final = 1101
_HTTP_TOO_MANY_REQUESTS: Final = 429
_HTTP_SERVER_ERROR: Final = 500


class _Failure(Exception):
    """A classified failure of one attempt: the error to raise and what it proves."""

    def __init__(
        self,
        error: AkoolError,
        delivery: Delivery,
        retry_after: float | None = None,
        *,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(str(error))
        if cause is not None:
            # The error users see keeps the httpx / json error as its cause.
            error.__cause__ = cause
        self.error = error
        self.delivery = delivery
        self.retry_after = retry_after
        self.stale_token: Secret | None = None
        self.queued = 0.0
        """Seconds the attempt waited for its turn from the `Pace` before it was sent."""


class _TokenSource:
    """The bearer token: given, or fetched once from getToken and shared by every request."""

    def __init__(self, wire: Wire, credentials: Credentials) -> None:
        self._wire = wire
        self._credentials = credentials
        self._token: Secret | None = credentials.token
        self._lock = anyio.Lock()
        self.fetches = 0

    @property
    def renewable(self) -> bool:
        return self._credentials.has_client_credentials

    async def current(self) -> Secret:
        if self._token is None:
            async with self._lock:
                if self._token is None:
                    self._token = await self._fetch()
        return self._token

    async def renew(self, stale: Secret | None) -> None:
        """Fetch a new token, unless a concurrent request already replaced ``stale``."""
        async with self._lock:
            if self._token is None or self._token == stale:
                self._token = await self._fetch()

    async def _fetch(self) -> Secret:
        client_id = self._credentials.client_id
        client_secret = self._credentials.client_secret
        if client_id is None or client_secret is None:  # pragma: no cover - guarded by callers
            raise AuthenticationError(EXPIRED_TOKEN, "the token expired and no client credentials")
        self.fetches += 1
        body = {"clientId": client_id, "clientSecret": client_secret.reveal()}
        envelope = await self._wire.call(
            "POST",
            TOKEN_PATH,
            json_body=body,
            decode=_decode_token,
            paid=False,
            authenticate=False,
            whole_envelope=True,
            answer_has_secret=True,
        )
        return Secret(envelope)


def _as_object(value: Any) -> dict[str, Any]:
    """The JSON object ``value``, or an empty one if it is anything else."""
    return cast("dict[str, Any]", value) if isinstance(value, dict) else {}


def _decode_token(envelope: Any) -> str:
    token = _as_object(envelope).get("token")
    if not isinstance(token, str) or not token:
        raise ValueError("getToken answered code 1000 without a token")
    return token


class Wire:
    """Sends one logical call, retrying what may be retried, and decodes Akool's envelope."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: httpx.URL,
        credentials: Credentials,
        retry: RetryPolicy,
        timeout: httpx.Timeout | None,
        user_agent: str,
        pace: Pace,
    ) -> None:
        self._client = client
        self.pace = pace
        self._base_url = base_url
        self._credentials = credentials
        self._retry = retry
        self._timeout = timeout
        self._user_agent = user_agent
        self.tokens = _TokenSource(self, credentials)

    async def call(
        self,
        method: str,
        path: str,
        *,
        decode: Callable[[Any], T],
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        paid: bool = False,
        authenticate: bool = True,
        whole_envelope: bool = False,
        answer_has_secret: bool = False,
        retry: RetryPolicy | None = None,
        paced: bool = False,
    ) -> T:
        """Make one logical call and return ``decode(data)``.

        Args:
            method: HTTP method.
            path: API path, e.g. ``/api/open/v3/content/image/createbyprompt``.
            decode: Turns the envelope's ``data`` (or the whole envelope) into the result; a
                ``ValueError`` or ``TypeError`` from it means the answer was not what Akool sends.
            json_body: The JSON body, if any.
            params: Query parameters, if any.
            paid: The call creates a paid job: retried only when provably not delivered, and an
                ambiguous failure raises `SubmissionUnknown`.
            authenticate: Send the auth header (everything but getToken).
            whole_envelope: Hand ``decode`` the whole envelope rather than its ``data``.
            answer_has_secret: The answer carries a credential (getToken): never quote its body
                in an error or a log line.
            retry: A policy for this call instead of the session's (polls use one attempt: the
                planner reschedules them itself).
            paced: The caller already holds a turn from the `Pace` for this request (and gives
                it back itself).
        """
        policy = retry if retry is not None else self._retry
        # The retry budget runs from the first failure, and time spent queueing for a turn
        # behind thousands of other requests is not time spent retrying: a create throttled
        # while the shared budget is slow must not be given up for the budget's slowness.
        first_failure: float | None = None
        queued = 0.0
        retries = 0
        renewed = False
        while True:
            try:
                return await self._attempt(
                    method,
                    path,
                    decode=decode,
                    json_body=json_body,
                    params=params,
                    authenticate=authenticate,
                    whole_envelope=whole_envelope,
                    answer_has_secret=answer_has_secret,
                    paced=paced,
                    paid=paid,
                )
            except _Failure as failure:
                error = failure.error
                if (
                    isinstance(error, AuthenticationError)
                    and error.code == EXPIRED_TOKEN
                    and authenticate
                    and not renewed
                    and self._credentials.mode is not AuthMode.API_KEY
                    and self.tokens.renewable
                ):
                    # 1101 is a definite refusal, so repeating even a paid create is safe.
                    renewed = True
                    logger.info("akool token rejected (1101); fetching a new one and repeating")
                    await self.tokens.renew(failure.stale_token)
                    continue
                paced = False  # a repeat takes its own turn
                retries += 1
                retryable = is_retryable(error, failure.delivery, paid=paid)
                wait = policy.backoff(retries, failure.retry_after)
                if first_failure is None:
                    first_failure = anyio.current_time()
                else:
                    queued += failure.queued
                elapsed = anyio.current_time() - first_failure - queued
                if not retryable or retries >= policy.attempts or elapsed + wait > policy.timeout:
                    if paid and failure.delivery is Delivery.AMBIGUOUS:
                        payload = dict(json_body or {})
                        raise SubmissionUnknown(path, payload, str(error)) from error
                    raise error from error.__cause__
                logger.warning(
                    "%s %s failed (%s); retry %d of %d in %.2f s",
                    method,
                    path,
                    error,
                    retries,
                    policy.attempts - 1,
                    wait,
                )
                await anyio.sleep(wait)

    async def _attempt(
        self,
        method: str,
        path: str,
        *,
        decode: Callable[[Any], T],
        json_body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
        authenticate: bool,
        whole_envelope: bool,
        answer_has_secret: bool,
        paced: bool,
        paid: bool,
    ) -> T:
        headers = {"user-agent": self._user_agent, "accept": "application/json"}
        token: Secret | None = None
        if authenticate:
            if self._credentials.mode is AuthMode.API_KEY:
                assert self._credentials.api_key is not None  # noqa: S101 - mode guarantees it
                headers["x-api-key"] = self._credentials.api_key.reveal()
            else:
                token = await self.tokens.current()
                headers["authorization"] = f"Bearer {token.reveal()}"
        url = self._base_url.join(path.lstrip("/"))
        kwargs: dict[str, Any] = {}
        if self._timeout is not None:
            kwargs["timeout"] = self._timeout
        asked = anyio.current_time()
        turn = None if paced else await self.pace.acquire(create=paid)
        before = anyio.current_time()
        try:
            response = await self._client.request(
                method, url, json=json_body, params=params, headers=headers, **kwargs
            )
        except httpx.HTTPError as exc:
            failure = _classify_transport(exc, path)
            failure.queued = before - asked
            raise failure from exc
        finally:
            if turn is not None:
                self.pace.release(turn)
        elapsed_ms = (anyio.current_time() - before) * 1000
        try:
            result = _decode_response(
                response,
                path,
                decode,
                whole_envelope=whole_envelope,
                quote_body=not answer_has_secret,
            )
        except _Failure as failure:
            logger.debug(
                "%s %s -> HTTP %d, %s (%.0f ms)",
                method,
                path,
                response.status_code,
                failure.error,
                elapsed_ms,
            )
            failure.stale_token = token
            failure.queued = before - asked
            if isinstance(failure.error, TooManyRequests | RateLimited):
                self.pace.throttled(failure.retry_after)
            raise
        logger.debug(
            "%s %s -> HTTP %d, code 1000 (%.0f ms)", method, path, response.status_code, elapsed_ms
        )
        return result


def _classify_transport(exc: httpx.HTTPError, path: str) -> _Failure:
    name = type(exc).__name__
    detail = str(exc) or name
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        # No connection, or none free in the pool: nothing was sent.
        error: AkoolError = (
            ConnectError(f"could not connect to Akool: {detail}", endpoint=path)
            if isinstance(exc, httpx.ConnectError)
            else RequestTimeout(f"timed out before sending ({name}): {detail}", endpoint=path)
        )
        return _Failure(error, Delivery.NOT_DELIVERED, cause=exc)
    if isinstance(exc, httpx.TimeoutException):
        error = RequestTimeout(f"timed out after sending ({name}): {detail}", endpoint=path)
        return _Failure(error, Delivery.AMBIGUOUS, cause=exc)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        error = RemoteProtocolError(
            f"the connection broke mid-request ({name}): {detail}", endpoint=path
        )
        return _Failure(error, Delivery.AMBIGUOUS, cause=exc)
    error = TransportError(f"the request failed ({name}): {detail}", endpoint=path)
    return _Failure(error, Delivery.AMBIGUOUS, cause=exc)


def _decode_response(
    response: httpx.Response,
    path: str,
    decode: Callable[[Any], T],
    *,
    whole_envelope: bool,
    quote_body: bool,
) -> T:
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status == _HTTP_TOO_MANY_REQUESTS:
        # A throttled request was refused before it ran, so even a paid create may be resent.
        error: AkoolError = TooManyRequests(
            "Akool answered HTTP 429 (too many requests)"
            + (f", retry after {retry_after:g} s" if retry_after is not None else ""),
            retry_after=retry_after,
            endpoint=path,
        )
        raise _Failure(error, Delivery.NOT_DELIVERED, retry_after)
    if status >= _HTTP_SERVER_ERROR:
        error = ServerError(f"Akool answered HTTP {status}", status_code=status, endpoint=path)
        raise _Failure(error, Delivery.AMBIGUOUS, retry_after)
    try:
        envelope = json.loads(response.content)
    except (ValueError, UnicodeDecodeError) as exc:
        if response.is_success:
            excerpt = _excerpt(response.content, quote=quote_body)
            error = InvalidResponse(
                f"Akool's answer (HTTP {status}) is not JSON: {excerpt}",
                endpoint=path,
            )
            raise _Failure(error, Delivery.AMBIGUOUS, cause=exc) from exc
        error = HTTPStatusError(f"Akool answered HTTP {status}", status_code=status, endpoint=path)
        raise _Failure(error, Delivery.ANSWERED, cause=exc) from exc
    fields = _as_object(envelope)
    code = fields.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        if not response.is_success:
            error = HTTPStatusError(
                f"Akool answered HTTP {status}", status_code=status, endpoint=path
            )
            raise _Failure(error, Delivery.ANSWERED)
        error = InvalidResponse(
            f"Akool's answer has no integer 'code': {_excerpt(response.content, quote=quote_body)}",
            endpoint=path,
        )
        raise _Failure(error, Delivery.AMBIGUOUS)
    if code != SUCCESS:
        msg = fields.get("msg")
        api_error: APIError = error_for_code(
            code, msg if isinstance(msg, str) else "", endpoint=path
        )
        if isinstance(api_error, RateLimited):
            api_error.retry_after = retry_after
            raise _Failure(api_error, Delivery.NOT_DELIVERED, retry_after)
        raise _Failure(api_error, Delivery.ANSWERED)
    payload: Any = fields if whole_envelope else fields.get("data")
    try:
        return decode(payload)
    except (ValueError, TypeError, KeyError) as exc:
        error = InvalidResponse(
            f"Akool's answer is not of the documented shape: {exc}", endpoint=path
        )
        # Code 1000 came back, so a create did happen; but without a readable id it is lost to us.
        raise _Failure(error, Delivery.AMBIGUOUS, cause=exc) from exc


def _excerpt(content: bytes, *, quote: bool, limit: int = 120) -> str:
    if not quote:
        return "(body not shown: it may carry a credential)"
    text = content[:limit].decode("utf-8", "replace")
    return repr(text + ("..." if len(content) > limit else ""))
