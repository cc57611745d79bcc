"""Akool's webhook callbacks: verified, refused, received, and used by the session instead of polls.

Envelopes are built with tests/akool_reference.py, an implementation of Akool's algorithm written
apart from the package, so a mistake in `_webhook_crypto` is not copied into what it is checked
against. Everything runs in virtual time, on asyncio and trio, except the last class, which uses
real loopback sockets and so real time.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping
from typing import Any

import anyio
import attrs
import httpx
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import akool_async as ak
from akool_async.testing import (
    TEST_API_KEY,
    TEST_CLIENT_ID,
    TEST_CLIENT_SECRET,
    AkoolEmulator,
    DeliveryPolicy,
)
from akool_async.webhooks import (
    MAX_BODY_BYTES,
    WebhookEvent,
    WebhookReceiver,
    WebhookVerificationError,
    WebhookVerifier,
)
from akool_reference import ref_encrypt, ref_signature
from conftest import CLIENT_ID, CLIENT_SECRET, FIXED_TIMINGS

UNOPENED = (
    "the callback does not decrypt with this account's client secret into a job status: a "
    "wrong client_secret, or a forged or damaged callback"
)
"""The one message for every refusal after the signature check."""
REFUSAL_BYTES = b'{"error": "invalid callback"}'
"""The receiver's one answer (with status 400) to every POST that is not a genuine callback."""
REFUSAL = json.loads(REFUSAL_BYTES)
NOW = 1_750_000_000.0
"""The verifiers' clock in these tests: a fixed epoch second."""
NOW_MS = int(NOW * 1000)
NONCE = "1529"  # the nonce in Akool's docs sample
JOB_ID = "6650c0ffee1234567890abcd"
RESULT_URL = "https://cdn.akool.test/6650c0ffee1234567890abcd.png"
COMPLETED = {"_id": JOB_ID, "status": 3, "type": "image", "url": RESULT_URL}
PROCESSING = {"_id": JOB_ID, "status": 2, "type": "image"}
HOOK = "http://sdk.test/akool/webhook/"
OTHER_SECRET = "another-secret-of-24-byt"
CREATE_PATH = "/api/open/v3/content/image/createbyprompt"
SECRET_16 = "0123456789abcdef"
SECRET_32 = "0123456789abcdef0123456789abcdef"


def fixed_clock() -> float:
    return NOW


def seal(
    payload: Mapping[str, Any] | bytes,
    *,
    client_id: str = CLIENT_ID,
    client_secret: str = CLIENT_SECRET,
    timestamp: int | str = NOW_MS,
    nonce: str = NONCE,
) -> dict[str, Any]:
    """An envelope as Akool sends it, made by the independent reference implementation."""
    plaintext = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    data = ref_encrypt(plaintext, client_id, client_secret)
    return {
        "signature": ref_signature(client_id, int(timestamp), nonce, data),
        "dataEncrypt": data,
        "timestamp": timestamp,
        "nonce": nonce,
    }


def make_verifier(
    client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET, **kwargs: Any
) -> WebhookVerifier:
    kwargs.setdefault("clock", fixed_clock)
    return WebhookVerifier(client_id, client_secret, **kwargs)


def refusal(body: Any, verifier: WebhookVerifier | None = None) -> WebhookVerificationError:
    """The error verifying ``body`` raises."""
    with pytest.raises(WebhookVerificationError) as caught:
        (verifier or make_verifier()).verify(body)
    return caught.value


def encoded(envelope: Mapping[str, Any]) -> bytes:
    return json.dumps(envelope).encode()


def info_requests(emulator: AkoolEmulator) -> collections.Counter[str]:
    """Status reads the emulator answered, per job id."""
    return collections.Counter(
        request.query["image_model_id"]
        for request in emulator.requests
        if request.endpoint == "infobymodelid"
    )


# -- verification: envelopes made by the reference --------------------------------------------

