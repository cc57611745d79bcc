"""Overhead: what the SDK costs its client process, in real time, against a loopback emulator.

Run from the repository root::

    python benchmarks/overhead.py           # the default run: about 3 to 4 minutes on 2 cores
    python benchmarks/overhead.py --help    # sizes, repeats, backends, time scales

One JSON document goes to stdout; progress notes go to stderr. The emulator always runs in another
process (``python -m akool_async.testing --port 0 ...``), so every CPU second counted here is the
client's own.

Part 1, client CPU per HTTP request (``time.process_time()`` of this process), side by side:

* ``bare_httpx``: a bare httpx loop, N status reads (``infobymodelid`` with the ``x-api-key``
  header, JSON decoded, code checked) with at most K in flight, on a client with the same pool
  limits and timeouts as the session's own;
* ``sdk_get_image_info``: the same N reads through ``session.get_image_info``, K workers;
* ``sdk_engine_wait``: the session's engine polling jobs that ``job.wait()`` waits on, with a poll
  policy that keeps it saturated at the same K requests in flight, until it has sent N reads.

Side by side (``--protocols``, both by default), the same three over HTTP/2 (httpx's ``http2``
extra): one multiplexed connection instead of the HTTP/1.1 pool, ``bare_httpx_h2``,
``sdk_get_image_info_h2`` and ``sdk_engine_wait_h2``. The loopback emulator speaks cleartext
HTTP/2 (h2c) by prior knowledge, so both clients are made with ``http1=False, http2=True``; over
TLS, ``AkoolSession(http2=True)`` gets the same protocol through ALPN when the server offers it.
``sdk_to_bare`` compares each SDK variant with the bare loop of its own protocol, and
``http2_to_http1`` each HTTP/2 variant with its HTTP/1.1 twin.

The jobs read are never finished (the emulator runs slow), so every answer has the same shape.
The variants are interleaved (the order rotates each round) and repeated; medians are reported,
since a shared 2-core machine is noisy.

Part 2, jobs in flight: ``session.generate_many`` of 10,000 prompts at once (all created, then all
waited on), in a fresh child process per backend so that ``ru_maxrss`` starts clean. Reports the
peak RSS growth over a warmed-up baseline and the event loop's lag: a task that sleeps 10 ms over
and over, and records how late it wakes.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pathlib
import platform
import queue
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import version
from types import TracebackType
from typing import Any, Final, Self

import anyio
import httpx

import akool_async as ak

INFO_PATH: Final = "/api/open/v3/content/image/infobymodelid"
SUCCESS: Final = 1000
MIB: Final = 1024 * 1024
LAG_INTERVAL: Final = 0.010
RSS_EVERY: Final = 10  # sample RSS every 10th lag tick: every 100 ms
DRAIN: Final = 0.25
TARGET_RATIO: Final = 1.25
TARGET_RSS_MIB: Final = 64.0
TARGET_LAG_P99_MS: Final = 50.0
# The emulator's default grid at time scale 1: ~4 s queued, ~40 s rendering, ~2 s to quadrants.
GRID_SECONDS: Final = 46.0
# What `AkoolSession` gives its own client; the bare loop gets the same.
POOL_LIMITS: Final = httpx.Limits(max_connections=20, max_keepalive_connections=20)
CLIENT_TIMEOUT: Final = httpx.Timeout(30.0, connect=10.0)
# Times the bare loop sends a read again after a connection the server closed under it.
RESENDS: Final = 3
# The variants' name suffix for each protocol part 1 can measure.
PROTOCOLS: Final = {"http1.1": "", "http2": "_h2"}
# Keeps the engine saturated: every job is due again about 0.1 s after each look.
SATURATING_POLICY: Final = ak.PollPolicy(
    expected_duration=0.2, target_lag=0.1, min_interval=0.05, max_interval=0.1
)


def note(message: str) -> None:
    sys.stderr.write(f"[overhead] {message}\n")
    sys.stderr.flush()


# -- process measurements ------------------------------------------------------------------------


def current_rss() -> int:
    """This process's resident set size now, in bytes (Linux); else its peak so far."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:  # noqa: PTH123 - hot path
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss()


