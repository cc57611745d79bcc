"""Immutable models of what Akool sends, and the one private cattrs converter that reads them."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final, cast

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.v import format_exception

__all__ = [
    "RESULT_LIFETIME",
    "Button",
    "ImageInfo",
    "ImageStatus",
    "JobKind",
    "Scale",
]

RESULT_LIFETIME: Final = timedelta(days=7)
"""How long Akool keeps a generated image's URL valid."""


class ImageStatus(enum.IntEnum):
    """Akool's ``image_status``: where a job is in its life."""

    QUEUEING = 1
    PROCESSING = 2
    COMPLETED = 3
    FAILED = 4

    @property
    def is_terminal(self) -> bool:
        """Whether the status can no longer change."""
        return self in (ImageStatus.COMPLETED, ImageStatus.FAILED)


class Scale(enum.StrEnum):
    """The seven aspect ratios Akool renders. Any API taking a scale also takes the plain string."""

    RATIO_1_1 = "1:1"
    RATIO_4_3 = "4:3"
    RATIO_3_4 = "3:4"
    RATIO_16_9 = "16:9"
    RATIO_9_16 = "9:16"
    RATIO_3_2 = "3:2"
    RATIO_2_3 = "2:3"

    @property
    def ratio(self) -> tuple[int, int]:
        """Width and height parts, e.g. ``(16, 9)``."""
        width, height = self.value.split(":")
        return int(width), int(height)


class Button(enum.StrEnum):
    """The grid's buttons: ``U1``..``U4`` upscale one quadrant to 4K, ``V1``..``V4`` vary it."""

    U1 = "U1"
    U2 = "U2"
    U3 = "U3"
    U4 = "U4"
    V1 = "V1"
    V2 = "V2"
    V3 = "V3"
    V4 = "V4"

    @property
    def is_upscale(self) -> bool:
        """Whether the button makes a 4K upscale (``U*``) rather than a variation (``V*``)."""
        return self.value.startswith("U")

    @property
    def quadrant(self) -> int:
        """The quadrant it acts on: 1 top left, 2 top right, 3 bottom left, 4 bottom right."""
        return int(self.value[1])


class JobKind(enum.Enum):
    """What a job renders, which sets its expected duration: the library's one kind of job."""

    GRID = "grid"
    """A prompt's 2x2 grid."""
    UPSCALE = "upscale"
    """A U1..U4 press: one quadrant in 4K."""
    VARIATION = "variation"
    """A V1..V4 press: a new grid varying one quadrant."""

    @classmethod
    def of_button(cls, button: Button) -> JobKind:
        """The kind of job pressing ``button`` makes."""
        return cls.UPSCALE if button.is_upscale else cls.VARIATION

    @classmethod
    def of_info(cls, info: ImageInfo) -> JobKind:
        """The kind of job ``info`` describes, from the button that made it (if any)."""
        button = (info.op_button or "").upper()
        if button.startswith("U"):
            return cls.UPSCALE
        if button.startswith("V"):
            return cls.VARIATION
        return cls.GRID


def _empty_extra() -> Mapping[str, Any]:
    return MappingProxyType({})


