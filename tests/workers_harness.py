"""Several worker processes of one app, one Akool account: the harness of issue 14's evidence.

The parent (`run_fleet`) serves an `AkoolEmulator` on a loopback port, and a tiny proxy that
hands each webhook callback to a *random* worker over loopback (as a load balancer in front of
``uvicorn --workers N`` would; the emulator reaches the proxy in-process). It then starts N
child processes, each running `worker_main`
(``python tests/workers_harness.py worker '<json>'``): its own `AkoolSession` with its own
webhook receiver (``webhook_listen=("127.0.0.1", 0)``, ``webhook_public_url`` the proxy) and,
when asked, ``coordinator=RedisCoordinator(redis_url)``. Each worker creates its share of the
jobs, waits on every one, and prints one JSON line: what its session did (status reads,
callbacks taken in and missed, throttles) and what its coordinator counted.

The emulator's own records are the judge: `FleetResult` counts creates per prompt (a prompt
created twice is a double charge), requests per endpoint, and the 429s after the first one.
The workers alternate between asyncio and trio, so one run covers both backends.

Used by ``tests/test_workers.py`` and ``benchmarks/workers.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc
import anyio.to_thread
import httpx
from anyio.streams.buffered import BufferedByteReceiveStream

import akool_async as ak
from akool_async._asgi import Receive, Scope, Send, answer_lifespan
from akool_async.testing import (
    TEST_API_KEY,
    TEST_CLIENT_ID,
    TEST_CLIENT_SECRET,
    AkoolEmulator,
    Faults,
)

if TYPE_CHECKING:
    from redis_server import RedisServer

__all__ = ["FleetPlan", "FleetResult", "RandomProxy", "WorkerSpec", "run_fleet", "worker_main"]

HARNESS: Final = Path(__file__).resolve()
THROTTLED: Final = 429
RETRY_AFTER: Final = 1.0
"""The ``Retry-After`` the emulator sends with its first 429s (it rounds up to whole seconds)."""
INFO: Final = "infobymodelid"
CREATE: Final = "createbyprompt"
GRID_SECONDS: Final = 46.0
"""A grid's median duration at Akool (queue, render, quadrants): the poll policy's scale."""
_LINE_MOST: Final = 1 << 22
_SAMPLE_EVERY: Final = 0.05
_QUIET_MOST: Final = 10.0
"""Seconds to wait, once every job is done, for callbacks still on their way."""


# -- one worker (a child process) --------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker process does; passed to it as JSON.

    Attributes:
        index: The worker's number (0, 1, ...).
        base_url: The served emulator.
        prompts: The prompts this worker creates, one job each.
        backend: ``asyncio`` or ``trio``.
        time_scale: The emulator's; the poll policy is scaled by it too.
        webhook_url: The proxy's URL Akool posts callbacks to; None: no webhooks (polling).
        redis_url: Share callbacks and the budget through this Redis; None: alone.
        spread: Seconds over which the creates are spread evenly (0: all at once).
        max_concurrent_requests: The session's limit of requests in flight.
        redis_timeout: The coordinator's ``timeout``.
    """

    index: int
    base_url: str
    prompts: tuple[str, ...]
    backend: str = "asyncio"
    time_scale: float = 0.02
    webhook_url: str | None = None
    redis_url: str | None = None
    spread: float = 0.0
    max_concurrent_requests: int = 64
    redis_timeout: float = 1.0


def scaled_policy(time_scale: float) -> ak.PollPolicy:
    """The default poll policy with every duration scaled as the emulator's jobs are."""
    return ak.PollPolicy(
        expected_duration=GRID_SECONDS * time_scale,
        target_lag=2.75 * time_scale,
        min_interval=0.25 * time_scale,
        max_interval=60.0 * time_scale,
        quadrant_timeout=60.0 * time_scale,
    )


