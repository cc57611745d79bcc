"""The poll planner alone, in a pure simulator (tests/plannersim.py): each mechanism doing its job.

No I/O, no clock: jobs have known durations, the planner says when to look, and the simulator
answers "done" or "not yet" as the engine's reads would.
"""

from __future__ import annotations

import collections
import math
import random

import pytest

import akool_async as ak
from akool_async._estimate import censored_fit, log_interval
from akool_async._polling import JobKind, Planner, PollPolicy
from plannersim import SimJob, floor, lognormal, make_jobs, mixture, simulate

TARGET = PollPolicy().target_lag


def fixed_poller_p95(jobs: list[SimJob], interval: float = 3.0) -> float:
    """The p95 lag of Akool's demo poller (a read every ``interval`` seconds) on these jobs."""
    lags = sorted(math.ceil(job.duration / interval) * interval - job.duration for job in jobs)
    return lags[math.ceil(0.95 * len(lags)) - 1]


def test_censored_fit_is_unbiased_on_a_wide_law_where_completions_alone_are_not() -> None:
    """At 40 s, with a third of 2,000 jobs (median 60 s, spread 1.0) done, counting the running
    ones as "longer than 40 s" finds the law; the completions alone say a median of ~23 s."""
    rng = random.Random(7)
    durations = [60 * math.exp(rng.gauss(0, 1.0)) for _ in range(2000)]
    looks: collections.Counter[tuple[float, float]] = collections.Counter()
    completed: list[float] = []
    for duration in durations:
        if duration <= 40:
            # Seen done by a read every 2.75 s: it finished within the last gap.
            looks[log_interval(max(duration - 1.375, 0.0) or None, duration + 1.375)] += 1
            completed.append(duration)
        else:
            looks[log_interval(40.0, None)] += 1
    law = censored_fit(
        looks, prior_mu=math.log(40), prior_sigma=0.5, centre_spread=1.5, spread_weight=2
    )
    naive_median = math.exp(sorted(math.log(d) for d in completed)[len(completed) // 2])
    assert 0.9 < law.median / 60 < 1.1
    assert 0.85 < law.sigma / 1.0 < 1.15
    assert naive_median < 25


@pytest.mark.parametrize("median", [8.0, 150.0, 300.0])
def test_a_cold_start_far_from_the_prior_converges_within_thirty_jobs(median: float) -> None:
    """A stream of jobs whose law (spread 0.3) is far from the 40 s prior: after thirty
    completions the believed median is within 10 % and the first look within 10 % (or a gap)
    of where the true law puts it."""
    jobs = make_jobs(lognormal(median, 0.3), 60, seed=3, stream_seconds=60 * median)
    planner = Planner(PollPolicy(), rng=random.Random(0))
    simulate(jobs[:30], planner=planner)
    law = planner.law(JobKind.GRID)
    ideal_first_look = median * math.exp(0.3 * -2.054) + TARGET  # the 2 % quantile plus a gap
    assert 0.9 < law.median / median < 1.1
    error = abs(planner.first_look_age(JobKind.GRID) - ideal_first_look)
    assert error < max(TARGET, 0.1 * ideal_first_look)


def test_held_first_looks_follow_the_evidence_later() -> None:
    """A batch of 300 long jobs (median 300 s) created at once: no job is read every gap from
    the start; the held ones move later with each round of "not done yet"."""
    jobs = make_jobs(lognormal(300, 0.1), 300, seed=1)
    result = simulate(jobs, PollPolicy())
    every_gap_from_the_start = sum(job.duration / TARGET for job in jobs) / len(jobs)
    assert result.requests_per_job < every_gap_from_the_start / 2
    assert result.lag_quantile(0.95) <= TARGET


def test_sentinels_catch_a_law_far_earlier_than_the_prior() -> None:
    """300 jobs of about 5 s created at once, with a 40 s prior: without sentinels every job
    would first be read at ~17 s, 12 s late; sentinels find the law before the bulk is late."""
    jobs = make_jobs(lognormal(5, 0.1), 300, seed=1)
    result = simulate(jobs, PollPolicy())
    assert result.lag_quantile(0.95) <= TARGET
    assert max(result.lags) < 5.0
    assert result.requests_per_job < 2.5


def test_a_cold_batch_far_from_the_prior_mostly_keeps_the_lag_promise() -> None:
    """A law of 150 s (spread 0.35) created at once, 300 jobs, six draws: sentinels find the
    first finishers and the held jobs are released in time in most draws. In the others the
    first of 24 sentinels happened to finish late (at the law's 8th to 11th percentile), and
    so were the held jobs' first looks: a cold batch's known risk. Every draw stays within
    1.5x the floor's reads."""
    p95s = []
    for seed in range(6):
        jobs = make_jobs(lognormal(150, 0.35), 300, seed=seed + 10)
        result = simulate(jobs, PollPolicy(), seed=seed)
        floor_requests, _, _ = floor([job.duration for job in jobs], TARGET)
        assert result.requests_per_job <= 1.5 * floor_requests
        p95s.append(result.lag_quantile(0.95))
    assert sum(p95 <= TARGET for p95 in p95s) >= 4, p95s
    assert sorted(p95s)[len(p95s) // 2] <= TARGET, p95s


def test_the_self_check_tightens_first_looks_when_early_finishers_are_missed() -> None:
    """Trained on 300 jobs of about 60 s, the planner then meets a stream where a fifth of the
    jobs take about 15 s. More jobs are done at their first look than the law allows: the
    self-check moves first looks earlier, and the lag of the later jobs comes back."""
    planner = Planner(PollPolicy(), rng=random.Random(0))
    simulate(make_jobs(lognormal(60, 0.15), 300, seed=2, stream_seconds=1800), planner=planner)
    early_before = planner._models[JobKind.GRID].early
    first_look_before = planner.first_look_age(JobKind.GRID)
    shifted = make_jobs(
        mixture((0.2, lognormal(15, 0.1)), (0.8, lognormal(60, 0.15))),
        400,
        seed=4,
        stream_seconds=2400,
    )
    for job in shifted:
        job.born += 1800
    result = simulate(shifted, planner=planner)
    assert planner._models[JobKind.GRID].early < early_before
    assert planner.first_look_age(JobKind.GRID) < first_look_before - 3 * TARGET
    # The evidence it reports: some jobs were done at their first look; the others' lag bounds
    # (time between their last "not done" read and their "done" read) stay within a gap.
    share_done_at_first_look, bound_p95 = planner.lag_bounds(JobKind.GRID)
    assert share_done_at_first_look > 0
    assert bound_p95 <= TARGET + 1e-9
    late_half = sorted(result.lags[len(result.lags) // 2 :])
    assert late_half[math.ceil(0.95 * len(late_half)) - 1] <= TARGET


@pytest.mark.parametrize(
    ("name", "law"),
    [
        ("narrow 45 s", lognormal(45, 0.22)),
        ("wide 30 s", lognormal(30, 0.9)),
        ("bimodal 30/110 s", mixture((0.7, lognormal(30, 0.15)), (0.3, lognormal(110, 0.15)))),
        ("long 150 s", lognormal(150, 0.35)),
    ],
)
def test_a_stream_keeps_the_lag_promise_near_the_floor(name: str, law: object) -> None:
    """Jobs created over half an hour: p95 lag within the target and the 3 s poller's, and
    requests within 1.4x the floor (the cheapest schedule for a poller knowing every duration)."""
    assert callable(law)
    jobs = make_jobs(law, 300, seed=1, stream_seconds=1800)
    result = simulate(jobs, PollPolicy())
    fixed_p95 = fixed_poller_p95(jobs)
    floor_requests, _, _ = floor([job.duration for job in jobs], min(fixed_p95, TARGET))
    # Within the target, give or take 1 % (a held job's first look may land a hair past it).
    assert result.lag_quantile(0.95) <= 1.01 * min(TARGET, fixed_p95 + 0.05), name
    assert min(result.lags) >= 0
    assert result.requests_per_job <= 1.4 * floor_requests, name


def test_a_hint_only_sets_where_to_start() -> None:
    """A wrong expected_duration (10 s for 120 s jobs) is overruled by a handful of jobs."""
    planner = Planner(PollPolicy(expected_duration=10), rng=random.Random(0))
    assert planner.law(JobKind.GRID).median == pytest.approx(10)
    simulate(make_jobs(lognormal(120, 0.2), 20, seed=5, stream_seconds=1200), planner=planner)
    assert 0.85 < planner.law(JobKind.GRID).median / 120 < 1.15


def test_backoff_after_a_day_of_failed_reads_is_bounded() -> None:
    """A read failing 1,500 times in a row (a day at the 60 s cap) backs off 60 s, no overflow."""
    planner = Planner(PollPolicy(jitter=0), rng=random.Random(0))
    assert 60.0 == planner.backoff(1500, None)
    assert 60.0 == planner.backoff(10**9, None)
    assert 2.75 == planner.backoff(1, None)
    assert 5.0 == planner.backoff(1, 5.0)


def test_the_safety_net_reads_at_the_99th_percentile_then_every_30_s() -> None:
    """With webhooks a job is read at the law's 99 % quantile, then every 30 s."""
    planner = Planner(PollPolicy(expected_duration=45), rng=random.Random(0))
    job = SimJob(born=100.0, duration=50.0)
    end = 100.0 + planner.quantile(JobKind.GRID, 0.99)
    assert end == planner.safety_net(job, 100.0)
    assert end + 40 + 30 == planner.safety_net(job, end + 40)


def test_lost_callbacks_switch_to_polling_after_two_and_back_on_the_next() -> None:
    """Two jobs found ended without a callback switch polling on; one callback switches it off."""
    planner = Planner(PollPolicy())
    assert (False, True, False) == (
        planner.push_missed(),
        planner.push_missed(),
        planner.push_missed(),
    )
    assert (False, True) == (planner.push_healthy, planner.push_arrived())
    assert (True, 0) == (planner.push_healthy, planner.missed_pushes)


def test_a_job_of_unknown_age_is_read_at_once_then_steadily() -> None:
    """A job this session did not create has no age: read at once, then at a steady pace."""
    planner = Planner(PollPolicy(jitter=0), rng=random.Random(0))
    job = SimJob(born=10.0, duration=30.0, age_known=False)
    assert 10.0 == planner.first_look(job, 10.0)
    assert 10.0 + max(TARGET, 0.1 * planner.quantile(JobKind.GRID, 0.5)) == planner.next_look(
        job, 10.0
    )


def test_poll_policy_refuses_a_bad_hint() -> None:
    """expected_duration is a positive number or None."""
    with pytest.raises(ak.InvalidInput, match=r"expected_duration must be a number greater than 0"):
        PollPolicy(expected_duration=0)
    assert PollPolicy(expected_duration=None).expected_duration is None
