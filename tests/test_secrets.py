"""Secrets never appear in reprs, error messages or log records."""

from __future__ import annotations

import logging
import pickle
import traceback
from typing import Any

import httpx
import pytest

import akool_async as ak
from conftest import API_KEY, CLIENT_ID, CLIENT_SECRET, SECRETS, TOKEN, FakeAkool, envelope

pytestmark = pytest.mark.anyio

INFO_PATH = "/api/open/v3/content/image/infobymodelid"
PROMPT_PATH = "/api/open/v3/content/image/createbyprompt"
TOKEN_PATH = "/api/open/v3/getToken"


def assert_no_secret(text: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert [] == leaked


def test_secret_and_credentials_reprs_hide_values() -> None:
    """Secret and Credentials print which credentials exist, never their values."""
    creds = ak.Credentials.resolve(
        api_key=API_KEY, token=None, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    assert "Secret('********')" == repr(ak.Secret(API_KEY)) == str(ak.Secret(API_KEY))
    assert "Credentials(mode='api_key', given=['api_key', 'client_id', 'client_secret'])" == repr(
        creds
    )
    assert API_KEY == creds.api_key.reveal()  # type: ignore[union-attr]


def test_session_repr_hides_credentials() -> None:
    """A session prints its state, base URL and auth mode only."""
    for kwargs in (
        {"api_key": API_KEY},
        {"token": TOKEN},
        {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    ):
        session = ak.AkoolSession(**kwargs)
        assert_no_secret(repr(session))
        assert repr(session).startswith(
            "<AkoolSession unopened base_url='https://openapi.akool.com/'"
        )


async def test_errors_and_logs_carry_no_secret(
    fake: FakeAkool, make_session: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Across getToken, a renewal, retries and failures, no record or error text has a secret."""
    caplog.set_level(logging.DEBUG)
    fake.on(TOKEN_PATH, {"code": 1000, "token": TOKEN})
    fake.on(
        INFO_PATH,
        envelope(code=1101, msg="expired"),
        httpx.ReadError("reset"),
        httpx.Response(503),
        envelope(code=1009, msg="no permission"),
    )
    fake.on(PROMPT_PATH, httpx.ReadTimeout("read timeout"))
    errors: list[BaseException] = []
    async with make_session(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as session:
        for call in (
            session.get_image_info("64dd82eef0b6684651e90131"),
            session.create_by_prompt("x"),
        ):
            try:
                await call
            except ak.AkoolError as exc:
                errors.append(exc)
    assert [ak.PermissionDenied, ak.SubmissionUnknown] == [type(e) for e in errors]
    texts = [record.getMessage() for record in caplog.records]
    texts += ["".join(traceback.format_exception(e)) for e in errors]
    texts += [repr(e) for e in errors] + [repr(pickle.loads(pickle.dumps(e))) for e in errors]
    assert_no_secret("\n".join(texts))
    # The logs did record the work, so the check above is not vacuous.
    assert any("retry" in text for text in texts)
    assert any("1101" in text for text in texts)


async def test_get_token_failure_message_has_no_secret(fake: FakeAkool, make_session: Any) -> None:
    """When getToken fails, the error names the endpoint, not the client secret it sent."""
    fake.on(TOKEN_PATH, httpx.Response(500, text=f"echo {CLIENT_SECRET}"))
    async with make_session(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as session:
        with pytest.raises(ak.ServerError) as caught:
            await session.get_credit()
    assert_no_secret("".join(traceback.format_exception(caught.value)))


async def test_malformed_get_token_answer_is_never_quoted(
    fake: FakeAkool, make_session: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A getToken answer with a token but a wrong-typed code is not quoted in errors or logs."""
    caplog.set_level(logging.DEBUG)
    fake.on(TOKEN_PATH, {"code": "1000", "token": TOKEN})
    async with make_session(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as session:
        with pytest.raises(ak.InvalidResponse) as caught:
            await session.get_credit()
    assert "body not shown" in str(caught.value)
    texts = [record.getMessage() for record in caplog.records]
    assert_no_secret("\n".join([*texts, "".join(traceback.format_exception(caught.value))]))
