"""What a batch shows while it runs: a live rich display on a terminal, log lines otherwise, JSON
lines with ``--json``. All three end with the same summary.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import unicodedata
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from typing import Any, Final, TextIO

import attrs

from ._batch import DisplayState, Tally
from ._journal import TaskRecord
from ._manifest import OutputStatus

__all__ = [
    "JsonReporter",
    "PlainReporter",
    "RichReporter",
    "Summary",
    "make_reporter",
    "write_out",
]

_ENDINGS: Final = frozenset(
    {
        OutputStatus.COMPLETED,
        OutputStatus.FAILED,
        OutputStatus.UNKNOWN,
        OutputStatus.ACCEPTED_UNKNOWN,
    }
)
_PLAIN_EVERY: Final = 10.0  # seconds between progress lines in plain mode
_SCREENFUL: Final = 20  # items of a list shown in the summary


@attrs.frozen(kw_only=True)
class Summary:
    """How a batch ended.

    ``credits_used`` and ``unknown_charges`` are this run's (`Tally`); ``batch_credits`` and
    ``batch_unknown_charges`` those of every run of the batch, as the manifest sums them: the
    creates of a run killed before its summary are counted there.
    """

    rows: int
    completed_rows: int
    failed_rows: int
    unknown_rows: int
    pending_rows: int
    outputs: dict[str, int]
    files_written: int
    creates_sent: int
    credits_used: float
    balance_before: float | None
    balance_after: float | None
    removed_rows: int
    unknown: tuple[str, ...]
    lost_presses: tuple[str, ...]
    manifest: str | None
    elapsed: float
    accepted_rows: int = 0
    accepted: tuple[str, ...] = ()
    interrupted: bool = False
    unknown_charges: int = 0
    batch_credits: float = 0.0
    batch_unknown_charges: int = 0

    @property
    def exit_status(self) -> int:
        """0 when every row completed (or was closed with --accept-unknown), 1 otherwise; 130
        when the run was interrupted."""
        if self.interrupted:
            return 130
        return 0 if self.completed_rows + self.accepted_rows == self.rows else 1

    def as_json(self) -> dict[str, Any]:
        """The summary as a JSON object (``event: summary``)."""
        data = attrs.asdict(self)
        data["unknown"] = list(self.unknown)
        data["lost_presses"] = list(self.lost_presses)
        data["accepted"] = list(self.accepted)
        data["exit_status"] = self.exit_status
        return {"event": "summary", **data}

    def lines(self) -> list[str]:
        """The summary as lines of text."""
        lines = [
            f"{self.completed_rows} of {self.rows} row(s) completed, {self.failed_rows} failed, "
            f"{self.unknown_rows} unknown"
            + (f", {self.accepted_rows} accepted as lost" if self.accepted_rows else "")
            + (f", {self.pending_rows} unfinished" if self.pending_rows else "")
            + f" ({self.elapsed:.1f} s).",
            f"Files written this run: {self.files_written}; creates sent: {self.creates_sent}; "
            f"credits used: {credits_text(self.credits_used, self.unknown_charges)}"
            + self._balance_text()
            + ".",
        ]
        earlier = abs(self.batch_credits - self.credits_used) > 1e-9  # noqa: PLR2004 - float sums
        if earlier or self.batch_unknown_charges != self.unknown_charges:
            total = credits_text(self.batch_credits, self.batch_unknown_charges)
            lines.append(
                f"Over every run of this batch: credits {total} (the manifest's credits column)."
            )
        if self.manifest:
            lines.append(f"Manifest: {self.manifest}")
        if self.removed_rows:
            lines.append(
                f"{self.removed_rows} task(s) from earlier runs are no longer asked for: left "
                "alone, still listed in the manifest with in_file false."
            )
        lines += _listing(
            self.unknown,
            f"{len(self.unknown)} create(s) may or may not have reached Akool (no job id was "
            "recorded). Check your Akool account, then run the same command with "
            "--resubmit-unknown to create them again (paying again if they did reach it), or "
            "with --accept-unknown to close them as lost:",
        )
        lines += _listing(
            self.lost_presses,
            f"{len(self.lost_presses)} button press(es) may or may not have reached Akool "
            "(their answers were lost). Run the same command again: it reads each grid anew and "
            "presses a button again only if Akool still offers it (so it cannot pay twice); a "
            "button Akool lists as used was charged, and the job it made cannot be found. Run "
            "with --accept-unknown to close them as lost:",
        )
        lines += _listing(
            self.accepted,
            f"{len(self.accepted)} create(s) or press(es) that may have reached Akool were "
            "accepted as lost (--accept-unknown); they are closed and never sent again:",
        )
        if self.interrupted:
            lines.append(
                "Interrupted: the creates already sent have their answers recorded; run the same "
                "command again to go on."
            )
        return lines

    def _balance_text(self) -> str:
        before, after = self.balance_before, self.balance_after
        if before is None or after is None:
            return ""
        moved = before - after
        if abs(moved - self.credits_used) < 1e-9:  # noqa: PLR2004 - float sums of whole credits
            return f" (balance {before:g} -> {after:g})"
        # Another user of the account, or a charge Akool did not report on the job.
        return f" (balance {before:g} -> {after:g}: it moved {moved:g})"


def credits_text(spent: float, unknown: int) -> str:
    """Credits spent as every view says them: Akool's charges, and the unknown ones if any."""
    if not unknown:
        return f"{spent:g}"
    return f"{spent:g} + {unknown} create(s) whose charge Akool never reported"


