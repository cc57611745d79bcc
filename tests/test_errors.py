"""The error tree: one class per business code, end to end through a session, and pickling."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import pytest

import akool_async as ak
from akool_async._errors import error_for_code
from akool_async.testing import AkoolEmulator
from conftest import FakeAkool, envelope
from samples import DOCUMENTED_CODES, IMAGE_INFO_PATH, UNVERIFIED_CODES

BUTTON_PATH = "/api/open/v3/content/image/createbybutton"
BUTTON_HINT = (
    "press buttons only after the grid job completed (await job.wait() first, or use "
    "job.upscale(n) / job.vary(n), which wait), each button once, and only on a prompt's grid: "
    "follow-up jobs have no buttons"
)
EXPECTED_CLASSES: dict[int, type[ak.APIError]] = {
    1003: ak.ParameterError,
    1008: ak.ContentNotFound,
    1009: ak.PermissionDenied,
    1010: ak.OperationNotAllowed,
    1101: ak.AuthenticationError,
    1102: ak.AuthenticationError,
    1108: ak.GenerationError,
    1200: ak.AccountBanned,
    # Unverified codes (third-party copy of Akool's code page), mapped all the same.
    1005: ak.RateLimited,
    1006: ak.InsufficientCredit,
    1104: ak.InsufficientCredit,
    1103: ak.PaymentRequired,
    1213: ak.PaymentRequired,
    1221: ak.PaymentRequired,
    1109: ak.AuthenticationError,
}
MESSAGES = DOCUMENTED_CODES | UNVERIFIED_CODES
ALL_CODES = sorted(EXPECTED_CLASSES)
UNKNOWN_CODE = 4242


def test_every_listed_code_has_a_message_sample() -> None:
    """The expectation table covers exactly the codes the docs and FACTS.md list."""
    assert sorted(MESSAGES) == ALL_CODES


@pytest.mark.parametrize("code", ALL_CODES)
def test_error_for_code_maps_to_class(code: int) -> None:
    """error_for_code builds the code's own class with code, msg and endpoint."""
    error = error_for_code(code, MESSAGES[code], endpoint=IMAGE_INFO_PATH)

    hint = f" ({BUTTON_HINT})" if code == 1010 else ""
    assert EXPECTED_CLASSES[code] is type(error)
    assert (code, MESSAGES[code], IMAGE_INFO_PATH) == (error.code, error.msg, error.endpoint)
    assert f"Akool answered code {code} from {IMAGE_INFO_PATH}: {MESSAGES[code]}{hint}" == str(
        error
    )


@pytest.mark.anyio
async def test_a_button_pressed_before_the_grid_completed_says_to_wait() -> None:
    """createbybutton at once after createbyprompt: Akool's bare 1010, with what to do."""
    emulator = AkoolEmulator()
    async with (
        emulator.client() as http,
        ak.AkoolSession(api_key=emulator.api_key, http_client=http) as session,
    ):
        info = await session.create_by_prompt("a red fox in snow")
        with pytest.raises(ak.OperationNotAllowed) as caught:
            await session.create_by_button(info.id, "U1")

    assert (
        f"Akool answered code 1010 from {BUTTON_PATH}: You can not operate this content "
        f"({BUTTON_HINT})"
    ) == str(caught.value)
    assert 0 == emulator.button_presses[(info.id, "U1")]


def test_error_for_unknown_code_is_plain_api_error() -> None:
    """A code nobody documented still gives a typed APIError carrying code and msg."""
    error = error_for_code(UNKNOWN_CODE, "something new")

    assert ak.APIError is type(error)
    assert (UNKNOWN_CODE, "something new", None) == (error.code, error.msg, error.endpoint)
    assert "Akool answered code 4242: something new" == str(error)


def test_error_message_without_msg_says_so() -> None:
    """An empty msg reads as '(no message)' rather than a dangling colon."""
    assert "Akool answered code 1003: (no message)" == str(error_for_code(1003, ""))


