"""The command line at scale: wall time, CPU time and peak RSS of ``akool-async batch`` by size.

Run from the repository root::

    python benchmarks/cli_scale.py                 # 1,000 and 10,000 rows
    python benchmarks/cli_scale.py --sizes 200,2000 --time-scale 0.001

One JSON document goes to stdout; progress notes go to stderr.

Each size runs the ``akool-async`` console script once, as a user would, against its own fresh
served emulator (``python -m akool_async.testing --port P --overdraft --time-scale T``: a separate
process, so its memory and CPU are not the CLI's; ``--overdraft`` so that any number of creates
is served). The CLI's figures come from ``resource.getrusage(RUSAGE_CHILDREN)`` read before and
after it, in a fresh child process of its own (``python benchmarks/cli_scale.py --one ...``) so
that ``ru_maxrss`` is the CLI's peak alone, not the largest of every child this benchmark waited
for. The target: the peak RSS of the largest run at most 1.5 times that of the smallest.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from _common import environment, note, print_json, prompts
from cli_realtime import Children, _announced, _answers, _free_port, cli_command

TARGET_RATIO: Final = 1.5
GRID_SECONDS: Final = 46.0  # the emulator's typical grid: 4 s queued, 40 s rendering, 2 s more
LAG_SECONDS: Final = 2.75  # the CLI's default target lag, at Akool's own pace
START_SECONDS: Final = 30.0


def start_emulator(
    children: Children, folder: Path, time_scale: float
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """A fresh served emulator with an overdraft, on a free port: the process and its AKOOL_*."""
    port = _free_port()
    log = folder / f"emulator-{port}.log"
    command = [sys.executable, "-m", "akool_async.testing", "--port", str(port), "--overdraft",
               "--time-scale", str(time_scale)]  # fmt: skip
    with log.open("wb") as output:
        process = children.start(command, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.perf_counter() + START_SECONDS
    while time.perf_counter() < deadline and process.poll() is None:
        announced = _announced(log)
        if "AKOOL_API_KEY" in announced and _answers(port):
            return process, announced
        time.sleep(0.05)
    children.stop(process)
    raise RuntimeError(f"the emulator did not start: {log.read_text(errors='replace')[-500:]}")


def measure_one(command: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run ``command`` as a child of this process: its exit code, wall, CPU and peak RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(  # noqa: S603 - our own console script and flags
        command, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "exit_code": completed.returncode,
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(
            (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2
        ),
        # Linux reports kibibytes. A fresh process per run: this is the CLI's own peak.
        "peak_rss_mib": round(after.ru_maxrss / 1024, 1),
        "last_lines": (completed.stdout or completed.stderr).strip().splitlines()[-3:],
    }


def run_size(rows: int, options: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """One batch of ``rows`` rows against a fresh emulator, measured in a child process."""
    children = Children()
    prompt_file = folder / f"prompts-{rows}.txt"
    prompt_file.write_text("\n".join(prompts(rows)) + "\n", encoding="utf-8")
    out = folder / f"out-{rows}"
    try:
        _, announced = start_emulator(children, folder, options.time_scale)
        env = {key: value for key, value in os.environ.items() if not key.startswith("AKOOL_")}
        env["AKOOL_API_KEY"] = announced["AKOOL_API_KEY"]
        env["AKOOL_BASE_URL"] = announced["AKOOL_BASE_URL"]
        # Polling told the served timings (a grid takes about 46 s times the scale), as a user
        # of a fast Akool would leave it: the CLI cannot learn a served emulator's time scale.
        polling = ["--expected-duration", f"{GRID_SECONDS * options.time_scale:g}",
                   "--target-lag", f"{max(LAG_SECONDS * options.time_scale, 0.05):g}"]  # fmt: skip
        command = [*cli_command(), "batch", str(prompt_file), "--out", str(out),
                   "--concurrency", str(options.concurrency), *polling, *options.flags]  # fmt: skip
        one = [sys.executable, __file__, "--one", json.dumps(command),
               "--timeout", str(options.timeout)]  # fmt: skip
        measured = subprocess.run(  # noqa: S603 - this script, with our own arguments
            one, env=env, capture_output=True, text=True, check=True
        )
        figures: dict[str, Any] = json.loads(measured.stdout)
    finally:
        children.stop_all()
    manifest = out / "manifest.jsonl"
    lines = manifest.read_text(encoding="utf-8").splitlines() if manifest.is_file() else []
    completed = sum(json.loads(line)["status"] == "completed" for line in lines)
    return {"rows": rows, "command": command, "completed_outputs": completed, **figures}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000,10000", help="row counts, smallest first")
    parser.add_argument(
        "--time-scale", type=float, default=0.001, help="the served emulator's --time-scale"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="the CLI's --concurrency")
    parser.add_argument(
        "--flag", dest="flags", action="append", default=[], help="one more CLI flag (repeatable)"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one run may take")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one command
    return parser


def main() -> int:
    options = _parser().parse_args()
    if options.one is not None:
        print(json.dumps(measure_one(json.loads(options.one), dict(os.environ), options.timeout)))
        return 0
    sizes = [int(size) for size in options.sizes.split(",")]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="akool-cli-scale-") as name:
        for rows in sizes:
            note(f"{rows} rows ...")
            runs.append(run_size(rows, options, Path(name)))
            note(f"  {json.dumps({k: v for k, v in runs[-1].items() if k != 'command'})}")
    ratio = runs[-1]["peak_rss_mib"] / runs[0]["peak_rss_mib"]
    print_json(
        {
            "benchmark": "cli_scale",
            "environment": environment(),
            "time_scale": options.time_scale,
            "concurrency": options.concurrency,
            "runs": runs,
            "peak_rss_ratio": round(ratio, 3),
            "target_ratio": TARGET_RATIO,
            "target_met": ratio <= TARGET_RATIO and all(run["exit_code"] == 0 for run in runs),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
