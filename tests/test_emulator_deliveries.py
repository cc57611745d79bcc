"""The emulator's webhook dispatcher, against a real (in-process ASGI) receiver in virtual time.

Each test runs on asyncio (looptime) and trio (MockClock), so waiting minutes for retries costs
nothing. The receiver checks every callback with this file's own implementation of Akool's
algorithm, not with the module under test.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import attrs
import httpx
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from akool_async.testing._deliveries import DeliveryAttempt, DeliveryPolicy, WebhookDispatcher

pytestmark = pytest.mark.anyio

CLIENT_ID = "emulated-client-id-0001"
CLIENT_SECRET = "webhook-secret-of-24-byt"  # 24 bytes, as Akool's are
WALL_ZERO_MS = 1_710_757_981_609
HOOK = "http://receiver.test/hook"
OTHER_HOOK = "http://other.test/callbacks"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# -- the test's own Akool webhook algorithm -------------------------------------------------------


def own_signature(client_id: str, timestamp: int, nonce: str, data_encrypt: str) -> str:
    joined = "".join(sorted([client_id, str(timestamp), nonce, data_encrypt]))
    return hashlib.sha1(joined.encode()).hexdigest()  # noqa: S324 - Akool's algorithm


def own_decrypt(data_encrypt: str) -> Any:
    iv = CLIENT_ID.encode()[:16].ljust(16, b" ")
    decryptor = Cipher(algorithms.AES(CLIENT_SECRET.encode()), modes.CBC(iv)).decryptor()
    padded = decryptor.update(base64.b64decode(data_encrypt)) + decryptor.finalize()
    count = padded[-1]
    assert bytes([count] * count) == padded[-count:]
    return json.loads(padded[:-count])


# -- the receiver -------------------------------------------------------------------------------


@attrs.frozen
class Slow:
    """Answer with ``status`` after ``seconds``."""

    seconds: float
    status: int = 200


Answer = int | Slow | type[Exception]


@attrs.frozen
class Received:
    path: str
    at: float
    body: dict[str, Any]

    @property
    def payload(self) -> Any:
        return own_decrypt(self.body["dataEncrypt"])

    @property
    def job_id(self) -> str:
        return str(self.payload["_id"])


class Receiver:
    """An ASGI app playing the customer's webhook endpoint, answering from a script per path.

    The last answer of a script repeats; paths without a script answer 200.
    """

    def __init__(self, t0: float, scripts: dict[str, list[Answer]] | None = None) -> None:
        self.t0 = t0
        self.scripts = scripts or {}
        self.received: list[Received] = []
        self.verified = 0

    def at(self, path: str | None = None) -> list[float]:
        """Arrival times relative to t0, rounded against float noise."""
        return [round(r.at - self.t0, 6) for r in self.received if path in (None, r.path)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert "http" == scope["type"]
        assert "POST" == scope["method"]
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = json.loads(b"".join(chunks))
        path = scope["path"]
        self.received.append(Received(path=path, at=anyio.current_time(), body=body))
        # Every callback is genuine: signed and encrypted as Akool does.
        assert ["dataEncrypt", "nonce", "signature", "timestamp"] == sorted(body)
        assert isinstance(body["timestamp"], int)
        assert body["nonce"].isdecimal()
        expected = own_signature(CLIENT_ID, body["timestamp"], body["nonce"], body["dataEncrypt"])
        assert expected == body["signature"]
        self.verified += 1
        script = self.scripts.get(path, [200])
        answer = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(answer, type):
            raise answer("receiver crashed")
        status = answer
        if isinstance(answer, Slow):
            await anyio.sleep(answer.seconds)
            status = answer.status
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok" if status == 200 else b"no"})


def make_dispatcher(
    t0: float, policy: DeliveryPolicy | None = None, seed: int = 0
) -> WebhookDispatcher:
    return WebhookDispatcher(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        clock=anyio.current_time,
        policy=policy or DeliveryPolicy(),
        rng=random.Random(seed),
        wall_clock_ms=lambda: WALL_ZERO_MS + round((anyio.current_time() - t0) * 1000),
    )


def event(job_id: str, status: int = 3) -> dict[str, Any]:
    payload: dict[str, Any] = {"_id": job_id, "status": status, "type": "image"}
    if status == 3:
        payload["url"] = f"https://cdn.akool.test/{job_id}.png"
    return payload


@contextlib.asynccontextmanager
async def running(dispatcher: WebhookDispatcher, receiver: Receiver) -> AsyncIterator[None]:
    """Run the dispatcher's loop against the receiver for the duration of the block."""
    transport = httpx.ASGITransport(app=receiver)
    async with httpx.AsyncClient(transport=transport) as client, anyio.create_task_group() as tg:
        tg.start_soon(dispatcher.run, client)
        yield
        tg.cancel_scope.cancel()