CLIENT_IDS = [
    pytest.param("abc", id="id-shorter-than-16"),
    pytest.param("exactly-16-bytes", id="id-of-16"),
    pytest.param("mr0kTxsc6Lo-a-longer-client-id", id="id-longer-than-16"),
]
SECRETS = [
    pytest.param(SECRET_16, id="aes128"),
    pytest.param(CLIENT_SECRET, id="aes192"),
    pytest.param(SECRET_32, id="aes256"),
]
FORMS: list[Any] = [
    pytest.param(encoded, id="bytes"),
    pytest.param(json.dumps, id="str"),
    pytest.param(dict, id="mapping"),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("client_secret", SECRETS)
@pytest.mark.parametrize("client_id", CLIENT_IDS)
def test_opens_reference_envelopes(
    client_id: str, client_secret: str, form: Callable[[dict[str, Any]], Any]
) -> None:
    """Every key length, IV rule (padded, exact, cut) and body form gives the same event."""
    envelope = seal(COMPLETED, client_id=client_id, client_secret=client_secret)

    event = make_verifier(client_id, client_secret).verify(form(envelope))

    assert (
        WebhookEvent(
            id=JOB_ID,
            status=ak.ImageStatus.COMPLETED,
            type="image",
            url=RESULT_URL,
            timestamp=NOW_MS,
            nonce=NONCE,
            signature=envelope["signature"],
        )
        == event
    )
    assert ak.ImageStatus.COMPLETED is event.status
    assert {} == event.extra


@pytest.mark.parametrize(
    ("payload", "status", "url"),
    [
        pytest.param(PROCESSING, ak.ImageStatus.PROCESSING, None, id="processing"),
        pytest.param(
            {"_id": JOB_ID, "status": 4, "type": "image", "url": ""},
            ak.ImageStatus.FAILED,
            None,
            id="failed-empty-url",
        ),
        pytest.param({"_id": JOB_ID, "status": 1}, ak.ImageStatus.QUEUEING, None, id="queueing"),
        pytest.param(COMPLETED, ak.ImageStatus.COMPLETED, RESULT_URL, id="completed"),
    ],
)
def test_event_fields_follow_the_payload(
    payload: dict[str, Any], status: ak.ImageStatus, url: str | None
) -> None:
    """The status is an ImageStatus; an empty or absent url is None; a missing type is None."""
    event = make_verifier().verify(encoded(seal(payload)))

    assert (JOB_ID, status, payload.get("type"), url) == (
        event.id,
        event.status,
        event.type,
        event.url,
    )
    assert isinstance(event.status, ak.ImageStatus)


def test_other_payload_fields_land_in_extra() -> None:
    """Fields Akool may add later are kept, not dropped, and do not disturb the known ones."""
    payload = {**COMPLETED, "progress": 100, "meta": {"a": [1, 2]}}

    event = make_verifier().verify(encoded(seal(payload)))

    assert {"progress": 100, "meta": {"a": [1, 2]}} == event.extra
    assert (JOB_ID, RESULT_URL) == (event.id, event.url)


def test_a_decimal_string_timestamp_is_accepted() -> None:
    """A timestamp sent as a string of digits is signed as that string, and is read as an int."""
    event = make_verifier().verify(encoded(seal(COMPLETED, timestamp=str(NOW_MS))))

    assert NOW_MS == event.timestamp


def test_a_body_of_exactly_the_limit_is_accepted() -> None:
    """MAX_BODY_BYTES itself is allowed: the limit refuses only what is larger."""
    body = encoded(seal(COMPLETED))
    body += b" " * (MAX_BODY_BYTES - len(body))

    assert MAX_BODY_BYTES == len(body)
    assert JOB_ID == make_verifier().verify(body).id
    assert JOB_ID == make_verifier().verify(body.decode()).id


@pytest.mark.anyio
async def test_the_emulators_callbacks_verify_and_match_its_jobs() -> None:
    """What the emulator POSTs verifies with its credentials and says what its jobs did."""
    emulator = AkoolEmulator(timings=FIXED_TIMINGS, seed=1)
    events: list[WebhookEvent] = []
    receiver = WebhookReceiver(WebhookVerifier(TEST_CLIENT_ID, TEST_CLIENT_SECRET), events.append)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver)) as hooks,
        emulator.running(webhook_client=hooks),
        emulator.client(headers={"x-api-key": TEST_API_KEY}) as api,
    ):
        ids = []
        for prompt in ("a red fox in snow", "an owl [fail]"):
            answer = await api.post(
                CREATE_PATH, json={"prompt": prompt, "scale": "1:1", "webhookUrl": HOOK}
            )
            assert 1000 == answer.json()["code"]
            ids.append(answer.json()["data"]["_id"])
        await anyio.sleep(60)  # both jobs end within 46 s

    fox, owl = (emulator.jobs[job_id] for job_id in ids)
    said = collections.defaultdict[str, list[tuple[ak.ImageStatus, str | None, str | None]]](list)
    for event in events:
        said[event.id].append((event.status, event.type, event.url))
    assert {
        fox.id: [
            (ak.ImageStatus.PROCESSING, "image", None),
            (ak.ImageStatus.COMPLETED, "image", fox.result_url()),
        ],
        owl.id: [
            (ak.ImageStatus.PROCESSING, "image", None),
            (ak.ImageStatus.FAILED, "image", None),
        ],
    } == said
    assert (4, 0, {}) == (receiver.accepted, receiver.duplicates, dict(receiver.rejected))
    assert [200] * 4 == [attempt.http_status for attempt in emulator.webhooks.attempts]


# -- rejections ----------------------------------------------------------------------------------


def flip_one_hex_digit(text: str) -> str:
    digit = text[7]
    return text[:7] + ("0" if digit != "0" else "1") + text[8:]


def test_a_tampered_signature_is_refused() -> None:
    """One hex digit changed: reason signature, and the message says the signature is wrong."""
    envelope = seal(COMPLETED)
    envelope["signature"] = flip_one_hex_digit(envelope["signature"])

    error = refusal(encoded(envelope))

    assert "signature" == error.reason
    assert "signature does not match" in str(error)


def test_a_ciphertext_swapped_in_from_another_envelope_is_refused_by_the_signature() -> None:
    """Another valid envelope's dataEncrypt under this one's signature: the signature fails."""
    envelope = seal(PROCESSING)
    envelope["dataEncrypt"] = seal(COMPLETED, nonce="77")["dataEncrypt"]

    error = refusal(encoded(envelope))

    assert "signature" == error.reason


def test_a_resigned_ciphertext_made_with_another_secret_is_refused_by_decryption() -> None:
    """Signed right for the client id, encrypted with another secret: reason decrypt."""
    envelope = seal(COMPLETED, client_secret=OTHER_SECRET)

    error = refusal(encoded(envelope))

    assert ("decrypt", UNOPENED) == (error.reason, str(error))
    assert OTHER_SECRET not in str(error)
    assert CLIENT_SECRET not in str(error)


def test_a_verifier_with_the_wrong_secret_refuses_by_decryption() -> None:
    """A genuine envelope, but the verifier holds another secret: reason decrypt."""
    error = refusal(encoded(seal(COMPLETED)), make_verifier(client_secret=OTHER_SECRET))

    assert "decrypt" == error.reason
    assert OTHER_SECRET not in str(error)


def test_a_verifier_with_another_client_id_refuses_by_signature() -> None:
    """The client id is part of the signature: an envelope for another account fails there."""
    error = refusal(encoded(seal(COMPLETED)), make_verifier("another-client-id"))

    assert "signature" == error.reason


