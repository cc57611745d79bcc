"""Argument checks that run before any request, so bad input never costs a request or credits."""

from __future__ import annotations

import re
from typing import Any, Final

import httpx

from ._errors import InvalidInput
from ._models import Button, Scale

__all__ = [
    "JOB_ID_PATTERN",
    "MAX_PROMPT_LENGTH",
    "check_button",
    "check_image_id",
    "check_prompt",
    "check_scale",
    "check_url",
    "http_url",
    "is_job_id",
]

JOB_ID_PATTERN: Final = re.compile(r"[0-9a-f]{24}")
"""An id Akool sends (``_id``, ``image_content_model_id``): a MongoDB ObjectId, 24 lowercase hex
digits, such as ``64dd82eef0b6684651e90131``. The emulator mints ids of the same shape."""

MAX_PROMPT_LENGTH: Final = 4000
"""The longest prompt sent, in characters (Unicode code points), unless a caller passes its own
bound. Akool publishes no limit; this one refuses a pasted file or a runaway template before it
is paid for, and is far above what an image prompt needs."""

_SHOWN: Final = 80
"""The most characters of a refused id quoted back in its error."""

_SCALES = ", ".join(scale.value for scale in Scale)
_BUTTONS = ", ".join(button.value for button in Button)


def check_prompt(prompt: Any, *, max_length: int = MAX_PROMPT_LENGTH) -> str:
    """A prompt is a string with something other than white space in it, at most
    ``max_length`` characters long."""
    if not isinstance(prompt, str):
        raise InvalidInput(f"prompt must be a string (got {type(prompt).__name__})")
    if not prompt.strip():
        raise InvalidInput("prompt must not be empty or blank: describe the image to generate")
    if len(prompt) > max_length:
        raise InvalidInput(
            f"prompt is {len(prompt):,} characters long; at most {max_length:,} are allowed "
            f"(starts {prompt[:40]!r}): shorten it"
        )
    return prompt


def check_scale(scale: Any) -> Scale:
    """One of Akool's seven aspect ratios, as a `Scale` or its string."""
    if isinstance(scale, Scale):
        return scale
    if isinstance(scale, str):
        try:
            return Scale(scale.strip())
        except ValueError:
            pass
    raise InvalidInput(f"scale must be one of {_SCALES} (got {scale!r})")


def check_button(button: Any) -> Button:
    """One of the grid's eight buttons, U1..U4 or V1..V4 (a string in any case is accepted)."""
    if isinstance(button, Button):
        return button
    if isinstance(button, str):
        try:
            return Button(button.strip().upper())
        except ValueError:
            pass
    raise InvalidInput(f"button must be one of {_BUTTONS} (got {button!r})")


def check_image_id(image_id: Any) -> str:
    """An id of the shape Akool's ``_id`` values have (`JOB_ID_PATTERN`), checked before any
    request: a mistyped id costs nothing, and no id ever names a file it should not."""
    if not isinstance(image_id, str):
        raise InvalidInput(f"image id must be a string (got {type(image_id).__name__})")
    if not image_id or not image_id.strip():
        raise InvalidInput("image id must not be empty: pass the '_id' Akool returned on create")
    if not is_job_id(image_id):
        shown = image_id if len(image_id) <= _SHOWN else f"{image_id[:_SHOWN]}..."
        raise InvalidInput(
            "image id must be the '_id' Akool returned on create: 24 lowercase hex digits, "
            f"such as 64dd82eef0b6684651e90131 (got {shown!r})"
        )
    return image_id


def is_job_id(value: object) -> bool:
    """Whether ``value`` is an id of the shape Akool sends (`JOB_ID_PATTERN`): a string that is
    safe as a file name, a URL query value or a log field as it is."""
    return isinstance(value, str) and JOB_ID_PATTERN.fullmatch(value) is not None


def check_url(name: str, value: Any) -> str:
    """An absolute http(s) URL with a host; Akool fetches or calls it, so nothing else works."""
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a URL string (got {type(value).__name__})")
    problem = f"{name} must be an absolute http:// or https:// URL (got {value!r})"
    if value != value.strip() or any(char.isspace() for char in value):
        raise InvalidInput(problem)
    http_url(value, problem)
    return value


_PORTS: Final = range(1, 65536)


def http_url(value: str | httpx.URL, problem: str) -> httpx.URL:
    """``value`` parsed, if it is an absolute http(s) URL with a host, a port from 1 to 65535
    if it names one, and no white space around it; else `InvalidInput`."""
    if isinstance(value, str) and value != value.strip():
        raise InvalidInput(problem)
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise InvalidInput(problem) from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidInput(problem)
    if url.port is not None and url.port not in _PORTS:
        raise InvalidInput(problem)
    return url
