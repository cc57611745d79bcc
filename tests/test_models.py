"""ImageInfo read from and written to Akool's wire format, and the small enums around it."""

from __future__ import annotations

import copy
import math
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import akool_async as ak
from akool_async._endpoints import (
    CREATE_BY_BUTTON,
    CREATE_BY_PROMPT,
    CREDIT_INFO,
    GET_TOKEN,
    IMAGE_INFO,
)
from akool_async._validate import is_job_id
from samples import CREATE_BY_BUTTON_RESPONSE, INFO_BY_MODEL_ID_RESPONSE

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The createbyprompt table documents `data` as `{ _id: "", image_status: 1 }`: the least it holds.
MINIMAL_CREATE_DATA: dict[str, Any] = {"_id": "662a10df4197b3af58532e89", "image_status": 1}


def sample_data(envelope: dict[str, Any]) -> dict[str, Any]:
    """A private copy of a docs sample's ``data`` object."""
    return copy.deepcopy(envelope["data"])


# -- the docs' samples ---------------------------------------------------------------------------


def test_info_sample_maps_every_field() -> None:
    """The docs' infobymodelid answer maps field for field onto ImageInfo."""
    info = ak.ImageInfo.from_wire(sample_data(INFO_BY_MODEL_ID_RESPONSE))

    expected = ak.ImageInfo(
        id="662a10df4197b3af58532e89",
        status=ak.ImageStatus.COMPLETED,
        image=(
            "https://***.cloudfront.net/1714032892336-e0ec9305-e217-4b79-8704-e595a822c12b-8013.png"
        ),
        upscaled_urls=(),
        buttons=("U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4"),
        used_buttons=(),
        create_time=datetime(2024, 4, 25, 8, 14, 23, 272000, tzinfo=UTC),
        deduction_credit=2,
        faceswap_quality=2,
        uid=378337,
        type=3,
    )
    assert expected == info
    assert {} == dict(info.extra)


def test_info_sample_create_time_is_aware_utc() -> None:
    """create_time is an aware UTC datetime from epoch milliseconds, exact to the millisecond."""
    info = ak.ImageInfo.from_wire(sample_data(INFO_BY_MODEL_ID_RESPONSE))

    assert info.create_time is not None
    assert UTC == info.create_time.tzinfo
    assert timedelta(0) == info.create_time.utcoffset()
    assert 1714032863272 == round(info.create_time.timestamp() * 1000)


def test_info_sample_expires_seven_days_after_creation() -> None:
    """expires_at is create_time plus the documented seven days."""
    info = ak.ImageInfo.from_wire(sample_data(INFO_BY_MODEL_ID_RESPONSE))

    assert timedelta(days=7) == ak.RESULT_LIFETIME
    assert datetime(2024, 5, 2, 8, 14, 23, 272000, tzinfo=UTC) == info.expires_at


def test_expires_at_is_none_without_create_time() -> None:
    """A job without create_time has no known expiry."""
    info = ak.ImageInfo.from_wire(MINIMAL_CREATE_DATA)

    assert info.expires_at is None


def test_create_by_prompt_sample_maps_minimal_fields() -> None:
    """The documented createbyprompt data `{_id, image_status}` gives a queueing job."""
    info = ak.ImageInfo.from_wire(MINIMAL_CREATE_DATA)

    assert ak.ImageInfo(id="662a10df4197b3af58532e89", status=ak.ImageStatus.QUEUEING) == info
    assert ak.ImageStatus.QUEUEING is info.status


def test_create_by_button_sample_maps_every_field() -> None:
    """The docs' createbybutton answer maps its renamed fields (from, parent id, message id)."""
    info = ak.ImageInfo.from_wire(sample_data(CREATE_BY_BUTTON_RESPONSE))

    expected = ak.ImageInfo(
        id="6508292f16e5ba407d47d21b",
        status=ak.ImageStatus.QUEUEING,
        upscaled_urls=(),
        buttons=(),
        used_buttons=(),
        create_time=datetime(2023, 9, 18, 10, 40, 47, 12000, tzinfo=UTC),
        deduction_credit=2,
        faceswap_quality=2,
        from_=1,
        parent_id="6508288416e5ba407d47d13f",
        op_button="U2",
        op_button_message_id="kwZsk6elltno5Nt37VLj",
    )
    assert expected == info
    assert info.is_upscale
    assert datetime(2023, 9, 25, 10, 40, 47, 12000, tzinfo=UTC) == info.expires_at