@pytest.mark.anyio
@pytest.mark.parametrize("code", ALL_CODES)
async def test_session_raises_class_for_code(
    code: int, fake: FakeAkool, make_session: Callable[..., ak.AkoolSession]
) -> None:
    """A non-1000 code from infobymodelid surfaces as its class with code, msg and endpoint."""
    fake.on(IMAGE_INFO_PATH, envelope(code=code, msg=MESSAGES[code]))

    async with make_session() as session:
        with pytest.raises(ak.APIError) as raised:
            await session.get_image_info("662a10df4197b3af58532e89")

    error = raised.value
    assert EXPECTED_CLASSES[code] is type(error)
    assert (code, MESSAGES[code], IMAGE_INFO_PATH) == (error.code, error.msg, error.endpoint)
    # Rate limiting (1005) is the one refusal a read retries; every other code is final.
    expected_requests = session.retry.attempts if code == 1005 else 1
    assert expected_requests == len(fake.sent(IMAGE_INFO_PATH))


@pytest.mark.anyio
async def test_session_unknown_code_is_plain_api_error(
    fake: FakeAkool, make_session: Callable[..., ak.AkoolSession]
) -> None:
    """An undocumented code through a session gives a plain APIError, sent once."""
    fake.on(IMAGE_INFO_PATH, envelope(code=UNKNOWN_CODE, msg="brand new failure"))

    async with make_session() as session:
        with pytest.raises(ak.APIError) as raised:
            await session.get_image_info("662a10df4197b3af58532e89")

    error = raised.value
    assert ak.APIError is type(error)
    assert (UNKNOWN_CODE, "brand new failure", IMAGE_INFO_PATH) == (
        error.code,
        error.msg,
        error.endpoint,
    )
    assert 1 == len(fake.sent(IMAGE_INFO_PATH))


@pytest.mark.anyio
@pytest.mark.parametrize("msg", [None, 17, ["x"]])
async def test_session_non_string_msg_reads_as_empty(
    msg: Any, fake: FakeAkool, make_session: Callable[..., ak.AkoolSession]
) -> None:
    """A msg that is not a string still gives the typed error, with msg ''."""
    fake.on(IMAGE_INFO_PATH, {"code": 1008, "msg": msg})

    async with make_session() as session:
        with pytest.raises(ak.ContentNotFound) as raised:
            await session.get_image_info("662a10df4197b3af58532e89")

    assert (1008, "") == (raised.value.code, raised.value.msg)


# -- the shape of the tree ------------------------------------------------------------------------

PUBLIC_ERRORS = [
    obj
    for name in ak.__all__
    if isinstance(obj := getattr(ak, name), type) and issubclass(obj, Exception)
]


def test_public_error_list_is_complete() -> None:
    """Every exception the package exports is counted here (guards the next test)."""
    assert 33 == len(PUBLIC_ERRORS)


@pytest.mark.parametrize("cls", PUBLIC_ERRORS, ids=lambda cls: cls.__name__)
def test_every_error_is_an_akool_error(cls: type[Exception]) -> None:
    """Every exported exception derives from AkoolError, so one except clause catches them all."""
    assert issubclass(cls, ak.AkoolError)


@pytest.mark.parametrize("cls", sorted(set(EXPECTED_CLASSES.values()), key=lambda c: c.__name__))
def test_code_classes_are_api_errors(cls: type[ak.APIError]) -> None:
    """Every business-code class is an APIError."""
    assert issubclass(cls, ak.APIError)


def test_builtin_bases() -> None:
    """InvalidInput is a ValueError; WaitTimeout and RequestTimeout are TimeoutErrors."""
    assert (True, True, True, True) == (
        issubclass(ak.InvalidInput, ValueError),
        issubclass(ak.MissingCredentials, ak.InvalidInput),
        issubclass(ak.WaitTimeout, TimeoutError),
        issubclass(ak.RequestTimeout, TimeoutError),
    )