def test_the_signature_is_checked_before_decrypting() -> None:
    """A bad signature is reported as such even where decryption would also fail."""
    wrong_secret = make_verifier(client_secret=OTHER_SECRET)
    envelope = seal(COMPLETED)
    envelope["signature"] = flip_one_hex_digit(envelope["signature"])
    garbage = {**envelope, "dataEncrypt": "not base64 at all!"}
    garbage_signed = {
        **garbage,
        "signature": ref_signature(CLIENT_ID, NOW_MS, NONCE, "not base64 at all!"),
    }

    assert "signature" == refusal(encoded(envelope), wrong_secret).reason
    assert "signature" == refusal(encoded(garbage)).reason
    assert "decrypt" == refusal(encoded(garbage_signed)).reason
    assert UNOPENED == str(refusal(encoded(garbage_signed)))


def test_the_signature_is_checked_before_the_timestamp() -> None:
    """A forged, stale envelope is reported as forged: the signature comes first."""
    envelope = seal(COMPLETED, timestamp=NOW_MS - 3_600_000)
    envelope["signature"] = flip_one_hex_digit(envelope["signature"])

    assert "signature" == refusal(encoded(envelope)).reason


@pytest.mark.parametrize(
    ("offset_s", "shown"),
    [pytest.param(-301, "301 s", id="past"), pytest.param(301, "301 s", id="future")],
)
def test_a_timestamp_beyond_the_tolerance_is_stale(offset_s: int, shown: str) -> None:
    """Five minutes and a second either way is refused, and the message says by how much."""
    envelope = seal(COMPLETED, timestamp=NOW_MS + offset_s * 1000)

    error = refusal(encoded(envelope))

    assert "stale" == error.reason
    assert f"{shown} away from this machine's clock" in str(error)
    assert "300 s allowed" in str(error)


@pytest.mark.parametrize("offset_s", [-299, 299])
def test_a_timestamp_within_the_tolerance_is_accepted(offset_s: int) -> None:
    envelope = seal(COMPLETED, timestamp=NOW_MS + offset_s * 1000)

    assert JOB_ID == make_verifier().verify(encoded(envelope)).id


def test_tolerance_none_accepts_any_timestamp() -> None:
    """With tolerance=None a day-old or year-ahead callback still verifies."""
    verifier = make_verifier(tolerance=None)

    for timestamp in (NOW_MS - 86_400_000, NOW_MS + 365 * 86_400_000, 0):
        assert timestamp == verifier.verify(encoded(seal(COMPLETED, timestamp=timestamp))).timestamp


def test_the_tolerance_is_measured_against_the_given_clock() -> None:
    """A custom clock and tolerance: 10 s allowed, 11 s is stale, whatever time.time says."""
    now = [1_000.0]
    verifier = make_verifier(tolerance=10, clock=lambda: now[0])
    envelope = encoded(seal(COMPLETED, timestamp=1_000_000))

    assert JOB_ID == verifier.verify(envelope).id
    now[0] = 1_010.0
    assert JOB_ID == verifier.verify(envelope).id
    now[0] = 1_011.0
    error = refusal(envelope, verifier)
    assert "stale" == error.reason
    assert "11 s away" in str(error)
    assert "10 s allowed" in str(error)


GOOD = seal(COMPLETED)


def without(*keys: str) -> dict[str, Any]:
    return {key: value for key, value in GOOD.items() if key not in keys}


@pytest.mark.parametrize(
    ("body", "reason", "says"),
    [
        pytest.param(b'{"signature": ', "malformed", "not JSON", id="truncated-json"),
        pytest.param("", "malformed", "not JSON", id="empty-str"),
        pytest.param(b"\xff\xfe{}", "malformed", "not UTF-8", id="not-utf8"),
        pytest.param(b"[1, 2, 3]", "malformed", "not a JSON object", id="array"),
        pytest.param("42", "malformed", "not a JSON object", id="number"),
        pytest.param(b"null", "malformed", "not a JSON object", id="null"),
        pytest.param(["a"], "malformed", "not a JSON object", id="parsed-list"),
        pytest.param(without("nonce"), "malformed", "lacks nonce", id="no-nonce"),
        pytest.param(
            without("signature", "timestamp"),
            "malformed",
            "lacks signature, timestamp",
            id="no-signature-no-timestamp",
        ),
        pytest.param({}, "malformed", "lacks signature, dataEncrypt, timestamp, nonce", id="{}"),
        pytest.param({**GOOD, "timestamp": "soon"}, "malformed", "epoch millis", id="ts-text"),
        pytest.param({**GOOD, "timestamp": 1.5e12}, "malformed", "epoch millis", id="ts-float"),
        pytest.param({**GOOD, "timestamp": True}, "malformed", "epoch millis", id="ts-bool"),
        pytest.param({**GOOD, "timestamp": -1}, "malformed", "epoch millis", id="ts-negative"),
        pytest.param({**GOOD, "timestamp": None}, "malformed", "epoch millis", id="ts-null"),
        pytest.param({**GOOD, "nonce": 1529}, "malformed", "nonce is not a string", id="nonce-int"),
        pytest.param(
            {**GOOD, "dataEncrypt": "A" * 20_000},
            "malformed",
            "dataEncrypt is not a string of at most 16384 ASCII characters (base64)",
            id="huge-field",
        ),
        pytest.param(
            {**GOOD, "signature": None}, "malformed", "signature is not a string", id="sig-null"
        ),
        pytest.param(
            b" " * (MAX_BODY_BYTES + 1), "too_large", f"{MAX_BODY_BYTES + 1} bytes", id="bytes"
        ),
        pytest.param(
            "x" * (MAX_BODY_BYTES + 1), "too_large", f"the {MAX_BODY_BYTES} bytes", id="str"
        ),
    ],
)
def test_bodies_that_are_not_an_envelope_are_refused(body: Any, reason: str, says: str) -> None:
    """Each shape problem has its reason, and a message that names what is wrong."""
    error = refusal(body)

    assert reason == error.reason
    assert says in str(error)


