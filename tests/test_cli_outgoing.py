"""What a batch knows of its creates on the wire (`akool_async.cli._outgoing.Outgoing`).

An httpx client with a recording `httpx.MockTransport` stands for the session's: the hooks see
each request as it goes out, and the transport shows what actually left. Virtual time.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from akool_async._errors import ConnectError
from akool_async.cli._outgoing import UNREACHABLE_FOR, Outgoing, Withdrawn

CREATE: Any = "https://openapi.akool.test/api/open/v3/content/image/createbyprompt"
PRESS: Any = "https://openapi.akool.test/api/open/v3/content/image/createbybutton"
FOX = ("createbyprompt", "a fox", "1:1", None)


def recording() -> tuple[httpx.AsyncClient, list[httpx.Request]]:
    """A client whose transport answers 200 and keeps every request that reached it."""
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"code": 1000, "data": {"_id": "x"}})

    return httpx.AsyncClient(transport=httpx.MockTransport(answer)), sent


@pytest.mark.anyio
async def test_a_create_that_went_out_is_waited_for_and_one_that_did_not_is_withdrawn() -> None:
    """Two creates in flight, one of them sent: interrupt waits for it and withdraws the other,
    and should the withdrawn one's turn come after all, it never leaves the client."""
    outgoing = Outgoing()
    client, sent = recording()
    owl = ("createbybutton", "64dd82eef0b6684651e90131", "U2")
    async with client:
        with (
            outgoing.hooked(client),
            anyio.CancelScope() as fox_scope,
            anyio.CancelScope() as owl_scope,
            outgoing.creating("fox", fox_scope, FOX) as fox,
            outgoing.creating("owl", owl_scope, owl) as owl_create,
        ):
            await client.post(CREATE, json={"prompt": "a fox", "scale": "1:1"})
            assert (True, False) == (fox.sent, owl_create.sent)

            assert 1 == outgoing.interrupt()
            assert (False, True) == (fox_scope.cancel_called, owl_scope.cancel_called)
            assert (False, True) == (fox.withdrawn, owl_create.withdrawn)
            with pytest.raises(Withdrawn, match="withdrawn by an interruption before it was sent"):
                await client.post(PRESS, json={"_id": owl[1], "button": "U2"})
        assert {"request": [], "response": []} == client.event_hooks  # put back as they were

    assert [CREATE] == [str(request.url) for request in sent]


@pytest.mark.anyio
async def test_same_content_rows_are_all_waited_for_once_one_went_out() -> None:
    """Two rows that send the same body: once one went out, neither is withdrawn."""
    outgoing = Outgoing()
    client, _ = recording()
    async with client:
        with (
            outgoing.hooked(client),
            anyio.CancelScope() as first,
            anyio.CancelScope() as second,
            outgoing.creating("fox", first, FOX),
            outgoing.creating("fox#2", second, FOX),
        ):
            await client.post(CREATE, json={"prompt": "a fox", "scale": "1:1"})
            # Answers, downloads and reads are not creates: they change nothing.
            await client.get("https://openapi.akool.test/api/open/v3/faceswap/quota/info")
            await client.post(CREATE, content=b"not json")
            await client.post(CREATE, json=["a list"])

            assert 2 == outgoing.interrupt()
            assert (False, False) == (first.cancel_called, second.cancel_called)


@pytest.mark.anyio
async def test_a_create_it_cannot_tell_apart_keeps_every_create_waited_for() -> None:
    """A create body that matches no create of the batch (whatever sent it): from then on no
    create is withdrawn, since any of them may be the one that went out."""
    outgoing = Outgoing()
    client, _ = recording()
    async with client:
        with (
            outgoing.hooked(client),
            anyio.CancelScope() as scope,
            outgoing.creating("fox", scope, FOX) as fox,
        ):
            await client.post(CREATE, json={"prompt": "something else", "scale": "1:1"})

            assert 1 == outgoing.interrupt()
            assert (False, False) == (fox.sent, scope.cancel_called)


@pytest.mark.anyio
async def test_unreachable_after_a_while_without_any_answer() -> None:
    """Failures to connect count from the first one; any answer resets them; after
    UNREACHABLE_FOR seconds without one, the batch is told why."""
    outgoing = Outgoing()
    client, _ = recording()
    refused = ConnectError("could not connect to Akool (connection refused)")
    async with client:
        with outgoing.hooked(client):
            outgoing.cannot_reach(refused)
            await anyio.sleep(UNREACHABLE_FOR / 2)
            outgoing.cannot_reach(ConnectError("later"))  # the first one counts
            assert outgoing.unreachable() is None
            await client.get("https://openapi.akool.test/")  # an answer: reachable again
            await anyio.sleep(UNREACHABLE_FOR)
            assert outgoing.unreachable() is None

            outgoing.cannot_reach(refused)
            await anyio.sleep(UNREACHABLE_FOR)
            assert refused is outgoing.unreachable()
