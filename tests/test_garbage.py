"""Whatever garbage Akool (or a proxy in front of it) answers, the SDK raises only AkoolErrors.

And a paid create is never sent twice on an answer that does not prove it did nothing.

Hypothesis drives a sync test; each example runs its async body with ``anyio.run`` on the
parametrized backend, in virtual time (trio's MockClock, looptime for asyncio), like conftest's
``anyio_backend`` does for ordinary async tests.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import json
import math
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import attrs
import httpx
import looptime
import pytest
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import akool_async as ak
from akool_async._answers import PIECE, BodyError, Redactor, _finish, _stages, _through, parse_json
from akool_async._constants import MAX_ANSWER_BYTES, MAX_ANSWER_DEPTH
from conftest import API_KEY, BASE_URL, FakeAkool
from samples import (
    CREATE_BY_PROMPT_PATH,
    CREDIT_PATH,
    IMAGE_INFO_PATH,
    INFO_BY_MODEL_ID_RESPONSE,
)

BACKENDS = ["asyncio", "trio"]
POLICY = ak.RetryPolicy(
    attempts=2, wait_initial=0.01, wait_max=0.01, max_retry_after=0.05, jitter=False
)
GARBAGE_SETTINGS = settings(max_examples=100, deadline=None)

# -- strategies -----------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
# Real codes (success, refusals, the rate limit) and wrong-typed look-alikes.
codes = (
    st.sampled_from([1000, 1003, 1005, 1008, 1101, 1108, 4242, -1, 0])
    | st.sampled_from([True, False, "1000", 1000.0, 1005.0, "1005", None, [1000], {"code": 1000}])
    | json_values
)
SAMPLE_JOB = {"_id": "662a10df4197b3af58532e89", "image_status": 1}
INFO_KEYS = [*INFO_BY_MODEL_ID_RESPONSE["data"], "display_buttons", "from", "credit", "prompt"]


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """An envelope whose code, msg and data may each be missing or of any type."""
    body: dict[str, Any] = {}
    for key, values in (("code", codes), ("msg", json_values), ("data", json_values)):
        if draw(st.booleans()):
            body[key] = draw(values)
    body.update(draw(st.dictionaries(st.text(max_size=6), json_values, max_size=2)))
    return body


@st.composite
def random_data(draw: st.DrawFn) -> dict[str, Any]:
    """A success envelope whose data has Akool's field names (and others) with any values."""
    data = draw(
        st.dictionaries(st.sampled_from(INFO_KEYS) | st.text(max_size=8), json_values, max_size=8)
    )
    if draw(st.booleans()):
        data.setdefault("_id", draw(st.text(max_size=24) | json_values))
    if draw(st.booleans()):
        data.setdefault("image_status", draw(st.integers(-1, 6) | json_values))
    return {"code": 1000, "msg": "OK", "data": data}


@st.composite
def damaged_sample(draw: st.DrawFn) -> dict[str, Any]:
    """The docs' infobymodelid answer with some fields given wrong types or removed."""
    body = copy.deepcopy(INFO_BY_MODEL_ID_RESPONSE)
    data = body["data"]
    for key in draw(st.lists(st.sampled_from(sorted(data)), min_size=1, max_size=4, unique=True)):
        if draw(st.booleans()):
            data[key] = draw(json_values)
        else:
            del data[key]
    data["credit"] = draw(json_values)
    return body


def encode(value: Any) -> bytes:
    """JSON bytes, NaN and Infinity included (Python's json reads them back)."""
    return json.dumps(value).encode()