def summary(attempts: list[DeliveryAttempt], t0: float) -> list[tuple[Any, ...]]:
    return [
        (a.job_id, a.attempt, round(a.at - t0, 6), a.http_status, a.duplicate) for a in attempts
    ]


# -- delivery -------------------------------------------------------------------------------------


async def test_callbacks_arrive_when_due_signed_and_encrypted() -> None:
    """Each callback arrives at its due time, verifies, decrypts to its payload, and is logged."""
    t0 = anyio.current_time()
    receiver = Receiver(t0)
    dispatcher = make_dispatcher(t0)
    dispatcher.schedule(url=HOOK, due=t0 + 1, payload=event("job-a", 2))
    dispatcher.schedule(url=OTHER_HOOK, due=t0 + 30, payload=event("job-b", 4))
    dispatcher.schedule(url=HOOK, due=t0 + 7, payload=event("job-a", 3))
    assert 3 == dispatcher.pending

    async with running(dispatcher, receiver):
        await anyio.sleep(6.5)
        assert [1.0] == receiver.at()
        await anyio.sleep(100)

    assert [1.0, 7.0, 30.0] == receiver.at()
    assert ["/hook", "/hook", "/callbacks"] == [r.path for r in receiver.received]
    assert [event("job-a", 2), event("job-a", 3), event("job-b", 4)] == [
        r.payload for r in receiver.received
    ]
    assert [WALL_ZERO_MS + 1000, WALL_ZERO_MS + 7000, WALL_ZERO_MS + 30000] == [
        r.body["timestamp"] for r in receiver.received
    ]
    assert 3 == receiver.verified
    assert [
        ("job-a", 1, 1.0, 200, False),
        ("job-a", 1, 7.0, 200, False),
        ("job-b", 1, 30.0, 200, False),
    ] == summary(dispatcher.attempts, t0)
    assert [2, 3, 4] == [a.status for a in dispatcher.attempts]
    assert [HOOK, HOOK, OTHER_HOOK] == [a.url for a in dispatcher.attempts]
    assert all(a.ok and a.error is None for a in dispatcher.attempts)
    assert 0 == dispatcher.pending
    assert [] == dispatcher.given_up


async def test_past_due_callbacks_go_out_at_once() -> None:
    """A due time already passed means now."""
    t0 = anyio.current_time()
    receiver = Receiver(t0)
    dispatcher = make_dispatcher(t0)
    dispatcher.schedule(url=HOOK, due=t0 - 50, payload=event("late"))

    async with running(dispatcher, receiver):
        await anyio.sleep(1)

    assert [0.0] == receiver.at()


async def test_same_seed_same_nonces() -> None:
    """Nonces are short decimal strings from the rng, so a seeded emulator repeats exactly."""
    nonces = []
    for _ in range(2):
        t0 = anyio.current_time()
        receiver = Receiver(t0)
        dispatcher = make_dispatcher(t0, seed=42)
        for n in range(5):
            dispatcher.schedule(url=HOOK, due=t0 + n, payload=event(f"job-{n}"))
        async with running(dispatcher, receiver):
            await anyio.sleep(10)
        nonces.append([r.body["nonce"] for r in receiver.received])

    assert nonces[0] == nonces[1]
    assert 5 == len(nonces[0])
    assert all(0 <= int(nonce) < 10_000 for nonce in nonces[0])


# -- retries --------------------------------------------------------------------------------------


