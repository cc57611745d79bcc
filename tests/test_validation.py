"""Bad input is refused before any request; credentials and base URL come from args or AKOOL_*."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import akool_async as ak
from conftest import API_KEY, BASE_URL, CLIENT_ID, CLIENT_SECRET, SECRETS, TOKEN, FakeAkool
from samples import (
    CREATE_BY_BUTTON_PATH,
    CREATE_BY_BUTTON_RESPONSE,
    CREATE_BY_PROMPT_PATH,
    CREATE_BY_PROMPT_RESPONSE,
    CREDIT_PATH,
    CREDIT_RESPONSE,
    TOKEN_PATH,
    TOKEN_RESPONSE,
)

GRID_ID = "662a10df4197b3af58532e89"
ALLOWED_SCALES = "1:1, 4:3, 3:4, 16:9, 9:16, 3:2, 2:3"
ALLOWED_BUTTONS = "U1, U2, U3, U4, V1, V2, V3, V4"
BAD_URLS = [
    "",
    "/relative/path.png",
    "relative.png",
    "cdn.example/x.png",
    "ftp://cdn.example/x.png",
    "file:///etc/passwd",
    "https://cdn.example/with space.png",
    " https://cdn.example/x.png",
    "https://cdn.example/x.png\n",
    "https://",
    "http:///x.png",
    "mailto:someone@example.com",
    "https://[::1",
]
NON_STRINGS: list[Any] = [None, 42, b"bytes", ["a"]]


# -- prompt ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["", " ", "\t\n  "])
@pytest.mark.anyio
async def test_blank_prompt_refused(
    prompt: str, fake: FakeAkool, make_session: Callable[..., ak.AkoolSession]
) -> None:
    """An empty or blank prompt is InvalidInput and nothing is sent."""
    async with make_session() as session:
        with pytest.raises(ak.InvalidInput, match="prompt must not be empty or blank"):
            await session.create_by_prompt(prompt)
        with pytest.raises(ak.InvalidInput, match="prompt must not be empty or blank"):
            await session.generate(prompt)

    assert [] == fake.requests


@pytest.mark.parametrize("prompt", NON_STRINGS)
@pytest.mark.anyio
async def test_non_string_prompt_refused(
    prompt: Any, fake: FakeAkool, make_session: Callable[..., ak.AkoolSession]
) -> None:
    """A prompt that is not a string is InvalidInput naming its type; nothing is sent."""
    async with make_session() as session:
        with pytest.raises(ak.InvalidInput) as raised:
            await session.create_by_prompt(prompt)

    assert f"prompt must be a string (got {type(prompt).__name__})" == str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert [] == fake.requests


@pytest.mark.anyio
async def test_a_prompt_over_the_limit_is_refused_before_sending(
    fake: FakeAkool, make_session: Callable[..., ak.AkoolSession]
) -> None:
    """A 120,004-character prompt: InvalidInput naming its length and the limit, nothing sent."""
    fake.on(CREATE_BY_PROMPT_PATH, CREATE_BY_PROMPT_RESPONSE)
    pasted = "a red fox " * 12_000 + "snow"
    expected = (
        "prompt is 120,004 characters long; at most 4,000 are allowed "
        "(starts 'a red fox a red fox a red fox a red fox '): shorten it"
    )
    async with make_session() as session:
        for call in (
            session.create_by_prompt(pasted),
            session.generate(pasted),
            session.generate_many(["a cat", pasted]),
        ):
            with pytest.raises(ak.InvalidInput) as raised:
                await call
            assert expected == str(raised.value)
        longest = await session.create_by_prompt("x" * ak.MAX_PROMPT_LENGTH)

    assert 4000 == ak.MAX_PROMPT_LENGTH
    assert ["x" * 4000] == [FakeAkool.body(request)["prompt"] for request in fake.requests]
    assert longest.id


@pytest.mark.anyio
async def test_the_prompt_limit_is_a_session_option(
    fake: FakeAkool, make_session: Callable[..., ak.AkoolSession]
) -> None:
    """max_prompt_length= moves the bound both ways; a prompt at it is sent, one over is not."""
    fake.on(CREATE_BY_PROMPT_PATH, CREATE_BY_PROMPT_RESPONSE)
    async with make_session(max_prompt_length=10) as session:
        with pytest.raises(ak.InvalidInput, match="prompt is 11 characters long; at most 10"):
            await session.create_by_prompt("x" * 11)
        await session.create_by_prompt("x" * 10)
    async with make_session(max_prompt_length=10_000) as session:
        await session.create_by_prompt("x" * 10_000)

    assert ["x" * 10, "x" * 10_000] == [FakeAkool.body(r)["prompt"] for r in fake.requests]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4000", None])
def test_a_bad_prompt_limit_is_refused(bad: Any) -> None:
    with pytest.raises(ak.InvalidInput) as raised:
        ak.AkoolSession(api_key="k", max_prompt_length=bad)
    assert f"max_prompt_length must be a whole number of characters >= 1 (got {bad!r})" == str(
        raised.value
    )


# -- poll policy ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "shown"),
    [({"target_lag": 0.1}, ("0.1", "0.25")), ({"target_lag": 2, "min_interval": 5}, ("2", "5"))],
)
def test_a_target_lag_below_min_interval_is_refused(
    options: dict[str, float], shown: tuple[str, str]
) -> None:
    """A lag the poller could never keep is refused, naming both values, not clamped silently."""
    lag, interval = shown
    with pytest.raises(ak.InvalidInput) as raised:
        ak.PollPolicy(**options)

    assert (
        f"PollPolicy.target_lag ({lag}) must not be below min_interval ({interval}), the "
        "shortest gap between two reads of a job: lower min_interval too, e.g. "
        f"PollPolicy(target_lag={lag}, min_interval={lag})"
    ) == str(raised.value)


def test_a_target_lag_equal_to_min_interval_is_taken() -> None:
    """The bound is inclusive: a read every min_interval can keep a lag of min_interval."""
    policy = ak.PollPolicy(target_lag=0.1, min_interval=0.1)

    assert (0.1, 0.1) == (policy.target_lag, policy.min_interval)


# -- scale ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scale", ["5:4", "1:2", "16:10", "1x1", "", "1 : 1", "original", "Original"]
)
@pytest.mark.anyio
async def test_unknown_scale_refused(
    scale: str, fake: FakeAkool, make_session: Callable[..., ak.AkoolSession]
) -> None:
    """A scale outside the seven is refused; the message lists them and echoes the bad one."""
    async with make_session() as session:
        with pytest.raises(ak.InvalidInput) as raised:
            await session.create_by_prompt("a red fox", scale=scale)

    assert f"scale must be one of {ALLOWED_SCALES} (got {scale!r})" == str(raised.value)
    assert [] == fake.requests


@pytest.mark.parametrize("scale", [None, 1, 1.0, (1, 1)])
@pytest.mark.anyio
async def test_non_string_scale_refused(
    scale: Any, fake: FakeAkool, make_session: Callable[..., ak.AkoolSession]
) -> None:
    """A scale that is not a string is refused the same way."""
    async with make_session() as session:
        with pytest.raises(ak.InvalidInput) as raised:
            await session.create_by_prompt("a red fox", scale=scale)

    assert f"scale must be one of {ALLOWED_SCALES} (got {scale!r})" == str(raised.value)
    assert [] == fake.requests


@pytest.mark.parametrize("scale", [*list(ak.Scale), *[s.value for s in ak.Scale]])
@pytest.mark.anyio
async def test_each_allowed_scale_is_sent(
    scale: ak.Scale | str, fake: FakeAkool, make_session: Callable[..., ak.AkoolSession]
) -> None:
    """Every documented scale, as enum or string, is sent as its plain string."""
    fake.on(CREATE_BY_PROMPT_PATH, copy.deepcopy(CREATE_BY_PROMPT_RESPONSE))

    async with make_session() as session:
        await session.create_by_prompt("a red fox", scale=scale)

    assert [{"prompt": "a red fox", "scale": str(scale)}] == [
        fake.body(r) for r in fake.sent(CREATE_BY_PROMPT_PATH)
    ]


# -- URLs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.anyio
async def test_bad_source_image_refused(
    url: str, fake: FakeAkool, make_session: Callable[..., ak.AkoolSession]
) -> None:
    """source_image must be an absolute http(s) URL with a host; the bad value is echoed."""
    async with make_session() as session:
        with pytest.raises(ak.InvalidInput) as raised:
            await session.create_by_prompt("a red fox", source_image=url)

    expected = f"source_image must be an absolute http:// or https:// URL (got {url!r})"
    assert expected == str(raised.value)
    assert [] == fake.requests


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.anyio
async def test_bad_webhook_url_refused(
    url: str, fake: FakeAkool, make_session: Callable[..., ak.AkoolSession]
) -> None:
    """webhook_url must be an absolute http(s) URL, on both creates."""
    async with make_session() as session:
        with pytest.raises(ak.InvalidInput) as by_prompt:
            await session.create_by_prompt("a red fox", webhook_url=url)
        with pytest.raises(ak.InvalidInput) as by_button:
            await session.create_by_button(GRID_ID, "U1", webhook_url=url)

    expected = f"webhook_url must be an absolute http:// or https:// URL (got {url!r})"
    assert [expected, expected] == [str(by_prompt.value), str(by_button.value)]
    assert [] == fake.requests


@pytest.mark.parametrize("url", NON_STRINGS[1:])
@pytest.mark.anyio
async def test_non_string_url_refused(
    url: Any, fake: FakeAkool, make_session: Callable[..., ak.AkoolSession]
) -> None:
    """A URL that is not a string is refused naming the argument and the type."""
    async with make_session() as session:
        with pytest.raises(ak.InvalidInput) as raised:
            await session.create_by_prompt("a red fox", source_image=url)

    assert f"source_image must be a URL string (got {type(url).__name__})" == str(raised.value)
    assert [] == fake.requests


@pytest.mark.anyio
async def test_good_urls_sent_under_wire_names(
    fake: FakeAkool, make_session: Callable[..., ak.AkoolSession]
) -> None:
    """Valid source_image and webhook_url go out as `source_image` and `webhookUrl`."""
    fake.on(CREATE_BY_PROMPT_PATH, copy.deepcopy(CREATE_BY_PROMPT_RESPONSE))

    async with make_session() as session:
        await session.create_by_prompt(
            "Sun Wukong is surrounded by heavenly soldiers and generals",
            scale="1:1",
            source_image="https://drz0f01yeq1cx.cloudfront.net/a.png",
            webhook_url="http://hooks.example:8080/akool?x=1",
        )

    expected = {
        "prompt": "Sun Wukong is surrounded by heavenly soldiers and generals",
        "scale": "1:1",
        "source_image": "https://drz0f01yeq1cx.cloudfront.net/a.png",
        "webhookUrl": "http://hooks.example:8080/akool?x=1",
    }
    assert [expected] == [fake.body(r) for r in fake.sent(CREATE_BY_PROMPT_PATH)]


# -- buttons --------------------------------------------------------------------------------------


@pytest.mark.parametrize("button", ["U0", "U5", "V0", "V5", "X1", "U", "", "UV1", "U 1", "upscale"])
@pytest.mark.anyio
async def test_unknown_button_refused(
    button: str, fake: FakeAkool, make_session: Callable[..., ak.AkoolSession]
) -> None:
    """Only U1..U4 and V1..V4 are buttons; the message lists them and echoes the bad one."""
    async with make_session() as session:
        with pytest.raises(ak.InvalidInput) as raised:
            await session.create_by_button(GRID_ID, button)

    assert f"button must be one of {ALLOWED_BUTTONS} (got {button!r})" == str(raised.value)
    assert [] == fake.requests


@pytest.mark.parametrize("button", [None, 1, ["U1"]])
@pytest.mark.anyio
async def test_non_string_button_refused(
    button: Any, fake: FakeAkool, make_session: Callable[..., ak.AkoolSession]
) -> None:
    """A button that is not a string is refused, and echoed."""
    async with make_session() as session:
        with pytest.raises(ak.InvalidInput) as raised:
            await session.create_by_button(GRID_ID, button)

    assert f"button must be one of {ALLOWED_BUTTONS} (got {button!r})" == str(raised.value)
    assert [] == fake.requests


@pytest.mark.parametrize(
    ("given", "sent"), [("u2", "U2"), ("v4", "V4"), ("U3", "U3"), (ak.Button.V1, "V1")]
)
@pytest.mark.anyio
async def test_button_case_insensitive_sent_upper(
    given: Any, sent: str, fake: FakeAkool, make_session: Callable[..., ak.AkoolSession]
) -> None:
    """A lowercase button is accepted and sent in Akool's upper case."""
    fake.on(CREATE_BY_BUTTON_PATH, copy.deepcopy(CREATE_BY_BUTTON_RESPONSE))

    async with make_session() as session:
        await session.create_by_button("65d3206b83ccf5ab7d46cdc6", given)

    assert [{"_id": "65d3206b83ccf5ab7d46cdc6", "button": sent}] == [
        fake.body(r) for r in fake.sent(CREATE_BY_BUTTON_PATH)
    ]