# Hostile sizes and depths, written out by hand: json.dumps itself would recurse on them.
deep_bodies = st.builds(
    lambda code, depth, where: (
        f'{{"code": {code}, "msg": "x", "{where}": {"[" * depth}{"]" * depth}}}'.encode()
    ),
    st.sampled_from([1000, 1005]),
    st.integers(1, 20_000),
    st.sampled_from(["data", "msg", "other"]),
)
huge_numbers = st.builds(
    lambda digits, key: (
        f'{{"code": 1000, "data": {{"_id": "662a10df4197b3af58532e89", "image_status": 1, '
        f'"{key}": {digits}, "credit": {digits}}}}}'.encode()
    ),
    st.integers(15, 6000).map(lambda n: "9" * n) | st.sampled_from(["1e400", "-1e400", "1.5e308"]),
    st.sampled_from(["create_time", "uid", "deduction_credit", "image_status", "type"]),
)
oversized = st.integers(0, 3).map(
    lambda extra: b" " * (MAX_ANSWER_BYTES - 20 + extra * 20) + encode({"code": 1005})
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(encode),
    envelopes().map(encode),
    random_data().map(encode),
    damaged_sample().map(encode),
    deep_bodies,
    huge_numbers,
    oversized,
)
statuses = st.just(200) | st.integers(200, 599)
# How the body goes out: as is, compressed (and said so), or said to be gzip but not.
codings = st.sampled_from([None, "gzip", "deflate", "corrupt"])
retry_after_headers = st.none() | st.sampled_from(
    ["0", "0.01", "3", "-1", "nan", "inf", "soon", "Wed, 21 Oct 2015 07:28:00 GMT"]
)


class Streamed(httpx.AsyncByteStream):
    """A body streamed in pieces, as from a socket: the SDK reads it raw and decodes it itself."""

    def __init__(self, content: bytes) -> None:
        self.content = content

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.content), 64 * 1024):
            yield self.content[start : start + 64 * 1024]


@attrs.frozen
class Answer:
    """One garbage HTTP answer, given to every request."""

    status: int
    content: bytes
    retry_after: str | None
    coding: str | None = None

    def respond(self, _request: httpx.Request) -> httpx.Response:
        headers = {} if self.retry_after is None else {"retry-after": self.retry_after}
        if self.coding is None:
            return httpx.Response(self.status, content=self.content, headers=headers)
        sent = {"gzip": gzip.compress, "deflate": zlib.compress}.get(self.coding, bytes)
        headers["content-encoding"] = "gzip" if self.coding == "corrupt" else self.coding
        return httpx.Response(self.status, stream=Streamed(sent(self.content)), headers=headers)

    @property
    def proves_not_delivered(self) -> bool:
        """HTTP 429, or a 2xx or 4xx answer the SDK reads as code 1005: the create provably did
        not run. (A 3xx or 5xx may come after it ran, whatever its body says.)"""
        if self.status == 429:
            return True
        if self.status // 100 not in {2, 4}:
            return False
        if self.coding == "corrupt" or len(self.content) > MAX_ANSWER_BYTES:
            return False  # unreadable, as a body with no envelope
        try:
            body = parse_json(self.content, max_depth=MAX_ANSWER_DEPTH)
        except ValueError:
            return False
        code = body.get("code") if isinstance(body, dict) else None
        return type(code) is int and code == 1005


answers = st.builds(
    Answer, status=statuses, content=bodies, retry_after=retry_after_headers, coding=codings
)


# -- running an example ---------------------------------------------------------------------------


@attrs.define
class Outcome:
    """What one call did: its result or its AkoolError, and the requests the fake saw."""

    fake: FakeAkool
    result: Any = None
    error: ak.AkoolError | None = None


