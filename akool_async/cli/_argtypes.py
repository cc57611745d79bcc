"""Argument types of the ``akool-async`` command line: durations and factors above 0, folders."""

from __future__ import annotations

import argparse
import math
import pathlib

__all__ = ["folder", "positive_number"]


def folder(text: str) -> pathlib.Path:
    """An argparse type: a folder's path, never empty (``""`` would mean the current folder
    without saying so).

    Raises:
        argparse.ArgumentTypeError: An empty or blank path.
    """
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"must name a folder (got {text!r}); for the current folder say --out ."
        )
    return pathlib.Path(text)


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