# -- image ids ------------------------------------------------------------------------------------

BLANK_IDS = ["", " ", "\t", "\n \n"]
SPACED_IDS = ["662a10df 4197b3af", " 662a10df", "662a10df\n", "662a\x0010df"]
# Not Akool's shape: a path, a URL, the wrong length, upper case, a look-alike digit.
MALFORMED_IDS = [
    "../../x/pwned",
    "/etc/passwd",
    "64dd82eef0b6684651e9013",
    "64dd82eef0b6684651e901311",
    "64DD82EEF0B6684651E90131",
    "64dd82eef0b6684651e9013\u0661",
    "https://openapi.akool.com/64dd82eef0b6684651e90131",
    "x" * 5000,
]


async def id_refusals(session: ak.AkoolSession, image_id: Any) -> list[str]:
    """What create_by_button, get_image_info and session.job each say about ``image_id``."""
    with pytest.raises(ak.InvalidInput) as by_button:
        await session.create_by_button(image_id, "U1")
    with pytest.raises(ak.InvalidInput) as info:
        await session.get_image_info(image_id)
    with pytest.raises(ak.InvalidInput) as job:
        session.job(image_id)
    return [str(by_button.value), str(info.value), str(job.value)]


@pytest.mark.parametrize("image_id", BLANK_IDS)
@pytest.mark.anyio
async def test_blank_image_id_refused(
    image_id: str, fake: FakeAkool, make_session: Callable[..., ak.AkoolSession]
) -> None:
    """An empty or blank id is refused by create_by_button, get_image_info and session.job."""
    expected = "image id must not be empty: pass the '_id' Akool returned on create"
    async with make_session() as session:
        messages = await id_refusals(session, image_id)

    assert [expected] * 3 == messages
    assert [] == fake.requests


