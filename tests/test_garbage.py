"""Whatever garbage Akool (or a proxy in front of it) answers, the SDK raises only AkoolErrors.

And a paid create is never sent twice on an answer that does not prove it did nothing.

Hypothesis drives a sync test; each example runs its async body with ``anyio.run`` on the
parametrized backend, in virtual time (trio's MockClock, looptime for asyncio), like conftest's
``anyio_backend`` does for ordinary async tests.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable
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


bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(encode),
    envelopes().map(encode),
    random_data().map(encode),
    damaged_sample().map(encode),
)
statuses = st.just(200) | st.integers(200, 599)
retry_after_headers = st.none() | st.sampled_from(
    ["0", "0.01", "3", "-1", "nan", "inf", "soon", "Wed, 21 Oct 2015 07:28:00 GMT"]
)


@attrs.frozen
class Answer:
    """One garbage HTTP answer, given to every request."""

    status: int
    content: bytes
    retry_after: str | None

    def respond(self, _request: httpx.Request) -> httpx.Response:
        headers = {} if self.retry_after is None else {"retry-after": self.retry_after}
        return httpx.Response(self.status, content=self.content, headers=headers)

    @property
    def proves_not_delivered(self) -> bool:
        """HTTP 429, or an answer the SDK reads as code 1005: the create provably did not run."""
        if self.status == 429:
            return True
        if self.status >= 500:
            return False
        try:
            body = json.loads(self.content)
        except ValueError:
            return False
        code = body.get("code") if isinstance(body, dict) else None
        return type(code) is int and code == 1005


answers = st.builds(Answer, status=statuses, content=bodies, retry_after=retry_after_headers)


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
    ],
    ids=["html", "503", "string-code", "list-data", "429", "1005", "404", "1003"],
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
