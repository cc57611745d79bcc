"""The emulator probed over a real loopback socket with raw httpx calls, against Akool's docs.

Raw httpx rather than AkoolSession, so that a misreading shared by the SDK and the emulator cannot
hide here. The emulator's clock is a hand-moved one, so a test steps a job through its life in no
real time while the bytes still cross a real socket.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from PIL import Image

import samples
from akool_async.testing import AkoolEmulator
from conftest import FIXED_TIMINGS as TIMINGS

# Real time: these tests talk through a real socket.
pytestmark = [pytest.mark.real_time, pytest.mark.anyio]

API = "/api/open/v3"
PROMPT = f"{API}/content/image/createbyprompt"
BUTTON = f"{API}/content/image/createbybutton"
INFO = f"{API}/content/image/infobymodelid"
QUOTA = f"{API}/faceswap/quota/info"
TOKEN = f"{API}/getToken"
KEY = {"x-api-key": "emu-key"}
SEVEN_DAYS = 7 * 24 * 3600.0


class ManualClock:
    """The emulator's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def emulator(clock: ManualClock) -> AkoolEmulator:
    return AkoolEmulator(
        api_key="emu-key",
        client_id="emu-client",
        client_secret="emu-secret-of-24-bytes!!",
        clock=clock,
        timings=TIMINGS,
        start=datetime(2026, 11, 22, tzinfo=UTC),
        credit=100,
    )


