"""Deterministic stand-ins for Akool's renders: real PNGs of a 2x2 grid, its quadrants, upscales.

Pure functions of their arguments. Shapes and colours come from a `random.Random` seeded through
hashlib (never the per-process randomised `hash()`), placed in coordinates relative to the image
size, so an upscale is the same picture redrawn larger rather than a blurry resize. Output is
byte-identical across calls and processes for a given Pillow and zlib.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import io
import math
import random
import struct
import textwrap
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFont

from akool_async.testing._akool import scale_ratio

__all__ = ["grid_png", "png_size", "quadrant_png", "quadrant_size", "upscale_png", "variation_seed"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Level 1 encodes a 1024x1024 grid in ~17 ms against ~23 ms at the default 6, for ~20% more
# bytes; the emulator serves over loopback, where bytes are cheap and latency is not.
_COMPRESS_LEVEL = 1
_CACHE_SIZE = 256
# Long prompts are cut before wrapping so a 10,000-character prompt costs no more than a short one.
_MAX_CAPTION_CHARS = 240
_MAX_CAPTION_LINES = 3
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
        prompt: The prompt, printed small in each quadrant; it also seeds the picture.
        scale: The aspect ratio of each quadrant, and so of the whole grid.
        seed: Any integer; the same arguments always give the same bytes.
        long_side: Pixels along one quadrant's longer side; the grid is twice `quadrant_size`.

    Returns:
        A PNG of four visibly distinct quadrants labelled ``1`` to ``4``
        (1 top left, 2 top right, 3 bottom left, 4 bottom right).

    Raises:
        ValueError: If ``scale`` is unknown or ``long_side`` is below 1.
    """
    return _grid_png(_Subject(prompt, _known_scale(scale), seed), long_side)


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
    return _quadrant_png(_Subject(prompt, _known_scale(scale), seed), quadrant, long_side)


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
    if len(data) < 24 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":  # noqa: PLR2004
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


