"""The whole error tree of the library: every class it raises on purpose is defined here.

Everything the library raises on purpose is an `AkoolError` (the command line adds its own
``JournalError``, in ``akool_async.cli``). Below it:

* `InvalidInput` (also a `ValueError`): bad arguments, raised before any request.
* `APIError`: Akool answered with a business code other than 1000; one class per
  documented code, `APIError` itself for codes Akool has not documented.
* `TransportError`: the exchange itself failed (connect, timeout, HTTP 429 / 5xx, a body
  that is not Akool's JSON envelope). Raised ``from`` the httpx error so the cause survives.
* `SubmissionUnknown`: a paid create may or may not have reached Akool.
* `JobFailed` and `WaitTimeout`: a job's own outcome.
* `DownloadError`: a result could not be downloaded (`ResultExpired`, `ResponseTooLarge`,
  `NotAnImage`).
* `SessionStateError` (also a `RuntimeError`): a session used outside its lifetime;
  `SessionClosed` when it has closed.
* `WebhookVerificationError`: a callback is not a genuine, current Akool callback (public as
  ``akool_async.webhooks.WebhookVerificationError``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._models import ImageInfo

__all__ = [
    "APIError",
    "AccountBanned",
    "AkoolError",
    "AuthenticationError",
    "ButtonUnavailable",
    "ConnectError",
    "ContentNotFound",
    "CoordinationUnavailable",
    "DownloadError",
    "GenerationError",
    "HTTPStatusError",
    "InsufficientCredit",
    "InvalidInput",
    "InvalidResponse",
    "JobFailed",
    "MissingCredentials",
    "MissingDependency",
    "NotAnImage",
    "OperationNotAllowed",
    "ParameterError",
    "PaymentRequired",
    "PermissionDenied",
    "RateLimited",
    "RemoteProtocolError",
    "RequestTimeout",
    "ResponseTooLarge",
    "ResultExpired",
    "ServerError",
    "SessionClosed",
    "SessionStateError",
    "SubmissionUnknown",
    "TooManyRequests",
    "TransportError",
    "WaitTimeout",
    "WebhookVerificationError",
    "error_for_code",
]


class AkoolError(Exception):
    """Root of every error the SDK raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (worker pools, journals); keep every attribute.
        return (_restore, (type(self), self.args, dict(vars(self))))


def _restore(cls: type[AkoolError], args: tuple[Any, ...], state: dict[str, Any]) -> AkoolError:
    error = cls.__new__(cls)
    error.args = args
    vars(error).update(state)
    return error


class InvalidInput(AkoolError, ValueError):
    """An argument is not something Akool accepts; raised before any request is sent."""


class MissingCredentials(InvalidInput):
    """No usable credentials were given as arguments or found in ``AKOOL_*`` variables."""


class ButtonUnavailable(InvalidInput):
    """The button cannot be pressed on this job (used already, or not offered); nothing was sent."""


class MissingDependency(AkoolError, ImportError):
    """An option needs a package that is not installed (an extra, such as ``http2``); also an
    `ImportError`, so ``except ImportError`` still catches it. Raised before anything is sent."""

    def __reduce__(self) -> tuple[Any, ...]:
        # ImportError keeps msg and name outside the instance dict: rebuild them explicitly.
        return (type(self), self.args, {**vars(self), "name": self.name})


# ---------------------------------------------------------------------------------------------
# Business codes: Akool answered, and said no.
# ---------------------------------------------------------------------------------------------


class APIError(AkoolError):
    """Akool answered with a business ``code`` other than 1000.

    Attributes:
        code: Akool's business code.
        msg: Akool's message, as sent (cut to 500 characters, credentials blanked).
        endpoint: The API path that answered, e.g. ``/api/open/v3/content/image/createbyprompt``.
    """

    code: int
    msg: str
    endpoint: str | None

    def __init__(self, code: int, msg: str, *, endpoint: str | None = None) -> None:
        self.code = code
        self.msg = msg
        self.endpoint = endpoint
        where = f" from {endpoint}" if endpoint else ""
        super().__init__(f"Akool answered code {code}{where}: {msg or '(no message)'}")


