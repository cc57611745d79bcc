"""Prompt files read into checked rows, quadrant options, file-name slugs and the planned tasks."""

from __future__ import annotations

import json
import pathlib
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from akool_async._models import Scale
from akool_async.cli._journal import PlannedTask, TaskKind
from akool_async.cli._rows import (
    MAX_REPORTED,
    Row,
    UsageError,
    parse_quadrants,
    plan_tasks,
    read_rows,
    slug,
)

SCALES = "1:1, 4:3, 3:4, 16:9, 9:16, 3:2, 2:3"
SLUG = re.compile(r"[a-z0-9-]{1,40}")
DEFAULT = Scale.RATIO_1_1


def write(folder: pathlib.Path, name: str, content: str | bytes) -> pathlib.Path:
    """A prompt file ``name`` in ``folder`` holding ``content`` (text is written as UTF-8)."""
    path = folder / name
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8"))
    else:
        path.write_bytes(content)
    return path


def read(path: pathlib.Path, default_scale: Scale = DEFAULT) -> list[Row]:
    """read_rows with the batch's default scale."""
    return read_rows(path, default_scale=default_scale)


def refusal(path: pathlib.Path) -> str:
    """The message read_rows refuses ``path`` with."""
    with pytest.raises(UsageError) as caught:
        read(path)
    return str(caught.value)


def prompts(rows: list[Row]) -> list[tuple[int, int, str]]:
    """(number, line, prompt) of each row."""
    return [(row.number, row.line, row.prompt) for row in rows]


# -- .txt ------------------------------------------------------------------------------------------


def test_txt_skips_blank_lines_and_comments_and_strips_prompts(tmp_path: pathlib.Path) -> None:
    """Blank lines and '#' lines are skipped; prompts are stripped; numbers count prompts only."""
    path = write(
        tmp_path,
        "p.txt",
        "# my prompts\n\n  a red fox  \n\t\n   # indented comment\n"
        "an owl\r\na cat\rno newline at end",
    )
    assert [
        (1, 3, "a red fox"),
        (2, 6, "an owl"),
        (3, 7, "a cat"),
        (4, 8, "no newline at end"),
    ] == prompts(read(path))
    assert {DEFAULT} == {row.scale for row in read(path)}
    assert {None} == {row.source_image for row in read(path)}


def test_txt_rows_take_the_default_scale(tmp_path: pathlib.Path) -> None:
    """A .txt row has no scale of its own: the batch's --scale applies."""
    path = write(tmp_path, "p.txt", "a\nb\n")
    assert [Scale.RATIO_16_9] * 2 == [row.scale for row in read(path, Scale.RATIO_16_9)]


def test_txt_line_separators_inside_a_prompt_do_not_split_it(tmp_path: pathlib.Path) -> None:
    """Only newlines end lines: U+2028, U+0085 and form feeds stay inside the prompt."""
    path = write(tmp_path, "p.txt", "one\u2028two\nthree\x85four\x0cfive\nsix\n")
    assert [
        (1, 1, "one\u2028two"),
        (2, 2, "three\x85four\x0cfive"),
        (3, 3, "six"),
    ] == prompts(read(path))


# -- .jsonl ----------------------------------------------------------------------------------------


def test_jsonl_objects_and_bare_strings(tmp_path: pathlib.Path) -> None:
    """Objects give prompt/scale/source_image; a bare string is a prompt; blank lines skipped."""
    lines = [
        json.dumps({"prompt": " a red fox ", "scale": "16:9"}),
        "",
        json.dumps("an owl"),
        json.dumps({"prompt": "a cat", "source_image": "https://example.test/cat.png"}),
        json.dumps({"prompt": "a dog", "scale": None, "source_image": ""}),
    ]
    path = write(tmp_path, "p.jsonl", "\n".join(lines) + "\n")
    rows = read(path, Scale.RATIO_3_2)
    assert [
        Row(number=1, line=1, prompt="a red fox", scale=Scale.RATIO_16_9),
        Row(number=2, line=3, prompt="an owl", scale=Scale.RATIO_3_2),
        Row(
            number=3,
            line=4,
            prompt="a cat",
            scale=Scale.RATIO_3_2,
            source_image="https://example.test/cat.png",
        ),
        Row(number=4, line=5, prompt="a dog", scale=Scale.RATIO_3_2),
    ] == rows