def test_text_fields_map_to_their_names() -> None:
    """prompt, origin_prompt and source_image (documented elsewhere) map under their own names."""
    data = {
        "_id": "a1",
        "image_status": 2,
        "prompt": "a fox, 4k",
        "origin_prompt": "a fox",
        "source_image": "https://cdn.example/src.png",
    }

    info = ak.ImageInfo.from_wire(data)

    assert ("a fox, 4k", "a fox", "https://cdn.example/src.png") == (
        info.prompt,
        info.origin_prompt,
        info.source_image,
    )
    assert ak.ImageStatus.PROCESSING is info.status


@pytest.mark.parametrize("envelope", [INFO_BY_MODEL_ID_RESPONSE, CREATE_BY_BUTTON_RESPONSE])
def test_docs_sample_written_back_as_sent(envelope: dict[str, Any]) -> None:
    """to_wire gives back the docs' object (a whole-number credit compares equal as a float)."""
    data = sample_data(envelope)

    assert data == ak.ImageInfo.from_wire(data).to_wire()


def test_minimal_sample_written_back_with_empty_lists() -> None:
    """to_wire always writes the three list fields, empty when Akool sent none; omits nulls."""
    data = dict(MINIMAL_CREATE_DATA)

    expected = {
        "_id": "662a10df4197b3af58532e89",
        "image_status": 1,
        "upscaled_urls": [],
        "buttons": [],
        "used_buttons": [],
    }
    assert expected == ak.ImageInfo.from_wire(data).to_wire()


def test_display_buttons_read_as_buttons() -> None:
    """The older `display_buttons` field fills `buttons` and is written back as `buttons`."""
    data = {"_id": "a1", "image_status": 3, "display_buttons": ["U1", "V3"]}

    info = ak.ImageInfo.from_wire(data)

    assert ("U1", "V3") == info.buttons
    assert {} == dict(info.extra)
    assert ["U1", "V3"] == info.to_wire()["buttons"]


def test_buttons_win_over_display_buttons() -> None:
    """When both are sent, the current `buttons` field is the one read."""
    data = {"_id": "a1", "image_status": 3, "buttons": ["U4"], "display_buttons": ["U1", "V3"]}

    assert ("U4",) == ak.ImageInfo.from_wire(data).buttons


def test_unknown_fields_kept_in_extra_and_written_back() -> None:
    """Fields the SDK does not know survive in .extra, untouched, and come back from to_wire."""
    data = sample_data(INFO_BY_MODEL_ID_RESPONSE)
    data["new_field"] = {"nested": [1, 2, None]}
    data["video"] = "https://cdn.example/v.mp4"

    info = ak.ImageInfo.from_wire(data)

    assert {"new_field": {"nested": [1, 2, None]}, "video": "https://cdn.example/v.mp4"} == dict(
        info.extra
    )
    assert data == info.to_wire()


def test_unknown_null_field_written_back() -> None:
    """An unknown field whose value is null is kept in .extra and written back, null and all."""
    data = {"_id": "a1", "image_status": 1, "note": None}

    info = ak.ImageInfo.from_wire(data)

    assert {"note": None} == dict(info.extra)
    assert {"_id": "a1", "image_status": 1, "note": None} == {
        key: value for key, value in info.to_wire().items() if key in data
    }


def test_extra_is_read_only() -> None:
    """.extra cannot be changed in place: the model is frozen all the way down to that mapping."""
    info = ak.ImageInfo.from_wire({"_id": "a1", "image_status": 1, "x": 1})

    with pytest.raises(TypeError):
        info.extra["x"] = 2  # type: ignore[index]
    assert {"x": 1} == dict(info.extra)


