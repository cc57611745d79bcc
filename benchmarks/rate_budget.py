"""Rate budget: thousands of jobs in flight against a 20 requests/s limit, in virtual time.

Run from the repository root::

    python benchmarks/rate_budget.py            # defaults: 2,000 jobs, 20 req/s, seed 0
    python benchmarks/rate_budget.py --help     # sizes, seed, limit, the baseline's rate

One JSON document goes to stdout; progress notes and real seconds per phase go to stderr.

The emulator (in-process, realistic default timings) answers HTTP 429 with ``Retry-After`` once a
one-second sliding window holds ``--rate-limit`` requests (``Faults(rate_limit=20)``).

* ``sdk``: ``AkoolSession`` with its defaults (no ``requests_per_second``: it must find the limit
  from the 429s) runs ``generate_many(prompts, concurrency=jobs)``; detection time is the
  ``completed`` event's time (the moment the waiter inside ``generate_many`` is answered).
* ``round_robin``: the baseline, against its own emulator with the same seed and prompts (so the
  same job durations). One request per tick at a steady rate (default: the overall rate of
  accepted requests the SDK achieved, capped just under the limit). Each job is created at the
  first tick at or after the time the SDK created it (so both runs' jobs start, and complete, at
  the same times); every other tick reads the next unfinished job, cycling through them in
  creation order. It spends about as many status requests as the SDK (reported).

Targets: after the first 429, under 1 % of requests are answered 429; the SDK's mean detection lag
is at most 0.5 x the round-robin's.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
from _common import (
    Stalled,
    WarningCounter,
    environment,
    make_emulator,
    note,
    phase,
    print_json,
    prompts,
    run_virtual,
    summary,
)

import akool_async as ak
from akool_async.testing import AkoolEmulator, Faults

INFO: Final = "infobymodelid"
CREATE: Final = "createbyprompt"
THROTTLED: Final = 429
THROTTLE_TARGET_PERCENT: Final = 1.0
LAG_RATIO_TARGET: Final = 0.5
BASELINE_RATE_CAP: Final = 0.975
"""The round-robin never runs faster than this fraction of the limit, so it is never throttled."""


@dataclass
class Run:
    """What one strategy did, as its emulator saw it."""

    name: str
    jobs: int
    detected: dict[str, float] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    lags: list[float] = field(default_factory=list)
    create_times: dict[str, float] = field(default_factory=dict)
    """Prompt -> when its job was created, relative to the run's start."""
    stats: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def accepted_rate(self) -> float:
        value = self.stats.get("accepted_requests_per_second", math.nan)
        return float(value)

    def report(self) -> dict[str, Any]:
        """This run as JSON."""
        document: dict[str, Any] = {
            **self.stats,
            "lag_seconds": summary(self.lags),
            "jobs_detected": len(self.detected),
            "outcomes": dict(self.outcomes),
        }
        if self.error is not None:
            document["error"] = self.error
        return document


def _collect(run: Run, emulator: AkoolEmulator, started: float) -> Run:
    """Request accounting and lags from the emulator's records."""
    requests = emulator.requests
    ended = anyio.current_time()
    first_throttle = next(
        (index for index, request in enumerate(requests) if request.status_code == THROTTLED),
        None,
    )
    after = requests[first_throttle + 1 :] if first_throttle is not None else []
    throttled_after = sum(1 for request in after if request.status_code == THROTTLED)
    accepted = [request for request in requests if request.status_code != THROTTLED]
    by_kind = Counter(f"{request.endpoint} {request.status_code}" for request in requests)
    status = [request for request in requests if request.endpoint == INFO]
    creates = sorted(job.created_at - started for job in emulator.jobs.values())
    span = (accepted[-1].at - accepted[0].at) if len(accepted) > 1 else math.nan
    run.stats = {
        "total_requests": len(requests),
        "requests_by_endpoint_and_status": dict(sorted(by_kind.items())),
        "throttled_429": sum(1 for request in requests if request.status_code == THROTTLED),
        "first_429_at": requests[first_throttle].at - started
        if first_throttle is not None
        else None,
        "requests_after_first_429": len(after),
        "throttled_after_first_429": throttled_after,
        "throttled_after_first_429_percent": 100 * throttled_after / len(after) if after else 0.0,
        "status_requests": len(status),
        "status_requests_per_job": len(status) / run.jobs,
        "accepted_status_requests_per_job": sum(
            1 for request in status if request.status_code != THROTTLED
        )
        / run.jobs,
        "jobs_created": len(emulator.jobs),
        "last_create_at": creates[-1] if creates else None,
        "accepted_requests_per_second": len(accepted) / span if span > 0 else math.nan,
        "virtual_seconds": ended - started,
    }
    run.create_times = {job.prompt: job.created_at - started for job in emulator.jobs.values()}
    run.lags = [seen - emulator.jobs[job_id].complete_at for job_id, seen in run.detected.items()]
    return run


