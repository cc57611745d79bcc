"""The only place that knows HTTP: one attempt -> classify -> retry path for every request.

API calls (`Wire.call`, described by the endpoint table in `_endpoints`) and result downloads
(`fetch`) go through the same three steps: one attempt; its failure classified once, by what it
proves about delivery (`_classify`); and `send_with_retries`, which asks `_retry` whether and
when to try again. The wire knows *how* to talk to Akool, never *when*: it holds no jobs and
plans no polls. A pace turn is handed in by whoever holds one (the engine's status reads) or
taken here; either way the wire gives it back once the answer is in.

Everything a server sends is bounded: an attempt (headers and body together) ends at the request
deadline; an answer is read up to `MAX_ANSWER_BYTES`, counted both as sent and decompressed
(`_answers`); its JSON up to `MAX_ANSWER_DEPTH` deep; its numbers and ids are range- and
shape-checked by the endpoint's decoder; redirects are not followed; and no credential the wire
knows is quoted from it into an error or a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, Final, TypeVar
from urllib.parse import urlencode

import anyio
import httpx

from ._answers import BodyError, Redactor, read_body
from ._classify import (
    classify_status,
    classify_transport,
    decode_answer,
    past_deadline,
    scrub,
    status_failure,
    unreadable,
    unsendable,
)
from ._config import AuthMode, Credentials, Secret
from ._constants import MAX_ANSWER_BYTES
from ._endpoints import ENDPOINTS, GET_TOKEN, IMAGE_INFO, Endpoint
from ._errors import AuthenticationError, RateLimited, SubmissionUnknown, TooManyRequests
from ._models import ImageInfo
from ._pace import Pace, Turn
from ._retry import ONE_ATTEMPT, Delivery, Failure, RetryPolicy, is_retryable

__all__ = ["Wire", "classify_status", "classify_transport", "fetch", "send_with_retries", "shown"]

logger = logging.getLogger("akool_async")

T = TypeVar("T")

EXPIRED_TOKEN: Final = 1101


# -- retry --------------------------------------------------------------------------------------


async def send_with_retries(
    attempt: Callable[[int], Awaitable[T]],
    *,
    policy: RetryPolicy,
    label: str,
    renew: Callable[[Failure], Awaitable[bool]] | None = None,
) -> T:
    """``await attempt(n)`` (``n`` attempts made before it) until it returns or may not retry.

    Args:
        attempt: Makes one attempt; raises a `Failure` when it fails.
        policy: How often and how long to retry.
        label: What the attempt is, for log lines: ``GET /api/...`` or ``download of <url>``.
        renew: Called once per call with a failure; True when it renewed the credential the
            failure refused, so the attempt is repeated at once (not counted as a retry).

    Raises:
        SubmissionUnknown: A paid create's last failure was ambiguous.
        AkoolError: The last failure's error, raised ``from`` its httpx or json cause.
    """
    # The retry budget runs from the first failure, and time spent queueing for a turn
    # behind thousands of other requests is not time spent retrying: a create throttled
    # while the shared budget is slow must not be given up for the budget's slowness.
    first_failure: float | None = None
    queued = 0.0
    made = retries = 0
    while True:
        try:
            return await attempt(made)
        except Failure as failure:
            made += 1
            if renew is not None and await renew(failure):
                renew = None  # a credential is renewed once per call
                continue
            error = failure.error
            retries += 1
            wait = policy.backoff(retries, failure.retry_after)
            if first_failure is None:
                first_failure = anyio.current_time()
            else:
                queued += failure.queued
            elapsed = anyio.current_time() - first_failure - queued
            if (
                not is_retryable(error, failure.delivery, paid=failure.submission is not None)
                or retries >= policy.attempts
                or elapsed + wait > policy.timeout
            ):
                if failure.submission is not None and failure.delivery is Delivery.AMBIGUOUS:
                    path, payload = failure.submission
                    raise SubmissionUnknown(path, payload, str(error)) from error
                raise error from error.__cause__
            attempts = policy.attempts - 1
            logger.warning(
                "%s failed (%s); retry %d of %d in %.2f s", label, error, retries, attempts, wait
            )
            await anyio.sleep(wait)


# -- result downloads ---------------------------------------------------------------------------


def shown(url: str) -> str:
    """The URL without credentials, query or fragment, any of which may hold a secret."""
    return str(httpx.URL(url).copy_with(userinfo=b"", query=None, fragment=None))


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    consume: Callable[[httpx.Response, anyio.CancelScope], Awaitable[T]],
    *,
    retry: RetryPolicy,
    headers: Mapping[str, str],
    timeout: httpx.Timeout | None = None,  # noqa: ASYNC109 - httpx's per-attempt timeouts
    deadline: float | None = None,
) -> T:
    """GET ``url`` (redirects followed, their bodies unread), streaming, and return
    ``await consume(response, scope)``.

    Failures are classified and retried as API reads are. ``consume`` sees only answers that are
    neither 429 nor 5xx; it raises a `Failure` for a body worth fetching again (one cut short),
    any other error for an answer that no retry would mend. Each attempt, headers and body
    together, ends after ``deadline`` seconds (None: no limit) with a `RequestTimeout`;
    ``consume`` gets the attempt's cancel scope, to pause its deadline (`_answers.paused`) while
    it works on what it has read.
    """
    where = shown(url)
    timeouts = httpx.USE_CLIENT_DEFAULT if timeout is None else timeout

    async def attempt(_: int) -> T:
        with anyio.move_on_after(deadline) as scope:
            request = client.build_request("GET", url, headers=headers, timeout=timeouts)
            try:
                # Redirects are followed here, not by httpx, which reads each redirect's whole
                # body first, with no bound: here it is dropped unread.
                for _hop in range(client.max_redirects + 1):
                    response = await client.send(request, stream=True, follow_redirects=False)
                    try:
                        if response.next_request is None:
                            failure = classify_status(response, endpoint=where, target=where)
                            if failure is not None:
                                raise failure
                            return await consume(response, scope)
                        request = response.next_request
                    finally:
                        await response.aclose()
                raise httpx.TooManyRedirects("Exceeded maximum allowed redirects.", request=request)
            except httpx.HTTPError as exc:
                raise classify_transport(exc, endpoint=where, target=where) from exc
        raise past_deadline(deadline, endpoint=where, target=where)

    return await send_with_retries(attempt, policy=retry, label=f"download of {where}")


# -- API calls ----------------------------------------------------------------------------------


class _Route:
    """An endpoint bound to a session's API root: its URL is built once, not per request."""

    __slots__ = ("endpoint", "label", "text", "url")

    def __init__(self, endpoint: Endpoint[Any], base_url: httpx.URL) -> None:
        self.endpoint = endpoint
        self.url = base_url.join(endpoint.path.lstrip("/"))
        self.text = str(self.url)  # no query: the API root never has one
        self.label = f"{endpoint.method} {endpoint.path}"

    def with_query(self, params: Mapping[str, str] | None) -> httpx.URL | str:
        """The URL with ``params``; a string httpx parses once, where passing ``params`` to
        httpx would parse the URL twice (about 10 us a status read)."""
        return f"{self.text}?{urlencode(params)}" if params else self.url