def test_jsonl_keeps_a_line_separator_inside_a_json_string(tmp_path: pathlib.Path) -> None:
    """json.dumps(ensure_ascii=False) writes U+2028 raw: the line is still one JSON value."""
    prompt = "first\u2028second\u2029third"
    path = write(tmp_path, "p.jsonl", json.dumps({"prompt": prompt}, ensure_ascii=False) + "\n")
    assert [(1, 1, prompt)] == prompts(read(path))


def test_jsonl_unknown_keys_are_refused_naming_the_allowed_ones(tmp_path: pathlib.Path) -> None:
    """A misspelt key is refused, not ignored: its row would be generated without it."""
    path = write(
        tmp_path,
        "p.jsonl",
        '{"prompt": "ok"}\n{"prompt": "a fox", "scael": "16:9", "negative": "x"}\n',
    )
    assert (
        f"{path}, line 2: unknown key(s) 'negative', 'scael'; allowed: prompt, scale, source_image"
    ) == refusal(path)


def test_jsonl_a_line_that_is_not_json_is_refused_with_its_number(tmp_path: pathlib.Path) -> None:
    """The first non-JSON line is named, with the parser's reason."""
    path = write(tmp_path, "p.jsonl", '"fine"\n\n{"prompt": "a fox",\n')
    message = refusal(path)
    assert message.startswith(f"{path}, line 3: not JSON (")
    assert "Expecting" in message


@pytest.mark.parametrize(
    ("line", "kind"), [("42", "int"), ('["a fox"]', "list"), ("null", "NoneType")]
)
def test_jsonl_values_other_than_objects_are_refused(
    tmp_path: pathlib.Path, line: str, kind: str
) -> None:
    """A number, list or null is not a row: the message shows what an object looks like."""
    path = write(tmp_path, "p.jsonl", line + "\n")
    assert (
        f'{path}, line 1: expected an object such as {{"prompt": "a red fox", "scale": "16:9"}} '
        f"(got {kind})"
    ) == refusal(path)


def test_jsonl_field_types_are_checked(tmp_path: pathlib.Path) -> None:
    """A non-string prompt, a missing prompt and a non-string scale are listed by line."""
    lines = ['{"prompt": 5}', '{"scale": "1:1"}', '{"prompt": "a fox", "scale": 16}']
    path = write(tmp_path, "p.jsonl", "\n".join(lines))
    assert (
        f"{path} has 3 bad row(s); nothing was sent:\n"
        f"  {path}, line 1: prompt must be a string (got int)\n"
        f"  {path}, line 2: no prompt: every row needs one\n"
        f"  {path}, line 3: scale 16 is not one of {SCALES}"
    ) == refusal(path)


# -- .csv ------------------------------------------------------------------------------------------


def test_csv_reads_prompt_scale_and_source_image(tmp_path: pathlib.Path) -> None:
    """A header names the columns in any order; blank records are skipped; cells are stripped."""
    path = write(
        tmp_path,
        "p.csv",
        "scale,source_image,prompt\n"
        "16:9,,a red fox\n"
        ",,\n"
        "\n"
        ' 9:16 , https://example.test/owl.png ," an owl, at night "\n',
    )
    assert [
        Row(number=1, line=2, prompt="a red fox", scale=Scale.RATIO_16_9),
        Row(
            number=2,
            line=5,
            prompt="an owl, at night",
            scale=Scale.RATIO_9_16,
            source_image="https://example.test/owl.png",
        ),
    ] == read(path)