def peak_rss() -> int:
    """This process's peak resident set size so far, in bytes (``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of another process, from /proc; None where there is none."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:  # noqa: PTH123
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile by nearest rank."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))
    return ordered[index]


# -- the emulator, in its own process ------------------------------------------------------------


def _announced(lines: queue.Queue[str | None], process: subprocess.Popen[str]) -> dict[str, str]:
    """The ``AKOOL_*=...`` lines the emulator prints once it listens."""
    found: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while not {"AKOOL_BASE_URL", "AKOOL_API_KEY"} <= found.keys():
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise RuntimeError("the emulator printed no URL within 60 s") from None
        if line is None:
            raise RuntimeError(f"the emulator exited early ({process.wait()})")
        name, sep, value = line.strip().partition("=")
        if sep and name.startswith("AKOOL_"):
            found[name] = value
    return found


class Emulator:
    """``python -m akool_async.testing`` in a subprocess; URL and key read from what it prints."""

    def __init__(self, *, time_scale: float, seed: int, credit: float | None = None) -> None:
        self.time_scale = time_scale
        options = ["--port", "0", "--seed", str(seed), "--time-scale", repr(time_scale)]
        if credit is not None:
            options += ["--credit", repr(credit)]
        self._command = [sys.executable, "-m", "akool_async.testing", *options]
        self.description = " ".join(["python -m akool_async.testing", *options])
        self._process: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.api_key = ""

    @property
    def pid(self) -> int:
        assert self._process is not None  # noqa: S101 - only used while running
        return self._process.pid

    def cpu(self) -> float | None:
        return process_cpu(self.pid)

    def __enter__(self) -> Self:
        process = subprocess.Popen(self._command, stdout=subprocess.PIPE, text=True)  # noqa: S603
        self._process = process
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:  # keeps the pipe drained for as long as the emulator runs
            stdout = process.stdout
            if stdout is not None:
                for line in stdout:
                    lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        try:
            found = _announced(lines, process)
        except BaseException:
            self.close()
            raise
        self.base_url, self.api_key = found["AKOOL_BASE_URL"], found["AKOOL_API_KEY"]
        note(f"emulator pid {process.pid} at {self.base_url}, time scale {self.time_scale:g}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # SIGTERM: the emulator stops cleanly
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- part 1: client CPU per request --------------------------------------------------------------


@dataclass
class Run:
    cpu: float
    requests: int
    wall: float
    server_cpu: float | None
    errors: int = 0

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu / self.requests


class Meter:
    """Client CPU, wall time and the emulator's CPU between `start` and `stop`."""

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator
        self._cpu = self._wall = 0.0
        self._server: float | None = None

    def start(self) -> None:
        self._server = self._emulator.cpu()
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def stop(self, requests: int, *, errors: int = 0, idle: float = 0.0) -> Run:
        cpu = time.process_time() - self._cpu
        wall = time.perf_counter() - self._wall - idle
        server_now = self._emulator.cpu()
        server = (
            server_now - self._server
            if server_now is not None and self._server is not None
            else None
        )
        return Run(cpu, requests, wall, server, errors)


async def run_workers(count: int, work: Callable[[int], Awaitable[object]], k: int) -> None:
    """Call ``work(i)`` for i in range(count), at most ``k`` at once."""
    position = 0

    async def worker() -> None:
        nonlocal position
        while position < count:
            index = position
            position += 1
            await work(index)

    async with anyio.create_task_group() as task_group:
        for _ in range(min(k, count)):
            task_group.start_soon(worker)


def new_session(emulator: Emulator, k: int, policy: ak.PollPolicy | None = None) -> ak.AkoolSession:
    return ak.AkoolSession(
        api_key=emulator.api_key,
        base_url=emulator.base_url,
        max_concurrent_requests=k,
        poll_policy=policy,
    )


def h2_client(**kwargs: Any) -> httpx.AsyncClient:
    """An HTTP/2-only client (h2c by prior knowledge) with the session's limits and timeouts."""
    return httpx.AsyncClient(
        http1=False, http2=True, limits=POOL_LIMITS, timeout=CLIENT_TIMEOUT, **kwargs
    )


