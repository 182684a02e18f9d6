"""Run events: one typed record of what a run does, fanned out to its listeners.

The engine and the executor tell `RunEvents` what happens (a step starts or ends, an action is
journaled, bytes arrive); `RunEvents` turns that into `RunEvent`s with the run's identity, the
coarse phase and the figures, masks every secret in them once, and hands each to every
listener: the terminal, the `--log-json` file, the notifier. A listener that fails is logged
and left out; it never fails the run.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from resync.model.keys import WINDOW_ENDS_AT, StepKind
from resync.model.secrets import Secret, mask
from resync.plan.phases import lock_window
from resync.run.journal import CapturedValue, CommandRecord, Journal, StepState
from resync.steps.base import Step

log = logging.getLogger("resync.events")
ProgressFn = Callable[[int, "int | None", str], None]
ACTION_TEXT_MAX = 300  # an action's text in an event: its first line, at most this long


class EventName(StrEnum):
    START = "start"
    REFUSED = "refused"  # a gate (preflight, window, a reviewed plan) refused
    PHASE = "phase"  # a coarse phase begins or ends (state: begin | end)
    SUCCESS = "success"
    FAILURE = "failure"
    OVERRUN = "overrun"  # the run ended after its maintenance window
    STEP_STARTED = "step-started"
    STEP_FINISHED = "step-finished"
    ACTION = "action"
    PROGRESS = "progress"
    SUMMARY = "summary"


class Phase(StrEnum):
    PREFLIGHT = "preflight"
    WINDOW = "window"
    MAINTENANCE = "maintenance"
    LOCK_WINDOW = "lock window"  # the donor locked -> the new primary writable (overlaps others)
    COPY = "copy"
    REPLICATION = "replication"
    VERIFY = "verify"
    CLEANUP = "cleanup"


# consecutive steps of one phase make one phase block; the lock window is tracked on its own
PHASE_OF: Mapping[StepKind, Phase] = {
    StepKind.PREFLIGHT: Phase.PREFLIGHT,
    StepKind.WINDOW_GATE: Phase.WINDOW, StepKind.WINDOW_RECHECK: Phase.WINDOW,
    StepKind.MAINTENANCE_ON: Phase.MAINTENANCE, StepKind.MAINTENANCE_OFF: Phase.MAINTENANCE,
    StepKind.LB_DRAIN: Phase.MAINTENANCE, StepKind.LB_RESTORE: Phase.MAINTENANCE,
    **dict.fromkeys((StepKind.STOP_REPLICATION, StepKind.ERRANT_RECHECK, StepKind.PREFLUSH,
                     StepKind.READ_LOCK, StepKind.STOP_SERVICE, StepKind.MOVE_DATADIR,
                     StepKind.COPY, StepKind.EBS_SNAPSHOT, StepKind.EBS_VOLUME, StepKind.EBS_SWAP,
                     StepKind.EBS_PREWARM, StepKind.START_SERVICE, StepKind.RESET_BINLOGS),
                    Phase.COPY),
    **dict.fromkeys((StepKind.POINT_REPLICA, StepKind.WAIT_REPLICA, StepKind.UNLOCK,
                     StepKind.MAKE_WRITABLE), Phase.REPLICATION),
    StepKind.VERIFY: Phase.VERIFY,
    StepKind.EBS_RELEASE: Phase.CLEANUP,
}


@dataclass(frozen=True)
class RunEvent:
    """One thing that happened in a run. `as_dict()` is the JSON a log line, a webhook and a
    notify command get; `text()` is one line for a human (a chat message)."""

    name: EventName
    runbook: str
    at: float
    run_id: str | None = None  # None: refused before the run (and its journal) existed
    step: str | None = None
    title: str | None = None
    state: str | None = None  # a step's state; a phase's begin | end; an action's ok | failed
    phase: Phase | None = None
    seconds: float | None = None
    message: str | None = None  # an error, a note, an action's text
    host: str | None = None
    kind: str | None = None  # an action's kind (sql, shell, ...)
    figures: Mapping[str, CapturedValue] = field(default_factory=dict)
    journal: str | None = None
    next_command: str | None = None
    undo_command: str | None = None
    plan_sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.name.value}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "name" and value is not None and value != {}:
                out[f.name] = dict(value) if f.name == "figures" else value
        return out

    def masked(self, secrets: Sequence[Secret]) -> RunEvent:
        def hide(value: Any) -> Any:
            return mask(value, list(secrets)) if isinstance(value, str) else value

        changes = {f.name: hide(getattr(self, f.name)) for f in fields(self)
                   if isinstance(getattr(self, f.name), str) and f.name != "name"}
        return replace(self, **changes, figures={hide(k): hide(v) for k, v in self.figures.items()})

    def what(self) -> str:
        """What happened, in a few words on one line (no run, no journal)."""
        message = " ".join((self.message or "").split())
        if self.name is EventName.PHASE:
            took = f" after {self.seconds:.0f} s" if self.seconds is not None else ""
            return f"phase {self.phase} " + ("begins" if self.state == "begin" else f"ended{took}")
        if self.name is EventName.SUCCESS:
            return (message or "done") + _downtime(self.figures)
        if self.name in (EventName.REFUSED, EventName.FAILURE, EventName.OVERRUN):
            word = {EventName.REFUSED: "REFUSED", EventName.FAILURE: "FAILED"}.get(self.name,
                                                                                 "OVERRUN")
            return f"{word}: {message}"
        if self.name is EventName.START:
            return message or "started"
        return " ".join(p for p in (self.name.value, self.step, self.state, message) if p)

    def text(self) -> str:
        """One line for a human: a chat message (a webhook's `text`)."""
        who = f"resync {self.runbook}" + (f" ({self.run_id})" if self.run_id else "")
        tail = f"; journal {self.journal}" if self.journal and self.name is not EventName.START else ""
        if self.next_command:
            tail += f"; next: {self.next_command}"
            tail += f" (or undo: {self.undo_command})" if self.undo_command else ""
        return f"{who}: {self.what()}{tail}"


def _downtime(figures: Mapping[str, CapturedValue]) -> str:
    value = figures.get("figures.write_downtime_seconds")
    return f"; write downtime {float(value):.1f} s" if isinstance(value, int | float) else ""


class Listener(Protocol):
    def handle(self, event: RunEvent) -> None: ...
    def close(self) -> None: ...


class ObservedJournal(Journal):
    """The run's journal (same data, same file) telling `on_command` about each action as the
    executor journals it, and again when a background action ends."""

    def __init__(self, journal: Journal, on_command: Callable[[CommandRecord], None]) -> None:
        super().__init__(journal.path, journal.data)
        self._on_command = on_command

    def record(self, command: CommandRecord) -> int:
        index = super().record(command)
        self._on_command(command)
        return index

    def update(self, index: int, **changes: Any) -> None:
        super().update(index, **changes)
        if "ok" in changes:
            self._on_command(self.data.commands[index])


@dataclass
class PhaseClock:
    """Which coarse phase a run is in; the lock window opens when `lock_opens` starts and closes
    when `lock_closes` is done."""

    lock_opens: str | None = None
    lock_closes: str | None = None
    current: Phase | None = None
    since: float = 0.0
    lock_since: float | None = None

    @classmethod
    def of(cls, steps: Sequence[Step], donor: str, primary_after: str) -> PhaseClock:
        window = lock_window(steps, donor, primary_after)
        if window is None:  # a hot copy: the donor serves throughout
            return cls()
        return cls(lock_opens=window.opens, lock_closes=window.closes)

    def started(self, step: Step, now: float) -> list[tuple[Phase, str, float | None]]:
        out: list[tuple[Phase, str, float | None]] = []
        phase = PHASE_OF.get(step.id.kind, self.current)
        if phase is not None and phase is not self.current:
            out += self.end(now)
            self.current, self.since = phase, now
            out.append((phase, "begin", None))
        if step.key == self.lock_opens and self.lock_since is None:
            self.lock_since = now
            out.append((Phase.LOCK_WINDOW, "begin", None))
        return out

    def finished(self, step: Step, state: StepState, now: float,
                 opened_at: float | None) -> list[tuple[Phase, str, float | None]]:
        """`opened_at`: when the lock window opened, if an earlier process opened it (resume)."""
        if step.key != self.lock_closes or state is not StepState.DONE:
            return []
        since = self.lock_since if self.lock_since is not None else opened_at
        self.lock_since, self.lock_closes = None, None
        return [(Phase.LOCK_WINDOW, "end", None if since is None else round(now - since, 3))]

    def end(self, now: float) -> list[tuple[Phase, str, float | None]]:
        if self.current is None:
            return []
        ended, self.current = self.current, None
        return [(ended, "end", round(now - self.since, 3))]


def resume_command(journal: Path) -> str:
    return f"resync resume {shlex.quote(str(journal))}"


def rollback_command(journal: Path) -> str:
    return f"resync rollback {shlex.quote(str(journal))}"


class RunEvents:
    """The fan-out: the engine's `Events`, the executor's progress callback, the run's outcome.

    Progress becomes an event at most every `progress_every` seconds (and when it completes);
    `live_progress` (a terminal's bar) gets every update."""

    def __init__(self, runbook: str, listeners: Sequence[Listener], *,
                 secrets: Sequence[Secret] = (), progress_every: float = 10.0,
                 live_progress: ProgressFn | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.runbook, self.listeners = runbook, list(listeners)
        self.progress_every, self.live_progress, self.clock = progress_every, live_progress, clock
        self._secrets: list[Sequence[Secret]] = [secrets]
        self.run_id: str | None = None  # known once the run's journal is
        self.journal: Journal | None = None
        self.phases: PhaseClock | None = None
        self.reported = False  # the outcome (success, failure, refused) was told
        self._step_since: dict[str, float] = {}  # (an undo's own time, not its run's)
        self._progress_from: tuple[float, int] | None = None  # this step's first look
        self._progress_told: float | None = None  # when progress was last an event
        self._progress_complete = False  # its completion was an event

    # -- wiring ----------------------------------------------------------------------------------
    def watch_secrets(self, secrets: Sequence[Secret]) -> None:
        """A list of secrets that grows while the run goes (the executor learns some)."""
        self._secrets.append(secrets)

    def attach(self, journal: Journal, phases: PhaseClock | None, message: str) -> Journal:
        """The run exists: its journal (returned observed: each action becomes an event)."""
        observed = ObservedJournal(journal, self._action)
        self.journal, self.phases, self.run_id = observed, phases, journal.data.run_id
        self.emit(EventName.START, message=message, plan_sha256=journal.data.plan_sha256)
        return observed

    def emit(self, name: EventName, **values: Any) -> None:
        event = RunEvent(name, self.runbook, self.clock(), run_id=self.run_id, **values)
        event = event.masked(self._all_secrets())
        for listener in list(self.listeners):
            try:
                listener.handle(event)
            except Exception as exc:  # a broken listener must not break the run
                log.warning("%s stopped receiving events: %s", type(listener).__name__,
                            mask(str(exc), self._all_secrets()))
                self.listeners.remove(listener)

    def _all_secrets(self) -> list[Secret]:
        return [s for group in self._secrets for s in group]

    def close(self) -> None:
        for listener in self.listeners:
            try:
                listener.close()
            except Exception as exc:
                log.warning("%s did not close: %s", type(listener).__name__,
                            mask(str(exc), self._all_secrets()))

    # -- the engine's Events ---------------------------------------------------------------------
    def step_started(self, step: Step) -> None:
        now = self.clock()
        for phase, state, seconds in self.phases.started(step, now) if self.phases else []:
            self.emit(EventName.PHASE, phase=phase, state=state, seconds=seconds, step=step.key)
        self._progress_from, self._progress_told, self._progress_complete = None, None, False
        self._step_since[step.key] = now
        self.emit(EventName.STEP_STARTED, step=step.key, title=step.title)

    def step_finished(self, step: Step, state: StepState, note: str | None) -> None:
        since = self._step_since.pop(step.key, None)
        seconds = None if since is None else round(self.clock() - since, 3)
        self.emit(EventName.STEP_FINISHED, step=step.key, title=step.title, state=state.value,
                  seconds=seconds, message=note)
        if self.phases is not None:
            opened = self._lock_opened_before()
            for phase, edge, secs in self.phases.finished(step, state, self.clock(), opened):
                self.emit(EventName.PHASE, phase=phase, state=edge, seconds=secs, step=step.key)

    def _lock_opened_before(self) -> float | None:
        if self.journal is None or self.phases is None or self.phases.lock_opens is None:
            return None
        return self.journal.step(self.phases.lock_opens).started_at

    # -- the executor ----------------------------------------------------------------------------
    def progress(self, done: int, total: int | None, label: str) -> None:
        if self.live_progress is not None:
            self.live_progress(done, total, label)
        now = self.clock()
        if self._progress_from is None:
            self._progress_from = (now, done)
        complete = total is not None and done >= total
        due = self._progress_told is None or now - self._progress_told >= self.progress_every
        if (complete and self._progress_complete) or not (due or complete):
            return
        since, first = self._progress_from
        rate = (done - first) / (now - since) if now > since else None
        eta = (total - done) / rate if rate and total is not None else None
        unit = {"copy": "bytes", "verify": "rows"}.get(label, "seconds")
        self._progress_told, self._progress_complete = now, complete
        self.emit(EventName.PROGRESS, step=self.journal_step(), message=label, figures={
            "done": done, "total": total, "unit": unit,
            "rate_per_second": None if rate is None else round(rate, 1),
            "eta_seconds": None if eta is None else round(max(eta, 0.0), 1)})

    def journal_step(self) -> str | None:
        if self.journal is None:
            return None
        running = [s.key for s in self.journal.data.steps if s.state is StepState.RUNNING]
        return running[-1] if running else None

    def _action(self, record: CommandRecord) -> None:
        first_line = record.text.split("\n", 1)[0]
        text = first_line if len(first_line) <= ACTION_TEXT_MAX else first_line[:ACTION_TEXT_MAX] + "…"
        state = "running" if record.ok is None else "ok" if record.ok else "failed"
        self.emit(EventName.ACTION, step=record.step, host=record.host, kind=record.kind,
                  state=state, message=text, seconds=record.seconds if record.ok is not None else None)

    # -- the outcome -----------------------------------------------------------------------------
    def figures(self) -> dict[str, CapturedValue]:
        captured = self.journal.data.captured if self.journal else {}
        return {k: v for k, v in captured.items()
                if k.startswith(("figures.", "estimate.", "copy.")) or k == str(WINDOW_ENDS_AT)}

    def finished(self, outcome: EventName, message: str, *, next_command: str | None = None,
                 undo_command: str | None = None) -> None:
        """The run ended (success, failure or refused): overrun, the open phase, the outcome."""
        if self.reported:
            return
        self.reported = True
        now = self.clock()
        for phase, state, seconds in self.phases.end(now) if self.phases else []:
            self.emit(EventName.PHASE, phase=phase, state=state, seconds=seconds)
        self._overrun(now)
        figures = self.figures()
        if self.phases is not None and self.phases.lock_since is not None:
            figures["lock_window_open_seconds"] = round(now - self.phases.lock_since, 3)
        path = str(self.journal.path.resolve()) if self.journal else None
        self.emit(outcome, message=message, figures=figures, journal=path,
                  next_command=next_command, undo_command=undo_command)
        if self.journal is not None:
            self.emit(EventName.SUMMARY, message=self.journal.data.outcome, figures=figures,
                      journal=path)

    def _overrun(self, now: float) -> None:
        ends = self.journal.data.captured.get(str(WINDOW_ENDS_AT)) if self.journal else None
        try:
            ends_at = float(ends) if ends is not None else None
        except ValueError:
            ends_at = None
        if ends_at is None or now <= ends_at:
            return
        over = round(now - ends_at, 1)
        self.emit(EventName.OVERRUN, seconds=over, figures={str(WINDOW_ENDS_AT): ends_at},
                  message=f"the run ended {over:.0f} s after its maintenance window")