def test_csv_header_is_case_insensitive_and_extra_columns_are_ignored(
    tmp_path: pathlib.Path,
) -> None:
    """'Prompt', ' SCALE ' match; a 'notes' column is ignored, as are short records."""
    path = write(tmp_path, "p.csv", "notes, Prompt , SCALE \nmine,a fox,4:3\nyours,an owl\n")
    rows = read(path)
    assert [(1, 2, "a fox"), (2, 3, "an owl")] == prompts(rows)
    assert [Scale.RATIO_4_3, DEFAULT] == [row.scale for row in rows]


def test_csv_empty_scale_cell_takes_the_default(tmp_path: pathlib.Path) -> None:
    """An empty (or blank) scale cell means 'the batch's --scale', not an error."""
    path = write(tmp_path, "p.csv", "prompt,scale\na fox,\nan owl,   \n")
    assert [Scale.RATIO_2_3] * 2 == [row.scale for row in read(path, Scale.RATIO_2_3)]


def test_csv_needs_a_header_naming_prompt(tmp_path: pathlib.Path) -> None:
    """A file whose first line is a prompt is refused, showing what was found instead."""
    path = write(tmp_path, "p.csv", "a red fox,16:9\nan owl,1:1\n")
    assert (
        f"{path}: the first line must name the columns, with at least 'prompt' (allowed: "
        "prompt, scale, source_image); found 'a red fox', '16:9'"
    ) == refusal(path)


def test_csv_with_a_blank_first_line_says_it_found_nothing(tmp_path: pathlib.Path) -> None:
    """A blank first line is not a header."""
    path = write(tmp_path, "p.csv", "\nprompt\na fox\n")
    assert refusal(path).endswith("; found nothing")


def test_csv_duplicate_columns_are_refused(tmp_path: pathlib.Path) -> None:
    """Two 'prompt' columns (in any case) are ambiguous."""
    path = write(tmp_path, "p.csv", "prompt,scale,PROMPT\na,1:1,b\n")
    assert f"{path}: column(s) prompt appear more than once" == refusal(path)


def test_csv_quoted_prompt_spanning_lines_keeps_line_numbers(tmp_path: pathlib.Path) -> None:
    """A quoted cell spanning lines is one prompt; rows after it keep their physical line."""
    path = write(
        tmp_path,
        "p.csv",
        'prompt,scale\n"a fox\nin the snow",1:1\nan owl,5:5\n"a cat\n\non a mat",3:2\n',
    )
    assert f"{path}, line 4: scale '5:5' is not one of {SCALES}" in refusal(path)
    path = write(
        tmp_path, "p2.csv", 'prompt\n"a fox\nin the snow"\nan owl\n"a cat\r\n\r\non a mat"\nlast\n'
    )
    assert [
        (1, 2, "a fox\nin the snow"),
        (2, 4, "an owl"),
        (3, 5, "a cat\r\n\r\non a mat"),
        (4, 8, "last"),
    ] == prompts(read(path))


def test_csv_too_many_cells_are_refused(tmp_path: pathlib.Path) -> None:
    """An unquoted comma in a prompt makes one cell too many: refused, not silently cut."""
    path = write(tmp_path, "p.csv", "prompt,scale\na fox, at dawn,16:9\n")
    assert f"{path}, line 2: 3 cells for 2 columns" == refusal(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            'prompt,scale\na cat,1:1\n"a fox, at dawn\nan owl,16:9\n',
            "line 3: not readable CSV (unexpected end of data): a quoted cell starts on this "
            "line and its closing quote is missing, so it runs to the end of the file (line 4); "
            'inside a quoted cell, write a quote as two ("")',
            id="unterminated-quote",
        ),
        pytest.param(
            'prompt\na cat\n"a" fox\n',
            "line 3: not readable CSV (',' expected after '\"'): text follows a closing quote; "
            'quote the whole cell and write each quote inside it as two, e.g. "a ""red"" fox"',
            id="text-after-quote",
        ),
        pytest.param(
            'prompt\n"a cat\non two lines"\n"a" fox\n',
            "line 4: not readable CSV (',' expected after '\"'): text follows a closing quote; "
            'quote the whole cell and write each quote inside it as two, e.g. "a ""red"" fox"',
            id="after-a-cell-of-two-lines",
        ),
        pytest.param(
            "prompt\n" + "a" * 131_073 + "\n",
            "line 2: not readable CSV (field larger than field limit (131072))",
            id="huge-cell",
        ),
    ],
)
def test_csv_errors_name_the_line_and_the_fix(
    tmp_path: pathlib.Path, content: str, expected: str
) -> None:
    """csv's strict reader's refusals name the line the bad record starts on, and what to do."""
    path = write(tmp_path, "p.csv", content)
    assert f"{path}, {expected}" == refusal(path)


