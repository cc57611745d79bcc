"""The emulator's pictures: real, deterministic PNGs of a 2x2 grid, its quadrants and upscales."""

from __future__ import annotations

import hashlib
import io
import itertools
import math
import os
import random
import struct
import subprocess
import sys
import zlib

import pytest
from PIL import Image, ImageChops, ImageStat

import akool_async as ak
from akool_async.testing import _images, _png
from akool_async.testing._images import (
    grid_png,
    png_size,
    quadrant_png,
    quadrant_size,
    upscale_png,
    variation_seed,
)

PROMPT = "a red fox in fresh snow, watercolour, soft morning light"
SCALES = list(ak.Scale)
QUADRANTS = (1, 2, 3, 4)
QUADRANT_SIZES = {
    "1:1": (512, 512),
    "4:3": (512, 384),
    "3:4": (384, 512),
    "16:9": (512, 288),
    "9:16": (288, 512),
    "3:2": (512, 341),
    "2:3": (341, 512),
}
# Small pictures keep the many-scale tests fast; the drawing is the same at any size.
SMALL = 96


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _mean_difference(first: Image.Image, second: Image.Image) -> float:
    """Mean absolute difference per channel, 0 (identical) to 255."""
    return sum(ImageStat.Stat(ImageChops.difference(first, second)).mean) / 3


def _chunk_types(data: bytes) -> list[bytes]:
    types: list[bytes] = []
    offset = 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        types.append(data[offset + 4 : offset + 8])
        offset += 12 + length
    return types


def _clear_caches() -> None:
    for cached in (
        _images._grid_files,
        _images._upscale_png,
        _images._grid_tops,
        _images._tile_top,
    ):
        cached.cache_clear()


@pytest.fixture(autouse=True)
def _cold_caches() -> None:
    """Each test renders afresh, so no test passes on another test's cached bytes."""
    _clear_caches()


def test_scales_under_test_are_all_of_akools() -> None:
    """The size table covers every scale Akool renders."""
    assert set(QUADRANT_SIZES) == {scale.value for scale in ak.Scale}


@pytest.mark.parametrize("scale", SCALES, ids=str)
def test_quadrant_size_keeps_the_aspect_ratio_on_the_long_side(scale: ak.Scale) -> None:
    """A quadrant's longer side is long_side and the other follows the scale, rounded."""
    assert QUADRANT_SIZES[scale.value] == quadrant_size(scale)


def test_quadrant_size_is_at_least_one_pixel() -> None:
    """A tiny long_side never rounds a side down to zero."""
    assert (1, 1) == quadrant_size(ak.Scale.RATIO_16_9, long_side=1)
    assert (4, 2) == quadrant_size(ak.Scale.RATIO_16_9, long_side=4)


def test_quadrant_size_rejects_a_long_side_below_one() -> None:
    """long_side 0 is an error that names the parameter."""
    with pytest.raises(ValueError, match="long_side must be at least 1"):
        quadrant_size(ak.Scale.RATIO_1_1, long_side=0)


@pytest.mark.parametrize("scale", SCALES, ids=str)
def test_grid_is_twice_the_quadrant_size(scale: ak.Scale) -> None:
    """The composite is two quadrants wide and two high, by Pillow and by png_size alike."""
    width, height = QUADRANT_SIZES[scale.value]
    data = grid_png(PROMPT, scale, seed=7)

    assert (2 * width, 2 * height) == _decode(data).size
    assert (2 * width, 2 * height) == png_size(data)
    assert "RGB" == _decode(data).mode


@pytest.mark.parametrize("scale", SCALES, ids=str)
def test_quadrants_have_the_quadrant_size(scale: ak.Scale) -> None:
    """Each of U1..U4's images is exactly quadrant_size."""
    expected = quadrant_size(scale, long_side=SMALL)
    for quadrant in QUADRANTS:
        data = quadrant_png(PROMPT, scale, quadrant, seed=7, long_side=SMALL)
        assert expected == _decode(data).size
        assert expected == png_size(data)


