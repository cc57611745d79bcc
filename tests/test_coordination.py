"""`RedisCoordinator` against a real ``redis-server``: callbacks that reach another worker, a
request budget every worker shares, forged bus messages, and a Redis that is not there.

Several sessions in one process stand for the workers here (each with its own coordinator, so
its own Redis connections); tests/test_workers.py runs them as separate processes.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest

import akool_async as ak
from akool_async._errors import CoordinationUnavailable
from akool_async._models import ImageStatus
from akool_async.coordination import RedisCoordinator
from akool_async.coordination._redis import _encode
from akool_async.testing import (
    TEST_API_KEY,
    TEST_CLIENT_ID,
    TEST_CLIENT_SECRET,
    AkoolEmulator,
)
from conftest import FIXED_TIMINGS
from redis_server import RedisServer, collect_coredis_leftovers, free_port, require_redis_server

pytestmark = [
    pytest.mark.real_time,
    # coredis leaves a failed connection's streams to the garbage collector (see
    # `collect_coredis_leftovers`); only those warnings are let through here.
    pytest.mark.filterwarnings(r"ignore:Unclosed <MemoryObject:ResourceWarning"),
]

HOOK = "http://sdk.test/akool/webhook/"
FAST = 0.01  # a grid in 0.46 s


def session(
    coordinator: RedisCoordinator | None, http: httpx.AsyncClient, **kwargs: Any
) -> ak.AkoolSession:
    """A worker's session on the in-process emulator, with webhooks and the coordinator."""
    return ak.AkoolSession(
        api_key=TEST_API_KEY,
        client_id=TEST_CLIENT_ID,
        client_secret=TEST_CLIENT_SECRET,
        http_client=http,
        webhook_public_url=HOOK,
        coordinator=coordinator,
        **kwargs,
    )


@contextlib.asynccontextmanager
async def callbacks_to(
    emulator: AkoolEmulator, app: ak.webhooks.WebhookReceiver
) -> AsyncIterator[None]:
    """Every callback of the emulator goes to ``app`` (one worker's receiver)."""
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://sdk.test") as hooks,
        emulator.running(webhook_client=hooks),
    ):
        yield


async def until(condition: Callable[[], bool], *, within: float) -> None:
    """Wait, in real time, until ``condition()`` holds; fail after ``within`` seconds."""
    with anyio.fail_after(within):
        while True:
            if condition():
                return
            await anyio.sleep(0.02)


# -- arguments -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"url": "localhost:6379"}, "url must start with redis://, rediss:// or unix://"),
        ({"url": "http://localhost:6379"}, "url must start with redis://"),
        ({"url": "redis://local host"}, "url must be a Redis URL"),
        ({"url": ""}, "url must be a Redis URL"),
        ({"url": "redis://:pw@127.0.0.1:notaport/0"}, "url's port must be a number from 1"),
        ({"url": "redis://host/zero"}, r"url's database must be a number, as in /0"),
        ({"url": "redis://host/0?db=zero"}, "url's db must be a number"),
        ({"prefix": ""}, "prefix must be 1 to 100 printable characters"),
        ({"prefix": "a\nb"}, "prefix must be 1 to 100 printable characters"),
        ({"prefix": "x" * 101}, "prefix must be 1 to 100 printable characters"),
        ({"timeout": 0}, r"timeout must be seconds in \(0, 60\]"),
        ({"timeout": float("nan")}, r"timeout must be seconds in \(0, 60\]"),
        ({"timeout": True}, r"timeout must be seconds in \(0, 60\]"),
        ({"timeout": 61}, r"timeout must be seconds in \(0, 60\]"),
    ],
)
def test_bad_arguments_are_refused_before_anything_connects(
    kwargs: dict[str, Any], says: str
) -> None:
    with pytest.raises(ak.InvalidInput, match=says):
        RedisCoordinator(**kwargs)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:hunter2-secret@redis.internal:6380/2", "redis://redis.internal:6380/2"),
        ("redis://redis.internal/0?password=hunter2-secret", "redis://redis.internal/0"),
        ("unix://:hunter2-secret@/run/redis.sock", "unix:///run/redis.sock"),
        ("rediss://redis.internal", "rediss://redis.internal"),
    ],
)
def test_the_repr_shows_where_redis_is_without_the_password(url: str, shown: str) -> None:
    """No user info and no query (coredis takes a password from either) in the repr, nor in
    the warnings, which name Redis the same way."""
    coordinator = RedisCoordinator(url)

    assert "hunter2" not in repr(coordinator)
    assert repr(coordinator) == f"<RedisCoordinator {shown!r} prefix='akool-async' not connected>"


