"""Failures a user can cause end in one line that says what to do, and stop what cannot succeed.

An Akool host that cannot be reached (nothing listening, no such name, TLS on a plain port, a
host lost mid-batch), an API root that is not Akool's, a folder that cannot be written, and
``--emulator`` where a fresh emulator can know no job: each is one line on stderr with its exit
status, never a traceback and never a warning per row. Also here: ``-v`` for single-job
commands, and the progress line and summary wording.

The subprocess tests run the real console script against an emulator served on loopback from
the test process; the child's own event loop is asyncio, whatever the test's backend.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import itertools
import logging
import os
import pathlib
import socket
import sqlite3
import ssl
import sys
from collections import Counter
from typing import Any, Final

import anyio
import attrs
import httpx
import pytest

from akool_async._errors import ConnectError, RequestTimeout
from akool_async.cli import main
from akool_async.cli._batch import DisplayState, Tally
from akool_async.cli._failures import is_unreachable, unreachable_reason
from akool_async.cli._outgoing import UNREACHABLE_FOR
from akool_async.cli._report import Summary, _progress_text
from akool_async.cli._shared import route_logs
from akool_async.testing import TEST_API_KEY, AkoolEmulator
from test_cli_resume import COMMAND, POLLING, journal, nth, served, write_prompts

pytestmark = pytest.mark.real_time

CHILD_TIMEOUT: Final = 60.0
FIRST_REQUEST_WAIT: Final = 15.0  # the bound on a batch's first request, retries included
JOB_ID: Final = "0123456789abcdef01234567"
CHECK: Final = "check AKOOL_BASE_URL or --base-url, and your network"
FRESH_EMULATOR: Final = (
    "akool-async: error: --emulator starts a fresh emulator in this process, which knows no job "
    "ID; serve one with `python -m akool_async.testing` (or `akool-async emulator`) and point "
    "AKOOL_BASE_URL at it instead\n"
)


@pytest.fixture(params=[pytest.param(("asyncio", dict[str, Any]()), id="asyncio")])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """The child's loop is the CLI's own: one backend for the test's server is enough."""
    backend: tuple[str, dict[str, Any]] = request.param
    return backend


@attrs.frozen
class Ran:
    """How one child run ended, and how long it took."""

    status: int
    stdout: str
    stderr: str
    seconds: float


async def run_cli(*args: str | pathlib.Path, url: str, cwd: pathlib.Path | None = None) -> Ran:
    """Run ``akool-async ARGS`` against ``url`` with the emulator's API key."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AKOOL_")}
    env |= {"AKOOL_BASE_URL": url, "AKOOL_API_KEY": TEST_API_KEY, "PYTHONIOENCODING": "utf-8"}
    started = anyio.current_time()
    with anyio.fail_after(CHILD_TIMEOUT):
        done = await anyio.run_process([*COMMAND, *map(str, args)], env=env, cwd=cwd, check=False)
    return Ran(
        done.returncode,
        done.stdout.decode(),
        done.stderr.decode(),
        anyio.current_time() - started,
    )


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def one_line(ran: Ran, message: str, status: int = 2) -> None:
    """Exit ``status``; stderr is exactly the one error line; nothing on stdout."""
    assert "Traceback" not in ran.stderr
    assert (status, "", f"akool-async: error: {message}\n") == (ran.status, ran.stdout, ran.stderr)


# -- an Akool that cannot be reached --------------------------------------------------------------


@pytest.mark.anyio
async def test_a_port_with_nothing_listening_stops_a_batch_with_one_line(
    tmp_path: pathlib.Path,
) -> None:
    """300 rows against a closed port: one line naming the URL and the reason, exit 2, within
    the first request's bound; no row was sent (every task still pending)."""
    url = f"http://127.0.0.1:{closed_port()}"
    file = write_prompts(tmp_path / "p.txt", [f"a lamp, take {number}" for number in range(300)])

    ran = await run_cli("batch", file, "--out", tmp_path / "out", *POLLING, url=url)

    one_line(ran, f"cannot reach {url}/ (connection refused): {CHECK}")
    assert ran.seconds < FIRST_REQUEST_WAIT + 5
    assert {"pending"} == {task.state for task in journal(tmp_path / "out")}


