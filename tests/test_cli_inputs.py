"""akool-async refuses bad input with exit status 2 and a clear message, before any request.

Most cases run the real console script in a child process against an emulator the test serves on
loopback, and check that the emulator saw no request at all; quick option checks call
``akool_async.cli.main`` in-process, with httpx made to record (and refuse) any request.
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import attrs
import filelock
import httpx
import pytest

from akool_async.cli import main
from akool_async.cli._journal import JOURNAL_NAME, Journal, PlannedTask, TaskKind
from akool_async.testing import TEST_API_KEY, AkoolEmulator

SCALES = "1:1, 4:3, 3:4, 16:9, 9:16, 3:2, 2:3"
QUADRANTS = (
    "takes quadrant numbers 1 to 4 separated by commas (1 top left, 2 top right, 3 bottom "
    "left, 4 bottom right), or 'all'"
)
LOCK_NAME = ".akool-journal.lock"
BASE_URL_RULE = (
    "must be an absolute http(s) URL with no spaces around it and a port (i"
    "f any) from 1 to 65535, e.g. https://openapi.akool.com or http://127.0.0.1:8787"
)
FAST_POLLING = ("--expected-duration", "0.5", "--target-lag", "0.1")


@pytest.fixture(params=[pytest.param(("asyncio", dict[str, Any]()), id="asyncio")])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Real sockets and child processes need real time; the child's loop is the CLI's own."""
    backend: tuple[str, dict[str, Any]] = request.param
    return backend


@attrs.frozen
class Served:
    """An emulator on a loopback port, and its base URL."""

    emulator: AkoolEmulator
    url: str


@attrs.frozen
class Result:
    """What a child run of akool-async gave back."""

    status: int
    stdout: str
    stderr: str


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    """The emulator, served on 127.0.0.1 for the child process to (not) call."""
    emulator = AkoolEmulator(time_scale=0.01, seed=5)
    async with emulator.serve() as url:
        yield Served(emulator, url)


def console_script() -> list[str]:
    """The installed ``akool-async`` script, or ``python -m akool_async.cli``."""
    script = pathlib.Path(sys.executable).with_name("akool-async")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "akool_async.cli"]


