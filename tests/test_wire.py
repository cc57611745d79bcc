"""The wire calls: exact requests per auth mode, the token flow, retries, the paid-create rule."""

from __future__ import annotations

from typing import Any

import anyio
import h11
import httpx
import pytest

import akool_async as ak
from conftest import API_KEY, BASE_URL, CLIENT_ID, CLIENT_SECRET, TOKEN, FakeAkool, envelope

pytestmark = pytest.mark.anyio

PROMPT_PATH = "/api/open/v3/content/image/createbyprompt"
BUTTON_PATH = "/api/open/v3/content/image/createbybutton"
INFO_PATH = "/api/open/v3/content/image/infobymodelid"
CREDIT_PATH = "/api/open/v3/faceswap/quota/info"
TOKEN_PATH = "/api/open/v3/getToken"

JOB = {"_id": "64dd82eef0b6684651e90131", "image_status": 1, "deduction_credit": 2}
CHILD = {
    "_id": "6508292f16e5ba407d47d21b",
    "image_content_model_id": "6508288416e5ba407d47d13f",
    "op_button": "U2",
    "op_buttonMessageId": "kwZsk6elltno5Nt37VLj",
    "image_status": 1,
}


def auth_headers(request: httpx.Request) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k in ("x-api-key", "authorization")}


# -- exact requests ---------------------------------------------------------------------------


async def test_create_by_prompt_sends_documented_body_with_api_key(
    fake: FakeAkool, make_session: Any
) -> None:
    """createbyprompt: POST, x-api-key only, Akool's field names, every option sent."""
    fake.on(PROMPT_PATH, envelope(JOB))
    async with make_session() as session:
        info = await session.create_by_prompt(
            "Sun Wukong is surrounded by heavenly soldiers and generals",
            scale="16:9",
            source_image="https://cdn.example.com/source.png",
            webhook_url="https://hooks.example.com/akool",
        )
    [request] = fake.requests
    assert ("POST", f"{BASE_URL}{PROMPT_PATH}") == (request.method, str(request.url))
    assert {"x-api-key": API_KEY} == auth_headers(request)
    assert request.headers["content-type"] == "application/json"
    assert {
        "prompt": "Sun Wukong is surrounded by heavenly soldiers and generals",
        "scale": "16:9",
        "source_image": "https://cdn.example.com/source.png",
        "webhookUrl": "https://hooks.example.com/akool",
    } == fake.body(request)
    assert (JOB["_id"], ak.ImageStatus.QUEUEING, 2) == (info.id, info.status, info.deduction_credit)


async def test_unset_options_are_not_sent(fake: FakeAkool, make_session: Any) -> None:
    """Only prompt and the (default) scale go out when nothing else is given."""
    fake.on(PROMPT_PATH, envelope(JOB))
    fake.on(BUTTON_PATH, envelope(CHILD))
    async with make_session() as session:
        await session.create_by_prompt("a red fox in snow")
        await session.create_by_button("6508288416e5ba407d47d13f", ak.Button.U2)
    assert {"prompt": "a red fox in snow", "scale": "1:1"} == fake.body(fake.requests[0])
    assert {"_id": "6508288416e5ba407d47d13f", "button": "U2"} == fake.body(fake.requests[1])


async def test_create_by_button_sends_documented_body(fake: FakeAkool, make_session: Any) -> None:
    """createbybutton: _id, button and webhookUrl; the child's parent and button are read back."""
    fake.on(BUTTON_PATH, envelope(CHILD))
    async with make_session() as session:
        child = await session.create_by_button(
            "6508288416e5ba407d47d13f", "U2", webhook_url="https://hooks.example.com/a"
        )
    [request] = fake.requests
    assert "POST" == request.method
    assert {
        "_id": "6508288416e5ba407d47d13f",
        "button": "U2",
        "webhookUrl": "https://hooks.example.com/a",
    } == fake.body(request)
    assert ("6508288416e5ba407d47d13f", "U2", "kwZsk6elltno5Nt37VLj") == (
        child.parent_id,
        child.op_button,
        child.op_button_message_id,
    )


