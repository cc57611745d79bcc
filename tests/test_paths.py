"""No file the SDK or the command line writes is named by the server.

A result is saved under its job id and the suffix of its URL, and Akool sends both. These tests
feed hostile ids (traversal, absolute paths, separators of every system, NUL, device names,
very long ids, look-alike characters) through a real loopback server into `ImageJob.download`,
`ImageJob.download_quadrants` and the ``wait`` / ``upscale`` / ``vary --out`` commands, and
check after each that the typed error came, that nothing was created or written anywhere in the
test's folder (inside the destination or outside it), and that no image was even fetched. They
also pin the rule `download` uses to tell a folder from a file, and the creation of missing
folders.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final, NamedTuple
from urllib.parse import parse_qs

import anyio
import pytest

import akool_async as ak
from akool_async._asgi import Receive, Scope, Send
from akool_async._paths import (
    DEFAULT_SUFFIX,
    files_in,
    image_suffix,
    make_folder,
    names_folder,
    safe_stem,
)
from akool_async._serve import serve_asgi
from akool_async.cli import main
from akool_async.cli._files import file_name
from akool_async.cli._journal import TaskKind, TaskRecord, TaskState
from akool_async.testing import TEST_API_KEY, AkoolEmulator
from akool_async.testing._images import quadrant_png
from conftest import FIXED_TIMINGS

GOOD_ID: Final = "64dd82eef0b6684651e90131"
PNG: Final = quadrant_png("a fox", ak.Scale.RATIO_1_1, 1, seed=3, long_side=48)
ABSOLUTE: Final = "{sandbox}/abs/pwned"
"""An absolute id, made absolute under the test's folder, so an escape would land where the
walk of that folder sees it (an id such as "/etc/passwd" is checked without touching disk)."""
HOSTILE_IDS: Final = {
    "traversal": "../../x/pwned",
    "absolute": ABSOLUTE,
    "dot-dot": "..",
    "dot": ".",
    "slash": "a/b",
    "backslash": "a\\b",
    "windows-traversal": "..\\..\\x\\pwned",
    "drive": "C:pwned",
    "device": "CON",
    "device-any-case": "lpt1",
    "too-long": "a" * 65,
    "very-long": "f" * 5000,
    "fullwidth": "\uff41\uff42\uff43\uff11\uff12\uff13",
    "division-slash": "..\u2215..\u2215x",
    "dot-leader-fullwidth-solidus": "\u2024\u2024\uff0fx",
    "cyrillic-a": "64dd82eef0b6684651e9013\u0430",
    "dotted-suffix": "pwned.exe",
}
"""Ids a hostile server sends; none of them may name a file. (NUL and blanks are below: a
handle refuses them as input, so only a server can bring them.)"""
SERVER_ONLY_IDS: Final = {"nul": "a\x00b", "blank": " ", "newline": "x\npwned"}
POLL: Final = ak.PollPolicy(expected_duration=0.05, target_lag=0.05, min_interval=0.01)
ONE_TRY: Final = ak.RetryPolicy(attempts=1)
CLI_POLL: Final = ("--expected-duration", "0.2", "--target-lag", "0.1")
CLI_DEADLINE: Final = 60.0
RULE: Final = (
    "1 to 64 ASCII letters, digits, '-' or '_', and no Windows device name "
    "(CON, PRN, AUX, NUL, COM0-9, LPT0-9)"
)

# The hostile server needs real sockets, so those tests run in real time.
real_time = pytest.mark.real_time
# Symbolic links need a privilege on Windows, and its permissions are not POSIX modes.
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX links and permissions")


def hostile(key: str, sandbox: pathlib.Path) -> str:
    return HOSTILE_IDS[key].replace("{sandbox}", str(sandbox))


def tree(root: pathlib.Path) -> list[str]:
    """Every path under ``root``, folders and hidden files included, relative to it."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


class Sandbox(NamedTuple):
    """A test's folder: ``work`` is two levels down, so ``../../x`` from a folder in it stays
    inside ``root``, where the walk sees it."""

    root: pathlib.Path
    work: pathlib.Path


