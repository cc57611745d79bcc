"""Akool's endpoints, each described once: method, path, decoder, and what a call risks.

To add an endpoint: describe it here (and add it to `ENDPOINTS`), then call it with
``wire.call(ENDPOINT, json=..., params=...)``. The wire builds each endpoint's URL once per
session and reads everything else it needs (auth, retries, quoting the body) from the entry.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar, cast

import attrs

from ._models import ImageInfo
from ._validate import JOB_ID_PATTERN, is_job_id

__all__ = [
    "CREATE_BY_BUTTON",
    "CREATE_BY_PROMPT",
    "CREDIT_INFO",
    "ENDPOINTS",
    "GET_TOKEN",
    "IMAGE_INFO",
    "Endpoint",
    "as_object",
]

T = TypeVar("T")


@attrs.frozen(eq=False)  # compared and hashed by identity: each endpoint exists once
class Endpoint(Generic[T]):
    """One Akool endpoint, as the wire needs to know it.

    Attributes:
        name: A short name for logs: the path's last part, e.g. ``createbyprompt``.
        method: The HTTP method.
        path: The path below the API root, e.g. ``/api/open/v3/content/image/createbyprompt``.
        decode: Turns the answer into the result; a ``ValueError``, ``TypeError`` or
            ``KeyError`` from it means the answer was not what Akool sends.
        paid: A call creates a paid job: it is repeated only when it provably did not reach
            Akool, and an ambiguous failure raises `SubmissionUnknown`.
        authenticated: Requests carry the api key or the bearer token (all but getToken).
        whole_envelope: ``decode`` gets the whole envelope rather than its ``data`` (getToken
            answers its token beside ``code``, not in ``data``).
        secret_answer: The answer carries a credential: its body is never quoted in an error
            or a log line.
        id_param: The query parameter naming the job asked about: the answer's ``_id`` must
            be that id, or the answer is about another job and is an `InvalidResponse`.
    """

    name: str
    method: str
    path: str
    decode: Callable[[Any], T]
    paid: bool = False
    authenticated: bool = True
    whole_envelope: bool = False
    secret_answer: bool = False
    id_param: str | None = None


def as_object(value: Any) -> dict[str, Any]:
    """The JSON object ``value``, or an empty one if it is anything else."""
    return cast("dict[str, Any]", value) if isinstance(value, dict) else {}


_MAX_TOKEN_CHARS: Final = 8192
_TOKEN: Final = re.compile(rf"[\x21-\x7e]{{1,{_MAX_TOKEN_CHARS}}}")
_MAX_CREDIT: Final = 2**53  # the whole numbers a float holds exactly
_SHOWN_CHARS: Final = 40


def _decode_token(envelope: Any) -> str:
    token = as_object(envelope).get("token")
    if not isinstance(token, str) or not token:
        raise ValueError("getToken answered code 1000 without a token")
    # It is sent back as a header: visible ASCII only, or httpx would refuse to send it.
    if _TOKEN.fullmatch(token) is None:
        raise ValueError(
            f"getToken answered a token that cannot be sent as a header (it must be 1 to "
            f"{_MAX_TOKEN_CHARS} visible ASCII characters)"
        )
    return token


def _decode_info(data: Any) -> ImageInfo:
    info = ImageInfo.from_wire(data)
    # Ids name files and go back in queries: one of another shape is refused here, at the wire.
    for name, value in (("_id", info.id), ("image_content_model_id", info.parent_id)):
        if value is not None and not is_job_id(value):
            raise ValueError(
                f"the job's {name} {_shown(value)} is not an Akool id "
                f"(24 lowercase hex digits, matching {JOB_ID_PATTERN.pattern})"
            )
    return info


def _decode_credit(data: Any) -> float:
    credit = as_object(data).get("credit")
    if isinstance(credit, bool) or not isinstance(credit, int | float):
        raise TypeError("quota/info answered without a numeric 'credit'")
    if not -_MAX_CREDIT <= credit <= _MAX_CREDIT:  # NaN fails every comparison
        raise ValueError(
            f"quota/info answered a 'credit' that is not a finite number from "
            f"-{_MAX_CREDIT} to {_MAX_CREDIT}"
        )
    return credit


def _shown(value: str) -> str:
    """``value`` for a message, cut short: a server's string can be any length."""
    if len(value) <= _SHOWN_CHARS:
        return repr(value)
    return f"{value[:_SHOWN_CHARS]!r}... ({len(value)} characters)"


_V3: Final = "/api/open/v3"

GET_TOKEN: Final = Endpoint(
    "getToken",
    "POST",
    f"{_V3}/getToken",
    _decode_token,
    authenticated=False,
    whole_envelope=True,
    secret_answer=True,
)
CREATE_BY_PROMPT: Final = Endpoint(
    "createbyprompt", "POST", f"{_V3}/content/image/createbyprompt", _decode_info, paid=True
)
CREATE_BY_BUTTON: Final = Endpoint(
    "createbybutton", "POST", f"{_V3}/content/image/createbybutton", _decode_info, paid=True
)
IMAGE_INFO: Final = Endpoint(
    "infobymodelid",
    "GET",
    f"{_V3}/content/image/infobymodelid",
    _decode_info,
    id_param="image_model_id",
)
CREDIT_INFO: Final = Endpoint("quota/info", "GET", f"{_V3}/faceswap/quota/info", _decode_credit)

ENDPOINTS: Final[tuple[Endpoint[Any], ...]] = (
    GET_TOKEN,
    CREATE_BY_PROMPT,
    CREATE_BY_BUTTON,
    IMAGE_INFO,
    CREDIT_INFO,
)
"""Every endpoint the library calls."""
