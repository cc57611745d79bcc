"""The ``akool-async`` command line (extra ``cli``): batches that resume and never pay twice.

Run ``akool-async --help``, or ``akool-async demo`` to try it against the embedded emulator.
"""

from __future__ import annotations

from ._app import build_parser, main

__all__ = ["build_parser", "main"]