def _say(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


def _coordinator_counts(coordinator: Any) -> dict[str, int] | None:
    if coordinator is None:
        return None
    names = ("published", "delivered", "rejected", "outages")
    return {name: int(getattr(coordinator, name)) for name in names}


@dataclass
class _Tally:
    """What a worker's jobs came to: outcome per prompt, jobs per read count, and when each
    job's wait returned (``time.monotonic()``, by job id)."""

    outcomes: dict[str, str] = field(default_factory=dict)
    reads: Counter[int] = field(default_factory=Counter)
    resolved: dict[str, float] = field(default_factory=dict)


async def _one_job(session: ak.AkoolSession, prompt: str, start_at: float, tally: _Tally) -> None:
    outcomes, reads, resolved = tally.outcomes, tally.reads, tally.resolved
    await anyio.sleep(max(0.0, start_at - time.monotonic()))
    try:
        job = await session.generate(prompt)
        info = await job.wait()
    except ak.AkoolError as error:
        outcomes[prompt] = f"error {type(error).__name__}: {error}"
        return
    if not info.is_result_ready:
        outcomes[prompt] = f"status {info.status.name}"
        return
    resolved[job.id] = time.monotonic()
    engine = session._engine
    tracker = engine._trackers.get(job.id) if engine is not None else None
    # Whether the completed callback (this worker's own, or another's through Redis) was in
    # before the wait ended: the wait then resolved on it, not on a safety-net read.
    pushed = tracker is not None and tracker.pushed is ak.ImageStatus.COMPLETED
    outcomes[prompt] = "completed" if pushed else "completed by polling"
    if tracker is not None:
        reads[tracker.polls] += 1


async def _sample(coordinator: Any, samples: list[list[float]]) -> None:
    """Every 50 ms: [monotonic time, published, delivered, outages, available]."""
    while True:
        samples.append(
            [
                time.monotonic(),
                coordinator.published,
                coordinator.delivered,
                coordinator.outages,
                int(coordinator.available()),
            ]
        )
        await anyio.sleep(_SAMPLE_EVERY)


async def _run_worker(spec: WorkerSpec) -> dict[str, Any]:
    coordinator: Any = None
    if spec.redis_url is not None:
        from akool_async.coordination import RedisCoordinator  # noqa: PLC0415 - optional

        coordinator = RedisCoordinator(spec.redis_url, timeout=spec.redis_timeout)
    session = ak.AkoolSession(
        base_url=spec.base_url,
        api_key=TEST_API_KEY,
        client_id=TEST_CLIENT_ID,
        client_secret=TEST_CLIENT_SECRET,
        poll_policy=scaled_policy(spec.time_scale),
        max_concurrent_requests=spec.max_concurrent_requests,
        webhook_listen=("127.0.0.1", 0) if spec.webhook_url is not None else None,
        webhook_public_url=spec.webhook_url,
        coordinator=coordinator,
    )
    tally = _Tally()
    outcomes, reads, resolved = tally.outcomes, tally.reads, tally.resolved
    samples: list[list[float]] = []
    async with session:
        _say({"listening": session.listening_url})
        await anyio.to_thread.run_sync(sys.stdin.readline)  # "go"
        started = time.monotonic()
        count = len(spec.prompts)
        async with anyio.create_task_group() as outer:
            if coordinator is not None:
                outer.start_soon(_sample, coordinator, samples)
            async with anyio.create_task_group() as jobs:
                for number, prompt in enumerate(spec.prompts):
                    at = started + spec.spread * number / max(1, count)
                    jobs.start_soon(_one_job, session, prompt, at, tally)
            finished = time.monotonic()
            # A web worker stays up: it still takes in callbacks for the others' jobs.
            _say({"done": True})
            await anyio.to_thread.run_sync(sys.stdin.readline)  # "stop"
            outer.cancel_scope.cancel()
        wire = session._wire
        throttles = wire.pace.throttles if wire is not None else 0
    stats = session.stats
    return {
        "worker": spec.index,
        "backend": spec.backend,
        "jobs": count,
        "completed": sum(1 for outcome in outcomes.values() if outcome.startswith("completed")),
        "on_callback": sum(1 for outcome in outcomes.values() if outcome == "completed"),
        "failures": sorted(o for o in outcomes.values() if not o.startswith("completed")),
        "seconds": finished - started,
        "started_at": started,
        "status_requests": stats.status_requests,
        "webhook_jobs": stats.webhook_jobs,
        "pushes": stats.pushes,
        "missed_pushes": stats.missed_pushes,
        "push_healthy": stats.push_healthy,
        "throttles": throttles,
        "jobs_by_reads": {str(polls): jobs for polls, jobs in sorted(reads.items())},
        "coordinator": _coordinator_counts(coordinator),
        "resolved": resolved,
        "samples": samples,
    }


def worker_main(argv: Sequence[str]) -> int:
    """The child process: ``worker '<WorkerSpec as JSON>'``; prints its report as JSON."""
    parser = argparse.ArgumentParser(prog="workers_harness.py")
    parser.add_argument("role", choices=["worker"])
    parser.add_argument("spec", help="the WorkerSpec as JSON")
    options = parser.parse_args(argv)
    fields = json.loads(options.spec)
    fields["prompts"] = tuple(fields["prompts"])
    spec = WorkerSpec(**fields)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    report = anyio.run(_run_worker, spec, backend=spec.backend)
    _say({"report": report})
    return 0


# -- the proxy in front of the workers ------------------------------------------------------------


class RandomProxy:
    """An ASGI app in front of the workers: each POST goes to a random one.

    Each worker's webhook URL is ``<proxy>/lane<index>/``. With ``own``, a callback goes to
    the worker of its lane (the one that created the job) instead: N single-process apps side
    by side, the baseline measured under the same load.

    With ``relay``, the proxy forwards each callback and relays the worker's answer, as a
    load balancer does. Without it (the default), it answers 200 at once and forwards in the
    background: the emulator sends a URL's callbacks one at a time, so with relaying, a
    worker slowed down by a loaded machine would hold up every callback behind it and the
    figures would measure the machine, not the SDK. Forwards that fail are counted either way.

    Attributes:
        targets: The workers' listening URLs; set before any callback arrives.
        forwarded: Callbacks forwarded and answered 200, per target index.
        failed: Forwards that failed (no answer, or not 200), by ``"<index> <reason>"``.
        retried: Forwards sent again after the connection broke under them.
        seconds: How long each forward took.
    """

    def __init__(self, seed: int, *, relay: bool = False, own: bool = False) -> None:
        self.targets: list[str] = []
        self.forwarded: Counter[int] = Counter()
        self.failed: Counter[str] = Counter()
        self.seconds: list[float] = []
        self.under_way = 0
        self.retried = 0
        self._relay = relay
        self._own = own
        self._rng = random.Random(seed)
        self._client: httpx.AsyncClient | None = None
        self._group: anyio.abc.TaskGroup | None = None

    @asynccontextmanager
    async def forwarding(self) -> AsyncIterator[None]:
        """Forward callbacks while the block runs; at its end, let those under way finish."""
        # Idle connections are dropped well before the workers' servers drop them (after 5 s):
        # a forward on a connection the server is closing fails, and would not be sent again.
        limits = httpx.Limits(keepalive_expiry=1.0)
        async with (
            httpx.AsyncClient(timeout=10.0, limits=limits) as client,
            anyio.create_task_group() as group,
        ):
            self._client, self._group = client, group
            try:
                yield
            finally:
                self._group = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        status, content = 200, b"{}"
        lane = str(scope["path"]).strip("/").removeprefix("lane")
        index = int(lane) if self._own and lane.isdigit() else None
        if self._relay:
            status, content = await self._forward(body, index)
        elif self._group is not None:
            self._group.start_soon(self._forward, body, index)
        else:
            status, content = 503, b'{"error":"not forwarding"}'
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": content})

    async def _forward(self, body: bytes, index: int | None) -> tuple[int, bytes]:
        client = self._client
        if client is None or not self.targets:
            self.failed["no worker"] += 1
            return 503, b'{"error":"no worker"}'
        if index is None or index >= len(self.targets):
            index = self._rng.randrange(len(self.targets))
        headers = {"content-type": "application/json"}
        started = time.monotonic()
        self.under_way += 1
        try:
            answer = await self._post(client, self.targets[index], body, headers)
        except httpx.HTTPError as error:
            self.failed[f"{index} {type(error).__name__}"] += 1
            return 502, b'{"error":"worker did not answer"}'
        finally:
            self.under_way -= 1
        self.seconds.append(time.monotonic() - started)
        if answer.status_code != HTTPStatus.OK:  # pragma: no cover - a failure shows in tests
            self.failed[f"{index} HTTP {answer.status_code}"] += 1
        else:
            self.forwarded[index] += 1
        return answer.status_code, answer.content

    async def _post(
        self, client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]
    ) -> httpx.Response:
        """POST once more when the connection broke under the first try, as proxies do; a
        callback seen twice is one the receiver must take in once anyway."""
        try:
            return await client.post(url, content=body, headers=headers)
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError):
            self.retried += 1
            return await client.post(url, content=body, headers=headers)


