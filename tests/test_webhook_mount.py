"""The webhook URL and its trailing slash: a mounted receiver gets every callback, on real sockets.

Starlette (and so FastAPI) answers a POST to a mount point's bare path with a 307 redirect to
the path with a slash, before the mounted app sees the request; webhook senders do not follow
redirects. Starlette is no dependency of this project, so `MountRouter` below does what its
router does for one ``Mount`` with ``redirect_slashes`` on (the default).
"""

from __future__ import annotations

import collections
from typing import Any

import anyio
import httpx
import pytest

import akool_async as ak
from akool_async._asgi import ASGIApp, Receive, Scope, Send, answer_lifespan
from akool_async._serve import serve_asgi
from akool_async.testing import TEST_API_KEY, TEST_CLIENT_ID, TEST_CLIENT_SECRET, AkoolEmulator

MOUNT = "/akool/webhook"
TIME_SCALE = 0.01


class MountRouter:
    """An ASGI app with one mount, routed as Starlette's ``Router`` routes a ``Mount``.

    ``/akool/webhook/...`` goes to the mounted app, with the prefix moved to ``root_path``; the
    bare ``/akool/webhook`` is answered 307 to the path with a slash (``redirect_slashes``);
    anything else is a 404. ``answers`` counts the router's own answers by status.
    """

    def __init__(self) -> None:
        self.mounted: ASGIApp | None = None
        self.answers: collections.Counter[int] = collections.Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        path: str = scope["path"]
        if path.startswith(f"{MOUNT}/") and self.mounted is not None:
            child = {**scope, "root_path": scope.get("root_path", "") + MOUNT}
            child["path"] = path.removeprefix(MOUNT)
            await self.mounted(child, receive, send)
            return
        if path == MOUNT:
            host = dict(scope["headers"]).get(b"host", b"").decode()
            await self._answer(send, 307, [(b"location", f"http://{host}{MOUNT}/".encode())])
            return
        await self._answer(send, 404, [])

    async def _answer(self, send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.answers[status] += 1
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def session_for(emulator_url: str, **options: Any) -> ak.AkoolSession:
    """A session on the served emulator, with the emulator's client pair for its callbacks."""
    return ak.AkoolSession(
        api_key=TEST_API_KEY,
        client_id=TEST_CLIENT_ID,
        client_secret=TEST_CLIENT_SECRET,
        base_url=emulator_url,
        poll_policy=ak.PollPolicy(
            expected_duration=46 * TIME_SCALE, target_lag=0.1, min_interval=0.1
        ),
        **options,
    )


@pytest.mark.parametrize(
    ("given", "fixed"),
    [
        ("https://api.example.com/akool/webhook", "https://api.example.com/akool/webhook/"),
        ("http://127.0.0.1:8000/hook?account=7", "http://127.0.0.1:8000/hook/?account=7"),
    ],
)
def test_a_public_url_without_the_slash_is_refused_when_the_app_is_mounted(
    given: str, fixed: str
) -> None:
    """Nothing served by the session: a URL without the slash is refused, naming the fix."""
    with pytest.raises(ak.InvalidInput) as caught:
        session_for("http://127.0.0.1:9", webhook_public_url=given)

    path = httpx.URL(given).path
    assert (
        "webhook_public_url must end with a slash when you mount session.webhook_app in your "
        f"own app (got {given!r}; give {fixed!r}): a mount such as app.mount({path!r}, "
        "session.webhook_app) answers a POST without the slash with a redirect, which webhook "
        "senders do not follow; with a route instead of a mount, route the path with the slash"
    ) == str(caught.value)


@pytest.mark.parametrize("url", ["https://api.example.com/akool/webhook/", "https://h.example"])
def test_a_public_url_with_the_slash_or_no_path_is_taken(url: str) -> None:
    """A path ending with a slash (a bare host's path is '/') is what a mount answers on."""
    session = session_for("http://127.0.0.1:9", webhook_public_url=url)

    assert url == session.webhook_url


def test_the_sessions_own_server_takes_a_public_url_without_the_slash() -> None:
    """With webhook_listen, the session's server answers on any path: a tunnel's URL is kept."""
    url = "https://your-tunnel.example/akool/webhook"
    session = session_for(
        "http://127.0.0.1:9", webhook_listen=("127.0.0.1", 0), webhook_public_url=url
    )

    assert url == session.webhook_url


@pytest.mark.real_time  # real sockets need real time
@pytest.mark.anyio
async def test_a_mounted_receiver_gets_every_callback_at_the_url_with_the_slash() -> None:
    """Served by hypercorn behind a Starlette-like mount: every callback answered 200 at once."""
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=5)
    router = MountRouter()
    prompts = [f"a fox, take {n}" for n in range(5)]
    async with emulator.serve() as emulator_url, serve_asgi(router) as app_url:
        session = session_for(emulator_url, webhook_public_url=f"{app_url}{MOUNT}/")
        router.mounted = session.webhook_app
        async with session:
            with anyio.fail_after(30):
                results = await session.generate_many(prompts)
                while emulator.webhooks.pending:  # noqa: ASYNC110 - no idle event to wait on
                    await anyio.sleep(0.01)

    attempts = emulator.webhooks.attempts
    assert 5 == sum(isinstance(result, ak.ImageInfo) for result in results)
    assert {f"{app_url}{MOUNT}/"} == {attempt.url for attempt in attempts}
    assert [200] * 10 == sorted(attempt.http_status or 0 for attempt in attempts)
    assert (10, {}) == (session.webhook_app.accepted, dict(session.webhook_app.rejected))
    assert {} == dict(router.answers)  # no redirect, no 404: every request reached the app


@pytest.mark.real_time  # real sockets need real time
@pytest.mark.anyio
async def test_a_bare_mount_path_is_redirected_before_the_receiver_sees_it() -> None:
    """Why the slash is required: the router, not the receiver, answers the bare path (307)."""
    router = MountRouter()
    session = session_for("http://127.0.0.1:9", webhook_public_url=f"http://sdk.test{MOUNT}/")
    router.mounted = session.webhook_app
    async with serve_asgi(router) as app_url, httpx.AsyncClient() as client:
        bare = await client.post(f"{app_url}{MOUNT}", content=b"{}")
        slashed = await client.post(f"{app_url}{MOUNT}/", content=b"{}")

    assert (307, f"{app_url}{MOUNT}/") == (bare.status_code, bare.headers["location"])
    assert (400, {"error": "invalid callback"}) == (slashed.status_code, slashed.json())
    assert {"malformed": 1} == dict(session.webhook_app.rejected)


@pytest.mark.real_time  # real sockets need real time
@pytest.mark.anyio
async def test_the_sessions_own_server_answers_with_and_without_the_slash() -> None:
    """webhook_listen: the receiver answers on the URL with or without its trailing slash."""
    emulator = AkoolEmulator(time_scale=TIME_SCALE, seed=6)
    async with (
        emulator.serve() as emulator_url,
        session_for(emulator_url, webhook_listen=("127.0.0.1", 0)) as session,
        httpx.AsyncClient() as client,
    ):
        url = session.listening_url
        assert url is not None
        answers = [await client.post(hook, content=b"{}") for hook in (url, f"{url}/")]

    assert url.endswith(MOUNT)
    assert [(400, {"error": "invalid callback"})] * 2 == [
        (answer.status_code, answer.json()) for answer in answers
    ]
    assert {"malformed": 2} == dict(session.webhook_app.rejected)
