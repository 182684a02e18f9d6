"""Who hears about a run: the terminal (which also asks the questions), the `--log-json` file
and the runbook's notifications, all listeners of one `RunEvents`.

Opened before anything is detected, so that a run refused before its journal exists (preflight
could not connect, a reviewed plan differs) is notified too; closed at the end, waiting a
bounded time for the notifications to go out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from resync.cli.ui import TerminalUI
from resync.model.errors import Aborted, GateRefused, ResyncError
from resync.model.runbook import LoadedRunbook
from resync.notify.build import notifier_for
from resync.notify.jsonlog import JsonLog
from resync.plan.build import Plan
from resync.plan.estimate import Estimate
from resync.plan.phases import lock_window
from resync.run.events import (
    EventName,
    Listener,
    PhaseClock,
    RunEvents,
    resume_command,
    rollback_command,
)
from resync.run.figures import downtime_estimate
from resync.run.journal import Journal, StepState

PROGRESS_EVERY = 10.0  # seconds between two progress events (log lines, plain output)


@dataclass
class Audience:
    ui: TerminalUI
    events: RunEvents

    def attach(self, journal: Journal, plan: Plan, *, rollback: bool) -> Journal:
        """The run's journal is there: `start` goes out; the journal returned tells the events
        about each action. A rollback has no phases (its steps run backwards)."""
        self.ui.number_steps(list(plan.steps))
        rb = plan.loaded.model
        window = lock_window(plan.steps, rb.donor, rb.primary_after)
        if window is not None:
            self.ui.lock_phase(window.keys(plan.steps), lambda: _seconds(downtime_estimate(journal, plan)))
        phases = None if rollback else PhaseClock.of(plan.steps, rb.donor, rb.primary_after)
        begun = any(s.state is not StepState.PENDING for s in journal.data.steps)
        message = "rollback started" if rollback else "resumed" if begun else "run started"
        return self.events.attach(journal, phases, message)

    def failed(self, exc: ResyncError, journal: Path) -> None:
        """A step failed, the operator aborted, or a gate refused after the run changed
        something: what to run next goes with it."""
        path = journal.resolve()
        self.events.finished(EventName.REFUSED if isinstance(exc, GateRefused)
                             else EventName.FAILURE, str(exc),
                             next_command=resume_command(path), undo_command=rollback_command(path))


def _seconds(estimate: Estimate | None) -> float | None:
    return None if estimate is None else estimate.write_downtime_seconds


@contextmanager
def open_audience(loaded: LoadedRunbook, console: Console, *, yes: bool, rollback: bool = False,
                  log_json: Path | None = None,
                  progress_every: float = PROGRESS_EVERY) -> Iterator[Audience]:
    from resync.run.runner import runbook_secrets

    secrets = runbook_secrets(loaded)  # the webhook URLs among them
    ui = TerminalUI(console, interactive=not yes, undo=rollback)
    listeners: list[Listener] = [ui]
    if log_json is not None:
        listeners.append(JsonLog(log_json))
    notifier = notifier_for(loaded, secrets)
    if notifier is not None:
        listeners.append(notifier)
    events = RunEvents(loaded.model.name, listeners, secrets=secrets,
                       progress_every=progress_every,
                       live_progress=ui.progress if ui.live else None)
    try:
        yield Audience(ui, events)
    except GateRefused as exc:  # one the run did not report itself: before its journal
        events.finished(EventName.REFUSED, str(exc))
        raise
    except BaseException as exc:
        message = str(exc) or type(exc).__name__
        if isinstance(exc, KeyboardInterrupt | Aborted):
            message = f"aborted: {message}"
        journal = events.journal.path.resolve() if events.journal else None
        again = rollback_command if rollback else resume_command
        events.finished(EventName.FAILURE, message,
                        next_command=again(journal) if journal else None,
                        undo_command=rollback_command(journal) if journal and not rollback
                        else None)
        raise
    finally:
        events.close()