async def test_retries_follow_retry_delays_until_a_200() -> None:
    """500, 500, then 200: attempts 5 s and then 10 s after each failure, then nothing more."""
    t0 = anyio.current_time()
    receiver = Receiver(t0, {"/hook": [500, 500, 200]})
    dispatcher = make_dispatcher(t0, DeliveryPolicy(retry_delays=(5, 10, 30)))
    dispatcher.schedule(url=HOOK, due=t0 + 2, payload=event("job-r"))

    async with running(dispatcher, receiver):
        await anyio.sleep(10)
        assert 1 == dispatcher.pending
        await anyio.sleep(1000)

    assert [2.0, 7.0, 17.0] == receiver.at()
    assert [
        ("job-r", 1, 2.0, 500, False),
        ("job-r", 2, 7.0, 500, False),
        ("job-r", 3, 17.0, 200, False),
    ] == summary(dispatcher.attempts, t0)
    assert 0 == dispatcher.pending
    assert [] == dispatcher.given_up
    # Every attempt carries the same event; each is a fresh, correctly signed envelope.
    assert 3 * [event("job-r")] == [r.payload for r in receiver.received]
    assert [WALL_ZERO_MS + 2000, WALL_ZERO_MS + 7000, WALL_ZERO_MS + 17000] == [
        r.body["timestamp"] for r in receiver.received
    ]


@pytest.mark.parametrize(
    ("delays", "expected_at"),
    [((1, 2), [0.0, 1.0, 3.0]), ((), [0.0]), ((0, 0), [0.0, 0.0, 0.0])],
    ids=["two-retries", "no-retries", "immediate-retries"],
)
async def test_gives_up_when_the_delays_run_out(
    delays: tuple[float, ...], expected_at: list[float]
) -> None:
    """A receiver that never answers 200 gets 1 + len(retry_delays) attempts, then none."""
    t0 = anyio.current_time()
    receiver = Receiver(t0, {"/hook": [503]})
    dispatcher = make_dispatcher(t0, DeliveryPolicy(retry_delays=delays))
    dispatcher.schedule(url=HOOK, due=t0, payload=event("job-x", 4))

    async with running(dispatcher, receiver):
        await anyio.sleep(10_000)

    assert expected_at == receiver.at()
    assert list(range(1, len(expected_at) + 1)) == [a.attempt for a in dispatcher.attempts]
    assert [dispatcher.attempts[-1]] == dispatcher.given_up
    assert 503 == dispatcher.given_up[0].http_status
    assert 0 == dispatcher.pending


async def test_receiver_errors_and_timeouts_are_failed_attempts() -> None:
    """A crashing receiver and one that answers too late both count as failures and are retried."""
    t0 = anyio.current_time()
    receiver = Receiver(t0, {"/hook": [RuntimeError, Slow(60), 200]})
    dispatcher = make_dispatcher(t0, DeliveryPolicy(retry_delays=(2, 3), timeout=10))
    dispatcher.schedule(url=HOOK, due=t0, payload=event("job-t"))

    async with running(dispatcher, receiver):
        await anyio.sleep(100)

    # Crash at 0; retry at 2 gets no answer by 12; retry at 15 succeeds.
    assert [0.0, 2.0, 15.0] == receiver.at()
    first, second, third = dispatcher.attempts
    assert (None, "RuntimeError: receiver crashed") == (first.http_status, first.error)
    assert (None, "no answer within 10 s") == (second.http_status, second.error)
    assert (200, None) == (third.http_status, third.error)
    assert 0 == dispatcher.pending


# -- duplicates -----------------------------------------------------------------------------------


async def test_duplicates_are_exact_copies() -> None:
    """With duplicate_rate=1.0 every delivered callback is POSTed twice, byte for byte the same."""
    t0 = anyio.current_time()
    receiver = Receiver(t0)
    dispatcher = make_dispatcher(t0, DeliveryPolicy(duplicate_rate=1.0))
    dispatcher.schedule(url=HOOK, due=t0 + 1, payload=event("job-d", 2))
    dispatcher.schedule(url=HOOK, due=t0 + 9, payload=event("job-d", 3))

    async with running(dispatcher, receiver):
        await anyio.sleep(50)

    bodies = [r.body for r in receiver.received]
    assert 4 == len(bodies)
    assert bodies[0] == bodies[1]
    assert bodies[2] == bodies[3]
    assert bodies[0] != bodies[2]
    assert [1.0, 1.0, 9.0, 9.0] == receiver.at()
    assert [False, True, False, True] == [a.duplicate for a in dispatcher.attempts]
    assert [1, 1, 1, 1] == [a.attempt for a in dispatcher.attempts]
    assert 0 == dispatcher.pending