@attrs.frozen(kw_only=True)
class ImageInfo:
    """One image job as Akool last described it.

    Every field Akool documents is here under a Python name; anything else Akool sends is kept,
    untouched, in `extra`. Lists are tuples, so an ``ImageInfo`` is safe to share.

    Attributes:
        id: The job's id (Akool's ``_id``).
        status: Where the job is: queueing, processing, completed or failed.
        image: The result image's URL: the 2x2 composite for a grid, the 4K image for an upscale.
        upscaled_urls: The four quadrant images of a finished grid, in U1..U4 order.
        buttons: Operations still possible on a finished grid (Akool's ``buttons``, or the older
            ``display_buttons``).
        used_buttons: Buttons already pressed on this grid.
        prompt: The prompt as Akool processed it.
        origin_prompt: The prompt as it was sent.
        source_image: The source image URL of an image-to-image job.
        create_time: When Akool created the job, as an aware UTC datetime.
        deduction_credit: Credits this job cost.
        faceswap_quality: Akool's ``faceswap_quality``.
        uid: Akool's user id of the account.
        type: Akool's ``type`` identifier.
        from_: Akool's ``from`` identifier.
        parent_id: For a button job, the grid it was made from (``image_content_model_id``).
        op_button: For a button job, the button pressed (``U1``..``V4``).
        op_button_message_id: Akool's ``op_buttonMessageId``.
        extra: Every field Akool sent that this version of the SDK does not know.
    """

    id: str
    status: ImageStatus
    image: str | None = None
    upscaled_urls: tuple[str, ...] = ()
    buttons: tuple[str, ...] = ()
    used_buttons: tuple[str, ...] = ()
    prompt: str | None = None
    origin_prompt: str | None = None
    source_image: str | None = None
    create_time: datetime | None = None
    deduction_credit: float | None = None
    faceswap_quality: int | None = None
    uid: int | None = None
    type: int | None = None
    from_: int | None = None
    parent_id: str | None = None
    op_button: str | None = None
    op_button_message_id: str | None = None
    extra: Mapping[str, Any] = attrs.field(factory=_empty_extra, eq=False, repr=False)

    @property
    def expires_at(self) -> datetime | None:
        """When the result URLs stop working: `create_time` plus seven days (at the latest
        ``datetime.max``, for a hand-made info created within its last seven days)."""
        if self.create_time is None:
            return None
        # A hand-made info may be created too close to the end of time to expire before it.
        latest = datetime.max.replace(tzinfo=self.create_time.tzinfo)
        if self.create_time > latest - RESULT_LIFETIME:
            return latest
        return self.create_time + RESULT_LIFETIME

    @property
    def is_upscale(self) -> bool:
        """Whether this job is a U1..U4 upscale: a single 4K image rather than a 2x2 grid."""
        return self.op_button is not None and self.op_button.upper().startswith("U")

    @property
    def is_result_ready(self) -> bool:
        """Whether the result is complete by Akool's own rule.

        A grid (a prompt job or a V1..V4 variation) is complete at status 3 *and* with its four
        quadrant URLs, which can arrive after the status; an upscale at status 3 with ``image``.
        """
        if self.status is not ImageStatus.COMPLETED:
            return False
        if self.is_upscale:
            return bool(self.image)
        return len(self.upscaled_urls) >= 4  # noqa: PLR2004 - the four quadrants of the grid

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> ImageInfo:
        """Read Akool's JSON ``data`` object.

        Raises:
            ValueError: The object lacks ``_id`` or ``image_status`` or has values of the wrong
                type. (The wire layer turns this into `InvalidResponse`.)
        """
        return _structure_info(data)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle through the wire form: ``extra`` is a read-only proxy, which pickle cannot copy.
        return (ImageInfo.from_wire, (self.to_wire(),))

    def to_wire(self) -> dict[str, Any]:
        """Write the JSON object Akool would send for this job (inverse of `from_wire`)."""
        return cast("dict[str, Any]", _converter.unstructure(self))


# ---------------------------------------------------------------------------------------------
# The converter. Private: users see ImageInfo.from_wire / to_wire, never cattrs.
# ---------------------------------------------------------------------------------------------

_converter = cattrs.Converter()

_RENAMES: Final = {
    "id": "_id",
    "status": "image_status",
    "from_": "from",
    "parent_id": "image_content_model_id",
    "op_button_message_id": "op_buttonMessageId",
}
_WIRE_NAMES: Final = frozenset(
    _RENAMES.get(field.name, field.name)
    for field in attrs.fields(ImageInfo)
    if field.name != "extra"
) | {"display_buttons"}


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND: Final = timedelta(milliseconds=1)
# The create times a datetime can hold together with their expiry seven days later.
_EARLIEST_MS: Final = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // _MILLISECOND
_LATEST_MS: Final = (datetime.max.replace(tzinfo=UTC) - RESULT_LIFETIME - _EPOCH) // _MILLISECOND
# Whole numbers are kept to what a signed 64-bit integer holds (SQLite, JSON readers elsewhere),
# other numbers to finite floats.
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**63 - 1


def _structure_datetime_ms(value: Any, _: type) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected epoch milliseconds, got {type(value).__name__}")
    if not _EARLIEST_MS <= value <= _LATEST_MS:  # NaN fails every comparison
        raise ValueError(
            f"expected epoch milliseconds from {_EARLIEST_MS} to {_LATEST_MS} "
            "(years 1 to 9999, expiry included)"
        )
    # Whole milliseconds through timedelta stay exact where a float division would drift.
    return _EPOCH + timedelta(milliseconds=value)