@asynccontextmanager
async def open_session(
    emulator: Emulator, k: int, policy: ak.PollPolicy | None = None, *, http2: bool = False
) -> AsyncIterator[ak.AkoolSession]:
    """A session over HTTP/1.1 (its own client), or over one HTTP/2 connection."""
    if not http2:
        async with new_session(emulator, k, policy) as session:
            yield session
        return
    async with (
        h2_client() as client,
        ak.AkoolSession(
            api_key=emulator.api_key,
            base_url=emulator.base_url,
            http_client=client,
            timeout=CLIENT_TIMEOUT,
            max_concurrent_requests=k,
            poll_policy=policy,
        ) as session,
    ):
        yield session


async def create_jobs(session: ak.AkoolSession, count: int, k: int) -> list[ak.ImageJob]:
    jobs: list[ak.ImageJob] = []

    async def one(index: int) -> None:
        jobs.append(await session.generate(f"overhead benchmark, job {index}"))

    await run_workers(count, one, k)
    return jobs


async def bare_httpx(
    emulator: Emulator, ids: Sequence[str], n: int, k: int, *, http2: bool = False
) -> Run:
    headers = {"x-api-key": emulator.api_key}
    errors = 0
    client = (
        h2_client(base_url=emulator.base_url)
        if http2
        else httpx.AsyncClient(
            base_url=emulator.base_url, limits=POOL_LIMITS, timeout=CLIENT_TIMEOUT
        )
    )
    async with client:

        async def read(index: int) -> None:
            nonlocal errors
            params = {"image_model_id": ids[index % len(ids)]}
            for _ in range(RESENDS + 1):
                try:
                    response = await client.get(INFO_PATH, params=params, headers=headers)
                except httpx.RemoteProtocolError:
                    # The server's GOAWAY after its per-connection request limit (hypercorn's
                    # keep_alive_max_requests, 1000) fails the streams in flight: send again,
                    # as the SDK does with a read.
                    errors += 1
                    continue
                if response.status_code != httpx.codes.OK or response.json().get("code") != SUCCESS:
                    errors += 1
                return

        await run_workers(k, read, k)  # not measured: opens the K connections
        errors = 0
        meter = Meter(emulator)
        meter.start()
        await run_workers(n, read, k)
        return meter.stop(n, errors=errors)


async def sdk_get_image_info(
    emulator: Emulator, ids: Sequence[str], n: int, k: int, *, http2: bool = False
) -> Run:
    async with open_session(emulator, k, http2=http2) as session:

        async def read(index: int) -> None:
            await session.get_image_info(ids[index % len(ids)])

        await run_workers(k, read, k)  # not measured: opens the K connections
        meter = Meter(emulator)
        meter.start()
        await run_workers(n, read, k)
        return meter.stop(n)


async def sdk_engine_wait(
    emulator: Emulator, jobs: int, n: int, k: int, *, http2: bool = False
) -> Run:
    async with open_session(emulator, k, SATURATING_POLICY, http2=http2) as session:
        # Not measured: the creates (which also open the K connections); only the polls are.
        handles = await create_jobs(session, jobs, k)
        start = session.status_requests
        meter = Meter(emulator)
        meter.start()
        async with anyio.create_task_group() as task_group:
            for handle in handles:
                task_group.start_soon(handle.wait)
            while session.status_requests - start < n:  # noqa: ASYNC110 - a cheap 10 ms watch
                await anyio.sleep(0.01)
            task_group.cancel_scope.cancel()
        # Nobody waits now, so nothing new is polled: let the polls in flight finish, then count.
        await anyio.sleep(DRAIN)
        return meter.stop(session.status_requests - start, idle=DRAIN)


def summarize(runs: Sequence[Run]) -> dict[str, Any]:
    per_request = [run.cpu_ms_per_request for run in runs]
    rates = [run.requests / run.wall for run in runs]
    server = [1000 * run.server_cpu / run.requests for run in runs if run.server_cpu is not None]
    return {
        "client_cpu_ms_per_request": {
            "median": round(statistics.median(per_request), 4),
            "min": round(min(per_request), 4),
            "max": round(max(per_request), 4),
            "runs": [round(value, 4) for value in per_request],
        },
        "requests_per_run": [run.requests for run in runs],
        "requests_per_second_median": round(statistics.median(rates), 1),
        "emulator_cpu_ms_per_request_median": (
            round(statistics.median(server), 4) if server else None
        ),
        "errors": sum(run.errors for run in runs),
    }