def test_null_optional_fields_read_as_defaults() -> None:
    """JSON null in an optional field reads as the default (None or an empty tuple)."""
    data = {
        "_id": "a1",
        "image_status": 1,
        "image": None,
        "upscaled_urls": None,
        "buttons": None,
        "create_time": None,
        "uid": None,
    }

    assert ak.ImageInfo(id="a1", status=ak.ImageStatus.QUEUEING) == ak.ImageInfo.from_wire(data)


# -- wrong types -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire_key", "bad_value", "field"),
    [
        ("image_status", "3", "status"),
        ("image_status", True, "status"),
        ("image_status", 3.0, "status"),
        ("image_status", 9, "status"),
        ("image", 5, "image"),
        ("upscaled_urls", "https://a.example/1.png", "upscaled_urls"),
        ("upscaled_urls", [1, 2], "upscaled_urls"),
        ("buttons", "U1", "buttons"),
        ("used_buttons", {"U1": True}, "used_buttons"),
        ("prompt", ["a"], "prompt"),
        ("origin_prompt", 1, "origin_prompt"),
        ("source_image", {}, "source_image"),
        ("create_time", "1714032863272", "create_time"),
        ("create_time", True, "create_time"),
        ("create_time", 1e30, "create_time"),
        ("deduction_credit", "2", "deduction_credit"),
        ("deduction_credit", False, "deduction_credit"),
        ("faceswap_quality", 2.5, "faceswap_quality"),
        ("uid", "378337", "uid"),
        ("uid", float("inf"), "uid"),
        ("type", [3], "type"),
        ("from", "1", "from_"),
        ("image_content_model_id", 6508288416, "parent_id"),
        ("op_button", 2, "op_button"),
        ("op_buttonMessageId", 5, "op_button_message_id"),
    ],
)
def test_wrong_type_raises_value_error_naming_field(
    wire_key: str, bad_value: Any, field: str
) -> None:
    """A value of the wrong type is a ValueError whose message names the field as Akool does."""
    data: dict[str, Any] = {"_id": "a1", "image_status": 1}
    data[wire_key] = bad_value

    with pytest.raises(ValueError) as raised:
        ak.ImageInfo.from_wire(data)

    assert str(raised.value).endswith(f"@ $.{wire_key}")


@pytest.mark.parametrize("bad_id", [None, 12345, ["a1"]])
def test_wrong_type_id_raises_value_error(bad_id: Any) -> None:
    """`_id` must be a string: null or a number is not a job id."""
    with pytest.raises(ValueError) as raised:
        ak.ImageInfo.from_wire({"_id": bad_id, "image_status": 1})

    assert "id" in str(raised.value)


@pytest.mark.parametrize("missing", ["_id", "image_status"])
def test_missing_required_field_raises_value_error(missing: str) -> None:
    """Without `_id` or `image_status` there is no job to describe."""
    data = {"_id": "a1", "image_status": 1}
    del data[missing]

    with pytest.raises(ValueError, match=missing):
        ak.ImageInfo.from_wire(data)


# -- round trip ------------------------------------------------------------------------------------

_WIRE_KEYS = frozenset(
    {
        "_id",
        "image_status",
        "image",
        "upscaled_urls",
        "buttons",
        "display_buttons",
        "used_buttons",
        "prompt",
        "origin_prompt",
        "source_image",
        "create_time",
        "deduction_credit",
        "faceswap_quality",
        "uid",
        "type",
        "from",
        "image_content_model_id",
        "op_button",
        "op_buttonMessageId",
    }
)

_json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=10)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)

# Whole milliseconds only (Akool's unit), in the years a job can have been created in.
_create_times = st.integers(
    min_value=round((datetime(1900, 1, 1, tzinfo=UTC) - EPOCH).total_seconds() * 1000),
    max_value=round((datetime(2200, 1, 1, tzinfo=UTC) - EPOCH).total_seconds() * 1000),
).map(lambda ms: EPOCH + timedelta(milliseconds=ms))

_int64s = st.integers(-(2**63), 2**63 - 1)
_urls = st.text(string.ascii_letters + string.digits + "/:.-_", max_size=30)
_buttons = st.lists(st.sampled_from([b.value for b in ak.Button]), max_size=8).map(tuple)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The strategy's values, or None."""
    return st.none() | strategy


