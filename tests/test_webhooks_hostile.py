"""Hostile callbacks: what an attacker sends to the verifier, the receiver and the listener.

The attacker knows the client id (it is not a secret) and so can sign anything; only the client
secret is out of reach. Every input that is not a genuine callback must be a
`WebhookVerificationError` from the verifier and the one refusal from the receiver (never a
500, never an answer that says how far decryption got), and a burst of deliveries must be
answered 200 to every sender. Envelopes are made with tests/akool_reference.py, written apart
from the package.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping, MutableMapping
from typing import Any

import anyio
import attrs
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import akool_async as ak
from akool_async import _bounded_json as bounded_json
from akool_async._constants import CALLBACK_BODY_DEADLINE
from akool_async._serve import serve_asgi
from akool_async.webhooks import (
    MAX_BODY_BYTES,
    WebhookEvent,
    WebhookReceiver,
    WebhookVerificationError,
    WebhookVerifier,
)
from akool_async.webhooks import _receiver as receiver_module
from akool_reference import ref_cbc_encrypt_raw, ref_decrypt, ref_encrypt, ref_iv, ref_pad
from conftest import CLIENT_ID, CLIENT_SECRET

NOW = 1_750_000_000.0
NOW_MS = int(NOW * 1000)
JOB_ID = "6650c0ffee1234567890abcd"
COMPLETED = {"_id": JOB_ID, "status": 3, "type": "image", "url": "https://cdn.akool.test/a.png"}
REFUSAL = b'{"error": "invalid callback"}'
"""The receiver's one answer body (status 400) to every POST that is not a genuine callback."""
UNOPENED = (
    "the callback does not decrypt with this account's client secret into a job status: a "
    "wrong client_secret, or a forged or damaged callback"
)
"""The verifier's one message for every refusal after the signature check."""
BAD_TIMESTAMP = (
    "the callback's timestamp is not epoch milliseconds: an integer from 0 to "
    "253402300799999, or its decimal digits as a string"
)
REASONS = {"too_large", "malformed", "signature", "stale", "decrypt"}


def attacker_signature(timestamp: object, nonce: object, data: object) -> str:
    """The signature anyone who knows the client id computes; lone surrogates passed through."""
    parts = sorted([CLIENT_ID, str(timestamp), str(nonce), str(data)])
    joined = "".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.sha1(joined, usedforsecurity=False).hexdigest()


def signed(timestamp: object = NOW_MS, nonce: object = "1529", data: object = "") -> dict[str, Any]:
    """An envelope with these fields, signed as the attacker can sign it."""
    return {
        "signature": attacker_signature(timestamp, nonce, data),
        "dataEncrypt": data,
        "timestamp": timestamp,
        "nonce": nonce,
    }


def sealed(plaintext: bytes, **fields: Any) -> dict[str, Any]:
    """A genuine envelope around ``plaintext``: encrypted with the secret, then signed."""
    return signed(data=ref_encrypt(plaintext, CLIENT_ID, CLIENT_SECRET), **fields)


def raw_ciphertext(raw: bytes) -> str:
    """Base64 of ciphertext blocks chosen by the attacker, unpadded and unencrypted by them."""
    return base64.b64encode(raw).decode()


def encrypted_unpadded(padded: bytes) -> str:
    """Encrypt already padded (or deliberately badly padded) blocks with the real secret."""
    raw = ref_cbc_encrypt_raw(CLIENT_SECRET.encode(), ref_iv(CLIENT_ID), padded)
    return raw_ciphertext(raw)


def dumps(value: object) -> bytes:
    """JSON as a sender writes it; lone surrogates become ``\\ud800`` escapes."""
    return json.dumps(value).encode()


def verifier(**kwargs: Any) -> WebhookVerifier:
    kwargs.setdefault("clock", lambda: NOW)
    return WebhookVerifier(CLIENT_ID, CLIENT_SECRET, **kwargs)


def refusal(body: Any) -> WebhookVerificationError:
    with pytest.raises(WebhookVerificationError) as caught:
        verifier().verify(body)
    return caught.value