class ParameterError(APIError):
    """Code 1003: a parameter is wrong or empty."""


class ContentNotFound(APIError):
    """Code 1008: the id names no content this account can see."""


class PermissionDenied(APIError):
    """Code 1009: this account may not perform the operation."""


class OperationNotAllowed(APIError):
    """Code 1010: the content cannot be operated on (for example, a button already used).

    Akool's own message ("You can not operate this content") does not say why, so the error's
    message adds the usual causes: a button pressed before its grid job completed (its buttons
    appear only with the finished grid), pressed twice, or pressed on a follow-up job.
    """

    def __init__(self, code: int, msg: str, *, endpoint: str | None = None) -> None:
        super().__init__(code, msg, endpoint=endpoint)
        self.args = (f"{self.args[0]} ({_OPERATION_HINT})",)


_OPERATION_HINT = (
    "press buttons only after the grid job completed (await job.wait() first, or use "
    "job.upscale(n) / job.vary(n), which wait), each button once, and only on a prompt's grid: "
    "follow-up jobs have no buttons"
)


class AuthenticationError(APIError):
    """Codes 1101 (invalid or expired authorization), 1102 (authorization empty), 1109 (no account).

    1109 is unverified: seen only in a third-party copy of Akool's code list.
    """


class GenerationError(APIError):
    """Code 1108: Akool could not generate the image; Akool suggests trying again later."""


class AccountBanned(APIError):
    """Code 1200: the account has been banned."""


class RateLimited(APIError):
    """Code 1005 (unverified): operations too frequent. Retried automatically, creates included.

    Attributes:
        retry_after: Seconds Akool asked to wait, when it said so.
    """

    retry_after: float | None = None


class InsufficientCredit(APIError):
    """Codes 1006 and 1104 (unverified): not enough credit for the operation."""


class PaymentRequired(APIError):
    """Codes 1103, 1213 and 1221 (unverified): the account has not paid or needs a subscription."""


_CODE_CLASSES: Mapping[int, type[APIError]] = MappingProxyType(
    {
        1003: ParameterError,
        1005: RateLimited,
        1006: InsufficientCredit,
        1008: ContentNotFound,
        1009: PermissionDenied,
        1010: OperationNotAllowed,
        1101: AuthenticationError,
        1102: AuthenticationError,
        1103: PaymentRequired,
        1104: InsufficientCredit,
        1108: GenerationError,
        1109: AuthenticationError,
        1200: AccountBanned,
        1213: PaymentRequired,
        1221: PaymentRequired,
    }
)


def error_for_code(code: int, msg: str, *, endpoint: str | None = None) -> APIError:
    """Build the typed error for a business code; unknown codes give a plain `APIError`."""
    cls = _CODE_CLASSES.get(code, APIError)
    return cls(code, msg, endpoint=endpoint)


# ---------------------------------------------------------------------------------------------
# Transport: the exchange itself failed.
# ---------------------------------------------------------------------------------------------


class TransportError(AkoolError):
    """The HTTP exchange failed before a usable answer arrived.

    Attributes:
        endpoint: The API path that was being called.
    """

    endpoint: str | None

    def __init__(self, message: str, *, endpoint: str | None = None) -> None:
        self.endpoint = endpoint
        super().__init__(message)


class ConnectError(TransportError):
    """No connection could be made: the request provably never reached Akool."""


class RequestTimeout(TransportError, TimeoutError):
    """The request timed out (connect, write, read or pool)."""


class RemoteProtocolError(TransportError):
    """The connection broke mid-exchange (reset, closed early, malformed HTTP)."""


class HTTPStatusError(TransportError):
    """Akool answered with an HTTP status that carries no envelope (4xx other than 429).

    Attributes:
        status_code: The HTTP status.
    """

    status_code: int

    def __init__(self, message: str, *, status_code: int, endpoint: str | None = None) -> None:
        self.status_code = status_code
        super().__init__(message, endpoint=endpoint)


class TooManyRequests(HTTPStatusError):
    """HTTP 429. Retried automatically, creates included: a throttled create did not run.

    Attributes:
        retry_after: Seconds the server asked to wait (from ``Retry-After``), if it said so.
    """

    retry_after: float | None

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 429,
        retry_after: float | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, status_code=status_code, endpoint=endpoint)


