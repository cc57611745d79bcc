"""akool_async: an asyncio and trio SDK for Akool's image-generation API.

```python
import akool_async as ak

async with ak.AkoolSession(api_key="...") as session:
    job = await session.generate("a red fox in snow", scale="16:9")
```
"""

from __future__ import annotations

import logging as _logging

from akool_async._public import report_public_module as _report_public_module

from ._config import DEFAULT_BASE_URL, AuthMode, Credentials, Secret
from ._constants import DEFAULT_MAX_BYTES
from ._download import Download
from ._errors import (
    AccountBanned,
    AkoolError,
    APIError,
    AuthenticationError,
    ButtonUnavailable,
    ConnectError,
    ContentNotFound,
    DownloadError,
    GenerationError,
    HTTPStatusError,
    InsufficientCredit,
    InvalidInput,
    InvalidResponse,
    JobFailed,
    MissingCredentials,
    MissingDependency,
    NotAnImage,
    OperationNotAllowed,
    ParameterError,
    PaymentRequired,
    PermissionDenied,
    RateLimited,
    RemoteProtocolError,
    RequestTimeout,
    ResponseTooLarge,
    ResultExpired,
    ServerError,
    SessionClosed,
    SessionStateError,
    SubmissionUnknown,
    TooManyRequests,
    TransportError,
    WaitTimeout,
)
from ._job import ImageJob
from ._models import RESULT_LIFETIME, Button, ImageInfo, ImageStatus, Scale
from ._options import NOT_GIVEN, NotGiven, __version__
from ._polling import PollPolicy
from ._retry import RetryPolicy
from ._session import AkoolSession
from ._tracker import EventKind, JobEvent, SessionStats
from ._validate import MAX_PROMPT_LENGTH

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_BYTES",
    "MAX_PROMPT_LENGTH",
    "NOT_GIVEN",
    "RESULT_LIFETIME",
    "APIError",
    "AccountBanned",
    "AkoolError",
    "AkoolSession",
    "AuthMode",
    "AuthenticationError",
    "Button",
    "ButtonUnavailable",
    "ConnectError",
    "ContentNotFound",
    "Credentials",
    "Download",
    "DownloadError",
    "EventKind",
    "GenerationError",
    "HTTPStatusError",
    "ImageInfo",
    "ImageJob",
    "ImageStatus",
    "InsufficientCredit",
    "InvalidInput",
    "InvalidResponse",
    "JobEvent",
    "JobFailed",
    "MissingCredentials",
    "MissingDependency",
    "NotAnImage",
    "NotGiven",
    "OperationNotAllowed",
    "ParameterError",
    "PaymentRequired",
    "PermissionDenied",
    "PollPolicy",
    "RateLimited",
    "RemoteProtocolError",
    "RequestTimeout",
    "ResponseTooLarge",
    "ResultExpired",
    "RetryPolicy",
    "Scale",
    "Secret",
    "ServerError",
    "SessionClosed",
    "SessionStateError",
    "SessionStats",
    "SubmissionUnknown",
    "TooManyRequests",
    "TransportError",
    "WaitTimeout",
    "__version__",
]

_report_public_module(globals(), __all__, "akool_async")

# A library leaves output to the application (the logging HOWTO's advice): without this, an
# application that configures no logging would get the SDK's warnings on stderr through
# Python's last-resort handler.
_logging.getLogger("akool_async").addHandler(_logging.NullHandler())