async def cpu_suite(emulator: Emulator, options: argparse.Namespace) -> dict[str, Any]:
    n, k, repeats = options.requests, options.concurrency, options.repeats
    async with new_session(emulator, k) as setup:
        ids = [job.id for job in await create_jobs(setup, options.read_ids, k)]
    variants: dict[str, Callable[[int], Awaitable[Run]]] = {}
    suffixes = [PROTOCOLS[protocol] for protocol in protocols(options)]
    for suffix in suffixes:
        http2 = suffix == PROTOCOLS["http2"]
        variants |= {
            f"bare_httpx{suffix}": partial(bare_httpx, emulator, ids, k=k, http2=http2),
            f"sdk_get_image_info{suffix}": partial(
                sdk_get_image_info, emulator, ids, k=k, http2=http2
            ),
            f"sdk_engine_wait{suffix}": partial(
                sdk_engine_wait, emulator, options.engine_jobs, k=k, http2=http2
            ),
        }
    names = list(variants)
    for name in names:  # warm-up: imports, lazily built converters, first connections
        await variants[name](min(n, 200))
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for repeat in range(repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            gc.collect()
            run = await variants[name](n)
            runs[name].append(run)
            note(
                f"cpu round {repeat + 1}/{repeats} {name}: {run.cpu_ms_per_request:.3f} ms CPU per"
                f" request, {run.requests / run.wall:.0f} req/s"
            )
    results = {name: summarize(runs[name]) for name in names}
    ratios: dict[str, Any] = {}
    for suffix in suffixes:
        for sdk in ("sdk_get_image_info", "sdk_engine_wait"):
            ratio = compare(runs[f"{sdk}{suffix}"], runs[f"bare_httpx{suffix}"])
            if not suffix:  # the target is the default protocol's; HTTP/2 is reported beside it
                ratio |= {"target": TARGET_RATIO, "met": ratio["ratio_of_medians"] <= TARGET_RATIO}
            ratios[f"{sdk}{suffix}"] = ratio
    http2_to_http1 = {
        name: compare(runs[f"{name}_h2"], runs[name])
        for name in ("bare_httpx", "sdk_get_image_info", "sdk_engine_wait")
        if f"{name}_h2" in runs and name in runs
    }
    return {
        "backend": options.cpu_backend,
        "requests_per_run": n,
        "max_in_flight": k,
        "repeats": repeats,
        "status_ids_read": options.read_ids,
        "engine_jobs_waited": options.engine_jobs,
        "engine_poll_policy": {
            "expected_duration": SATURATING_POLICY.expected_duration,
            "target_lag": SATURATING_POLICY.target_lag,
            "min_interval": SATURATING_POLICY.min_interval,
            "max_interval": SATURATING_POLICY.max_interval,
        },
        "emulator": emulator.description,
        "method": {
            "bare_httpx": "K workers on an httpx.AsyncClient with the session's pool limits and"
            " timeouts: GET infobymodelid with x-api-key, JSON decoded, code checked",
            "sdk_get_image_info": "K workers awaiting session.get_image_info",
            "sdk_engine_wait": "engine_jobs jobs created (not measured), then job.wait() on all"
            " of them until the engine has sent N status reads; counted once those in flight end",
            "order": "variants interleaved, the order rotated each round; K connections opened"
            " before each measured run",
            "http2": "the *_h2 variants: the same over one HTTP/2 connection (h2c by prior"
            " knowledge: http1=False and http2=True on the client)",
        },
        "variants": results,
        "sdk_to_bare": ratios,
        "http2_to_http1": http2_to_http1,
    }


def compare(runs: Sequence[Run], baseline: Sequence[Run]) -> dict[str, Any]:
    """CPU per request of ``runs`` over ``baseline``'s: the ratio of medians, and per round."""
    paired = [
        run.cpu_ms_per_request / base.cpu_ms_per_request
        for run, base in zip(runs, baseline, strict=True)
    ]
    ratio = statistics.median(run.cpu_ms_per_request for run in runs) / statistics.median(
        base.cpu_ms_per_request for base in baseline
    )
    return {
        "ratio_of_medians": round(ratio, 3),
        "median_of_paired_ratios": round(statistics.median(paired), 3),
        "paired_ratios": [round(value, 3) for value in paired],
    }


def protocols(options: argparse.Namespace) -> list[str]:
    """The protocols asked for, in the order given; a clear error for an unknown one."""
    asked = [name.strip() for name in options.protocols.split(",") if name.strip()]
    unknown = sorted(set(asked) - PROTOCOLS.keys())
    if unknown or not asked:
        raise SystemExit(f"--protocols takes {', '.join(PROTOCOLS)} (got {options.protocols!r})")
    return asked


# -- part 2: many jobs in flight (runs in a child process) -----------------------------------------


@dataclass
class Watch:
    """Loop lag and RSS samples, and jobs in flight as the session's events tell them."""

    started: float = field(default_factory=time.perf_counter)
    lags: list[tuple[float, float]] = field(default_factory=list[tuple[float, float]])
    rss: list[int] = field(default_factory=list[int])
    created: int = 0
    ended: int = 0
    peak_in_flight: int = 0
    all_created_at: float | None = None
    target: int = 0

    def on_event(self, event: ak.JobEvent) -> None:
        if event.kind == "created":
            self.created += 1
            self.peak_in_flight = max(self.peak_in_flight, self.created - self.ended)
            if self.created == self.target:
                self.all_created_at = time.perf_counter() - self.started
        elif event.kind in {"completed", "failed"}:
            self.ended += 1

    async def monitor(self, stop: anyio.Event) -> None:
        tick = 0
        while not stop.is_set():
            before = time.perf_counter()
            await anyio.sleep(LAG_INTERVAL)
            after = time.perf_counter()
            self.lags.append((after - self.started, after - before - LAG_INTERVAL))
            tick += 1
            if tick % RSS_EVERY == 0:
                self.rss.append(current_rss())


def lag_summary(samples: Sequence[float]) -> dict[str, Any]:
    if not samples:
        return {"samples": 0}
    millis = [1000 * value for value in samples]
    return {
        "samples": len(millis),
        "p50_ms": round(quantile(millis, 0.50), 2),
        "p90_ms": round(quantile(millis, 0.90), 2),
        "p99_ms": round(quantile(millis, 0.99), 2),
        "max_ms": round(max(millis), 2),
        "over_50ms": sum(1 for value in millis if value > TARGET_LAG_P99_MS),
    }


def worst_lags(lags: Sequence[tuple[float, float]], count: int = 5) -> list[dict[str, float]]:
    worst = sorted(lags, key=lambda sample: sample[1], reverse=True)[:count]
    return [{"at_s": round(at, 2), "lag_ms": round(1000 * lag, 1)} for at, lag in worst]


async def inflight_child(spec: dict[str, Any]) -> dict[str, Any]:
    jobs: int = spec["jobs"]
    policy = ak.PollPolicy(
        expected_duration=spec["expected_duration"], target_lag=spec["target_lag"]
    )
    watch = Watch(target=jobs)
    async with ak.AkoolSession(
        api_key=spec["api_key"],
        base_url=spec["base_url"],
        poll_policy=policy,
        on_event=watch.on_event,
    ) as session:
        # Warm up (imports, converters, connections), then take the baseline.
        warm = await session.create_by_prompt("overhead benchmark, warm-up")
        for _ in range(20):
            await session.get_image_info(warm.id)
        watch.created = watch.ended = 0
        gc.collect()
        rss_before, maxrss_before = current_rss(), peak_rss()
        prompts = [f"overhead benchmark, in flight {index}" for index in range(jobs)]
        stop = anyio.Event()
        watch.started = time.perf_counter()
        cpu_before = time.process_time()
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(watch.monitor, stop)
            with anyio.fail_after(spec["deadline"]):
                results = await session.generate_many(prompts, concurrency=jobs)
            stop.set()
        wall = time.perf_counter() - watch.started
        cpu = time.process_time() - cpu_before
        maxrss_after = peak_rss()
        rss_after = current_rss()
        status_requests = session.status_requests
    # ru_maxrss is the peak of the whole process: it is the run's peak only if the run raised it.
    sampled_peak = max([*watch.rss, rss_after])
    rss_peak = maxrss_after if maxrss_after > maxrss_before else sampled_peak
    completed = sum(1 for result in results if isinstance(result, ak.ImageInfo))
    errors: dict[str, int] = {}
    for result in results:
        if not isinstance(result, ak.ImageInfo):
            errors[type(result).__name__] = errors.get(type(result).__name__, 0) + 1
    split = watch.all_created_at if watch.all_created_at is not None else wall
    lags = [lag for _, lag in watch.lags]
    growth = (rss_peak - rss_before) / MIB
    lag = lag_summary(lags)
    requests = jobs + status_requests
    return {
        "backend": spec["backend"],
        "jobs": jobs,
        "completed": completed,
        "errors": errors,
        "peak_jobs_in_flight": watch.peak_in_flight,
        "wall_seconds": round(wall, 2),
        "all_created_after_seconds": round(split, 2),
        "create_requests": jobs,
        "status_requests": status_requests,
        "status_requests_per_job": round(status_requests / jobs, 2),
        "client_cpu_seconds": round(cpu, 2),
        "client_cpu_ms_per_request": round(1000 * cpu / requests, 4),
        "rss_baseline_mib": round(rss_before / MIB, 1),
        "rss_peak_growth_mib": round(growth, 1),
        "rss_sampled_peak_growth_mib": round((sampled_peak - rss_before) / MIB, 1),
        "rss_end_growth_mib": round((rss_after - rss_before) / MIB, 1),
        "rss_peak_growth_per_job_kib": round(growth * 1024 / jobs, 2),
        "maxrss_raised_by_run": maxrss_after > maxrss_before,
        "loop_lag": lag,
        "loop_lag_while_creating": lag_summary([v for t, v in watch.lags if t <= split]),
        "loop_lag_while_polling": lag_summary([v for t, v in watch.lags if t > split]),
        "loop_lag_worst": worst_lags(watch.lags),
        "poll_policy": {
            "expected_duration": policy.expected_duration,
            "target_lag": policy.target_lag,
        },
        "targets": {
            "rss_growth_mib": TARGET_RSS_MIB,
            "rss_met": growth <= TARGET_RSS_MIB,
            "loop_lag_p99_ms": TARGET_LAG_P99_MS,
            "loop_lag_met": lag.get("p99_ms", 0.0) <= TARGET_LAG_P99_MS,
        },
    }


def run_inflight(emulator: Emulator, backend: str, options: argparse.Namespace) -> dict[str, Any]:
    spec = {
        "backend": backend,
        "base_url": emulator.base_url,
        "api_key": emulator.api_key,
        "jobs": options.jobs,
        "expected_duration": GRID_SECONDS * options.inflight_time_scale,
        "target_lag": options.inflight_target_lag,
        "deadline": options.inflight_deadline,
    }
    command = [sys.executable, __file__, "--child", json.dumps(spec)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)  # noqa: S603
    result: dict[str, Any] = json.loads(done.stdout)
    result["emulator"] = emulator.description
    return result


# -- the command ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/overhead.py",
        description="Client CPU per request against bare httpx, and 10,000 jobs in flight.",
    )
    cpu = parser.add_argument_group("part 1: client CPU per request")
    cpu.add_argument(
        "--requests", type=int, default=1500, help="status reads per run (%(default)s)"
    )
    cpu.add_argument("--concurrency", type=int, default=16, help="K in flight (%(default)s)")
    cpu.add_argument("--repeats", type=int, default=5, help="interleaved rounds (%(default)s)")
    cpu.add_argument("--read-ids", type=int, default=64, help="jobs the reads cycle over")
    cpu.add_argument("--engine-jobs", type=int, default=256, help="jobs the engine polls")
    cpu.add_argument("--cpu-backend", choices=["asyncio", "trio"], default="asyncio")
    cpu.add_argument(
        "--protocols",
        default="http1.1,http2",
        help="comma-separated: http1.1 (a pool of 20), http2 (one connection) (%(default)s)",
    )
    cpu.add_argument(
        "--cpu-time-scale",
        type=float,
        default=100.0,
        help="emulator time scale for part 1: slow, so no job finishes (%(default)s)",
    )
    many = parser.add_argument_group("part 2: jobs in flight")
    many.add_argument("--jobs", type=int, default=10_000, help="jobs in flight (%(default)s)")
    many.add_argument(
        "--backends", default="asyncio,trio", help="comma-separated, each its own child process"
    )
    many.add_argument(
        "--inflight-time-scale",
        type=float,
        default=0.5,
        help="emulator time scale: 0.5 makes a grid take ~23 s (%(default)s)",
    )
    many.add_argument(
        "--inflight-target-lag", type=float, default=2.5, help="PollPolicy.target_lag"
    )
    many.add_argument("--inflight-deadline", type=float, default=600.0, help="seconds at most")
    parser.add_argument("--seed", type=int, default=1, help="emulator seed (%(default)s)")
    parser.add_argument("--skip-cpu", action="store_true", help="run part 2 only")
    parser.add_argument("--skip-inflight", action="store_true", help="run part 1 only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def source_state() -> dict[str, Any]:
    """The commit measured, and whether the package had uncommitted changes."""
    root = pathlib.Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "akool_async"],  # noqa: S607
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None}
    return {"commit": commit, "uncommitted": sorted(line[3:] for line in changed if line)}


