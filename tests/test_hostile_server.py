"""A hostile server on loopback cannot hang, exhaust or fool the SDK, nor get a secret quoted.

Each case drives a real socket (`hostile_server`) through a create, a status read, a credit read
and a download, and asserts the exact typed error, the wall-clock time it took (within three
times the request deadline) and the peak memory the call allocated (tracemalloc, under 50 MB,
where the same bodies used to take gigabytes). A paid create's failure is always
`SubmissionUnknown` carrying what was sent.
"""

from __future__ import annotations

import gzip
import json
import logging
import pathlib
import pickle
import re
import time
import traceback
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, Final

import attrs
import httpx
import pytest

import akool_async as ak
from akool_async._answers import _finish, _stages, _through
from conftest import API_KEY, CLIENT_ID, CLIENT_SECRET, SECRETS, TOKEN
from hostile_server import (
    PNG,
    PNG_START,
    Behaviour,
    HostileServer,
    answer,
    deep_json,
    echo_in_broken_header,
    echo_request,
    endless,
    gzip_bomb,
    hostile_server,
    huge_headers,
    json_answer,
    redirect,
    trickle,
)
from samples import CREATE_BY_PROMPT_PATH, CREDIT_PATH, IMAGE_INFO_PATH, TOKEN_PATH

pytestmark = [pytest.mark.anyio, pytest.mark.real_time]

figures = logging.getLogger("tests.hostile_server")

MiB: Final = 1 << 20
GiB: Final = 1 << 30
MEMORY_BOUND: Final = 50 * MiB
DEADLINE: Final = 1.0
"""Every session's request_deadline here; trickles send a byte every 0.2 s."""
READ_TIMEOUT: Final = 0.6
"""Longer than a trickle's pause, so only the deadline can end a trickle."""
JOB_ID: Final = "64dd82eef0b6684651e90131"
OTHER_ID: Final = "65d3206b83ccf5ab7d46cdc6"
PROMPT: Final = "a red fox in snow"
SENT: Final = {"prompt": PROMPT, "scale": "1:1"}
IMAGE_PATH: Final = "/results/fox.png"
DOWNLOAD_MAX: Final = 4 * MiB
API_PATHS: Final = (CREATE_BY_PROMPT_PATH, IMAGE_INFO_PATH, CREDIT_PATH)


def envelope(data: Any, code: int = 1000) -> dict[str, Any]:
    return {"code": code, "msg": "OK", "data": data}


JOB_ENVELOPE: Final = envelope({"_id": JOB_ID, "image_status": 1})


# -- measuring one call ----------------------------------------------------------------------------


@attrs.frozen
class Measured:
    """What one call raised, how long it took on the wall clock, and its peak allocation."""

    error: ak.AkoolError
    elapsed: float
    peak: int


async def measure(call: Callable[[], Awaitable[Any]]) -> Measured:
    """Run ``call``, which must raise an AkoolError, under tracemalloc and a wall clock."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    started = time.perf_counter()
    try:
        await call()
    except ak.AkoolError as error:
        caught = error
    else:
        pytest.fail("the call succeeded")
    finally:
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return Measured(caught, elapsed, peak)


def session_on(server: HostileServer, **options: Any) -> ak.AkoolSession:
    """A session against ``server``: one attempt per call, the test's timeouts."""
    options.setdefault("api_key", API_KEY)
    options.setdefault("timeout", READ_TIMEOUT)
    options.setdefault("request_deadline", DEADLINE)
    options.setdefault("retry", ak.RetryPolicy(attempts=1))
    return ak.AkoolSession(base_url=server.url, **options)


Call = Callable[[ak.AkoolSession, HostileServer, pathlib.Path], Awaitable[Any]]

CALLS: Final[dict[str, Call]] = {
    "create": lambda s, _, __: s.create_by_prompt(PROMPT),
    "read": lambda s, _, __: s.get_image_info(JOB_ID),
    "credit": lambda s, _, __: s.get_credit(),
    "download": lambda s, server, folder: s.download_url(
        server.url + IMAGE_PATH, folder / "fox.png", max_bytes=DOWNLOAD_MAX
    ),
}