@pytest.mark.anyio
async def test_a_start_that_reached_nothing_binds_the_folder_to_no_url(
    tmp_path: pathlib.Path,
) -> None:
    """A batch stopped at a wrong URL sent nothing: the same command at the right URL runs in
    that folder, and the journal names the right one."""
    file = write_prompts(tmp_path / "p.txt", ["a lamp"])
    out = tmp_path / "o_w"
    port = closed_port()

    first = await run_cli("batch", file, "--out", out, *POLLING, url=f"http://127.0.0.1:{port}")
    one_line(first, f"cannot reach http://127.0.0.1:{port}/ (connection refused): {CHECK}")
    emulator = AkoolEmulator(time_scale=0.01, seed=3)
    async with emulator.serve() as url:
        second = await run_cli("batch", file, "--out", out, "--no-quadrants", *POLLING, url=url)

    assert (0, ["completed"]) == (second.status, [task.state for task in journal(out)])
    with contextlib.closing(sqlite3.connect(out / ".akool-journal.sqlite3")) as connection:
        query = "SELECT value FROM meta WHERE key = 'endpoint'"
        assert [(f"{url}/",)] == connection.execute(query).fetchall()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("scheme_host", "reason"),
    [
        ("http://akool-host.invalid", "(host name not found)"),
        ("https://127.0.0.1:{port}", "(TLS handshake failed: "),
    ],
    ids=["dns", "tls"],
)
async def test_no_such_host_and_a_failed_tls_handshake_are_one_line(
    tmp_path: pathlib.Path, scheme_host: str, reason: str
) -> None:
    """A name that does not resolve, and https to a plain HTTP port: exit 2, one line that
    names the URL and why."""
    emulator = AkoolEmulator(time_scale=0.01)
    async with emulator.serve() as served_url:
        url = scheme_host.format(port=served_url.rsplit(":", 1)[1])
        ran = await run_cli("credit", url=url, cwd=tmp_path)

    assert (2, "") == (ran.status, ran.stdout)
    assert ran.stderr.startswith(f"akool-async: error: cannot reach {url}/ {reason}")
    assert ran.stderr.endswith(f"): {CHECK}\n")
    assert 1 == ran.stderr.count("\n")
    assert [] == emulator.requests


@pytest.mark.anyio
async def test_a_host_lost_mid_batch_stops_it_with_one_line(tmp_path: pathlib.Path) -> None:
    """The emulator goes away at the first grid's first status read: once no request has
    connected for UNREACHABLE_FOR seconds, the batch stops (exit 1) with one line naming the
    URL, instead of reading the job again for ever; what was created is in the journal."""
    prompts = [f"a comet over a valley, take {number}" for number in range(1, 9)]
    file = write_prompts(tmp_path / "p.txt", prompts)
    out = tmp_path / "out"
    emulator = AkoolEmulator(time_scale=0.01, seed=3)
    ran: list[Ran] = []

    async def batch(url: str) -> None:
        ran.append(
            await run_cli("batch", file, "--out", out, "--concurrency", "1", *POLLING, url=url)
        )

    async with anyio.create_task_group() as group, served(emulator) as (url, gate):
        gone = anyio.Event()
        gate.arm(nth("infobymodelid", 1), mode="kill", on_trip=gone.set)
        group.start_soon(batch, url)
        await gone.wait()
        # The server has stopped: connections are refused from now on.

    [stopped] = ran
    assert 1 == stopped.status, stopped.stderr
    assert stopped.seconds < UNREACHABLE_FOR + 10
    assert stopped.stderr.endswith(
        f"akool-async: stopped: cannot reach {url}/ (connection refused): {CHECK}. Nothing more "
        "was sent; run the same command again to go on.\n"
    )
    assert 1 == stopped.stderr.count("cannot reach")
    assert "Traceback" not in stopped.stderr
    created = {task.prompt for task in journal(out) if task.job_id is not None}
    assert {prompts[0]} == created
    assert 1 == emulator.creates_for(prompts[0])