@pytest.fixture
def sandbox(tmp_path: pathlib.Path) -> Sandbox:
    work = tmp_path / "sandbox" / "work"
    work.mkdir(parents=True)
    return Sandbox(tmp_path, work)


# -- the parts: stems and suffixes ----------------------------------------------------------------


@pytest.mark.parametrize("value", ["64dd82eef0b6684651e90131", "job-1", "A_b-9", "x" * 64, "-"])
def test_a_plain_stem_is_kept(value: str) -> None:
    """Letters, digits, '-' and '_', up to 64 of them, are a stem on every system."""
    assert value == safe_stem(value, what="job id", from_server=True)
    assert value == safe_stem(value, what="job id", from_server=False)


@pytest.mark.parametrize(
    "value",
    [
        *HOSTILE_IDS.values(),
        *SERVER_ONLY_IDS.values(),
        "/etc/passwd",
        "C:\\Windows\\win.ini",
        "\\\\server\\share\\x",
        "",
        "Nul",
        "com0",
        "aux",
        "prn",
        "id with spaces",
        "tab\there",
        "x" * 65,
    ],
)
def test_an_unsafe_stem_is_refused_by_whoever_brought_it(value: str) -> None:
    """From Akool an unsafe stem is InvalidResponse; from the caller, InvalidInput."""
    with pytest.raises(ak.InvalidResponse):
        safe_stem(value, what="job id", from_server=True)
    with pytest.raises(ak.InvalidInput):
        safe_stem(value, what="job id", from_server=False)


def test_the_messages_say_what_came_and_what_is_allowed() -> None:
    """The messages quote the id (cut short when long) and state the rule."""
    with pytest.raises(ak.InvalidResponse) as from_server:
        safe_stem("../../x/pwned", what="job id", from_server=True)
    with pytest.raises(ak.InvalidInput) as from_user:
        safe_stem("f" * 5000, what="job id", from_server=False)
    with pytest.raises(ak.InvalidInput) as not_text:
        safe_stem(24, what="job id", from_server=False)

    assert (
        "Akool sent the job id '../../x/pwned', which cannot be used in a file name (it must be "
        f"{RULE}); nothing was written"
    ) == str(from_server.value)
    assert (
        f"job id {'f' * 60!r}... (5000 characters) cannot be used in a file name: it must be {RULE}"
    ) == str(from_user.value)
    assert f"job id of type int cannot be used in a file name: it must be {RULE}" == str(
        not_text.value
    )


@pytest.mark.parametrize(
    ("url", "suffix"),
    [
        ("https://cdn.akool.test/r/fox.png", ".png"),
        ("https://cdn.akool.test/r/fox.JPG?X-Amz-Signature=abc", ".jpg"),
        ("https://cdn.akool.test/r/fox.jpeg", ".jpeg"),
        ("https://cdn.akool.test/r/fox.webp#frag", ".webp"),
        ("https://cdn.akool.test/r/fox.gif", ".gif"),
        ("https://cdn.akool.test/r/fox.exe", ".png"),
        ("https://cdn.akool.test/r/fox.png.sh", ".png"),
        ("https://cdn.akool.test/r/fox.php?name=a.png", ".png"),
        ("https://cdn.akool.test/r/fox.png/../../etc/passwd", ".png"),
        ("https://cdn.akool.test/r/fox", ".png"),
        ("https://cdn.akool.test/r/.png", ".png"),
        ("https://cdn.akool.test/r/fox.p%2Fng", ".png"),
        ("http://[::1/fox.jpg", ".png"),
        ("", ".png"),
        (None, ".png"),
    ],
)
def test_the_suffix_comes_from_the_allow_list(url: str | None, suffix: str) -> None:
    """Only .png, .jpg, .jpeg, .webp and .gif are taken from a URL; anything else is .png."""
    assert suffix == image_suffix(url)
    assert ".png" == DEFAULT_SUFFIX