@pytest.mark.parametrize("scale", SCALES, ids=str)
@pytest.mark.parametrize("factor", [1, 2, 3])
def test_upscale_is_factor_times_the_quadrant(scale: ak.Scale, factor: int) -> None:
    """An upscale is factor times the quadrant along each side."""
    width, height = quadrant_size(scale, long_side=SMALL)
    data = upscale_png(PROMPT, scale, 4, seed=7, long_side=SMALL, factor=factor)

    assert (factor * width, factor * height) == _decode(data).size
    assert (factor * width, factor * height) == png_size(data)


def test_default_upscale_is_twice_a_full_size_quadrant() -> None:
    """With the defaults a 16:9 upscale is 1024x576."""
    assert (1024, 576) == png_size(upscale_png(PROMPT, ak.Scale.RATIO_16_9, 1, seed=7))


def test_same_arguments_give_byte_identical_pngs() -> None:
    """Rendering twice from cold caches gives the very same bytes."""

    def render() -> tuple[bytes, bytes, bytes]:
        _clear_caches()
        return (
            grid_png(PROMPT, ak.Scale.RATIO_3_2, seed=11),
            quadrant_png(PROMPT, ak.Scale.RATIO_3_2, 2, seed=11),
            upscale_png(PROMPT, ak.Scale.RATIO_3_2, 3, seed=11, long_side=SMALL),
        )

    first = render()

    assert first == render()


def test_pngs_are_identical_across_processes_and_hash_seeds() -> None:
    """Another interpreter with another PYTHONHASHSEED draws the same bytes."""
    script = (
        "import hashlib, akool_async as ak\n"
        "from akool_async.testing._images import grid_png\n"
        f"print(hashlib.sha256(grid_png({PROMPT!r}, ak.Scale('4:3'), seed=5, long_side={SMALL}))"
        ".hexdigest())\n"
    )
    digests = {
        subprocess.run(  # noqa: S603 - our own interpreter running our own script
            [sys.executable, "-c", script],
            capture_output=True,
            check=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        ).stdout.strip()
        for hash_seed in ("1", "2")
    }
    here = hashlib.sha256(grid_png(PROMPT, ak.Scale.RATIO_4_3, seed=5, long_side=SMALL))

    assert {here.hexdigest()} == digests


def test_pngs_carry_no_timestamp_or_text_chunks() -> None:
    """Only IHDR, IDAT and IEND: nothing that could change from one run to the next."""
    chunk_types = set(_chunk_types(grid_png(PROMPT, ak.Scale.RATIO_1_1, seed=3, long_side=SMALL)))

    assert {b"IHDR", b"IDAT", b"IEND"} == chunk_types


def test_repeated_requests_are_served_from_the_cache() -> None:
    """The second request for the same image returns the cached bytes object."""
    first = grid_png(PROMPT, ak.Scale.RATIO_1_1, seed=3, long_side=SMALL)

    assert first is grid_png(PROMPT, ak.Scale.RATIO_1_1, seed=3, long_side=SMALL)
    assert 1 == _images._grid_files.cache_info().hits


def test_a_plain_string_scale_draws_the_same_image() -> None:
    """The plain string "16:9" draws the same bytes as Scale.RATIO_16_9, as the SDK allows."""
    expected = grid_png(PROMPT, ak.Scale.RATIO_16_9, seed=3, long_side=SMALL)

    assert expected == grid_png(PROMPT, "16:9", seed=3, long_side=SMALL)  # type: ignore[arg-type]


