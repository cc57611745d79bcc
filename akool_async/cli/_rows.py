"""Prompt files (.txt, .jsonl, .csv) read into checked rows, and the tasks a batch plans for them.

Everything here runs before the first request: a file that cannot be read, or any row that Akool
would refuse, is a usage error that names the line and what is allowed.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import pathlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Final

import attrs

from akool_async._errors import InvalidInput
from akool_async._models import Scale
from akool_async._validate import check_prompt, check_scale, check_url

from ._journal import PlannedTask, TaskKind

__all__ = [
    "MAX_REPORTED",
    "Row",
    "UsageError",
    "check_row",
    "parse_quadrants",
    "plan_tasks",
    "read_rows",
    "slug",
]

SUFFIXES: Final = (".txt", ".jsonl", ".csv")
MAX_REPORTED: Final = 10
_FIELDS: Final = ("prompt", "scale", "source_image")
_SLUG_CHARS: Final = 40
_SCALES: Final = ", ".join(scale.value for scale in Scale)


class UsageError(Exception):
    """Bad input on the command line or in a file: reported, exit status 2, nothing sent."""


@attrs.frozen(kw_only=True)
class Row:
    """One prompt of a batch, checked.

    Attributes:
        number: Its 1-based position among the file's prompts.
        line: The file line it came from, for messages.
        prompt: What to draw.
        scale: Its aspect ratio.
        source_image: A source image URL, for image-to-image.
    """

    number: int
    line: int
    prompt: str
    scale: Scale
    source_image: str | None = None


def read_rows(path: pathlib.Path, *, default_scale: Scale) -> list[Row]:
    """Read and check every row of a prompt file. Blocking (call it from a worker thread).

    Raises:
        UsageError: The file is missing, unreadable, of an unknown kind, empty, or has rows
            Akool would refuse (up to `MAX_REPORTED` are listed).
    """
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise UsageError(
            f"{path}: unknown kind of prompt file {suffix or '(no suffix)'!r}; use .txt (one "
            "prompt per line), .jsonl (one JSON object per line) or .csv (columns prompt, "
            "scale, source_image)"
        )
    text = _read_text(path)
    if suffix == ".txt":
        raw = _txt_rows(text)
    elif suffix == ".jsonl":
        raw = _jsonl_rows(path, text)
    else:
        raw = _csv_rows(path, text)
    rows: list[Row] = []
    problems: list[str] = []
    for line, fields in raw:
        try:
            rows.append(check_row(len(rows) + 1, line, fields, default_scale))
        except InvalidInput as error:
            problems.append(f"{path}, line {line}: {error}")
    if problems:
        shown = problems[:MAX_REPORTED]
        more = len(problems) - len(shown)
        if more:
            shown.append(f"... and {more} more")
        raise UsageError(
            f"{path} has {len(problems)} bad row(s); nothing was sent:\n  " + "\n  ".join(shown)
        )
    if not rows:
        raise UsageError(f"{path} has no prompts: nothing to generate")
    return rows


def _read_text(path: pathlib.Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder: pass a .txt, .jsonl or .csv file") from None
    except OSError as error:
        raise UsageError(f"{path}: cannot read it ({error.strerror or error})") from None
    encoding = _other_encoding(data)
    if encoding is not None:
        raise UsageError(
            f"{path} is {encoding}; prompt files must be UTF-8: save it as UTF-8 (in a "
            "spreadsheet, as 'CSV UTF-8'; in an editor, with the encoding UTF-8)"
        )
    try:
        # utf-8-sig: spreadsheet programs start their CSV files with a byte order mark.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UsageError(
            f"{path} is not UTF-8 text (line {_line_at(data, error.start)}, byte {error.start}: "
            f"{data[error.start]:#04x} cannot be read as UTF-8{_guess(data)}): save it as UTF-8"
        ) from None
    if "\x00" in text:  # valid UTF-8, but binary
        at = data.index(0)
        raise UsageError(
            f"{path} is not a text file (NUL byte on line {_line_at(data, at)}, byte {at}): "
            "save it as UTF-8 text"
        )
    return text


_BYTE_ORDER_MARKS: Final = (
    # UTF-32 first: its little-endian mark starts with UTF-16's.
    (codecs.BOM_UTF32_LE, "UTF-32 text (little-endian, with a byte order mark)"),
    (codecs.BOM_UTF32_BE, "UTF-32 text (big-endian, with a byte order mark)"),
    (codecs.BOM_UTF16_LE, "UTF-16 text (little-endian, with a byte order mark)"),
    (codecs.BOM_UTF16_BE, "UTF-16 text (big-endian, with a byte order mark)"),
)


def _other_encoding(data: bytes) -> str | None:
    """The name of a Unicode encoding other than UTF-8 that ``data`` is plainly in, or None.

    A byte order mark names it; without one, UTF-16 text of mostly ASCII characters has a NUL
    in every other byte (what Windows' "Unicode" text files and some exports hold).
    """
    for mark, name in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            return name
    pairs = len(data) // 2
    if pairs >= 2:  # noqa: PLR2004 - two characters at least, to see a pattern
        if data[1::2].count(0) * 10 >= pairs * 9 and data[0::2].count(0) == 0:
            return "UTF-16 text (little-endian, without a byte order mark)"
        if data[0::2].count(0) * 10 >= pairs * 9 and data[1::2].count(0) == 0:
            return "UTF-16 text (big-endian, without a byte order mark)"
    return None


def _line_at(data: bytes, offset: int) -> int:
    """The 1-based line of byte ``offset``, lines ending at \\n, \\r\\n or \\r (as `_lines`)."""
    return len(re.findall(rb"\r\n|\r|\n", data[:offset])) + 1


def _guess(data: bytes) -> str:
    """What a text that is not UTF-8 probably is, for the message: the usual Windows code page."""
    if b"\x00" in data:
        return ""
    try:
        data.decode("cp1252")
    except UnicodeDecodeError:
        return ""
    return "; it may be Windows-1252 or Latin-1"


def _lines(text: str) -> list[str]:
    # Only \n, \r\n and \r end lines, as in editors and csv: str.splitlines() would also split
    # at U+2028, U+0085 or a form feed, which JSON strings and prompts may hold.
    return re.split(r"\r\n|\r|\n", text)


def _txt_rows(text: str) -> list[tuple[int, dict[str, Any]]]:
    # Blank lines and lines starting with '#' are skipped; the rest are prompts, verbatim.
    return [
        (number, {"prompt": line.strip()})
        for number, line in enumerate(_lines(text), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _jsonl_rows(path: pathlib.Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise UsageError(f"{path}, line {number}: not JSON ({error.msg})") from None
        if isinstance(value, str):
            value = {"prompt": value}
        if not isinstance(value, dict):
            raise UsageError(
                f"{path}, line {number}: expected an object such as "
                '{"prompt": "a red fox", "scale": "16:9"} (got '
                f"{type(value).__name__})"
            )
        fields: dict[str, Any] = value  # pyright: ignore[reportUnknownVariableType]
        unknown = sorted(set(fields) - set(_FIELDS))
        if unknown:
            raise UsageError(
                f"{path}, line {number}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(_FIELDS)}"
            )
        rows.append((number, fields))
    return rows


def _csv_rows(path: pathlib.Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    # Each record with the physical line it starts on: a quoted cell may span lines.
    table: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for record in reader:
            table.append((start, record))
            start = reader.line_num + 1
    except csv.Error as error:
        hint = _csv_hint(str(error), reader.line_num)
        raise UsageError(f"{path}, line {start}: not readable CSV ({error}){hint}") from None
    if not table:
        raise UsageError(f"{path} has no prompts: nothing to generate")
    names = table[0][1]
    header = [name.strip().lower() for name in names]
    if "prompt" not in header:
        raise UsageError(
            f"{path}: the first line must name the columns, with at least 'prompt' "
            f"(allowed: {', '.join(_FIELDS)}); found {', '.join(map(repr, names)) or 'nothing'}"
        )
    duplicated = sorted(name for name, count in Counter(header).items() if count > 1 and name)
    if duplicated:
        raise UsageError(f"{path}: column(s) {', '.join(duplicated)} appear more than once")
    columns = {name: index for index, name in enumerate(header) if name in _FIELDS}
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, record in table[1:]:
        if not any(cell.strip() for cell in record):
            continue
        if len(record) > len(header):
            raise UsageError(
                f"{path}, line {number}: {len(record)} cells for {len(header)} columns"
            )
        fields = {
            name: record[index].strip()
            for name, index in columns.items()
            if index < len(record) and record[index].strip()
        }
        rows.append((number, fields))
    return rows


def _csv_hint(message: str, last_line: int) -> str:
    """What to change for csv's usual complaints, which name neither quotes nor cells."""
    if message == "unexpected end of data":
        return (
            ": a quoted cell starts on this line and its closing quote is missing, so it runs "
            f"to the end of the file (line {last_line}); inside a quoted cell, write a quote as "
            'two ("")'
        )
    if message.endswith("expected after '\"'"):
        return (
            ": text follows a closing quote; quote the whole cell and write each quote inside "
            'it as two, e.g. "a ""red"" fox"'
        )
    return ""


def check_row(
    number: int,
    line: int,
    fields: dict[str, Any],
    default_scale: Scale,
    *,
    source_name: str = "source_image",
) -> Row:
    """One row's fields checked as Akool would check them; ``source_name`` names the field.

    Raises:
        InvalidInput: No or a blank prompt, an unknown scale, a source image that is not an
            http(s) URL.
    """
    prompt = fields.get("prompt")
    if prompt is None:
        raise InvalidInput("no prompt: every row needs one")
    prompt = check_prompt(prompt).strip()
    scale_value = fields.get("scale")
    if scale_value is None or scale_value == "":
        scale = default_scale
    else:
        try:
            scale = check_scale(scale_value)
        except InvalidInput:
            raise InvalidInput(f"scale {scale_value!r} is not one of {_SCALES}") from None
    source = fields.get("source_image")
    source = check_url(source_name, source) if source not in {None, ""} else None
    return Row(number=number, line=line, prompt=prompt, scale=scale, source_image=source)


def parse_quadrants(option: str, text: str) -> tuple[int, ...]:
    """``"1,3"`` -> ``(1, 3)``; ``"all"`` -> ``(1, 2, 3, 4)``; ``""`` or ``"none"`` -> ``()``.

    Raises:
        UsageError: Anything else, naming the option and what it takes.
    """
    value = text.strip().lower()
    if value in {"", "none"}:
        return ()
    if value == "all":
        return (1, 2, 3, 4)
    chosen: list[int] = []
    for part in value.split(","):
        part = part.strip().removeprefix("u").removeprefix("v")  # noqa: PLW2901 - normalising
        if part not in {"1", "2", "3", "4"}:
            raise UsageError(
                f"{option} takes quadrant numbers 1 to 4 separated by commas (1 top left, 2 top "
                f"right, 3 bottom left, 4 bottom right), or 'all'; got {text!r}"
            )
        if int(part) not in chosen:
            chosen.append(int(part))
    return tuple(sorted(chosen))


def slug(prompt: str) -> str:
    """A short file-name part from a prompt: ASCII letters, digits and dashes, safe everywhere."""
    ascii_text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode("ascii")
    words = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    cut = words[:_SLUG_CHARS].rstrip("-")
    return cut or "image"


def row_key(row: Row, occurrence: int) -> str:
    """A row's identity across runs: its content, and which copy of that content it is."""
    content = json.dumps([row.prompt, row.scale.value, row.source_image])
    digest = hashlib.sha256(content.encode("utf-8")).hexdigest()[:20]
    return f"{digest}.{occurrence}"


def plan_tasks(
    rows: Sequence[Row],
    *,
    upscale: Iterable[int],
    vary: Iterable[int],
    stem: str | None = None,
) -> list[PlannedTask]:
    """The tasks for ``rows``: each row's grid, then its follow-up buttons.

    File stems are the row number (zero-padded, at least four digits) and a slug of the prompt,
    e.g. ``0007-a-red-fox-in-snow``, and ``_U1`` / ``_V2`` after it for follow-ups; ``stem``
    replaces the row's part for a one-row run. Slugs hold no ``_``, so the names of two rows'
    files can only meet if their stems are equal, which the journal prevents.
    """
    upscale, vary = tuple(upscale), tuple(vary)
    width = max(4, len(str(len(rows))))
    seen: Counter[str] = Counter()
    tasks: list[PlannedTask] = []
    for row in rows:
        content = row_key(row, 0).partition(".")[0]
        occurrence = seen[content]
        seen[content] += 1
        key = row_key(row, occurrence)
        base = stem if stem is not None else f"{row.number:0{width}d}-{slug(row.prompt)}"
        grid = PlannedTask(
            key=key,
            kind=TaskKind.GRID,
            row=row.number,
            prompt=row.prompt,
            scale=row.scale.value,
            source_image=row.source_image,
            stem=base,
        )
        tasks.append(grid)
        for kind, letter, numbers in (
            (TaskKind.UPSCALE, "U", upscale),
            (TaskKind.VARIATION, "V", vary),
        ):
            for number in numbers:
                button = f"{letter}{number}"
                tasks.append(
                    attrs.evolve(
                        grid,
                        key=f"{key}/{button}",
                        kind=kind,
                        parent_key=key,
                        button=button,
                        stem=f"{base}_{button}",
                    )
                )
    return tasks
