"""python -m akool_async.testing: serve the emulator from a shell, stop cleanly on a signal."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading

import httpx
import pytest

from akool_async.testing import TEST_API_KEY, TEST_CLIENT_ID, TEST_CLIENT_SECRET
from akool_async.testing.__main__ import main

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

STARTUP_DEADLINE = 30.0
"""Seconds the child gets to start or stop before the test kills it and fails."""


def read_announcement(process: subprocess.Popen[str]) -> list[str]:
    """The six lines the emulator prints once it listens."""
    assert process.stdout is not None
    return [process.stdout.readline().rstrip("\n") for _ in range(6)]


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serves_on_a_free_port_until_a_signal(stop_signal: signal.Signals) -> None:
    """--port 0 prints the real URL and credentials, serves Akool, and exits 0 on a signal."""
    process = subprocess.Popen(
        [sys.executable, "-m", "akool_async.testing", "--port", "0", "--time-scale", "0.01"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(STARTUP_DEADLINE, process.kill)
    watchdog.start()
    try:
        lines = read_announcement(process)
        match = re.fullmatch(r"Akool emulator listening on (http://127\.0\.0\.1:(\d+))", lines[0])
        assert match is not None, lines
        base_url, port = match.group(1), int(match.group(2))
        assert port > 0
        assert [
            f"AKOOL_BASE_URL={base_url}",
            f"AKOOL_API_KEY={TEST_API_KEY}",
            f"AKOOL_CLIENT_ID={TEST_CLIENT_ID}",
            f"AKOOL_CLIENT_SECRET={TEST_CLIENT_SECRET}",
            "Press Ctrl+C to stop.",
        ] == lines[1:]

        response = httpx.get(
            f"{base_url}/api/open/v3/faceswap/quota/info", headers={"x-api-key": TEST_API_KEY}
        )
        assert 200 == response.status_code
        assert 1000 == response.json()["code"]

        process.send_signal(stop_signal)
        _, stderr = process.communicate()
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert 0 == process.returncode, stderr
    assert "Traceback" not in stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(base_url)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "65536"], "argument --port: must be from 0 to 65535 (got 65536)"),
        (["--port", "-1"], "argument --port: must be from 0 to 65535 (got -1)"),
        (["--port", "http"], "argument --port: must be a whole number from 0 to 65535"),
        (["--time-scale", "0"], "argument --time-scale: must be a finite number greater than 0"),
        (["--time-scale", "nan"], "argument --time-scale: must be a finite number greater than 0"),
        (["--time-scale", "fast"], "argument --time-scale: must be a number greater than 0"),
        (["--seed", "x"], "argument --seed: invalid int value: 'x'"),
        (["--verbose"], "unrecognized arguments: --verbose"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each bad argument exits with status 2 and says what was wrong."""
    with pytest.raises(SystemExit) as raised:
        main(argv)

    assert 2 == raised.value.code
    assert message in capsys.readouterr().err


def test_busy_port_exits_1_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    """A port another program listens on gives a one-line error and status 1, no traceback."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        status = main(["--port", str(port)])

    captured = capsys.readouterr()
    assert 1 == status
    assert "" == captured.out
    assert captured.err.startswith(f"error: cannot listen on 127.0.0.1 port {port}: ")
    assert "Traceback" not in captured.err