@pytest.mark.parametrize(
    ("plaintext", "says"),
    [
        pytest.param(json.dumps({"status": 3}).encode(), "no job _id", id="no-id"),
        pytest.param(json.dumps({"_id": "", "status": 3}).encode(), "no job _id", id="empty-id"),
        pytest.param(json.dumps({"_id": 42, "status": 3}).encode(), "no job _id", id="int-id"),
        pytest.param(json.dumps({"_id": JOB_ID}).encode(), "(got None)", id="no-status"),
        pytest.param(json.dumps({"_id": JOB_ID, "status": 7}).encode(), "(got 7)", id="status-7"),
        pytest.param(json.dumps({"_id": JOB_ID, "status": 0}).encode(), "(got 0)", id="status-0"),
        pytest.param(
            json.dumps({"_id": JOB_ID, "status": True}).encode(), "(got True)", id="status-true"
        ),
        pytest.param(
            json.dumps({"_id": JOB_ID, "status": "3"}).encode(), "(got '3')", id="status-text"
        ),
        pytest.param(
            json.dumps({"_id": JOB_ID, "status": 3.0}).encode(), "(got 3.0)", id="status-float"
        ),
        pytest.param(b"[3]", "payload is not a JSON object", id="array"),
        pytest.param(b"not json", "decrypts to something that is not JSON", id="not-json"),
        pytest.param(b"\xff\xfe\xfd", "decrypts to something that is not JSON", id="not-utf8"),
    ],
)
def test_a_genuine_envelope_with_a_bad_payload_is_refused(plaintext: bytes, says: str) -> None:
    """Signed and encrypted right, but not a job status Akool defines: the one refusal that
    follows the signature, whatever is wrong (``says`` names it for the reader, not the error)."""
    error = refusal(encoded(seal(plaintext)))

    assert ("decrypt", UNOPENED) == (error.reason, str(error))
    assert says not in str(error)


@pytest.mark.parametrize(
    ("client_id", "client_secret", "tolerance", "says"),
    [
        pytest.param("", CLIENT_SECRET, 300.0, "client_id must be a non-empty", id="empty-id"),
        pytest.param(CLIENT_ID, "ten-bytes!", 300.0, "16, 24 or 32 bytes", id="10-byte-secret"),
        pytest.param(CLIENT_ID, "", 300.0, "16, 24 or 32 bytes", id="empty-secret"),
        pytest.param(CLIENT_ID, CLIENT_SECRET, 0, "tolerance must be", id="tolerance-0"),
        pytest.param(CLIENT_ID, CLIENT_SECRET, -5.0, "tolerance must be", id="tolerance-neg"),
        pytest.param(
            CLIENT_ID, CLIENT_SECRET, float("nan"), "tolerance must be", id="tolerance-nan"
        ),
        pytest.param(CLIENT_ID, CLIENT_SECRET, "300", "tolerance must be", id="tolerance-text"),
    ],
)
def test_the_verifier_refuses_bad_arguments(
    client_id: str, client_secret: str, tolerance: Any, says: str
) -> None:
    """Bad credentials or tolerance fail at construction, never at the first callback."""
    with pytest.raises(ak.InvalidInput) as caught:
        WebhookVerifier(client_id, client_secret, tolerance=tolerance)

    assert says in str(caught.value)
    assert "ten-bytes!" not in str(caught.value)


def test_the_verifier_repr_shows_no_secret() -> None:
    assert CLIENT_SECRET not in repr(make_verifier())
    assert CLIENT_ID in repr(make_verifier())


# -- the ASGI receiver ---------------------------------------------------------------------------


class Recorder:
    """An on_event that records events, and can fail the first ``fail`` calls."""

    def __init__(self, *, fail: int = 0) -> None:
        self.calls: list[WebhookEvent] = []
        self.fail = fail

    def __call__(self, event: WebhookEvent) -> None:
        self.calls.append(event)
        if self.fail > 0:
            self.fail -= 1
            raise RuntimeError("the database is down")


def receiver_for(recorder: Recorder | None = None, **kwargs: Any) -> WebhookReceiver:
    return WebhookReceiver(
        make_verifier(**kwargs), recorder if recorder is not None else Recorder()
    )