class _TokenSource:
    """The bearer token: given, or fetched once from getToken and shared by every request."""

    def __init__(self, wire: Wire, credentials: Credentials) -> None:
        self._wire = wire
        self._credentials = credentials
        self._token: Secret | None = credentials.token
        self._lock = anyio.Lock()

    @property
    def cached(self) -> Secret | None:
        """The token, if one is at hand without a request."""
        return self._token

    async def current(self) -> Secret:
        if self._token is None:
            async with self._lock:
                if self._token is None:
                    self._token = await self._fetch()
        return self._token

    async def renew(self, failure: Failure) -> bool:
        """Fetch a new token when Akool refused one as expired (1101); False for any other
        failure, or without client credentials to fetch one with."""
        error = failure.error
        if (
            not isinstance(error, AuthenticationError)
            or error.code != EXPIRED_TOKEN
            or self._credentials.mode is AuthMode.API_KEY
            or not self._credentials.has_client_credentials
        ):
            return False
        # 1101 is a definite refusal, so repeating even a paid create is safe.
        logger.info("akool token rejected (1101); fetching a new one and repeating")
        async with self._lock:
            # Unless a concurrent request already replaced the token this one sent.
            if self._token is None or self._token == failure.stale_token:
                self._token = await self._fetch()
        return True

    async def _fetch(self) -> Secret:
        client_id = self._credentials.client_id
        client_secret = self._credentials.client_secret
        if client_id is None or client_secret is None:  # pragma: no cover - guarded by callers
            raise AuthenticationError(EXPIRED_TOKEN, "the token expired and no client credentials")
        body = {"clientId": client_id, "clientSecret": client_secret.reveal()}
        token = await self._wire.call(GET_TOKEN, json=body)
        self._wire.redact.add(token)
        return Secret(token)


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
        deadline: float | None = None,
    ) -> None:
        self._client = client
        self.pace = pace
        self.deadline = deadline
        """Seconds one attempt may take, headers and body together; None: no limit."""
        self._credentials = credentials
        self._retry = retry
        self._request_options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        self._routes = {endpoint: _Route(endpoint, base_url) for endpoint in ENDPOINTS}
        # Only codings the wire decompresses itself, within bounds (`_answers`).
        self._headers = {
            "user-agent": user_agent,
            "accept": "application/json",
            "accept-encoding": "gzip, deflate",
        }
        secrets = (credentials.api_key, credentials.token, credentials.client_secret)
        self.redact = Redactor(secret.reveal() for secret in secrets if secret is not None)
        """Blanks the credentials this wire knows out of anything quoted from an answer."""
        self._key_headers: dict[str, str] | None = None
        if credentials.api_key is not None and credentials.mode is AuthMode.API_KEY:
            self._key_headers = {**self._headers, "x-api-key": credentials.api_key.reveal()}
        self.tokens = _TokenSource(self, credentials)
        self._renew = None if credentials.mode is AuthMode.API_KEY else self.tokens.renew

    async def call(
        self,
        endpoint: Endpoint[T],
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        turn: Turn | None = None,
    ) -> T:
        """Make one logical call to ``endpoint`` and return its decoded answer.

        Args:
            endpoint: What to call, from the endpoint table.
            json: The JSON body, if any.
            params: Query parameters, if any.
            retry: A policy for this call instead of the session's.
            turn: A pace turn the caller already holds for the first attempt; the wire gives
                it back when that attempt's answer is in. Repeats take turns of their own.
        """
        route = self._routes[endpoint]
        attempt = partial(self._attempt, route, json, params, turn)
        policy = retry if retry is not None else self._retry
        renew = self._renew if endpoint.authenticated else None
        return await send_with_retries(attempt, policy=policy, label=route.label, renew=renew)

    async def read_info(self, job_id: str, *, turn: Turn) -> ImageInfo:
        """One status read, in the caller's pace turn, one attempt: a failed read is the
        engine's to look at again after its own backoff."""
        params = {"image_model_id": job_id}
        return await self.call(IMAGE_INFO, params=params, retry=ONE_ATTEMPT, turn=turn)

    async def _attempt(
        self,
        route: _Route,
        json_body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
        turn: Turn | None,
        made: int,
    ) -> Any:
        endpoint = route.endpoint
        if made:
            turn = None  # the handed-in turn went with the first attempt
        headers, token, turn = await self._authorize(endpoint, turn)
        asked = anyio.current_time()
        if turn is None:
            turn = await self.pace.acquire(create=endpoint.paid)
        sent = anyio.current_time()
        try:
            try:
                response, content = await self._exchange(route, json_body, params, headers)
            finally:
                self.pace.release(turn)
            asked_id = params.get(endpoint.id_param) if params and endpoint.id_param else None
            result = decode_answer(response, content, endpoint, self.redact, asked_id)
        except Failure as failure:
            if isinstance(failure.error, TooManyRequests | RateLimited):
                await self.pace.refused(failure.retry_after)
            scrub(failure.error, self.redact)
            elapsed_ms = (anyio.current_time() - sent) * 1000
            logger.debug("%s -> %s (%.0f ms)", route.label, failure.error, elapsed_ms)
            _noted(failure, endpoint, json_body, token, sent - asked, redact=self.redact)
            raise
        if logger.isEnabledFor(logging.DEBUG):
            elapsed_ms = (anyio.current_time() - sent) * 1000
            logger.debug(
                "%s -> HTTP %d, code 1000 (%.0f ms)", route.label, response.status_code, elapsed_ms
            )
        return result

    async def _exchange(
        self,
        route: _Route,
        json_body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str],
    ) -> tuple[httpx.Response, bytes]:
        """Send the request and read its answer, within the deadline and `MAX_ANSWER_BYTES`."""
        endpoint = route.endpoint
        path = endpoint.path
        try:
            # Built apart from the send: a header or body httpx cannot encode fails here, before
            # anything leaves, and is no ambiguous create.
            request = self._client.build_request(
                endpoint.method,
                route.with_query(params),
                json=json_body,
                headers=headers,
                **self._request_options,
            )
        except UnicodeEncodeError as exc:
            raise unsendable(endpoint=path, target="Akool", cause=exc) from None
        with anyio.move_on_after(self.deadline):
            try:
                response = await self._client.send(request, stream=True, follow_redirects=False)
                try:
                    failure = status_failure(response, path)
                    if failure is not None:
                        raise failure
                    try:
                        content = await read_body(response, limit=MAX_ANSWER_BYTES)
                    except BodyError as exc:
                        raise unreadable(response, path, exc) from None
                    return response, content
                finally:
                    await response.aclose()
            except httpx.HTTPError as exc:
                raise classify_transport(exc, endpoint=path, target="Akool") from exc
        raise past_deadline(self.deadline, endpoint=path, target="Akool")

    async def _authorize(
        self, endpoint: Endpoint[Any], turn: Turn | None
    ) -> tuple[dict[str, str], Secret | None, Turn | None]:
        """The headers for ``endpoint``, the token they carry, and the turn still held."""
        if not endpoint.authenticated:
            return self._headers, None, turn
        if self._key_headers is not None:
            return self._key_headers, None, turn
        token = self.tokens.cached
        if token is None:
            if turn is not None:
                # getToken takes a turn of its own: holding this one meanwhile could keep the
                # last free slot from it.
                self.pace.release(turn)
                turn = None
            token = await self.tokens.current()
        return {**self._headers, "authorization": f"Bearer {token.reveal()}"}, token, turn


def _noted(
    failure: Failure,
    endpoint: Endpoint[Any],
    json_body: Mapping[str, Any] | None,
    token: Secret | None,
    queued: float,
    *,
    redact: Redactor,
) -> Failure:
    """What the retry loop needs beside the error: what a paid call sent, the token, the queue."""
    if endpoint.paid:
        failure.submission = (endpoint.path, redact.value(dict(json_body or {})))
    failure.stale_token = token
    failure.queued = queued
    return failure