async def run_sdk(batch: Sequence[str], seed: int, limit: float) -> Run:
    """The SDK with its defaults: ``generate_many`` with every job in flight at once."""
    emulator = make_emulator(seed, Faults(rate_limit=limit))
    run = Run("sdk", jobs=len(batch))

    def on_event(event: ak.JobEvent) -> None:
        if event.kind == "completed":
            run.detected[event.job_id] = event.at

    started = anyio.current_time()
    async with (
        emulator.client() as http,
        ak.AkoolSession(api_key=emulator.api_key, http_client=http, on_event=on_event) as session,
    ):
        results = await session.generate_many(batch, concurrency=len(batch))
        run.outcomes.update(type(result).__name__ for result in results)
    return _collect(run, emulator, started)


async def run_round_robin(
    batch: Sequence[str], seed: int, limit: float, rate: float, create_times: dict[str, float]
) -> Run:
    """The baseline: one request per tick; creates when the SDK did, else the next job's status."""
    emulator = make_emulator(seed, Faults(rate_limit=limit))
    run = Run("round_robin", jobs=len(batch))
    order = sorted(batch, key=lambda prompt: (create_times.get(prompt, math.inf), prompt))
    started = anyio.current_time()
    async with (
        emulator.client() as http,
        ak.AkoolSession(
            api_key=emulator.api_key, http_client=http, max_concurrent_requests=1
        ) as session,
    ):
        ring: list[str] = []  # unfinished jobs, in creation order
        cursor = 0
        created = 0
        tick = 0
        while created < len(order) or ring:
            await anyio.sleep_until(started + tick / rate)
            tick += 1
            now = anyio.current_time() - started
            try:
                if created < len(order) and create_times.get(order[created], 0.0) <= now:
                    info = await session.create_by_prompt(order[created])
                    created += 1
                    ring.append(info.id)
                    continue
                if not ring:
                    continue  # nothing created yet: an idle tick sends nothing
                cursor %= len(ring)
                info = await session.get_image_info(ring[cursor])
            except ak.AkoolError as error:
                run.outcomes[type(error).__name__] += 1
                continue
            if info.is_result_ready or info.status is ak.ImageStatus.FAILED:
                run.detected[info.id] = anyio.current_time()
                run.outcomes["ImageInfo" if info.is_result_ready else "JobFailed"] += 1
                ring.pop(cursor)  # the cursor now points at the next job
            else:
                cursor += 1
    _collect(run, emulator, started)
    run.stats["paced_at_requests_per_second"] = rate
    return run