@pytest.mark.parametrize("image_id", SPACED_IDS)
@pytest.mark.anyio
async def test_image_id_with_white_space_refused(
    image_id: str, fake: FakeAkool, make_session: Callable[..., ak.AkoolSession]
) -> None:
    """An id with white space or control characters in it is no Akool id; nothing is sent."""
    expected = (
        "image id must be the '_id' Akool returned on create: 24 lowercase hex digits, "
        f"such as 64dd82eef0b6684651e90131 (got {image_id!r})"
    )
    async with make_session() as session:
        messages = await id_refusals(session, image_id)

    assert [expected] * 3 == messages
    assert [] == fake.requests


@pytest.mark.parametrize("image_id", MALFORMED_IDS)
@pytest.mark.anyio
async def test_image_id_not_of_akools_shape_refused(
    image_id: str, fake: FakeAkool, make_session: Callable[..., ak.AkoolSession]
) -> None:
    """Anything but 24 lowercase hex digits is refused before a request, the id (cut to 80
    characters) quoted: no malformed id costs a request or can name a file."""
    shown = image_id if len(image_id) <= 80 else f"{image_id[:80]}..."
    expected = (
        "image id must be the '_id' Akool returned on create: 24 lowercase hex digits, "
        f"such as 64dd82eef0b6684651e90131 (got {shown!r})"
    )
    async with make_session() as session:
        messages = await id_refusals(session, image_id)

    assert [expected] * 3 == messages
    assert [] == fake.requests


