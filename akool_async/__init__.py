"""akool_async: an asyncio and trio SDK for Akool's image-generation API.

```python
import akool_async as ak

async with ak.AkoolSession(api_key="...") as session:
    job = await session.generate("a red fox in snow", scale="16:9")
```
"""

from __future__ import annotations

from akool_async._public import report_public_module as _report_public_module

from ._config import DEFAULT_BASE_URL, AuthMode, Credentials, Secret
from ._download import Download, DownloadError, NotAnImage, ResponseTooLarge, ResultExpired
from ._engine import EventKind, JobEvent, SessionClosed
from ._errors import (
    AccountBanned,
    AkoolError,
    APIError,
    AuthenticationError,
    ButtonUnavailable,
    ConnectError,
    ContentNotFound,
    GenerationError,
    HTTPStatusError,
    InsufficientCredit,
    InvalidInput,
    InvalidResponse,
    JobFailed,
    MissingCredentials,
    OperationNotAllowed,
    ParameterError,
    PaymentRequired,
    PermissionDenied,
    RateLimited,
    RemoteProtocolError,
    RequestTimeout,
    ServerError,
    SubmissionUnknown,
    TooManyRequests,
    TransportError,
    WaitTimeout,
)
from ._job import DEFAULT_MAX_BYTES, ImageJob
from ._models import RESULT_LIFETIME, Button, ImageInfo, ImageStatus, Scale
from ._polling import PollPolicy
from ._retry import RetryPolicy
from ._session import NOT_GIVEN, AkoolSession, NotGiven, __version__

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_BYTES",
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
    "SubmissionUnknown",
    "TooManyRequests",
    "TransportError",
    "WaitTimeout",
    "__version__",
]

_report_public_module(globals(), __all__, "akool_async")