# -- the fleet (the parent process) ---------------------------------------------------------------


@dataclass(frozen=True)
class FleetPlan:
    """One run: N workers sharing an emulator (and maybe Redis).

    Attributes:
        workers: How many worker processes.
        jobs_per_worker: Jobs each worker creates.
        time_scale: The emulator's time scale (0.02: a grid takes about 0.9 s).
        webhooks: Callbacks through the random proxy; False: polling only.
        redis_url: Every worker shares this Redis; None: each works alone.
        rate_limit: Requests per second the emulator accepts (429 above it); None: no limit.
        spread: Seconds over which each worker spreads its creates.
        max_concurrent_requests: Each session's limit of requests in flight.
        redis_timeout: Each coordinator's ``timeout`` (1 s, its default).
        relay: The proxy relays each worker's answer (see `RandomProxy`).
        own_callbacks: Each callback goes to the worker that created the job, not a random
            one (N single-process apps side by side; see `RandomProxy`).
        seed: The emulator's and the proxy's seed.
        tag: Part of every prompt, so that runs never share one.
        deadline: Seconds the whole run may take before it is cancelled.
    """

    workers: int
    jobs_per_worker: int
    time_scale: float = 0.02
    webhooks: bool = True
    redis_url: str | None = None
    rate_limit: float | None = None
    spread: float = 0.0
    max_concurrent_requests: int = 64
    redis_timeout: float = 1.0
    relay: bool = False
    own_callbacks: bool = False
    seed: int = 0
    tag: str = "run"
    deadline: float = 120.0

    def prompts(self, worker: int) -> tuple[str, ...]:
        """The prompts worker ``worker`` creates; every prompt of a run is different."""
        return tuple(
            f"{self.tag} worker {worker} job {number:04d}: a lighthouse at dusk"
            for number in range(self.jobs_per_worker)
        )