class _Subject(NamedTuple):  # what a picture depends on besides size and label; a cache key
    prompt: str
    scale: str
    seed: int


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _grid_png(subject: _Subject, long_side: int) -> bytes:
    width, height = quadrant_size(subject.scale, long_side=long_side)
    grid = Image.new("RGB", (2 * width, 2 * height))
    for quadrant in _QUADRANTS:
        tile = _draw_quadrant(subject, quadrant, (width, height), str(quadrant))
        grid.paste(tile, ((quadrant - 1) % 2 * width, (quadrant - 1) // 2 * height))
    return _encode(grid)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _quadrant_png(subject: _Subject, quadrant: int, long_side: int) -> bytes:
    size = quadrant_size(subject.scale, long_side=long_side)
    return _encode(_draw_quadrant(subject, quadrant, size, str(quadrant)))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _upscale_png(subject: _Subject, quadrant: int, long_side: int, factor: int) -> bytes:
    width, height = quadrant_size(subject.scale, long_side=long_side)
    return _encode(
        _draw_quadrant(subject, quadrant, (width * factor, height * factor), f"U{quadrant}")
    )


def _encode(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # No pnginfo, no dpi: Pillow then writes no tIME or text chunks, so the bytes are stable.
    image.save(buffer, format="PNG", compress_level=_COMPRESS_LEVEL)
    return buffer.getvalue()


def _hsv(hue: float, saturation: float, value: float) -> _Colour:
    red, green, blue = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return round(red * 255), round(green * 255), round(blue * 255)


def _draw_quadrant(
    subject: _Subject, quadrant: int, size: tuple[int, int], label: str
) -> Image.Image:
    width, height = size
    prompt, scale, seed = subject.prompt, subject.scale, subject.seed
    # One hue for the grid, turned a quarter of the colour wheel per quadrant, and a different
    # motif each: the four quadrants always differ in colour family and in shape.
    grid_rng = random.Random(_derive_seed("grid", prompt, scale, seed))  # noqa: S311
    base_hue = grid_rng.random()
    motif = grid_rng.sample(_MOTIFS, len(_MOTIFS))[quadrant - 1]
    # Nothing below depends on the size in pixels, only on proportions: upscales redraw alike.
    rng = random.Random(_derive_seed("quadrant", prompt, scale, seed, quadrant))  # noqa: S311
    hue = base_hue + (quadrant - 1) / 4 + rng.uniform(-0.04, 0.04)

    top, bottom = (_hsv(hue + rng.uniform(-0.06, 0.06), 0.65, rng.uniform(0.3, 0.9)) for _ in "ab")
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    band = max(1, height // 256)  # a gradient in bands of a pixel or two: smooth, few draw calls
    for row in range(0, height, band):
        mix = row / max(1, height - 1)
        fill = tuple(round(a + (b - a) * mix) for a, b in zip(top, bottom, strict=True))
        draw.rectangle((0, row, width, row + band - 1), fill=fill)

    unit = min(width, height)
    for _ in range(rng.randint(7, 12)):
        kind = motif if rng.random() < 0.7 else rng.choice(("ellipse", "rectangle", "line"))  # noqa: PLR2004
        # Mostly the quadrant's own hue family, with the odd complementary accent.
        accent = 0.5 if rng.random() < 0.25 else rng.uniform(-0.08, 0.08)  # noqa: PLR2004
        colour = _hsv(hue + accent, rng.uniform(0.5, 1.0), rng.uniform(0.55, 1.0))
        x, y, radius = rng.random() * width, rng.random() * height, rng.uniform(0.06, 0.22) * unit
        _draw_shape(draw, kind, (x, y, radius, rng.random()), colour)

    _draw_labels(image, draw, prompt, label)
    return image


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


def _draw_labels(image: Image.Image, draw: ImageDraw.ImageDraw, prompt: str, label: str) -> None:
    width, height = image.size
    unit = min(width, height)
    margin = max(2, unit // 24)
    stroke = max(1, round(unit * 0.012))
    label_font = _font(max(8, round(unit * 0.3)))
    draw.text((margin, margin), label, _WHITE, label_font, stroke_width=stroke, stroke_fill=_BLACK)

    caption_size = max(8, round(unit * 0.05))
    caption_font = _font(caption_size)
    lines = _caption_lines(prompt, caption_font, width - 2 * margin)
    if not lines:
        return
    line_height = round(caption_size * 1.25)
    band_top = max(0, height - margin - line_height * len(lines) - margin // 2)
    # Darken the band under the caption so white text reads on any background.
    under = image.crop((0, band_top, width, height))
    image.paste(Image.blend(under, Image.new("RGB", under.size), 0.6), (0, band_top))
    for index, line in enumerate(lines):
        draw.text(
            (margin, band_top + margin // 2 + index * line_height), line, _WHITE, caption_font
        )


def _caption_lines(prompt: str, font: _Font, max_width: int) -> list[str]:
    text = " ".join(prompt.split())[:_MAX_CAPTION_CHARS]
    if not isinstance(font, ImageFont.FreeTypeFont):  # Pillow's bitmap font is Latin-1 only
        text = text.encode("latin-1", "replace").decode("latin-1")
    average = max(1.0, font.getlength("abcdefghijklmnopqrstuvwxyz") / 26)
    lines = textwrap.wrap(text, width=max(1, int(max_width / average)))
    if len(lines) > _MAX_CAPTION_LINES:
        lines = [*lines[: _MAX_CAPTION_LINES - 1], lines[_MAX_CAPTION_LINES - 1] + "..."]
    # The wrap width came from an average letter; trim any line that still overflows.
    return [_fit(line, font, max_width) for line in lines]


def _fit(line: str, font: _Font, max_width: int) -> str:
    if font.getlength(line) <= max_width:
        return line
    while line and font.getlength(line + "...") > max_width:
        line = line[:-1]
    return line + "..."


def _font(size: int) -> _Font:
    # Loading the embedded default font takes about 0.1 ms, so it is not cached and no FreeType
    # face is ever shared between threads.
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1: one small bitmap font, no sizes
        return ImageFont.load_default()