def digits_from(zero: int, number: int) -> str:
    """``number`` in the decimal digits of another script, whose zero is ``chr(zero)``."""
    return "".join(chr(zero + int(digit)) for digit in str(number))


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


# -- the leaks an attacker found -----------------------------------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    [
        pytest.param("²", id="superscript-two"),
        pytest.param(digits_from(0x0660, NOW_MS), id="arabic-indic"),
        pytest.param(digits_from(0xFF10, NOW_MS), id="fullwidth"),
        pytest.param("17107579816O9", id="letter-o"),
        pytest.param(" 1710757981609", id="leading-space"),
        pytest.param("+1710757981609", id="plus-sign"),
        pytest.param("", id="empty"),
        pytest.param("9" * 5000, id="5000-digit-text"),
        pytest.param("9999999999999999", id="past-year-9999"),
    ],
)
@pytest.mark.parametrize("is_signed", [False, True], ids=["unsigned", "signed"])
def test_timestamps_that_are_not_ascii_epoch_millis_are_malformed(
    timestamp: str, is_signed: bool
) -> None:
    """Unicode digits ("²" passes str.isdigit, then int() fails) and out-of-range text."""
    envelope = signed(timestamp=timestamp) if is_signed else {**signed(), "timestamp": timestamp}

    error = refusal(dumps(envelope))

    assert ("malformed", BAD_TIMESTAMP) == (error.reason, str(error))


@pytest.mark.parametrize(
    "timestamp",
    [
        pytest.param(10**5000, id="5000-digits"),
        pytest.param(10**400, id="beyond-float"),
        pytest.param(-(10**30), id="huge-negative"),
        pytest.param(253_402_300_800_000, id="one-past-year-9999"),
    ],
)
def test_huge_integer_timestamps_in_a_mapping_are_malformed(timestamp: int) -> None:
    """Parsed by someone else: no ValueError from str(), no OverflowError from the tolerance."""
    envelope = {**signed(), "timestamp": timestamp}

    error = refusal(envelope)

    assert ("malformed", BAD_TIMESTAMP) == (error.reason, str(error))


@pytest.mark.parametrize(
    ("literal", "says"),
    [
        pytest.param("9" * 5000, "JSON with a number longer than 64 characters", id="5000-digits"),
        pytest.param("9" * 20, "JSON with an integer beyond +-9223372036854775807", id="20-digit"),
        pytest.param("1e999", "JSON with a number too large for a float", id="1e999"),
        pytest.param("1." + "0" * 70, "JSON with a number longer than 64 characters", id="long"),
        pytest.param("NaN", "JSON with NaN, which the JSON standard does not allow", id="nan"),
        pytest.param("-Infinity", "JSON with -Infinity, which the JSON", id="-infinity"),
    ],
)
@pytest.mark.parametrize("field", ["timestamp", "elsewhere"])
def test_numbers_out_of_range_anywhere_in_the_body_are_malformed(
    literal: str, says: str, field: str
) -> None:
    """A number is bounded while it is parsed, whichever key holds it."""
    envelope = json.dumps({**signed(), field: "__N__"}).replace('"__N__"', literal)

    error = refusal(envelope.encode())

    assert "malformed" == error.reason
    assert str(error).startswith(f"the callback is {says}")


@pytest.mark.parametrize(
    "field", ["nonce", "signature", "dataEncrypt", "timestamp"], ids=lambda field: field
)
@pytest.mark.parametrize("form", ["bytes", "str", "mapping"])
def test_lone_surrogates_in_any_field_are_malformed(field: str, form: str) -> None:
    """``\\ud800`` in JSON decodes to a string UTF-8 cannot encode: refused before signing."""
    envelope = {**signed(nonce="15\ud80029"), field: "15\ud80029"}
    body: Any = {"bytes": dumps(envelope), "str": json.dumps(envelope), "mapping": envelope}[form]

    error = refusal(body)

    assert "malformed" == error.reason
    assert f"the callback's {field} is not" in str(error)


