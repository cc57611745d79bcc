"""JSON from anyone we do not trust (Akool's answers, callbacks): bounded in depth and numbers.

`json.loads` alone recurses once per nested array or object (a body of ``[[[[...`` raises
RecursionError), turns a 5,000-digit literal into ValueError, and reads ``1e999``, ``NaN`` and
``Infinity`` as floats nobody can use. Here the depth is measured before parsing, and numbers
are parsed into a range, so what is not acceptable JSON is one error: `UnreadableJSON`.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from typing import Any, Final, NoReturn

__all__ = ["MAX_DEPTH", "MAX_INTEGER", "UnreadableJSON", "load"]

MAX_DEPTH: Final = 32
"""Arrays and objects nested deeper than this are refused by default; Akool's JSON is flat."""
MAX_INTEGER: Final = 2**63 - 1
"""The largest integer magnitude accepted: a signed 64-bit range, as most JSON producers hold."""
_MAX_NUMBER_CHARS: Final = 64
"""A longer number literal is refused before it is converted."""

# A JSON string: from its quote to the closing one, escapes skipped. Possessive, and content to
# end at the end of the text, so it matches at every quote and never backtracks: one linear pass
# even over a body of unterminated strings. (A backslash outside a string is not JSON, so
# json.loads stops there, before anything this could miscount.)
_STRING: Final = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_A_BRACKET: Final = re.compile(r"[^\[\]{}]+")
_STEP: Final = {"[": 1, "{": 1, "]": -1, "}": -1}


class UnreadableJSON(ValueError):
    """Text that is not JSON, or JSON deeper or with larger numbers than accepted."""


def load(text: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``text`` as JSON within the bounds.

    Args:
        text: The JSON text.
        max_depth: The deepest nesting of arrays and objects accepted.

    Returns:
        The parsed value: dicts, lists, str, int, float, bool or None.

    Raises:
        UnreadableJSON: ``text`` is not JSON, nests deeper than ``max_depth``, or holds a number
            longer than 64 characters, an integer beyond `MAX_INTEGER`, a float that is not
            finite, or ``NaN`` / ``Infinity``. The message says which, without quoting the text:
            "not JSON (...)" or "JSON nested more than ...", "JSON with ...".
    """
    if not _depth_within(text, max_depth):
        raise UnreadableJSON(f"JSON nested more than {max_depth} levels deep")
    try:
        return json.loads(text, parse_int=_integer, parse_float=_float, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise UnreadableJSON(f"not JSON ({error.msg})") from None


def _depth_within(text: str, limit: int) -> bool:
    """Whether the arrays and objects in ``text`` nest at most ``limit`` deep."""
    if text.count("[") + text.count("{") <= limit:
        return True  # the usual case, at C speed: too few brackets to nest that deep
    brackets = _NOT_A_BRACKET.sub("", _STRING.sub("", text))
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0) <= limit


def _integer(literal: str) -> int:
    if len(literal) > _MAX_NUMBER_CHARS:
        raise UnreadableJSON(f"JSON with a number longer than {_MAX_NUMBER_CHARS} characters")
    value = int(literal)
    if abs(value) > MAX_INTEGER:
        raise UnreadableJSON(f"JSON with an integer beyond +-{MAX_INTEGER}")
    return value


def _float(literal: str) -> float:
    if len(literal) > _MAX_NUMBER_CHARS:
        raise UnreadableJSON(f"JSON with a number longer than {_MAX_NUMBER_CHARS} characters")
    value = float(literal)
    if not math.isfinite(value):
        raise UnreadableJSON("JSON with a number too large for a float")
    return value


def _no_constant(name: str) -> NoReturn:
    raise UnreadableJSON(f"JSON with {name}, which the JSON standard does not allow")
