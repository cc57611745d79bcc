"""The ``akool-async`` argument parser: subcommands, shared options, and their checks.

``akool-async emulator`` takes the emulator's own options, added from ``akool_async.testing`` only
when that subcommand runs: no other command imports the emulator to parse its arguments.
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Sequence
from typing import Final

from akool_async._models import Scale
from akool_async._polling import DEFAULT_EXPECTED_DURATION, PollPolicy

from ._argtypes import folder, positive_number

__all__ = ["DEFAULT_TIME_SCALE", "EMULATOR", "PROG", "build_parser", "parse_args"]

PROG: Final = "akool-async"
EMULATOR: Final = "emulator"  # the subcommand that serves the emulator
DEFAULT_TIME_SCALE: Final = 0.02  # the emulator's typical grid (about 46 s) in about a second
_EMULATOR_DESCRIPTION: Final = (
    "Serve the Akool emulator on a local port until Ctrl+C, printing the AKOOL_* lines that "
    "point other programs (and akool-async) at it."
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number (got {text!r})") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more (got {value})")
    return value


def _rows(text: str) -> bool | frozenset[int]:
    """``all`` (True), or row numbers such as ``3,7`` (as the summary numbers them)."""
    if text.strip().lower() == "all":
        return True
    try:
        numbers = frozenset(int(part) for part in text.split(","))
    except ValueError:
        numbers = frozenset({0})
    if not numbers or min(numbers) < 1:
        raise argparse.ArgumentTypeError(
            f"must be all, or row numbers from the summary separated by commas, such as 3,7 "
            f"(got {text!r})"
        )
    return numbers


def _quadrant(text: str) -> int:
    if text not in {"1", "2", "3", "4"}:
        raise argparse.ArgumentTypeError(
            f"must be 1, 2, 3 or 4 (1 top left, 2 top right, 3 bottom left, 4 bottom right); "
            f"got {text!r}"
        )
    return int(text)


def _scale(text: str) -> Scale:
    try:
        return Scale(text.strip())
    except ValueError:
        allowed = ", ".join(scale.value for scale in Scale)
        raise argparse.ArgumentTypeError(f"must be one of {allowed} (got {text!r})") from None


def _common() -> argparse.ArgumentParser:
    """The options every command but ``emulator`` takes."""
    common = argparse.ArgumentParser(add_help=False)
    _connection_options(common)
    _polling_options(common)
    output = common.add_argument_group("output")
    output.add_argument(
        "--json", action="store_true", help="machine-readable JSON lines on standard output"
    )
    output.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log each request (its URL and HTTP status) and each retry (-vv: more)",
    )
    return common


def _connection_options(common: argparse.ArgumentParser) -> None:
    group = common.add_argument_group("connection (defaults from AKOOL_* environment variables)")
    group.add_argument("--api-key", metavar="KEY", help="Akool API key (default $AKOOL_API_KEY)")
    group.add_argument("--token", metavar="TOKEN", help="a bearer token (default $AKOOL_TOKEN)")
    group.add_argument("--client-id", metavar="ID", help="client id, with --client-secret")
    group.add_argument(
        "--client-secret",
        metavar="SECRET",
        help="client secret (prefer $AKOOL_CLIENT_SECRET: flags show in ps)",
    )
    group.add_argument(
        "--base-url", metavar="URL", help="API root (default $AKOOL_BASE_URL or Akool's)"
    )
    group.add_argument(
        "--emulator",
        action="store_true",
        help=(
            "run against an Akool emulator started in this process: no account, no network, "
            "no credits (batch, generate and credit; for status, wait, upscale and vary, serve "
            "one with `akool-async emulator` and set AKOOL_BASE_URL)"
        ),
    )
    group.add_argument(
        "--time-scale",
        type=positive_number,
        metavar="FACTOR",
        default=DEFAULT_TIME_SCALE,
        help="with --emulator: multiplies Akool's job durations (%(default)s: a grid in ~1 s)",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="with --emulator: fixes ids, timings and images",
    )


def _polling_options(common: argparse.ArgumentParser) -> None:
    polling = common.add_argument_group("polling")
    polling.add_argument(
        "--expected-duration",
        type=positive_number,
        metavar="SECONDS",
        help=(
            "seconds a grid job is expected to take (default: learned from the first jobs, "
            f"starting near {DEFAULT_EXPECTED_DURATION:g}; with --emulator, its typical grid "
            "times --time-scale)"
        ),
    )
    polling.add_argument(
        "--target-lag",
        type=positive_number,
        metavar="SECONDS",
        help=(
            "seconds by which 95%% of finished jobs should be noticed "
            f"(default {PollPolicy().target_lag:g}; with --emulator, times --time-scale)"
        ),
    )


def _follow_up_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--upscale",
        default="",
        metavar="N,N|all",
        help="press U<N> on each finished grid: 4K upscales of those quadrants",
    )
    parser.add_argument(
        "--vary", default="", metavar="N,N|all", help="press V<N> on each finished grid"
    )
    parser.add_argument(
        "--quadrants",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also download each grid's four quadrant images (default: yes)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``akool-async`` argument parser.

    Its ``emulator`` subcommand takes any arguments: `parse_args` hands them to the emulator's
    own options, which this parser does not import.
    """
    common = _common()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Generate, upscale and vary images with Akool, in batches that resume after a crash "
            "and never pay twice for a job. Add --emulator to batch, generate or credit to try "
            "it without an account."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _generate_options(
        commands.add_parser(
            "generate", parents=[common], help="one prompt, its follow-ups, downloaded"
        )
    )
    _batch_options(
        commands.add_parser("batch", parents=[common], help="every prompt of a file; resumable")
    )

    status = commands.add_parser("status", parents=[common], help="one job's state, one request")
    status.add_argument("id", help="the job's id")

    _wait_options(commands.add_parser("wait", parents=[common], help="wait for a job to finish"))

    for name, verb in (("upscale", "U"), ("vary", "V")):
        _press_options(
            commands.add_parser(
                name, parents=[common], help=f"press {verb}N on a finished grid and download it"
            )
        )

    commands.add_parser("credit", parents=[common], help="the account's credit balance")

    commands.add_parser(
        EMULATOR,
        # Its options, --help included, are the emulator's: parse_args reads them.
        add_help=False,
        help="serve the Akool emulator on a local port",
    )

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="a short batch against the embedded emulator (no account needed)",
    )
    demo.add_argument("--out", metavar="DIR", type=folder, default=pathlib.Path("akool-demo"))
    return parser