@dataclass
class FleetResult:
    """What the workers reported and what the emulator saw.

    Attributes:
        plan: The run's plan.
        reports: Each worker's report (see `_run_worker`), by worker index.
        stderr: Each worker's stderr (its log).
        creates_per_prompt: The emulator's creates per prompt of the run.
        requests: Each request the emulator answered: (arrival time, endpoint, HTTP status).
        go_at: ``time.monotonic()`` when the workers were told to start.
        forwarded: Callbacks the proxy forwarded (answered 200), per worker.
        proxy_failed: Forwards that failed, by worker and reason.
        forward_seconds: How long each forward took.
        proxy_retried: Forwards sent again after the connection broke under them.
        deliveries: Callback deliveries the emulator attempted, and how many were answered 200.
        callbacks: Callbacks answered 200, per worker whose job they were about.
        callback_lags: Seconds from each job's end to its end's callback reaching the proxy.
        wait_lags: Seconds from each job's result being complete at the emulator to its
            ``wait()`` returning in its worker (one clock: ``time.monotonic``).
    """

    plan: FleetPlan
    reports: list[dict[str, Any]] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    creates_per_prompt: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[float, str, int]] = field(default_factory=list)
    go_at: float = 0.0
    forwarded: list[int] = field(default_factory=list)
    proxy_failed: dict[str, int] = field(default_factory=dict)
    forward_seconds: list[float] = field(default_factory=list)
    proxy_retried: int = 0
    deliveries: dict[str, int] = field(default_factory=dict)
    callbacks: list[int] = field(default_factory=list)
    callback_lags: list[float] = field(default_factory=list)
    wait_lags: list[float] = field(default_factory=list)

    @property
    def jobs(self) -> int:
        return self.plan.workers * self.plan.jobs_per_worker

    @property
    def completed(self) -> int:
        return sum(int(report["completed"]) for report in self.reports)

    @property
    def duplicates(self) -> int:
        """Prompts created more than once (the extra creates, counted)."""
        return sum(count - 1 for count in self.creates_per_prompt.values() if count > 1)

    @property
    def never_created(self) -> int:
        prompts = {p for worker in range(self.plan.workers) for p in self.plan.prompts(worker)}
        return len(prompts - set(self.creates_per_prompt))

    def endpoint_count(self, endpoint: str, *, status: int | None = None) -> int:
        return sum(
            1
            for _, name, code in self.requests
            if name == endpoint and (status is None or code == status)
        )

    @property
    def status_reads_per_job(self) -> float:
        """Status reads the emulator answered (429s included) per job."""
        return self.endpoint_count(INFO) / self.jobs

    def total(self, name: str) -> int:
        """A figure summed over the workers' reports (e.g. ``pushes``)."""
        return sum(int(report[name]) for report in self.reports)

    def coordinator_total(self, name: str) -> int:
        return sum(
            int(report["coordinator"][name])
            for report in self.reports
            if report["coordinator"] is not None
        )

    def throttled_after(self, settle: float = 0.0) -> tuple[int, int]:
        """(429s, requests) among the requests that arrived after the first 429 (and
        ``settle`` seconds more); (0, 0) when there was none."""
        first = next((at for at, _, code in self.requests if code == THROTTLED), None)
        if first is None:
            return 0, 0
        later = [code for at, _, code in self.requests if at > first + settle]
        return sum(1 for code in later if code == THROTTLED), len(later)

    def accepted_per_second(self, settle: float = RETRY_AFTER) -> float:
        """Requests accepted per second from ``settle`` seconds after the first 429 to the
        last create accepted: how much of a limit the pace used once it knew of it, while
        creates were still queued (so there was always a request waiting)."""
        first = next((at for at, _, code in self.requests if code == THROTTLED), None)
        creates = [at for at, name, code in self.requests if name == CREATE and code != THROTTLED]
        if first is None or not creates:
            return math.nan
        start, end = first + settle, creates[-1]
        accepted = sum(1 for at, _, code in self.requests if at > start and code != THROTTLED)
        return accepted / (end - start) if end > start else math.nan

    def summary(self) -> dict[str, Any]:
        """The run's figures, for a benchmark's JSON or a test's failure message."""
        throttled, after = self.throttled_after()
        settled, after_settled = self.throttled_after(RETRY_AFTER)
        seconds = max((float(report["seconds"]) for report in self.reports), default=math.nan)
        figures: dict[str, Any] = {
            "workers": self.plan.workers,
            "jobs": self.jobs,
            "completed": self.completed,
            "on_callback": self.total("on_callback"),
            "duplicates": self.duplicates,
            "never_created": self.never_created,
            "status_reads_per_job": self.status_reads_per_job,
            "requests": len(self.requests),
            "throttled": self.endpoint_count(CREATE, status=THROTTLED)
            + self.endpoint_count(INFO, status=THROTTLED),
            "throttled_after_first": throttled,
            "requests_after_first": after,
            "throttled_after_retry_after": settled,
            "requests_after_retry_after": after_settled,
            "pushes": self.total("pushes"),
            "callbacks": sum(self.callbacks),
            "proxy_failed": sum(self.proxy_failed.values()),
            "proxy_retried": self.proxy_retried,
            "wait_lag_p50": _quantile(self.wait_lags, 0.5),
            "wait_lag_p95": _quantile(self.wait_lags, 0.95),
            "callback_lag_p50": _quantile(self.callback_lags, 0.5),
            "callback_lag_max": max(self.callback_lags, default=math.nan),
            "forward_seconds_p50": _quantile(self.forward_seconds, 0.5),
            "forward_seconds_max": max(self.forward_seconds, default=math.nan),
            "seconds": seconds,
        }
        if self.plan.redis_url is not None:
            for name in ("published", "delivered", "rejected", "outages"):
                figures[name] = self.coordinator_total(name)
        return figures


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def _read_line(stream: BufferedByteReceiveStream) -> dict[str, Any]:
    line = await stream.receive_until(b"\n", _LINE_MOST)
    document: dict[str, Any] = json.loads(line)
    return document


