"""The emulator's duration laws: mixtures and heavy tails, reproducible under a seed, checked."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest

import akool_async as ak
from akool_async.testing import (
    AkoolEmulator,
    Duration,
    DurationLaw,
    EmulatorConfigError,
    EmulatorTimings,
    Mixture,
    Pareto,
)

BIMODAL = Mixture([(0.7, Duration(30.0, 0.1)), (0.3, Duration(110.0, 0.1))])


def draws(law: DurationLaw, count: int = 4000, seed: int = 3) -> list[float]:
    rng = random.Random(seed)
    return [law.sample(rng) for _ in range(count)]


def test_a_mixture_picks_each_law_by_its_weight() -> None:
    """70 % of a 0.7/0.3 mixture's draws come from the first law, 30 % from the second."""
    values = draws(BIMODAL)

    near_first = sum(20.0 < value < 45.0 for value in values)
    near_second = sum(75.0 < value < 160.0 for value in values)

    assert len(values) == near_first + near_second
    assert 0.67 < near_first / len(values) < 0.73


def test_mixture_weights_are_relative() -> None:
    """Weights 7 and 3 draw exactly what 0.7 and 0.3 draw."""
    scaled = Mixture([(7, Duration(30.0, 0.1)), (3, Duration(110.0, 0.1))])

    assert draws(BIMODAL, 200) == draws(scaled, 200)


def test_a_mixture_nests_and_takes_any_law() -> None:
    """A mixture of a mixture and a Pareto tail draws from all three parts."""
    law = Mixture([(0.9, BIMODAL), (0.1, Pareto(500.0, 2.0, maximum=900.0))])

    values = draws(law)

    assert 0.08 < sum(value >= 500.0 for value in values) / len(values) < 0.12
    assert 900.0 == max(values)


def test_same_seed_same_draws_other_seed_other_draws() -> None:
    """Draws are a function of the generator's seed alone."""
    law = Mixture([(0.5, Duration(10.0, 0.5)), (0.5, Pareto(20.0))])

    assert draws(law, 100, seed=1) == draws(law, 100, seed=1)
    assert draws(law, 100, seed=1) != draws(law, 100, seed=2)


def test_pareto_tail_follows_its_shape() -> None:
    """P(draw > 10 x minimum) is 10 ** -shape; no draw is under the minimum."""
    values = draws(Pareto(4.0, 1.5), 20_000)

    assert 4.0 <= min(values)
    assert 0.025 < sum(value > 40.0 for value in values) / len(values) < 0.038
    assert 4.0 * 2 ** (1 / 1.5) == pytest.approx(sorted(values)[len(values) // 2], rel=0.05)


def test_pareto_maximum_cuts_the_tail() -> None:
    """Draws past the maximum are cut to it; a very heavy tail stays finite."""
    cut = draws(Pareto(1.0, 0.5, maximum=50.0))
    uncut = draws(Pareto(1.0, 0.01), 2000)

    assert 50.0 == max(cut)
    assert 1.0 <= min(uncut)
    assert all(value < float("inf") for value in uncut)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Mixture([]), r"at least one \(weight, law\) pair"),
        (lambda: Mixture("30s"), r"a list of \(weight, law\) pairs, e\.g\. Mixture"),
        (lambda: Mixture(5), r"a list of \(weight, law\) pairs"),
        (lambda: Mixture([(1.0,)]), r"each Mixture component is a \(weight, law\) pair"),
        (lambda: Mixture([(0.0, Duration(5.0))]), r"Mixture weight must be .* than 0 \(got 0\.0\)"),
        (lambda: Mixture([(-1, Duration(5.0))]), r"greater than 0 \(got -1\)"),
        (lambda: Mixture([(float("nan"), Duration(5.0))]), r"greater than 0 \(got nan\)"),
        (lambda: Mixture([(True, Duration(5.0))]), r"greater than 0 \(got True\)"),
        (lambda: Mixture([("1", Duration(5.0))]), r"greater than 0 \(got '1'\)"),
        (lambda: Mixture([(1.0, 40.0)]), r"law is a Duration, Pareto or Mixture \(got 40\.0\)"),
        (lambda: Pareto(0.0), r"Pareto\.minimum must be a number greater than 0 \(got 0\.0\)"),
        (lambda: Pareto(float("inf")), r"Pareto\.minimum .* \(got inf\)"),
        (lambda: Pareto(5.0, shape=0.0), r"Pareto\.shape must be a number greater than 0"),
        (lambda: Pareto(5.0, maximum=4.0), r"Pareto\.maximum must be None or at least minimum"),
        (
            lambda: EmulatorTimings(grid_processing=40.0),
            r"EmulatorTimings\.grid_processing must be a Duration, Mixture or Pareto \(got 40\.0\)",
        ),
    ],
)
def test_bad_laws_are_refused_with_what_to_do(make: Any, message: str) -> None:
    """Each malformed law is an EmulatorConfigError saying what was expected and what was given."""
    with pytest.raises(EmulatorConfigError, match=message):
        make()


async def created_durations(seed: int, timings: EmulatorTimings, count: int) -> list[float]:
    """Create ``count`` grids; their durations to the complete result (to the microsecond)."""
    emulator = AkoolEmulator(api_key="k", seed=seed, timings=timings)
    async with emulator.client() as http, ak.AkoolSession(api_key="k", http_client=http) as session:
        for index in range(count):
            await session.create_by_prompt(f"prompt {index}")
            await anyio.sleep(1.0)
    # Rounded: each run starts at another clock reading, and float sums differ in the last bit.
    return [round(job.complete_at - job.created_at, 6) for job in emulator.jobs.values()]


@pytest.mark.anyio
async def test_the_emulator_draws_grid_durations_from_a_mixture() -> None:
    """Grids follow the law in EmulatorTimings, quadrants 2 s after status 3, the same per seed."""
    timings = EmulatorTimings(
        grid_queue=Duration(0.0, 0.0), grid_processing=BIMODAL, quadrant_lag=Duration(2.0, 0.0)
    )

    first = await created_durations(11, timings, 200)
    again = await created_durations(11, timings, 200)
    other = await created_durations(12, timings, 200)

    assert first == again
    assert first != other
    short = [value for value in first if value < 60.0]
    assert 120 <= len(short) <= 160
    # Every draw within 4 spreads (a factor e ** 0.4) of its law's median, plus the 2 s lag.
    assert all(20.0 + 2.0 < value < 45.0 + 2.0 for value in short)
    assert all(73.0 + 2.0 < value < 165.0 + 2.0 for value in first if value >= 60.0)