@pytest.mark.parametrize("image_id", NON_STRINGS)
@pytest.mark.anyio
async def test_non_string_image_id_refused(
    image_id: Any, fake: FakeAkool, make_session: Callable[..., ak.AkoolSession]
) -> None:
    """An id that is not a string is refused naming its type, everywhere an id is taken."""
    expected = f"image id must be a string (got {type(image_id).__name__})"
    async with make_session() as session:
        messages = await id_refusals(session, image_id)

    assert [expected] * 3 == messages
    assert [] == fake.requests


@pytest.mark.anyio
async def test_validation_runs_before_session_state_check(fake: FakeAkool) -> None:
    """Bad input is reported as bad input even on a session that was never opened."""
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    session = ak.AkoolSession(api_key=API_KEY, base_url=BASE_URL, http_client=client)

    with pytest.raises(ak.InvalidInput):
        await session.create_by_prompt("   ")

    assert [] == fake.requests
    await client.aclose()


# -- configuration --------------------------------------------------------------------------------


BASE_URL_RULE = (
    "must be an absolute http(s) URL with no spaces around it and a port (i"
    "f any) from 1 to 65535, e.g. https://openapi.akool.com or http://127.0.0.1:8787"
)


def session_kwargs(**kwargs: Any) -> dict[str, Any]:
    """AkoolSession arguments with the test base URL (no client is made before `async with`)."""
    return {"base_url": BASE_URL, **kwargs}