@st.composite
def image_infos(draw: st.DrawFn) -> ak.ImageInfo:
    """Any ImageInfo Akool could describe, unknown fields included."""
    return ak.ImageInfo(
        id=draw(st.text(min_size=1, max_size=24)),
        status=draw(st.sampled_from(ak.ImageStatus)),
        image=draw(optional(_urls)),
        upscaled_urls=tuple(draw(st.lists(_urls, max_size=4))),
        buttons=draw(_buttons),
        used_buttons=draw(_buttons),
        prompt=draw(optional(st.text(max_size=40))),
        origin_prompt=draw(optional(st.text(max_size=40))),
        source_image=draw(optional(_urls)),
        create_time=draw(optional(_create_times)),
        deduction_credit=draw(
            optional(st.integers(0, 10**6) | st.floats(allow_nan=False, allow_infinity=False))
        ),
        faceswap_quality=draw(optional(_int64s)),
        uid=draw(optional(st.integers(0, 2**63 - 1))),
        type=draw(optional(_int64s)),
        from_=draw(optional(_int64s)),
        parent_id=draw(optional(st.text(min_size=1, max_size=24))),
        op_button=draw(optional(st.sampled_from([b.value for b in ak.Button]))),
        op_button_message_id=draw(optional(st.text(max_size=24))),
        extra=draw(
            st.dictionaries(
                st.text(max_size=12).filter(lambda key: key not in _WIRE_KEYS),
                _json_values,
                max_size=4,
            )
        ),
    )


@given(image_infos())
@example(ak.ImageInfo(id="a1", status=ak.ImageStatus.QUEUEING, extra={"note": None}))
def test_round_trip_through_wire(info: ak.ImageInfo) -> None:
    """from_wire(to_wire(x)) == x for any ImageInfo, unknown fields included."""
    again = ak.ImageInfo.from_wire(info.to_wire())

    assert info == again
    assert dict(info.extra) == dict(again.extra)


@given(image_infos())
def test_to_wire_uses_wire_names(info: ak.ImageInfo) -> None:
    """to_wire writes Akool's names (`_id`, `image_status`, `from`, ...), never the Python ones."""
    wire = info.to_wire()

    assert info.id == wire["_id"]
    assert int(info.status) == wire["image_status"]
    python_only = {"id", "status", "from_", "parent_id", "op_button_message_id", "extra"}
    assert set() == (python_only - set(info.extra)) & set(wire)


def test_create_time_exact_for_any_millisecond() -> None:
    """Epoch milliseconds convert exactly, even far in the future (no float rounding)."""
    ms = 253401695999999  # 9999-12-24 23:59:59.999 UTC: the last whose expiry datetime holds

    info = ak.ImageInfo.from_wire({"_id": "a1", "image_status": 1, "create_time": ms})

    assert EPOCH + timedelta(milliseconds=ms) == info.create_time
    assert datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) == info.expires_at


@pytest.mark.parametrize(
    "ms",
    [253401696000000, 253402300799999, -62135596800001, 10**30, -(10**30), float("nan")],
    ids=["first-expiring-past-9999", "last-of-9999", "before-year-1", "huge", "-huge", "nan"],
)
def test_create_time_out_of_range_raises_value_error(ms: float) -> None:
    """A create time whose expiry a datetime cannot hold is a ValueError saying the range."""
    with pytest.raises(
        ValueError, match=r"epoch milliseconds from -62135596800000 to 253401695999999"
    ):
        ak.ImageInfo.from_wire({"_id": "a1", "image_status": 1, "create_time": ms})


def test_expires_at_of_a_hand_made_info_stops_at_the_end_of_time() -> None:
    """An ImageInfo made by hand within datetime.max's last week expires at datetime.max."""
    late = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)

    info = ak.ImageInfo(id="a1", status=ak.ImageStatus.COMPLETED, create_time=late)

    assert datetime.max.replace(tzinfo=UTC) == info.expires_at


