"""Real time: a CLI batch against a served emulator, default polling flags against hand-tuned ones.

Run from the repository root::

    python benchmarks/cli_realtime.py           # 3 repetitions of 20 rows at --time-scale 0.05
    python benchmarks/cli_realtime.py --help    # rows, repeats, time scale, tuned flags

One JSON document goes to stdout; progress notes go to stderr.

Unlike the other benchmarks this one runs in real time and over a real socket, as a user would:
the emulator is a separate process (``python -m akool_async.testing --port P --time-scale 0.05``),
and the batch is the ``akool-async`` console script, with the credentials the served emulator
prints (``AKOOL_API_KEY``) and ``AKOOL_BASE_URL`` pointing at it. Each repetition runs the same
20-row ``akool-async batch prompts.txt --out DIR`` twice, side by side, in alternating order:

* ``default``: no polling flags (the planner's own defaults);
* ``tuned``: ``--expected-duration 2.3 --target-lag 0.2``, told the served timings by hand.

Every CLI run gets its own fresh emulator process (same seed, so the same job durations for both
variants and no job ids or credits carried over) and its own fresh output folder. The figure is the
wall time of the CLI process (``time.perf_counter`` around ``subprocess.run``; the emulator's
start is not included), and the target is ``median(default) / median(tuned) <= 1.5``.

The served emulator exposes no request count over HTTP, so status requests are not counted by
default; ``--count-requests`` adds ``-vv`` to both variants and counts the ``infobymodelid`` lines
the CLI logs (a client-side count, at the cost of logging every request).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final

from _common import environment, note, print_json, prompts

TARGET_RATIO: Final = 1.5
START_SECONDS: Final = 30.0
"""Real seconds an emulator process may take to announce itself and accept connections."""
START_ATTEMPTS: Final = 3
STOP_SECONDS: Final = 5.0
STATUS_PATH: Final = "/content/image/infobymodelid"


@dataclass
class Run:
    """One CLI process's measurements."""

    variant: str
    repetition: int
    position: int
    wall_seconds: float
    exit_code: int
    rows_completed: int
    files: int
    status_requests: int | None
    emulator_start_seconds: float


class Children:
    """Every child process this benchmark started; `stop_all` ends those still running."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, **kwargs)  # noqa: S603 - our own interpreter and flags
        self.processes.append(process)
        return process

    @staticmethod
    def stop(process: subprocess.Popen[bytes]) -> None:
        """SIGTERM (the emulator's clean stop), then SIGKILL if it does not exit in time."""
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self) -> None:
        for process in self.processes:
            with contextlib.suppress(OSError):
                self.stop(process)
        self.processes.clear()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _announced(log: Path) -> dict[str, str]:
    """The ``AKOOL_*=value`` lines the emulator printed so far."""
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return dict(line.split("=", 1) for line in lines if line.startswith("AKOOL_") and "=" in line)


def start_emulator(
    children: Children, folder: Path, options: argparse.Namespace
) -> tuple[subprocess.Popen[bytes], dict[str, str], float]:
    """A fresh emulator process on a free port: the process, its AKOOL_* lines, seconds to start.

    Waits until it has printed its credentials and its port accepts connections; a port taken
    between choosing it and binding it costs one more attempt on another port.
    """
    for attempt in range(1, START_ATTEMPTS + 1):
        port = _free_port()
        log = folder / f"emulator-{port}.log"
        command = [
            sys.executable,
            "-m",
            "akool_async.testing",
            "--port",
            str(port),
            "--time-scale",
            str(options.time_scale),
            "--seed",
            str(options.seed),
        ]
        started = time.perf_counter()
        with log.open("wb") as output:
            process = children.start(command, stdout=output, stderr=subprocess.STDOUT)
        deadline = started + START_SECONDS
        while time.perf_counter() < deadline and process.poll() is None:
            announced = _announced(log)
            if "AKOOL_API_KEY" in announced and _answers(port):
                return process, announced, time.perf_counter() - started
            time.sleep(0.05)
        children.stop(process)
        text = log.read_text(encoding="utf-8", errors="replace").strip()
        note(f"  emulator on port {port} did not start (attempt {attempt}): {text[-500:]}")
    raise RuntimeError(f"the emulator did not start in {START_ATTEMPTS} attempts")