async def test_failed_attempts_are_not_duplicated() -> None:
    """A duplicate copies a delivered callback; a failed one is retried instead."""
    t0 = anyio.current_time()
    receiver = Receiver(t0, {"/hook": [500, 200]})
    dispatcher = make_dispatcher(t0, DeliveryPolicy(retry_delays=(5,), duplicate_rate=1.0))
    dispatcher.schedule(url=HOOK, due=t0, payload=event("job-f"))

    async with running(dispatcher, receiver):
        await anyio.sleep(50)

    assert [("job-f", 1, 0.0, 500, False), ("job-f", 2, 5.0, 200, False)] == summary(
        dispatcher.attempts[:2], t0
    )
    assert [("job-f", 2, 5.0, 200, True)] == summary(dispatcher.attempts[2:], t0)
    assert receiver.received[1].body == receiver.received[2].body


async def test_no_duplicates_by_default() -> None:
    """duplicate_rate defaults to 0: one POST per delivered callback."""
    t0 = anyio.current_time()
    receiver = Receiver(t0)
    dispatcher = make_dispatcher(t0)
    for n in range(20):
        dispatcher.schedule(url=HOOK, due=t0 + n, payload=event(f"job-{n}"))

    async with running(dispatcher, receiver):
        await anyio.sleep(50)

    assert 20 == len(receiver.received)
    assert not any(a.duplicate for a in dispatcher.attempts)


# -- waking, ordering, concurrency ----------------------------------------------------------------


async def test_an_earlier_callback_wakes_the_loop() -> None:
    """The loop sleeping until +100 wakes for a callback scheduled meanwhile for +5."""
    t0 = anyio.current_time()
    receiver = Receiver(t0)
    dispatcher = make_dispatcher(t0)
    dispatcher.schedule(url=HOOK, due=t0 + 100, payload=event("late"))

    async with running(dispatcher, receiver):
        await anyio.sleep(1)
        dispatcher.schedule(url=OTHER_HOOK, due=t0 + 5, payload=event("early"))
        await anyio.sleep(200)

    assert [5.0, 100.0] == receiver.at()
    assert ["early", "late"] == [r.job_id for r in receiver.received]


async def test_schedule_wakes_an_idle_loop() -> None:
    """With nothing queued the loop waits; a callback scheduled for now goes out now."""
    t0 = anyio.current_time()
    receiver = Receiver(t0)
    dispatcher = make_dispatcher(t0)

    async with running(dispatcher, receiver):
        await anyio.sleep(3)
        dispatcher.schedule(url=HOOK, due=anyio.current_time(), payload=event("now"))
        await anyio.sleep(1)
        assert [3.0] == receiver.at()


async def test_one_url_gets_its_callbacks_in_due_order() -> None:
    """Same URL: sent in due order (ties in scheduling order), one at a time."""
    t0 = anyio.current_time()
    receiver = Receiver(t0, {"/hook": [Slow(4), 200]})
    dispatcher = make_dispatcher(t0)
    dispatcher.schedule(url=HOOK, due=t0 + 20, payload=event("third"))
    dispatcher.schedule(url=HOOK, due=t0 + 10, payload=event("first"))
    dispatcher.schedule(url=HOOK, due=t0 + 10, payload=event("second"))

    async with running(dispatcher, receiver):
        await anyio.sleep(100)

    assert ["first", "second", "third"] == [r.job_id for r in receiver.received]
    # "second" waits for the slow answer to "first" instead of overtaking it.
    assert [10.0, 14.0, 20.0] == receiver.at()


async def test_a_slow_receiver_does_not_hold_up_others() -> None:
    """Different URLs go out concurrently: a receiver taking 8 s does not delay another."""
    t0 = anyio.current_time()
    receiver = Receiver(t0, {"/hook": [Slow(8)]})
    dispatcher = make_dispatcher(t0)
    dispatcher.schedule(url=HOOK, due=t0 + 1, payload=event("slow"))
    dispatcher.schedule(url=OTHER_HOOK, due=t0 + 1, payload=event("fast"))
    dispatcher.schedule(url=OTHER_HOOK, due=t0 + 2, payload=event("fast-2"))

    async with running(dispatcher, receiver):
        await anyio.sleep(50)

    assert [1.0] == receiver.at("/hook")
    assert [1.0, 2.0] == receiver.at("/callbacks")
    # Attempts are logged when answered: both fast ones before the slow one.
    assert ["fast", "fast-2", "slow"] == [a.job_id for a in dispatcher.attempts]