def guarded(name: str, run: Run | Stalled) -> Run:
    """A run, or an empty one that carries the stall."""
    if isinstance(run, Run):
        return run
    note(f"  {name} STALLED: {run}")
    return Run(name, jobs=0, error=str(run))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=2000, help="jobs in flight (2000)")
    parser.add_argument("--seed", type=int, default=0, help="emulator seed (0)")
    parser.add_argument(
        "--rate-limit", type=float, default=20.0, help="the emulator's requests/s limit (20)"
    )
    parser.add_argument(
        "--baseline-rate",
        type=float,
        default=None,
        help="the round-robin's requests/s (default: the SDK's achieved accepted rate)",
    )
    parser.add_argument("--verbose", action="store_true", help="show the SDK's warnings")
    options = parser.parse_args(argv)
    if options.jobs < 1 or options.rate_limit <= 0:
        parser.error("--jobs must be at least 1 and --rate-limit above 0")
    return options


def _attempt(work: Callable[[], Awaitable[Run]]) -> Run | Stalled:
    try:
        result: Run = run_virtual(work)
    except Stalled as error:
        return error
    return result


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    started = time.perf_counter()
    source = environment()  # now, while the imported code is what is on disk
    warnings = WarningCounter.install(verbose=options.verbose)
    timings: dict[str, float] = {}
    batch = prompts(options.jobs)
    seed, limit = options.seed, options.rate_limit
    note(f"rate budget: {options.jobs} jobs, limit {limit:g} req/s, seed {seed}, virtual time")

    with phase("sdk", timings):
        sdk = guarded("sdk", _attempt(lambda: run_sdk(batch, seed, limit)))
    cap = BASELINE_RATE_CAP * limit
    wanted = options.baseline_rate if options.baseline_rate is not None else sdk.accepted_rate
    if not math.isfinite(wanted) or wanted <= 0:
        wanted = cap
    rate = min(wanted, cap)
    create_times = sdk.create_times or dict.fromkeys(batch, 0.0)
    with phase("round_robin", timings):
        baseline = guarded(
            "round_robin",
            _attempt(lambda: run_round_robin(batch, seed, limit, rate, create_times)),
        )

    throttle_percent = float(sdk.stats.get("throttled_after_first_429_percent", math.nan))
    sdk_mean = summary(sdk.lags).get("mean", math.nan)
    base_mean = summary(baseline.lags).get("mean", math.nan)
    complete = sdk.error is None and len(sdk.detected) == options.jobs
    lag_ratio = sdk_mean / base_mean if base_mean else math.nan
    targets: dict[str, Any] = {
        "throttled_after_first_429": {
            "sdk_percent": throttle_percent,
            "target": f"< {THROTTLE_TARGET_PERCENT:g} % of requests after the first 429",
            "pass": complete and throttle_percent < THROTTLE_TARGET_PERCENT,
        },
        "mean_lag": {
            "sdk": sdk_mean,
            "round_robin": base_mean,
            "ratio": lag_ratio,
            "target": f"<= {LAG_RATIO_TARGET:g} x round-robin's mean lag",
            "pass": complete and lag_ratio <= LAG_RATIO_TARGET,
        },
    }
    targets["all_pass"] = all(item["pass"] for item in targets.values())
    sdk_status = sdk.stats.get("status_requests", 0)
    base_status = baseline.stats.get("status_requests", 0)
    document: dict[str, Any] = {
        "benchmark": "rate_budget",
        "jobs": options.jobs,
        "seed": seed,
        "rate_limit_per_second": limit,
        "strategies": {"sdk": sdk.report(), "round_robin": baseline.report()},
        "round_robin_status_requests_vs_sdk": base_status / sdk_status if sdk_status else None,
        "round_robin_creates": "when the SDK created the same prompt"
        if sdk.create_times
        else "all at the start (the SDK run gave no create times)",
        "targets": targets,
        "notes": [
            "virtual time: trio MockClock(autojump_threshold=0), emulator in-process",
            "lag = detection time - emulator complete_at (status 3 and the grid's quadrants)",
            "round_robin creates each job at the first tick at or after the SDK created it",
        ],
        "sdk_log_warnings": {"count": warnings.count, "examples": warnings.first},
        "environment": source,
        "real_seconds": {**timings, "total": round(time.perf_counter() - started, 2)},
    }
    print_json(document)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