@pytest.mark.parametrize(
    ("wire_key", "value", "words"),
    [
        ("uid", 2**63, "whole number from -9223372036854775808 to 9223372036854775807"),
        ("type", -(2**63) - 1, "whole number from -9223372036854775808"),
        ("from", 1e300, "whole number from"),
        ("faceswap_quality", float("-inf"), "whole number from"),
        ("deduction_credit", float("inf"), "finite number"),
        ("deduction_credit", float("nan"), "finite number"),
        ("deduction_credit", 10**400, "finite number"),
    ],
)
def test_numbers_out_of_range_raise_value_error(wire_key: str, value: Any, words: str) -> None:
    """Whole numbers must fit a signed 64-bit integer, other numbers a finite float."""
    with pytest.raises(ValueError, match=words) as raised:
        ak.ImageInfo.from_wire({"_id": "a1", "image_status": 1, wire_key: value})

    assert str(raised.value).endswith(f"@ $.{wire_key}")


def test_numbers_at_the_edges_of_their_ranges_are_kept() -> None:
    """The extreme values each range holds are read exactly."""
    data = {"_id": "a1", "image_status": 1, "uid": 2**63 - 1, "type": -(2**63)}
    data |= {"deduction_credit": 1.7976931348623157e308, "faceswap_quality": 3.0}

    info = ak.ImageInfo.from_wire(data)

    expected = (2**63 - 1, -(2**63), 1.7976931348623157e308, 3)
    assert expected == (info.uid, info.type, info.deduction_credit, info.faceswap_quality)


# -- is_result_ready ------------------------------------------------------------------------------

FOUR_URLS = tuple(f"https://cdn.example/q{n}.png" for n in range(1, 5))


@pytest.mark.parametrize(
    ("status", "upscaled_urls", "expected"),
    [
        (ak.ImageStatus.COMPLETED, FOUR_URLS, True),
        (ak.ImageStatus.COMPLETED, (), False),
        (ak.ImageStatus.COMPLETED, FOUR_URLS[:3], False),
        (ak.ImageStatus.PROCESSING, FOUR_URLS, False),
        (ak.ImageStatus.QUEUEING, FOUR_URLS, False),
        (ak.ImageStatus.FAILED, FOUR_URLS, False),
    ],
)
def test_grid_ready_needs_status_3_and_four_quadrants(
    status: ak.ImageStatus, upscaled_urls: tuple[str, ...], expected: bool
) -> None:
    """A prompt job's grid is ready only at status 3 with all four quadrant URLs."""
    info = ak.ImageInfo(
        id="g1", status=status, image="https://cdn.example/grid.png", upscaled_urls=upscaled_urls
    )

    assert expected == info.is_result_ready


def test_docs_info_sample_is_not_ready_yet() -> None:
    """The docs' status-3 sample has no quadrant URLs yet: not ready by Akool's rule."""
    info = ak.ImageInfo.from_wire(sample_data(INFO_BY_MODEL_ID_RESPONSE))

    assert ak.ImageStatus.COMPLETED is info.status
    assert not info.is_result_ready


@pytest.mark.parametrize(
    ("status", "image", "expected"),
    [
        (ak.ImageStatus.COMPLETED, "https://cdn.example/4k.png", True),
        (ak.ImageStatus.COMPLETED, None, False),
        (ak.ImageStatus.COMPLETED, "", False),
        (ak.ImageStatus.PROCESSING, "https://cdn.example/4k.png", False),
        (ak.ImageStatus.FAILED, "https://cdn.example/4k.png", False),
    ],
)
@pytest.mark.parametrize("button", ["U1", "U2", "U3", "U4"])
def test_upscale_ready_needs_status_3_and_image(
    button: str, status: ak.ImageStatus, image: str | None, expected: bool
) -> None:
    """An upscale job (op_button U1..U4) is ready at status 3 with `image`; no quadrants needed."""
    info = ak.ImageInfo(id="c1", status=status, image=image, parent_id="g1", op_button=button)

    assert info.is_upscale
    assert expected == info.is_result_ready