def test_transport_subtree() -> None:
    """Connect, timeout, protocol, status and shape failures are all TransportErrors."""
    assert all(
        issubclass(cls, ak.TransportError)
        for cls in (
            ak.ConnectError,
            ak.RequestTimeout,
            ak.RemoteProtocolError,
            ak.HTTPStatusError,
            ak.TooManyRequests,
            ak.ServerError,
            ak.InvalidResponse,
        )
    )
    assert (True, True) == (
        issubclass(ak.TooManyRequests, ak.HTTPStatusError),
        issubclass(ak.ServerError, ak.HTTPStatusError),
    )


def test_public_errors_report_public_module() -> None:
    """Exported errors say akool_async.X in tracebacks, not akool_async._errors.X."""
    assert {"akool_async"} == {cls.__module__ for cls in PUBLIC_ERRORS}


# -- pickling -------------------------------------------------------------------------------------


def _rate_limited() -> ak.RateLimited:
    error = error_for_code(1005, "Operation is too frequent", endpoint=IMAGE_INFO_PATH)
    assert isinstance(error, ak.RateLimited)
    error.retry_after = 3.0
    return error


PICKLE_CASES: list[tuple[str, Callable[[], BaseException]]] = [  # (test id, builder)
    *(
        (f"code-{code}", lambda code=code: error_for_code(code, MESSAGES[code], endpoint="/p"))
        for code in ALL_CODES
    ),
    ("code-unknown", lambda: error_for_code(UNKNOWN_CODE, "new", endpoint=None)),
    ("rate-limited-retry-after", _rate_limited),
    ("invalid-input", lambda: ak.InvalidInput("scale must be one of ... (got '5:4')")),
    ("missing-credentials", lambda: ak.MissingCredentials("no Akool credentials")),
    ("missing-dependency", lambda: ak.MissingDependency("needs h2", name="h2")),
    ("connect", lambda: ak.ConnectError("could not connect", endpoint="/p")),
    ("request-timeout", lambda: ak.RequestTimeout("timed out", endpoint="/p")),
    ("remote-protocol", lambda: ak.RemoteProtocolError("broke", endpoint="/p")),
    ("transport", lambda: ak.TransportError("failed", endpoint="/p")),
    ("invalid-response", lambda: ak.InvalidResponse("not JSON", endpoint="/p")),
    ("http-status", lambda: ak.HTTPStatusError("HTTP 404", status_code=404, endpoint="/p")),
    ("server-error", lambda: ak.ServerError("HTTP 503", status_code=503, endpoint="/p")),
    ("too-many", lambda: ak.TooManyRequests("HTTP 429", retry_after=2.5, endpoint="/p")),
    (
        "submission-unknown",
        lambda: ak.SubmissionUnknown("/p", {"prompt": "a fox", "scale": "1:1"}, "HTTP 502"),
    ),
    ("wait-timeout", lambda: ak.WaitTimeout("662a10df4197b3af58532e89", 30.0)),
    (
        "job-failed",
        lambda: ak.JobFailed(ak.ImageInfo(id="662a10df", status=ak.ImageStatus.FAILED)),
    ),
]


def _attributes(error: BaseException) -> dict[str, Any]:
    state = {key: value for key, value in vars(error).items() if not key.startswith("__")}
    # Class-level defaults (RateLimited.retry_after) count as attributes too.
    for name in ("code", "msg", "endpoint", "retry_after", "status_code", "payload", "info"):
        if hasattr(error, name):
            state[name] = getattr(error, name)
    if "payload" in state:
        state["payload"] = dict(state["payload"])
    return state


@pytest.mark.parametrize("build", [pytest.param(build, id=case) for case, build in PICKLE_CASES])
def test_error_survives_pickle(build: Callable[[], BaseException]) -> None:
    """An error pickles and unpickles to the same class, message and attributes."""
    error = build()

    again = pickle.loads(pickle.dumps(error))

    assert type(error) is type(again)
    assert str(error) == str(again)
    assert _attributes(error) == _attributes(again)