async def test_get_image_info_uses_query_parameter(fake: FakeAkool, make_session: Any) -> None:
    """infobymodelid: GET with image_model_id in the query and no body."""
    fake.on(INFO_PATH, envelope({"_id": "662a10df4197b3af58532e89", "image_status": 3}))
    async with make_session() as session:
        info = await session.get_image_info("662a10df4197b3af58532e89")
    [request] = fake.requests
    assert "GET" == request.method
    assert {"image_model_id": "662a10df4197b3af58532e89"} == dict(request.url.params)
    assert b"" == request.content
    assert ak.ImageStatus.COMPLETED == info.status


async def test_get_credit_returns_the_balance(fake: FakeAkool, make_session: Any) -> None:
    """quota/info: GET, the balance returned as a number."""
    fake.on(CREDIT_PATH, envelope({"credit": 123}))
    async with make_session() as session:
        assert 123 == await session.get_credit()
    assert ["GET"] == [r.method for r in fake.requests]


async def test_token_mode_sends_only_bearer(fake: FakeAkool, make_session: Any) -> None:
    """A given token goes out as Authorization: Bearer, never with x-api-key, and no getToken."""
    fake.on(INFO_PATH, envelope(JOB))
    async with make_session(token=TOKEN) as session:
        await session.get_image_info(JOB["_id"])
    assert [INFO_PATH] == [r.url.path for r in fake.requests]
    assert {"authorization": f"Bearer {TOKEN}"} == auth_headers(fake.requests[0])


async def test_api_key_wins_over_client_credentials(fake: FakeAkool, make_session: Any) -> None:
    """With an api key and client credentials, requests use the key alone and fetch no token."""
    fake.on(INFO_PATH, envelope(JOB))
    async with make_session(
        api_key=API_KEY, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    ) as session:
        await session.get_image_info(JOB["_id"])
    assert [INFO_PATH] == [r.url.path for r in fake.requests]
    assert {"x-api-key": API_KEY} == auth_headers(fake.requests[0])


async def test_user_agent_names_the_sdk(fake: FakeAkool, make_session: Any) -> None:
    """Requests say who sent them."""
    fake.on(CREDIT_PATH, envelope({"credit": 1}))
    async with make_session() as session:
        await session.get_credit()
    assert fake.requests[0].headers["user-agent"].startswith(f"akool-async/{ak.__version__} ")


# -- the getToken flow ------------------------------------------------------------------------