def cli_command() -> list[str]:
    """This interpreter's ``akool-async`` console script, else ``python -m akool_async.cli``."""
    script = Path(sys.executable).with_name("akool-async")
    if script.is_file():
        return [str(script)]
    found = shutil.which("akool-async")
    return [found] if found else [sys.executable, "-m", "akool_async.cli"]


def _manifest(folder: Path) -> tuple[int, int]:
    """Completed grid rows and completed files in ``folder/manifest.jsonl``."""
    path = folder / "manifest.jsonl"
    if not path.is_file():
        return 0, 0
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    done = [line for line in lines if line.get("status") == "completed"]
    return sum(line.get("output") == "grid" for line in done), len(done)


def run_cli(
    children: Children,
    folder: Path,
    prompt_file: Path,
    *,
    variant: str,
    flags: list[str],
    repetition: int,
    position: int,
    options: argparse.Namespace,
) -> Run:
    """One ``akool-async batch`` against its own fresh emulator, timed; the emulator is stopped."""
    emulator, announced, start_seconds = start_emulator(children, folder, options)
    try:
        out = folder / f"out-{repetition}-{variant}"
        env = {key: value for key, value in os.environ.items() if not key.startswith("AKOOL_")}
        env["AKOOL_API_KEY"] = announced["AKOOL_API_KEY"]
        env["AKOOL_BASE_URL"] = announced["AKOOL_BASE_URL"]
        verbose = ["-vv"] if options.count_requests else []
        command = [*cli_command(), "batch", str(prompt_file), "--out", str(out), *flags, *verbose]
        started = time.perf_counter()
        # subprocess.run kills the CLI on any exception (a timeout, Ctrl+C, our SIGTERM handler).
        completed = subprocess.run(  # noqa: S603 - our own console script and flags
            command,
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=options.timeout,
            check=False,
        )
        wall = time.perf_counter() - started
    finally:
        children.stop(emulator)
    rows, files = _manifest(out)
    requests = None
    if options.count_requests:
        requests = sum(
            "GET " in line and STATUS_PATH in line for line in completed.stderr.splitlines()
        )
    if completed.returncode != 0 or rows != options.rows:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
        note(f"  {variant}: exit {completed.returncode}, {rows} rows completed: {tail}")
    return Run(
        variant=variant,
        repetition=repetition,
        position=position,
        wall_seconds=wall,
        exit_code=completed.returncode,
        rows_completed=rows,
        files=files,
        status_requests=requests,
        emulator_start_seconds=start_seconds,
    )


def _spread(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": values,
    }