async def _drain(stream: anyio.abc.ByteReceiveStream | None, into: list[bytes]) -> None:
    if stream is None:
        return
    into.extend([chunk async for chunk in stream])


async def _start_worker(
    stack: AsyncExitStack, spec: WorkerSpec
) -> tuple[anyio.abc.Process, BufferedByteReceiveStream]:
    """Start one worker; returns it and its stdout, read up to its listening line."""
    process = await stack.enter_async_context(
        await anyio.open_process(
            [sys.executable, str(HARNESS), "worker", json.dumps(asdict(spec))],
            stdin=-1,
            stdout=-1,
            stderr=-1,
        )
    )
    assert process.stdout is not None
    return process, BufferedByteReceiveStream(process.stdout)


async def _next_line(
    stdout: BufferedByteReceiveStream, index: int, errors: list[list[bytes]]
) -> dict[str, Any]:
    """The worker's next JSON line; if it died instead, an error with its log."""
    try:
        return await _read_line(stdout)
    except (anyio.EndOfStream, anyio.IncompleteRead):
        await anyio.sleep(0.5)  # its last words, from stderr
        log = b"".join(errors[index]).decode(errors="replace")
        raise RuntimeError(f"worker {index} ended early; its log:\n{log[-4000:]}") from None


async def _run_workers(
    specs: list[WorkerSpec],
    proxy: RandomProxy,
    result: FleetResult,
    during: Callable[[float], Awaitable[None]] | None,
    quiet: Callable[[], Awaitable[None]],
) -> None:
    async with AsyncExitStack() as stack:
        started = [await _start_worker(stack, spec) for spec in specs]
        errors: list[list[bytes]] = [[] for _ in specs]
        outputs: list[list[bytes]] = [[] for _ in specs]
        async with anyio.create_task_group() as group:
            for (process, _), into in zip(started, errors, strict=True):
                group.start_soon(_drain, process.stderr, into)
            listening = [
                (await _next_line(stdout, index, errors))["listening"]
                for index, (_, stdout) in enumerate(started)
            ]
            proxy.targets = [url for url in listening if url is not None]
            result.go_at = time.monotonic()
            for process, _ in started:
                assert process.stdin is not None
                await process.stdin.send(b"go\n")
            if during is not None:
                group.start_soon(during, result.go_at)
            for index, (_, stdout) in enumerate(started):
                await _next_line(stdout, index, errors)  # done
            await quiet()
            for process, _ in started:
                assert process.stdin is not None
                await process.stdin.send(b"stop\n")
            for (_, stdout), into in zip(started, outputs, strict=True):
                group.start_soon(_drain, stdout, into)
            for process, _ in started:
                await process.wait()
        result.stderr = [b"".join(chunks).decode(errors="replace") for chunks in errors]
        for index, chunks in enumerate(outputs):
            lines = [line for line in b"".join(chunks).splitlines() if line.strip()]
            if not lines or b'"report"' not in lines[-1]:
                raise RuntimeError(f"worker {index} gave no report:\n{result.stderr[index]}")
            result.reports.append(json.loads(lines[-1])["report"])