async def test_concurrency_limits_callbacks_in_flight() -> None:
    """With concurrency=1, a slow receiver holds up the next URL until it answers."""
    t0 = anyio.current_time()
    receiver = Receiver(t0, {"/hook": [Slow(8)]})
    dispatcher = make_dispatcher(t0, DeliveryPolicy(concurrency=1))
    dispatcher.schedule(url=HOOK, due=t0 + 1, payload=event("slow"))
    dispatcher.schedule(url=OTHER_HOOK, due=t0 + 1, payload=event("waits"))

    async with running(dispatcher, receiver):
        await anyio.sleep(50)

    assert [1.0, 9.0] == receiver.at()


async def test_many_callbacks_to_one_url() -> None:
    """An emulated batch: 500 jobs, two callbacks each, all delivered once and in order."""
    t0 = anyio.current_time()
    receiver = Receiver(t0)
    dispatcher = make_dispatcher(t0, seed=7)
    rng = random.Random(3)
    expected = []
    for n in range(500):
        started = rng.uniform(0, 60)
        finished = started + rng.uniform(20, 60)
        dispatcher.schedule(url=HOOK, due=t0 + started, payload=event(f"job-{n}", 2))
        dispatcher.schedule(url=HOOK, due=t0 + finished, payload=event(f"job-{n}", 3))
        expected += [(started, f"job-{n}", 2), (finished, f"job-{n}", 3)]

    async with running(dispatcher, receiver):
        await anyio.sleep(200)

    expected.sort()
    got = [(r.job_id, r.payload["status"]) for r in receiver.received]
    assert [(job_id, status) for _, job_id, status in expected] == got
    # looptime keeps time in microsecond ticks, so due times are met to the microsecond.
    assert pytest.approx([at for at, _, _ in expected], abs=2e-6) == receiver.at()
    assert 0 == dispatcher.pending


# -- lifecycle ------------------------------------------------------------------------------------


async def test_cancelling_run_stops_everything() -> None:
    """After run() is cancelled nothing more is sent; what was queued stays pending."""
    t0 = anyio.current_time()
    receiver = Receiver(t0, {"/hook": [500]})
    dispatcher = make_dispatcher(t0)
    dispatcher.schedule(url=HOOK, due=t0 + 10, payload=event("fails"))
    dispatcher.schedule(url=OTHER_HOOK, due=t0 + 20, payload=event("later"))

    async with running(dispatcher, receiver):
        await anyio.sleep(12)  # after the first attempt, before its retry at 15

    await anyio.sleep(1000)

    assert [10.0] == receiver.at()
    assert 2 == dispatcher.pending  # the retry of "fails", and "later"


async def test_a_callback_cut_off_by_cancellation_is_sent_by_the_next_run() -> None:
    """Cancelled mid-POST: the callback goes back in the queue, and a new run() sends it."""
    t0 = anyio.current_time()
    receiver = Receiver(t0, {"/hook": [Slow(30), 200]})
    dispatcher = make_dispatcher(t0, DeliveryPolicy(timeout=60))
    dispatcher.schedule(url=HOOK, due=t0 + 1, payload=event("interrupted"))

    async with running(dispatcher, receiver):
        await anyio.sleep(5)
        assert 1 == dispatcher.pending

    assert [] == dispatcher.attempts
    assert 1 == dispatcher.pending
    await anyio.sleep(10)

    async with running(dispatcher, receiver):
        await anyio.sleep(1)

    assert [1.0, 15.0] == receiver.at()
    assert [("interrupted", 1, 15.0, 200, False)] == summary(dispatcher.attempts, t0)
    assert 0 == dispatcher.pending


async def test_run_twice_at_once_is_refused() -> None:
    """One loop per dispatcher: a second concurrent run() raises RuntimeError."""
    t0 = anyio.current_time()
    dispatcher = make_dispatcher(t0)
    receiver = Receiver(t0)

    async with running(dispatcher, receiver):
        await anyio.sleep(0.1)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver)) as client:
            with pytest.raises(RuntimeError, match="already running"):
                await dispatcher.run(client)


