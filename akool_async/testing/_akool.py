"""Akool's image API as the emulator states it: paths, scales, statuses, buttons, codes, messages.

Written from Akool's own documentation (the image-generation page and the facts gathered beside
it: its other pages and its official demo code), never imported from the client. The emulator
and the SDK each state Akool's wire for themselves, so a wrong constant in one of them shows up
as a failing test instead of hiding in both.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

__all__ = [
    "API_ROOT",
    "BUTTONS",
    "CREDIT_PER_JOB",
    "DEFAULT_SCALE",
    "MESSAGES",
    "RESULT_LIFETIME_SECONDS",
    "ROUTES",
    "SCALES",
    "UPSCALE_BUTTONS",
    "Code",
    "ImageStatus",
    "button_quadrant",
    "scale_ratio",
]

API_ROOT: Final = "/api/open/v3"

ROUTES: Final[Mapping[tuple[str, str], str]] = {
    ("POST", f"{API_ROOT}/getToken"): "getToken",
    ("POST", f"{API_ROOT}/content/image/createbyprompt"): "createbyprompt",
    ("POST", f"{API_ROOT}/content/image/createbybutton"): "createbybutton",
    ("GET", f"{API_ROOT}/content/image/infobymodelid"): "infobymodelid",
    ("GET", f"{API_ROOT}/faceswap/quota/info"): "quota",
}
"""``(method, path)`` -> the endpoint's short name, for every endpoint the emulator answers."""

SCALES: Final[Mapping[str, tuple[int, int]]] = {
    "1:1": (1, 1),
    "4:3": (4, 3),
    "3:4": (3, 4),
    "16:9": (16, 9),
    "9:16": (9, 16),
    "3:2": (3, 2),
    "2:3": (2, 3),
}
"""createbyprompt's ``scale`` values, each with its width and height parts."""

DEFAULT_SCALE: Final = "1:1"
"""The ``scale`` Akool uses when a create gives none."""

UPSCALE_BUTTONS: Final = ("U1", "U2", "U3", "U4")
"""Buttons that render one quadrant of a grid as a single 4K image."""

BUTTONS: Final = (*UPSCALE_BUTTONS, "V1", "V2", "V3", "V4")
"""Every button of a finished grid, in the order Akool lists them; ``V*`` make a variation."""

RESULT_LIFETIME_SECONDS: Final = 7 * 24 * 60 * 60
"""Akool's generated images stay valid for 7 days."""

CREDIT_PER_JOB: Final = 2
"""``deduction_credit`` in every documented sample: what one create costs."""


class ImageStatus(enum.IntEnum):
    """``image_status``: 1 queueing, 2 processing, 3 completed, 4 failed."""

    QUEUEING = 1
    PROCESSING = 2
    COMPLETED = 3
    FAILED = 4


class Code(enum.IntEnum):
    """The business ``code`` of an answer's envelope; 1000 is success."""

    OK = 1000
    PARAMETER_ERROR = 1003
    TOO_FREQUENT = 1005
    INSUFFICIENT_CREDIT = 1006
    NOT_FOUND = 1008
    CANNOT_OPERATE = 1010
    INVALID_AUTHORIZATION = 1101
    AUTHORIZATION_EMPTY = 1102
    GENERATE_ERROR = 1108


MESSAGES: Final[Mapping[int, str]] = {
    Code.OK: "OK",
    Code.PARAMETER_ERROR: "Parameter error or Parameter can not be empty",
    Code.TOO_FREQUENT: "Operation is too frequent",
    Code.INSUFFICIENT_CREDIT: "Insufficient credit",
    Code.NOT_FOUND: "The content you get does not exist",
    Code.CANNOT_OPERATE: "You can not operate this content",
    Code.INVALID_AUTHORIZATION: "Invalid authorization or The request token has expired",
    Code.AUTHORIZATION_EMPTY: "Authorization cannot be empty",
    Code.GENERATE_ERROR: "image generate error,please try again later",
}
"""The ``msg`` sent with each code, as Akool's code tables word it."""


def scale_ratio(scale: str) -> tuple[int, int]:
    """The width and height parts of ``scale``, e.g. ``(16, 9)`` for ``"16:9"``.

    Raises:
        ValueError: ``scale`` is not one of Akool's seven scales.
    """
    ratio = SCALES.get(scale)
    if ratio is None:
        raise ValueError(f"scale must be one of {', '.join(SCALES)} (got {scale!r})")
    return ratio


def button_quadrant(button: str) -> int:
    """The quadrant a button acts on: 1 top left, 2 top right, 3 bottom left, 4 bottom right."""
    return int(button[1])