def _gather(result: FleetResult, emulator: AkoolEmulator, proxy: RandomProxy) -> None:
    """Fill in what the emulator and the proxy saw."""
    plan = result.plan
    result.creates_per_prompt = {
        prompt: len(ids) for prompt, ids in emulator.accounting().creates.items()
    }
    result.requests = [
        (request.at, request.endpoint, request.status_code) for request in emulator.requests
    ]
    result.forwarded = [proxy.forwarded[index] for index in range(plan.workers)]
    result.proxy_failed = dict(proxy.failed)
    result.forward_seconds = proxy.seconds
    result.proxy_retried = proxy.retried
    attempts = emulator.webhooks.attempts
    result.deliveries = {
        "attempts": len(attempts),
        "ok": sum(1 for attempt in attempts if attempt.ok),
    }
    worker_of = {
        job_id: int(prompt.split(" worker ", 1)[1].split(" ", 1)[0])
        for prompt, ids in emulator.accounting().creates.items()
        for job_id in ids
    }
    result.callbacks = [0] * plan.workers
    for attempt in attempts:
        if attempt.ok:
            result.callbacks[worker_of[attempt.job_id]] += 1
    result.wait_lags = [
        at - emulator.jobs[job_id].complete_at
        for report in result.reports
        for job_id, at in report["resolved"].items()
    ]
    result.callback_lags = [
        attempt.at - emulator.jobs[attempt.job_id].finished_at
        for attempt in attempts
        if attempt.attempt == 1 and attempt.status != int(ak.ImageStatus.PROCESSING)
    ]