def run_call(
    backend: str, answer: Answer, call: Callable[[ak.AkoolSession], Awaitable[Any]]
) -> Outcome:
    """Run ``call`` on a fresh session whose every request gets ``answer``, in virtual time.

    Only AkoolError is caught: anything else escapes and fails the test.
    """
    fake = FakeAkool()
    for path in (CREATE_BY_PROMPT_PATH, IMAGE_INFO_PATH, CREDIT_PATH):
        fake.on(path, answer.respond)
    outcome = Outcome(fake)

    async def main() -> None:
        async with (
            httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client,
            ak.AkoolSession(
                api_key=API_KEY, base_url=BASE_URL, http_client=client, retry=POLICY
            ) as session,
        ):
            try:
                outcome.result = await call(session)
            except ak.AkoolError as error:
                outcome.error = error

    options: dict[str, Any] = (
        {"clock": trio.testing.MockClock(autojump_threshold=0)}
        if backend == "trio"
        else {"loop_factory": looptime.new_event_loop}
    )
    anyio.run(main, backend=backend, backend_options=options)
    return outcome


# -- the properties -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@GARBAGE_SETTINGS
@given(answer=answers)
def test_get_image_info_garbage_raises_only_akool_errors(backend: str, answer: Answer) -> None:
    """get_image_info on garbage returns an ImageInfo or raises an AkoolError, within 2 tries."""
    outcome = run_call(backend, answer, lambda s: s.get_image_info("662a10df4197b3af58532e89"))

    assert (outcome.result is None) == (outcome.error is not None)
    if outcome.error is None:
        assert isinstance(outcome.result, ak.ImageInfo)
    assert len(outcome.fake.sent(IMAGE_INFO_PATH)) in {1, 2}
    assert len(outcome.fake.requests) == len(outcome.fake.sent(IMAGE_INFO_PATH))


@pytest.mark.parametrize("backend", BACKENDS)
@GARBAGE_SETTINGS
@given(answer=answers)
def test_get_credit_garbage_raises_only_akool_errors(backend: str, answer: Answer) -> None:
    """get_credit on garbage returns a number or raises an AkoolError, within 2 tries."""
    outcome = run_call(backend, answer, lambda s: s.get_credit())

    assert (outcome.result is None) == (outcome.error is not None)
    if outcome.error is None:
        assert type(outcome.result) in {int, float}
        assert not isinstance(outcome.result, bool)
    assert len(outcome.fake.sent(CREDIT_PATH)) in {1, 2}


@pytest.mark.parametrize("backend", BACKENDS)
@GARBAGE_SETTINGS
@given(answer=answers)
def test_create_garbage_never_sends_twice(backend: str, answer: Answer) -> None:
    """A create on garbage raises only AkoolErrors and is resent only after 429 or code 1005."""
    outcome = run_call(backend, answer, lambda s: s.create_by_prompt("a red fox in snow"))

    posts = outcome.fake.sent(CREATE_BY_PROMPT_PATH)
    expected_posts = 2 if answer.proves_not_delivered else 1
    assert expected_posts == len(posts)
    assert [{"prompt": "a red fox in snow", "scale": "1:1"}] * expected_posts == [
        FakeAkool.body(r) for r in posts
    ]
    # An ambiguous failure of a paid create is reported as such, never as a bare transport error.
    assert not isinstance(outcome.error, ak.ServerError | ak.InvalidResponse)
    if isinstance(outcome.error, ak.SubmissionUnknown):
        assert {"prompt": "a red fox in snow", "scale": "1:1"} == dict(outcome.error.payload)
    if outcome.error is None:
        assert isinstance(outcome.result, ak.ImageInfo)