@contextlib.asynccontextmanager
async def client_for(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sdk.test") as client:
        yield client


async def post(app: Any, content: Any, *, method: str = "POST") -> httpx.Response:
    async with client_for(app) as client:
        return await client.request(method, "/akool/webhook", content=content)


@pytest.mark.anyio
async def test_a_genuine_callback_is_answered_200_and_handed_on() -> None:
    recorder = Recorder()
    receiver = receiver_for(recorder)

    response = await post(receiver, encoded(seal(COMPLETED)))

    assert (200, {"ok": True}) == (response.status_code, response.json())
    assert "application/json" == response.headers["content-type"]
    assert [(JOB_ID, ak.ImageStatus.COMPLETED)] == [(e.id, e.status) for e in recorder.calls]
    assert (1, 0, 0) == (receiver.accepted, receiver.duplicates, sum(receiver.rejected.values()))


@pytest.mark.anyio
async def test_duplicates_are_answered_200_and_handed_on_once() -> None:
    """A repeated body, and a re-signed resend of one (job, status), both count as duplicates."""
    recorder = Recorder()
    receiver = receiver_for(recorder)
    first = encoded(seal(COMPLETED))
    resent = encoded(seal(COMPLETED, nonce="8", timestamp=NOW_MS + 5000))

    answers = [await post(receiver, body) for body in (first, first, resent)]
    processing = await post(receiver, encoded(seal(PROCESSING)))

    assert [
        (200, {"ok": True}),
        (200, {"ok": True, "duplicate": True}),
        (200, {"ok": True, "duplicate": True}),
    ] == [(answer.status_code, answer.json()) for answer in answers]
    assert (200, {"ok": True}) == (processing.status_code, processing.json())
    assert [ak.ImageStatus.COMPLETED, ak.ImageStatus.PROCESSING] == [
        event.status for event in recorder.calls
    ]
    assert (2, 2) == (receiver.accepted, receiver.duplicates)


@pytest.mark.anyio
async def test_the_emulators_duplicate_deliveries_are_handed_on_once() -> None:
    """DeliveryPolicy(duplicate_rate=1.0): every callback arrives twice, is handed on once."""
    emulator = AkoolEmulator(
        timings=FIXED_TIMINGS, webhooks=DeliveryPolicy(duplicate_rate=1.0), seed=2
    )
    recorder = Recorder()
    receiver = WebhookReceiver(WebhookVerifier(TEST_CLIENT_ID, TEST_CLIENT_SECRET), recorder)
    async with (
        client_for(receiver) as hooks,
        emulator.running(webhook_client=hooks),
        emulator.client(headers={"x-api-key": TEST_API_KEY}) as api,
    ):
        for prompt in ("one", "two"):
            await api.post(CREATE_PATH, json={"prompt": prompt, "webhookUrl": HOOK})
        await anyio.sleep(60)

    attempts = emulator.webhooks.attempts
    assert (8, 4) == (len(attempts), sum(attempt.duplicate for attempt in attempts))
    assert all(attempt.ok for attempt in attempts)
    handed_on = collections.Counter((event.id, event.status) for event in recorder.calls)
    assert {(job_id, status) for job_id in emulator.jobs for status in (2, 3)} == set(handed_on)
    assert {1} == set(handed_on.values())
    assert (4, 4) == (receiver.accepted, receiver.duplicates)


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["GET", "PUT", "HEAD", "DELETE"])
async def test_anything_but_post_is_405_with_allow(method: str) -> None:
    receiver = receiver_for()

    response = await post(receiver, b"", method=method)

    assert (405, "POST") == (response.status_code, response.headers["allow"])
    assert (0, 0, 0) == (receiver.accepted, receiver.duplicates, sum(receiver.rejected.values()))


@attrs.frozen
class Answer:
    """What an ASGI app answered when driven directly, and how much of the body it read."""

    status: int
    headers: dict[str, str]
    body: Any
    chunks_read: int


async def call_asgi(app: Any, chunks: list[bytes], *, method: str = "POST") -> Answer:
    """Drive an ASGI app without httpx, one body chunk per receive().

    httpx's ASGITransport never closes the request stream an app stops reading, and trio then
    warns about the half-read generator; a too-large body is exactly that, so it goes this way.
    """
    read = 0

    async def receive() -> MutableMapping[str, Any]:
        nonlocal read
        if read == len(chunks):
            return {"type": "http.disconnect"}
        read += 1
        return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/akool/webhook", "headers": []}
    await app(scope, receive, send)
    start, body = sent
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    return Answer(start["status"], headers, json.loads(body["body"]), read)


@pytest.mark.anyio
async def test_a_too_large_body_gets_the_one_refusal() -> None:
    """Too large is refused like any other non-callback; only the counter says why."""
    receiver = receiver_for()

    answer = await call_asgi(receiver, [b" " * (MAX_BODY_BYTES + 1)])

    assert (400, REFUSAL) == (answer.status, answer.body)
    assert {"too_large": 1} == dict(receiver.rejected)


@pytest.mark.anyio
async def test_a_too_large_streamed_body_is_refused_without_reading_it_all() -> None:
    """Sent in 4 KiB chunks: refused once past the limit, the remaining chunks left unread."""
    receiver = receiver_for()

    answer = await call_asgi(receiver, [b" " * 4096] * 64)  # 256 KiB in all

    assert (400, REFUSAL) == (answer.status, answer.body)
    assert MAX_BODY_BYTES // 4096 + 1 == answer.chunks_read
    assert {"too_large": 1} == dict(receiver.rejected)


@pytest.mark.anyio
async def test_a_body_of_exactly_the_limit_in_chunks_is_read_whole() -> None:
    """64 KiB in 16 chunks is not too large: it is read and judged (here: not JSON)."""
    receiver = receiver_for()

    answer = await call_asgi(receiver, [b" " * 4096] * 16)

    assert (400, REFUSAL, 16) == (answer.status, answer.body, answer.chunks_read)
    assert {"malformed": 1} == dict(receiver.rejected)


@pytest.mark.anyio
async def test_a_genuine_callback_in_chunks_is_reassembled() -> None:
    recorder = Recorder()
    body = encoded(seal(COMPLETED))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 7):
            yield body[start : start + 7]

    response = await post(receiver_for(recorder), chunks())

    assert 200 == response.status_code
    assert [JOB_ID] == [event.id for event in recorder.calls]


def tampered() -> dict[str, Any]:
    envelope = seal(COMPLETED)
    envelope["signature"] = flip_one_hex_digit(envelope["signature"])
    return envelope


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"{oops", "malformed", id="malformed"),
        pytest.param(b'{"a": 1}', "malformed", id="not-an-envelope"),
        pytest.param(encoded(seal(b'{"status": 3}')), "decrypt", id="payload"),
        pytest.param(encoded(tampered()), "signature", id="forged"),
        pytest.param(encoded(seal(COMPLETED, timestamp=NOW_MS - 600_000)), "stale", id="stale"),
        pytest.param(
            encoded(seal(COMPLETED, client_secret=OTHER_SECRET)), "decrypt", id="wrong-key"
        ),
    ],
)
async def test_bad_callbacks_get_the_one_refusal_and_are_counted(body: bytes, reason: str) -> None:
    """Every refusal is the same answer, byte for byte; the reason is only counted."""
    recorder = Recorder()
    receiver = receiver_for(recorder)

    response = await post(receiver, body)

    assert (400, REFUSAL_BYTES) == (response.status_code, response.content)
    assert {reason: 1} == dict(receiver.rejected)
    assert ([], 0) == (recorder.calls, receiver.accepted)