def test_csv_with_only_a_header_has_no_prompts(tmp_path: pathlib.Path) -> None:
    """A header and nothing else is an empty batch."""
    path = write(tmp_path, "p.csv", "prompt,scale\n\n")
    assert f"{path} has no prompts: nothing to generate" == refusal(path)


# -- every kind ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [("p.txt", "a fox\n"), ("p.jsonl", '"a fox"\n'), ("p.csv", "prompt\na fox\n")],
)
def test_a_utf8_byte_order_mark_is_accepted(
    tmp_path: pathlib.Path, name: str, content: str
) -> None:
    """Spreadsheets and Notepad start files with a BOM: it is not part of the first line."""
    path = write(tmp_path, name, b"\xef\xbb\xbf" + content.encode())
    assert [(1, 1 if name != "p.csv" else 2, "a fox")] == prompts(read(path))


@pytest.mark.parametrize("name", ["p.txt", "p.jsonl", "p.csv"])
def test_text_that_is_not_utf8_is_refused(tmp_path: pathlib.Path, name: str) -> None:
    """Latin-1 bytes: refused with the line and offset of the first bad byte, and a guess."""
    path = write(tmp_path, name, "prompt\ncaf\xe9\n".encode("latin-1"))
    assert (
        f"{path} is not UTF-8 text (line 2, byte 10: 0xe9 cannot be read as UTF-8; it may be "
        "Windows-1252 or Latin-1): save it as UTF-8"
    ) == refusal(path)


def test_bytes_no_code_page_reads_get_no_guess(tmp_path: pathlib.Path) -> None:
    """0x81 is no Windows-1252 character: no guess is offered, on the right line of \\r ends."""
    path = write(tmp_path, "p.txt", b"a cat\r\nan owl\rx\x81\n")
    assert (
        f"{path} is not UTF-8 text (line 3, byte 15: 0x81 cannot be read as UTF-8): save it "
        "as UTF-8"
    ) == refusal(path)


UNICODE_FILES = [
    ("utf-16-le", b"", "UTF-16 text (little-endian, without a byte order mark)"),
    ("utf-16-be", b"", "UTF-16 text (big-endian, without a byte order mark)"),
    ("utf-16-le", b"\xff\xfe", "UTF-16 text (little-endian, with a byte order mark)"),
    ("utf-16-be", b"\xfe\xff", "UTF-16 text (big-endian, with a byte order mark)"),
    ("utf-32-le", b"\xff\xfe\x00\x00", "UTF-32 text (little-endian, with a byte order mark)"),
    ("utf-32-be", b"\x00\x00\xfe\xff", "UTF-32 text (big-endian, with a byte order mark)"),
]


@pytest.mark.parametrize("name", ["p.txt", "p.jsonl", "p.csv"])
@pytest.mark.parametrize(
    ("codec", "mark", "encoding"), UNICODE_FILES, ids=[row[2] for row in UNICODE_FILES]
)
def test_utf16_and_utf32_files_are_refused_naming_their_encoding(
    tmp_path: pathlib.Path, name: str, codec: str, mark: bytes, encoding: str
) -> None:
    """What Windows calls "Unicode" text is named, with how to save the file as UTF-8."""
    path = write(tmp_path, name, mark + '"prompt"\n"a fox"\n'.encode(codec))
    assert (
        f"{path} is {encoding}; prompt files must be UTF-8: save it as UTF-8 (in a "
        "spreadsheet, as 'CSV UTF-8'; in an editor, with the encoding UTF-8)"
    ) == refusal(path)