# -- a few pinned examples, so the edge cases run on every run ------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("answer", "error_type"),
    [
        (Answer(200, b"<html>502 Bad Gateway</html>", None), ak.SubmissionUnknown),
        (Answer(503, b"", None), ak.SubmissionUnknown),
        (Answer(200, encode({"code": "1000", "data": {}}), None), ak.SubmissionUnknown),
        (Answer(200, encode({"code": 1000, "data": []}), None), ak.SubmissionUnknown),
        (Answer(429, b"slow down", "0"), ak.TooManyRequests),
        (Answer(200, encode({"code": 1005, "msg": "too frequent"}), None), ak.RateLimited),
        (Answer(404, b"not found", None), ak.HTTPStatusError),
        (Answer(200, encode({"code": 1003, "msg": 7}), None), ak.ParameterError),
        (
            Answer(200, b'{"code": 1000, "data": ' + b"[" * 5000 + b"]" * 5000 + b"}", None),
            ak.SubmissionUnknown,
        ),
        (Answer(302, encode({"code": 1000, "data": SAMPLE_JOB}), None), ak.SubmissionUnknown),
        (Answer(303, encode({"code": 1005}), None), ak.SubmissionUnknown),
        (Answer(400, encode({"code": 1000, "data": SAMPLE_JOB}), None), ak.SubmissionUnknown),
        (Answer(400, encode({"code": 1005}), None, "gzip"), ak.RateLimited),
        (
            Answer(200, encode({"code": 1000, "data": SAMPLE_JOB}), None, "corrupt"),
            ak.SubmissionUnknown,
        ),
        (Answer(400, encode({"code": 1003}), None, "corrupt"), ak.HTTPStatusError),
        (Answer(200, b" " * MAX_ANSWER_BYTES + encode({"code": 1005}), None), ak.SubmissionUnknown),
    ],
    ids=[
        "html",
        "503",
        "string-code",
        "list-data",
        "429",
        "1005",
        "404",
        "1003",
        "deep",
        "302",
        "303-1005",
        "400-1000",
        "400-1005-gzip",
        "corrupt-gzip",
        "400-corrupt-gzip",
        "oversized",
    ],
)
def test_create_pinned_garbage(backend: str, answer: Answer, error_type: type[Exception]) -> None:
    """Typical garbage gives the exact error type, with one POST or (429, 1005) two."""
    outcome = run_call(backend, answer, lambda s: s.create_by_prompt("a red fox in snow"))

    assert error_type is type(outcome.error)
    assert (2 if answer.proves_not_delivered else 1) == len(
        outcome.fake.sent(CREATE_BY_PROMPT_PATH)
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "content",
    [
        encode({"code": 1000, "data": {"_id": None, "image_status": 1}}),
        encode({"code": 1000, "data": {"_id": 5, "image_status": 1}}),
    ],
    ids=["null-id", "number-id"],
)
def test_create_without_string_id_is_submission_unknown(backend: str, content: bytes) -> None:
    """Code 1000 without a usable string `_id`: the job exists but is lost to us, so say so."""
    outcome = run_call(backend, Answer(200, content, None), lambda s: s.generate("a red fox"))

    assert ak.SubmissionUnknown is type(outcome.error)
    assert 1 == len(outcome.fake.sent(CREATE_BY_PROMPT_PATH))


# -- the bounded readers themselves ----------------------------------------------------------------