def test_creates_that_cannot_connect_when_the_host_is_lost_stay_pending(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six rows, two at a time; after the first two creates no create can connect. Those
    creates were never sent: no line each, not failed but unfinished (pending in the journal),
    and one stop line."""
    prompts = [f"a comet over a valley, take {number}" for number in range(1, 7)]
    file = write_prompts(tmp_path / "p.txt", prompts)
    out = tmp_path / "out"
    send = httpx.AsyncClient.send
    creates: list[str] = []

    async def cut_off(client: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> Any:
        if request.url.path.endswith("/createbyprompt"):
            creates.append(request.url.path)
            if len(creates) > 2:  # the first two rows get through
                raise httpx.ConnectError("All connection attempts failed", request=request)
        return await send(client, request, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "send", cut_off)
    argv = ["batch", str(file), "--out", str(out), "--emulator", "--time-scale", "0.01"]

    status = main([*argv, "--concurrency", "2", "--no-quadrants", "--seed", "3"])

    printed = capsys.readouterr()
    states = Counter(task.state for task in journal(out))
    assert (1, {"completed": 2, "pending": 4}) == (status, dict(states)), printed.err
    assert "could not connect" not in printed.out + printed.err
    assert "2 of 6 row(s) completed, 0 failed, 0 unknown, 4 unfinished" in printed.out, printed.out
    assert 1 == printed.err.count("akool-async: stopped: cannot reach"), printed.err


@pytest.mark.anyio
async def test_a_refusal_for_the_whole_account_stops_the_batch_with_one_line(
    tmp_path: pathlib.Path,
) -> None:
    """Credit for one grid only: the second create is refused (1006) and the batch stops
    there, exit 1, one line saying so; the third row is never sent."""
    prompts = ["a tin robot", "a glass owl", "a paper moon"]
    file = write_prompts(tmp_path / "p.txt", prompts)
    emulator = AkoolEmulator(time_scale=0.01, credit=2)
    async with emulator.serve() as url:
        ran = await run_cli(
            "batch", file, "--out", tmp_path / "out", "--concurrency", "1", *POLLING, url=url
        )

    assert 1 == ran.status, ran.stderr
    [line] = [line for line in ran.stderr.splitlines() if "stopped" in line]
    assert line.startswith("akool-async: stopped: Akool refused a create (Akool answered code 1006")
    assert line.endswith("; nothing more was sent. Fix it and run the same command again to go on.")
    assert [1, 0, 0] == [emulator.creates_for(prompt) for prompt in prompts]
    assert 2 == emulator.requests_per_endpoint()["createbyprompt"]


# -- an API root that is not Akool's, and -v -------------------------------------------------------


@pytest.mark.anyio
async def test_a_doubled_api_path_is_named_and_v_shows_each_request(tmp_path: pathlib.Path) -> None:
    """AKOOL_BASE_URL ending in /api/open/v3/: `status -v` logs the request with its whole URL
    (the doubled path, no query string) and ends with one line naming the base URL; without
    -v only that line."""
    emulator = AkoolEmulator(time_scale=0.01)
    async with emulator.serve() as served_url:
        url = f"{served_url}/api/open/v3/"
        quiet = await run_cli("status", JOB_ID, url=url, cwd=tmp_path)
        verbose = await run_cli("status", JOB_ID, "-v", url=url, cwd=tmp_path)

    error = (
        f"akool-async: error: {url} does not look like Akool's API root: it answered HTTP 404 "
        "for /api/open/v3/content/image/infobymodelid. Check AKOOL_BASE_URL or --base-url "
        "(Akool's is https://openapi.akool.com)\n"
    )
    assert (2, "", error) == (quiet.status, quiet.stdout, quiet.stderr)
    assert 2 == verbose.status
    assert verbose.stderr.endswith(error)
    assert (
        f"INFO httpx: HTTP Request: GET {served_url}/api/open/v3/api/open/v3/content/image/"
        'infobymodelid "HTTP/1.1 404 '
    ) in verbose.stderr
    assert "image_model_id" not in verbose.stderr


@pytest.mark.anyio
async def test_single_job_commands_log_as_v_asks(tmp_path: pathlib.Path) -> None:
    """credit: nothing logged by default; -v: the request line; -vv: the SDK's debug lines."""
    emulator = AkoolEmulator(time_scale=0.01)
    async with emulator.serve() as url:
        runs = [
            await run_cli("credit", *flags, url=url, cwd=tmp_path)
            for flags in ((), ("-v",), ("-vv",))
        ]

    assert [0, 0, 0] == [ran.status for ran in runs]
    assert {"credit balance: 10000\n"} == {ran.stdout for ran in runs}
    assert "" == runs[0].stderr
    request_line = (
        f'INFO httpx: HTTP Request: GET {url}/api/open/v3/faceswap/quota/info "HTTP/1.1 200'
    )
    assert request_line in runs[1].stderr
    assert "DEBUG akool_async" not in runs[1].stderr
    assert request_line in runs[2].stderr
    assert "DEBUG akool_async: GET /api/open/v3/faceswap/quota/info -> HTTP 200" in runs[2].stderr


def test_retries_show_with_v_only(capsys: pytest.CaptureFixture[str]) -> None:
    """The wire's retry lines are left out without -v (the outcome says it all) and kept with
    it; other warnings always show; httpx's request lines (-v) lose their query string."""
    library, requests = logging.getLogger("akool_async"), logging.getLogger("httpx")
    for verbose in (0, 1):
        restore = route_logs(argparse.Namespace(verbose=verbose), None)
        try:
            library.warning(
                "%s failed (%s); retry %d of %d in %.2f s", "GET /x", "HTTP 500", 1, 4, 0.5
            )
            library.warning("status reads of job %s fail", "j")
            requests.info(
                'HTTP Request: %s %s "%s %d %s"',
                "GET",
                httpx.URL("https://h.example/p?sig=secret"),
                "HTTP/1.1",
                200,
                "OK",
            )
        finally:
            restore()

    assert [
        "WARNING akool_async: status reads of job j fail",
        "WARNING akool_async: GET /x failed (HTTP 500); retry 1 of 4 in 0.50 s",
        "WARNING akool_async: status reads of job j fail",
        'INFO httpx: HTTP Request: GET https://h.example/p "HTTP/1.1 200 OK"',
    ] == capsys.readouterr().err.splitlines()


# -- folders that cannot be written --------------------------------------------------------------


@pytest.mark.anyio
async def test_an_out_folder_that_cannot_be_made_is_one_line(tmp_path: pathlib.Path) -> None:
    """--out under a file: batch, wait and upscale each say so in one line (exit 2) before any
    request (upscale's press is paid for: it is never sent)."""
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    out = tmp_path / "a-file" / "results"
    file = write_prompts(tmp_path / "p.txt", ["a quiet pond"])
    message = f"cannot write in --out {out} (Not a directory): choose a folder you can write to"
    emulator = AkoolEmulator(time_scale=0.01)
    async with emulator.serve() as url:
        runs = [
            await run_cli("batch", file, "--out", out, *POLLING, url=url),
            await run_cli("wait", JOB_ID, "--out", out, url=url),
            await run_cli("upscale", JOB_ID, "1", "--out", out, url=url),
        ]

    for ran in runs:
        one_line(ran, message)
    assert [] == emulator.requests


@pytest.mark.anyio
@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="a read-only folder binds no root"
)
async def test_a_read_only_out_folder_is_one_line(tmp_path: pathlib.Path) -> None:
    """--out a folder without write permission: one line, exit 2, nothing sent."""
    out = tmp_path / "read-only"
    out.mkdir()
    out.chmod(0o555)
    file = write_prompts(tmp_path / "p.txt", ["a quiet pond"])
    emulator = AkoolEmulator(time_scale=0.01)
    try:
        async with emulator.serve() as url:
            ran = await run_cli("batch", file, "--out", out, *POLLING, url=url)
    finally:
        out.chmod(0o755)
    one_line(
        ran, f"cannot write in --out {out} (Permission denied): choose a folder you can write to"
    )
    assert [] == emulator.requests