@pytest.mark.anyio
async def test_on_event_failing_is_500_and_the_redelivery_is_handed_on_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only a failing handler gives a 5xx; the callback is not remembered, so a resend counts."""
    recorder = Recorder(fail=1)
    receiver = receiver_for(recorder)
    body = encoded(seal(COMPLETED))

    with caplog.at_level(logging.ERROR, logger="akool_async.webhooks"):
        failed = await post(receiver, body)
    resent = await post(receiver, body)
    again = await post(receiver, body)

    assert (500, {"error": "handler failed"}) == (failed.status_code, failed.json())
    assert (200, {"ok": True}) == (resent.status_code, resent.json())
    assert (200, {"ok": True, "duplicate": True}) == (again.status_code, again.json())
    assert [JOB_ID, JOB_ID] == [event.id for event in recorder.calls]
    assert (1, 1) == (receiver.accepted, receiver.duplicates)
    assert [f"the webhook handler failed on job {JOB_ID}; Akool will resend"] == [
        record.getMessage() for record in caplog.records
    ]


@pytest.mark.anyio
async def test_lifespan_is_answered_and_other_scopes_ignored() -> None:
    receiver = receiver_for()
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return incoming.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await receiver({"type": "lifespan"}, receive, send)
    await receiver({"type": "websocket", "path": "/akool/webhook"}, receive, send)

    assert [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}] == sent


@pytest.mark.anyio
async def test_the_counters_add_up_over_a_mixed_stream() -> None:
    receiver = receiver_for()
    bodies = [
        encoded(seal(COMPLETED)),
        encoded(seal(COMPLETED)),
        encoded(seal(PROCESSING)),
        b"nope",
        encoded(tampered()),
        encoded(tampered()),
    ]

    statuses = [(await post(receiver, body)).status_code for body in bodies]
    statuses.append((await call_asgi(receiver, [b" " * (MAX_BODY_BYTES + 1)])).status)

    assert [200, 200, 200, 400, 400, 400, 400] == statuses
    assert (2, 1) == (receiver.accepted, receiver.duplicates)
    assert {"malformed": 1, "signature": 2, "too_large": 1} == dict(receiver.rejected)
    assert "<WebhookReceiver accepted=2 duplicates=1 rejected=4>" == repr(receiver)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
ENVELOPE_KEYS = ["signature", "dataEncrypt", "timestamp", "nonce"]


def is_valid_payload(value: object) -> bool:
    """Whether a plaintext would verify: a JSON object with a job id and a known status."""
    if not isinstance(value, dict):
        return False
    status = value.get("status")
    job_id = value.get("_id")
    return (
        isinstance(job_id, str) and bool(job_id) and type(status) is int and status in {1, 2, 3, 4}
    )


@st.composite
def bad_bodies(draw: st.DrawFn) -> bytes:
    """Random bytes, random JSON, envelope look-alikes, and genuine envelopes of junk."""
    kind = draw(st.sampled_from(["bytes", "json", "lookalike", "signed-junk", "huge"]))
    if kind == "bytes":
        return draw(st.binary(max_size=600))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "lookalike":
        fields = draw(st.dictionaries(st.sampled_from(ENVELOPE_KEYS), json_values))
        if draw(st.booleans()):
            fields = {**GOOD, **fields}
            assume(fields != GOOD)
        return json.dumps(fields).encode()
    if kind == "huge":
        return b" " * (MAX_BODY_BYTES + draw(st.integers(-2, 3)))
    plaintext = draw(
        st.binary(max_size=80)
        | json_values.filter(lambda value: not is_valid_payload(value)).map(
            lambda value: json.dumps(value).encode()
        )
    )
    envelope = seal(plaintext, timestamp=draw(st.sampled_from([NOW_MS, NOW_MS - 10**7])))
    return json.dumps(envelope).encode()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=150, deadline=None)
@given(body=bad_bodies())
def test_no_bad_body_gets_a_5xx_or_is_handed_on(backend: str, body: bytes) -> None:
    """Whatever is thrown at the receiver, it gives the one refusal and hands nothing on."""
    recorder = Recorder()
    receiver = receiver_for(recorder)

    if len(body) <= MAX_BODY_BYTES:
        response = anyio.run(post, receiver, body, backend=backend)
        status, answer = response.status_code, response.json()
    else:  # see call_asgi: ASGITransport leaves a half-read body for trio to warn about
        direct = anyio.run(call_asgi, receiver, [body], backend=backend)
        status, answer = direct.status, direct.body

    assert (400, REFUSAL) == (status, answer)
    assert 1 == sum(receiver.rejected.values())
    assert ([], 0) == (recorder.calls, receiver.accepted)


# -- the session ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def pushed_session(
    emulator: AkoolEmulator, *, deliver: bool = True, **kwargs: Any
) -> AsyncIterator[ak.AkoolSession]:
    """A session on the in-process emulator whose callbacks reach ``session.webhook_app``."""
    kwargs.setdefault("webhook_public_url", HOOK)
    async with (
        emulator.client() as http,
        ak.AkoolSession(
            api_key=TEST_API_KEY,
            client_id=TEST_CLIENT_ID,
            client_secret=TEST_CLIENT_SECRET,
            http_client=http,
            **kwargs,
        ) as session,
    ):
        if not deliver:
            yield session
            return
        async with (
            client_for(session.webhook_app) as hooks,
            emulator.running(webhook_client=hooks),
        ):
            yield session


@pytest.mark.anyio
async def test_creates_carry_the_sessions_webhook_url_and_results_come_by_push() -> None:
    """Both creates send webhookUrl; requests use x-api-key, no getToken; <= 2 reads per job."""
    emulator = AkoolEmulator(timings=FIXED_TIMINGS)
    async with pushed_session(emulator) as session:
        grid = await session.generate("a red fox in snow")
        upscale = await grid.upscale(2)
        upscaled = await upscale.wait()
        stats = session.stats
        webhook_jobs = {job.id: job.uses_session_webhook for job in (grid, upscale)}
        listening = session.listening_url
        app = session.webhook_app

    creates = [r for r in emulator.requests if r.endpoint.startswith("createby")]
    assert [("createbyprompt", HOOK), ("createbybutton", HOOK)] == [
        (request.endpoint, request.body["webhookUrl"]) for request in creates
    ]
    assert {"api_key"} == {request.auth for request in emulator.requests}
    assert 0 == emulator.requests_per_endpoint()["getToken"]
    assert (2, 2) == (stats.jobs_tracked, stats.webhook_jobs)  # these two, and no other job
    assert {grid.id: True, upscale.id: True} == webhook_jobs
    assert upscaled.is_result_ready
    reads = info_requests(emulator)
    assert {grid.id, upscale.id} == set(reads)
    assert max(reads.values()) <= 2
    assert (4, {}) == (app.accepted, dict(app.rejected))
    assert listening is None  # webhook_public_url alone opens no socket


def test_webhook_public_url_alone_sets_the_url_before_opening() -> None:
    session = ak.AkoolSession(
        api_key="k", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, webhook_public_url=HOOK
    )

    assert HOOK == session.webhook_url
    assert isinstance(session.webhook_app, WebhookReceiver)
    assert CLIENT_ID == session.webhook_app.verifier.client_id


def test_no_webhook_url_without_webhooks() -> None:
    assert ak.AkoolSession(api_key="k").webhook_url is None


@pytest.mark.anyio
async def test_a_calls_own_webhook_url_wins_and_that_job_is_polled_normally() -> None:
    """webhookUrl as given; the job is not a webhook job: it is polled from early on."""
    emulator = AkoolEmulator(timings=FIXED_TIMINGS)
    elsewhere = "https://elsewhere.test/hook"
    async with pushed_session(emulator, deliver=False) as session:
        own = await session.generate("mine", webhook_url=elsewhere)
        same = await session.generate("same", webhook_url=HOOK)
        flags = [job.uses_session_webhook for job in (own, same)]
        with anyio.fail_after(600):
            await own.wait()
            await same.wait()

    assert [False, True] == flags
    sent = {r.body["prompt"]: r.body["webhookUrl"] for r in emulator.requests if r.body}
    assert {"mine": elsewhere, "same": HOOK} == sent
    first_read = {}
    for request in emulator.requests:
        if request.endpoint == "infobymodelid":
            first_read.setdefault(request.query["image_model_id"], request.at)
    # Polled as usual: looked at before it could end. The webhook job waits for its callback
    # and is looked at only as a safety net, after the job's expected end.
    assert first_read[own.id] < emulator.completion_time(own.id)
    assert first_read[same.id] >= emulator.completion_time(same.id)
    assert info_requests(emulator)[own.id] >= 3


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"webhook_public_url": HOOK}, id="public-url"),
        pytest.param({"webhook_listen": ("127.0.0.1", 0)}, id="listen"),
    ],
)
def test_webhooks_without_client_credentials_are_refused(kwargs: dict[str, Any]) -> None:
    """Callbacks cannot be verified without the client id and secret: said at construction."""
    with pytest.raises(ak.InvalidInput) as caught:
        ak.AkoolSession(api_key="k", **kwargs)

    assert "client_id and client_secret" in str(caught.value)


def test_webhook_app_without_client_credentials_is_refused() -> None:
    session = ak.AkoolSession(api_key="k")

    with pytest.raises(ak.InvalidInput) as caught:
        _ = session.webhook_app

    assert "client_id and client_secret" in str(caught.value)


@pytest.mark.parametrize(
    "listen",
    [
        ("127.0.0.1",),
        ("127.0.0.1", 0, 1),
        ("", 0),
        ("127.0.0.1", -1),
        ("127.0.0.1", 65536),
        ("127.0.0.1", True),
        ("127.0.0.1", "8080"),
        ("127.0.0.1", 80.0),
        (None, 80),
        ["127.0.0.1", 0],
        "127.0.0.1:0",
        8080,
    ],
    ids=repr,
)
def test_bad_webhook_listen_values_are_refused(listen: Any) -> None:
    with pytest.raises(ak.InvalidInput) as caught:
        ak.AkoolSession(
            api_key="k", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, webhook_listen=listen
        )

    assert f"webhook_listen must be (host, port), e.g. ('127.0.0.1', 0) (got {listen!r})" == str(
        caught.value
    )


@pytest.mark.parametrize("url", ["ftp://sdk.test/hook", "/akool/webhook", "http:///x", " "])
def test_a_bad_webhook_public_url_is_refused(url: str) -> None:
    with pytest.raises(ak.InvalidInput) as caught:
        ak.AkoolSession(
            api_key="k", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, webhook_public_url=url
        )

    assert "webhook_public_url must be an absolute http:// or https:// URL" in str(caught.value)


@pytest.mark.anyio
async def test_a_push_for_a_job_nobody_waits_on_is_kept_for_a_later_wait() -> None:
    """Both callbacks arrive before anyone waits: the wait then costs one read, at once."""
    emulator = AkoolEmulator(timings=FIXED_TIMINGS)
    async with pushed_session(emulator) as session:
        info = await session.create_by_prompt("a fox nobody waits for yet")
        await anyio.sleep(60)  # processing at 4 s, completed at 44 s, quadrants at 46 s
        stats = session.stats
        assert (2, 0, {}) == (stats.pushes, stats.status_requests, dict(info_requests(emulator)))

        before = anyio.current_time()
        result = await session.job(info.id).wait()
        after = anyio.current_time()

    assert result.is_result_ready
    assert {info.id: 1} == dict(info_requests(emulator))
    assert [before] == [r.at for r in emulator.requests if r.endpoint == "infobymodelid"]
    assert before == after


@pytest.mark.anyio
async def test_duplicate_deliveries_are_applied_once() -> None:
    """Every callback twice: the engine counts each (job, status) once and reads <= 2 per job."""
    emulator = AkoolEmulator(
        timings=FIXED_TIMINGS, webhooks=DeliveryPolicy(duplicate_rate=1.0), seed=5
    )
    async with pushed_session(emulator) as session:
        results = await session.generate_many([f"a fox, take {n}" for n in range(5)])
        app = session.webhook_app

    assert all(isinstance(result, ak.ImageInfo) for result in results)
    assert (10, 10, 10) == (session.stats.pushes, app.accepted, app.duplicates)
    reads = info_requests(emulator)
    assert 5 == len(reads)
    assert max(reads.values()) <= 2
    assert sum(reads.values()) == session.status_requests


@pytest.mark.anyio
async def test_lost_pushes_fall_back_to_polling_after_two_misses() -> None:
    """Every callback is refused (500) and given up. The safety net finds the first two jobs
    ended (one read each, at the 99 % quantile); the second miss turns push_healthy off; later
    jobs are then polled as usual. All complete, with far fewer reads than a 3 s poller."""
    emulator = AkoolEmulator(timings=FIXED_TIMINGS, webhooks=DeliveryPolicy(retry_delays=()))
    seen: dict[str, float] = {}
    health_when_seen: list[bool] = []
    holder: list[ak.AkoolSession] = []

    def on_event(event: ak.JobEvent) -> None:
        if event.kind == "completed" and holder:
            seen[event.job_id] = event.at
            health_when_seen.append(holder[0].stats.push_healthy)

    refused = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(500)))
    async with (
        emulator.client() as http,
        ak.AkoolSession(
            api_key=TEST_API_KEY,
            client_id=TEST_CLIENT_ID,
            client_secret=TEST_CLIENT_SECRET,
            http_client=http,
            webhook_public_url=HOOK,
            on_event=on_event,
        ) as session,
        refused,
        emulator.running(webhook_client=refused),
    ):
        holder.append(session)
        with anyio.fail_after(3600):
            first = await session.generate_many(["a lost fox", "a lost owl"])
            healthy_after_first = session.stats.push_healthy
            later = await session.generate_many([f"a later fox {n}" for n in range(8)])

    results = [*first, *later]
    assert all(isinstance(result, ak.ImageInfo) and result.is_result_ready for result in results)
    assert 20 == len(emulator.webhooks.given_up)
    stats = session.stats
    assert (0, 0) == (stats.pushes, session.webhook_app.accepted)
    assert [True, False] == health_when_seen[:2]  # flipped by the second miss, not the first
    assert {False} == set(health_when_seen[1:])
    assert healthy_after_first is False
    assert stats.push_healthy is False
    assert 2 == stats.missed_pushes  # it stopped counting once polling took over
    reads = info_requests(emulator)
    first_ids = [result.id for result in first if isinstance(result, ak.ImageInfo)]
    later_ids = [result.id for result in later if isinstance(result, ak.ImageInfo)]
    assert [1, 1] == [reads[job_id] for job_id in first_ids]
    # Polled as usual after the flip: each found within a few seconds of its completion, not
    # at the next 30 s safety-net look.
    assert all(seen[job_id] - emulator.completion_time(job_id) < 5 for job_id in later_ids)
    # Akool's demo polls every 3 s: 16 reads for a 46 s grid, 160 for these ten.
    # The session is cold (the two first jobs only say "done by the 99 % quantile"), so the
    # later jobs start from the weak prior: about 10 reads each; the one read early as a
    # sentinel costs what a lone cold job does (21, see test_engine), a 3 s poller 16.
    assert max(reads.values()) <= 21
    assert sum(reads.values()) < 160 * 2 / 3


# -- real sockets --------------------------------------------------------------------------------


@pytest.mark.real_time  # real sockets need real time: plain loops, not the virtual clocks
class TestOnRealSockets:
    """The session listening on a loopback port, the emulator serving on another."""

    @pytest.mark.anyio
    async def test_fifty_jobs_complete_through_pushes(self) -> None:
        """50 jobs resolved by their callbacks, each with at most 2 reads.

        A grid's status 3 callback comes before its quadrants, so the read it triggers may find
        them missing, and one recheck (min_interval, >= 0.09 s with jitter) later they are there:
        at time_scale 0.01 the emulator's quadrant lags stay under 0.07 s.
        """
        time_scale = 0.01
        emulator = AkoolEmulator(time_scale=time_scale, seed=3)
        policy = ak.PollPolicy(expected_duration=46 * time_scale, target_lag=0.1, min_interval=0.1)
        async with (
            emulator.serve() as url,
            ak.AkoolSession(
                api_key=TEST_API_KEY,
                client_id=TEST_CLIENT_ID,
                client_secret=TEST_CLIENT_SECRET,
                base_url=url,
                webhook_listen=("127.0.0.1", 0),
                poll_policy=policy,
            ) as session,
        ):
            webhook_url = session.webhook_url
            with anyio.fail_after(30):
                results = await session.generate_many([f"a fox, take {n}" for n in range(50)])
                # The last callbacks may still be on the way; the dispatcher has no idle event.
                while emulator.webhooks.pending:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            app = session.webhook_app

        assert 50 == sum(isinstance(result, ak.ImageInfo) for result in results)
        assert webhook_url is not None
        hook = httpx.URL(webhook_url)
        assert ("http", "127.0.0.1", "/akool/webhook") == (hook.scheme, hook.host, hook.path)
        assert hook.port not in (None, 0)
        assert {webhook_url} == {attempt.url for attempt in emulator.webhooks.attempts}
        assert (100, 0, {}) == (app.accepted, app.duplicates, dict(app.rejected))
        reads = info_requests(emulator)
        assert 50 == len(reads)
        assert max(reads.values()) <= 2, reads