@pytest.mark.parametrize("name", ["p.txt", "p.jsonl", "p.csv"])
def test_nul_bytes_are_refused_as_binary(tmp_path: pathlib.Path, name: str) -> None:
    """A NUL in otherwise UTF-8 text: refused, naming its line and offset, not sent as prompts."""
    path = write(tmp_path, name, b"prompt\na f\x00x\n")
    assert (
        f"{path} is not a text file (NUL byte on line 2, byte 10): save it as UTF-8 text"
    ) == refusal(path)


@pytest.mark.parametrize(
    ("name", "text"),
    [("p.txt", "{}\n"), ("p.jsonl", '"{}"\n'), ("p.csv", "prompt\n{}\n")],
)
def test_a_prompt_longer_than_the_limit_names_its_line(
    tmp_path: pathlib.Path, name: str, text: str
) -> None:
    """A pasted 120,004-character prompt is refused before anything is sent, with its line."""
    line = 2 if name == "p.csv" else 1
    path = write(tmp_path, name, text.format("a red fox " * 12_000 + "snow"))
    assert (
        f"{path} has 1 bad row(s); nothing was sent:\n  {path}, line {line}: prompt is 120,004 "
        "characters long; at most 4,000 are allowed (starts 'a red fox a red fox a red fox a "
        "red fox '): shorten it"
    ) == refusal(path)


@pytest.mark.parametrize("name", ["prompts.json", "prompts.tsv", "prompts"])
def test_unknown_suffix_is_refused_naming_the_kinds(tmp_path: pathlib.Path, name: str) -> None:
    """Only .txt, .jsonl and .csv are read; the message says what each holds."""
    path = write(tmp_path, name, "a fox\n")
    suffix = repr(path.suffix) if path.suffix else "'(no suffix)'"
    assert (
        f"{path}: unknown kind of prompt file {suffix}; use .txt (one prompt per line), .jsonl "
        "(one JSON object per line) or .csv (columns prompt, scale, source_image)"
    ) == refusal(path)


def test_suffix_case_does_not_matter(tmp_path: pathlib.Path) -> None:
    """PROMPTS.TXT from a Windows tool is a .txt file."""
    path = write(tmp_path, "PROMPTS.TXT", "a fox\n")
    assert [(1, 1, "a fox")] == prompts(read(path))


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("p.txt", ""),
        ("p.txt", "\n \n\t\n"),
        ("p.txt", "# only a comment\n  \n"),
        ("p.jsonl", ""),
        ("p.jsonl", "\n  \n"),
        ("p.csv", ""),
        ("p.csv", b"\xef\xbb\xbf"),
    ],
)
def test_a_file_without_prompts_is_refused(
    tmp_path: pathlib.Path, name: str, content: str | bytes
) -> None:
    """An empty batch is a mistake, not a success."""
    path = write(tmp_path, name, content)
    assert f"{path} has no prompts: nothing to generate" == refusal(path)


def test_a_missing_file_and_a_folder_are_refused(tmp_path: pathlib.Path) -> None:
    """No file, or a folder in its place, is named as such."""
    assert f"{tmp_path / 'gone.txt'}: no such file" == refusal(tmp_path / "gone.txt")
    (tmp_path / "dir.txt").mkdir()
    assert f"{tmp_path / 'dir.txt'} is a folder: pass a .txt, .jsonl or .csv file" == refusal(
        tmp_path / "dir.txt"
    )


