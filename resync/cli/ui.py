"""Terminal UI for runs: each step with its exact commands, confirm/skip/abort, copy progress;
plain lines when stdout is not a terminal (a timer's log, cron's mail)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.panel import Panel
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
from resync.model.errors import Aborted
from resync.plan.document import step_view
from resync.run.engine import Decision
from resync.run.events import EventName, RunEvent
from resync.run.journal import Journal, StepState
from resync.steps.base import Step
from resync.steps.preflight import CheckResult
from resync.steps.verify import checksum_rows, describe
from resync.steps.writable import read_only_key

_STATE_STYLE = {StepState.DONE: "green", StepState.FAILED: "bold red",
                StepState.SKIPPED: "yellow", StepState.UNDONE: "magenta"}


class TerminalUI:
    """The run on the terminal, a listener of its events. `live` (default: stdout is a terminal):
    step panels and progress bars; otherwise plain lines a log keeps (no spinner, no bar): one
    per step start and end, per phase, and progress as often as the events bring it."""

    def __init__(self, console: Console, *, interactive: bool, undo: bool = False,
                 live: bool | None = None) -> None:
        self.console, self.interactive, self.undo = console, interactive, undo
        self.live = console.is_terminal if live is None else live
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._numbers: dict[str, int] = {}
        self._steps: list[Step] = []
        # the steps during which the application cannot write: confirmed together, before the
        # lock, so that no question waits for a person while writes are blocked
        self._locked: list[str] = []
        self._locked_confirmed = False
        self._estimate: Callable[[], float | None] = lambda: None

    def number_steps(self, steps: list[Step]) -> None:
        self._steps = steps
        self._numbers = {s.key: i for i, s in enumerate(steps, 1)}

    def lock_phase(self, keys: list[str], estimate: Callable[[], float | None]) -> None:
        """The keys of the locked phase (plan order) and the estimated write-downtime (seconds,
        from what preflight measured; None when unknown)."""
        self._locked, self._estimate = keys, estimate

    def show(self, step: Step) -> None:
        view = step_view(self._numbers.get(step.key, 0), step)
        self.console.print(step_panel(view, undo=self.undo))

    def confirm(self, step: Step) -> Decision:
        if self.interactive and not self.undo and step.key in self._locked:
            return self._confirm_locked_phase(step)
        if self.live or self.interactive:  # what is about to run, before the question
            self.show(step)
        if not self.interactive:  # --yes: never a question, never a read of stdin
            return Decision.RUN
        answer = self._ask(step, "run this step? (y)es / (s)kip / (a)bort", ["y", "s", "a"])
        return {"y": Decision.RUN, "s": Decision.SKIP, "a": Decision.ABORT}[answer]

    def _confirm_locked_phase(self, step: Step) -> Decision:
        """The whole locked phase is shown and confirmed once, at its first step (the first one
        left, on a resume); its other steps then run without a question."""
        if self._locked_confirmed:
            self.console.print(Text(f"▶ {self._numbers.get(step.key, 0)}. {step.title}",
                                    style="bold"))
            return Decision.RUN
        left = self._locked[self._locked.index(step.key):]
        for key in left:
            self.show(next(s for s in self._steps if s.key == key))
        seconds = self._estimate()
        estimate = (f"estimated write-downtime ~{seconds:.1f} s" if seconds is not None
                    else "write-downtime: no estimate (nothing measured yet)")
        first, last = self._numbers.get(left[0], 0), self._numbers.get(left[-1], 0)
        self.console.print(Panel(Text(
            f"Steps {first}-{last} run together, without a question: from the first the "
            f"application cannot write until the last is done; {estimate}. Ctrl-C still stops "
            "the run (the journal keeps the state: resume or roll back).", style="bold"),
            title="the locked phase", border_style="yellow"))
        answer = self._ask(step, f"run steps {first}-{last}? (y)es / (a)bort", ["y", "a"])
        if answer == "a":
            return Decision.ABORT
        self._locked_confirmed = True
        return Decision.RUN

    def _ask(self, step: Step, question: str, choices: list[str]) -> str:
        try:
            return Prompt.ask(question, console=self.console, choices=choices, default="y")
        except EOFError:  # no one to answer (cron, a pipe): stop before the step, not a traceback
            raise Aborted(f"no answer for step '{step.key}': standard input is closed (an "
                          "unattended run needs --yes)") from None

    # -- the events --------------------------------------------------------------------------------
    def handle(self, event: RunEvent) -> None:
        if event.name is EventName.STEP_STARTED:
            self._step_started(event)
        elif event.name is EventName.STEP_FINISHED:
            self._step_finished(event)
        elif event.name is EventName.PROGRESS and not self.live:  # live: the bar has it
            self._line(Text(progress_line(event)))
        elif event.name is EventName.PHASE:
            self._line(Text(event.what(), style="dim"))
        elif event.name is EventName.OVERRUN:
            self._line(Text(f"OVERRUN: {event.message}", style="bold yellow"))

    def close(self) -> None:
        self._stop_progress()

    def _step_started(self, event: RunEvent) -> None:
        key = event.step or ""
        if self.live:
            self.console.print(Text(f"… {key}", style="dim"))
        else:
            self._line(Text(f"{self._number(key)}{key} started: {event.title or ''}"))

    def _step_finished(self, event: RunEvent) -> None:
        self._stop_progress()
        state = StepState(event.state) if event.state else StepState.DONE
        style = _STATE_STYLE.get(state, "")
        extra = f" — {event.message}" if event.message else ""
        if self.live:
            self.console.print(Text.assemble((state.value, style), f" {event.step}{extra}"))
            return
        took = f" ({event.seconds:.1f} s)" if event.seconds is not None else ""
        self._line(Text.assemble(f"{self._number(event.step or '')}{event.step} ",
                                 (state.value.upper() if state is StepState.FAILED else state.value,
                                  style), f"{took}{extra}"))

    def _number(self, key: str) -> str:
        n = self._numbers.get(key)
        return f"step {n}/{len(self._numbers)} " if n else ""

    def _line(self, text: Text) -> None:
        """One line of a log: the time first, never wrapped (a long command stays one line)."""
        self.console.print(Text(time.strftime("%H:%M:%S "), style="dim") + text, soft_wrap=True)

    # -- the live bar (a terminal only) -------------------------------------------------------------
    def progress(self, done: int, total: int | None, label: str) -> None:
        if not self.live:
            return
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


def progress_line(event: RunEvent) -> str:
    """copy: 1.2 GB of 4.0 GB (30%), 95.3 MB/s, ETA 30 s"""
    f = event.figures
    unit, done, total = str(f.get("unit") or ""), f.get("done"), f.get("total")
    out = f"{event.message}: {_amount(done, unit)}"
    if isinstance(total, int | float) and total and isinstance(done, int | float):
        out += f" of {_amount(total, unit)} ({100 * done / total:.0f}%)"
    rate, eta = f.get("rate_per_second"), f.get("eta_seconds")
    if isinstance(rate, int | float) and unit != "seconds":
        out += f", {_amount(rate, unit)}/s"
    if isinstance(eta, int | float):
        out += f", ETA {_duration(eta)}"
    return out


def _amount(value: object, unit: str) -> str:
    if not isinstance(value, int | float):
        return "?"
    if unit == "bytes":
        for size, name in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
            if value >= size:
                return f"{value / size:.1f} {name}"
        return f"{value:.0f} B"
    return f"{value:,.0f} {unit}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# a list that grows with the data (tables) shows its exceptions only, and at most this many
MAX_EXCEPTIONS = 50


def checksum_table(title: str, rows: Iterable[Sequence[Any]]) -> Table:
    """(table, primary checksum, replica checksum) rows, with a match column."""
    table = Table(title=title)
    for col in ("table", "primary", "replica", "match"):
        table.add_column(col)
    for name, p, r in rows:
        table.add_row(Text(str(name)), str(p), str(r),
                      Text("yes", style="green") if p == r else Text("NO", style="bold red"))
    return table


def checksum_overview(console: Console, title: str, rows: Sequence[Sequence[Any]]) -> None:
    """Counts, then only the tables that differ (the full per-table result is in the journal
    and in `resync verify --format json`): a 10,000-table run stays a few lines."""
    differ = [row for row in rows if row[1] != row[2]]
    line = Text(f"{title}: {len(rows) - len(differ):,} of {len(rows):,} tables equal",
                style="bold green" if not differ else "bold")
    if differ:
        line.append(f", {len(differ):,} differ", style="bold red")
    console.print(line)
    if differ:
        console.print(checksum_table("tables that differ", differ[:MAX_EXCEPTIONS]))
        if len(differ) > MAX_EXCEPTIONS:
            console.print(f"… and {len(differ) - MAX_EXCEPTIONS:,} more: every table is in the "
                          "journal (`resync verify --format json` prints them)")


def preflight_overview(console: Console, label: str, results: Sequence[CheckResult], *,
                       every: bool = False) -> None:
    """Counts, then the checks that fail (`every`: all of them, with their details)."""
    failed = [r for r in results if not r.ok]
    line = Text(f"preflight: {label}: {len(results) - len(failed)} of {len(results)} checks pass",
                style="bold green" if not failed else "bold")
    if failed:
        line.append(f", {len(failed)} fail", style="bold red")
    console.print(line)
    shown = list(results) if every else failed[:MAX_EXCEPTIONS]
    if not shown:
        return
    table = Table(title="every check" if every else "checks that fail")
    for col in ("check", "result", "detail"):
        table.add_column(col)
    for r in shown:
        table.add_row(Text(r.name), Text("pass", style="green") if r.ok else
                      Text("FAIL", style="red"), Text(r.detail))
    console.print(table)


def summary(console: Console, journal: Journal) -> None:
    captured = journal.data.captured
    rows = checksum_rows(captured)
    if rows:
        checksum_overview(console, "verification (key-chunk checksums)", rows)
    report = json.loads(str(captured.get("verify.report") or "[]"))
    for item in report[:MAX_EXCEPTIONS]:
        console.print(Text(f"differs: {describe(item)}", style="bold red"))
    if len(report) > MAX_EXCEPTIONS:
        console.print(f"… and {len(report) - MAX_EXCEPTIONS:,} more differing ranges in the journal")
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