def test_a_batch_file_name_takes_only_a_plain_stem() -> None:
    """A batch names files after the row's stem; a journal edited to hold a path is refused."""

    def record(stem: str) -> TaskRecord:
        return TaskRecord(
            key="k.0", kind=TaskKind.GRID, row=1, prompt="a fox", scale="1:1",
            source_image=None, parent_key=None, button=None, stem=stem,
            state=TaskState.COMPLETED, job_id=GOOD_ID, error=None, credits=None,
            creates_sent=1, retryable=False, in_plan=True, position=0,
        )  # fmt: skip

    stem = "0001-" + "a" * 120 + "_V2_U1-2"
    assert f"{stem}_q1.webp" == file_name(record(stem), "q1", "https://x.test/1.webp")
    assert "0007-a-fox.png" == file_name(record("0007-a-fox"), "image", "https://x.test/i.exe")
    with pytest.raises(ak.InvalidInput, match=r"the journal's file stem '\.\./\.\./x' cannot be"):
        file_name(record("../../x"), "grid", "https://x.test/g.png")


# -- the folder rule and the containment check ----------------------------------------------------


@posix_only
@pytest.mark.anyio
@pytest.mark.parametrize(
    ("dest", "folder"),
    [
        ("out/", True),
        (f"out{os.sep}", True),
        ("existing-folder", True),
        ("existing-folder.d", True),
        ("", True),
        (".", True),
        ("nodir", True),
        ("deep/er/nodir", True),
        ("fox.png", False),
        ("deep/er/fox.png", False),
        ("v1.2", False),
        ("existing-file", False),
        ("dangling-link", False),
    ],
)
async def test_what_names_a_folder(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, dest: str, folder: bool
) -> None:
    """A separator at the end, an existing folder, or a missing path without a suffix: a folder.
    An existing file (or link) or a missing path with a suffix: a file. Nothing is created."""
    (tmp_path / "existing-folder").mkdir()
    (tmp_path / "existing-folder.d").mkdir()
    (tmp_path / "existing-file").write_bytes(b"old")
    (tmp_path / "dangling-link").symlink_to(tmp_path / "missing")
    before = tree(tmp_path)
    monkeypatch.chdir(tmp_path)

    assert folder == await names_folder(dest)
    assert folder == await names_folder(pathlib.Path(dest))  # a Path loses the end separator
    assert before == tree(tmp_path)