def test_bad_rows_are_listed_by_line(tmp_path: pathlib.Path) -> None:
    """A bad scale, a bad source_image and a blank prompt are each named with their line."""
    path = write(
        tmp_path,
        "p.csv",
        "prompt,scale,source_image\n"
        "a fox,16:9,\n"
        "an owl,16/9,\n"
        "a cat,,ftp://example.test/cat.png\n"
        '"   ",1:1,\n',
    )
    assert (
        f"{path} has 3 bad row(s); nothing was sent:\n"
        f"  {path}, line 3: scale '16/9' is not one of {SCALES}\n"
        f"  {path}, line 4: source_image must be an absolute http:// or https:// URL "
        "(got 'ftp://example.test/cat.png')\n"
        f"  {path}, line 5: no prompt: every row needs one"
    ) == refusal(path)
    # A blank prompt cell is an empty cell; in .jsonl a blank prompt string is checked as such.
    jsonl = write(tmp_path, "p.jsonl", '{"prompt": "  "}\n')
    assert (
        f"{jsonl} has 1 bad row(s); nothing was sent:\n"
        f"  {jsonl}, line 1: prompt must not be empty or blank: describe the image to generate"
    ) == refusal(jsonl)


def test_at_most_ten_bad_rows_are_listed(tmp_path: pathlib.Path) -> None:
    """A file of 25 bad rows lists the first ten and counts the rest."""
    path = write(
        tmp_path, "p.jsonl", "".join(f'{{"prompt": "p{n}", "scale": "x"}}\n' for n in range(25))
    )
    lines = refusal(path).split("\n")
    assert f"{path} has 25 bad row(s); nothing was sent:" == lines[0]
    assert [f"  {path}, line {n}: scale 'x' is not one of {SCALES}" for n in range(1, 11)] == lines[
        1 : 1 + MAX_REPORTED
    ]
    assert ["  ... and 15 more"] == lines[1 + MAX_REPORTED :]


def test_exactly_ten_bad_rows_have_no_more_line(tmp_path: pathlib.Path) -> None:
    """'... and K more' only appears when something was left out."""
    path = write(tmp_path, "p.jsonl", "".join('{"prompt": 1}\n' for _ in range(MAX_REPORTED)))
    lines = refusal(path).split("\n")
    assert 1 + MAX_REPORTED == len(lines)
    assert "more" not in lines[-1]


def test_row_numbers_count_good_rows_only(tmp_path: pathlib.Path) -> None:
    """Numbers are positions among the prompts, whatever lines and comments lie between."""
    path = write(tmp_path, "p.txt", "# a\none\n\n# b\ntwo\nthree")
    assert [1, 2, 3] == [row.number for row in read(path)]
    assert [2, 5, 6] == [row.line for row in read(path)]


# -- parse_quadrants -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,3", (1, 3)),
        ("3,1", (1, 3)),
        (" 4 , 2 ,2", (2, 4)),
        ("all", (1, 2, 3, 4)),
        ("ALL", (1, 2, 3, 4)),
        ("", ()),
        ("  ", ()),
        ("none", ()),
        ("u1", (1,)),
        ("U2,u3", (2, 3)),
        ("v4", (4,)),
    ],
)
def test_parse_quadrants_accepts(text: str, expected: tuple[int, ...]) -> None:
    """Numbers 1-4 (or U1/V1 spelled out) in any order, 'all', or nothing."""
    assert expected == parse_quadrants("--upscale", text)


@pytest.mark.parametrize("text", ["0", "5", "1,5", "1,,2", "one", "all,1", "1 2", "-1", "1.0"])
@pytest.mark.parametrize("option", ["--upscale", "--vary"])
def test_parse_quadrants_refuses_naming_the_option(option: str, text: str) -> None:
    """Anything else is a usage error naming the option, the quadrants and the bad value."""
    with pytest.raises(UsageError) as caught:
        parse_quadrants(option, text)
    assert (
        f"{option} takes quadrant numbers 1 to 4 separated by commas (1 top left, 2 top right, "
        f"3 bottom left, 4 bottom right), or 'all'; got {text!r}"
    ) == str(caught.value)