def _listing(items: Sequence[str], heading: str) -> list[str]:
    """A heading and the first screenful of ``items``; nothing when there are none."""
    if not items:
        return []
    shown = [heading, *(f"  {item}" for item in items[:_SCREENFUL])]
    if len(items) > _SCREENFUL:
        shown.append(f"  ... and {len(items) - _SCREENFUL} more (see the manifest)")
    return shown


def terminal_safe(text: str) -> str:
    """``text`` with every control and format character but the newline shown escaped.

    A file name or a URL in a message comes from the user's shell or a file they were given:
    an escape sequence in it (a terminal title, colours, a cursor move, bidi overrides) must
    reach the screen as text, never as a command to the terminal.
    """
    return "".join(
        char
        if char == "\n" or unicodedata.category(char) not in _UNSAFE_CATEGORIES
        else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


_UNSAFE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp"})


def write_out(stream: TextIO, text: str) -> None:
    """Write and flush; if the reader has gone (``| head``), go on silently.

    The batch keeps running: its journal and manifest, not the terminal, are what count.
    """
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):
            # Point the descriptor at /dev/null, so that later writes and the flush at exit
            # are silent too.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)


def _describe(record: TaskRecord) -> str:
    what = record.button or "grid"
    prompt = record.prompt if len(record.prompt) <= 40 else record.prompt[:39] + "…"  # noqa: PLR2004
    return f"row {record.row} {what} {prompt!r}"


class PlainReporter:
    """Log lines, for pipes and files: one per finished task, and progress every few seconds."""

    def __init__(self, tally: Tally, stream: TextIO | None = None) -> None:
        self.tally = tally
        self._stream = stream if stream is not None else sys.stdout
        self._last = time.monotonic()

    def _write(self, text: str) -> None:
        elapsed = time.monotonic() - self.tally.started_at
        write_out(self._stream, f"[{elapsed:7.1f}s] {text}\n")

    def event(self, kind: str, record: TaskRecord, detail: str | None = None) -> None:
        """One line per task that ends; created and downloaded go unsaid."""
        if kind in _ENDINGS:
            suffix = f": {detail}" if detail else ""
            job = f" (job {record.job_id})" if record.job_id else ""
            self._write(f"{_describe(record)} {kind}{job}{suffix}")
        self.refresh()

    def note(self, message: str) -> None:
        """A line of its own."""
        self._write(message)

    def refresh(self) -> None:
        """A progress line every few seconds."""
        now = time.monotonic()
        if now - self._last >= _PLAIN_EVERY:
            self._last = now
            self._write(_progress_text(self.tally))

    def start(self, lines: Sequence[str]) -> None:
        """Lines shown before the run."""
        write_out(self._stream, "".join(line + "\n" for line in lines))

    def finish(self, summary: Summary) -> None:
        """A last progress line, then the summary."""
        self._write(_progress_text(self.tally))
        write_out(self._stream, "".join(line + "\n" for line in summary.lines()))

    @contextmanager
    def running(self) -> Generator[None]:
        """Nothing to set up for plain lines."""
        yield


class JsonReporter:
    """JSON lines on standard output: one object per event, and the summary last."""

    def __init__(self, tally: Tally, stream: TextIO | None = None) -> None:
        self.tally = tally
        self._stream = stream if stream is not None else sys.stdout

    def _emit(self, data: dict[str, Any]) -> None:
        write_out(self._stream, json.dumps(data, ensure_ascii=False) + "\n")

    def event(self, kind: str, record: TaskRecord, detail: str | None = None) -> None:
        """Every event, with the task's row, button, prompt and job id."""
        self._emit(
            {
                "event": kind,
                "row": record.row,
                "button": record.button,
                "prompt": record.prompt,
                "job_id": record.job_id,
                "detail": detail,
            }
        )

    def note(self, message: str) -> None:
        """A note, as ``event: note``."""
        self._emit({"event": "note", "message": message})

    def refresh(self) -> None:
        """Counts are in the summary; nothing to redraw."""

    def start(self, lines: Sequence[str]) -> None:
        """The plan as ``event: start``."""
        self._emit(
            {
                "event": "start",
                "tasks": self.tally.tasks,
                "todo": self.tally.todo,
                "messages": list(lines),
            }
        )

    def finish(self, summary: Summary) -> None:
        """The summary as ``event: summary``."""
        self._emit(summary.as_json())

    @contextmanager
    def running(self) -> Generator[None]:
        """Nothing to set up for JSON lines."""
        yield


