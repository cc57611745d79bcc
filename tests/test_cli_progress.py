"""What `akool-async batch` shows while it runs: a live display on a terminal, plain lines on a
pipe, JSON lines with --json. Checked without screenshots: the terminal is a pseudo-terminal
(or a detached tmux session) whose bytes are read back and stripped of escape sequences.
"""

from __future__ import annotations

import collections
import io
import json
import logging
import os
import pathlib
import re
import secrets
import select
import shlex
import shutil
import struct
import subprocess
import sys
import time
from typing import Any

import pytest

from akool_async.cli import main

DEADLINE = 60.0
"""Seconds one run gets before the test fails."""
COLUMNS, LINES = 120, 40
PROMPTS = (
    "a red kite over green hills",
    "a cat asleep on a windowsill",
    "a harbour at low tide",
    "a bowl of cherries on linen",
    "a snowy mountain hut",
    "a robot watering tulips",
    "a lighthouse in a storm",
    "a vintage bicycle by a wall",
    "a desert road at noon",
    "an owl on a mossy branch",
)
# CSI sequences (colours, cursor moves, erase), OSC sequences (titles, links), two-byte escapes.
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
PLAIN_EVENT = re.compile(r"\[\s*\d+\.\ds\] row (\d+) grid '(.+)' completed \(job ([0-9a-f]{24})\)")
SUMMARY = (
    "10 of 10 row(s) completed, 0 failed, 0 unknown",
    "Files written this run: 50; creates sent: 10; credits used: 20 (balance 10000 -> 9980).",
    "Manifest: out/manifest.jsonl",
)
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")


def cli() -> list[str]:
    """The installed console script, or the module when the script is not beside Python."""
    script = pathlib.Path(sys.executable).with_name("akool-async")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "akool_async.cli"]


def batch_command(*extra: str) -> list[str]:
    """`akool-async batch prompts.txt --out out` against the in-process emulator."""
    return [
        *cli(),
        "batch",
        "prompts.txt",
        "--out",
        "out",
        "--emulator",
        "--time-scale",
        "0.02",
        *extra,
    ]


@pytest.fixture
def workdir(tmp_path: pathlib.Path) -> pathlib.Path:
    """A folder holding a ten-prompt file."""
    (tmp_path / "prompts.txt").write_text("".join(f"{prompt}\n" for prompt in PROMPTS))
    return tmp_path


def child_env() -> dict[str, str]:
    """A terminal-like environment: xterm colours, a 120x40 screen, UTF-8 output."""
    return {
        **os.environ,
        "TERM": "xterm-256color",
        "COLUMNS": str(COLUMNS),
        "LINES": str(LINES),
        "PYTHONIOENCODING": "utf-8",
    }


def run_in_terminal(command: list[str], cwd: pathlib.Path) -> tuple[int, str]:
    """Run ``command`` with a pseudo-terminal as stdin, stdout and stderr; its status and output."""
    import fcntl  # noqa: PLC0415 - POSIX only
    import pty  # noqa: PLC0415
    import termios  # noqa: PLC0415

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    try:
        process = subprocess.Popen(  # noqa: S603 - our own console script
            command,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=child_env(),
            start_new_session=True,
        )
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + DEADLINE
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"{command} did not finish in {DEADLINE} s")
            ready, _, _ = select.select([master], [], [], remaining)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO on Linux: every holder of the terminal has closed it
                break
            if not data:
                break
            chunks.append(data)
        status = process.wait(timeout=DEADLINE)
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()
    return status, b"".join(chunks).decode()


def screen_text(raw: str) -> str:
    """What the output says, without escape sequences and carriage returns."""
    return ANSI.sub("", raw).replace("\r", "")


@posix_only
def test_a_terminal_gets_a_live_display_and_ends_with_the_summary_panel(
    workdir: pathlib.Path,
) -> None:
    """On a terminal: a redrawn live display (bar "batch", counts per state, tasks/min, credits,
    ETA) that finishes at 10/10, and the output ends with the summary panel.
    """
    status, raw = run_in_terminal(batch_command(), workdir)

    assert 0 == status, raw
    # Live redraws: the cursor hidden while it runs, moved up and lines erased for each frame.
    assert "\x1b[?25l" in raw
    assert "\x1b[?25h" in raw
    assert raw.count("\x1b[1A") >= 6
    assert "\x1b[2K" in raw
    text = screen_text(raw)
    assert "batch prompts.txt" in text
    assert re.search(
        r"queued\s+creating\s+running\s+downloading\s+completed\s+failed\s+unknown", text
    )
    for piece in ("tasks/min", "credits spent", "creates sent", "ETA", "elapsed"):
        assert piece in text
    # The last frame: the bar full, every task completed.
    assert "10/10" in text
    assert re.search(r"\n\s*0\s+0\s+0\s+0\s+10\s+0\s+0\s*\n", text)

    lines = text.rstrip().splitlines()
    assert lines[-1].startswith("╰")
    assert lines[-1].endswith("╯")
    [top] = [number for number, line in enumerate(lines) if "akool-async summary" in line]
    assert lines[top].startswith("╭")
    panel = "\n".join(lines[top:])
    for line in SUMMARY:
        assert line in panel
    assert "tasks/min" not in panel  # nothing of the live display is drawn after it
    assert 50 == len(list((workdir / "out").glob("*.png")))


