"""The emulator's webhook callbacks, opened with an independent copy of Akool's algorithm."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import httpx
import pytest

import akool_async as ak
from akool_async._serve import serve_asgi
from akool_async.testing import AkoolEmulator, DeliveryPolicy, Duration, EmulatorTimings
from akool_reference import ref_decrypt, ref_signature

pytestmark = pytest.mark.anyio

CLIENT_ID = "akool-webhook-client-id"
CLIENT_SECRET = "webhook-secret-24-bytes!"
TIMINGS = EmulatorTimings(
    grid_queue=Duration(4.0, 0.0),
    grid_processing=Duration(40.0, 0.0),
    quadrant_lag=Duration(2.0, 0.0),
)


class Receiver:
    """An ASGI webhook receiver that records what arrives, and can refuse the first N."""

    def __init__(self, *, refuse: int = 0) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.refuse = refuse

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.received.append((anyio.current_time(), json.loads(body)))
        status = 500 if self.refuse > 0 else 200
        self.refuse -= 1
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def opened(self) -> list[dict[str, Any]]:
        """Every delivery checked for its signature and decrypted, in arrival order."""
        events = []
        for _, envelope in self.received:
            assert {"signature", "dataEncrypt", "timestamp", "nonce"} == set(envelope)
            assert (int, str) == (type(envelope["timestamp"]), type(envelope["nonce"]))
            expected = ref_signature(
                CLIENT_ID, envelope["timestamp"], envelope["nonce"], envelope["dataEncrypt"]
            )
            assert expected == envelope["signature"]
            events.append(
                json.loads(ref_decrypt(envelope["dataEncrypt"], CLIENT_ID, CLIENT_SECRET))
            )
        return events


def emulator(**kwargs: Any) -> AkoolEmulator:
    return AkoolEmulator(
        api_key="k", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, timings=TIMINGS, **kwargs
    )


async def test_status_changes_arrive_signed_and_encrypted_on_time() -> None:
    """Processing at 4 s and completed at 44 s, each verifiable and decryptable as Akool's."""
    emu, receiver = emulator(), Receiver()
    hooks = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver))
    async with (
        hooks,
        emu.client() as http,
        ak.AkoolSession(api_key="k", http_client=http) as session,
        emu.running(webhook_client=hooks),
    ):
        created = anyio.current_time()
        job = await session.create_by_prompt("a fox", webhook_url="http://receiver.test/hook")
        await anyio.sleep(60)
        info = await session.get_image_info(job.id)
    events = receiver.opened()
    assert [
        {"_id": job.id, "status": 2, "type": "image"},
        {"_id": job.id, "status": 3, "type": "image", "url": info.image},
    ] == events
    times = [at - created for at, _ in receiver.received]
    assert [4.0, 44.0] == pytest.approx(times, abs=1e-3)
    wall = [envelope["timestamp"] for _, envelope in receiver.received]
    assert 40_000 == wall[1] - wall[0]


async def test_failed_jobs_report_status_4() -> None:
    """A job that fails is reported processing, then failed, with no URL."""
    emu, receiver = emulator(), Receiver()
    hooks = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver))
    async with hooks, emu.client() as http, emu.running(webhook_client=hooks):
        body = {"prompt": "broken [fail]", "webhookUrl": "http://receiver.test/hook"}
        job_id = (
            await http.post(
                "/api/open/v3/content/image/createbyprompt", headers={"x-api-key": "k"}, json=body
            )
        ).json()["data"]["_id"]
        await anyio.sleep(60)
    assert [
        {"_id": job_id, "status": 2, "type": "image"},
        {"_id": job_id, "status": 4, "type": "image"},
    ] == receiver.opened()


async def test_refused_deliveries_are_retried_and_duplicates_sent() -> None:
    """A receiver answering 500 gets the callback again; duplicate_rate=1 sends each twice."""
    emu = emulator(webhooks=DeliveryPolicy(retry_delays=(5.0,), duplicate_rate=1.0))
    receiver = Receiver(refuse=1)
    hooks = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver))
    async with hooks, emu.client() as http, emu.running(webhook_client=hooks):
        body = {"prompt": "a fox", "webhookUrl": "http://receiver.test/hook"}
        await http.post(
            "/api/open/v3/content/image/createbyprompt", headers={"x-api-key": "k"}, json=body
        )
        await anyio.sleep(60)
    statuses = [event["status"] for event in receiver.opened()]
    # Refused once, retried 5 s later and accepted (then duplicated); the completion twice.
    assert [2, 2, 2, 3, 3] == statuses
    assert receiver.received[1][1] == receiver.received[2][1]
    assert [200, 200, 200, 200] == [a.http_status for a in emu.webhooks.attempts if a.ok]


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("asyncio", {}), id="asyncio"), pytest.param(("trio", {}), id="trio")],
)
async def test_deliveries_cross_a_real_socket(anyio_backend: Any) -> None:
    """Served emulator, served receiver: the callbacks travel over loopback in real time."""
    emu, receiver = emulator(time_scale=0.005), Receiver()
    async with (
        serve_asgi(receiver) as hook_url,
        emu.serve() as api_url,
        httpx.AsyncClient(base_url=api_url) as http,
    ):
        body = {"prompt": "a fox", "webhookUrl": f"{hook_url}/hook"}
        response = await http.post(
            "/api/open/v3/content/image/createbyprompt", headers={"x-api-key": "k"}, json=body
        )
        job_id = response.json()["data"]["_id"]
        with anyio.fail_after(10):
            while len(receiver.received) < 2:  # noqa: ASYNC110 - polling what a server records
                await anyio.sleep(0.02)
    events = receiver.opened()
    assert [(job_id, 2), (job_id, 3)] == [(e["_id"], e["status"]) for e in events]
    assert events[1]["url"].startswith(api_url)