@attrs.frozen
class Case:
    """A hostile answer, for the API paths and (if it applies) the image, and the errors due."""

    api: Behaviour
    image: Behaviour | None
    read_error: type[ak.AkoolError]
    download_error: type[ak.AkoolError] | None = None
    words: str = ""


def trickled_png() -> bytes:
    return PNG_START + bytes(1000)


CASES: Final = {
    "endless-body": Case(
        endless(),
        endless(start=PNG_START, content_type="image/png"),
        ak.InvalidResponse,
        ak.ResponseTooLarge,
        words="more than 1048576 bytes",
    ),
    "trickled-body": Case(
        trickle(json.dumps(JOB_ENVELOPE).encode(), every=0.2),
        trickle(trickled_png(), every=0.2, content_type="image/png"),
        ak.RequestTimeout,
        ak.RequestTimeout,
        words="within the request deadline of 1.0 s",
    ),
    "trickled-headers": Case(
        trickle(json.dumps(JOB_ENVELOPE).encode(), every=0.2, headers_too=True),
        trickle(trickled_png(), every=0.2, headers_too=True, content_type="image/png"),
        ak.RequestTimeout,
        ak.RequestTimeout,
        words="within the request deadline of 1.0 s",
    ),
    "gzip-bomb": Case(
        gzip_bomb(2 * GiB),
        gzip_bomb(2 * GiB, start=PNG_START, content_type="image/png"),
        ak.InvalidResponse,
        ak.ResponseTooLarge,
        words="more than 1048576 bytes once decoded",
    ),
    "deflate-bomb": Case(
        gzip_bomb(2 * GiB, coding="deflate"),
        gzip_bomb(2 * GiB, start=PNG_START, coding="deflate", content_type="image/png"),
        ak.InvalidResponse,
        ak.ResponseTooLarge,
        words="more than 1048576 bytes once decoded",
    ),
    "huge-headers": Case(
        huge_headers(200_000),
        huge_headers(200_000),
        ak.RemoteProtocolError,
        ak.RemoteProtocolError,
    ),
    "deep-json": Case(
        deep_json(100_000),
        None,
        ak.InvalidResponse,
        words="unreadable, JSON nested more than 32 levels deep",
    ),
    "redirect-with-success-envelope": Case(
        redirect(302, "/elsewhere", JOB_ENVELOPE | {"data": {"_id": JOB_ID, "credit": 5}}),
        None,
        ak.HTTPStatusError,
        words="HTTP 302 (a redirect, not followed)",
    ),
    "4xx-with-success-envelope": Case(
        json_answer(JOB_ENVELOPE | {"data": {"_id": JOB_ID, "credit": 5}}, status=400),
        None,
        ak.HTTPStatusError,
        words="HTTP 400 with a success envelope",
    ),
}


@pytest.mark.parametrize(
    ("case", "call"),
    # Downloads follow redirects and read no JSON: only the body cases apply to them.
    [(case, call) for case in CASES for call in CALLS if call != "download" or CASES[case].image],
)
async def test_hostile_answer_is_a_typed_error_in_bounded_time_and_memory(
    case: str, call: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest
) -> None:
    """Each hostile answer ends the call with its typed error, within 3x the deadline, < 50 MB."""
    hostile = CASES[case]
    async with hostile_server() as server:
        for path in API_PATHS:
            server.on(path, hostile.api)
        if hostile.image is not None:
            server.on(IMAGE_PATH, hostile.image)
        server.on("/elsewhere", json_answer(JOB_ENVELOPE))
        async with session_on(server) as session:
            measured = await measure(lambda: CALLS[call](session, server, tmp_path))

    # The figures, for docs and reports: pytest -o log_cli=true --log-cli-level=INFO
    figures.info("%s: %.3f s, peak %d bytes", request.node.name, measured.elapsed, measured.peak)
    error = measured.error
    if call == "create":
        assert ak.SubmissionUnknown is type(error)
        assert (CREATE_BY_PROMPT_PATH, SENT) == (error.endpoint, error.payload)
    elif call == "download":
        assert hostile.download_error is type(error)
    else:
        assert hostile.read_error is type(error)
    if call != "download" or hostile.download_error is not ak.ResponseTooLarge:
        assert hostile.words in str(error)
    assert measured.elapsed < 3 * DEADLINE
    assert measured.peak < MEMORY_BOUND
    assert 1 == len(server.requests)  # one attempt; no redirect followed
    assert [] == [p.name for p in tmp_path.iterdir()]


