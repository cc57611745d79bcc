"""Session lifetimes: closed in any order, misuse refused with a clear AkoolError."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

import akool_async as ak
from akool_async.testing import AkoolEmulator
from conftest import CLIENT_ID, CLIENT_SECRET, FIXED_TIMINGS

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def emulated() -> AsyncIterator[tuple[AkoolEmulator, ak.AkoolSession, ak.AkoolSession]]:
    """An in-process emulator, and two sessions on it that the test opens and closes itself."""
    emulator = AkoolEmulator(api_key="k", timings=FIXED_TIMINGS, seed=4)
    async with emulator.client() as http:
        first = ak.AkoolSession(api_key="k", http_client=http)
        second = ak.AkoolSession(api_key="k", http_client=http)
        yield emulator, first, second


async def test_two_sessions_closed_out_of_order_both_work() -> None:
    """Opened A then B, closed A first: A's wait ends, B goes on, both close cleanly."""
    ended: list[type[BaseException]] = []
    async with emulated() as (emulator, first, second), anyio.create_task_group() as waits:
        await first.__aenter__()
        await second.__aenter__()
        stopped = await first.generate("a fox left behind")

        async def wait_on_first() -> None:
            try:
                await stopped.wait()
            except ak.SessionClosed as error:
                ended.append(type(error))

        waits.start_soon(wait_on_first)
        await anyio.sleep(10)
        await first.__aexit__(None, None, None)  # out of order: B is still open
        reads_after_close = emulator.requests_per_endpoint()["infobymodelid"]
        info = await (await second.generate("a fox still wanted")).wait()
        await second.__aexit__(None, None, None)

    assert [ak.SessionClosed] == ended
    assert info.is_result_ready
    reads = [r for r in emulator.requests if r.endpoint == "infobymodelid"]
    assert reads_after_close == sum(r.query["image_model_id"] == stopped.id for r in reads)
    with pytest.raises(ak.SessionClosed, match="closed"):
        await first.get_credit()


async def test_three_sessions_closed_middle_first_then_outer_then_inner() -> None:
    """B (the middle) closed first, then A (the outer), then C: every order works."""
    emulator = AkoolEmulator(api_key="k", timings=FIXED_TIMINGS, seed=5)
    async with emulator.client() as http:
        sessions = [ak.AkoolSession(api_key="k", http_client=http) for _ in range(3)]
        for session in sessions:
            await session.__aenter__()
        outer, middle, inner = sessions
        await middle.__aexit__(None, None, None)
        await outer.__aexit__(None, None, None)
        credit = await inner.get_credit()
        await inner.__aexit__(None, None, None)

    assert 10_000 == credit
    assert ["closed"] * 3 == [repr(session).split()[1] for session in sessions]


async def test_a_session_closed_from_another_task_says_why() -> None:
    """Closing from a task other than the opener's is refused with SessionStateError, and
    changes nothing: the session works on, and closes from its own task."""
    async with emulated() as (_, session, _unused):
        await session.__aenter__()
        refused: list[ak.SessionStateError] = []

        async def close_elsewhere() -> None:
            try:
                await session.__aexit__(None, None, None)
            except ak.SessionStateError as error:
                refused.append(error)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(close_elsewhere)
        credit = await session.get_credit()
        await session.__aexit__(None, None, None)
        with pytest.raises(ak.SessionClosed):
            await session.get_credit()

    [error] = refused
    assert isinstance(error, ak.AkoolError)
    assert "must be closed by the task that opened it" in str(error)
    assert 10_000 == credit


async def test_lifecycle_misuse_raises_akool_errors() -> None:
    """Before opening, entering twice, after closing, reopening: each a clear AkoolError."""
    async with emulated() as (_, session, _unused):
        with pytest.raises(ak.SessionStateError, match="not open: use `async with"):
            await session.get_credit()
        async with session:
            with pytest.raises(ak.SessionStateError, match="already open"):
                await session.__aenter__()
            assert 10_000 == await session.get_credit()
        with pytest.raises(ak.SessionClosed, match="closed; make a new one"):
            await session.get_credit()
        with pytest.raises(ak.SessionClosed, match="cannot be reopened"):
            await session.__aenter__()

    assert issubclass(ak.SessionClosed, ak.SessionStateError)
    assert issubclass(ak.SessionStateError, ak.AkoolError)
    assert issubclass(ak.SessionStateError, RuntimeError)


async def test_stats_before_during_and_after() -> None:
    """stats is readable at every stage: zeros before, counts during, the last counts after."""
    async with emulated() as (_, session, _unused):
        before = session.stats
        async with session:
            await (await session.generate("a fox")).wait()
            during = session.stats
        after = session.stats

    assert ak.SessionStats() == before
    assert (1, 0, True) == (during.jobs_tracked, during.webhook_jobs, during.push_healthy)
    assert during.status_requests >= 1
    assert during == after


@pytest.mark.real_time  # real sockets need real time
async def test_listening_sessions_closed_out_of_order_stop_their_servers() -> None:
    """A session listening for callbacks, closed before one opened after it, stops serving."""
    credentials = {"api_key": "k", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    first = ak.AkoolSession(**credentials, webhook_listen=("127.0.0.1", 0))
    second = ak.AkoolSession(**credentials, webhook_listen=("127.0.0.1", 0))
    await first.__aenter__()
    await second.__aenter__()
    first_url, second_url = first.listening_url, second.listening_url
    await first.__aexit__(None, None, None)
    assert first_url is not None
    assert second_url is not None
    with pytest.raises(OSError):  # refused, whatever errno the system picks
        await anyio.connect_tcp("127.0.0.1", httpx.URL(first_url).port or 0)
    async with await anyio.connect_tcp("127.0.0.1", httpx.URL(second_url).port or 0):
        pass
    await second.__aexit__(None, None, None)
