"""Shared pieces of the virtual-time benchmarks: the clock, the emulator, statistics, output.

Not a benchmark itself. ``polling_efficiency.py``, ``polling_family.py``, ``rate_budget.py`` and
``webhook_efficiency.py`` import it as a sibling module (``python benchmarks/<name>.py`` puts this
folder on ``sys.path``).

Every benchmark phase runs in its own ``anyio.run`` on trio with
``trio.testing.MockClock(autojump_threshold=0)``: sleeps cost nothing, and the clock jumps to the
next deadline whenever every task is blocked. A phase whose virtual clock stops moving while the
CPU keeps spinning (a task that "sleeps" for less than the clock's resolution, say) would never
end; a watchdog thread notices that and cancels the phase, which then raises `Stalled`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Final, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
from trio.testing import MockClock

from akool_async.testing import AkoolEmulator, EmulatorTimings, Faults

__all__ = [
    "REPO_ROOT",
    "Stalled",
    "WarningCounter",
    "environment",
    "make_emulator",
    "note",
    "percentile",
    "phase",
    "print_json",
    "prompts",
    "run_virtual",
    "summary",
]

T = TypeVar("T")

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
STALL_SECONDS: Final = 30.0
"""Real seconds without the virtual clock moving after which a phase counts as stalled."""


class Stalled(RuntimeError):
    """The virtual clock stopped while the phase kept running: a busy loop in virtual time."""

    def __init__(self, virtual_time: float, real_seconds: float) -> None:
        super().__init__(
            f"the virtual clock stayed at t={virtual_time:.6f} s for {real_seconds:.0f} real "
            "seconds while tasks kept running (a loop that sleeps for less than the clock can "
            "resolve never lets MockClock jump); the phase was cancelled"
        )
        self.virtual_time = virtual_time


def workload_parser(
    doc: str | None, *, jobs: int = 1000, jobs_help: str = "jobs created at once"
) -> argparse.ArgumentParser:
    """A parser with the options every polling workload shares: --jobs, --seed, --concurrency."""
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0] if doc else None)
    parser.add_argument("--jobs", type=int, default=jobs, help=f"{jobs_help} ({jobs})")
    parser.add_argument("--seed", type=int, default=0, help="emulator seed (0)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=64,
        help="max_concurrent_requests of every session (64: nothing queues)",
    )
    return parser


def note(message: str) -> None:
    """A human note, to stderr (stdout carries only the JSON document)."""
    print(message, file=sys.stderr, flush=True)


@contextmanager
def phase(name: str, timings: dict[str, float]) -> Iterator[None]:
    """Time a phase in real seconds, note it on stderr, and record it in ``timings``."""
    note(f"[{name}] ...")
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        timings[name] = round(elapsed, 2)
        note(f"[{name}] {elapsed:.1f} s real")


def run_virtual(function: Callable[[], Awaitable[T]], *, stall_seconds: float = STALL_SECONDS) -> T:
    """Run ``function()`` on trio with a fresh autojumping `MockClock`, with a stall watchdog."""
    clock = MockClock(autojump_threshold=0)
    done = threading.Event()
    stalled: list[float] = []

    async def main() -> T:
        token = anyio.lowlevel.current_token()
        with anyio.CancelScope() as scope:

            def watch() -> None:
                last, since = clock.current_time(), time.monotonic()
                while not done.wait(1.0):
                    now = clock.current_time()
                    if now != last:
                        last, since = now, time.monotonic()
                    elif time.monotonic() - since >= stall_seconds:
                        stalled.append(now)
                        # The loop may have finished meanwhile; then there is nothing to cancel.
                        with suppress(RuntimeError):
                            anyio.from_thread.run_sync(scope.cancel, token=token)
                        return

            watchdog = threading.Thread(target=watch, name="virtual-clock-watchdog", daemon=True)
            watchdog.start()
            try:
                return await function()
            finally:
                done.set()
        raise Stalled(stalled[0] if stalled else clock.current_time(), stall_seconds)

    return anyio.run(main, backend="trio", backend_options={"clock": clock})


def make_emulator(
    seed: int, faults: Faults | None = None, timings: EmulatorTimings | None = None
) -> AkoolEmulator:
    """A fresh in-process emulator, with Akool's realistic default timings unless told others."""
    return AkoolEmulator(seed=seed, faults=faults, timings=timings)


def prompts(count: int) -> list[str]:
    """The benchmark's prompts. The emulator draws a job's timings from its seed and prompt, so
    the same seed and prompts give every strategy the same job durations."""
    return [
        f"benchmark job {index:05d}: a lighthouse at dusk, oil painting" for index in range(count)
    ]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank (the package's definition)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summary(values: Sequence[float]) -> dict[str, float | int]:
    """Count, mean, p50, p95, max (and min) of ``values``, in their unit."""
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "mean": sum(values) / len(values),
        "p50": percentile(values, 0.50),
        "p95": percentile(values, 0.95),
        "max": max(values),
        "min": min(values),
    }


def _rounded(value: Any, digits: int) -> Any:
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None  # JSON has no NaN
    if isinstance(value, dict):
        return {key: _rounded(item, digits) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(item, digits) for item in value]
    return value


def print_json(document: dict[str, Any], digits: int = 4) -> None:
    """The one JSON document, to stdout, floats rounded for reading."""
    json.dump(_rounded(document, digits), sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")
    sys.stdout.flush()


class WarningCounter(logging.Handler):
    """Counts the SDK's log records of WARNING and above; shows them only when verbose."""

    def __init__(self, *, verbose: bool) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.verbose = verbose
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        message = record.getMessage()
        if len(self.first) < 3:
            self.first.append(message)
        if self.verbose:
            note(f"  akool_async {record.levelname.lower()}: {message}")

    @classmethod
    def install(cls, *, verbose: bool) -> WarningCounter:
        """Attach a counter to the ``akool_async`` logger (and stop it reaching the root)."""
        handler = cls(verbose=verbose)
        logger = logging.getLogger("akool_async")
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.WARNING)
        return handler


def _git(*args: str) -> str | None:
    try:
        completed = subprocess.run(  # noqa: S603 - a fixed git command line
            ["git", *args],  # noqa: S607 - git from PATH, as a developer runs it
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout


def environment() -> dict[str, Any]:
    """What was measured on: interpreter, libraries, CPUs, and the package's source state."""
    versions: dict[str, str] = {}
    for name in ("akool-async", "anyio", "trio", "httpx"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    commit = _git("rev-parse", "--short", "HEAD")
    diff = _git("diff", "HEAD", "--", "akool_async")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": versions,
        "git_commit": commit.strip() if commit else None,
        "package_uncommitted_changes": bool(diff),
        "package_diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else None,
    }