@pytest.mark.parametrize("scale", SCALES, ids=str)
def test_each_quadrant_is_exactly_its_crop_of_the_grid(scale: ak.Scale) -> None:
    """quadrant_png is the grid's crop pixel for pixel: 1 top left ... 4 bottom right."""
    width, height = quadrant_size(scale)
    grid = _decode(grid_png(PROMPT, scale, seed=21))
    corners = {1: (0, 0), 2: (width, 0), 3: (0, height), 4: (width, height)}
    for quadrant, (left, top) in corners.items():
        crop = grid.crop((left, top, left + width, top + height))
        quadrant_image = _decode(quadrant_png(PROMPT, scale, quadrant, seed=21))

        assert crop.tobytes() == quadrant_image.tobytes()


@pytest.mark.parametrize("scale", SCALES, ids=str)
@pytest.mark.parametrize("seed", range(5))
def test_the_four_quadrants_differ_in_colour(scale: ak.Scale, seed: int) -> None:
    """Every pair of quadrants is far apart in mean colour, so a person tells them apart."""
    means = [
        ImageStat.Stat(_decode(quadrant_png(PROMPT, scale, q, seed=seed, long_side=SMALL))).mean
        for q in QUADRANTS
    ]
    closest = min(math.dist(first, second) for first, second in itertools.combinations(means, 2))

    assert closest > 20


def test_different_prompts_draw_different_grids() -> None:
    """Changing one character of the prompt changes the picture, not just its caption."""
    first = _decode(grid_png("a red fox", ak.Scale.RATIO_1_1, seed=1, long_side=SMALL))
    second = _decode(grid_png("a red fox!", ak.Scale.RATIO_1_1, seed=1, long_side=SMALL))

    assert _mean_difference(first, second) > 20


def test_different_seeds_draw_different_grids() -> None:
    """The same prompt with another seed is another picture."""
    first = _decode(grid_png(PROMPT, ak.Scale.RATIO_1_1, seed=1, long_side=SMALL))
    second = _decode(grid_png(PROMPT, ak.Scale.RATIO_1_1, seed=2, long_side=SMALL))

    assert _mean_difference(first, second) > 20


@pytest.mark.parametrize("quadrant", QUADRANTS)
def test_an_upscale_is_its_own_quadrant_redrawn(quadrant: int) -> None:
    """Shrunk back down, U{n} looks like quadrant n far more than like any other quadrant."""
    # At 256 pixels the captions, whose font has a minimum size, no longer dominate the picture.
    scale, long_side = ak.Scale.RATIO_3_4, 256
    upscale = _decode(upscale_png(PROMPT, scale, quadrant, seed=9, long_side=long_side, factor=3))
    shrunk = upscale.resize(quadrant_size(scale, long_side=long_side), Image.Resampling.BOX)
    differences = {
        other: _mean_difference(
            shrunk, _decode(quadrant_png(PROMPT, scale, other, seed=9, long_side=long_side))
        )
        for other in QUADRANTS
    }

    assert quadrant == min(differences, key=differences.__getitem__)
    assert differences[quadrant] < 15


@pytest.mark.parametrize(
    "prompt",
    [
        "",
        "   ",
        "x" * 5000,
        "line one\nline two\ttabbed",
        "狐狸在雪中 🦊 ünïcödé",
        "supercalifragilistic" * 9,
    ],
    ids=["empty", "blank", "very-long", "control-chars", "non-latin", "one-long-word"],
)
def test_any_prompt_renders(prompt: str) -> None:
    """Empty, huge, multi-line and non-Latin prompts all render at the right size."""
    assert (2 * SMALL, 2 * SMALL) == png_size(
        grid_png(prompt, ak.Scale.RATIO_1_1, seed=0, long_side=SMALL)
    )


@pytest.mark.parametrize("seed", [0, 1, 42, -7, 2**31 - 1, 2**40, 123_456_789])
def test_variation_seeds_differ_per_quadrant_and_from_the_parent(seed: int) -> None:
    """V1..V4 of one grid get four different seeds, none equal to the parent's."""
    children = [variation_seed(seed, quadrant) for quadrant in QUADRANTS]

    assert 4 == len(set(children))
    assert seed not in children
    assert all(0 <= child < 2**31 for child in children)