def test_no_credentials_names_every_variable() -> None:
    """With no arguments and no AKOOL_* variables, MissingCredentials names all four variables."""
    with pytest.raises(ak.MissingCredentials) as raised:
        ak.AkoolSession(**session_kwargs())

    message = str(raised.value)
    for name in ("AKOOL_API_KEY", "AKOOL_TOKEN", "AKOOL_CLIENT_ID", "AKOOL_CLIENT_SECRET"):
        assert name in message
    for argument in ("api_key=", "token=", "client_id=", "client_secret="):
        assert argument in message
    assert isinstance(raised.value, ak.InvalidInput)
    assert isinstance(raised.value, ValueError)


def test_api_key_and_token_together_refused() -> None:
    """Akool would silently prefer the token, so giving both is an error; no secret is echoed."""
    with pytest.raises(ak.InvalidInput, match="give either api_key or token, not both") as raised:
        ak.AkoolSession(**session_kwargs(api_key=API_KEY, token=TOKEN))

    assert ak.InvalidInput is type(raised.value)
    assert [] == [secret for secret in SECRETS if secret in str(raised.value)]


@pytest.mark.parametrize(
    ("kwargs", "missing"),
    [
        ({"client_id": CLIENT_ID}, "client_secret"),
        ({"client_secret": CLIENT_SECRET}, "client_id"),
        ({"api_key": API_KEY, "client_id": CLIENT_ID}, "client_secret"),
    ],
)
def test_half_a_client_pair_refused(kwargs: dict[str, str], missing: str) -> None:
    """client_id and client_secret go together; the message names the missing half."""
    with pytest.raises(ak.InvalidInput) as raised:
        ak.AkoolSession(**session_kwargs(**kwargs))

    expected = f"client_id and client_secret go together; the argument for {missing} is missing"
    assert expected == str(raised.value)
    assert [] == [secret for secret in SECRETS if secret in str(raised.value)]


@pytest.mark.parametrize("name", ["api_key", "token", "client_id", "client_secret"])
@pytest.mark.parametrize("value", ["", "   "])
def test_empty_credential_refused(name: str, value: str) -> None:
    """An empty or blank credential is refused by name rather than sent."""
    kwargs = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    kwargs[name] = value

    with pytest.raises(ak.InvalidInput) as raised:
        ak.AkoolSession(**session_kwargs(**kwargs))

    assert f"{name} is empty; give a non-empty value or leave it out" == str(raised.value)
    assert ak.InvalidInput is type(raised.value)