# -- --emulator where it cannot work --------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["status", JOB_ID],
        ["wait", JOB_ID],
        ["upscale", JOB_ID, "1"],
        ["vary", JOB_ID, "2"],
    ],
    ids=lambda argv: argv[0],
)
def test_emulator_is_refused_for_commands_about_an_existing_job(
    argv: list[str],
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fresh in-process emulator knows no job id: exit 2 with a pointer to a served one,
    before anything is made."""
    monkeypatch.chdir(tmp_path)
    status = main([*argv, "--emulator"])

    assert (2, "", FRESH_EMULATOR) == (status, *capsys.readouterr())
    assert [] == list(tmp_path.iterdir())


# -- what the display says -----------------------------------------------------------------------


def test_the_progress_line_counts_every_task_as_the_counts_do() -> None:
    """A resumed run: 6 of 10 tasks done before, 1 now; the line says 7/10, and its counts add
    up to 10."""
    tally = Tally(tasks=10, todo=4, finished=1)
    tally.states.update(
        {DisplayState.COMPLETED: 7, DisplayState.QUEUED: 2, DisplayState.RUNNING: 1}
    )

    text = _progress_text(tally)

    assert text.startswith("progress: 7/10 done (queued 2, running 1, completed 7); ")
    assert 10 == sum(tally.states.values())


def test_the_summary_of_accepted_and_interrupted_runs() -> None:
    """Rows closed with --accept-unknown count towards exit 0 and are listed; an interrupted
    run's summary says so and its status is 130."""
    base: dict[str, Any] = {
        "rows": 3, "completed_rows": 2, "failed_rows": 0, "unknown_rows": 0, "pending_rows": 0,
        "outputs": dict(Counter(completed=5, accepted_unknown=1)), "files_written": 0,
        "creates_sent": 0, "credits_used": 0.0, "balance_before": None, "balance_after": None,
        "removed_rows": 0, "unknown": (), "lost_presses": (), "manifest": None, "elapsed": 1.0,
    }  # fmt: skip
    accepted = Summary(**base, accepted_rows=1, accepted=("row 2 U1: 'a kite'",))
    interrupted = Summary(**base, accepted_rows=1, interrupted=True)

    assert 0 == accepted.exit_status
    assert accepted.lines()[0].startswith(
        "2 of 3 row(s) completed, 0 failed, 0 unknown, 1 accepted as lost ("
    )
    heading = (
        "1 create(s) or press(es) that may have reached Akool were accepted as lost "
        "(--accept-unknown); they are closed and never sent again:"
    )
    assert [heading, "  row 2 U1: 'a kite'"] == accepted.lines()[-2:]
    assert ["row 2 U1: 'a kite'"] == accepted.as_json()["accepted"]
    assert 130 == interrupted.exit_status
    assert interrupted.lines()[-1].startswith("Interrupted: the creates already sent")
    assert 1 == Summary(**base).exit_status


def test_an_out_folder_without_write_permission_is_refused_before_the_press(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """upscale --out into a folder that may not be written (as the OS says): exit 2 and one
    line, before the session opens, so the paid press is never sent."""
    denied: list[str] = []

    def access(path: Any, mode: int) -> bool:
        denied.append(str(path))
        return False

    monkeypatch.setattr(os, "access", access)
    out = tmp_path / "results"
    status = main(
        [
            "upscale",
            JOB_ID,
            "1",
            "--out",
            str(out),
            "--api-key",
            "k",
            "--base-url",
            "http://127.0.0.1:9",
        ]
    )

    message = (
        f"akool-async: error: cannot write in --out {out} (Permission denied): choose a folder "
        "you can write to\n"
    )
    assert (2, "", message) == (status, *capsys.readouterr())
    assert [str(tmp_path)] == denied  # the nearest folder that exists


@pytest.mark.skipif(not pathlib.Path("/sys/kernel").is_dir(), reason="no /sys/kernel here")
@pytest.mark.parametrize("command", [["upscale", JOB_ID, "3"], ["vary", JOB_ID, "2"]])
def test_a_folder_the_permission_bits_allow_but_the_kernel_refuses_is_refused_before_the_press(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """--out /sys/kernel as root: the permission bits say yes, yet no file can be made there.
    Exit 2 and one line before the session opens: the paid press is never sent (had it been,
    the closed port would have said so)."""
    monkeypatch.setattr(os, "access", lambda *_: True)
    argv = [*command, "--out", "/sys/kernel", "--api-key", "k", "--base-url", "http://127.0.0.1:9"]

    status = main(argv)

    message = (
        "akool-async: error: cannot write in --out /sys/kernel (Permission denied): choose a "
        "folder you can write to\n"
    )
    assert (2, "", message) == (status, *capsys.readouterr())


def test_a_file_system_error_is_one_line(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any OSError that reaches the top (here, the prompt file's read) is one line, exit 2,
    naming the file and the reason, with no traceback."""

    def read_rows(path: pathlib.Path, **_: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("akool_async.cli._app.read_rows", read_rows)
    prompts = tmp_path / "prompts.txt"
    status = main(["batch", str(prompts), "--out", str(tmp_path / "out"), "--emulator"])

    message = (
        f"akool-async: error: cannot use {prompts} (Permission denied): check that file or folder\n"
    )
    assert (2, "", message) == (status, *capsys.readouterr())


def _certificate_refused() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "expired"
    return error


def _raised_from(*chain: BaseException) -> BaseException:
    """The first of ``chain``, each raised from the next, as httpx and the SDK chain them."""
    for error, cause in itertools.pairwise(chain):
        error.__cause__ = cause
    return chain[0]


@pytest.mark.parametrize(
    ("chain", "reason"),
    [
        ((ConnectError("x"), httpx.ConnectError("y"), ConnectionRefusedError(111, "no")),
         "connection refused"),
        ((ConnectError("x"), OSError(errno.ENETUNREACH, "unreachable")), "network unreachable"),
        ((ConnectError("x"), socket.gaierror(-2, "Name or service not known")),
         "host name not found"),
        ((ConnectError("x"), ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER]")),
         "TLS handshake failed: "),
        ((ConnectError("x"), _certificate_refused()), "TLS certificate not accepted: expired"),
        ((RequestTimeout("x"), httpx.ConnectTimeout("timed out")), "connection timed out"),
        ((ConnectError("x"), httpx.ConnectError("All connection attempts failed")),
         "All connection attempts failed"),
    ],
    ids=["refused", "network", "dns", "tls", "certificate", "timeout", "other"],
)  # fmt: skip
def test_why_a_host_cannot_be_reached(chain: tuple[BaseException, ...], reason: str) -> None:
    """The reason named is the root cause's, in a few words; a connect timeout counts as
    unreachable, a timeout after sending does not."""
    error = _raised_from(*chain)

    assert is_unreachable(error)
    assert unreachable_reason(error).startswith(reason)
    assert not is_unreachable(_raised_from(RequestTimeout("x"), httpx.ReadTimeout("slow")))
