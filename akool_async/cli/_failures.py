"""Failures a user can cause or fix, told in one line that says what to do, with their exit status.

An Akool host that cannot be reached, credentials Akool refuses, an API root that is not Akool's,
a folder that cannot be written: each stops the command with one line (``akool-async: error:
...``), never a traceback, and nothing that could succeed is left running.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator
from typing import Final

import httpx

from akool_async._errors import (
    AkoolError,
    AuthenticationError,
    ConnectError,
    HTTPStatusError,
    RequestTimeout,
)
from akool_async._wire import shown

__all__ = ["EXIT_FAILED", "EXIT_USAGE", "CommandError", "explain", "is_unreachable", "os_error"]

EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
_AKOOL_ROOT: Final = "https://openapi.akool.com"
_NOT_AN_API: Final = frozenset({404, 405})
_CREDENTIALS: Final = (
    "check AKOOL_API_KEY or --api-key (or AKOOL_TOKEN, or AKOOL_CLIENT_ID and AKOOL_CLIENT_SECRET)"
)
_REASONS: Final = {
    errno.ECONNREFUSED: "connection refused",
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ECONNRESET: "connection reset",
}


class CommandError(AkoolError):
    """The command stops here: one line for the user, and the exit status.

    Attributes:
        status: The exit status: `EXIT_USAGE` (2) when the user must fix something first,
            `EXIT_FAILED` (1) otherwise.
    """

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


def is_unreachable(error: BaseException) -> bool:
    """Whether ``error`` says no connection to the host could be made (refused, no such host,
    a TLS handshake that failed, a connect timeout), after the session's retries."""
    if isinstance(error, ConnectError):
        return True
    return isinstance(error, RequestTimeout) and isinstance(error.__cause__, httpx.ConnectTimeout)


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def unreachable_reason(error: BaseException) -> str:
    """Why a connection failed, in a few words (``connection refused``, ``host name not found``)."""
    for cause in _causes(error):
        # `reason` and `verify_message` are set by the ssl module, not by every SSLError.
        if isinstance(cause, ssl.SSLCertVerificationError):
            detail = getattr(cause, "verify_message", None) or cause
            return f"TLS certificate not accepted: {detail}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed: {getattr(cause, 'reason', None) or cause}"
        if isinstance(cause, socket.gaierror):
            return "host name not found"
        if isinstance(cause, httpx.ConnectTimeout | TimeoutError):
            return "connection timed out"
        if isinstance(cause, OSError) and cause.errno in _REASONS:
            return _REASONS[cause.errno]
    return str(error.__cause__ or error)


def unreachable_message(error: BaseException, base_url: str) -> str:
    """The one line an unreachable host gets: its URL (never its password), why, and where to
    look."""
    return (
        f"cannot reach {shown(base_url)} ({unreachable_reason(error)}): check AKOOL_BASE_URL or "
        "--base-url, and your network"
    )


def explain(error: AkoolError, base_url: str) -> CommandError | None:
    """The one-line `CommandError` for a failure the user must fix before anything can succeed
    (an unreachable host, refused credentials, an API root that is not Akool's); else None."""
    if is_unreachable(error):
        return CommandError(unreachable_message(error, base_url))
    base_url = shown(base_url)
    if isinstance(error, AuthenticationError):
        return CommandError(f"Akool refused the credentials ({error}): {_CREDENTIALS}")
    if isinstance(error, HTTPStatusError) and error.status_code in _NOT_AN_API:
        return CommandError(
            f"{base_url} does not look like Akool's API root: it answered HTTP "
            f"{error.status_code} for {error.endpoint}. Check AKOOL_BASE_URL or --base-url "
            f"(Akool's is {_AKOOL_ROOT})"
        )
    return None


def os_error(error: OSError) -> str:
    """An `OSError` from the file system as one line: the file, and why."""
    where = f" {error.filename}" if error.filename is not None else ""
    return f"cannot use{where} ({error.strerror or error}): check that file or folder"