# -- numbers and ids out of range ------------------------------------------------------------------

HOSTILE_JOBS: Final[dict[str, dict[str, Any]]] = {
    "create-time-past-datetime-max": {"create_time": 253402300799999},
    "create-time-nan": {"create_time": float("nan")},
    "uid-beyond-64-bits": {"uid": 2**70},
    "infinite-credit-cost": {"deduction_credit": float("inf")},
    "4000-digit-credit-cost": {"deduction_credit": 10**4000},
    "traversing-id": {"_id": "../../x/pwned"},
    "absolute-path-id": {"_id": "/etc/passwd"},
    "windows-path-id": {"_id": "C:\\Windows\\win.ini"},
    "traversing-parent-id": {"image_content_model_id": "../../x"},
    "long-id": {"_id": "0" * 1000},
}


# Numbers no JSON reader should hold are refused while parsing; the rest by the decoders.
UNREADABLE = {
    "create-time-nan": "unreadable, JSON with NaN, which the JSON standard does not allow",
    "uid-beyond-64-bits": "unreadable, JSON with an integer beyond +-9223372036854775807",
    "infinite-credit-cost": (
        "unreadable, JSON with Infinity, which the JSON standard does not allow"
    ),
    "4000-digit-credit-cost": "unreadable, JSON with a number longer than 64 characters",
}


def job_answer(overrides: dict[str, Any]) -> Behaviour:
    job = {"_id": JOB_ID, "image_status": 1, "create_time": 1714032863272} | overrides
    return answer(200, json.dumps(envelope(job)).encode())


@pytest.mark.parametrize("call", ["create", "read"])
@pytest.mark.parametrize("field", list(HOSTILE_JOBS))
async def test_number_or_id_out_of_range_is_invalid(
    field: str, call: str, tmp_path: pathlib.Path
) -> None:
    """A number no field can hold, or an id that is a path, is refused when the answer is read."""
    async with hostile_server() as server:
        for path in API_PATHS:
            server.on(path, job_answer(HOSTILE_JOBS[field]))
        async with session_on(server) as session:
            measured = await measure(lambda: CALLS[call](session, server, tmp_path))

    error = measured.error
    words = UNREADABLE.get(field, "not of the documented shape")
    if call == "create":
        assert ak.SubmissionUnknown is type(error)
        assert SENT == error.payload
        assert words in error.reason
    else:
        assert ak.InvalidResponse is type(error)
        assert words in str(error)
    assert 1 == len(server.requests)


@pytest.mark.parametrize(
    ("credit", "words"),
    [
        (10**4000, "JSON with a number longer than 64 characters"),
        (2**53 + 1, "finite number from -9007199254740992"),
        (-(2**60), "finite number from -9007199254740992"),
        ("Infinity", "JSON with Infinity, which the JSON standard does not allow"),
        ("NaN", "JSON with NaN, which the JSON standard does not allow"),
    ],
    ids=["4000-digits", "2**53+1", "-2**60", "infinity", "nan"],
)
async def test_credit_out_of_range_is_invalid(credit: Any, words: str) -> None:
    """A credit no float holds exactly (or not finite) is an InvalidResponse: refused by the
    parser when no JSON reader should hold it, else by the credit decoder."""
    number = credit if isinstance(credit, int) else float(credit)
    async with hostile_server() as server:
        server.on(CREDIT_PATH, answer(200, json.dumps(envelope({"credit": number})).encode()))
        async with session_on(server) as session:
            with pytest.raises(ak.InvalidResponse, match=re.escape(words)):
                await session.get_credit()