def report(runs: list[Run], variants: dict[str, list[str]], rows: int) -> dict[str, Any]:
    """Per-variant figures, the ratio of medians, and each repetition's own ratio."""
    figures: dict[str, Any] = {}
    for name, flags in variants.items():
        mine = [run for run in runs if run.variant == name]
        requests = [run.status_requests for run in mine if run.status_requests is not None]
        figures[name] = {
            "flags": flags,
            "wall_seconds": _spread([run.wall_seconds for run in mine]),
            "exit_codes": [run.exit_code for run in mine],
            "rows_completed": [run.rows_completed for run in mine],
            "status_requests": _spread([float(n) for n in requests]) if requests else None,
            "status_requests_per_row": statistics.median(requests) / rows if requests else None,
        }
    ratio = (
        figures["default"]["wall_seconds"]["median"] / figures["tuned"]["wall_seconds"]["median"]
    )
    by_repetition: dict[int, dict[str, float]] = {}
    for run in runs:
        by_repetition.setdefault(run.repetition, {})[run.variant] = run.wall_seconds
    valid = all(run.exit_code == 0 and run.rows_completed == rows for run in runs)
    return {
        "variants": figures,
        "ratio_default_over_tuned": ratio,
        "ratio_per_repetition": [
            pair["default"] / pair["tuned"] for _, pair in sorted(by_repetition.items())
        ],
        "target_ratio": TARGET_RATIO,
        "target_met": valid and ratio <= TARGET_RATIO,
        "all_runs_completed": valid,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=3, help="repetitions, each a pair (3)")
    parser.add_argument("--rows", type=int, default=20, help="prompts in the batch (20)")
    parser.add_argument(
        "--time-scale", type=float, default=0.05, help="the served emulator's --time-scale (0.05)"
    )
    parser.add_argument("--seed", type=int, default=0, help="the emulator's --seed (0)")
    parser.add_argument(
        "--expected-duration", default="2.3", help="the tuned run's --expected-duration (2.3)"
    )
    parser.add_argument("--target-lag", default="0.2", help="the tuned run's --target-lag (0.2)")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="real seconds one CLI run may take (600)"
    )
    parser.add_argument(
        "--count-requests",
        action="store_true",
        help="add -vv to both variants and count the status requests the CLI logs",
    )
    return parser


def _terminated(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops every child


def main() -> int:
    options = _parser().parse_args()
    variants = {
        "default": [],
        "tuned": [
            "--expected-duration",
            options.expected_duration,
            "--target-lag",
            options.target_lag,
        ],
    }
    signal.signal(signal.SIGTERM, _terminated)
    children = Children()
    runs: list[Run] = []
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="akool-cli-realtime-") as name:
            folder = Path(name)
            prompt_file = folder / "prompts.txt"
            prompt_file.write_text("\n".join(prompts(options.rows)) + "\n", encoding="utf-8")
            for repetition in range(options.repeats):
                order = ["default", "tuned"] if repetition % 2 == 0 else ["tuned", "default"]
                for position, variant in enumerate(order):
                    run = run_cli(
                        children,
                        folder,
                        prompt_file,
                        variant=variant,
                        flags=variants[variant],
                        repetition=repetition,
                        position=position,
                        options=options,
                    )
                    runs.append(run)
                    note(
                        f"[rep {repetition} {variant}] {run.wall_seconds:.2f} s, exit "
                        f"{run.exit_code}, {run.rows_completed}/{options.rows} rows"
                        + (
                            f", {run.status_requests} status requests"
                            if run.status_requests is not None
                            else ""
                        )
                    )
    finally:
        children.stop_all()
    figures = report(runs, variants, options.rows)
    note(
        f"median default {figures['variants']['default']['wall_seconds']['median']:.2f} s, "
        f"tuned {figures['variants']['tuned']['wall_seconds']['median']:.2f} s, ratio "
        f"{figures['ratio_default_over_tuned']:.2f} (target <= {TARGET_RATIO})"
    )
    print_json(
        {
            "benchmark": "cli_realtime",
            "command": shlex.join([Path(sys.executable).name, *sys.argv]),
            "settings": {
                "rows": options.rows,
                "repeats": options.repeats,
                "time_scale": options.time_scale,
                "seed": options.seed,
                "cli": shlex.join([Path(cli_command()[0]).name, *cli_command()[1:]]),
                "emulator": "one fresh `python -m akool_async.testing` process per CLI run "
                "(same seed: same job durations), not included in the wall time",
                "order": "alternating: default first in even repetitions, tuned first in odd",
                "status_requests": "counted from the CLI's -vv log"
                if options.count_requests
                else "not counted: the served emulator exposes no count (see --count-requests)",
            },
            **figures,
            "runs": [asdict(run) for run in runs],
            "real_seconds": time.perf_counter() - started,
            "environment": environment(),
        }
    )
    return 0 if figures["all_runs_completed"] else 1


if __name__ == "__main__":
    sys.exit(main())