async def run_cli(
    *args: str | pathlib.Path, url: str | None = None, api_key: str | None = TEST_API_KEY
) -> Result:
    """Run akool-async with ``args``; AKOOL_BASE_URL and AKOOL_API_KEY from ``url``/``api_key``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AKOOL_")}
    env["PYTHONIOENCODING"] = "utf-8"
    if url is not None:
        env["AKOOL_BASE_URL"] = url
    if api_key is not None:
        env["AKOOL_API_KEY"] = api_key
    with anyio.fail_after(60):
        result = await anyio.run_process([*console_script(), *map(str, args)], env=env, check=False)
    return Result(result.returncode, result.stdout.decode(), result.stderr.decode())


def refused(result: Result, message: str) -> None:
    """Exit status 2, stderr exactly the one error message, nothing on stdout, no traceback."""
    assert "Traceback" not in result.stderr
    assert f"akool-async: error: {message}\n" == result.stderr
    assert 2 == result.status
    assert "" == result.stdout


async def batch(
    served: Served, file: pathlib.Path, out: pathlib.Path, *options: str, api_key: str | None = None
) -> Result:
    """``akool-async batch FILE --out OUT`` against the served emulator."""
    return await run_cli(
        "batch",
        file,
        "--out",
        out,
        *FAST_POLLING,
        *options,
        url=served.url,
        api_key=api_key if api_key is not None else TEST_API_KEY,
    )


# -- bad prompt files: refused before --out is touched ---------------------------------------------


@pytest.mark.anyio
async def test_missing_file(tmp_path: pathlib.Path, served: Served) -> None:
    """A prompt file that does not exist is named; nothing is sent or written."""
    out = tmp_path / "out"
    result = await batch(served, tmp_path / "prompts.txt", out)
    refused(result, f"{tmp_path / 'prompts.txt'}: no such file")
    assert [] == served.emulator.requests
    assert not out.exists()


@pytest.mark.anyio
async def test_a_file_name_with_terminal_escapes_is_shown_as_text(
    tmp_path: pathlib.Path, served: Served
) -> None:
    """An escape sequence in a name (a terminal title, a colour, a bidi override) reaches the
    screen escaped, never as a command to the terminal."""
    name = "nope\x1b]0;PWNED\x07\x1b[31m\u202e.txt"
    result = await batch(served, tmp_path / name, tmp_path / "out")
    refused(result, f"{tmp_path}/nope\\x1b]0;PWNED\\x07\\x1b[31m\\u202e.txt: no such file")
    assert [] == served.emulator.requests


@pytest.mark.anyio
async def test_empty_file(tmp_path: pathlib.Path, served: Served) -> None:
    """A file with only comments and blank lines is an empty batch, refused."""
    file = tmp_path / "prompts.txt"
    file.write_text("# nothing yet\n\n", encoding="utf-8")
    out = tmp_path / "out"
    refused(await batch(served, file, out), f"{file} has no prompts: nothing to generate")
    assert [] == served.emulator.requests
    assert not out.exists()


@pytest.mark.anyio
async def test_bad_scale_names_the_line_and_the_seven_scales(
    tmp_path: pathlib.Path, served: Served
) -> None:
    """One bad row refuses the whole batch: none of the good rows is paid for."""
    file = tmp_path / "prompts.csv"
    file.write_text("prompt,scale\na red fox,16:9\nan owl,5:4\na cat,1:1\n", encoding="utf-8")
    out = tmp_path / "out"
    refused(
        await batch(served, file, out),
        f"{file} has 1 bad row(s); nothing was sent:\n"
        f"  {file}, line 3: scale '5:4' is not one of {SCALES}",
    )
    assert [] == served.emulator.requests
    assert not out.exists()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            b"a red fox,16:9\n",
            "{file}: the first line must name the columns, with at least 'prompt' (allowed: "
            "prompt, scale, source_image); found 'a red fox', '16:9'",
            id="no-header",
        ),
        pytest.param(
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            "{file} is not UTF-8 text (line 1, byte 0: 0x89 cannot be read as UTF-8): save it "
            "as UTF-8",
            id="binary",
        ),
        pytest.param(
            "prompt\na red fox\n".encode("utf-16-le"),
            "{file} is UTF-16 text (little-endian, without a byte order mark); prompt files must "
            "be UTF-8: save it as UTF-8 (in a spreadsheet, as 'CSV UTF-8'; in an editor, with "
            "the encoding UTF-8)",
            id="nul-utf16",
        ),
        pytest.param(
            b'prompt\n"a red fox\n',
            "{file}, line 2: not readable CSV (unexpected end of data): a quoted cell starts on "
            "this line and its closing quote is missing, so it runs to the end of the file "
            '(line 2); inside a quoted cell, write a quote as two ("")',
            id="unterminated-quote",
        ),
        pytest.param(
            b"\xff\xfe" + "prompt\na red fox\n".encode("utf-16-le"),
            "{file} is UTF-16 text (little-endian, with a byte order mark); prompt files must "
            "be UTF-8: save it as UTF-8 (in a spreadsheet, as 'CSV UTF-8'; in an editor, with "
            "the encoding UTF-8)",
            id="utf16-with-bom",
        ),
    ],
)
async def test_unreadable_csv(
    tmp_path: pathlib.Path, served: Served, content: bytes, expected: str
) -> None:
    """A CSV without a header, binary bytes, UTF-16 or a broken quote: refused, saying which."""
    file = tmp_path / "prompts.csv"
    file.write_bytes(content)
    out = tmp_path / "out"
    refused(await batch(served, file, out), expected.format(file=file))
    assert [] == served.emulator.requests
    assert not out.exists()


@pytest.mark.anyio
async def test_unknown_suffix(tmp_path: pathlib.Path, served: Served) -> None:
    """A .json file is not guessed at: the message lists the three kinds."""
    file = tmp_path / "prompts.json"
    file.write_text('[{"prompt": "a red fox"}]', encoding="utf-8")
    out = tmp_path / "out"
    refused(
        await batch(served, file, out),
        f"{file}: unknown kind of prompt file '.json'; use .txt (one prompt per line), .jsonl "
        "(one JSON object per line) or .csv (columns prompt, scale, source_image)",
    )
    assert [] == served.emulator.requests
    assert not out.exists()


@pytest.mark.anyio
async def test_jsonl_unknown_key(tmp_path: pathlib.Path, served: Served) -> None:
    """A misspelt key names the line, the key and the allowed keys."""
    file = tmp_path / "prompts.jsonl"
    file.write_text('{"prompt": "a red fox"}\n{"promt": "an owl"}\n', encoding="utf-8")
    out = tmp_path / "out"
    refused(
        await batch(served, file, out),
        f"{file}, line 2: unknown key(s) 'promt'; allowed: prompt, scale, source_image",
    )
    assert [] == served.emulator.requests
    assert not out.exists()


# -- bad options and folders -----------------------------------------------------------------------


@pytest.fixture
def prompts(tmp_path: pathlib.Path) -> pathlib.Path:
    """A good two-prompt file."""
    file = tmp_path / "prompts.txt"
    file.write_text("a red fox\nan owl\n", encoding="utf-8")
    return file


@pytest.mark.anyio
async def test_out_is_an_existing_file(
    tmp_path: pathlib.Path, served: Served, prompts: pathlib.Path
) -> None:
    """--out naming a file is refused; the file is left as it was."""
    out = tmp_path / "results"
    out.write_bytes(b"keep me")
    refused(
        await batch(served, prompts, out),
        f"--out {out} is a file, not a folder: choose a folder for the results",
    )
    assert [] == served.emulator.requests
    assert b"keep me" == out.read_bytes()
    assert {"prompts.txt", "results"} == {path.name for path in tmp_path.iterdir()}


@pytest.mark.anyio
@pytest.mark.parametrize(("option", "value"), [("--upscale", "5"), ("--vary", "1,x")])
async def test_bad_follow_up_option(
    tmp_path: pathlib.Path, served: Served, prompts: pathlib.Path, option: str, value: str
) -> None:
    """--upscale 5 or --vary 1,x: refused naming the option and the quadrants."""
    out = tmp_path / "out"
    refused(
        await batch(served, prompts, out, option, value), f"{option} {QUADRANTS}; got {value!r}"
    )
    assert [] == served.emulator.requests
    assert not out.exists()


@pytest.mark.anyio
async def test_concurrency_zero(
    tmp_path: pathlib.Path, served: Served, prompts: pathlib.Path
) -> None:
    """argparse refuses --concurrency 0 with its usage line; exit status 2."""
    out = tmp_path / "out"
    result = await batch(served, prompts, out, "--concurrency", "0")
    assert 2 == result.status
    assert result.stderr.startswith("usage: akool-async batch ")
    assert result.stderr.endswith(
        "akool-async batch: error: argument --concurrency: must be 1 or more (got 0)\n"
    )
    assert "Traceback" not in result.stderr
    assert [] == served.emulator.requests
    assert not out.exists()


@pytest.mark.anyio
async def test_no_credentials_and_no_emulator(
    tmp_path: pathlib.Path, served: Served, prompts: pathlib.Path
) -> None:
    """Without a key or --emulator: one paragraph naming AKOOL_API_KEY and --emulator."""
    out = tmp_path / "out"
    result = await run_cli("batch", prompts, "--out", out, url=served.url, api_key=None)
    refused(
        result,
        "no Akool credentials found. Set AKOOL_API_KEY (or AKOOL_TOKEN, or AKOOL_CLIENT_ID and "
        "AKOOL_CLIENT_SECRET) in the environment, or pass --api-key; or add --emulator to run "
        "against the embedded Akool emulator, which needs no account and spends no credits "
        "(try: akool-async demo).",
    )
    assert 1 == result.stderr.count("\n")
    assert [] == served.emulator.requests
    assert not (out / JOURNAL_NAME).exists()


@pytest.mark.anyio
async def test_journal_of_another_endpoint(
    tmp_path: pathlib.Path, served: Served, prompts: pathlib.Path
) -> None:
    """A folder whose journal holds another endpoint's jobs is refused, naming both."""
    out = tmp_path / "out"
    out.mkdir()
    other = "https://openapi.akool.com/"
    async with await Journal.open(out / JOURNAL_NAME, endpoint=other) as journal:
        await journal.sync(
            [PlannedTask(key="g", kind=TaskKind.GRID, row=1, prompt="fox", scale="1:1", stem="fox")]
        )
        await journal.created("g", "64dd82eef0b6684651e90131")
    refused(
        await batch(served, prompts, out),
        f"the journal {str(out / JOURNAL_NAME)!r} holds jobs of {other}, not of {served.url}/: "
        "their ids mean nothing there. Run against the same endpoint, or choose another output "
        "folder",
    )
    assert [] == served.emulator.requests