class RichReporter:
    """A live display on a terminal: a progress bar, counts per state, throughput, credits, ETA."""

    def __init__(self, tally: Tally, title: str) -> None:
        from rich.console import Console  # noqa: PLC0415 - rich is the cli extra's
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.tally = tally
        self.console = Console()
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._task = self._progress.add_task(title, total=max(tally.tasks, 1))
        self._live: Any = None

    def _render(self) -> Any:
        from rich.console import Group  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415

        tally = self.tally
        # Every task, those earlier runs finished included, as the counts below show them.
        self._progress.update(self._task, completed=tally.done, total=max(tally.tasks, 1))
        # Losses accepted with --accept-unknown are rare: their column shows only when there are.
        states = [
            state
            for state in DisplayState
            if state is not DisplayState.ACCEPTED_UNKNOWN or tally.states.get(state)
        ]
        table = Table.grid(padding=(0, 2))
        for _ in states:
            table.add_column(justify="right")
        table.add_row(*(f"[dim]{state}[/]" for state in states))
        table.add_row(*(str(tally.states.get(state, 0)) for state in states))
        stats = Table.grid(padding=(0, 2))
        stats.add_row(
            f"throughput [bold]{tally.rate() * 60:.1f}[/] tasks/min",
            f"files [bold]{tally.files}[/]",
            f"credits spent [bold]{credits_text(tally.credits, tally.unknown_charges)}[/]",
            f"creates sent [bold]{tally.creates}[/]",
        )
        return Group(self._progress, table, stats)

    def event(self, kind: str, record: TaskRecord, detail: str | None = None) -> None:
        """Failures and unknowns are printed above the display; the rest only counted."""
        if kind in {OutputStatus.FAILED, OutputStatus.UNKNOWN}:
            self.console.print(f"[red]{kind}[/] {_describe(record)}: {detail or ''}", markup=True)
        self.refresh()

    def note(self, message: str) -> None:
        """Printed above the display."""
        self.console.print(message, markup=False)

    def refresh(self) -> None:
        """Redraw with the new counts."""
        if self._live is not None:
            self._live.update(self._render())

    def start(self, lines: Sequence[str]) -> None:
        """Lines shown before the run; the bar starts from what earlier runs finished."""
        # Reset, not updated: the part done before must not count as this run's speed.
        self._progress.reset(self._task, total=max(self.tally.tasks, 1), completed=self.tally.done)
        for line in lines:
            self.console.print(line, markup=False)

    def finish(self, summary: Summary) -> None:
        """The summary, in a panel."""
        from rich.panel import Panel  # noqa: PLC0415

        style = "green" if summary.exit_status == 0 else "yellow"
        body = "\n".join(summary.lines())
        self.console.print(Panel(body, title="akool-async summary", border_style=style))

    @contextmanager
    def running(self) -> Generator[None]:
        """Show the live display while the block runs."""
        from rich.live import Live  # noqa: PLC0415

        with Live(self._render(), console=self.console, refresh_per_second=4) as live:
            self._live = live
            try:
                yield
            finally:
                live.update(self._render())
                self._live = None


def make_reporter(
    tally: Tally, *, json_lines: bool, title: str
) -> PlainReporter | JsonReporter | RichReporter:
    """JSON lines when asked, a live display on a terminal, plain lines otherwise."""
    if json_lines:
        return JsonReporter(tally)
    if sys.stdout.isatty():
        return RichReporter(tally, title)
    return PlainReporter(tally)


def _progress_text(tally: Tally) -> str:
    counts = ", ".join(
        f"{state} {tally.states.get(state, 0)}" for state in DisplayState if tally.states.get(state)
    )
    eta = tally.eta()
    eta_text = f", ETA {eta:.0f} s" if eta is not None else ""
    return (
        f"progress: {tally.done}/{tally.tasks} done ({counts}); "
        f"{tally.rate() * 60:.1f} tasks/min, {tally.files} files, "
        f"credits spent {credits_text(tally.credits, tally.unknown_charges)}, "
        f"creates sent {tally.creates}{eta_text}"
    )