def environment() -> dict[str, Any]:
    return {
        "source": source_state(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "akool_async": ak.__version__,
        "httpx": version("httpx"),
        "httpcore": version("httpcore"),
        "anyio": version("anyio"),
        "hypercorn": version("hypercorn"),
        "emulator": "python -m akool_async.testing, its own process, loopback HTTP/1.1 and"
        " cleartext HTTP/2 (hypercorn)",
        "h2": version("h2"),
        "client_cpu": "time.process_time() of the client process only",
        "rss": "/proc/self/statm sampled every 100 ms, and getrusage ru_maxrss; no psutil",
    }


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    if options.child is not None:
        spec = json.loads(options.child)
        result = anyio.run(inflight_child, spec, backend=spec["backend"])
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    started = time.perf_counter()
    report: dict[str, Any] = {"benchmark": "overhead", "environment": environment()}
    if not options.skip_cpu:
        note("part 1: client CPU per status request")
        # Each engine variant creates its jobs anew in every round and in the warm-up.
        engine_runs = (options.repeats + 1) * len(protocols(options))
        jobs = options.read_ids + options.engine_jobs * engine_runs
        with Emulator(
            time_scale=options.cpu_time_scale, seed=options.seed, credit=2.0 * jobs + 200
        ) as emulator:
            report["cpu_per_request"] = anyio.run(
                cpu_suite, emulator, options, backend=options.cpu_backend
            )
    if not options.skip_inflight:
        report["jobs_in_flight"] = []
        for backend in [name.strip() for name in options.backends.split(",") if name.strip()]:
            note(f"part 2: {options.jobs} jobs in flight on {backend}")
            credit = 2.0 * (options.jobs + 100)  # a create costs 2 credits
            with Emulator(
                time_scale=options.inflight_time_scale, seed=options.seed, credit=credit
            ) as emulator:
                result = run_inflight(emulator, backend, options)
            report["jobs_in_flight"].append(result)
            note(
                f"{backend}: RSS +{result['rss_peak_growth_mib']} MiB, loop lag p99 "
                f"{result['loop_lag'].get('p99_ms')} ms, {result['wall_seconds']} s"
            )
    met: dict[str, bool] = {}
    if "cpu_per_request" in report:
        for name, ratio in report["cpu_per_request"]["sdk_to_bare"].items():
            if "met" in ratio:
                met[f"cpu_ratio_{name}"] = ratio["met"]
    for result in report.get("jobs_in_flight", []):
        met[f"rss_{result['backend']}"] = result["targets"]["rss_met"]
        met[f"loop_lag_{result['backend']}"] = result["targets"]["loop_lag_met"]
    report["targets_met"] = met
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