@pytest.mark.anyio
async def test_a_folder_made_against_one_emulator_refuses_another(
    tmp_path: pathlib.Path, served: Served
) -> None:
    """A finished batch against A; B is refused with nothing sent; A again has nothing to do."""
    file = tmp_path / "prompts.txt"
    file.write_text("a red fox\n", encoding="utf-8")
    out = tmp_path / "out"
    first = await batch(served, file, out, "--no-quadrants")
    assert 0 == first.status, first.stderr
    sent = len(served.emulator.requests)
    assert 1 == served.emulator.creates_for("a red fox")

    other = AkoolEmulator(time_scale=0.01, seed=6)
    async with other.serve() as other_url:
        second = await run_cli("batch", file, "--out", out, url=other_url)
    refused(
        second,
        f"the journal {str(out / JOURNAL_NAME)!r} holds jobs of {served.url}/, not of "
        f"{other_url}/: their ids mean nothing there. Run against the same endpoint, or choose "
        "another output folder",
    )
    assert [] == other.requests

    # The same endpoint spelt with a trailing slash is the same endpoint: nothing to redo.
    third = await batch(
        Served(served.emulator, served.url + "/"), file, out, "--no-quadrants", "--json"
    )
    assert 0 == third.status, third.stderr
    assert "Nothing to do" in third.stdout
    assert sent == len(served.emulator.requests)