@pytest.mark.anyio
async def test_files_in_makes_the_folder_and_keeps_the_callers_spelling(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Missing folders are made; the paths returned are the folder as given, joined."""
    monkeypatch.chdir(tmp_path)

    paths = await files_in("a/b/c", ["one.png", "two.jpg"])

    assert [pathlib.Path("a/b/c/one.png"), pathlib.Path("a/b/c/two.jpg")] == paths
    assert ["a", "a/b", "a/b/c"] == tree(tmp_path)


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "c:x", "a\x00b", "../x.png"])
async def test_files_in_refuses_a_name_that_is_not_one_plain_name(
    tmp_path: pathlib.Path, name: str
) -> None:
    """Every name is checked before the folder is made: a bad one leaves nothing behind."""
    with pytest.raises(ak.InvalidInput) as caught:
        await files_in(tmp_path / "out", ["fine.png", name])

    assert (
        f"{name!r} is not a plain file name: it must not contain a path separator, ':' or NUL, "
        "nor be '.' or '..'"
    ) == str(caught.value)
    assert [] == tree(tmp_path)


@posix_only
@pytest.mark.anyio
async def test_a_link_out_of_the_folder_is_refused_and_one_inside_is_kept(
    tmp_path: pathlib.Path,
) -> None:
    """A symbolic link named like the file and leading outside is refused; inside, it is fine."""
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (elsewhere / "victim.png").write_bytes(b"precious")
    (out / "escape.png").symlink_to(elsewhere / "victim.png")
    (out / "inside.png").symlink_to(out / "real.png")
    (out / "loop.png").symlink_to(out / "loop.png")

    with pytest.raises(ak.InvalidInput) as escape:
        await files_in(out, ["escape.png"])
    with pytest.raises(ak.InvalidInput, match=r"loop\.png' cannot be resolved"):
        await files_in(out, ["loop.png"])
    kept = await files_in(out, ["inside.png"])

    assert (
        f"{str(out / 'escape.png')!r} is a symbolic link that leads outside {str(out)!r} (to "
        f"{str(elsewhere / 'victim.png')!r}): remove it, or save into another folder"
    ) == str(escape.value)
    assert [out / "inside.png"] == kept
    assert b"precious" == (elsewhere / "victim.png").read_bytes()


@posix_only
@pytest.mark.anyio
async def test_a_folder_that_cannot_be_made_is_invalid_input(tmp_path: pathlib.Path) -> None:
    """A file in the way, a name too long, a folder without write permission: InvalidInput that
    says which."""
    (tmp_path / "a-file").write_bytes(b"in the way")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ak.InvalidInput) as in_the_way:
            await make_folder(tmp_path / "a-file")
        with pytest.raises(ak.InvalidInput, match="cannot be a folder: a file is in the way"):
            await files_in(tmp_path / "a-file" / "below", ["x.png"])
        with pytest.raises(ak.InvalidInput) as too_long:
            await make_folder(tmp_path / ("x" * 300))
        if os.geteuid() != 0:  # type: ignore[attr-defined,unused-ignore]  # root writes anywhere
            with pytest.raises(ak.InvalidInput) as locked_out:
                await make_folder(locked / "new")
            assert (
                f"the folder {str(locked / 'new')!r} cannot be created: Permission denied"
                == str(locked_out.value)
            )
    finally:
        locked.chmod(0o700)

    assert (
        f"{str(tmp_path / 'a-file')!r} cannot be a folder: a file is in the way (File exists); "
        "choose another folder or pass a file path"
    ) == str(in_the_way.value)
    assert (
        f"the folder {str(tmp_path / ('x' * 300))!r} cannot be created: File name too long"
    ) == str(too_long.value)
    assert ["a-file", "locked"] == tree(tmp_path)


# -- ImageJob.download's destinations (issue: "out/" must work before the folder exists) ----------


@pytest.fixture
async def emulated() -> AsyncIterator[ak.AkoolSession]:
    emulator = AkoolEmulator(api_key="k", timings=FIXED_TIMINGS, seed=12)
    async with emulator.client() as http, ak.AkoolSession(api_key="k", http_client=http) as session:
        yield session


@pytest.mark.anyio
async def test_download_makes_the_folder_it_is_given(
    emulated: ak.AkoolSession, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "out/" and Path("nodir") that do not exist yet are made and hold {id}.png; "deep/er/fox.png"
    gets its folders made; an existing file without a suffix is replaced; the quadrants' folder
    is made too."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "result").write_bytes(b"old")
    job = await emulated.generate("a fox")

    into_out = await job.download("out/")
    into_nodir = await job.download(pathlib.Path("nodir"))
    as_file = await job.download("deep/er/fox.png")
    replaced = await job.download("result")
    quadrants = await job.download_quadrants("quads")

    assert pathlib.Path(f"out/{job.id}.png") == into_out
    assert pathlib.Path(f"nodir/{job.id}.png") == into_nodir
    assert pathlib.Path("deep/er/fox.png") == as_file
    assert pathlib.Path("result") == replaced
    assert [pathlib.Path(f"quads/{job.id}-{n}.png") for n in (1, 2, 3, 4)] == quadrants
    grid = into_out.read_bytes()
    assert grid.startswith(b"\x89PNG")
    assert grid == into_nodir.read_bytes() == as_file.read_bytes() == replaced.read_bytes()
    assert sorted(
        [
            "deep", "deep/er", "deep/er/fox.png", "nodir", f"nodir/{job.id}.png", "out",
            f"out/{job.id}.png", "quads", *(f"quads/{job.id}-{n}.png" for n in (1, 2, 3, 4)),
            "result",
        ]
    ) == tree(tmp_path)  # fmt: skip


@posix_only
@pytest.mark.anyio
async def test_download_into_a_file_or_past_a_link_sends_nothing(
    emulated: ak.AkoolSession, tmp_path: pathlib.Path
) -> None:
    """A folder path whose place a file holds, or a link named like the result that leads out:
    InvalidInput, no image fetched, nothing written, the link's target untouched."""
    (tmp_path / "a-file").write_bytes(b"in the way")
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (elsewhere / "victim.png").write_bytes(b"precious")
    job = await emulated.generate("a fox")
    await job.wait()
    (out / f"{job.id}.png").symlink_to(elsewhere / "victim.png")
    (out / f"{job.id}-3.png").symlink_to(elsewhere / "victim.png")
    before = tree(tmp_path)

    with pytest.raises(ak.InvalidInput, match="cannot be a folder: a file is in the way"):
        await job.download(f"{tmp_path / 'a-file'}/")
    with pytest.raises(ak.InvalidInput, match="is a symbolic link that leads outside"):
        await job.download(out)
    with pytest.raises(ak.InvalidInput, match=f"{job.id}-3.png' is a symbolic link"):
        await job.download_quadrants(out)

    assert before == tree(tmp_path)
    assert b"precious" == (elsewhere / "victim.png").read_bytes()
    assert job.last_download is None


# -- a hostile server on a real socket ------------------------------------------------------------


class HostileAkool:
    """A loopback Akool that names jobs as a test tells it to.

    Every job it describes is completed: a grid with four quadrants, or, for a U press, an
    upscale; the images are real PNGs on this server, at URLs that carry no id. A create by
    prompt answers ``created``, a create by button ``child``; an info answer carries the id
    asked about, unless ``renamed`` maps it to another.
    """

    def __init__(self) -> None:
        self.base_url = ""
        self.created = GOOD_ID
        self.child = GOOD_ID
        self.renamed: dict[str, str] = {}
        self.pressed: dict[str, str] = {}  # the button that made each child id
        self.presses: list[str] = []
        self.requests: list[tuple[str, str]] = []

    def images_sent(self) -> int:
        return sum(1 for _, path in self.requests if path.startswith("/images/"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        self.requests.append((scope["method"], path))
        if path.startswith("/images/"):
            await _answer(send, PNG, b"image/png")
            return
        if path.endswith("/createbyprompt"):
            data = self._describe(self.created)
        elif path.endswith("/createbybutton"):
            self.pressed[self.child] = json.loads(body)["button"]
            self.presses.append(self.pressed[self.child])
            data = self._describe(self.child)
        else:
            query = parse_qs(scope["query_string"].decode(), keep_blank_values=True)
            data = self._describe(query["image_model_id"][0])
        envelope = {"code": 1000, "msg": "OK", "data": data}
        await _answer(send, json.dumps(envelope).encode(), b"application/json")

    def _describe(self, job_id: str) -> dict[str, Any]:
        image = f"{self.base_url}/images/{len(self.requests)}"
        data: dict[str, Any] = {
            "_id": self.renamed.get(job_id, job_id),
            "image_status": 3,
            "image": f"{image}/grid.png",
            "create_time": int(time.time() * 1000),
            "deduction_credit": 2,
            "used_buttons": [],
            "upscaled_urls": [f"{image}/{n}.png" for n in (1, 2, 3, 4)],
            "buttons": ["U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4"],
        }
        button = self.pressed.get(job_id)
        if button is not None:
            data.update(image_content_model_id=GOOD_ID, op_button=button, buttons=[])
            if button.startswith("U"):
                data.update(image=f"{image}/upscale.png", upscaled_urls=[])
        return data


async def _answer(send: Send, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def hostile_session(base_url: str) -> ak.AkoolSession:
    return ak.AkoolSession(api_key=TEST_API_KEY, base_url=base_url, poll_policy=POLL, retry=ONE_TRY)


@real_time
@pytest.mark.anyio
async def test_an_id_given_to_session_job_is_checked_before_any_request(sandbox: Sandbox) -> None:
    """session.job(hostile id) raises InvalidInput at once, saying Akool's id shape: no handle
    exists to download with, the server sees no request and nothing is created."""
    server = HostileAkool()
    before = tree(sandbox.root)
    messages: dict[str, str] = {}
    with anyio.fail_after(30):
        async with serve_asgi(server) as base_url, hostile_session(base_url) as session:
            server.base_url = base_url
            for key in HOSTILE_IDS:
                image_id = hostile(key, sandbox.root)
                with pytest.raises(ak.InvalidInput) as refused:
                    session.job(image_id)
                messages[key] = str(refused.value)

    assert messages["traversal"] == (
        "image id must be the '_id' Akool returned on create: 24 lowercase hex digits, "
        "such as 64dd82eef0b6684651e90131 (got '../../x/pwned')"
    )
    for key, message in messages.items():
        assert message.startswith("image id must "), key
    assert [] == server.requests
    assert before == tree(sandbox.root)


async def created_then_saved(
    session: ak.AkoolSession, server: HostileAkool, step: str, out: pathlib.Path
) -> object:
    """One flow in which the server names the new job: a create or a press, then a download."""
    if step == "press":
        parent = session.job(f"{len(server.requests):024x}")  # a fresh grid each time
        return await (await parent.upscale(1)).download(out)
    job = await session.generate("a fox")
    if step == "quadrants":
        return await job.download_quadrants(out)
    return await job.download(out)


@real_time
@pytest.mark.anyio
async def test_an_id_the_server_sends_writes_nothing(sandbox: Sandbox) -> None:
    """Every hostile id (NUL and blanks too) sent as a create's or a press's new job ends in a
    typed error before any file: InvalidResponse from the download's name check, or
    SubmissionUnknown when the create's answer itself is refused. No image is fetched."""
    server = HostileAkool()
    before = tree(sandbox.root)
    outcomes: dict[tuple[str, str], type[BaseException]] = {}
    ids = {**{key: hostile(key, sandbox.root) for key in HOSTILE_IDS}, **SERVER_ONLY_IDS}
    with anyio.fail_after(60):
        async with serve_asgi(server) as base_url, hostile_session(base_url) as session:
            server.base_url = base_url
            for key, bad in ids.items():
                server.created = server.child = bad
                for step in ("download", "quadrants", "press"):
                    with pytest.raises(ak.AkoolError) as caught:
                        await created_then_saved(session, server, step, sandbox.work / "out")
                    outcomes[key, step] = type(caught.value)

    assert 3 * len(ids) == len(outcomes)
    assert set(outcomes.values()) <= {ak.InvalidResponse, ak.SubmissionUnknown}, outcomes
    assert before == tree(sandbox.root)
    assert 0 == server.images_sent()
    assert ["U1"] * len(ids) == server.presses


# -- the command line -----------------------------------------------------------------------------


class Ran(NamedTuple):
    status: int
    out: str
    err: str


def cli() -> list[str]:
    script = pathlib.Path(sys.executable).with_name("akool-async")
    return [str(script)] if script.exists() else [sys.executable, "-m", "akool_async.cli"]


async def run_cli(base_url: str, cwd: pathlib.Path, *args: str) -> Ran:
    env = {
        **os.environ,
        "AKOOL_BASE_URL": base_url,
        "AKOOL_API_KEY": TEST_API_KEY,
        "PYTHONIOENCODING": "utf-8",
    }
    with anyio.fail_after(CLI_DEADLINE):
        done = await anyio.run_process([*cli(), *args], env=env, cwd=cwd, check=False)
    return Ran(done.returncode, done.stdout.decode(), done.stderr.decode())


@real_time
@pytest.mark.anyio
@pytest.mark.parametrize("key", ["traversal", "absolute"])
async def test_wait_upscale_and_vary_write_nothing_for_a_hostile_id(
    sandbox: Sandbox, key: str
) -> None:
    """`wait ID --out` answered with a hostile _id, and `upscale` / `vary --out` whose new job
    has one: each exits 1 with its error last, no traceback, no file anywhere, no image fetched.
    (The answer's check makes `wait` read again until --timeout; the name check refuses it.)
    """
    server = HostileAkool()
    bad = hostile(key, sandbox.root)
    before = tree(sandbox.root)
    with anyio.fail_after(3 * CLI_DEADLINE):
        async with serve_asgi(server) as base_url:
            server.base_url = base_url
            server.renamed[GOOD_ID] = bad
            wait = await run_cli(
                base_url, sandbox.work, "wait", GOOD_ID, "--out", "out", "--timeout", "1", *CLI_POLL
            )
            server.renamed.clear()
            server.child = bad
            upscale = await run_cli(
                base_url, sandbox.work, "upscale", GOOD_ID, "1", "--out", "out", *CLI_POLL
            )
            vary = await run_cli(
                base_url, sandbox.work, "vary", GOOD_ID, "2", "--out", "out", *CLI_POLL
            )

    for ran in (wait, upscale, vary):
        assert 1 == ran.status, ran
        assert ran.err.splitlines()[-1].startswith("akool-async: error: "), ran.err
        assert "Traceback" not in ran.err
    assert before == tree(sandbox.root)
    assert 0 == server.images_sent()
    assert ["U1", "V2"] == server.presses


@real_time
@pytest.mark.anyio
async def test_wait_refuses_an_id_that_cannot_name_a_file_before_sending(
    sandbox: Sandbox,
) -> None:
    """`wait ../../x/pwned --out DIR`: exit 2, the rule on stderr, not one request sent."""
    server = HostileAkool()
    before = tree(sandbox.root)
    with anyio.fail_after(CLI_DEADLINE):
        async with serve_asgi(server) as base_url:
            ran = await run_cli(base_url, sandbox.work, "wait", "../../x/pwned", "--out", "out")

    assert (
        2,
        "",
        (
            "akool-async: error: job id '../../x/pwned' cannot be used in a file name: it must "
            f"be {RULE}\n"
        ),
    ) == ran
    assert [] == server.requests
    assert before == tree(sandbox.root)


@pytest.fixture
def _restore_library_logging() -> Iterator[None]:
    """An in-process batch routes the akool_async logger to its output; undo that afterwards."""
    logger = logging.getLogger("akool_async")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


@posix_only
@pytest.mark.usefixtures("_restore_library_logging")
def test_a_batch_never_writes_through_a_link_out_of_its_folder(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A link named like a batch output and leading outside: that output fails with the reason,
    the others are written, the link and its target are left as they were."""
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (elsewhere / "victim.png").write_bytes(b"precious")
    (out / "0001-a-red-door_grid.png").symlink_to(elsewhere / "victim.png")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red door\n")
    argv = ["batch", str(prompts), "--out", str(out), "--quadrants", "--emulator"]

    status = main([*argv, "--time-scale", "0.01", "--json"])
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]

    assert (1, 4) == (status, summary["files_written"])
    assert b"precious" == (elsewhere / "victim.png").read_bytes()
    assert (out / "0001-a-red-door_grid.png").is_symlink()
    assert [
        ("grid", "failed", None),
        *((f"q{n}", "completed", f"0001-a-red-door_q{n}.png") for n in (1, 2, 3, 4)),
    ] == [(line["output"], line["status"], line["file"]) for line in manifest]
    assert manifest[0]["error"].startswith(
        f"{str(out / '0001-a-red-door_grid.png')!r} is a symbolic link that leads outside"
    )


# -- a hand-edited journal is read as untrusted ----------------------------------------------------


def test_resume_never_reads_where_a_crafted_journal_points(tmp_path: pathlib.Path) -> None:
    """broken_outputs (the resume's check of earlier files) opens only plain regular files in
    the output folder: a recorded name with a path, a link (even to a real file) or a FIFO is
    reported broken, to be fetched again through the checked writer, and is never hashed."""
    from akool_async.cli._files import broken_outputs  # noqa: PLC0415 - the CLI's own helper
    from akool_async.cli._journal import OutputRecord  # noqa: PLC0415

    out = tmp_path / "out"
    out.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not yours")
    (out / "link.png").symlink_to(secret)
    os.mkfifo(out / "fifo.png")
    good = out / "good.png"
    good.write_bytes(b"png")
    digest = hashlib.sha256(b"png").hexdigest()

    def record(file: str) -> OutputRecord:
        return OutputRecord(task_key="k", name="grid", url="u", file=file, sha256=digest, size=3)

    files = ["../secret.txt", str(secret), "link.png", "fifo.png", "a\\b.png", "..", "good.png"]
    broken = {output.file: why for output, why in broken_outputs(out, map(record, files))}

    plain = "is not a plain file name in the output folder"
    assert {
        "../secret.txt": plain,
        str(secret): plain,
        "a\\b.png": plain,
        "..": plain,
        "link.png": "is not a regular file",
        "fifo.png": "is not a regular file",
    } == broken
