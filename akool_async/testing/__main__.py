"""Run the Akool emulator on a local port: ``python -m akool_async.testing --port 8787``.

Prints the base URL and the test credentials as ``AKOOL_*`` lines a shell or a ``.env`` file can
take, then serves until Ctrl+C (SIGINT) or SIGTERM, prints what it did (creates, presses,
requests, credits: the figures ``GET /_emulator/accounting`` answers) and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
from collections.abc import Sequence

import anyio

from akool_async.testing import TEST_API_KEY, TEST_CLIENT_ID, TEST_CLIENT_SECRET, AkoolEmulator

__all__ = ["add_arguments", "main", "serve"]

DEFAULT_PORT = 8787
MAX_PORT = 65535


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 0 to {MAX_PORT} (got {text!r})"
        ) from None
    if not 0 <= port <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_PORT} (got {port})")
    return port


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m akool_async.testing",
        description="Serve a local emulator of Akool's image API until Ctrl+C.",
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options (``--host``, ``--port``, ...) to ``parser``.

    Shared by ``python -m akool_async.testing`` and ``akool-async emulator``.
    """
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help="TCP port; 0 picks a free one and prints it (%(default)s)",
    )
    parser.add_argument(
        "--time-scale",
        type=_time_scale,
        default=1.0,
        help="multiplies every job's duration: 0.01 makes a 40 s job take 0.4 s (%(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="fixes timings, ids and images, so two runs answer alike (%(default)s)",
    )
    parser.add_argument(
        "--credit",
        type=_credit,
        default=10_000,
        help="the account's starting balance; each create costs 2 (%(default)s)",
    )
    parser.add_argument(
        "--overdraft",
        action="store_true",
        help="let the balance go below zero instead of refusing creates (code 1006): "
        "any number of creates, each still charged",
    )


def _number(text: str, *, expected: str) -> float:
    """``text`` as a float, or an argparse error saying it must be ``expected``."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {expected} (got {text!r})") from None


def _time_scale(text: str) -> float:
    value = _number(text, expected="a number greater than 0")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number greater than 0 (got {text})")
    return value


def _credit(text: str) -> float:
    value = _number(text, expected="a number")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more (got {text!r})")
    return value


def _announce(base_url: str) -> None:
    lines = (
        f"Akool emulator listening on {base_url}",
        f"AKOOL_BASE_URL={base_url}",
        f"AKOOL_API_KEY={TEST_API_KEY}",
        f"AKOOL_CLIENT_ID={TEST_CLIENT_ID}",
        f"AKOOL_CLIENT_SECRET={TEST_CLIENT_SECRET}",
        "Press Ctrl+C to stop.",
    )
    sys.stdout.write("\n".join(lines) + "\n")
    # Whoever reads these lines through a pipe needs them now, not at exit.
    sys.stdout.flush()


async def serve(options: argparse.Namespace) -> int:
    """Serve the emulator with the parsed options until SIGINT or SIGTERM; the exit status."""
    emulator = AkoolEmulator(
        api_key=TEST_API_KEY,
        client_id=TEST_CLIENT_ID,
        client_secret=TEST_CLIENT_SECRET,
        time_scale=options.time_scale,
        seed=options.seed,
        credit=options.credit,
        overdraft=options.overdraft,
    )
    # Listening for the signals before announcing means a Ctrl+C sent as soon as the lines
    # appear is always a clean stop, never a KeyboardInterrupt in the middle of startup.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as stop_signals:
        async with contextlib.AsyncExitStack() as stack:
            try:
                base_url = await stack.enter_async_context(
                    emulator.serve(host=options.host, port=options.port)
                )
            except OSError as error:
                sys.stderr.write(
                    f"error: cannot listen on {options.host} port {options.port}: "
                    f"{error.strerror or error}\n"
                )
                return 1
            _announce(base_url)
            async for _ in stop_signals:
                break
    _report(emulator)
    return 0


def _report(emulator: AkoolEmulator) -> None:
    """What the emulator did, for whoever watched it serve."""
    lines = ("Akool emulator stopped.", *emulator.accounting().summary())
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator from the command line.

    Args:
        argv: The arguments, without the program name; default ``sys.argv[1:]``.

    Returns:
        The exit status: 0 after Ctrl+C or SIGTERM, 1 when the address cannot be used.

    Raises:
        SystemExit: With status 2 and a usage message for bad arguments, as argparse does.
    """
    options = _parser().parse_args(argv)
    try:
        return anyio.run(serve, options, backend="asyncio")
    except KeyboardInterrupt:
        # Ctrl+C before the signal handlers were in place: still a clean stop.
        return 0


if __name__ == "__main__":
    sys.exit(main())