def test_a_raw_lone_surrogate_in_a_str_body_is_malformed() -> None:
    """Not an escape: the character itself, in a str a framework handed over."""
    body = json.dumps(signed(nonce="__")).replace('"__"', '"\ud800"')

    error = refusal(body)

    assert "malformed" == error.reason
    assert "the callback's nonce is not a string of at most 256 characters of UTF-8 text" == str(
        error
    )


@pytest.mark.parametrize(
    ("field", "value", "what"),
    [
        pytest.param("signature", "é" * 40, "at most 128 ASCII characters (40 hex)", id="sig-é"),
        pytest.param("signature", "a" * 129, "at most 128 ASCII characters (40 hex)", id="sig-129"),
        pytest.param("dataEncrypt", "ÄÖÜ=", "at most 16384 ASCII characters (base64)", id="data"),
        pytest.param("nonce", "1" * 257, "at most 256 characters of UTF-8 text", id="nonce-257"),
        pytest.param("nonce", ["1529"], "at most 256 characters of UTF-8 text", id="nonce-list"),
    ],
)
def test_fields_are_bounded_in_length_and_alphabet(field: str, value: Any, what: str) -> None:
    error = refusal(dumps({**signed(), field: value}))

    assert ("malformed", f"the callback's {field} is not a string of {what}") == (
        error.reason,
        str(error),
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(deep(30_000).encode(), id="30k-arrays"),
        pytest.param('{"a":' * 10_000 + "1" + "}" * 10_000, id="10k-objects-str"),
        pytest.param(dumps({**signed(), "extra": json.loads(deep(32))}), id="33-in-a-key"),
        pytest.param(deep(30_000)[:-5].encode(), id="unclosed"),
    ],
)
def test_deep_nesting_is_malformed_not_a_recursion_error(body: bytes | str) -> None:
    error = refusal(body)

    assert ("malformed", "the callback is JSON nested more than 32 levels deep") == (
        error.reason,
        str(error),
    )


def test_brackets_and_escaped_quotes_inside_strings_are_not_nesting() -> None:
    """The depth is measured on the structure: quotes, escapes and brackets in a string are
    text. A genuine callback whose nonce is full of them verifies."""
    nonce = '\\"' + "[{" * 60 + '"\\'
    envelope = sealed(json.dumps(COMPLETED).encode(), nonce=nonce)

    event = verifier().verify(dumps(envelope))

    assert (JOB_ID, nonce) == (event.id, event.nonce)


def test_wide_but_shallow_json_is_read() -> None:
    """Many brackets side by side are not depth: the envelope is judged on its fields."""
    body = dumps({"others": [[], {}, [[]]] * 30})

    error = refusal(body)

    assert "the callback lacks signature, dataEncrypt, timestamp, nonce" in str(error)


def test_a_backslash_outside_any_string_is_not_json() -> None:
    error = refusal(b"\\n" + b"[]" * 40)

    assert ("malformed", "the callback is not JSON (Expecting value)") == (
        error.reason,
        str(error),
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b" " * (MAX_BODY_BYTES + 1), id="bytes"),
        pytest.param(bytearray(MAX_BODY_BYTES + 1), id="bytearray"),
        pytest.param(memoryview(b" " * (MAX_BODY_BYTES + 1)), id="memoryview"),
        pytest.param(memoryview(bytearray(MAX_BODY_BYTES + 8)).cast("I"), id="memoryview-I"),
        pytest.param(b"[" * 10_000_000, id="10-MB-of-brackets"),
    ],
)
def test_oversized_bodies_are_refused_before_reading(body: Any) -> None:
    """The size is bytes, whatever the buffer's item size: a view of 4-byte ints counts 4."""
    error = refusal(body)

    assert "too_large" == error.reason
    assert f"more than the {MAX_BODY_BYTES} accepted" in str(error)


def test_a_memoryview_of_a_genuine_callback_verifies() -> None:
    body = memoryview(dumps(sealed(json.dumps(COMPLETED).encode())))

    assert JOB_ID == verifier().verify(body).id