def test_variation_seeds_are_deterministic() -> None:
    """The same parent and quadrant always vary to the same seed."""
    assert variation_seed(42, 3) == variation_seed(42, 3)
    assert variation_seed(42, 3) != variation_seed(43, 3)


def test_a_variation_grid_differs_from_its_parent() -> None:
    """The grid drawn from a variation seed is a new picture."""
    parent = _decode(grid_png(PROMPT, ak.Scale.RATIO_1_1, seed=42, long_side=SMALL))
    child_seed = variation_seed(42, 2)
    child = _decode(grid_png(PROMPT, ak.Scale.RATIO_1_1, seed=child_seed, long_side=SMALL))

    assert _mean_difference(parent, child) > 20


@pytest.mark.parametrize("quadrant", [0, 5, -1, 12])
def test_quadrants_outside_one_to_four_are_rejected(quadrant: int) -> None:
    """Every function taking a quadrant refuses anything but 1..4 and says so."""
    message = rf"quadrant must be 1, 2, 3 or 4 .*got {quadrant}\)"
    with pytest.raises(ValueError, match=message):
        quadrant_png(PROMPT, ak.Scale.RATIO_1_1, quadrant, seed=0)
    with pytest.raises(ValueError, match=message):
        upscale_png(PROMPT, ak.Scale.RATIO_1_1, quadrant, seed=0)
    with pytest.raises(ValueError, match=message):
        variation_seed(0, quadrant)


@pytest.mark.parametrize("factor", [0, -2])
def test_an_upscale_factor_below_one_is_rejected(factor: int) -> None:
    """factor must be at least 1."""
    with pytest.raises(
        ValueError, match=rf"factor must be a whole number of at least 1 \(got {factor}\)"
    ):
        upscale_png(PROMPT, ak.Scale.RATIO_1_1, 1, seed=0, factor=factor)


def test_an_unknown_scale_is_rejected() -> None:
    """A scale Akool does not render is a ValueError naming it."""
    with pytest.raises(ValueError, match="5:4"):
        grid_png(PROMPT, "5:4", seed=0)  # type: ignore[arg-type]


def test_png_size_reads_any_png_header() -> None:
    """png_size reads the width and height Pillow wrote, without decoding."""
    buffer = io.BytesIO()
    Image.new("L", (7, 3)).save(buffer, format="PNG")

    assert (7, 3) == png_size(buffer.getvalue())
    assert (7, 3) == png_size(buffer.getvalue()[:24])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(16),
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\r",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIDAT" + bytes(16),
        b"not a png at all, just some text long enough",
    ],
    ids=["empty", "gif", "jpeg", "truncated-png", "no-ihdr", "text"],
)
def test_png_size_rejects_anything_but_a_png(data: bytes) -> None:
    """Bytes that are not a PNG, or too short to hold its header, are a ValueError."""
    with pytest.raises(ValueError, match="not a PNG"):
        png_size(data)


# -- cheap pictures: cached looks, a caption per job, rows compressed once ------------------------


def _same_look_seeds(scale: ak.Scale, count: int) -> list[int]:
    """Seeds whose grids of PROMPT draw the same cached picture (only their captions differ)."""
    looks: dict[int, list[int]] = {}
    for seed in itertools.count():
        look = _images._look_of(_images._Subject(PROMPT, scale.value, seed))
        looks.setdefault(look.number, []).append(seed)
        if len(looks[look.number]) == count:
            return looks[look.number]
    raise AssertionError("unreachable")  # pragma: no cover


def test_every_job_gets_its_own_bytes() -> None:
    """200 jobs of one prompt: 1,000 files (grids and quadrants), no two alike."""
    digests = {
        hashlib.sha256(data).hexdigest()
        for seed in range(200)
        for data in (
            grid_png(PROMPT, ak.Scale.RATIO_1_1, seed=seed, long_side=SMALL),
            *(
                quadrant_png(PROMPT, ak.Scale.RATIO_1_1, q, seed=seed, long_side=SMALL)
                for q in QUADRANTS
            ),
        )
    }

    assert 1000 == len(digests)