def _generate_options(generate: argparse.ArgumentParser) -> None:
    generate.add_argument("prompt", help="what to draw")
    generate.add_argument(
        "--scale", metavar="RATIO", type=_scale, default=Scale.RATIO_1_1, help="aspect ratio"
    )
    generate.add_argument("--source-image", metavar="URL", help="URL of an image to start from")
    generate.add_argument(
        "--out", metavar="DIR", type=folder, default=pathlib.Path(), help="folder (.)"
    )
    _follow_up_options(generate)


def _batch_options(batch: argparse.ArgumentParser) -> None:
    batch.add_argument("file", type=pathlib.Path, help=".txt, .jsonl or .csv prompt file")
    batch.add_argument(
        "--out",
        type=folder,
        metavar="DIR",
        required=True,
        help="folder for the images, manifest.jsonl and the journal",
    )
    batch.add_argument(
        "--scale",
        type=_scale,
        metavar="RATIO",
        default=Scale.RATIO_1_1,
        help="aspect ratio of rows that give none (%(default)s)",
    )
    batch.add_argument(
        "--concurrency",
        type=_positive_int,
        default=32,
        metavar="N",
        help="rows in flight (%(default)s)",
    )
    unknown = batch.add_argument_group(
        "creates and presses that may or may not have reached Akool (unknown)"
    )
    unknown.add_argument(
        "--resubmit-unknown",
        nargs="?",
        const=True,
        default=False,
        type=_rows,
        metavar="ROWS",
        help=(
            "create them again, in every row or in these (e.g. 3,7), paying again if they did "
            "reach Akool; a press Akool lists as used cannot be pressed again, and is said so"
        ),
    )
    unknown.add_argument(
        "--accept-unknown",
        nargs="?",
        const=True,
        default=False,
        type=_rows,
        metavar="ROWS",
        help=(
            "close them as accepted losses, in every row or in these (manifest status "
            "accepted_unknown), so that the batch can finish"
        ),
    )
    _follow_up_options(batch)


def _wait_options(wait: argparse.ArgumentParser) -> None:
    wait.add_argument("id", help="the job's id")
    wait.add_argument(
        "--timeout", type=positive_number, metavar="SECONDS", help="give up after this many seconds"
    )
    wait.add_argument(
        "--out", metavar="DIR", type=folder, help="also download the result into this folder"
    )


def _press_options(press: argparse.ArgumentParser) -> None:
    press.add_argument("id", help="the grid job's id")
    press.add_argument("n", type=_quadrant, help="the quadrant: 1 to 4")
    press.add_argument(
        "--out", metavar="DIR", type=folder, default=pathlib.Path(), help="folder (.)"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse an ``akool-async`` command line (default ``sys.argv[1:]``) into its command's options.

    The arguments of ``akool-async emulator`` go to a parser with the emulator's options,
    imported from the emulator extra here and only for that subcommand.

    Raises:
        SystemExit: With status 2 and a usage message for bad arguments; 0 after ``--help``.
    """
    parser = build_parser()
    options, rest = parser.parse_known_args(argv)
    if options.command == EMULATOR:
        return _emulator_options(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return options


def _emulator_options(argv: Sequence[str]) -> argparse.Namespace:
    from akool_async.testing.__main__ import add_arguments  # noqa: PLC0415 - the emulator extra

    parser = argparse.ArgumentParser(prog=f"{PROG} {EMULATOR}", description=_EMULATOR_DESCRIPTION)
    add_arguments(parser)
    return parser.parse_args(argv, argparse.Namespace(command=EMULATOR))