async def run_fleet(
    plan: FleetPlan, *, during: Callable[[float], Awaitable[None]] | None = None
) -> FleetResult:
    """Run ``plan``: serve the emulator and the proxy, run the workers, gather the figures.

    Args:
        plan: What to run.
        during: Started alongside the workers with ``time.monotonic()`` at their start (e.g.
            to kill Redis mid-run).
    """
    emulator = AkoolEmulator(
        time_scale=plan.time_scale,
        seed=plan.seed,
        faults=Faults(rate_limit=plan.rate_limit),
        overdraft=True,
    )
    proxy = RandomProxy(plan.seed, relay=plan.relay, own=plan.own_callbacks)

    async def quiet() -> None:
        """Until the emulator has sent every callback due and the proxy forwarded them."""
        with anyio.move_on_after(_QUIET_MOST):
            while emulator.webhooks.pending or proxy.under_way:  # noqa: ASYNC110 - two sources
                await anyio.sleep(0.05)

    result = FleetResult(plan)
    # The emulator reaches the proxy in-process (it stands for Akool's side of the internet);
    # the proxy reaches the workers over loopback sockets. One process serving the emulator's
    # API, its callbacks and the proxy over sockets too fell behind on this 2-core machine.
    proxy_url = "http://load-balancer.test"
    with anyio.fail_after(plan.deadline):
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=proxy), timeout=10.0) as hooks,
            emulator.serve(webhook_client=hooks) as base_url,
            proxy.forwarding(),
        ):
            specs = [
                WorkerSpec(
                    index=index,
                    base_url=base_url,
                    prompts=plan.prompts(index),
                    backend=("asyncio", "trio")[index % 2],
                    time_scale=plan.time_scale,
                    # One URL per worker: the emulator sends callbacks to one URL one at a
                    # time, so N workers get N lanes, as one worker gets one.
                    webhook_url=f"{proxy_url}/lane{index}/" if plan.webhooks else None,
                    redis_url=plan.redis_url,
                    spread=plan.spread,
                    max_concurrent_requests=plan.max_concurrent_requests,
                    redis_timeout=plan.redis_timeout,
                )
                for index in range(plan.workers)
            ]
            await _run_workers(specs, proxy, result, during, quiet)
    _gather(result, emulator, proxy)
    return result


def redis_outage(
    server: RedisServer, marks: dict[str, float], *, after: float = 1.5, down: float = 2.0
) -> Callable[[float], Awaitable[None]]:
    """A ``during`` for `run_fleet`: ``kill -9`` Redis ``after`` seconds into the run and start
    it again on the same port ``down`` seconds later; the moments go into ``marks``."""

    async def outage(go_at: float) -> None:
        await anyio.sleep(max(0.0, go_at + after - time.monotonic()))
        server.kill()
        marks["killed"] = time.monotonic()
        await anyio.sleep(down)
        await anyio.to_thread.run_sync(server.start)
        marks["restarted"] = time.monotonic()

    return outage


def run_side_by_side(plans: Mapping[str, FleetPlan]) -> dict[str, FleetResult]:
    """Run several fleets at the same time (each with its own emulator), as a comparison on a
    shared, noisy machine must; returns each one's result by name."""
    results: dict[str, FleetResult] = {}

    async def one(name: str, plan: FleetPlan) -> None:
        results[name] = await run_fleet(plan)

    async def every() -> None:
        async with anyio.create_task_group() as group:
            for name, plan in plans.items():
                group.start_soon(one, name, plan)

    anyio.run(every, backend="asyncio")
    return results


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