# -- slug ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("A Red Fox, in Snow!", "a-red-fox-in-snow"),
        ("Crème brûlée — naïve café", "creme-brulee-naive-cafe"),
        ("\ufb01ne \uff46\uff55\uff4c\uff4c", "fine-full"),
        ('a<b>c:d"e/f\\g|h?i*j', "a-b-c-d-e-f-g-h-i-j"),
        ("../../etc/passwd", "etc-passwd"),
        ("日本の風景", "image"),
        ("!!!", "image"),
        ("", "image"),
        ("x" * 100, "x" * 40),
        ("a" * 39 + " b", "a" * 39),
    ],
)
def test_slug_examples(prompt: str, expected: str) -> None:
    """Accents fold to ASCII, everything else becomes single dashes, cut to 40 characters."""
    assert expected == slug(prompt)


@given(st.text(max_size=200))
@example("-" * 50)
@example("a" + "-" * 39 + "b")
@example("CON")
@example("\x00\t\n\u2028")
def test_slug_is_always_a_safe_file_name_part(prompt: str) -> None:
    """Any prompt gives 1-40 of [a-z0-9-], no dash at either end, nothing Windows refuses."""
    result = slug(prompt)
    assert SLUG.fullmatch(result), result
    assert not result.startswith("-")
    assert not result.endswith("-")
    assert "--" not in result
    assert not set(result) & set('<>:"/\\|?*. ')


# -- plan_tasks ------------------------------------------------------------------------------------


def row(number: int, prompt: str, scale: Scale = DEFAULT, source: str | None = None) -> Row:
    """A checked row, as read_rows makes it."""
    return Row(number=number, line=number, prompt=prompt, scale=scale, source_image=source)


def grid_keys(tasks: list[PlannedTask]) -> dict[str, str]:
    """Grid task keys by prompt."""
    return {task.prompt: task.key for task in tasks if task.kind is TaskKind.GRID}


def test_plan_one_grid_per_row_named_by_row_and_slug() -> None:
    """Without follow-ups each row is one grid task, its stem NNNN-slug."""
    tasks = plan_tasks(
        [row(1, "A red fox", Scale.RATIO_16_9), row(2, "an owl", source="https://x.test/o.png")],
        upscale=(),
        vary=(),
    )
    assert [TaskKind.GRID, TaskKind.GRID] == [task.kind for task in tasks]
    assert ["0001-a-red-fox", "0002-an-owl"] == [task.stem for task in tasks]
    assert [1, 2] == [task.row for task in tasks]
    assert ["16:9", "1:1"] == [task.scale for task in tasks]
    assert [None, "https://x.test/o.png"] == [task.source_image for task in tasks]
    assert [None, None] == [task.parent_key for task in tasks]
    assert [None, None] == [task.button for task in tasks]
    assert all(re.fullmatch(r"[0-9a-f]{20}\.0", task.key) for task in tasks)


def test_plan_keys_stay_when_rows_move() -> None:
    """A key is the row's content: inserting a row before it changes its number, not its key."""
    before = plan_tasks([row(1, "a fox"), row(2, "an owl")], upscale=(), vary=())
    after = plan_tasks([row(1, "a cat"), row(2, "an owl"), row(3, "a fox")], upscale=(), vary=())
    assert grid_keys(before)["a fox"] == grid_keys(after)["a fox"]
    assert grid_keys(before)["an owl"] == grid_keys(after)["an owl"]
    assert 3 == len(set(grid_keys(after).values()))


def test_plan_keys_depend_on_scale_and_source() -> None:
    """The same prompt at another scale or from another image is another job."""
    tasks = plan_tasks(
        [
            row(1, "a fox"),
            row(2, "a fox", Scale.RATIO_16_9),
            row(3, "a fox", source="https://x.test/a.png"),
        ],
        upscale=(),
        vary=(),
    )
    assert 3 == len({task.key for task in tasks})
    assert {".0"} == {task.key[-2:] for task in tasks}