@posix_only
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_a_tmux_screen_shows_the_final_display_and_summary(workdir: pathlib.Path) -> None:
    """In a detached 120x40 tmux session the visible screen ends with the finished bar and the
    summary panel.
    """
    tmux = [
        shutil.which("tmux") or "tmux",
        "-L",
        f"akool-test-{secrets.token_hex(6)}",
        "-f",
        os.devnull,
    ]
    env = {key: value for key, value in child_env().items() if key not in {"COLUMNS", "LINES"}}
    script = f"{shlex.join(batch_command())}; echo EXIT=$?; sleep {DEADLINE:.0f}"
    size = ["-x", str(COLUMNS), "-y", str(LINES)]
    subprocess.run(  # noqa: S603 - tmux, found on PATH
        [*tmux, "new-session", "-d", *size, "-s", "cli", "-c", str(workdir), script],
        env=env,
        check=True,
        timeout=DEADLINE,
    )
    screen = ""
    try:
        deadline = time.monotonic() + DEADLINE
        while "EXIT=" not in screen and time.monotonic() < deadline:
            time.sleep(0.2)
            screen = subprocess.run(  # noqa: S603 - tmux, found on PATH
                [*tmux, "capture-pane", "-p", "-t", "cli"],
                capture_output=True,
                text=True,
                check=True,
                timeout=DEADLINE,
            ).stdout
    finally:
        subprocess.run([*tmux, "kill-server"], check=False, timeout=DEADLINE)  # noqa: S603

    assert "EXIT=0" in screen, screen
    assert "batch prompts.txt" in screen
    assert "10/10" in screen
    assert "akool-async summary" in screen
    for line in SUMMARY:
        assert line in screen
    shown = [line for line in screen.splitlines() if line.strip()]
    assert ["╰", "EXIT=0"] == [shown[-2][:1], shown[-1]]


def test_a_pipe_gets_plain_lines_without_escape_sequences(workdir: pathlib.Path) -> None:
    """stdout a pipe: no escape sequence; the plan, one line per completed row, the summary."""
    ran = subprocess.run(  # noqa: S603 - our own console script
        batch_command(),
        cwd=workdir,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )

    assert (0, "") == (ran.returncode, ran.stderr)
    assert "\x1b" not in ran.stdout
    # A progress line is written every 10 s; a run slowed down by a busy machine may have one.
    lines = [line for line in ran.stdout.splitlines() if "] progress: " not in line]
    assert [
        "10 row(s) in the file: 10 new, 0 known from earlier runs; results in out/",
        "Credit balance: 10000",
    ] == lines[:2]
    events = [PLAIN_EVENT.fullmatch(line) for line in lines[2:12]]
    assert all(events), lines[2:12]
    rows = {int(event.group(1)): event.group(2) for event in events if event}
    assert dict(enumerate(PROMPTS, start=1)) == rows
    assert 10 == len({event.group(3) for event in events if event})
    assert lines[12].startswith(SUMMARY[0] + " (")
    assert list(SUMMARY[1:]) == lines[13:]


def json_events(text: str) -> list[dict[str, Any]]:
    """Every line as a JSON object; fails on any line that is not one."""
    events = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(event, dict) for event in events)
    return events


@pytest.mark.parametrize(
    "stdout",
    ["pipe", pytest.param("terminal", marks=posix_only)],
)
def test_json_lines_and_nothing_else(workdir: pathlib.Path, stdout: str) -> None:
    """--json, on a pipe or even a terminal: only JSON lines, start first and summary last."""
    command = batch_command("--json")
    if stdout == "terminal":
        status, out = run_in_terminal(command, workdir)
        out = out.replace("\r\n", "\n")
    else:
        ran = subprocess.run(  # noqa: S603 - our own console script
            command,
            cwd=workdir,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
        assert "" == ran.stderr
        status, out = ran.returncode, ran.stdout

    assert 0 == status, out
    assert "\x1b" not in out
    events = json_events(out)
    kinds = collections.Counter(event["event"] for event in events)
    assert {"start": 1, "created": 10, "completed": 10, "downloaded": 50, "summary": 1} == kinds
    assert ("start", 10, 10) == (events[0]["event"], events[0]["tasks"], events[0]["todo"])
    summary = events[-1]
    assert ("summary", 0, 10, 10, 50) == (
        summary["event"],
        summary["exit_status"],
        summary["rows"],
        summary["completed_rows"],
        summary["files_written"],
    )
    created = {event["row"]: event["job_id"] for event in events if event["event"] == "created"}
    completed = {event["row"]: event["job_id"] for event in events if event["event"] == "completed"}
    assert list(range(1, 11)) == sorted(created)
    assert created == completed
    assert all(
        event["detail"] == event["job_id"] for event in events if event["event"] == "created"
    )


class FakeTerminal(io.StringIO):
    """A captured stdout that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_main_in_process_draws_the_live_display_on_a_terminal_stdout(
    workdir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """main() whose stdout says it is a terminal picks the rich display and ends with the panel."""
    terminal = FakeTerminal()
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, "stdout", terminal)
    for name, value in child_env().items():
        monkeypatch.setenv(name, value)
    logger = logging.getLogger("akool_async")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    try:
        status = main(
            ["batch", "prompts.txt", "--out", "out", "--emulator", "--time-scale", "0.02"]
        )
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]

    assert 0 == status
    raw = terminal.getvalue()
    assert "\x1b[?25l" in raw
    text = screen_text(raw)
    assert "batch prompts.txt" in text
    assert "tasks/min" in text
    lines = text.rstrip().splitlines()
    assert lines[-1].startswith("╰")
    assert any("akool-async summary" in line for line in lines[-6:])
    assert any(SUMMARY[0] in line for line in lines[-6:])
