"""Argument types of the ``akool-async`` command line: durations and factors above 0."""

from __future__ import annotations

import argparse
import math

__all__ = ["positive_number"]


def positive_number(text: str) -> float:
    """An argparse type: a finite number greater than 0.

    Raises:
        argparse.ArgumentTypeError: Anything else, with what was given.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number greater than 0 (got {text!r})"
        ) from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number greater than 0 (got {text})")
    return value