async def test_answer_about_another_job_is_invalid() -> None:
    """A status read answered with another job's info is an InvalidResponse naming both ids."""
    async with hostile_server() as server:
        server.on(IMAGE_INFO_PATH, json_answer(envelope({"_id": OTHER_ID, "image_status": 3})))
        async with session_on(server) as session:
            with pytest.raises(ak.InvalidResponse) as caught:
                await session.get_image_info(JOB_ID)

    assert f"describes job {OTHER_ID} where job {JOB_ID} was asked about" in str(caught.value)


async def test_generate_with_a_path_for_an_id_gives_no_handle(tmp_path: pathlib.Path) -> None:
    """generate() on an answer whose id is a path raises SubmissionUnknown: no job, no file."""
    async with hostile_server() as server:
        server.on(CREATE_BY_PROMPT_PATH, job_answer({"_id": "../../x/pwned"}))
        async with session_on(server) as session:
            with pytest.raises(ak.SubmissionUnknown) as caught:
                await session.generate(PROMPT)
            assert 0 == session.stats.jobs_tracked

    assert "'../../x/pwned' is not an Akool id" in caught.value.reason
    assert [] == list(tmp_path.iterdir())


# -- redirects ------------------------------------------------------------------------------------


async def test_redirect_is_not_followed_even_by_a_client_that_follows_them() -> None:
    """A passed client set to follow redirects still does not follow one for an API call."""
    async with hostile_server() as server:
        server.on(IMAGE_INFO_PATH, redirect(307, "/elsewhere", {"code": 1000}))
        server.on("/elsewhere", json_answer(envelope({"_id": JOB_ID, "image_status": 3})))
        async with (
            httpx.AsyncClient(follow_redirects=True, timeout=READ_TIMEOUT) as client,
            session_on(server, http_client=client) as session,
        ):
            with pytest.raises(ak.HTTPStatusError) as caught:
                await session.get_image_info(JOB_ID)

    assert 307 == caught.value.status_code
    assert [IMAGE_INFO_PATH] == [request.path for request in server.requests]


# -- the deadline ---------------------------------------------------------------------------------


async def test_default_deadline_is_the_sum_of_the_timeouts() -> None:
    """With only timeout=0.25, a trickled create ends after 1 s (4 phases) as SubmissionUnknown."""
    async with hostile_server() as server:
        server.on(CREATE_BY_PROMPT_PATH, trickle(b'{"code": 1000}' * 10, every=0.1))
        async with session_on(server, timeout=0.25, request_deadline=ak.NOT_GIVEN) as session:
            assert 1.0 == session.request_deadline
            measured = await measure(lambda: session.create_by_prompt(PROMPT))

    assert ak.SubmissionUnknown is type(measured.error)
    assert "within the request deadline of 1.0 s" in str(measured.error)
    assert 0.9 < measured.elapsed < 3.0


async def test_trickled_reads_are_retried_within_the_retry_budget() -> None:
    """A read cut off at the deadline is retried like any timeout; a create is not."""
    retry = ak.RetryPolicy(attempts=2, wait_initial=0.0, jitter=False)
    async with hostile_server() as server:
        for path in API_PATHS:
            server.on(path, trickle(json.dumps(JOB_ENVELOPE).encode(), every=0.2))
        async with session_on(server, retry=retry, request_deadline=0.5) as session:
            read = await measure(lambda: session.get_image_info(JOB_ID))
            create = await measure(lambda: session.create_by_prompt(PROMPT))

    assert (ak.RequestTimeout, ak.SubmissionUnknown) == (type(read.error), type(create.error))
    assert (2, 1) == (len(server.seen(IMAGE_INFO_PATH)), len(server.seen(CREATE_BY_PROMPT_PATH)))
    assert read.elapsed < 3 * 2 * 0.5


# -- compressed answers Akool might send ----------------------------------------------------------