@pytest.mark.anyio
async def test_a_second_run_on_a_locked_folder(
    tmp_path: pathlib.Path, served: Served, prompts: pathlib.Path
) -> None:
    """While another run holds the folder's lock, a second run is refused and sends nothing."""
    out = tmp_path / "out"
    out.mkdir()
    with filelock.FileLock(str(out / LOCK_NAME)):
        result = await batch(served, prompts, out)
    refused(
        result,
        f"another akool-async run is working in {out} (it holds {out / LOCK_NAME}); wait for it "
        "to end, or choose another --out",
    )
    assert [] == served.emulator.requests
    assert not (out / JOURNAL_NAME).exists()


# -- in-process: option checks ---------------------------------------------------------------------


@pytest.fixture
def no_http(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """Every request any httpx client tries to send, refused; the list must stay empty."""
    attempts: list[httpx.Request] = []

    async def send(_client: httpx.AsyncClient, request: httpx.Request, **_: Any) -> httpx.Response:
        attempts.append(request)
        message = "a refused input must not send anything"
        raise httpx.ConnectError(message, request=request)

    monkeypatch.setattr(httpx.AsyncClient, "send", send)
    return attempts


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--concurrency", "0"],
            "akool-async batch: error: argument --concurrency: must be 1 or more (got 0)",
        ),
        (
            ["--concurrency", "many"],
            "akool-async batch: error: argument --concurrency: must be a whole number (got 'many')",
        ),
        (
            ["--scale", "5:4"],
            f"akool-async batch: error: argument --scale: must be one of {SCALES} (got '5:4')",
        ),
        (
            ["--time-scale", "0"],
            (
                "akool-async batch: error: argument --time-scale: must be a finite number "
                "greater than 0 (got 0)"
            ),
        ),
        (
            ["--out", ""],
            (
                "akool-async batch: error: argument --out: must name a folder (got ''); for the "
                "current folder say --out ."
            ),
        ),
        (
            ["--target-lag", "nan"],
            (
                "akool-async batch: error: argument --target-lag: must be a finite number "
                "greater than 0 (got nan)"
            ),
        ),
    ],
)
def test_argparse_refusals(
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    no_http: list[httpx.Request],
    argv: list[str],
    message: str,
) -> None:
    """Bad option values stop at argparse: SystemExit(2), the option named, what it takes."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as caught:
        main(["batch", str(tmp_path / "p.txt"), "--out", str(out), "--emulator", *argv])
    assert 2 == caught.value.code
    assert capsys.readouterr().err.endswith(message + "\n")
    assert [] == no_http
    assert not out.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["batch", "p.txt"],
        ["frobnicate"],
        ["upscale", "job-1", "5", "--emulator"],
        ["vary", "job-1", "U1", "--emulator"],
        ["generate", "a fox", "--scale", "square", "--emulator"],
    ],
    ids=["batch-without-out", "unknown-command", "upscale-5", "vary-U1", "generate-scale"],
)
def test_other_argparse_refusals(
    capsys: pytest.CaptureFixture[str], no_http: list[httpx.Request], argv: list[str]
) -> None:
    """A missing --out, an unknown command or a bad quadrant: SystemExit(2) and a usage line."""
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert 2 == caught.value.code
    err = capsys.readouterr().err
    assert err.startswith("usage: akool-async")
    assert "error: " in err
    assert [] == no_http


@pytest.mark.parametrize(("option", "value"), [("--upscale", "0"), ("--vary", "all,2")])
def test_bad_follow_up_in_process(
    capsys: pytest.CaptureFixture[str],
    no_http: list[httpx.Request],
    prompts: pathlib.Path,
    option: str,
    value: str,
) -> None:
    """main() returns 2 for a bad --upscale/--vary, even with --emulator; no folder, no request."""
    out = prompts.parent / "out"
    status = main(["batch", str(prompts), "--out", str(out), "--emulator", option, value])
    assert 2 == status
    assert f"akool-async: error: {option} {QUADRANTS}; got {value!r}\n" == capsys.readouterr().err
    assert [] == no_http
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["generate", "   "],
            "prompt must not be empty or blank: describe the image to generate",
        ),
        (
            ["generate", "a fox", "--source-image", "ftp://example.test/fox.png"],
            (
                "--source-image must be an absolute http:// or https:// URL "
                "(got 'ftp://example.test/fox.png')"
            ),
        ),
        (
            ["generate", "a fox", "--upscale", "9"],
            f"--upscale {QUADRANTS}; got '9'",
        ),
    ],
    ids=["blank-prompt", "bad-source-image", "bad-upscale"],
)
def test_generate_refusals(
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    no_http: list[httpx.Request],
    argv: list[str],
    message: str,
) -> None:
    """generate checks its prompt, source image and follow-ups before anything else."""
    out = tmp_path / "out"
    status = main([*argv, "--out", str(out), "--emulator"])
    assert 2 == status
    assert f"akool-async: error: {message}\n" == capsys.readouterr().err
    assert [] == no_http
    assert not out.exists()


def test_wait_into_a_file_is_refused(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], no_http: list[httpx.Request]
) -> None:
    """wait --out FILE is refused before the job is looked up."""
    out = tmp_path / "taken"
    out.write_text("x", encoding="utf-8")
    status = main(
        ["wait", "job-1", "--out", str(out), "--api-key", "k", "--base-url", "http://127.0.0.1:9"]
    )
    assert 2 == status
    assert (
        f"akool-async: error: --out {out} is a file, not a folder: choose a folder for the "
        "results\n"
    ) == capsys.readouterr().err
    assert [] == no_http


def test_bad_base_url_is_a_usage_error(
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    no_http: list[httpx.Request],
    prompts: pathlib.Path,
) -> None:
    """A base URL that is not http(s) is refused (exit 2) without a request or a journal."""
    out = tmp_path / "out"
    status = main(
        ["batch", str(prompts), "--out", str(out), "--api-key", "k", "--base-url", "ftp://x"]
    )
    assert 2 == status
    assert (
        f"akool-async: error: --base-url {BASE_URL_RULE} (got 'ftp://x')\n"
        == capsys.readouterr().err
    )
    assert [] == no_http
    assert not (out / JOURNAL_NAME).exists()


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999", "127.0.0.1:37835", " http://x"])
def test_a_bad_akool_base_url_is_one_line_naming_the_variable(
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    no_http: list[httpx.Request],
    url: str,
) -> None:
    """A port out of range, no scheme, a space: one line naming AKOOL_BASE_URL with an example,
    exit 2, for credit and batch; nothing sent, nothing written."""
    monkeypatch.setenv("AKOOL_BASE_URL", url)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox\n", encoding="utf-8")
    out = tmp_path / "out"
    expected = f"akool-async: error: AKOOL_BASE_URL {BASE_URL_RULE} (got {url!r})\n"
    for argv in (["credit"], ["batch", str(prompts), "--out", str(out)]):
        assert (2, "", expected) == (main([*argv, "--api-key", "k"]), *capsys.readouterr())
    assert ([], False) == (no_http, out.exists())


@pytest.mark.parametrize(
    "case",
    [
        (
            "sk-REALSECRET123\r",
            "a control character (such as a carriage return, newline or tab)",
            17,
        ),
        ("k\u00e9", "a non-ASCII character", 2),
        ("sk-X ", "a space", 5),
    ],
)
def test_a_key_with_a_stray_character_is_one_line_and_nothing_is_written(
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    no_http: list[httpx.Request],
    case: tuple[str, str, int],
) -> None:
    """AKOOL_API_KEY with a stray character: one line naming the variable and the character's
    class (never the key), exit 2, for credit and batch alike; nothing sent, no folder made."""
    key, kind, at = case
    monkeypatch.setenv("AKOOL_API_KEY", key)
    monkeypatch.setenv("AKOOL_BASE_URL", "http://127.0.0.1:9")
    out = tmp_path / "out"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox\n", encoding="utf-8")
    expected = (
        f"akool-async: error: AKOOL_API_KEY contains {kind} at character {at}: a credential is "
        "printable ASCII without spaces; copy it again without the stray character\n"
    )
    for argv in (["credit"], ["batch", str(prompts), "--out", str(out)]):
        assert (2, "", expected) == (main(argv), *capsys.readouterr())
    assert ([], False) == (no_http, out.exists())


def test_no_credentials_in_process(
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    no_http: list[httpx.Request],
    prompts: pathlib.Path,
) -> None:
    """Single-job commands give the same one-paragraph advice when no credential is set."""
    for argv in (["credit"], ["status", "job-1"]):
        assert 2 == main(argv)
        err = capsys.readouterr().err
        assert err.startswith("akool-async: error: no Akool credentials found. Set AKOOL_API_KEY")
        assert "add --emulator" in err
        assert 1 == err.count("\n")
    assert [] == no_http