@pytest.mark.parametrize("button", ["V1", "V2", "V3", "V4"])
def test_variation_follows_grid_rule(button: str) -> None:
    """A variation job (V1..V4) is a new grid: `image` at status 3 is not enough."""
    without = ak.ImageInfo(
        id="c1",
        status=ak.ImageStatus.COMPLETED,
        image="https://cdn.example/g.png",
        op_button=button,
    )
    with_quadrants = ak.ImageInfo(
        id="c1",
        status=ak.ImageStatus.COMPLETED,
        image="https://cdn.example/g.png",
        upscaled_urls=FOUR_URLS,
        op_button=button,
    )

    assert (False, False, True) == (
        without.is_upscale,
        without.is_result_ready,
        with_quadrants.is_result_ready,
    )


def test_docs_button_sample_is_queued_upscale() -> None:
    """The docs' createbybutton answer is a queued U2 upscale: not ready."""
    info = ak.ImageInfo.from_wire(sample_data(CREATE_BY_BUTTON_RESPONSE))

    assert (True, False) == (info.is_upscale, info.is_result_ready)


# -- enums ----------------------------------------------------------------------------------------


def test_image_status_values() -> None:
    """image_status 1..4 are queueing, processing, completed, failed."""
    assert {1: "QUEUEING", 2: "PROCESSING", 3: "COMPLETED", 4: "FAILED"} == {
        status.value: status.name for status in ak.ImageStatus
    }


def test_image_status_terminal() -> None:
    """Only completed and failed are terminal."""
    assert [False, False, True, True] == [status.is_terminal for status in ak.ImageStatus]


def test_scale_values_in_docs_order() -> None:
    """The seven documented scales, in the docs' order, equal to their plain strings."""
    assert ["1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3"] == list(ak.Scale)
    assert "16:9" == ak.Scale.RATIO_16_9


@pytest.mark.parametrize(
    ("scale", "ratio"),
    [
        (ak.Scale.RATIO_1_1, (1, 1)),
        (ak.Scale.RATIO_4_3, (4, 3)),
        (ak.Scale.RATIO_3_4, (3, 4)),
        (ak.Scale.RATIO_16_9, (16, 9)),
        (ak.Scale.RATIO_9_16, (9, 16)),
        (ak.Scale.RATIO_3_2, (3, 2)),
        (ak.Scale.RATIO_2_3, (2, 3)),
    ],
)
def test_scale_ratio(scale: ak.Scale, ratio: tuple[int, int]) -> None:
    """Scale.ratio splits the string into integer width and height."""
    assert ratio == scale.ratio


def test_button_values() -> None:
    """The eight buttons are U1..U4 then V1..V4."""
    assert ["U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4"] == list(ak.Button)


@pytest.mark.parametrize(
    ("button", "quadrant", "is_upscale"),
    [
        (ak.Button.U1, 1, True),
        (ak.Button.U2, 2, True),
        (ak.Button.U3, 3, True),
        (ak.Button.U4, 4, True),
        (ak.Button.V1, 1, False),
        (ak.Button.V2, 2, False),
        (ak.Button.V3, 3, False),
        (ak.Button.V4, 4, False),
    ],
)
def test_button_quadrant_and_kind(button: ak.Button, quadrant: int, is_upscale: bool) -> None:
    """Each button names its quadrant and whether it upscales or varies."""
    assert (quadrant, is_upscale) == (button.quadrant, button.is_upscale)


# -- every decoder, on hostile input ---------------------------------------------------------------
#
# What a decoder may raise is its contract with the wire: ImageInfo.from_wire raises ValueError;
# an endpoint's decoder ValueError, TypeError or KeyError (each an InvalidResponse on the wire).
# Anything else escaping (OverflowError, RecursionError) would reach users untyped.

DECODER_SETTINGS = settings(max_examples=300, deadline=None)
DECODER_ERRORS = (ValueError, TypeError, KeyError)
INT64 = (-(2**63), 2**63 - 1)

# Numbers at and past every edge: 64-bit, float, datetime (with and without the week of expiry).
hostile_numbers = (
    st.integers()
    | st.integers(-(2**80), 2**80)
    | st.floats()
    | st.sampled_from(
        [
            2**63,
            -(2**63) - 1,
            2**53 + 1,
            10**400,
            -(10**400),
            253402300799999,
            253401695999999,
            253401696000000,
            -62135596800001,
            1e308,
            float("inf"),
            float("nan"),
        ]
    )
)


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