@pytest.mark.parametrize(
    ("coding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as some servers send
        ("gzip, gzip", lambda data: gzip.compress(gzip.compress(data))),
        ("identity", lambda data: data),
        ("br", lambda data: data),  # a coding the SDK does not decode passes through
    ],
    ids=["gzip", "zlib-deflate", "raw-deflate", "gzip-twice", "identity", "unknown"],
)
async def test_compressed_answers_within_bounds_are_read(
    coding: str, compress: Callable[[bytes], bytes]
) -> None:
    """Answers gzip- or deflate-encoded (or not) are read; only gzip and deflate are asked for."""
    body = compress(json.dumps(envelope({"_id": JOB_ID, "image_status": 3})).encode())
    headers = [("content-type", "application/json"), ("content-encoding", coding)]
    async with hostile_server() as server:
        server.on(IMAGE_INFO_PATH, answer(200, body, headers=headers))
        async with session_on(server) as session:
            info = await session.get_image_info(JOB_ID)

    assert (JOB_ID, ak.ImageStatus.COMPLETED) == (info.id, info.status)
    [request] = server.requests
    assert "gzip, deflate" == dict(request.headers)["accept-encoding"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (gzip.compress(b'{"code": 1000}')[:-12], "gzip data is cut short"),
        (gzip.compress(b"")[:10] + b"\xff garbage", "gzip data could not be decompressed"),
    ],
    ids=["cut-short", "corrupt"],
)
async def test_broken_gzip_answer_is_invalid(body: bytes, words: str) -> None:
    """A gzip answer cut short or corrupt is an InvalidResponse saying so."""
    headers = [("content-type", "application/json"), ("content-encoding", "gzip")]
    async with hostile_server() as server:
        server.on(CREDIT_PATH, answer(200, body, headers=headers))
        async with session_on(server) as session:
            with pytest.raises(ak.InvalidResponse, match=words):
                await session.get_credit()


async def test_download_of_corrupt_gzip_is_not_an_image(tmp_path: pathlib.Path) -> None:
    """A download said to be gzip that does not decompress is NotAnImage, and leaves no file."""
    headers = [("content-type", "image/png"), ("content-encoding", "gzip")]
    async with hostile_server() as server:
        server.on(IMAGE_PATH, answer(200, gzip.compress(PNG_START)[:10] + b"\xff junk", headers))
        async with session_on(server) as session:
            with pytest.raises(ak.NotAnImage, match="gzip data could not be decompressed"):
                await session.download_url(server.url + IMAGE_PATH, tmp_path / "fox.png")

    assert [] == list(tmp_path.iterdir())


@pytest.mark.parametrize("body", ["endless", "gzip-bomb"])
async def test_download_redirect_body_is_never_read(body: str, tmp_path: pathlib.Path) -> None:
    """A download follows a redirect without reading its body, however large, to the image."""
    to_image = [("location", "/real.png")]
    hops = {
        "endless": endless(status=302, headers=to_image),
        "gzip-bomb": gzip_bomb(2 * GiB, status=302, headers=to_image),
    }
    async with hostile_server() as server:
        server.on(IMAGE_PATH, hops[body])
        server.on("/real.png", answer(200, PNG, headers=[("content-type", "image/png")]))
        async with session_on(server) as session:
            tracemalloc.start()
            started = time.perf_counter()
            try:
                saved = await session.download_url(server.url + IMAGE_PATH, tmp_path / "fox.png")
            finally:
                elapsed = time.perf_counter() - started
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()

    assert PNG == saved.path.read_bytes()
    assert [IMAGE_PATH, "/real.png"] == [request.path for request in server.requests]
    assert server.requests[0].sent < 16 * MiB  # the client hung up; nothing like 2 GiB went out
    assert elapsed < DEADLINE
    assert peak < MEMORY_BOUND