def _unstructure_datetime_ms(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(milliseconds=1)


def _structure_str_tuple(value: Any, _: type) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise TypeError(f"expected a list of strings, got {type(value).__name__}")
    items: list[Any] = list(value)  # pyright: ignore[reportUnknownArgumentType]
    if not all(isinstance(item, str) for item in items):
        raise TypeError("expected a list of strings")
    return tuple(items)


def _whole(value: float) -> int:
    """``value`` as an int, if it is a whole number a signed 64-bit integer holds."""
    if not _INT_MIN <= value <= _INT_MAX:  # NaN fails every comparison
        raise ValueError(f"expected a whole number from {_INT_MIN} to {_INT_MAX}")
    if value != int(value):
        raise TypeError(f"expected a whole number, got {value!r}")
    return int(value)


def _finite(value: float) -> float:
    """``value`` as a float, if it is a finite one."""
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        number = math.inf
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


def _strict_scalar(kind: type[Any], *, optional: bool = True) -> Any:
    """A hook that accepts exactly ``kind`` (never bool for a number), and None if optional."""

    def hook(value: Any, _: type) -> Any:
        if value is None:
            if optional:
                return None
            raise TypeError("expected a value, got null")
        if kind is str:
            if not isinstance(value, str):
                raise TypeError(f"expected a string, got {type(value).__name__}")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"expected a number, got {type(value).__name__}")
        if kind is int:
            return _whole(value)
        return _finite(value)

    return hook


_converter.register_structure_hook(datetime | None, _structure_datetime_ms)
_converter.register_unstructure_hook(datetime, _unstructure_datetime_ms)
_converter.register_structure_hook_func(lambda kind: kind == tuple[str, ...], _structure_str_tuple)
_converter.register_structure_hook(str | None, _strict_scalar(str))
_converter.register_structure_hook(str, _strict_scalar(str, optional=False))
_converter.register_structure_hook(int | None, _strict_scalar(int))
_converter.register_structure_hook(float | None, _strict_scalar(float))


def _structure_status(value: Any, _: type) -> ImageStatus:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"image_status must be an integer, got {type(value).__name__}")
    return ImageStatus(value)


_converter.register_structure_hook(ImageStatus, _structure_status)

_base_structure = make_dict_structure_fn(
    ImageInfo,
    _converter,
    extra=override(omit=True),
    **{name: override(rename=wire) for name, wire in _RENAMES.items()},  # type: ignore[arg-type]
)
_base_unstructure = make_dict_unstructure_fn(
    ImageInfo,
    _converter,
    extra=override(omit=True),
    **{name: override(rename=wire) for name, wire in _RENAMES.items()},  # type: ignore[arg-type]
)


def _structure_info(data: Mapping[str, Any]) -> ImageInfo:
    if not isinstance(data, Mapping):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")  # pyright: ignore[reportUnreachable]  # noqa: TRY004 - from_wire promises ValueError for any malformed object
    fields = dict(data)
    for required in ("_id", "image_status"):
        if required not in fields:
            raise ValueError(f"the job object has no {required!r}")
    if "buttons" not in fields and "display_buttons" in fields:
        fields["buttons"] = fields["display_buttons"]
    extra = {key: value for key, value in data.items() if key not in _WIRE_NAMES}
    try:
        info = _base_structure(fields, ImageInfo)
    except cattrs.BaseValidationError as exc:
        raise ValueError(_describe(exc)) from exc
    return attrs.evolve(info, extra=MappingProxyType(extra)) if extra else info


def _describe(exc: cattrs.BaseValidationError) -> str:
    """cattrs' per-field notes, naming fields as Akool does (``$._id``, not ``$.id``)."""
    notes = cattrs.transform_error(exc, format_exception=_note)
    for python_name, wire_name in _RENAMES.items():
        notes = [note.replace(f"@ $.{python_name}", f"@ $.{wire_name}") for note in notes]
    return "; ".join(notes) or str(exc)


def _note(exc: BaseException, kind: type | None) -> str:
    """Our hooks' own words for what is wrong (the range allowed, say); cattrs' for the rest."""
    ours = isinstance(exc, ValueError | TypeError) and str(exc)
    return f"invalid value for type, {exc}" if ours else format_exception(exc, kind)


def _unstructure_info(info: ImageInfo) -> dict[str, Any]:
    wire: dict[str, Any] = dict(info.extra)
    # Known fields left unset are not written; unknown fields go back exactly as they came.
    wire.update((k, v) for k, v in _base_unstructure(info).items() if v is not None)
    wire["upscaled_urls"] = list(info.upscaled_urls)
    wire["buttons"] = list(info.buttons)
    wire["used_buttons"] = list(info.used_buttons)
    return wire


_converter.register_unstructure_hook(ImageInfo, _unstructure_info)