@pytest.mark.parametrize(
    ("value", "kind", "at"),
    [
        (
            "sk-REALSECRET123\r",
            "a control character (such as a carriage return, newline or tab)",
            17,
        ),
        ("sk-X ", "a space", 5),
        (" sk-X", "a space", 1),
        ("k\u00e9", "a non-ASCII character", 2),
        ("a\nb", "a control character (such as a carriage return, newline or tab)", 2),
        ("a\x7fb", "a control character (such as a carriage return, newline or tab)", 2),
    ],
)
@pytest.mark.parametrize("name", ["api_key", "token", "client_secret"])
def test_a_credential_headers_cannot_carry_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, kind: str, at: int
) -> None:
    """A stray space, control or non-ASCII character is refused when the session is made, by
    the argument's or variable's name and the character's class, never quoting the value."""
    kwargs = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, name: value}
    variables = {
        "api_key": "AKOOL_API_KEY",
        "token": "AKOOL_TOKEN",
        "client_secret": "AKOOL_CLIENT_SECRET",
    }
    rest = (
        f"contains {kind} at character {at}: a credential is printable ASCII without spaces; "
        "copy it again without the stray character"
    )
    with pytest.raises(ak.InvalidInput) as raised:
        ak.AkoolSession(**session_kwargs(**kwargs))
    assert f"{name} {rest}" == str(raised.value)

    monkeypatch.setenv("AKOOL_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("AKOOL_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv(variables[name], value)
    with pytest.raises(ak.InvalidInput) as raised:
        ak.AkoolSession()
    assert f"{variables[name]} {rest}" == str(raised.value)


@pytest.mark.parametrize(
    "base_url",
    [
        "",
        "openapi.akool.com",
        "/api",
        "ftp://openapi.akool.com",
        "https://",
        "https://[::1",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:0",
        " https://openapi.akool.com",
        "https://openapi.akool.com ",
    ],
)
def test_bad_base_url_refused(base_url: str) -> None:
    """base_url must be an absolute http(s) URL, port 1..65535, no spaces around it; anything
    else is InvalidInput, echoing it with an example."""
    with pytest.raises(ak.InvalidInput) as raised:
        ak.AkoolSession(api_key=API_KEY, base_url=base_url)

    assert f"base_url {BASE_URL_RULE} (got {base_url!r})" == str(raised.value)


def test_a_refused_base_url_never_shows_its_password() -> None:
    """The password of a refused base URL's user info is masked in the message."""
    with pytest.raises(ak.InvalidInput) as raised:
        ak.AkoolSession(api_key=API_KEY, base_url="ftp://user:s3cretpw@host")

    assert f"base_url {BASE_URL_RULE} (got 'ftp://user:********@host')" == str(raised.value)


@pytest.mark.parametrize("base_url", ["http://user:s3cretpw@127.0.0.1:8787", "https://user@host/"])
def test_a_base_url_with_user_info_is_refused_without_showing_it(base_url: str) -> None:
    """httpx would send it as Basic authentication beside Akool's header; it is refused, and
    the message shows the URL without it."""
    with pytest.raises(ak.InvalidInput) as raised:
        ak.AkoolSession(api_key=API_KEY, base_url=base_url)

    shown = base_url.replace("user:s3cretpw@", "").replace("user@", "")
    assert (
        f"base_url must not carry a user name or password (got {shown!r} with one): Akool "
        "authenticates with the api key, the token or the client credentials"
    ) == str(raised.value)


# -- environment fallbacks ------------------------------------------------------------------------


def env_session(fake: FakeAkool, **kwargs: Any) -> ak.AkoolSession:
    """A session on the fake whose credentials (and, unless given, base URL) come from AKOOL_*."""
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    return ak.AkoolSession(http_client=client, **kwargs)


def auth_headers(request: httpx.Request) -> dict[str, str | None]:
    """The two auth headers a request carried."""
    return {
        "x-api-key": request.headers.get("x-api-key"),
        "authorization": request.headers.get("authorization"),
    }


@pytest.mark.anyio
async def test_env_api_key(fake: FakeAkool, monkeypatch: pytest.MonkeyPatch) -> None:
    """AKOOL_API_KEY alone is sent as x-api-key."""
    monkeypatch.setenv("AKOOL_API_KEY", "env-api-key")
    fake.on(CREDIT_PATH, CREDIT_RESPONSE)

    async with env_session(fake, base_url=BASE_URL) as session:
        assert 123 == await session.get_credit()

    assert [{"x-api-key": "env-api-key", "authorization": None}] == [
        auth_headers(r) for r in fake.requests
    ]


@pytest.mark.anyio
async def test_env_token(fake: FakeAkool, monkeypatch: pytest.MonkeyPatch) -> None:
    """AKOOL_TOKEN alone is sent as a bearer token."""
    monkeypatch.setenv("AKOOL_TOKEN", "env-token")
    fake.on(CREDIT_PATH, CREDIT_RESPONSE)

    async with env_session(fake, base_url=BASE_URL) as session:
        await session.get_credit()

    assert [{"x-api-key": None, "authorization": "Bearer env-token"}] == [
        auth_headers(r) for r in fake.requests
    ]


@pytest.mark.anyio
async def test_env_client_credentials(fake: FakeAkool, monkeypatch: pytest.MonkeyPatch) -> None:
    """AKOOL_CLIENT_ID and AKOOL_CLIENT_SECRET fetch a token from getToken, then use it."""
    monkeypatch.setenv("AKOOL_CLIENT_ID", "env-client-id")
    monkeypatch.setenv("AKOOL_CLIENT_SECRET", "env-client-secret")
    fake.on(TOKEN_PATH, TOKEN_RESPONSE)
    fake.on(CREDIT_PATH, CREDIT_RESPONSE)

    async with env_session(fake, base_url=BASE_URL) as session:
        await session.get_credit()

    assert [("POST", TOKEN_PATH), ("GET", CREDIT_PATH)] == [
        (r.method, r.url.path) for r in fake.requests
    ]
    assert {"clientId": "env-client-id", "clientSecret": "env-client-secret"} == fake.body(
        fake.requests[0]
    )
    assert {"x-api-key": None, "authorization": f"Bearer {TOKEN_RESPONSE['token']}"} == (
        auth_headers(fake.requests[1])
    )


@pytest.mark.parametrize(
    ("variable", "other"),
    [("AKOOL_CLIENT_ID", "AKOOL_CLIENT_SECRET"), ("AKOOL_CLIENT_SECRET", "AKOOL_CLIENT_ID")],
)
def test_env_half_client_pair_refused(
    variable: str, other: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half a client pair in the environment is an error naming the missing variable's role."""
    monkeypatch.setenv(variable, "half")

    with pytest.raises(ak.InvalidInput) as raised:
        ak.AkoolSession(**session_kwargs())

    missing = "client_secret" if other == "AKOOL_CLIENT_SECRET" else "client_id"
    expected = (
        "client_id and client_secret go together; "
        f"the environment variable for {missing} is missing"
    )
    assert expected == str(raised.value)


def test_env_api_key_and_token_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """AKOOL_API_KEY and AKOOL_TOKEN together are as ambiguous as the two arguments."""
    monkeypatch.setenv("AKOOL_API_KEY", "env-api-key")
    monkeypatch.setenv("AKOOL_TOKEN", "env-token")

    with pytest.raises(ak.InvalidInput, match="give either api_key or token, not both"):
        ak.AkoolSession(**session_kwargs())


def test_empty_env_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """An AKOOL_API_KEY set to '' is no credential: MissingCredentials, not an empty key."""
    monkeypatch.setenv("AKOOL_API_KEY", "")

    with pytest.raises(ak.MissingCredentials):
        ak.AkoolSession(**session_kwargs())


@pytest.mark.anyio
async def test_env_base_url(fake: FakeAkool, monkeypatch: pytest.MonkeyPatch) -> None:
    """AKOOL_BASE_URL is the API root when no base_url is given (path prefix kept)."""
    monkeypatch.setenv("AKOOL_BASE_URL", "https://env.akool.test/prefix")
    fake.on("/prefix" + CREDIT_PATH, CREDIT_RESPONSE)

    async with env_session(fake, api_key=API_KEY) as session:
        assert "https://env.akool.test/prefix/" == str(session.base_url)
        await session.get_credit()

    assert ["https://env.akool.test/prefix/api/open/v3/faceswap/quota/info"] == [
        str(r.url) for r in fake.requests
    ]


def test_default_base_url() -> None:
    """Without argument or variable, the API root is Akool's public one."""
    session = ak.AkoolSession(api_key=API_KEY)

    assert "https://openapi.akool.com/" == str(session.base_url)
    assert "https://openapi.akool.com" == ak.DEFAULT_BASE_URL


def test_base_url_argument_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit base_url wins over AKOOL_BASE_URL."""
    monkeypatch.setenv("AKOOL_BASE_URL", "https://env.akool.test")

    assert "https://arg.akool.test/" == str(
        ak.AkoolSession(api_key=API_KEY, base_url="https://arg.akool.test").base_url
    )


@pytest.mark.parametrize(
    "bad", ["ftp://env.akool.test", "env.akool.test", "https://", "http://127.0.0.1:99999"]
)
def test_bad_env_base_url_refused(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed AKOOL_BASE_URL is refused like a malformed argument, by its name."""
    monkeypatch.setenv("AKOOL_BASE_URL", bad)

    with pytest.raises(ak.InvalidInput) as raised:
        ak.AkoolSession(api_key=API_KEY)

    assert f"AKOOL_BASE_URL {BASE_URL_RULE} (got {bad!r})" == str(raised.value)


def set_all_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every AKOOL_* credential variable set, to prove none of them is read."""
    monkeypatch.setenv("AKOOL_API_KEY", "env-api-key")
    monkeypatch.setenv("AKOOL_TOKEN", "env-token")
    monkeypatch.setenv("AKOOL_CLIENT_ID", "env-client-id")
    monkeypatch.setenv("AKOOL_CLIENT_SECRET", "env-client-secret")


@pytest.mark.parametrize(
    ("kwargs", "expected_headers"),
    [
        ({"api_key": API_KEY}, {"x-api-key": API_KEY, "authorization": None}),
        ({"token": TOKEN}, {"x-api-key": None, "authorization": f"Bearer {TOKEN}"}),
    ],
    ids=["api_key", "token"],
)
@pytest.mark.anyio
async def test_explicit_credential_ignores_env(
    kwargs: dict[str, str],
    expected_headers: dict[str, str | None],
    fake: FakeAkool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One credential argument means no AKOOL_* credential is read: no conflict, no mixing."""
    set_all_env(monkeypatch)
    fake.on(CREDIT_PATH, CREDIT_RESPONSE)

    async with env_session(fake, base_url=BASE_URL, **kwargs) as session:
        await session.get_credit()

    assert [expected_headers] == [auth_headers(r) for r in fake.requests]


@pytest.mark.anyio
async def test_explicit_client_pair_ignores_env(
    fake: FakeAkool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Explicit client credentials are the ones sent to getToken; the env api key is not used."""
    set_all_env(monkeypatch)
    fake.on(TOKEN_PATH, TOKEN_RESPONSE)
    fake.on(CREDIT_PATH, CREDIT_RESPONSE)

    async with env_session(
        fake, base_url=BASE_URL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    ) as session:
        await session.get_credit()

    assert {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET} == fake.body(fake.requests[0])
    assert [
        {"x-api-key": None, "authorization": None},
        {"x-api-key": None, "authorization": f"Bearer {TOKEN_RESPONSE['token']}"},
    ] == [auth_headers(r) for r in fake.requests]


@pytest.mark.parametrize(
    ("given", "missing"),
    [({"client_id": CLIENT_ID}, "client_secret"), ({"client_secret": CLIENT_SECRET}, "client_id")],
)
def test_env_never_completes_an_argument_pair(
    given: dict[str, str], missing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half a client pair as an argument is not completed from the environment."""
    set_all_env(monkeypatch)

    with pytest.raises(ak.InvalidInput) as raised:
        ak.AkoolSession(**session_kwargs(**given))

    expected = f"client_id and client_secret go together; the argument for {missing} is missing"
    assert expected == str(raised.value)