def test_jobs_sharing_a_picture_differ_in_their_caption_band_only() -> None:
    """Two seeds of one look: the same pixels above the caption band, different bytes overall."""
    first_seed, second_seed = _same_look_seeds(ak.Scale.RATIO_1_1, 2)
    first = _decode(grid_png(PROMPT, ak.Scale.RATIO_1_1, seed=first_seed))
    second = _decode(grid_png(PROMPT, ak.Scale.RATIO_1_1, seed=second_seed))
    band_top = _images._layout((512, 512)).band_top

    assert first.crop((0, 0, 1024, band_top)).tobytes() == (
        second.crop((0, 0, 1024, band_top)).tobytes()
    )
    assert first.crop((0, band_top, 1024, 512)).tobytes() != (
        second.crop((0, band_top, 1024, 512)).tobytes()
    )
    assert 1 == _images._grid_tops.cache_info().misses


@pytest.mark.parametrize("long_side", [1, 2, 5, 24, 48])
def test_tiny_pictures_keep_their_sizes(long_side: int) -> None:
    """Sizes so small the caption band is the whole quadrant still give PNGs of the right size."""
    for scale in SCALES:
        width, height = quadrant_size(scale, long_side=long_side)
        assert (2 * width, 2 * height) == _decode(
            grid_png(PROMPT, scale, seed=1, long_side=long_side)
        ).size
        assert (width, height) == _decode(
            quadrant_png(PROMPT, scale, 3, seed=1, long_side=long_side)
        ).size
        assert (2 * width, 2 * height) == _decode(
            upscale_png(PROMPT, scale, 2, seed=1, long_side=long_side)
        ).size


def _noise(size: tuple[int, int], seed: int) -> Image.Image:
    rng = random.Random(seed)
    return Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))


def test_joined_rows_decode_to_the_stacked_images() -> None:
    """Rows compressed apart and joined decode, by Pillow and by zlib, to the images stacked."""
    parts = [_noise((37, 5), 1), _noise((37, 0), 2), _noise((37, 11), 3), _noise((37, 1), 4)]
    data = _png.png_from_rows([_png.compress_rows(part) for part in parts])

    stacked = Image.new("RGB", (37, 17))
    top = 0
    for part in parts:
        stacked.paste(part, (0, top))
        top += part.height
    decoded = _decode(data)
    assert ((37, 17), "RGB") == (decoded.size, decoded.mode)
    assert stacked.tobytes() == decoded.tobytes()
    assert {b"IHDR", b"IDAT", b"IEND"} == set(_chunk_types(data))


@pytest.mark.parametrize("sizes", [(0, 0), (1, 0), (0, 7), (5, 65521), (65521, 3), (1, 200_000)])
def test_checksums_combine_as_if_computed_at_once(sizes: tuple[int, int]) -> None:
    """Adler-32 of two parts, combined, equals zlib's Adler-32 of the two laid end to end."""
    rng = random.Random(sum(sizes))
    first, second = (bytes([255]) * size if size > 100 else rng.randbytes(size) for size in sizes)

    combined = _png._adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second))

    assert zlib.adler32(first + second) == combined


def test_rows_of_different_widths_do_not_join() -> None:
    """Joining rows of two widths, or none, is a ValueError naming the widths."""
    rows = [_png.compress_rows(_noise((4, 2), 1)), _png.compress_rows(_noise((5, 2), 1))]
    with pytest.raises(
        ValueError, match=r"rows to join must share one width \(got widths \[4, 5\]\)"
    ):
        _png.png_from_rows(rows)
    with pytest.raises(ValueError, match=r"got widths \[\]"):
        _png.png_from_rows([])
