"""Real time: several worker processes of one app sharing callbacks and the budget via Redis.

Run from the repository root (needs ``redis-server`` on the PATH and the ``redis`` extra)::

    python benchmarks/workers.py            # every scenario (about 4 minutes)
    python benchmarks/workers.py --quick    # 2 and 4 workers at one time scale, smaller runs
    python benchmarks/workers.py --help

One JSON document goes to stdout; progress notes go to stderr.

Each run goes through ``tests/workers_harness.py``: an emulator served on a loopback port, N
worker processes (half on asyncio, half on trio), each with its own `AkoolSession` and webhook
receiver, and a proxy that hands every callback to a *random* worker, as a load balancer in
front of ``uvicorn --workers N`` does. The emulator's own records count what was created and
refused. The scenarios:

* ``callbacks``: for 2 and 4 workers and two time scales (a grid takes about 4.6 s or 9 s),
  each worker creating 100 jobs spread over 4 s and waiting on each: one process alone (the
  single-process figure), N workers sharing Redis, N workers without it. Figures: status reads
  per job (and its ratio to the single process), waits resolved on their callback.
* ``budget``: 4 workers, 20 jobs each at once, polling, against an emulator that accepts 10
  requests/s (a one-second sliding window, 429 above it), with the shared budget and without,
  side by side at the same time. Figures: 429s after the first one, strictly and from 2 s
  after it (the requests in flight when it was answered, and their retries after its 1 s
  ``Retry-After``, went out before anyone knew of the limit); requests accepted per second.
* ``outage``: 4 workers with Redis, 50 jobs each spread over 6 s; Redis is killed (``kill
  -9``) 1.5 s in and started again on the same port 2 s later. Figures: jobs completed,
  prompts created twice, outages counted, how soon each worker shared again.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio
from _common import REPO_ROOT, environment, note, phase, print_json

sys.path.insert(0, str(REPO_ROOT / "tests"))

from redis_server import RedisServer, free_port
from workers_harness import (
    RETRY_AFTER,
    FleetPlan,
    FleetResult,
    redis_outage,
    run_fleet,
    run_side_by_side,
)

SETTLED: Final = 2 * RETRY_AFTER
READS_RATIO_TARGET: Final = 1.2
THROTTLE_TARGET_PERCENT: Final = 1.0


def _run(plan: FleetPlan, during: Callable[[float], Awaitable[None]] | None = None) -> FleetResult:
    return anyio.run(functools.partial(run_fleet, plan, during=during), backend="asyncio")


def _figures(result: FleetResult) -> dict[str, Any]:
    summary = result.summary()
    keep = (
        "jobs",
        "completed",
        "on_callback",
        "duplicates",
        "status_reads_per_job",
        "wait_lag_p50",
        "wait_lag_p95",
        "requests",
        "throttled",
        "callback_lag_p50",
        "forward_seconds_p50",
        "seconds",
    )
    figures = {key: summary[key] for key in keep}
    if result.plan.redis_url is not None:
        for name in ("published", "delivered", "rejected", "outages"):
            figures[name] = summary[name]
    return figures


def callbacks(server: RedisServer, *, workers: int, time_scale: float, jobs: int) -> dict[str, Any]:
    """Single process, N workers with Redis, N without: status reads per job side by side."""
    plan = functools.partial(FleetPlan, jobs_per_worker=jobs, time_scale=time_scale, spread=4.0)
    tag = f"w{workers} ts{time_scale}"
    single = _run(plan(workers=1, tag=f"{tag} single"))
    redis = _run(plan(workers=workers, redis_url=server.url, tag=f"{tag} redis"))
    alone = _run(plan(workers=workers, tag=f"{tag} alone"))
    base = single.status_reads_per_job
    return {
        "workers": workers,
        "time_scale": time_scale,
        "jobs_per_worker": jobs,
        "single_process": _figures(single),
        "with_redis": _figures(redis),
        "without_redis": _figures(alone),
        "reads_ratio_with_redis": redis.status_reads_per_job / base,
        "reads_ratio_without_redis": alone.status_reads_per_job / base,
        "on_callback_share_with_redis": redis.total("on_callback") / redis.jobs,
        "on_callback_share_without_redis": alone.total("on_callback") / alone.jobs,
    }


def _throttles(result: FleetResult) -> dict[str, Any]:
    strict, after = result.throttled_after()
    settled, after_settled = result.throttled_after(SETTLED)
    return {
        **_figures(result),
        "throttled_after_first": strict,
        "requests_after_first": after,
        "percent_after_first": 100 * strict / after if after else 0.0,
        "throttled_from_2s_after_first": settled,
        "requests_from_2s_after_first": after_settled,
        "percent_from_2s_after_first": 100 * settled / after_settled if after_settled else 0.0,
        "accepted_per_second": result.accepted_per_second(),
        "throttles_per_worker": [int(report["throttles"]) for report in result.reports],
    }


def budget(server: RedisServer, *, jobs: int) -> dict[str, Any]:
    """4 workers against 10 requests/s, with the shared budget and without, at once."""
    plan = functools.partial(
        FleetPlan,
        workers=4,
        jobs_per_worker=jobs,
        time_scale=0.05,
        webhooks=False,
        rate_limit=10,
        deadline=max(180.0, 4.0 * jobs),
    )
    results = run_side_by_side(
        {
            "shared": plan(redis_url=server.url, tag="budget shared"),
            "alone": plan(tag="budget alone"),
        }
    )
    shared, alone = _throttles(results["shared"]), _throttles(results["alone"])
    key = "percent_from_2s_after_first"
    return {
        "rate_limit": 10,
        "workers": 4,
        "jobs_per_worker": jobs,
        "shared_budget": shared,
        "without": alone,
        "ratio_percent_from_2s_after_first": alone[key] / shared[key] if shared[key] else None,
        "ratio_percent_after_first": alone["percent_after_first"] / shared["percent_after_first"]
        if shared["percent_after_first"]
        else None,
    }


def outage(server: RedisServer, *, jobs: int) -> dict[str, Any]:
    """Redis killed 1.5 s into the run and restarted 2 s later on the same port."""
    marks: dict[str, float] = {}

    kill_and_restart = redis_outage(server, marks)

    plan = FleetPlan(
        workers=4,
        jobs_per_worker=jobs,
        time_scale=0.05,
        spread=6.0,
        redis_url=server.url,
        tag="outage",
    )
    result = _run(plan, kill_and_restart)
    shared_again = []
    for report in result.reports:
        back = next(
            (s[0] for s in report["samples"] if s[0] > marks["restarted"] and s[4] == 1), None
        )
        shared_again.append(None if back is None else back - marks["restarted"])
    return {
        **_figures(result),
        "never_created": result.never_created,
        "outages_per_worker": [report["coordinator"]["outages"] for report in result.reports],
        "seconds_to_share_again_after_restart": shared_again,
    }


def _worst(document: dict[str, Any]) -> dict[str, Any]:
    runs = document["callbacks"]
    worst_redis = max(runs, key=lambda run: run["reads_ratio_with_redis"])
    least_on_callback = min(run["on_callback_share_with_redis"] for run in runs)
    budget_run = document["budget"]
    shared = budget_run["shared_budget"]
    return {
        "reads_ratio_with_redis": {
            "value": worst_redis["reads_ratio_with_redis"],
            "run": f"{worst_redis['workers']} workers, time scale {worst_redis['time_scale']}",
            "target": f"<= {READS_RATIO_TARGET}x the single process",
            "pass": worst_redis["reads_ratio_with_redis"] <= READS_RATIO_TARGET,
        },
        "reads_ratio_without_redis_worst": max(run["reads_ratio_without_redis"] for run in runs),
        "wait_lag_p50_with_redis_worst": max(run["with_redis"]["wait_lag_p50"] for run in runs),
        "wait_lag_p50_without_redis_best": min(
            run["without_redis"]["wait_lag_p50"] for run in runs
        ),
        "on_callback_share_with_redis_least": least_on_callback,
        "on_callback_share_without_redis_least": min(
            run["on_callback_share_without_redis"] for run in runs
        ),
        "percent_429_after_first_shared": shared["percent_after_first"],
        "percent_429_from_2s_after_first_shared": {
            "value": shared["percent_from_2s_after_first"],
            "target": f"<= {THROTTLE_TARGET_PERCENT} %",
            "pass": shared["percent_from_2s_after_first"] <= THROTTLE_TARGET_PERCENT,
        },
        "percent_429_from_2s_after_first_without": budget_run["without"][
            "percent_from_2s_after_first"
        ],
        "outage_jobs_lost_or_doubled": document["outage"]["jobs"]
        - document["outage"]["completed"]
        + document["outage"]["duplicates"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer and smaller runs")
    parser.add_argument("--redis-server", default="redis-server", help="the binary to start")
    parser.add_argument(
        "--budget-jobs",
        type=int,
        default=None,
        help="jobs per worker in the shared-budget run (20; 10 with --quick): more make a longer "
        "run, over which the opening burst of 429s weighs less",
    )
    parser.add_argument(
        "--only-budget", action="store_true", help="run the shared-budget comparison alone"
    )
    options = parser.parse_args()
    scales = (0.1,) if options.quick else (0.1, 0.2)
    jobs = 50 if options.quick else 100
    timings: dict[str, float] = {}
    server = RedisServer(options.redis_server, free_port())
    server.start()
    document: dict[str, Any] = {
        "benchmark": "workers",
        "command": "python benchmarks/workers.py" + (" --quick" if options.quick else ""),
        "environment": environment(),
        "callbacks": [],
    }
    budget_jobs = options.budget_jobs or (10 if options.quick else 20)
    if options.only_budget:
        document["command"] += f" --only-budget --budget-jobs {budget_jobs}"
        scales = ()
    try:
        for time_scale in scales:
            for workers in (2, 4):
                with phase(f"callbacks {workers} workers, time scale {time_scale}", timings):
                    run = callbacks(server, workers=workers, time_scale=time_scale, jobs=jobs)
                    document["callbacks"].append(run)
        with phase("budget", timings):
            document["budget"] = budget(server, jobs=budget_jobs)
        if not options.only_budget:
            with phase("outage", timings):
                document["outage"] = outage(server, jobs=25 if options.quick else 50)
    finally:
        server.kill()
    if not options.only_budget:
        document["worst"] = _worst(document)
    document["real_seconds"] = timings
    note("done")
    print_json(document)


if __name__ == "__main__":
    main()
