"""``python -m akool_async.cli`` runs the ``akool-async`` command line."""

from __future__ import annotations

import sys

from akool_async.cli import main

if __name__ == "__main__":
    sys.exit(main())