@pytest.fixture
async def http(emulator: AkoolEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with emulator.serve() as url, httpx.AsyncClient(base_url=url) as client:
        yield client


def types_of(data: dict[str, Any]) -> dict[str, type]:
    return {key: type(value) for key, value in data.items()}


async def create(
    http: httpx.AsyncClient, prompt: str = "a red fox in snow", **extra: Any
) -> dict[str, Any]:
    response = await http.post(PROMPT, headers=KEY, json={"prompt": prompt, **extra})
    body: dict[str, Any] = response.json()
    assert (200, 1000, "OK") == (response.status_code, body["code"], body["msg"])
    return body["data"]  # type: ignore[no-any-return]


async def info(http: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await http.get(INFO, headers=KEY, params={"image_model_id": job_id})
    body: dict[str, Any] = response.json()
    assert 1000 == body["code"], body
    return body["data"]  # type: ignore[no-any-return]


async def code_of(response: httpx.Response) -> int:
    assert 200 == response.status_code
    return response.json()["code"]  # type: ignore[no-any-return]


async def test_create_by_prompt_answers_the_documented_fields_and_types(
    http: httpx.AsyncClient,
) -> None:
    """The create answer has the docs sample's fields, with the same JSON types."""
    data = await create(http, **samples.CREATE_BY_PROMPT_REQUEST)
    docs = samples.CREATE_BY_PROMPT_RESPONSE["data"]
    assert types_of(docs) == types_of(data)
    assert (1, 2, 24) == (data["image_status"], data["deduction_credit"], len(data["_id"]))
    assert samples.CREATE_BY_PROMPT_REQUEST["source_image"] == data["source_image"]
    assert datetime(2026, 11, 22, tzinfo=UTC).timestamp() * 1000 == data["create_time"]


async def test_job_lifecycle_and_the_grid_quirk(
    http: httpx.AsyncClient, clock: ManualClock
) -> None:
    """Queueing, processing, status 3 without quadrants, then quadrants and buttons."""
    job_id = (await create(http))["_id"]
    seen = []
    for step in (3.9, 0.2, 39.8, 0.2, 1.8, 0.2):  # around the 4 s, 44 s and 46 s boundaries
        clock.advance(step)
        data = await info(http, job_id)
        seen.append(
            (
                data["image_status"],
                "image" in data,
                len(data["upscaled_urls"]),
                len(data["buttons"]),
            )
        )
    assert [
        (1, False, 0, 0),
        (2, False, 0, 0),
        (2, False, 0, 0),
        (3, True, 0, 0),
        (3, True, 0, 0),
        (3, True, 4, 8),
    ] == seen
    docs = samples.INFO_BY_MODEL_ID_RESPONSE["data"]
    final = await info(http, job_id)
    assert types_of(docs) == types_of(final)
    assert ["U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4"] == final["buttons"]


async def test_buttons_make_children_and_are_used_once(
    http: httpx.AsyncClient, clock: ManualClock
) -> None:
    """U2 and V3 make children of the documented shape; a used button is refused with 1010."""
    parent = (await create(http, scale="16:9"))["_id"]
    early = await http.post(BUTTON, headers=KEY, json={"_id": parent, "button": "U2"})
    assert 1010 == await code_of(early)
    clock.advance(46)
    up = await http.post(
        BUTTON, headers=KEY, json={"_id": parent, "button": "U2", "webhookUrl": ""}
    )
    up_data = up.json()["data"]
    docs = samples.CREATE_BY_BUTTON_RESPONSE["data"]
    assert types_of(docs) == types_of(up_data)
    assert (parent, "U2", 1, 20) == (
        up_data["image_content_model_id"],
        up_data["op_button"],
        up_data["image_status"],
        len(up_data["op_buttonMessageId"]),
    )
    again = await http.post(BUTTON, headers=KEY, json={"_id": parent, "button": "U2"})
    assert 1010 == await code_of(again)
    vary = (await http.post(BUTTON, headers=KEY, json={"_id": parent, "button": "V3"})).json()[
        "data"
    ]
    grid = await info(http, parent)
    assert (["U2", "V3"], ["U1", "U3", "U4", "V1", "V2", "V4"]) == (
        grid["used_buttons"],
        grid["buttons"],
    )

    clock.advance(40)
    upscale, variation = await info(http, up_data["_id"]), await info(http, vary["_id"])
    assert (3, True, [], []) == (
        upscale["image_status"],
        "image" in upscale,
        upscale["upscaled_urls"],
        upscale["buttons"],
    )
    assert (3, 4, []) == (
        variation["image_status"],
        len(variation["upscaled_urls"]),
        variation["buttons"],
    )
    child_press = await http.post(BUTTON, headers=KEY, json={"_id": vary["_id"], "button": "U1"})
    assert 1010 == await code_of(child_press)


@pytest.mark.parametrize(
    ("scale", "quadrant"),
    [
        ("1:1", (512, 512)),
        ("4:3", (512, 384)),
        ("3:4", (384, 512)),
        ("16:9", (512, 288)),
        ("9:16", (288, 512)),
        ("3:2", (512, 341)),
        ("2:3", (341, 512)),
    ],
)
async def test_images_have_each_scales_aspect_ratio(
    http: httpx.AsyncClient, clock: ManualClock, scale: str, quadrant: tuple[int, int]
) -> None:
    """Composite = 2x the quadrant, quadrants at the scale's ratio, upscales larger: real PNGs."""
    parent = (await create(http, f"a lighthouse at {scale}", scale=scale))["_id"]
    clock.advance(46)
    grid = await info(http, parent)
    child = (await http.post(BUTTON, headers=KEY, json={"_id": parent, "button": "U4"})).json()[
        "data"
    ]
    clock.advance(17)
    upscale = await info(http, child["_id"])

    async def size(url: str) -> tuple[int, int]:
        response = await http.get(url)
        assert ("image/png", 200) == (response.headers["content-type"], response.status_code)
        return Image.open(io.BytesIO(response.content)).size

    width, height = quadrant
    assert (width * 2, height * 2) == await size(grid["image"])
    assert [quadrant] * 4 == [await size(url) for url in grid["upscaled_urls"]]
    assert (width * 2, height * 2) == await size(upscale["image"])


async def test_image_urls_expire_after_seven_days(
    http: httpx.AsyncClient, clock: ManualClock
) -> None:
    """A result URL works until seven days after the create, then answers 403."""
    job_id = (await create(http))["_id"]
    clock.advance(46)
    url = (await info(http, job_id))["upscaled_urls"][0]
    clock.advance(SEVEN_DAYS - 46 - 1)
    assert 200 == (await http.get(url)).status_code
    clock.advance(1)
    expired = await http.get(url)
    assert (403, True) == (expired.status_code, b"<Code>AccessDenied</Code>" in expired.content)
    assert job_id == (await info(http, job_id))["_id"]


async def test_auth_precedence_and_codes(http: httpx.AsyncClient) -> None:
    """Authorization wins over x-api-key; a bad one is 1101, none at all is 1102."""
    token = (
        await http.post(
            TOKEN, json={"clientId": "emu-client", "clientSecret": "emu-secret-of-24-bytes!!"}
        )
    ).json()
    assert (1000, str) == (token["code"], type(token["token"]))
    assert "data" not in token
    good_bearer = {"authorization": f"Bearer {token['token']}"}
    assert 1000 == await code_of(
        await http.get(QUOTA, headers={**good_bearer, "x-api-key": "wrong"})
    )
    assert 1101 == await code_of(
        await http.get(QUOTA, headers={"authorization": "Bearer nope", **KEY})
    )
    assert 1101 == await code_of(await http.get(QUOTA, headers={"x-api-key": "wrong"}))
    assert 1102 == await code_of(await http.get(QUOTA))
    assert 1101 == await code_of(
        await http.post(TOKEN, json={"clientId": "emu-client", "clientSecret": "x"})
    )
    assert 1003 == await code_of(await http.post(TOKEN, json={"clientId": "emu-client"}))


async def test_parameter_and_content_codes(http: httpx.AsyncClient) -> None:
    """1003 for bad parameters, 1008 for an unknown id, as Akool documents them."""
    for body in (
        {},
        {"prompt": "  "},
        {"prompt": "x", "scale": "5:4"},
        {"prompt": "x", "source_image": "ftp://a"},
    ):
        assert 1003 == await code_of(await http.post(PROMPT, headers=KEY, json=body))
    assert 1003 == await code_of(await http.get(INFO, headers=KEY))
    assert 1008 == await code_of(
        await http.get(INFO, headers=KEY, params={"image_model_id": "f" * 24})
    )
    assert 1008 == await code_of(
        await http.post(BUTTON, headers=KEY, json={"_id": "f" * 24, "button": "U1"})
    )
    assert 1003 == await code_of(
        await http.post(BUTTON, headers=KEY, json={"_id": "f" * 24, "button": "U5"})
    )
    envelope = (await http.get(INFO, headers=KEY)).json()
    assert {"code": 1003, "msg": "Parameter error or Parameter can not be empty"} == envelope


async def test_credit_is_charged_per_create(
    http: httpx.AsyncClient, emulator: AkoolEmulator
) -> None:
    """Each create costs 2 credits; quota/info reports the balance; an empty account gets 1006."""
    assert {"code": 1000, "msg": "OK", "data": {"credit": 100}} == (
        await http.get(QUOTA, headers=KEY)
    ).json()
    for n in range(50):
        await create(http, f"prompt {n}")
    assert 0 == (await http.get(QUOTA, headers=KEY)).json()["data"]["credit"]
    assert 1006 == await code_of(await http.post(PROMPT, headers=KEY, json={"prompt": "one more"}))
    assert (100, 50) == (emulator.credits_used, len(emulator.jobs))


async def test_accounting_records_what_the_server_saw(
    http: httpx.AsyncClient, emulator: AkoolEmulator
) -> None:
    """Requests, creates per prompt and per endpoint are counted; secrets are not recorded."""
    await create(http, "twice")
    await create(http, "twice")
    await http.post(
        TOKEN, json={"clientId": "emu-client", "clientSecret": "emu-secret-of-24-bytes!!"}
    )
    assert 2 == emulator.creates_for("twice")
    assert {"createbyprompt": 2, "getToken": 1} == dict(emulator.requests_per_endpoint())
    assert {"clientId": "emu-client", "clientSecret": "***"} == emulator.requests[-1].body
    assert ["api_key", "api_key", None] == [r.auth for r in emulator.requests]


async def test_unknown_routes(http: httpx.AsyncClient) -> None:
    """Paths Akool does not have answer 404; a known path with the wrong method 405."""
    assert 404 == (await http.get(f"{API}/nothing", headers=KEY)).status_code
    assert 405 == (await http.get(PROMPT, headers=KEY)).status_code
    assert 404 == (await http.get("/_emulator/images/nope/grid.png")).status_code
