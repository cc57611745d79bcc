"""Deterministic stand-ins for Akool's renders: real PNGs of a 2x2 grid, its quadrants, upscales.

Pure functions of their arguments. Shapes and colours come from a `random.Random` seeded through
hashlib (never the per-process randomised `hash()`), placed in coordinates relative to the image
size, so an upscale is the same picture redrawn larger rather than a blurry resize. Output is
byte-identical across calls and processes for a given Pillow and zlib.

Cheap enough that an in-process batch measures the client, not Pillow: each scale has
`_LOOKS` pictures, chosen by prompt and seed, drawn and compressed once; each job adds only its
caption band (its prompt and its seed, so no two jobs' files are alike), compressed on its own
and joined to the cached rows by `_png`. A grid and its four quadrants are made together.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import math
import random
import struct
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFont

from akool_async.testing._akool import scale_ratio
from akool_async.testing._png import PNG_SIGNATURE, Rows, compress_rows, png_from_rows

__all__ = ["grid_png", "png_size", "quadrant_png", "quadrant_size", "upscale_png", "variation_seed"]

# Pictures per scale. More looks cost memory (about 130 KB of compressed rows for a 1:1 grid) and
# a first drawing each; with 32, two jobs share a picture (never a caption) one time in 32.
_LOOKS = 32
_LOOK_CACHE_SIZE = 128
# Finished files: a job's grid and quadrants are fetched within moments of each other.
_CACHE_SIZE = 64
# Long prompts are cut before fitting so a 10,000-character prompt costs no more than a short one.
_MAX_CAPTION_CHARS = 240
_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
_QUADRANTS = (1, 2, 3, 4)
_MOTIFS = ("ellipse", "rectangle", "triangle", "star")
_SEED_RANGE = 2**31  # variation seeds stay int32- and JavaScript-safe
_WHITE, _BLACK = (255, 255, 255), (0, 0, 0)

_Colour = tuple[int, int, int]
_Font = ImageFont.ImageFont | ImageFont.FreeTypeFont | ImageFont.TransposedFont


def quadrant_size(scale: str, *, long_side: int = 512) -> tuple[int, int]:
    """Size of one grid quadrant: the scale's aspect ratio with its longer side ``long_side``.

    Args:
        scale: The aspect ratio, such as ``"16:9"`` (an ``akool_async.Scale`` is one too).
        long_side: Pixels along the quadrant's longer side.

    Returns:
        ``(width, height)``, each rounded to the nearest pixel and at least 1,
        e.g. ``(512, 288)`` for 16:9 and ``(341, 512)`` for 2:3.

    Raises:
        ValueError: If ``scale`` is not one of Akool's scales or ``long_side`` is below 1.
    """
    if long_side < 1:
        raise ValueError(f"long_side must be at least 1 pixel (got {long_side})")
    ratio_w, ratio_h = scale_ratio(scale)
    longest = max(ratio_w, ratio_h)
    width, height = (max(1, round(long_side * part / longest)) for part in (ratio_w, ratio_h))
    return width, height


def grid_png(prompt: str, scale: str, *, seed: int, long_side: int = 512) -> bytes:
    """The composite 2x2 grid a prompt job renders (Akool's ``image``), as PNG bytes.

    Args:
        prompt: The prompt, printed small in each quadrant; it also picks the picture.
        scale: The aspect ratio of each quadrant, and so of the whole grid.
        seed: Any integer; the same arguments always give the same bytes.
        long_side: Pixels along one quadrant's longer side; the grid is twice `quadrant_size`.

    Returns:
        A PNG of four visibly distinct quadrants labelled ``1`` to ``4``
        (1 top left, 2 top right, 3 bottom left, 4 bottom right).

    Raises:
        ValueError: If ``scale`` is unknown or ``long_side`` is below 1.
    """
    return _grid_files(_Subject(prompt, _known_scale(scale), seed), long_side)[0]


def quadrant_png(
    prompt: str, scale: str, quadrant: int, *, seed: int, long_side: int = 512
) -> bytes:
    """One quadrant of `grid_png`, pixel for pixel: an image of Akool's ``upscaled_urls``.

    Args:
        prompt: As for `grid_png`.
        scale: As for `grid_png`.
        quadrant: 1 top left, 2 top right, 3 bottom left, 4 bottom right.
        seed: As for `grid_png`.
        long_side: As for `grid_png`.

    Returns:
        A PNG of `quadrant_size`, equal to the matching crop of the grid.

    Raises:
        ValueError: If ``quadrant`` is not 1 to 4, ``scale`` is unknown or ``long_side`` < 1.
    """
    _check_quadrant(quadrant)
    return _grid_files(_Subject(prompt, _known_scale(scale), seed), long_side)[quadrant]


def upscale_png(
    prompt: str, scale: str, quadrant: int, *, seed: int, long_side: int = 512, factor: int = 2
) -> bytes:
    """The result of an upscale button (``U1``..``U4``): one quadrant redrawn larger.

    Args:
        prompt: As for `grid_png`.
        scale: As for `grid_png`.
        quadrant: Which quadrant, 1 to 4: the button's digit.
        seed: As for `grid_png`.
        long_side: As for `grid_png`: the quadrant's size before upscaling.
        factor: How many times larger than the quadrant, along each side.

    Returns:
        A PNG ``factor`` times `quadrant_size`: the quadrant's picture drawn afresh at that size
        (sharp, not resampled) and labelled ``U1``..``U4``.

    Raises:
        ValueError: If ``quadrant`` is not 1 to 4, ``factor`` is below 1, ``scale`` is unknown
            or ``long_side`` is below 1.
    """
    _check_quadrant(quadrant)
    if factor < 1:
        raise ValueError(f"factor must be a whole number of at least 1 (got {factor!r})")
    return _upscale_png(_Subject(prompt, _known_scale(scale), seed), quadrant, long_side, factor)


def variation_seed(seed: int, quadrant: int) -> int:
    """The seed of the new grid a variation button (``V1``..``V4``) renders.

    Args:
        seed: The parent grid's seed.
        quadrant: The quadrant the variation is based on, 1 to 4.

    Returns:
        A seed in ``range(2**31)``, different for each quadrant and from ``seed`` itself.

    Raises:
        ValueError: If ``quadrant`` is not 1 to 4.
    """
    _check_quadrant(quadrant)
    # The low two bits carry the quadrant, so the four children of one parent never collide.
    derived = (_derive_seed("variation", seed) & ~3 | (quadrant - 1)) % _SEED_RANGE
    # Flipping bit 2 keeps the quadrant bits and settles the one-in-two-billion tie.
    return derived ^ 4 if derived == seed else derived


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG, read from its IHDR header without decoding it.

    Args:
        data: The PNG file's bytes (the first 24 are enough).

    Returns:
        ``(width, height)`` in pixels.

    Raises:
        ValueError: If ``data`` does not start with the PNG signature and an IHDR chunk.
    """
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":  # noqa: PLR2004
        raise ValueError("not a PNG: expected the PNG signature followed by an IHDR chunk")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _check_quadrant(quadrant: int) -> None:
    if quadrant not in _QUADRANTS:
        raise ValueError(
            f"quadrant must be 1, 2, 3 or 4 (1 top left, 4 bottom right; got {quadrant!r})"
        )


def _derive_seed(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "big")


def _known_scale(scale: str) -> str:
    """``scale`` as a plain string, once checked: an enum member and its text draw alike."""
    scale_ratio(scale)
    return str(scale)


class _Subject(NamedTuple):  # one job's pictures depend on these besides size; a cache key
    prompt: str
    scale: str
    seed: int


class _Look(NamedTuple):  # what the drawing depends on: one of _LOOKS pictures per scale
    scale: str
    number: int


class _Tile(NamedTuple):  # one picture of a quadrant, at one size, with its label
    look: _Look
    quadrant: int
    size: tuple[int, int]
    label: str


class _Layout(NamedTuple):  # where the label and the caption band go, in pixels
    margin: int
    stroke: int
    label_size: int
    caption_size: int
    line_height: int
    band_top: int


class _GridTops(NamedTuple):  # a look's compressed rows above the captions
    halves: tuple[Rows, Rows]  # the grid's upper (quadrants 1, 2) and lower (3, 4) halves
    quadrants: tuple[Rows, Rows, Rows, Rows]


def _look_of(subject: _Subject) -> _Look:
    return _Look(subject.scale, _derive_seed("look", *subject) % _LOOKS)


def _layout(size: tuple[int, int]) -> _Layout:
    width, height = size
    unit = min(width, height)
    margin = max(2, unit // 24)
    caption_size = max(8, round(unit * 0.05))
    line_height = round(caption_size * 1.25)
    return _Layout(
        margin=margin,
        stroke=max(1, round(unit * 0.012)),
        label_size=max(8, round(unit * 0.3)),
        caption_size=caption_size,
        line_height=line_height,
        band_top=max(0, height - margin - line_height - margin // 2),
    )


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _grid_files(subject: _Subject, long_side: int) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """One job's grid and its quadrants 1 to 4, made together: they are fetched together."""
    look = _look_of(subject)
    size = quadrant_size(look.scale, long_side=long_side)
    tops = _grid_tops(look, long_side)
    caption = _caption_mask(subject, size)
    bands = [
        _captioned_band(_Tile(look, quadrant, size, str(quadrant)), caption)
        for quadrant in _QUADRANTS
    ]
    halves = [_side_by_side(bands[0], bands[1]), _side_by_side(bands[2], bands[3])]
    grid = png_from_rows(
        [tops.halves[0], compress_rows(halves[0]), tops.halves[1], compress_rows(halves[1])]
    )
    one, two, three, four = (
        png_from_rows([top, compress_rows(band)])
        for top, band in zip(tops.quadrants, bands, strict=True)
    )
    return grid, one, two, three, four


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _upscale_png(subject: _Subject, quadrant: int, long_side: int, factor: int) -> bytes:
    width, height = quadrant_size(subject.scale, long_side=long_side)
    tile = _Tile(_look_of(subject), quadrant, (width * factor, height * factor), f"U{quadrant}")
    band = _captioned_band(tile, _caption_mask(subject, tile.size))
    return png_from_rows([_tile_top(tile), compress_rows(band)])


@functools.lru_cache(maxsize=_LOOK_CACHE_SIZE)
def _grid_tops(look: _Look, long_side: int) -> _GridTops:
    size = quadrant_size(look.scale, long_side=long_side)
    band_top = _layout(size).band_top
    tops = [
        _draw_rows(_Tile(look, quadrant, size, str(quadrant)), 0, band_top)
        for quadrant in _QUADRANTS
    ]
    upper, lower = (compress_rows(_side_by_side(tops[i], tops[i + 1])) for i in (0, 2))
    first, second, third, fourth = (compress_rows(top) for top in tops)
    return _GridTops((upper, lower), (first, second, third, fourth))


@functools.lru_cache(maxsize=_LOOK_CACHE_SIZE)
def _tile_top(tile: _Tile) -> Rows:
    return compress_rows(_draw_rows(tile, 0, _layout(tile.size).band_top))


def _side_by_side(left: Image.Image, right: Image.Image) -> Image.Image:
    joined = Image.new("RGB", (left.width + right.width, left.height))
    joined.paste(left, (0, 0))
    joined.paste(right, (left.width, 0))
    return joined


def _captioned_band(tile: _Tile, caption: Image.Image) -> Image.Image:
    """The tile's rows from its caption band down, with the caption (an "L" mask) in white."""
    band = _draw_rows(tile, _layout(tile.size).band_top, tile.size[1])
    band.paste(_WHITE, (0, 0, band.width, band.height), caption)
    return band


def _caption_mask(subject: _Subject, size: tuple[int, int]) -> Image.Image:
    """The caption band's text as a mask: the prompt, and on the right the job's seed."""
    width, height = size
    layout = _layout(size)
    font = _font(layout.caption_size)
    mask = Image.new("L", (width, height - layout.band_top))
    draw = ImageDraw.Draw(mask)
    # The seed sets apart two jobs of one prompt that drew the same picture.
    tag = f"seed {subject.seed}"
    tag_left = width - layout.margin - round(font.getlength(tag))
    draw.text((tag_left, layout.margin // 2), tag, 255, font)
    caption = _caption(subject.prompt, font, tag_left - 2 * layout.margin)
    if caption:
        draw.text((layout.margin, layout.margin // 2), caption, 255, font)
    return mask


def _draw_rows(tile: _Tile, first: int, last: int) -> Image.Image:
    """Rows ``first`` to ``last`` (excluded) of the tile's picture, caption band darkened."""
    width, height = tile.size
    look, quadrant = tile.look, tile.quadrant
    # One hue for the grid, turned a quarter of the colour wheel per quadrant, and a different
    # motif each: the four quadrants always differ in colour family and in shape.
    grid_rng = random.Random(_derive_seed("grid", *look))  # noqa: S311
    base_hue = grid_rng.random()
    motif = grid_rng.sample(_MOTIFS, len(_MOTIFS))[quadrant - 1]
    # Nothing below depends on the size in pixels, only on proportions: upscales redraw alike.
    rng = random.Random(_derive_seed("quadrant", *look, quadrant))  # noqa: S311
    hue = base_hue + (quadrant - 1) / 4 + rng.uniform(-0.04, 0.04)

    top, bottom = (_hsv(hue + rng.uniform(-0.06, 0.06), 0.65, rng.uniform(0.3, 0.9)) for _ in "ab")
    image = Image.new("RGB", (width, last - first))
    draw = ImageDraw.Draw(image)
    band = max(1, height // 256)  # a gradient in bands of a pixel or two: smooth, few draw calls
    for row in range(first - first % band, last, band):
        mix = row / max(1, height - 1)
        fill = tuple(round(a + (b - a) * mix) for a, b in zip(top, bottom, strict=True))
        draw.rectangle((0, row - first, width, row - first + band - 1), fill=fill)

    unit = min(width, height)
    for _ in range(rng.randint(7, 12)):
        kind = motif if rng.random() < 0.7 else rng.choice(("ellipse", "rectangle", "line"))  # noqa: PLR2004
        # Mostly the quadrant's own hue family, with the odd complementary accent.
        accent = 0.5 if rng.random() < 0.25 else rng.uniform(-0.08, 0.08)  # noqa: PLR2004
        colour = _hsv(hue + accent, rng.uniform(0.5, 1.0), rng.uniform(0.55, 1.0))
        x, y, radius = rng.random() * width, rng.random() * height, rng.uniform(0.06, 0.22) * unit
        turn = rng.random()
        if first - 2 * radius <= y <= last + 2 * radius:  # the rest falls outside these rows
            _draw_shape(draw, kind, (x, y - first, radius, turn), colour)

    layout = _layout(tile.size)
    if first <= layout.margin + 2 * layout.label_size:
        draw.text(
            (layout.margin, layout.margin - first),
            tile.label,
            _WHITE,
            _font(layout.label_size),
            stroke_width=layout.stroke,
            stroke_fill=_BLACK,
        )
    # Darken the caption band so white text reads on any background.
    dark_from = max(0, layout.band_top - first)
    if dark_from < image.height:
        under = image.crop((0, dark_from, width, image.height))
        image.paste(Image.blend(under, Image.new("RGB", under.size), 0.6), (0, dark_from))
    return image


def _hsv(hue: float, saturation: float, value: float) -> _Colour:
    red, green, blue = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return round(red * 255), round(green * 255), round(blue * 255)


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    kind: str,
    placement: tuple[float, float, float, float],
    colour: _Colour,
) -> None:
    x, y, radius, turn = placement  # centre, size and rotation (in turns)
    box = (x - radius, y - radius, x + radius, y + radius)
    line_width = max(1, round(radius / 12))
    if kind == "ellipse":
        draw.ellipse(box, fill=colour, outline=_WHITE, width=line_width)
    elif kind == "rectangle":
        draw.rectangle(box, fill=colour)
    elif kind == "line":
        draw.line((x - radius, y - radius * turn, x + radius, y + radius), colour, line_width * 3)
    elif kind == "triangle":
        draw.regular_polygon((x, y, radius), 3, rotation=turn * 120, fill=colour)
    else:  # a five-pointed star: ten vertices alternating between two radii
        spikes = [(radius * (1 - index % 2 * 0.55), turn + index / 10) for index in range(10)]
        draw.polygon(
            [(x + r * math.cos(a * math.tau), y + r * math.sin(a * math.tau)) for r, a in spikes],
            fill=colour,
        )


def _caption(prompt: str, font: _Font, max_width: int) -> str:
    """The prompt on one line: as much of it as fits in ``max_width`` pixels, then "..."."""
    text = " ".join(prompt.split())[:_MAX_CAPTION_CHARS]
    if not isinstance(font, ImageFont.FreeTypeFont):  # Pillow's bitmap font is Latin-1 only
        text = text.encode("latin-1", "replace").decode("latin-1")
    if max_width <= 0:
        return ""
    # A first cut at the width of an average letter, so trimming takes a few steps, not hundreds.
    average = max(1.0, font.getlength(_ALPHABET) / len(_ALPHABET))
    line = text[: int(max_width / average) + 4]
    if line == text and font.getlength(line) <= max_width:
        return line
    while line and font.getlength(line + "...") > max_width:
        line = line[:-1]
    return line + "..." if line else ""


def _font(size: int) -> _Font:
    # Loading the embedded default font takes about 0.1 ms, so it is not cached and no FreeType
    # face is ever shared between threads.
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1: one small bitmap font, no sizes
        return ImageFont.load_default()