async def test_schedule_copies_the_payload() -> None:
    """Changing the payload after schedule() does not change what is sent."""
    t0 = anyio.current_time()
    receiver = Receiver(t0)
    dispatcher = make_dispatcher(t0)
    payload = event("job-c")
    dispatcher.schedule(url=HOOK, due=t0 + 1, payload=payload)
    payload["status"] = 4
    payload["url"] = "https://evil.test/"

    async with running(dispatcher, receiver):
        await anyio.sleep(5)

    assert [event("job-c")] == [r.payload for r in receiver.received]


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"url": "not a url"}, ValueError, "absolute http or https URL"),
        ({"url": "ftp://receiver.test/hook"}, ValueError, "absolute http or https URL"),
        ({"url": "/hook"}, ValueError, "absolute http or https URL"),
        ({"url": "http://[::1"}, ValueError, "absolute http or https URL"),
        ({"due": float("nan")}, ValueError, "finite"),
        ({"due": float("inf")}, ValueError, "finite"),
        ({"payload": {"status": 3}}, TypeError, "string '_id'"),
        ({"payload": {"_id": "x", "status": "3"}}, TypeError, "integer 'status'"),
        ({"payload": {"_id": "x", "status": True}}, TypeError, "integer 'status'"),
        ({"payload": {"_id": "x", "status": 3, "extra": object()}}, TypeError, "JSON"),
    ],
)
def test_schedule_refuses_bad_input(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Bad URLs, due times and payloads are refused at schedule(), where the bug is."""
    dispatcher = make_dispatcher(0.0)
    arguments: dict[str, Any] = {"url": HOOK, "due": 1.0, "payload": event("ok")} | kwargs

    with pytest.raises(error, match=message):
        dispatcher.schedule(**arguments)

    assert 0 == dispatcher.pending


@pytest.mark.parametrize(
    "kwargs",
    [
        {"retry_delays": (5, -1)},
        {"retry_delays": (float("nan"),)},
        {"duplicate_rate": -0.1},
        {"duplicate_rate": 1.5},
        {"timeout": 0},
        {"concurrency": 0},
        {"concurrency": 1.5},
    ],
)
def test_policy_refuses_nonsense(kwargs: dict[str, Any]) -> None:
    """Negative delays, rates outside 0..1, a zero timeout or concurrency are ValueErrors."""
    with pytest.raises(ValueError, match="DeliveryPolicy"):
        DeliveryPolicy(**kwargs)


def test_policy_defaults() -> None:
    """Akool publishes no retry schedule; the defaults are documented assumptions."""
    policy = DeliveryPolicy(retry_delays=[1, 2])

    assert (1.0, 2.0) == policy.retry_delays
    assert (5.0, 10.0, 30.0, 60.0, 120.0) == DeliveryPolicy().retry_delays
    assert (0.0, 10.0, 16) == (
        DeliveryPolicy().duplicate_rate,
        DeliveryPolicy().timeout,
        DeliveryPolicy().concurrency,
    )


def test_a_bad_secret_is_refused_up_front_without_showing_it() -> None:
    """The AES key length is checked when the dispatcher is built, not at the first callback."""
    secret = "twenty-five-bytes-secret!"

    with pytest.raises(ValueError, match="16, 24 or 32 bytes") as caught:
        WebhookDispatcher(
            client_id=CLIENT_ID,
            client_secret=secret,
            clock=lambda: 0.0,
            policy=DeliveryPolicy(),
            rng=random.Random(0),
            wall_clock_ms=lambda: 0,
        )

    assert secret not in str(caught.value)


def test_repr_hides_the_secret() -> None:
    """The dispatcher's repr shows counts only."""
    dispatcher = make_dispatcher(0.0)
    dispatcher.schedule(url=HOOK, due=1.0, payload=event("x"))

    assert "WebhookDispatcher(pending=1, attempts=0, given_up=0)" == repr(dispatcher)
    assert CLIENT_SECRET not in repr(dispatcher)
    assert CLIENT_SECRET not in repr(vars(dispatcher).get("attempts"))
