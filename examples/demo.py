"""Generate, upscale and vary a few images against the embedded Akool emulator; write the PNGs.

No Akool account and no network: the emulator runs in this process, 50 times faster than Akool.

    python examples/demo.py --out demo-output
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import anyio
import httpx

import akool_async as ak
from akool_async.testing import AkoolEmulator

PROMPTS = [
    ("a red fox in snow", "16:9"),
    ("a lighthouse on a cliff at dusk", "1:1"),
    ("a paper boat on a rainy street", "3:4"),
]
POLL_SECONDS = 0.2


async def wait_ready(session: ak.AkoolSession, job_id: str) -> ak.ImageInfo:
    """Poll until the result is complete by Akool's rule (grids need their four quadrants)."""
    while True:
        info = await session.get_image_info(job_id)
        if info.status is ak.ImageStatus.FAILED:
            raise ak.JobFailed(info)
        if info.is_result_ready:
            return info
        await anyio.sleep(POLL_SECONDS)


async def save(http: httpx.AsyncClient, url: str, path: pathlib.Path) -> pathlib.Path:
    """Download one image to ``path``, written to a temporary name first and then renamed."""
    response = await http.get(url)
    response.raise_for_status()
    partial = path.with_suffix(".part")
    await anyio.Path(partial).write_bytes(response.content)
    await anyio.Path(partial).rename(path)
    return path


async def make_one(
    session: ak.AkoolSession,
    http: httpx.AsyncClient,
    out: pathlib.Path,
    *,
    number: int,
    prompt: str,
    scale: str,
) -> list[pathlib.Path]:
    """One grid, its four quadrants, a U1 upscale and a V2 variation, all saved."""
    job = await session.generate(prompt, scale=scale)
    grid = await wait_ready(session, job.id)
    files = [await save(http, grid.image or "", out / f"{number:02d}-grid.png")]
    for quadrant, url in enumerate(grid.upscaled_urls, start=1):
        files.append(await save(http, url, out / f"{number:02d}-quadrant-{quadrant}.png"))
    upscale = await session.create_by_button(job.id, ak.Button.U1)
    variation = await session.create_by_button(job.id, ak.Button.V2)
    upscaled = await wait_ready(session, upscale.id)
    files.append(await save(http, upscaled.image or "", out / f"{number:02d}-U1.png"))
    varied = await wait_ready(session, variation.id)
    files.append(await save(http, varied.image or "", out / f"{number:02d}-V2-grid.png"))
    print(f"  {prompt!r} ({scale}): grid {job.id}, U1 {upscale.id}, V2 {variation.id}")
    return files


async def main(out: pathlib.Path) -> int:
    await anyio.Path(out).mkdir(parents=True, exist_ok=True)
    emulator = AkoolEmulator(time_scale=0.02, seed=1)
    print(f"Generating {len(PROMPTS)} images against the embedded Akool emulator...")
    written: list[pathlib.Path] = []
    async with (
        emulator.client(timeout=30.0) as http,
        ak.AkoolSession(api_key=emulator.api_key, http_client=http) as session,
    ):
        start_credit = await session.get_credit()

        async def run(number: int, prompt: str, scale: str) -> None:
            files = await make_one(session, http, out, number=number, prompt=prompt, scale=scale)
            written.extend(files)

        async with anyio.create_task_group() as tg:
            for number, (prompt, scale) in enumerate(PROMPTS, start=1):
                tg.start_soon(run, number, prompt, scale)
        spent = start_credit - await session.get_credit()
    print(f"Wrote {len(written)} PNG files to {out}/ ({spent:g} emulated credits spent).")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("demo-output"))
    sys.exit(anyio.run(main, parser.parse_args().out))