async def test_client_credentials_fetch_one_token_for_fifty_concurrent_calls(
    fake: FakeAkool, make_session: Any
) -> None:
    """50 concurrent calls share a single getToken request, sent with Akool's body."""
    fake.on(TOKEN_PATH, {"code": 1000, "msg": "OK", "token": "fresh-token"})
    fake.on(INFO_PATH, envelope(JOB))
    async with (
        make_session(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as session,
        anyio.create_task_group() as tg,
    ):
        for _ in range(50):
            tg.start_soon(session.get_image_info, JOB["_id"])
    token_requests = fake.sent(TOKEN_PATH)
    assert 1 == len(token_requests)
    assert {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET} == fake.body(token_requests[0])
    assert {} == auth_headers(token_requests[0])
    infos = fake.sent(INFO_PATH)
    assert 50 == len(infos)
    assert {"authorization": "Bearer fresh-token"} == {
        k: v for r in infos for k, v in auth_headers(r).items()
    }


async def test_expired_token_is_renewed_once_and_the_request_repeated(
    fake: FakeAkool, make_session: Any
) -> None:
    """Code 1101 fetches a new token and repeats the call once; even a paid create is safe."""
    tokens = iter(["token-1", "token-2"])
    fake.on(TOKEN_PATH, lambda _: httpx.Response(200, json={"code": 1000, "token": next(tokens)}))

    def create(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] == "Bearer token-1":
            return httpx.Response(200, json=envelope(code=1101, msg="token expired"))
        return httpx.Response(200, json=envelope(JOB))

    fake.on(PROMPT_PATH, create)
    async with make_session(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as session:
        info = await session.create_by_prompt("a fox")
    assert JOB["_id"] == info.id
    assert [TOKEN_PATH, PROMPT_PATH, TOKEN_PATH, PROMPT_PATH] == [r.url.path for r in fake.requests]


async def test_concurrent_1101s_renew_the_token_once(fake: FakeAkool, make_session: Any) -> None:
    """Ten calls that all hit 1101 with the same stale token cause one renewal between them."""
    tokens = iter(["old", "new", "newer"])
    fake.on(TOKEN_PATH, lambda _: httpx.Response(200, json={"code": 1000, "token": next(tokens)}))

    def info(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] == "Bearer old":
            return httpx.Response(200, json=envelope(code=1101, msg="expired"))
        return httpx.Response(200, json=envelope(JOB))

    fake.on(INFO_PATH, info)
    async with (
        make_session(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as session,
        anyio.create_task_group() as tg,
    ):
        for _ in range(10):
            tg.start_soon(session.get_image_info, JOB["_id"])
    assert 2 == len(fake.sent(TOKEN_PATH))
    assert 20 == len(fake.sent(INFO_PATH))


async def test_token_rejected_twice_raises_authentication_error(
    fake: FakeAkool, make_session: Any
) -> None:
    """A 1101 right after renewal is not looped on: AuthenticationError after one renewal."""
    fake.on(TOKEN_PATH, {"code": 1000, "token": "t"})
    fake.on(INFO_PATH, envelope(code=1101, msg="Invalid authorization"))
    async with make_session(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as session:
        with pytest.raises(ak.AuthenticationError) as caught:
            await session.get_image_info(JOB["_id"])
    assert (1101, "Invalid authorization") == (caught.value.code, caught.value.msg)
    assert [TOKEN_PATH, INFO_PATH, TOKEN_PATH, INFO_PATH] == [r.url.path for r in fake.requests]


async def test_given_token_without_client_credentials_is_not_renewed(
    fake: FakeAkool, make_session: Any
) -> None:
    """With only a token, 1101 is final: there is nothing to renew it with."""
    fake.on(INFO_PATH, envelope(code=1101, msg="expired"))
    async with make_session(token=TOKEN) as session:
        with pytest.raises(ak.AuthenticationError):
            await session.get_image_info(JOB["_id"])
    assert [INFO_PATH] == [r.url.path for r in fake.requests]


async def test_given_token_with_client_credentials_is_renewed(
    fake: FakeAkool, make_session: Any
) -> None:
    """A given token is used first; client credentials renew it on 1101."""
    fake.on(TOKEN_PATH, {"code": 1000, "token": "renewed"})
    fake.on(INFO_PATH, envelope(code=1101, msg="expired"), envelope(JOB))
    async with make_session(token=TOKEN, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as s:
        await s.get_image_info(JOB["_id"])
    assert [INFO_PATH, TOKEN_PATH, INFO_PATH] == [r.url.path for r in fake.requests]
    assert ["Bearer test-bearer-token-1a2b3c", "Bearer renewed"] == [
        r.headers["authorization"] for r in fake.sent(INFO_PATH)
    ]


async def test_get_token_refused_raises_typed_error(fake: FakeAkool, make_session: Any) -> None:
    """Wrong client credentials surface as Akool's business error, not a retry loop."""
    fake.on(TOKEN_PATH, envelope(code=1101, msg="clientId or clientSecret wrong"))
    async with make_session(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as session:
        with pytest.raises(ak.AuthenticationError) as caught:
            await session.get_credit()
    assert TOKEN_PATH == caught.value.endpoint
    assert [TOKEN_PATH] == [r.url.path for r in fake.requests]


async def test_get_token_without_token_field_is_invalid_response(
    fake: FakeAkool, make_session: Any
) -> None:
    """getToken answering 1000 with no token is a malformed answer (retried, then raised)."""
    fake.on(TOKEN_PATH, {"code": 1000, "msg": "OK"})
    async with make_session(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as session:
        with pytest.raises(ak.InvalidResponse):
            await session.get_credit()
    assert 4 == len(fake.sent(TOKEN_PATH))


# -- requests httpx cannot encode -------------------------------------------------------------


UNSENDABLE = (
    "the request to Akool could not be sent: a header or the body holds a character HTTP cannot "
    "carry (a credential with a stray space, newline or non-ASCII character?); nothing was sent "
    f"to {PROMPT_PATH}"
)


async def test_a_body_httpx_cannot_encode_is_refused_unsent(
    fake: FakeAkool, make_session: Any
) -> None:
    """A prompt with a lone surrogate cannot be UTF-8: InvalidInput, nothing sent, no retry,
    never a SubmissionUnknown."""
    fake.on(PROMPT_PATH, envelope(JOB))
    async with make_session() as session:
        with pytest.raises(ak.InvalidInput) as caught:
            await session.create_by_prompt("a fox \ud800")
    assert (UNSENDABLE, []) == (str(caught.value), fake.requests)


async def test_a_header_h11_refuses_is_not_an_ambiguous_create(fake: FakeAkool) -> None:
    """A header HTTP/1.1 cannot carry (here a caller's client header with a stray carriage
    return): h11 refuses it before a byte leaves, so the create fails once, unsent, as
    InvalidInput, and the header's value is never quoted."""

    def h11_checked(request: httpx.Request) -> httpx.Response:
        try:
            h11.Request(method=request.method, target="/", headers=request.headers.raw)
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc), request=request) from exc
        return fake(request)

    fake.on(PROMPT_PATH, envelope(JOB))
    client = httpx.AsyncClient(
        transport=httpx.MockTransport(h11_checked), headers={"x-trace": "secret-trace\r"}
    )
    async with ak.AkoolSession(api_key=API_KEY, base_url=BASE_URL, http_client=client) as session:
        with pytest.raises(ak.InvalidInput) as caught:
            await session.create_by_prompt("a fox")
    assert (UNSENDABLE, []) == (str(caught.value), fake.requests)


async def test_another_local_protocol_error_stays_ambiguous(
    fake: FakeAkool, make_session: Any
) -> None:
    """A local protocol error with sendable headers may have come after bytes left: unknown."""
    fake.on(
        PROMPT_PATH, httpx.LocalProtocolError("too much data", request=httpx.Request("GET", "/"))
    )
    async with make_session() as session:
        with pytest.raises(ak.SubmissionUnknown):
            await session.create_by_prompt("a fox")
    assert 1 == len(fake.requests)


# -- retries of reads -------------------------------------------------------------------------


async def test_429_with_retry_after_is_honoured(fake: FakeAkool, make_session: Any) -> None:
    """A read throttled with Retry-After: 7 waits exactly 7 s of (virtual) time, then succeeds."""
    fake.on(
        INFO_PATH,
        httpx.Response(429, headers={"Retry-After": "7"}, text="slow down"),
        envelope(JOB),
    )
    async with make_session() as session:
        started = anyio.current_time()
        await session.get_image_info(JOB["_id"])
        waited = anyio.current_time() - started
    assert 2 == len(fake.requests)
    assert 7.0 == pytest.approx(waited, abs=0.01)


async def test_429_without_retry_after_backs_off_exponentially(
    fake: FakeAkool, make_session: Any
) -> None:
    """Without Retry-After the waits are 1, 2, 4 s (the policy's caps, jitter off)."""
    fake.on(INFO_PATH, httpx.Response(429), httpx.Response(429), httpx.Response(429), envelope(JOB))
    async with make_session() as session:
        started = anyio.current_time()
        await session.get_image_info(JOB["_id"])
        waited = anyio.current_time() - started
    assert 4 == len(fake.requests)
    assert 7.0 == pytest.approx(waited, abs=0.01)


async def test_retry_after_is_capped(fake: FakeAkool, make_session: Any) -> None:
    """A Retry-After of an hour is cut to the policy's max_retry_after."""
    fake.on(INFO_PATH, httpx.Response(429, headers={"Retry-After": "3600"}), envelope(JOB))
    policy = ak.RetryPolicy(attempts=2, max_retry_after=5.0, jitter=False)
    async with make_session(retry=policy) as session:
        started = anyio.current_time()
        await session.get_image_info(JOB["_id"])
        assert 5.0 == pytest.approx(anyio.current_time() - started, abs=0.01)


async def test_5xx_on_read_is_retried_until_attempts_run_out(
    fake: FakeAkool, make_session: Any
) -> None:
    """Four 503s with HTML bodies: four tries, then ServerError with the status."""
    fake.on(INFO_PATH, httpx.Response(503, text="<html>busy</html>"))
    async with make_session() as session:
        with pytest.raises(ak.ServerError) as caught:
            await session.get_image_info(JOB["_id"])
    assert (503, INFO_PATH) == (caught.value.status_code, caught.value.endpoint)
    assert 4 == len(fake.requests)


@pytest.mark.parametrize(
    ("exception", "error_type"),
    [
        (httpx.ConnectError("refused"), ak.ConnectError),
        (httpx.ConnectTimeout("connect timeout"), ak.RequestTimeout),
        (httpx.ReadTimeout("read timeout"), ak.RequestTimeout),
        (httpx.RemoteProtocolError("peer closed"), ak.RemoteProtocolError),
        (httpx.ReadError("reset"), ak.RemoteProtocolError),
    ],
)
async def test_transport_failures_on_read_are_retried_then_raised_from_httpx(
    fake: FakeAkool, make_session: Any, exception: Exception, error_type: type[ak.AkoolError]
) -> None:
    """Each transport failure is retried on a read, then raised typed, from the httpx error."""
    fake.on(INFO_PATH, exception)
    async with make_session() as session:
        with pytest.raises(error_type) as caught:
            await session.get_image_info(JOB["_id"])
    assert 4 == len(fake.requests)
    assert exception is caught.value.__cause__
    assert INFO_PATH == caught.value.endpoint  # type: ignore[attr-defined]


async def test_transient_failure_then_success(fake: FakeAkool, make_session: Any) -> None:
    """A reset, a truncated body and a 502 in a row, then the answer: the read succeeds."""
    fake.on(
        INFO_PATH,
        httpx.ReadError("reset"),
        httpx.Response(200, content=b'{"code": 1000, "data": {"_id": "x'),
        httpx.Response(502, json={"code": 500, "msg": "bad gateway"}),
        envelope(JOB),
    )
    async with make_session() as session:
        info = await session.get_image_info(JOB["_id"])
    assert JOB["_id"] == info.id
    assert 4 == len(fake.requests)


async def test_retry_stops_at_the_total_timeout(fake: FakeAkool, make_session: Any) -> None:
    """No retry starts once the next wait would pass the policy's total timeout."""
    fake.on(INFO_PATH, httpx.Response(503))
    policy = ak.RetryPolicy(attempts=100, timeout=10.0, wait_initial=4.0, jitter=False)
    async with make_session(retry=policy) as session:
        started = anyio.current_time()
        with pytest.raises(ak.ServerError):
            await session.get_image_info(JOB["_id"])
        elapsed = anyio.current_time() - started
    # Waits 4 then 8 would pass 10 s, so: try, wait 4, try, stop.
    assert 2 == len(fake.requests)
    assert 4.0 == pytest.approx(elapsed, abs=0.01)


async def test_business_errors_are_not_retried(fake: FakeAkool, make_session: Any) -> None:
    """A definite answer such as 1008 is raised at once, one request."""
    fake.on(INFO_PATH, envelope(code=1008, msg="The content you get does not exist"))
    async with make_session() as session:
        with pytest.raises(ak.ContentNotFound):
            await session.get_image_info(JOB["_id"])
    assert 1 == len(fake.requests)


async def test_rate_limit_code_is_retried_with_retry_after(
    fake: FakeAkool, make_session: Any
) -> None:
    """Business code 1005 is a throttle: retried, honouring Retry-After."""
    fake.on(
        INFO_PATH,
        httpx.Response(
            200, headers={"Retry-After": "2"}, json=envelope(code=1005, msg="too frequent")
        ),
        envelope(JOB),
    )
    async with make_session() as session:
        started = anyio.current_time()
        await session.get_image_info(JOB["_id"])
        assert 2.0 == pytest.approx(anyio.current_time() - started, abs=0.01)
    assert 2 == len(fake.requests)


async def test_other_4xx_is_an_http_status_error_not_retried(
    fake: FakeAkool, make_session: Any
) -> None:
    """An HTML 404 is a definite answer: HTTPStatusError with its status, no retry."""
    fake.on(INFO_PATH, httpx.Response(404, text="<html>not here</html>"))
    async with make_session() as session:
        with pytest.raises(ak.HTTPStatusError) as caught:
            await session.get_image_info(JOB["_id"])
    assert 404 == caught.value.status_code
    assert 1 == len(fake.requests)


async def test_4xx_with_an_envelope_maps_the_business_code(
    fake: FakeAkool, make_session: Any
) -> None:
    """If Akool sends its envelope with a 4xx status, the business code decides the error."""
    fake.on(
        INFO_PATH,
        httpx.Response(401, json=envelope(code=1102, msg="Authorization cannot be empty")),
    )
    async with make_session() as session:
        with pytest.raises(ak.AuthenticationError) as caught:
            await session.get_image_info(JOB["_id"])
    assert 1102 == caught.value.code


# -- the paid-create rule ---------------------------------------------------------------------

AMBIGUOUS = [
    pytest.param(httpx.ReadTimeout("read timeout"), id="read-timeout"),
    pytest.param(httpx.WriteTimeout("write timeout"), id="write-timeout"),
    pytest.param(httpx.RemoteProtocolError("Server disconnected"), id="disconnect"),
    pytest.param(httpx.ReadError("Connection reset by peer"), id="reset"),
    pytest.param(httpx.Response(500, json={"code": 500}), id="500"),
    pytest.param(httpx.Response(502, text="<html>Bad Gateway</html>"), id="502-html"),
    pytest.param(httpx.Response(503, headers={"Retry-After": "1"}), id="503"),
    pytest.param(
        httpx.Response(200, content=b'{"code": 1000, "data": {"_id": "64dd'), id="truncated"
    ),
    pytest.param(httpx.Response(200, content=b"<html>oops</html>"), id="not-json"),
    pytest.param(httpx.Response(200, json={"code": 1000, "data": {"image_status": 1}}), id="no-id"),
]


@pytest.mark.parametrize("failure", AMBIGUOUS)
@pytest.mark.parametrize("path", [PROMPT_PATH, BUTTON_PATH])
async def test_ambiguous_create_failure_raises_submission_unknown_without_resending(
    fake: FakeAkool, make_session: Any, failure: Any, path: str
) -> None:
    """Every ambiguous failure of a paid create: one request, SubmissionUnknown with the payload."""
    fake.on(path, failure, envelope(JOB))
    async with make_session() as session:
        create = (
            session.create_by_prompt("a fox", scale="3:2")
            if path == PROMPT_PATH
            else session.create_by_button("6508288416e5ba407d47d13f", "V3")
        )
        with pytest.raises(ak.SubmissionUnknown) as caught:
            await create
    assert 1 == len(fake.requests)
    expected = (
        {"prompt": "a fox", "scale": "3:2"}
        if path == PROMPT_PATH
        else {"_id": "6508288416e5ba407d47d13f", "button": "V3"}
    )
    assert (path, expected) == (caught.value.endpoint, dict(caught.value.payload))
    assert isinstance(caught.value.__cause__, ak.TransportError)


NOT_DELIVERED = [
    pytest.param(httpx.ConnectError("Connection refused"), id="connect-error"),
    pytest.param(httpx.ConnectTimeout("connect timeout"), id="connect-timeout"),
    pytest.param(httpx.PoolTimeout("pool timeout"), id="pool-timeout"),
    pytest.param(httpx.Response(429), id="429"),
    pytest.param(httpx.Response(429, headers={"Retry-After": "3"}), id="429-retry-after"),
    pytest.param(httpx.Response(200, json=envelope(code=1005, msg="too frequent")), id="code-1005"),
]


@pytest.mark.parametrize("failure", NOT_DELIVERED)
async def test_create_is_retried_when_provably_not_delivered(
    fake: FakeAkool, make_session: Any, failure: Any
) -> None:
    """A create that never reached Akool is retried and created once."""
    fake.on(PROMPT_PATH, failure, envelope(JOB))
    async with make_session() as session:
        info = await session.create_by_prompt("a fox")
    assert JOB["_id"] == info.id
    assert 2 == len(fake.requests)


async def test_create_throttled_then_ambiguous_is_submission_unknown(
    fake: FakeAkool, make_session: Any
) -> None:
    """A 429 is retried; the retry's timeout makes it ambiguous: two requests, no third."""
    fake.on(PROMPT_PATH, httpx.Response(429), httpx.ReadTimeout("read timeout"), envelope(JOB))
    async with make_session() as session:
        with pytest.raises(ak.SubmissionUnknown):
            await session.create_by_prompt("a fox")
    assert 2 == len(fake.requests)


async def test_create_throttled_beyond_attempts_raises_too_many_requests(
    fake: FakeAkool, make_session: Any
) -> None:
    """A create throttled every time ends in TooManyRequests: nothing was created."""
    fake.on(PROMPT_PATH, httpx.Response(429, headers={"Retry-After": "1"}))
    async with make_session() as session:
        with pytest.raises(ak.TooManyRequests) as caught:
            await session.create_by_prompt("a fox")
    assert (4, 1.0) == (len(fake.requests), caught.value.retry_after)


async def test_definite_create_refusal_is_not_retried(fake: FakeAkool, make_session: Any) -> None:
    """Code 1108 on a create is Akool's definite answer: raised as GenerationError, one request."""
    fake.on(PROMPT_PATH, envelope(code=1108, msg="image generate error,please try again later"))
    async with make_session() as session:
        with pytest.raises(ak.GenerationError):
            await session.create_by_prompt("a fox")
    assert 1 == len(fake.requests)


# -- lifecycle --------------------------------------------------------------------------------


async def test_session_must_be_entered(make_session: Any) -> None:
    """Calls on an unopened or closed session say how to use it, and send nothing."""
    session = make_session()
    with pytest.raises(RuntimeError, match="async with"):
        await session.get_credit()
    async with session:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        await session.get_credit()
    with pytest.raises(RuntimeError, match="cannot be reopened"):
        async with session:
            pass


async def test_passed_client_is_left_open_and_own_client_is_closed(fake: FakeAkool) -> None:
    """A given http_client stays open after the session; the session's own client is closed."""
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    async with ak.AkoolSession(api_key=API_KEY, http_client=client, base_url=BASE_URL):
        pass
    assert not client.is_closed
    await client.aclose()

    session = ak.AkoolSession(api_key=API_KEY, base_url=BASE_URL)
    async with session:
        own = session.http_client
        assert own is not None
    assert own.is_closed


async def test_http_client_base_url_is_used_when_none_given(fake: FakeAkool) -> None:
    """A passed client's base_url is the API root when base_url= is not given."""
    fake.on(f"/v{CREDIT_PATH}", envelope({"credit": 5}))
    client = httpx.AsyncClient(
        transport=httpx.MockTransport(fake), base_url="http://emulator.test/v"
    )
    async with client, ak.AkoolSession(api_key=API_KEY, http_client=client) as session:
        await session.get_credit()
    assert f"http://emulator.test/v{CREDIT_PATH}" == str(fake.requests[0].url)


async def test_generate_returns_a_handle_and_job_makes_one(
    fake: FakeAkool, make_session: Any
) -> None:
    """generate() returns an ImageJob with the id; session.job(id) makes one without a request."""
    fake.on(PROMPT_PATH, envelope(JOB))
    fake.on(INFO_PATH, envelope({**JOB, "image_status": 2}))
    async with make_session() as session:
        job = await session.generate("a fox", scale=ak.Scale.RATIO_9_16)
        again = session.job(JOB["_id"])
        assert 1 == len(fake.requests)
        # Handles on one id share what the session knows about it.
        assert (JOB["_id"], ak.ImageStatus.QUEUEING) == (job.id, job.info.status)  # type: ignore[union-attr]
        assert job.info == again.info
        assert job == again
        assert len({job, again}) == 1
        refreshed = await again.refresh()
    assert ak.ImageStatus.PROCESSING == refreshed.status == again.info.status  # type: ignore[union-attr]
    assert f"ImageJob(id='{JOB['_id']}', status=PROCESSING)" == repr(again)
