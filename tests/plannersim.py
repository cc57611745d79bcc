"""A pure simulator for the poll planner: jobs with known durations, the planner's schedule, no I/O.

It executes the planner exactly as the engine does (first look, re-check of a held job when it
comes due, reads that find a job done or not, held jobs pulled forward), with an unlimited
request budget and instant answers, and reports requests per job and detection lags. Durations
here are the time to a complete result; the grid's quadrant quirk is the engine's business.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from akool_async._polling import JobKind, Planner, PollPolicy

__all__ = ["SimJob", "SimResult", "floor", "lognormal", "mixture", "simulate"]


@dataclass(eq=False)
class SimJob:
    """One simulated job, shaped like the engine's tracker as far as the planner looks."""

    born: float
    duration: float
    age_known: bool = True
    job_kind: JobKind = JobKind.GRID
    looks: int = 0
    last_unfinished_age: float | None = None
    sequence: int = 0
    seen_done: float | None = None

    @property
    def done_at(self) -> float:
        return self.born + self.duration


@dataclass
class SimResult:
    """What a simulated run cost and how late it noticed each job."""

    jobs: list[SimJob]
    requests: int
    lags: list[float] = field(default_factory=list)

    @property
    def requests_per_job(self) -> float:
        return self.requests / len(self.jobs)

    def lag_quantile(self, q: float) -> float:
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def lognormal(median: float, spread: float) -> Callable[[random.Random], float]:
    """Durations ``median * exp(N(0, spread))``."""
    return lambda rng: median * math.exp(rng.gauss(0.0, spread))


def mixture(
    *parts: tuple[float, Callable[[random.Random], float]],
) -> Callable[[random.Random], float]:
    """Durations from ``parts`` (weight, law) chosen by weight."""
    total = sum(weight for weight, _ in parts)

    def draw(rng: random.Random) -> float:
        pick = rng.random() * total
        for weight, law in parts:
            pick -= weight
            if pick <= 0:
                return law(rng)
        return parts[-1][1](rng)

    return draw


def make_jobs(
    law: Callable[[random.Random], float],
    count: int,
    *,
    seed: int = 0,
    stream_seconds: float = 0.0,
) -> list[SimJob]:
    """``count`` jobs with durations from ``law``: all born at 0, or uniformly over a stream."""
    rng = random.Random(seed)
    births = (
        sorted(rng.uniform(0, stream_seconds) for _ in range(count))
        if stream_seconds
        else [0.0] * count
    )
    return [SimJob(born=born, duration=max(0.05, law(rng))) for born in births]


def simulate(
    jobs: Sequence[SimJob],
    policy: PollPolicy | None = None,
    *,
    planner: Planner | None = None,
    seed: int = 0,
) -> SimResult:
    """Run the planner's schedule over ``jobs`` until every one is noticed done."""
    planner = (
        planner if planner is not None else Planner(policy or PollPolicy(), rng=random.Random(seed))
    )
    heap: list[tuple[float, int, int]] = []
    order = {id(job): index for index, job in enumerate(jobs)}
    pending_births = sorted(jobs, key=lambda job: job.born)
    requests = 0

    def schedule(job: SimJob, when: float) -> None:
        job.sequence += 1
        heapq.heappush(heap, (when, job.sequence, order[id(job)]))

    birth_index = 0
    result = SimResult(list(jobs), 0)
    while birth_index < len(pending_births) or heap:
        next_birth = (
            pending_births[birth_index].born if birth_index < len(pending_births) else math.inf
        )
        if next_birth <= (heap[0][0] if heap else math.inf):
            job = pending_births[birth_index]
            birth_index += 1
            schedule(job, planner.first_look(job, job.born))
            continue
        now, sequence, index = heapq.heappop(heap)
        job = jobs[index]
        if sequence != job.sequence or job.seen_done is not None:
            continue
        later = planner.still_due(job, now, now)
        if later is not None:
            schedule(job, later)
            continue
        requests += 1
        age = now - job.born
        job.looks += 1
        if now >= job.done_at:
            job.seen_done = now
            result.lags.append(now - job.done_at)
            planner.saw_done(job, age)
            planner.forget(job)
            for moved in planner.moved_earlier():
                assert isinstance(moved, SimJob)
                schedule(moved, planner.next_look(moved, now))
            continue
        planner.saw_running(job, age)
        job.last_unfinished_age = age
        schedule(job, planner.next_look(job, now))
    result.requests = requests
    return result


def floor(durations: Sequence[float], max_p95_lag: float) -> tuple[float, float, float]:
    """The cheapest "first look at t0, then every g" schedule knowing every duration, with p95
    lag at most ``max_p95_lag``: (requests per job, t0, g), by search over (t0, g)."""
    ordered = sorted(durations)
    count = len(ordered)
    best = (math.inf, 0.0, 0.0)
    gaps = [max_p95_lag * factor / 10 for factor in range(5, 31)]
    low, high = ordered[0], ordered[min(count - 1, count // 4)] + max_p95_lag
    starts = [low + (high - low) * step / 80 for step in range(81)]
    for gap in gaps:
        for start in starts:
            lags = []
            requests = 0.0
            for d in ordered:
                if d <= start:
                    lags.append(start - d)
                    requests += 1
                else:
                    polls = math.ceil((d - start) / gap)
                    requests += 1 + polls
                    lags.append(start + polls * gap - d)
            lags.sort()
            p95 = lags[min(count - 1, max(0, math.ceil(0.95 * count) - 1))]
            if p95 <= max_p95_lag and requests / count < best[0]:
                best = (requests / count, start, gap)
    return best