class ServerError(HTTPStatusError):
    """HTTP 5xx. Reads are retried; a create that gets one raises `SubmissionUnknown`."""


class InvalidResponse(TransportError):
    """The body was not Akool's JSON envelope: not JSON, truncated, of the wrong shape, too large
    or nested too deep to read, with a number out of range or an id not of Akool's shape, or
    about another job than the one asked about."""


# ---------------------------------------------------------------------------------------------
# Outcomes that need a person's decision.
# ---------------------------------------------------------------------------------------------


class SubmissionUnknown(AkoolError):
    """A paid create may or may not have reached Akool, so it was not retried.

    Akool has no idempotency key and no list endpoint: sending the create again could pay for
    a second job. Decide yourself (check the Akool dashboard, or resubmit knowingly).

    Attributes:
        endpoint: The create endpoint that was called.
        payload: The JSON body that was sent (it never contains credentials).
    """

    endpoint: str
    payload: dict[str, Any]

    def __init__(self, endpoint: str, payload: Mapping[str, Any], reason: str) -> None:
        self.endpoint = endpoint
        self.payload = dict(payload)
        self.reason = reason
        super().__init__(
            f"the create sent to {endpoint} may or may not have reached Akool ({reason}); "
            "it was not retried, so that no second paid job is created. "
            "Check your Akool dashboard before resubmitting."
        )


class JobFailed(AkoolError):
    """Akool reported the job as failed (``image_status == 4``).

    Attributes:
        info: The job's last `ImageInfo`.
    """

    def __init__(self, info: ImageInfo) -> None:
        self.info = info
        super().__init__(f"Akool reported image job {info.id} as failed")

    @property
    def job_id(self) -> str:
        """The failed job's id."""
        return self.info.id


class WaitTimeout(AkoolError, TimeoutError):
    """A wait's deadline passed before the job finished. The job itself goes on.

    Attributes:
        job_id: The job that was being waited on; ``session.job(job_id).wait()`` resumes.
        timeout: The deadline that passed, in seconds.
        last_error: Why the job's last status read failed, when it did (an outage, say);
            None when its reads are answered and it simply has not finished.
    """

    def __init__(
        self, job_id: str, timeout: float, *, last_error: AkoolError | None = None
    ) -> None:
        self.job_id = job_id
        self.timeout = timeout
        self.last_error = last_error
        reads = "" if last_error is None else f"; its last status read failed: {last_error}"
        super().__init__(
            f"image job {job_id} did not finish within {timeout:g} s{reads}; it goes on at "
            f"Akool: resume with session.job({job_id!r}).wait()"
        )


# ---------------------------------------------------------------------------------------------
# Results on disk.
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Lifetimes: a session used outside its ``async with``.
# ---------------------------------------------------------------------------------------------


class SessionStateError(AkoolError, RuntimeError):
    """The session was used outside its lifetime: before ``async with``, entered twice, or
    closed from a task other than the one that opened it. Also a `RuntimeError`."""


class SessionClosed(SessionStateError):
    """The session is closed: a wait still running when it closed ends with this (the job
    itself goes on at Akool), and so does any call made on the session afterwards."""


# ---------------------------------------------------------------------------------------------
# Webhooks.
# ---------------------------------------------------------------------------------------------


class CoordinationUnavailable(AkoolError):
    """The store that the app's processes share (Redis) cannot be reached now.

    Raised inside the SDK only: a session that shares its budget and callbacks with other
    processes then goes on alone (its own request budget, polling as the safety net) and tries
    the store again a little later; no job is lost or created twice because of it.
    """


class WebhookVerificationError(AkoolError):
    """A callback is not a genuine, current Akool callback for this account.

    Attributes:
        reason: A short machine-readable reason: ``malformed``, ``too_large``, ``signature``,
            ``stale`` or ``decrypt``. ``decrypt`` covers every failure after the signature
            check (the ciphertext does not open, or opens to something that is not a job
            status) with one message, so that it cannot serve as a decryption oracle.
    """

    # Users import it from the subpackage that raises it; tracebacks and pickles say so.
    __module__ = "akool_async.webhooks"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