def test_a_zero_padded_text_timestamp_is_signed_as_sent() -> None:
    """Akool signs the timestamp as it sends it: the digits are not re-written before checking."""
    event = verifier().verify(
        dumps(sealed(json.dumps(COMPLETED).encode(), timestamp="0" + str(NOW_MS)))
    )

    assert NOW_MS == event.timestamp


@pytest.mark.parametrize(
    ("client_id", "client_secret", "says"),
    [
        pytest.param("id-\ud800", CLIENT_SECRET, "client_id must be a non-empty string", id="id"),
        pytest.param(CLIENT_ID, "secret-\udfff-of-24-by", "client_secret must be", id="secret"),
    ],
)
def test_credentials_with_lone_surrogates_are_invalid_input(
    client_id: str, client_secret: str, says: str
) -> None:
    """Not a UnicodeEncodeError from deriving the IV or the key."""
    with pytest.raises(ak.InvalidInput, match=says):
        WebhookVerifier(client_id, client_secret)


# -- no oracle after the signature ---------------------------------------------------------------

GOOD_PADDING_NOT_JSON = ref_pad(b"this is not json")
BAD_PADDING = b"0123456789abcdef" + b"x" * 15 + b"\x00"

AFTER_THE_SIGNATURE = [
    pytest.param(signed(data="not base64!"), id="not-base64"),
    pytest.param(signed(data=raw_ciphertext(b"q" * 15)), id="partial-block"),
    pytest.param(signed(data=""), id="empty"),
    pytest.param(signed(data=encrypted_unpadded(BAD_PADDING)), id="bad-padding"),
    pytest.param(signed(data=encrypted_unpadded(GOOD_PADDING_NOT_JSON)), id="good-padding-text"),
    pytest.param(sealed(b"\xff\xfe\xfd"), id="not-utf8"),
    pytest.param(sealed(b"[3]"), id="not-an-object"),
    pytest.param(sealed(deep(33).encode()), id="too-deep"),
    pytest.param(sealed(b'{"_id": "x", "status": ' + b"9" * 5000 + b"}"), id="5000-digits"),
    pytest.param(sealed(dumps({"_id": "x\ud800", "status": 3})), id="surrogate-id"),
    pytest.param(sealed(dumps({"_id": "a\nb", "status": 3})), id="unprintable-id"),
    pytest.param(sealed(dumps({"_id": "x" * 129, "status": 3})), id="long-id"),
    pytest.param(sealed(dumps({"_id": "x", "status": 7})), id="status-7"),
    pytest.param(sealed(dumps({"_id": "x", "status": True})), id="status-true"),
    pytest.param(sealed(dumps({"status": 3})), id="no-id"),
]


@pytest.mark.parametrize("envelope", AFTER_THE_SIGNATURE)
def test_every_failure_after_the_signature_is_one_reason_and_one_message(
    envelope: dict[str, Any],
) -> None:
    error = refusal(dumps(envelope))

    assert ("decrypt", UNOPENED) == (error.reason, str(error))
    assert error.__cause__ is None
    assert error.__suppress_context__


@attrs.frozen
class RawAnswer:
    """Everything an ASGI app sent for one request, as the sender's socket would see it."""

    messages: tuple[tuple[tuple[str, Any], ...], ...]
    chunks_read: int


