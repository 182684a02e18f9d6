"""Terminal UI for runs: each step with its exact commands, confirm/skip/abort, copy progress."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.prompt import Prompt
from rich.table import Table
from rich.text import Text

from resync.cli.render import step_panel
from resync.plan.document import step_view
from resync.run.engine import Decision
from resync.run.journal import Journal, StepState
from resync.steps.base import Step
from resync.steps.verify import checksum_rows, describe
from resync.steps.writable import read_only_key

_STATE_STYLE = {StepState.DONE: "green", StepState.FAILED: "bold red",
                StepState.SKIPPED: "yellow", StepState.UNDONE: "magenta"}


class TerminalUI:
    def __init__(self, console: Console, *, interactive: bool, undo: bool = False) -> None:
        self.console, self.interactive, self.undo = console, interactive, undo
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._numbers: dict[str, int] = {}

    def number_steps(self, steps: list[Step]) -> None:
        self._numbers = {s.key: i for i, s in enumerate(steps, 1)}

    def show(self, step: Step) -> None:
        view = step_view(self._numbers.get(step.key, 0), step)
        self.console.print(step_panel(view, undo=self.undo))

    def confirm(self, step: Step) -> Decision:
        self.show(step)
        if not self.interactive:
            return Decision.RUN
        answer = Prompt.ask("run this step? (y)es / (s)kip / (a)bort", console=self.console,
                            choices=["y", "s", "a"], default="y")
        return {"y": Decision.RUN, "s": Decision.SKIP, "a": Decision.ABORT}[answer]

    def step_started(self, step: Step) -> None:
        self.console.print(Text(f"… {step.key}", style="dim"))

    def step_finished(self, step: Step, state: StepState, note: str | None) -> None:
        self._stop_progress()
        if state is StepState.DONE and note:
            self.show(step)
        style = _STATE_STYLE.get(state, "")
        extra = f" — {note}" if note else ""
        self.console.print(Text.assemble((state.value, style), f" {step.key}{extra}"))

    def progress(self, done: int, total: int | None, label: str) -> None:
        if self._progress is None:
            # the copy counts bytes; waits (a drain, a TTL) count seconds
            columns: tuple[Any, ...]
            if label == "copy":
                columns = (DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
            elif label == "verify":
                columns = (MofNCompleteColumn(), TextColumn("rows"), TimeRemainingColumn())
            else:
                columns = (TextColumn("{task.completed:.0f}/{task.total:.0f} s"),)
            self._progress = Progress("[progress.description]{task.description}", BarColumn(),
                                      *columns, console=self.console)
            self._progress.start()
            self._task = self._progress.add_task(label, total=total)
        assert self._task is not None
        self._progress.update(self._task, completed=done, total=total, description=label)

    def _stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress, self._task = None, None


def checksum_table(title: str, rows: Iterable[Sequence[Any]]) -> Table:
    """(table, primary checksum, replica checksum) rows, with a match column."""
    table = Table(title=title)
    for col in ("table", "primary", "replica", "match"):
        table.add_column(col)
    for name, p, r in rows:
        table.add_row(Text(str(name)), str(p), str(r),
                      Text("yes", style="green") if p == r else Text("NO", style="bold red"))
    return table


def summary(console: Console, journal: Journal) -> None:
    captured = journal.data.captured
    rows = checksum_rows(captured)
    if rows:
        console.print(checksum_table("verification (key-chunk checksums)", rows))
    for item in json.loads(str(captured.get("verify.report") or "[]")):
        console.print(Text(f"differs: {describe(item)}", style="bold red"))
    figures = Table.grid(padding=(0, 2))
    for key in ("copy.bytes", "copy.seconds", "copy.bytes_per_second", "source.file",
                "source.pos", "source.gtid", "recipient.old_datadir", "estimate.copy_seconds",
                "estimate.write_downtime_seconds", "figures.write_downtime_seconds",
                "figures.downtime_minus_copy_seconds"):
        if key in captured:
            figures.add_row(Text(key, style="bold"), Text(_fmt(key, captured[key])))
    plan = journal.data.plan or {}
    for host in (plan.get("donor"), plan.get("recipient")):
        key = str(read_only_key(str(host)))
        if host and key in captured:  # the final state, as the run left it
            state = "ON (read-only)" if captured[key] in (1, "1") else "OFF (takes writes)"
            figures.add_row(Text(f"read_only {host}", style="bold"), Text(state))
    console.print(figures)
    phases = [k.removeprefix("figures.phase.") for k in captured if k.startswith("figures.phase.")]
    if phases:
        by_phase = Table(title="write-downtime by phase (seconds)")
        for col in ("phase", "estimate", "actual"):
            by_phase.add_column(col, justify="left" if col == "phase" else "right")
        for name in phases:
            est = captured.get(f"estimate.phase.{name}")
            by_phase.add_row(name, "" if est is None else f"{float(str(est)):.2f}",
                             f"{float(str(captured[f'figures.phase.{name}'])):.2f}")
        console.print(by_phase)
    times = Table(title="step wall times")
    times.add_column("step")
    times.add_column("state")
    times.add_column("seconds", justify="right")
    for s in journal.data.steps:
        secs = (f"{s.finished_at - s.started_at:.2f}" if s.started_at and s.finished_at
                and s.state is StepState.DONE else "")
        times.add_row(Text(s.key), s.state.value, secs)
    console.print(times)
    console.print(f"journal: [bold]{journal.path}[/bold]")


def _fmt(key: str, value: Any) -> str:
    if key == "copy.bytes_per_second" and isinstance(value, int | float):
        return f"{value / 1e6:.1f} MB/s"
    return str(value)