hostile_values = st.recursive(
    st.none() | st.booleans() | hostile_numbers | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
) | st.integers(0, 3000).map(nested)
ids = st.sampled_from(["64dd82eef0b6684651e90131", "../../x/pwned", "/etc/passwd", "A" * 24, ""])
hostile_jobs = st.dictionaries(
    st.sampled_from(sorted(_WIRE_KEYS)) | st.text(max_size=6), hostile_values, max_size=10
).flatmap(
    lambda data: st.fixed_dictionaries(
        {"_id": ids | hostile_values, "image_status": st.integers(0, 5) | hostile_values}
    ).map(lambda required: required | data)
)


def assert_in_range(info: ak.ImageInfo) -> None:
    """What a decoded ImageInfo promises: every number in a range its type holds."""
    for whole in (info.faceswap_quality, info.uid, info.type, info.from_):
        assert whole is None or (type(whole) is int and INT64[0] <= whole <= INT64[1])
    credit = info.deduction_credit
    assert credit is None or (type(credit) is float and math.isfinite(credit))
    if info.create_time is not None:
        assert info.expires_at == info.create_time + ak.RESULT_LIFETIME


@DECODER_SETTINGS
@given(data=hostile_jobs)
def test_from_wire_raises_only_value_error(data: dict[str, Any]) -> None:
    """from_wire on any JSON object gives an in-range ImageInfo or a ValueError, nothing else."""
    try:
        info = ak.ImageInfo.from_wire(data)
    except ValueError:
        return
    assert_in_range(info)


@DECODER_SETTINGS
@given(data=hostile_jobs | hostile_values)
def test_job_decoders_raise_only_documented_errors(data: Any) -> None:
    """The create and info decoders give an ImageInfo with an Akool-shaped id, or say why not."""
    for endpoint in (CREATE_BY_PROMPT, CREATE_BY_BUTTON, IMAGE_INFO):
        try:
            info = endpoint.decode(data)
        except DECODER_ERRORS:
            continue
        assert is_job_id(info.id)
        assert info.parent_id is None or is_job_id(info.parent_id)
        assert_in_range(info)


@DECODER_SETTINGS
@given(data=st.fixed_dictionaries({"credit": hostile_values}) | hostile_values)
def test_credit_decoder_raises_only_documented_errors(data: Any) -> None:
    """quota/info gives a number a float holds exactly, or says why not."""
    try:
        credit = CREDIT_INFO.decode(data)
    except DECODER_ERRORS:
        return
    assert type(credit) in {int, float}
    assert math.isfinite(credit)
    assert abs(credit) <= 2**53
    assert float(credit) == credit


@DECODER_SETTINGS
@given(envelope=st.fixed_dictionaries({"token": hostile_values | st.text()}) | hostile_values)
def test_token_decoder_raises_only_documented_errors(envelope: Any) -> None:
    """getToken gives a token that can be sent as a header, or says why not."""
    try:
        token = GET_TOKEN.decode(envelope)
    except DECODER_ERRORS:
        return
    assert 1 <= len(token) <= 8192
    assert all("!" <= char <= "~" for char in token)  # visible ASCII: a header value as is


@pytest.mark.parametrize(
    ("token", "valid"),
    [
        ("a.b-c_d~e+f/g=", True),
        ("x" * 8192, True),
        ("x" * 8193, False),
        ("tok en", False),
        ("tok\r\nx-evil: 1", False),
        ("tokén", False),
        ("", False),
    ],
    ids=["jwt-chars", "longest", "too-long", "space", "header-injection", "non-ascii", "empty"],
)
def test_token_must_be_sendable_as_a_header(token: str, valid: bool) -> None:
    """A token is 1 to 8192 visible ASCII characters: no space, no line break, nothing else."""
    if valid:
        assert token == GET_TOKEN.decode({"code": 1000, "token": token})
    else:
        with pytest.raises(ValueError, match="token"):
            GET_TOKEN.decode({"code": 1000, "token": token})