async def call_asgi(
    app: Any, chunks: list[bytes], *, disconnect_after: int | None = None
) -> RawAnswer:
    """Drive an ASGI app with these body chunks; ``disconnect_after`` cuts the body short."""
    read = 0

    async def receive() -> MutableMapping[str, Any]:
        nonlocal read
        if read == len(chunks) or read == disconnect_after:
            return {"type": "http.disconnect"}
        read += 1
        return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}

    sent: list[tuple[tuple[str, Any], ...]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(tuple((key, _frozen(value)) for key, value in message.items()))

    scope = {"type": "http", "method": "POST", "path": "/akool/webhook", "headers": []}
    await app(scope, receive, send)
    return RawAnswer(tuple(sent), read)


def _frozen(value: Any) -> Any:
    return tuple(tuple(pair) for pair in value) if isinstance(value, list) else value


def refusal_messages() -> tuple[tuple[tuple[str, Any], ...], ...]:
    return (
        (
            ("type", "http.response.start"),
            ("status", 400),
            (
                "headers",
                ((b"content-type", b"application/json"), (b"content-length", b"29")),
            ),
        ),
        (("type", "http.response.body"), ("body", REFUSAL)),
    )


def receiver() -> WebhookReceiver:
    events: list[WebhookEvent] = []
    return WebhookReceiver(verifier(), events.append)


@pytest.mark.anyio
async def test_bad_padding_and_good_padding_that_is_not_json_get_byte_identical_answers() -> None:
    """The two answers a padding oracle needs to tell apart are the same bytes."""
    app = receiver()
    bad = dumps(signed(data=encrypted_unpadded(BAD_PADDING)))
    not_json = dumps(signed(data=encrypted_unpadded(GOOD_PADDING_NOT_JSON)))

    answers = {await call_asgi(app, [bad]), await call_asgi(app, [not_json])}

    assert {RawAnswer(refusal_messages(), 1)} == answers
    assert {"decrypt": 2} == dict(app.rejected)


@pytest.mark.anyio
async def test_a_padding_oracle_attack_learns_nothing() -> None:
    """The first step of the attack that decrypted a captured 144-byte callback: put a block
    of the attacker's before the captured last block, try all 256 values of its last byte and
    re-sign each; at least one decrypts to valid padding, and yet every answer is the same."""
    captured = base64.b64decode(sealed(dumps(COMPLETED))["dataEncrypt"])
    app = receiver()
    answers: set[RawAnswer] = set()
    valid_padding = 0
    for guess in range(256):
        data = raw_ciphertext(bytes(15) + bytes([guess]) + captured[-16:])
        with contextlib.suppress(AssertionError):  # the reference's "bad padding"
            ref_decrypt(data, CLIENT_ID, CLIENT_SECRET)
            valid_padding += 1
        answers.add(await call_asgi(app, [dumps(signed(data=data))]))

    assert valid_padding >= 1  # the oracle would have shown these
    assert {RawAnswer(refusal_messages(), 1)} == answers
    assert {"decrypt": 256} == dict(app.rejected)


# -- the receiver --------------------------------------------------------------------------------

HOSTILE_BODIES = [
    pytest.param(dumps({**signed(), "timestamp": "²"}), id="timestamp-superscript"),
    pytest.param(dumps(signed(nonce="\ud800")), id="surrogate-nonce"),
    pytest.param(dumps({**signed(), "signature": "\udfff" * 40}), id="surrogate-signature"),
    pytest.param(json.dumps(signed()).replace(str(NOW_MS), "9" * 5000).encode(), id="5000-digits"),
    pytest.param(deep(30_000).encode(), id="deep"),
    pytest.param(dumps(signed(timestamp=10**300)), id="signed-huge-timestamp"),
    pytest.param(b"\xc3\x28", id="invalid-utf8"),
    pytest.param(b"", id="empty"),
    pytest.param(dumps(signed(data=encrypted_unpadded(BAD_PADDING))), id="bad-padding"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("body", HOSTILE_BODIES)
async def test_the_receiver_gives_the_one_refusal_to_hostile_bodies(body: bytes) -> None:
    app = receiver()

    answer = await call_asgi(app, [body])

    assert refusal_messages() == answer.messages
    assert 1 == sum(app.rejected.values())
    assert 0 == app.accepted


@pytest.mark.anyio
async def test_a_sender_that_leaves_mid_body_is_refused_and_counted() -> None:
    app = receiver()
    body = dumps(sealed(dumps(COMPLETED)))

    answer = await call_asgi(app, [body[:40], body[40:]], disconnect_after=1)

    assert (refusal_messages(), 1) == (answer.messages, answer.chunks_read)
    assert ({"disconnected": 1}, 0) == (dict(app.rejected), app.accepted)


@pytest.mark.anyio
async def test_a_sender_that_trickles_its_body_is_refused_at_the_deadline() -> None:
    """A slowloris sender (a byte now and then, never the whole body) is refused with the one
    answer once the body deadline has passed (virtual time), and counted as too slow."""
    app = receiver()
    started = anyio.current_time()
    received = 0

    async def receive() -> MutableMapping[str, Any]:
        nonlocal received
        received += 1
        await anyio.sleep(5)
        return {"type": "http.request", "body": b"{", "more_body": True}

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/akool/webhook", "headers": []}
    await app(scope, receive, send)

    assert CALLBACK_BODY_DEADLINE == anyio.current_time() - started
    assert (400, REFUSAL) == (sent[0]["status"], sent[1]["body"])
    assert ({"too_slow": 1}, 0) == (dict(app.rejected), app.accepted)
    assert 2 == received  # one byte by 5 s; the second read is cut short at 10 s


@pytest.mark.real_time
@pytest.mark.anyio
async def test_slow_senders_over_a_real_server_are_let_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through hypercorn: twenty connections that send headers then trickle the body each get
    the one refusal once the (shortened) deadline passes, and a genuine sender meanwhile gets
    its 200: slow senders hold nothing for long."""
    monkeypatch.setattr(receiver_module, "CALLBACK_BODY_DEADLINE", 0.5)
    app = receiver()
    head = b"POST /akool/webhook HTTP/1.1\r\nhost: x\r\ncontent-length: 60000\r\n\r\n"

    async def slow_sender(url: httpx.URL, answers: list[bytes]) -> None:
        async with await anyio.connect_tcp(url.host, url.port or 80) as stream:
            await stream.send(head)
            answer = b""
            with anyio.move_on_after(5):
                while b"invalid callback" not in answer:
                    with anyio.move_on_after(0.1):
                        answer += await stream.receive()
                    if b"invalid callback" not in answer:
                        await stream.send(b"{")
            answers.append(answer)

    answers: list[bytes] = []
    started = time.perf_counter()
    async with serve_asgi(app) as base:
        url = httpx.URL(base)
        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(slow_sender, url, answers)
            async with httpx.AsyncClient(base_url=base) as client:
                genuine = await client.post(
                    "/akool/webhook", content=dumps(sealed(dumps(COMPLETED)))
                )
    elapsed = time.perf_counter() - started

    assert 200 == genuine.status_code
    assert 20 == len(answers)
    assert all(answer.startswith(b"HTTP/1.1 400") for answer in answers), answers[:1]
    assert {"too_slow": 20} == dict(app.rejected)
    assert elapsed < 5


class BrokenVerifier(WebhookVerifier):
    """A verifier with a bug: it raises something it should not."""

    def verify(self, body: bytes | str | Mapping[str, Any]) -> WebhookEvent:
        raise ZeroDivisionError(len(body))


@pytest.mark.anyio
async def test_a_bug_in_the_verifier_is_logged_and_refused_never_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = WebhookReceiver(BrokenVerifier(CLIENT_ID, CLIENT_SECRET), print)

    with caplog.at_level(logging.ERROR, logger="akool_async.webhooks"):
        answer = await call_asgi(app, [b"{}"])

    assert refusal_messages() == answer.messages
    assert {"error": 1} == dict(app.rejected)
    assert ["the webhook verifier failed; the callback was refused"] == [
        record.getMessage() for record in caplog.records
    ]


@pytest.mark.real_time
@pytest.mark.anyio
async def test_hostile_bodies_over_a_real_server_get_400_never_500() -> None:
    """Through hypercorn, which answers 500 whenever an app raises: every body the attacker
    sent (the six that got a 500 among them) gets the one refusal, byte for byte."""
    app = receiver()
    bodies = [param.values[0] for param in HOSTILE_BODIES]
    async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as client:
        answers = [await client.post("/akool/webhook", content=body) for body in bodies]

    assert [(400, REFUSAL)] * len(bodies) == [(a.status_code, a.content) for a in answers]
    assert (len(bodies), 0) == (sum(app.rejected.values()), app.accepted)


# -- property tests: only the documented errors ever escape --------------------------------------

any_text = st.text(st.characters(codec=None), max_size=40)  # lone surrogates included
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([30, 400, 4000]).map(lambda exponent: 10**exponent)
    | st.just(2**63)
    | st.floats()
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=12,
)
ENVELOPE_KEYS = ["signature", "dataEncrypt", "timestamp", "nonce"]
hostile_timestamps = (
    st.integers(min_value=-(10**20), max_value=10**20)
    | st.sampled_from([NOW_MS, str(NOW_MS), "²", "١٢٣", "", "0" * 20, 10**400, True, 1.5e12])
    | any_text
)
hostile_texts = any_text | st.sampled_from(["", "A" * 20_000, "\ud800", "=" * 16]) | json_values


def as_json_bytes(value: object) -> bytes:
    """JSON text for any value, big integers and NaN included (json.dumps writes them)."""
    try:
        return json.dumps(value).encode("utf-8", "surrogatepass")
    except ValueError:  # an integer past Python's own digit limit for str()
        return b'{"timestamp": ' + b"9" * 5000 + b"}"


@st.composite
def hostile_bodies(draw: st.DrawFn) -> bytes | str | dict[str, Any]:
    """Garbage, envelope look-alikes, envelopes the attacker signed, and genuine envelopes of
    hostile plaintext; as bytes, str, or a parsed mapping."""
    kind = draw(st.sampled_from(["bytes", "text", "json", "signed", "sealed", "nested"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "text":
        return draw(any_text)
    if kind == "nested":
        return deep(draw(st.integers(1, 3000)))
    if kind == "json":
        fields = draw(st.dictionaries(st.sampled_from(ENVELOPE_KEYS) | any_text, json_values))
        return as_json_bytes(fields)
    if kind == "signed":
        envelope = signed(
            timestamp=draw(hostile_timestamps),
            nonce=draw(hostile_texts),
            data=draw(hostile_texts | st.binary(max_size=64).map(raw_ciphertext)),
        )
    else:
        plaintext = draw(
            st.binary(max_size=80)
            | json_values.map(as_json_bytes)
            | st.builds(
                lambda job_id, status, kind, url: dumps(
                    {"_id": job_id, "status": status, "type": kind, "url": url}
                ),
                st.just(JOB_ID) | any_text,
                st.sampled_from([1, 2, 3, 4]) | json_scalars,
                json_scalars,
                json_scalars,
            )
        )
        envelope = sealed(plaintext, timestamp=draw(st.sampled_from([NOW_MS, str(NOW_MS)])))
    form = draw(st.sampled_from(["bytes", "str", "mapping"]))
    if form == "mapping":
        return envelope
    encoded = as_json_bytes(envelope)
    return encoded if form == "bytes" else encoded.decode("utf-8", "surrogatepass")


def nesting(value: object) -> int:
    """How deep arrays and objects nest in ``value``: 0 for a scalar."""
    if isinstance(value, list):
        return 1 + max(map(nesting, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(nesting, value.values()), default=0)
    return 0


tricky_text = st.text(st.sampled_from('[]{}"\\ax\n'), max_size=12)
nested_values = st.recursive(
    st.none() | st.integers(-(2**63) + 1, 2**63 - 1) | tricky_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(tricky_text, children, max_size=3)
    ),
    max_leaves=60,
)


@settings(max_examples=300, deadline=2000)
@given(value=nested_values, wrap=st.integers(0, 40))
def test_the_depth_bound_counts_structure_never_text(value: object, wrap: int) -> None:
    """Against the depth of the value itself: strings full of brackets, quotes and
    backslashes never count, and 32 levels are read while 33 are refused."""
    wrapped = value
    for _ in range(wrap):
        wrapped = [wrapped]
    text = json.dumps(wrapped)

    if nesting(wrapped) <= bounded_json.MAX_DEPTH:
        assert wrapped == bounded_json.load(text)
    else:
        with pytest.raises(bounded_json.UnreadableJSON, match="nested more than 32 levels"):
            bounded_json.load(text)


def assert_a_valid_event(event: WebhookEvent) -> None:
    """What a verifier may return: an event whose every field a caller can use."""
    assert event.id.isascii()
    assert event.id.isprintable()
    assert 0 < len(event.id) <= 128
    assert isinstance(event.status, ak.ImageStatus)
    assert 0 <= event.timestamp <= 253_402_300_799_999
    for text in (event.nonce, event.type or "", event.url or ""):
        text.encode()  # no lone surrogate reaches a caller's logs or database


PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(body=hostile_bodies())
def test_the_verifier_raises_only_webhook_verification_error(
    body: bytes | str | dict[str, Any],
) -> None:
    outcome: WebhookEvent | WebhookVerificationError
    try:
        outcome = verifier().verify(body)
    except WebhookVerificationError as error:
        outcome = error
    if isinstance(outcome, WebhookEvent):
        assert_a_valid_event(outcome)
    else:
        assert outcome.reason in REASONS
        assert UNOPENED == str(outcome) or outcome.reason != "decrypt"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=100, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(body=hostile_bodies())
def test_the_receiver_answers_200_or_the_one_refusal(
    backend: str, body: bytes | str | dict[str, Any]
) -> None:
    if isinstance(body, dict):
        body = as_json_bytes(body)
    elif isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    app = receiver()

    answer = anyio.run(call_asgi, app, [body], backend=backend)

    if app.accepted:
        assert 200 == dict(answer.messages[0])["status"]
    else:
        assert refusal_messages() == answer.messages
        assert 1 == sum(app.rejected.values())


# -- a burst of deliveries to the session's listener ---------------------------------------------


@pytest.fixture
def enough_file_descriptors() -> Iterator[None]:
    """2,000 sockets at once (1,000 each side): raise the soft limit where the hard one allows."""
    if sys.platform == "win32":  # no RLIMIT_NOFILE; Windows sockets are not file descriptors
        yield
        return
    import resource  # noqa: PLC0415 - POSIX only

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextlib.asynccontextmanager
async def senders(count: int, connections: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """``count`` clients of ``connections`` each: one client with 1,000 connections spends
    seconds in its own pool bookkeeping, which would test httpx, not the listener."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(httpx.AsyncClient(limits=limits, timeout=30))
            for _ in range(count)
        ]


@pytest.mark.real_time
@pytest.mark.anyio
@pytest.mark.usefixtures("enough_file_descriptors")
async def test_a_burst_of_1000_deliveries_gets_200_for_every_sender() -> None:
    """1,000 callbacks at once, one connection each, to ``webhook_listen``: every sender sees
    its 200 and every callback is handed on (with a listen backlog of 128, 13-61 % of the
    senders saw their connection reset)."""
    now_ms = int(time.time() * 1000)
    bodies = [
        dumps(sealed(dumps({**COMPLETED, "_id": f"{n:024x}"}), timestamp=now_ms, nonce=str(n)))
        for n in range(1000)
    ]
    outcomes: collections.Counter[str] = collections.Counter()
    async with (
        ak.AkoolSession(
            api_key="unused",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            webhook_listen=("127.0.0.1", 0),
        ) as session,
        senders(20, 50) as clients,
    ):
        url = session.webhook_url
        assert url is not None

        async def deliver(client: httpx.AsyncClient, body: bytes) -> None:
            try:
                response = await client.post(url, content=body)
            except httpx.HTTPError as error:
                outcomes[type(error).__name__] += 1
            else:
                outcomes[f"HTTP {response.status_code}"] += 1

        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                for index, body in enumerate(bodies):
                    group.start_soon(deliver, clients[index % len(clients)], body)
        app = session.webhook_app

    assert {"HTTP 200": 1000} == dict(outcomes)
    assert (1000, 0, {}) == (app.accepted, app.duplicates, dict(app.rejected))