# -- the request_deadline option ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, 100.0),
        ({"timeout": 5}, 20.0),
        ({"timeout": httpx.Timeout(5, connect=1, pool=None)}, None),
        ({"timeout": None}, None),
        ({"request_deadline": 7}, 7.0),
        ({"request_deadline": 0.5, "timeout": None}, 0.5),
        ({"request_deadline": None}, None),
        ({"request_deadline": float("inf")}, None),
        ({"http_client": httpx.AsyncClient(timeout=2)}, 8.0),
        ({"http_client": httpx.AsyncClient(timeout=2), "timeout": 3}, 12.0),
    ],
    ids=[
        "default",
        "timeout-5",
        "a-phase-unlimited",
        "no-timeouts",
        "given",
        "given-without-timeouts",
        "none",
        "infinite",
        "client's-timeouts",
        "timeout-over-client's",
    ],
)
def test_request_deadline_defaults_to_the_sum_of_the_timeouts(
    options: dict[str, Any], expected: float | None
) -> None:
    """Not given, the deadline is connect + write + read + pool; None when one is unlimited."""
    assert expected == ak.AkoolSession(api_key=API_KEY, **options).request_deadline


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "10", True])
def test_request_deadline_must_be_positive_seconds(bad: Any) -> None:
    """A deadline that is not a number of seconds > 0 (or None) is refused at once."""
    with pytest.raises(ak.InvalidInput, match=r"request_deadline must be a number of seconds > 0"):
        ak.AkoolSession(api_key=API_KEY, request_deadline=bad)


# -- secrets echoed back ---------------------------------------------------------------------------

