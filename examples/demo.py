"""The SDK's calls end to end, against the embedded Akool emulator: generate, wait, upscale, vary,
download. No Akool account and no network: the emulator runs in this process, 50 times faster
than Akool. (The command line does the same for a whole file: ``akool-async demo``.)

    python examples/demo.py --out demo-output
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import anyio

import akool_async as ak
from akool_async.testing import AkoolEmulator

PROMPTS = [
    ("a red fox in snow", "16:9"),
    ("a lighthouse on a cliff at dusk", "1:1"),
    ("a paper boat on a rainy street", "3:4"),
]


async def make_one(session: ak.AkoolSession, out: pathlib.Path, prompt: str, scale: str) -> int:
    """One grid and its four quadrants, a U1 upscale and a V2 variation, all saved."""
    job = await session.generate(prompt, scale=scale)
    await job.wait()  # returns once the grid and its four quadrants are there
    await job.download(out)
    files = 1 + len(await job.download_quadrants(out))
    upscale, variation = await job.upscale(1), await job.vary(2)
    await upscale.download(out)
    await variation.download(out)
    print(f"  {prompt!r} ({scale}): grid {job.id}, U1 {upscale.id}, V2 {variation.id}")
    return files + 2


async def main(out: pathlib.Path) -> int:
    await anyio.Path(out).mkdir(parents=True, exist_ok=True)
    emulator = AkoolEmulator(time_scale=0.02, seed=1)
    # The planner's priors are Akool's real durations; the emulator's are 50 times shorter.
    policy = ak.PollPolicy(expected_duration=1.0, target_lag=0.1, min_interval=0.1)
    print(f"Generating {len(PROMPTS)} images against the embedded Akool emulator...")
    written = 0
    async with (
        emulator.client(timeout=30.0) as http,
        ak.AkoolSession(api_key=emulator.api_key, http_client=http, poll_policy=policy) as session,
    ):
        start_credit = await session.get_credit()

        async def run(prompt: str, scale: str) -> None:
            nonlocal written
            written += await make_one(session, out, prompt, scale)

        async with anyio.create_task_group() as tg:
            for prompt, scale in PROMPTS:
                tg.start_soon(run, prompt, scale)
        spent = start_credit - await session.get_credit()
    print(f"Wrote {written} PNG files to {out}/ ({spent:g} emulated credits spent).")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("demo-output"))
    sys.exit(anyio.run(main, parser.parse_args().out))
