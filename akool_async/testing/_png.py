"""A small PNG writer for the emulator's pictures: rows compressed once, reused in many files.

Most of an emulated picture is the same from one job to the next; only a caption band differs.
Pillow's encoder filters and compresses every row of every file, which made rendering most of
an in-process batch's CPU. Here a run of rows is compressed on its own (`compress_rows`, as a
self-contained deflate segment ending on a byte boundary) and a file is put together from such
segments (`png_from_rows`): a segment shared by many files is compressed once and only joined
afterwards. The result is an ordinary 8-bit RGB PNG of IHDR, IDAT and IEND.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Final, NamedTuple

from PIL import Image

__all__ = ["PNG_SIGNATURE", "Rows", "compress_rows", "png_from_rows"]

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
# Level 1: the emulator serves over loopback, where bytes are cheap and latency is not.
_LEVEL: Final = 1
# Pillow's default font and its drawings are flat colours, so filter 0 (None) compresses about
# as well as Pillow's adaptive choice, for none of its cost.
_FILTER_NONE: Final = 0
_ZLIB_HEADER: Final = b"\x78\x01"  # deflate, 32 KiB window, fastest; 0x7801 % 31 == 0
_FINAL_EMPTY_BLOCK: Final = b"\x03\x00"  # BFINAL=1, fixed Huffman, end of block at once
_ADLER_MODULUS: Final = 65521
_RGB_8_BIT: Final = struct.pack(
    ">BBBBB", 8, 2, 0, 0, 0
)  # depth, truecolour, deflate, filter, no interlace


class Rows(NamedTuple):
    """A run of an image's rows, filtered and compressed on its own.

    Attributes:
        width: The rows' width in pixels.
        height: How many rows.
        deflated: A raw deflate segment of the filtered rows that refers to nothing before it
            and ends on a sync flush, so segments can be laid end to end.
        adler: The Adler-32 of the filtered rows.
        length: How many bytes the filtered rows are (a filter byte, then 3 per pixel, per row).
    """

    width: int
    height: int
    deflated: bytes
    adler: int
    length: int


def compress_rows(image: Image.Image) -> Rows:
    """Every row of an RGB ``image``, filtered and compressed as one segment."""
    width, height = image.size
    pixels = Image.frombytes("L", (3 * width, height), image.tobytes())
    # One byte wider on the left: Pillow lays out each row with its filter byte, all in C.
    scanlines = Image.new("L", (3 * width + 1, height), _FILTER_NONE)
    scanlines.paste(pixels, (1, 0))
    data = scanlines.tobytes()
    compressor = zlib.compressobj(_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return Rows(width, height, deflated, zlib.adler32(data), len(data))


def png_from_rows(parts: Sequence[Rows]) -> bytes:
    """A PNG whose rows are ``parts``' rows, top to bottom.

    Raises:
        ValueError: ``parts`` is empty or its parts differ in width.
    """
    widths = {part.width for part in parts}
    if len(widths) != 1:
        raise ValueError(f"rows to join must share one width (got widths {sorted(widths)})")
    adler = 1  # the Adler-32 of no bytes
    for part in parts:
        adler = _adler32_combine(adler, part.adler, part.length)
    stream = b"".join(
        (_ZLIB_HEADER, *(part.deflated for part in parts), _FINAL_EMPTY_BLOCK)
    ) + struct.pack(">I", adler)
    header = struct.pack(">II", widths.pop(), sum(part.height for part in parts)) + _RGB_8_BIT
    return b"".join(
        (PNG_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", stream), _chunk(b"IEND", b""))
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _adler32_combine(first: int, second: int, second_length: int) -> int:
    """The Adler-32 of two byte strings laid end to end, from each one's Adler-32.

    Adler-32 is two sums: A = 1 + the bytes, B = the sum of A after each byte. Appending
    ``second`` adds its bytes to A, and to B its own B plus ``first``'s A - 1 once per byte.
    """
    first_a, first_b = first & 0xFFFF, first >> 16
    second_a, second_b = second & 0xFFFF, second >> 16
    a = (first_a + second_a - 1) % _ADLER_MODULUS
    b = (first_b + second_b + second_length * (first_a - 1)) % _ADLER_MODULUS
    return b << 16 | a
