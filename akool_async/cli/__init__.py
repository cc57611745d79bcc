"""The ``akool-async`` command line (extra ``cli``): batches that resume and never pay twice.

Run ``akool-async --help``, or ``akool-async demo`` to try it against the embedded emulator.
"""

from __future__ import annotations

from ._app import main
from ._args import build_parser

__all__ = ["build_parser", "main"]