def test_plan_duplicate_prompts_get_distinct_keys() -> None:
    """Two copies of a row are two jobs: keys differ by their occurrence, stems by row number."""
    tasks = plan_tasks(
        [row(1, "a fox"), row(2, "an owl"), row(3, "a fox"), row(4, "a fox")], upscale=(), vary=()
    )
    fox = [task for task in tasks if task.prompt == "a fox"]
    digest = fox[0].key.partition(".")[0]
    assert [f"{digest}.0", f"{digest}.1", f"{digest}.2"] == [task.key for task in fox]
    assert ["0001-a-fox", "0003-a-fox", "0004-a-fox"] == [task.stem for task in fox]


def test_plan_follow_ups_hang_off_their_grid() -> None:
    """Each grid is followed by its upscales then its variations, keyed and named after it."""
    tasks = plan_tasks([row(1, "a fox"), row(2, "an owl")], upscale=(1, 3), vary=(2,))
    grids = [task for task in tasks if task.kind is TaskKind.GRID]
    fox = grids[0]
    assert [
        (TaskKind.GRID, fox.key, None, None, "0001-a-fox"),
        (TaskKind.UPSCALE, f"{fox.key}/U1", fox.key, "U1", "0001-a-fox_U1"),
        (TaskKind.UPSCALE, f"{fox.key}/U3", fox.key, "U3", "0001-a-fox_U3"),
        (TaskKind.VARIATION, f"{fox.key}/V2", fox.key, "V2", "0001-a-fox_V2"),
    ] == [(task.kind, task.key, task.parent_key, task.button, task.stem) for task in tasks[:4]]
    owl = grids[1]
    assert [owl.key, f"{owl.key}/U1", f"{owl.key}/U3", f"{owl.key}/V2"] == [
        task.key for task in tasks[4:]
    ]
    follow_up = tasks[1]
    assert (fox.row, fox.prompt, fox.scale, fox.source_image) == (
        follow_up.row,
        follow_up.prompt,
        follow_up.scale,
        follow_up.source_image,
    )


def test_plan_stem_override_for_a_one_row_run() -> None:
    """``stem`` replaces the row-number-and-slug name, follow-ups included."""
    tasks = plan_tasks([row(1, "a fox")], upscale=(2,), vary=(), stem="a-fox-20250101-120000")
    assert ["a-fox-20250101-120000", "a-fox-20250101-120000_U2"] == [task.stem for task in tasks]


@pytest.mark.parametrize(("count", "width"), [(9999, 4), (10000, 5)])
def test_plan_row_numbers_widen_past_9999_rows(count: int, width: int) -> None:
    """Stems are padded to at least four digits, more when the file has more rows: they sort."""
    rows = [row(number, f"p{number}") for number in range(1, count + 1)]
    tasks = plan_tasks(rows, upscale=(), vary=())
    assert f"{1:0{width}d}-p1" == tasks[0].stem
    assert f"{count}-p{count}" == tasks[-1].stem
    assert count == len({task.key for task in tasks})
    stems = [task.stem for task in tasks]
    assert sorted(stems) == stems


@given(st.lists(st.sampled_from(["a fox", "an owl", "a cat"]), min_size=1, max_size=12))
def test_plan_keys_are_unique_and_stable_under_reordering(contents: list[str]) -> None:
    """Any file of repeated prompts plans unique keys, and the same key set in reverse order."""
    forward = plan_tasks(
        [row(n, prompt) for n, prompt in enumerate(contents, start=1)], upscale=(1,), vary=()
    )
    backward = plan_tasks(
        [row(n, prompt) for n, prompt in enumerate(reversed(contents), start=1)],
        upscale=(1,),
        vary=(),
    )
    keys = [task.key for task in forward]
    assert len(set(keys)) == len(keys)
    assert set(keys) == {task.key for task in backward}