def test_the_session_refuses_what_is_not_a_coordinator() -> None:
    with pytest.raises(
        ak.InvalidInput, match=r"coordinator must be a coordinator such as .*\(got str\)"
    ):
        ak.AkoolSession(api_key="k", coordinator="redis://localhost:6379/0")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_one_coordinator_serves_one_open_session(redis_server: RedisServer) -> None:
    coordinator = RedisCoordinator(redis_server.url)
    emulator = AkoolEmulator(timings=FIXED_TIMINGS, time_scale=FAST)
    async with emulator.client() as http, session(coordinator, http):
        with pytest.raises(ak.SessionStateError, match="already in use by an open session"):
            async with session(coordinator, http):
                pass  # pragma: no cover - refused on entry
    async with emulator.client() as http, session(coordinator, http):
        pass  # free again once the first session closed


# -- callbacks across workers --------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_callback_that_reaches_another_worker_resolves_the_wait(
    redis_server: RedisServer,
) -> None:
    """Worker A creates; Akool's callbacks all reach worker B. A's waits resolve on them:
    no missed push, one status read per job (the read a callback asks for)."""
    emulator = AkoolEmulator(timings=FIXED_TIMINGS, time_scale=FAST)
    mine, theirs = RedisCoordinator(redis_server.url), RedisCoordinator(redis_server.url)
    async with (
        emulator.client() as http,
        session(mine, http) as a,
        session(theirs, http) as b,
        callbacks_to(emulator, b.webhook_app),
    ):
        jobs = [await a.generate(f"a fox {number}") for number in range(3)]
        with anyio.fail_after(30):
            results = [await job.wait() for job in jobs]
        stats, received = a.stats, b.webhook_app.accepted

    assert all(result.is_result_ready for result in results)
    assert (3, 6, 0, True) == (
        stats.webhook_jobs,
        stats.pushes,
        stats.missed_pushes,
        stats.push_healthy,
    )
    assert 6 == received  # processing and completed, for each of the three jobs
    assert (6, 0) == (theirs.published, mine.rejected)
    assert mine.delivered == 6
    reads = emulator.requests_per_endpoint()["infobymodelid"]
    assert reads <= 4  # one read per job after its callback; at most one safety net


@pytest.mark.anyio
async def test_forged_and_malformed_messages_on_the_channel_are_dropped(
    redis_server: RedisServer,
) -> None:
    """Anyone who can write to Redis can publish; only messages tagged with the account's key
    count, and even those only make the session read the job sooner."""
    emulator = AkoolEmulator(timings=FIXED_TIMINGS, time_scale=FAST)
    coordinator = RedisCoordinator(redis_server.url)
    async with emulator.client() as http, session(coordinator, http) as worker:
        job = await worker.generate("a fox")
        channel = coordinator._channel
        forged = _encode(b"another key", job.id, ImageStatus.COMPLETED)
        assert coordinator._key is not None
        bad_id = _encode(coordinator._key, "../../etc/passwd", ImageStatus.COMPLETED)
        bad_status = f"{job.id} 9 {'0' * 64}"
        for message in (forged, bad_id, bad_status, "x" * 500, "not three words"):
            assert b":1" == redis_server.command("PUBLISH", channel, message)
        await until(lambda: coordinator.rejected >= 5, within=5)
        pushes = worker.stats.pushes

    assert (5, 0, 0) == (coordinator.rejected, coordinator.delivered, pushes)


# -- Redis is not always there -------------------------------------------------------------------