AUTHS: Final = {
    "api-key": {"api_key": API_KEY},
    "token": {"token": TOKEN, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    "client-credentials": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
}


def no_secret_in(texts: list[str]) -> list[str]:
    return [secret for secret in SECRETS if any(secret in text for text in texts)]


@pytest.mark.parametrize("echo", ["text-body", "error-msg", "4xx-text-body", "broken-header"])
@pytest.mark.parametrize("call", ["create", "read", "credit"])
@pytest.mark.parametrize("auth", list(AUTHS))
async def test_echoed_credentials_are_never_quoted(
    auth: str, call: str, echo: str, caplog: pytest.LogCaptureFixture, tmp_path: pathlib.Path
) -> None:
    """A server echoing the request (headers and all) gets no credential into errors or logs."""
    caplog.set_level(logging.DEBUG)
    behaviour = {
        "text-body": echo_request(),
        "error-msg": echo_request(as_msg=True),
        "4xx-text-body": echo_request(403),
        "broken-header": echo_in_broken_header(),
    }[echo]
    async with hostile_server() as server:
        for path in API_PATHS:
            server.on(path, behaviour)
        server.on(TOKEN_PATH, json_answer({"code": 1000, "token": TOKEN}))
        options = {"api_key": None, **AUTHS[auth]}
        async with session_on(server, **options) as session:
            measured = await measure(lambda: CALLS[call](session, server, tmp_path))

    error = measured.error
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    texts += [repr(pickle.loads(pickle.dumps(error))), repr(vars(error))]
    # httpcore's own DEBUG trace (not the SDK's) repr()s its parser errors, server bytes and all.
    texts += [r.getMessage() for r in caplog.records if not r.name.startswith("httpcore")]
    assert [] == no_secret_in(texts)
    echoed = [r for r in server.requests if r.path != TOKEN_PATH]
    assert any(secret.encode() in echoed[0].head for secret in SECRETS)  # it was echoed
    if echo != "4xx-text-body":  # a 4xx is not quoted at all
        assert "********" in str(error)  # the echo was quoted, with the credential blanked


async def test_prompt_quoting_the_api_key_is_blanked_in_the_submission() -> None:
    """Even the payload a SubmissionUnknown carries has the credentials blanked."""
    async with hostile_server() as server:
        server.on(CREATE_BY_PROMPT_PATH, echo_request())
        async with session_on(server) as session:
            with pytest.raises(ak.SubmissionUnknown) as caught:
                await session.create_by_prompt(f"a fox holding a sign saying {API_KEY}")

    assert {"prompt": "a fox holding a sign saying ********", "scale": "1:1"} == dict(
        caught.value.payload
    )


# -- found by an attack on the first version of these defences ------------------------------------


def stacked(layers: int, data: bytes) -> bytes:
    for _ in range(layers):
        data = gzip.compress(data)
    return data


@pytest.mark.parametrize("layers", [4, 1_200])
async def test_stacked_compressions_are_refused_not_a_recursion_error(
    layers: int, tmp_path: pathlib.Path
) -> None:
    """A Content-Encoding of "gzip" stacked 1,200 times raised RecursionError from create,
    credit and download: more than three stacked compressions are refused, a typed error."""
    coding = [("content-encoding", ", ".join(["gzip"] * layers))]
    api = answer(200, stacked(layers, json.dumps(JOB_ENVELOPE).encode()), coding)
    image = answer(200, stacked(layers, PNG_START), [*coding, ("content-type", "image/png")])
    async with hostile_server() as server:
        for path in (CREATE_BY_PROMPT_PATH, CREDIT_PATH):
            server.on(path, api)
        server.on(IMAGE_PATH, image)
        async with session_on(server) as session:
            with pytest.raises(ak.SubmissionUnknown) as create:
                await session.create_by_prompt(PROMPT)
            with pytest.raises(ak.InvalidResponse) as credit:
                await session.get_credit()
            with pytest.raises(ak.NotAnImage) as download:
                await session.download_url(server.url + IMAGE_PATH, tmp_path / "fox.png")

    words = f"it stacks {layers} compressions; at most 3 are read"
    assert words in create.value.reason
    assert words in str(credit.value)
    assert words in str(download.value)
    assert [] == list(tmp_path.iterdir())


def test_three_stacked_compressions_are_read() -> None:
    """Up to three stacked compressions are undone as before."""
    body = json.dumps(JOB_ENVELOPE).encode()
    stages = _stages("gzip, gzip, gzip")
    assert body == b"".join([*_through(stages, stacked(3, body)), *_finish(stages)])


async def test_a_credential_echoed_into_result_urls_reaches_no_model() -> None:
    """A server that writes the api key into the image and quadrant URLs (and the prompt):
    the key is blanked before the answer is decoded, so no model, log line, journal or
    manifest can hold it."""
    key_in = f"/img/{API_KEY}/fox.png?sig={API_KEY}"
    job = {
        "_id": JOB_ID,
        "image_status": 3,
        "create_time": 1714032863272,
        "image": "http://example.test" + key_in,
        "upscaled_urls": ["http://example.test" + key_in] * 4,
        "prompt": f"a fox {API_KEY}",
    }
    async with hostile_server() as server:
        server.on(IMAGE_INFO_PATH, json_answer(envelope(job)))
        async with session_on(server) as session:
            info = await session.get_image_info(JOB_ID)

    assert API_KEY not in repr(info) + "".join(info.upscaled_urls) + str(dict(info.extra))
    assert "http://example.test/img/********/fox.png?sig=********" == info.image


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "javascript:alert(1)", "http://example.test/\udc80.png", "/x.png"],
    ids=["file", "javascript", "lone-surrogate", "relative"],
)
async def test_a_result_url_that_is_not_http_is_invalid_response(
    url: str, tmp_path: pathlib.Path
) -> None:
    """A completed job whose image URL is not an absolute http(s) URL: download and
    download_quadrants raise InvalidResponse (the URL came from the server), nothing is
    fetched or written."""
    job = {
        "_id": JOB_ID,
        "image_status": 3,
        "create_time": int(time.time() * 1000),
        "image": url,
        "upscaled_urls": [url] * 4,
    }
    async with hostile_server() as server:
        server.on(IMAGE_INFO_PATH, json_answer(envelope(job)))
        async with session_on(server) as session:
            handle = session.job(JOB_ID)
            with pytest.raises(ak.InvalidResponse, match="is not an absolute http\\(s\\) URL"):
                await handle.download(tmp_path / "out")
            with pytest.raises(ak.InvalidResponse, match="is not an absolute http\\(s\\) URL"):
                await handle.download_quadrants(tmp_path / "quads")

    assert {IMAGE_INFO_PATH} == {request.path for request in server.requests}
    assert [] == list(tmp_path.iterdir())
