"""AkoolSession(http2=True): HTTP/2 for the session's own client, its options checked up front."""

from __future__ import annotations

import importlib.util
from typing import Any

import httpx
import pytest

import akool_async as ak
from akool_async.testing import AkoolEmulator


def test_http2_goes_with_the_sessions_own_client_only() -> None:
    """A passed client keeps its own protocol setting: http2=True beside it is refused."""
    client = httpx.AsyncClient()

    with pytest.raises(ak.InvalidInput) as caught:
        ak.AkoolSession(api_key="k", http_client=client, http2=True)

    assert "httpx.AsyncClient(http2=True)" in str(caught.value)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_http2_must_be_a_bool(value: Any) -> None:
    with pytest.raises(ak.InvalidInput) as caught:
        ak.AkoolSession(api_key="k", http2=value)

    assert f"http2 must be True or False (got {value!r})" == str(caught.value)


def test_http2_without_h2_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without h2, an AkoolError that is also an ImportError says what to install, up front."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "h2" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)

    with pytest.raises(ak.AkoolError) as caught:
        ak.AkoolSession(api_key="k", http2=True)

    error = caught.value
    assert (ak.MissingDependency, True, "h2") == (
        type(error),
        isinstance(error, ImportError),
        error.name,
    )
    assert (
        "http2=True needs the h2 package, which is not installed: install the package's http2 "
        "extra (pip install '.[http2]' from a checkout) or h2 itself (pip install h2); or leave "
        "http2 off"
    ) == str(error)


@pytest.mark.real_time  # real sockets need real time
@pytest.mark.anyio
async def test_an_http2_session_works_against_a_server_over_plain_http() -> None:
    """Over http:// httpx negotiates nothing and speaks HTTP/1.1: the session works the same."""
    emulator = AkoolEmulator(api_key="k", time_scale=0.01, seed=2)
    policy = ak.PollPolicy(expected_duration=0.46, target_lag=0.1, min_interval=0.1)
    async with (
        emulator.serve() as url,
        ak.AkoolSession(api_key="k", base_url=url, http2=True, poll_policy=policy) as session,
    ):
        info = await (await session.generate("a fox over h2")).wait(timeout=30)

    assert info.is_result_ready