@pytest.mark.anyio
async def test_without_redis_a_session_goes_on_alone_and_comes_back_when_it_can(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing listens where Redis should be: the session opens, its jobs finish (its own
    callbacks still reach it), one warning says so; Redis started later is used again."""
    caplog.set_level(logging.WARNING, logger="akool_async.coordination")
    server = RedisServer(require_redis_server(), free_port())
    emulator = AkoolEmulator(timings=FIXED_TIMINGS, time_scale=FAST)
    coordinator = RedisCoordinator(server.url, timeout=0.5)
    try:
        async with emulator.client() as http, session(coordinator, http) as worker:
            async with callbacks_to(emulator, worker.webhook_app):
                job = await worker.generate("a fox alone")
                with anyio.fail_after(30):
                    result = await job.wait()
            alone = (coordinator.available(), coordinator.outages)
            server.start()
            await until(coordinator.available, within=10)
    finally:
        server.kill()
        collect_coredis_leftovers()

    assert result.is_result_ready
    assert (False, 1) == alone
    warnings = [record.getMessage() for record in caplog.records]
    assert 2 == len(warnings)
    assert warnings[0].startswith(f"Redis at 'redis://127.0.0.1:{server.port}/0' cannot be reached")
    assert "this process goes on alone" in warnings[0]
    assert warnings[1].startswith(
        f"Redis at 'redis://127.0.0.1:{server.port}/0' can be reached again"
    )


# -- one request budget --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_told_limit_is_the_accounts_for_every_worker(redis_server: RedisServer) -> None:
    """Two workers, each told 4 requests/s: together they send no more than 4 in any second."""
    emulator = AkoolEmulator(timings=FIXED_TIMINGS, time_scale=FAST)
    async with (
        emulator.client() as http,
        session(RedisCoordinator(redis_server.url), http, requests_per_second=4) as a,
        session(RedisCoordinator(redis_server.url), http, requests_per_second=4) as b,
        anyio.create_task_group() as group,
    ):
        for worker in (a, b):
            for _ in range(6):
                group.start_soon(worker.get_credit)

    times = sorted(request.at for request in emulator.requests if request.endpoint == "quota")
    assert 12 == len(times)
    # One pace for both (3.88/s: 2.8 s for 12), not one each (1.4 s).
    assert times[-1] - times[0] >= 11 / (4 * 0.97) - 0.05
    # Turns start 1 / 3.88 s apart; a loaded machine can delay one request's arrival past
    # the next one's slot, so a second may show one more than the pace itself ever starts.
    busiest = max(sum(1 for other in times if start <= other < start + 1.0) for start in times)
    assert busiest <= 5


@pytest.mark.anyio
async def test_a_cluster_of_429s_seen_anywhere_paces_every_worker(
    redis_server: RedisServer,
) -> None:
    """The shared budget's rules, straight through its scripts: answers and refusals from two
    workers add up to a cluster; both then wait out the pause and go on at 95 % of what the
    server accepted."""
    workers = [RedisCoordinator(redis_server.url), RedisCoordinator(redis_server.url)]
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(
                worker.running(account="test account", secret=None, deliver=lambda *_: False)
            )
        first, second = workers
        free = await first.take(told=None, longest=60.0)
        assert (0.0, False, None) == (free.wait, free.paused, free.rate)
        clustered = []
        for worker in (first, second, first):
            worker.answered()  # an answer, then the refusal's own
            worker.answered()
            clustered.append(await worker.refused(told=None, pause=0.5))
        paused = await second.take(told=None, longest=60.0)
        await anyio.sleep(paused.wait)
        paced = await first.take(told=None, longest=60.0)

    # 6 answered, 3 of them refused (a cluster: at least 3, more than a sporadic 5 % gives)
    # since the budget was first used, well under a second ago: 3 accepted in (at least) 1 s,
    # a limit of 3/s, paced at 95 % of it.
    assert [False, False, True] == clustered
    assert paused.paused
    assert 0.4 < paused.wait <= 0.5
    assert paced.rate == pytest.approx(3 * 0.95, rel=1e-3)
    assert not paced.paused


@pytest.mark.anyio
async def test_redis_killed_under_an_open_session_is_survived_and_rejoined(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis dies: the budget's next call says it is unavailable (the pace then goes on alone),
    callbacks for other workers are not handed on; once it is back on the same port, the
    coordinator reconnects, resubscribes and shares again. One warning each way."""
    caplog.set_level(logging.WARNING, logger="akool_async.coordination")
    emulator = AkoolEmulator(timings=FIXED_TIMINGS, time_scale=FAST)
    mine, theirs = RedisCoordinator(redis_server.url), RedisCoordinator(redis_server.url)
    async with (
        emulator.client() as http,
        session(mine, http) as a,
        session(theirs, http) as b,
    ):
        redis_server.kill()
        with pytest.raises(CoordinationUnavailable, match="Redis did not answer"):
            await mine.take(told=None, longest=60.0)
        gone = (mine.available(), mine.outages)
        gone_again = r"Redis did not answer|not connected to Redis|connection to Redis was lost"
        with pytest.raises(CoordinationUnavailable, match=gone_again):
            await theirs.take(told=None, longest=60.0)
        await until(lambda: theirs.outages == 1, within=10)
        job = await a.generate("a fox while Redis is away")
        redis_server.start()
        await until(lambda: mine.available() and theirs.available(), within=40)
        async with callbacks_to(emulator, b.webhook_app):
            with anyio.fail_after(60):
                result = await job.wait()
        stats = a.stats

    assert (False, 1) == gone
    assert result.is_result_ready
    assert stats.pushes >= 1  # the completion came over the bus, once Redis was back
    messages = [record.getMessage() for record in caplog.records]
    assert 2 == sum("cannot be reached" in message for message in messages)  # one each
    assert 2 == sum("can be reached again after" in message for message in messages)


@pytest.mark.anyio
async def test_a_budget_state_written_by_someone_else_repairs_itself(
    redis_server: RedisServer,
) -> None:
    """Values in the shared state that are not finite numbers are their defaults, and a queue
    or a pause written further ahead than the worker's longest pause is dropped: the state
    cannot hold a session for longer than its own `max_retry_after`."""
    coordinator = RedisCoordinator(redis_server.url)
    async with coordinator.running(account="poisoned", secret=None, deliver=lambda *_: False):
        state = coordinator._state
        soon = str(round(time.time() * 1000) + 290_000)  # Redis' clock is this machine's
        poison = ("limit", "nan", "since", "x", "tat", soon)
        assert b":3" == redis_server.command("HSET", state, *poison)
        queued = await coordinator.take(told=5, longest=60.0)
        assert b":1" == redis_server.command("HSET", state, "paused_until", soon)
        unpaused = await coordinator.take(told=5, longest=60.0)
        kept = redis_server.command("HEXISTS", state, "paused_until")
        assert b":1" == redis_server.command("HSET", state, "paused_until", soon)
        long_paused = await coordinator.take(told=5, longest=600.0)

    assert (0.0, False) == (queued.wait, queued.paused)
    assert queued.rate == pytest.approx(5 * 0.97)
    assert not unpaused.paused
    assert unpaused.wait < 1.0  # the next turn of the told pace, not 290 s
    assert b":0" == kept  # the pause beyond 60 s was dropped from the state
    assert long_paused.paused  # a worker that honours 10 minutes honours it
    assert 280.0 < long_paused.wait <= 290.0


@pytest.mark.anyio
async def test_a_redis_that_hangs_then_answers_is_said_to_be_back(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stops answering (SIGSTOP) without dropping the connection: a call gives up after
    the coordinator's timeout, with one warning; once it answers again, the next call that
    goes through says so (the connection was never lost, so no reconnect would)."""
    caplog.set_level(logging.WARNING, logger="akool_async.coordination")
    assert redis_server.process is not None
    coordinator = RedisCoordinator(redis_server.url, timeout=0.5)
    async with coordinator.running(account="hang", secret=None, deliver=lambda *_: False):
        redis_server.process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        try:
            with pytest.raises(CoordinationUnavailable, match="Redis did not answer"):
                await coordinator.take(told=None, longest=60.0)
            gave_up = time.monotonic() - started
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
        await until(coordinator.available, within=5)
        back = await coordinator.take(told=None, longest=60.0)

    assert gave_up < 1.5
    assert (0.0, 1) == (back.wait, coordinator.outages)
    messages = [record.getMessage() for record in caplog.records]
    assert 1 == sum("cannot be reached (" in message for message in messages)  # a timeout
    assert 1 == sum("can be reached again after" in message for message in messages)