def depth_of(value: Any) -> int:
    """How deep arrays and objects nest in ``value``."""
    if isinstance(value, dict):
        return 1 + max((depth_of(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(item) for item in value), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(content=st.binary(max_size=300) | deep_bodies | huge_numbers)
def test_parse_json_raises_only_value_error(content: bytes) -> None:
    """Any bytes parse, or raise ValueError (never RecursionError, never OverflowError)."""
    with contextlib.suppress(ValueError):
        parse_json(content, max_depth=MAX_ANSWER_DEPTH)


@settings(max_examples=300, deadline=None)
@given(value=json_values | st.text().map(lambda text: ['[{"', text, "}]", {"[": "]"}]))
def test_parse_json_reads_what_json_reads_within_the_depth(value: Any) -> None:
    """Within the bounds parse_json is json.loads; brackets inside strings do not count.

    Beyond them (nesting over the bound, an integer past 64 bits, a float that is not finite)
    it is a ValueError, never a value the models could not hold.
    """
    content = encode(value)
    if depth_of(value) > 3 or not numbers_within(value):
        with pytest.raises(ValueError):
            parse_json(content, max_depth=3)
        return
    assert encode(json.loads(content)) == encode(parse_json(content, max_depth=3))


def numbers_within(value: Any) -> bool:
    """Whether every number in ``value`` is one the bounded parser reads."""
    if isinstance(value, dict):
        return all(numbers_within(item) for item in value.values())
    if isinstance(value, list):
        return all(numbers_within(item) for item in value)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) < 2**63
    return True


@pytest.mark.parametrize("depth", [0, 1, 32, 33, 100_000])
def test_parse_json_depth_bound_is_exact(depth: int) -> None:
    """Nesting up to the bound parses; one level deeper is a ValueError saying the bound."""
    content = ("[" * depth + "]" * depth).encode() or b"1"
    if depth <= MAX_ANSWER_DEPTH:
        assert json.loads(content) == parse_json(content, max_depth=MAX_ANSWER_DEPTH)
    else:
        with pytest.raises(ValueError, match="nested more than 32 levels deep"):
            parse_json(content, max_depth=MAX_ANSWER_DEPTH)


@settings(max_examples=200, deadline=None)
@given(
    payload=st.binary(max_size=2000),
    coding=st.sampled_from(["gzip", "deflate", "x-gzip", "gzip, deflate", "identity, gzip"]),
    compressed=st.booleans(),
    cut=st.integers(0, 64),
)
def test_inflating_raises_only_body_errors_and_bounds_pieces(
    payload: bytes, coding: str, compressed: bool, cut: int
) -> None:
    """Any body under any coding decodes in pieces of at most PIECE bytes, or is a BodyError."""
    body = payload
    if compressed:
        for name in [part.strip() for part in coding.split(",")]:
            body = {"identity": bytes, "deflate": zlib.compress}.get(name, gzip.compress)(body)
        body = body[: len(body) - cut]  # maybe cut short
    stages = _stages(coding)
    pieces: list[bytes] = []
    problem: BodyError | None = None
    try:
        for start in range(0, len(body), 7):
            pieces.extend(_through(stages, body[start : start + 7]))
        pieces.extend(_finish(stages))
    except BodyError as error:
        problem = error
    assert all(0 < len(piece) <= PIECE for piece in pieces)
    if problem is not None:
        assert not problem.too_large
    elif compressed and cut == 0:
        assert payload == b"".join(pieces)


def test_data_after_the_end_of_a_gzip_stream_is_ignored() -> None:
    """As httpx does, bytes after a complete gzip stream (in its chunk or later) are dropped."""
    stages = _stages("gzip")
    body = gzip.compress(b'{"code": 1000}')

    pieces = [*_through(stages, body + b"trailing"), *_through(stages, b"more"), *_finish(stages)]

    assert [b'{"code": 1000}'] == pieces


def test_a_bomb_inflates_one_piece_at_a_time() -> None:
    """64 KiB of gzip that inflates to 64 MiB comes out in pieces of at most PIECE bytes."""
    body = gzip.compress(bytes(64 << 20), compresslevel=9)
    pieces = 0
    for piece in _through(_stages("gzip"), body):
        assert len(piece) <= PIECE
        pieces += 1
        if pieces == 4:
            break
    assert 4 == pieces


@settings(max_examples=200, deadline=None)
@given(
    secrets=st.lists(
        st.text(min_size=6, max_size=20).filter(lambda secret: "*" not in secret),
        min_size=1,
        max_size=3,
    ),
    text=st.text(max_size=60),
    at=st.integers(0, 60),
)
def test_redactor_leaves_no_secret(secrets: list[str], text: str, at: int) -> None:
    """Whatever text surrounds them, every known secret of 6+ characters is blanked."""
    redact = Redactor(secrets)
    for secret in secrets:
        text = text[:at] + secret + text[at:]

    redacted = redact(text)

    assert [] == [secret for secret in secrets if secret in redacted]
    assert {"a": [redacted, 7, None]} == redact.value({"a": (text, 7, None)})
