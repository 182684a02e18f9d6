"""The engine: runs planned steps in order with confirmation, journaling every transition.

Run and resume are one loop: steps already done in the journal are passed over; every other step
is observed first (its effect may already be in place after a crash) and then confirmed and run.
Rollback runs undo() of the done steps in reverse order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from typing import Protocol

from resync.model.errors import Aborted, GateRefused, ResyncError, StepFailed
from resync.run.journal import Journal, StepState
from resync.steps.base import Step, StepContext


class Decision(Enum):
    RUN = "run"
    SKIP = "skip"
    ABORT = "abort"


Confirm = Callable[[Step], Decision]


def always_run(step: Step) -> Decision:
    return Decision.RUN


class EngineContext(StepContext, Protocol):
    def begin_step(self, key: str | None) -> None: ...
    def close(self) -> None: ...


class Events(Protocol):
    def step_started(self, step: Step) -> None: ...
    def step_finished(self, step: Step, state: StepState, note: str | None) -> None: ...


class QuietEvents:
    def step_started(self, step: Step) -> None:
        pass

    def step_finished(self, step: Step, state: StepState, note: str | None) -> None:
        pass


def check_journal_matches(journal: Journal, steps: Sequence[Step], runbook_sha256: str) -> None:
    if journal.data.runbook_sha256 != runbook_sha256:
        raise ResyncError(
            f"the runbook {journal.data.runbook_path} changed since this run started "
            "(sha256 differs): refusing to resume or roll back with different instructions")
    planned = [s.key for s in steps]
    journaled = [s.key for s in journal.data.steps]
    if planned != journaled:
        raise ResyncError("the plan built now differs from the journal's steps: refusing "
                          f"(journal: {journaled}, now: {planned})")


class Engine:
    def __init__(self, steps: Sequence[Step], journal: Journal, ctx: EngineContext,
                 confirm: Confirm = always_run, events: Events | None = None) -> None:
        self.steps = list(steps)
        self.journal = journal
        self.ctx = ctx
        self.confirm = confirm
        self.events = events or QuietEvents()

    def run(self) -> None:
        try:
            for step in self.steps:
                self._run_one(step)
            self.journal.finish("done")
        except Aborted:
            self.journal.finish("aborted")
            raise
        except (StepFailed, GateRefused):
            self.journal.finish("failed")
            raise
        finally:
            self.ctx.begin_step(None)
            self.ctx.close()

    def _run_one(self, step: Step) -> None:
        record = self.journal.step(step.key)
        if record.state is StepState.SKIPPED:
            return
        if record.state is StepState.DONE:
            if not self._lost_with_previous_process(step):
                return
            self.journal.transition(step.key, StepState.PENDING,
                                    note="redone: its lock died with the previous process")
        self.ctx.begin_step(step.key)
        try:
            already = step.observe(self.ctx)
        except ResyncError as exc:
            self._fail(step, f"observing: {exc}")
        except Exception as exc:
            self._fail(step, f"observing: {type(exc).__name__}: {exc}")
        if already:
            self.journal.transition(step.key, StepState.DONE, note="already in place")
            self.events.step_finished(step, StepState.DONE, "already in place")
            return
        decision = self.confirm(step)
        if decision is Decision.ABORT:
            raise Aborted(f"aborted by the operator before step '{step.key}'")
        if decision is Decision.SKIP:
            self.journal.transition(step.key, StepState.SKIPPED, note="skipped by the operator")
            self.events.step_finished(step, StepState.SKIPPED, "skipped by the operator")
            return
        self.journal.transition(step.key, StepState.RUNNING)
        self.events.step_started(step)
        try:
            step.run(self.ctx)
            step.verify(self.ctx)
        except KeyboardInterrupt:
            self.journal.transition(step.key, StepState.FAILED, error="interrupted (Ctrl-C)")
            raise Aborted(f"interrupted during step '{step.key}'") from None
        except GateRefused as exc:  # a gate refusing is not a failure: nothing was changed
            self.journal.transition(step.key, StepState.FAILED, error=str(exc))
            self.events.step_finished(step, StepState.FAILED, str(exc))
            raise
        except ResyncError as exc:
            self._fail(step, str(exc))
        except Exception as exc:  # an unexpected bug still leaves a journal that names the step
            self._fail(step, f"{type(exc).__name__}: {exc}")
        self.journal.transition(step.key, StepState.DONE)
        self.events.step_finished(step, StepState.DONE, None)

    def _lost_with_previous_process(self, step: Step) -> bool:
        """A done step whose effect lived in a connection of a process that is gone (a read lock)
        must be redone if the step that ends its need has not run yet: otherwise writes could
        slip between coordinates captured under the lock and the copy."""
        if step.released_by is None or step.in_effect(self.ctx):
            return False
        return self.journal.step(step.released_by).state is not StepState.DONE

    def _fail(self, step: Step, cause: str) -> None:
        self.journal.transition(step.key, StepState.FAILED, error=cause)
        self.events.step_finished(step, StepState.FAILED, cause)
        raise StepFailed(step.key, cause)

    def rollback(self) -> list[str]:
        """Undo done steps in reverse order. Returns the keys of steps that could not be undone."""
        not_undoable: list[str] = []
        try:
            for step in reversed(self.steps):
                record = self.journal.step(step.key)
                if record.state not in (StepState.DONE, StepState.FAILED, StepState.RUNNING):
                    continue
                if not step.undo_plan():
                    not_undoable.append(step.key)
                    continue
                decision = self.confirm(step)
                if decision is Decision.ABORT:
                    raise Aborted(f"rollback aborted by the operator at step '{step.key}'")
                if decision is Decision.SKIP:
                    continue
                self.ctx.begin_step(step.key)
                self.events.step_started(step)
                try:
                    step.undo(self.ctx)
                except ResyncError as exc:
                    self.journal.transition(step.key, record.state, error=f"undo failed: {exc}")
                    raise StepFailed(step.key, f"undo failed: {exc}") from None
                self.journal.transition(step.key, StepState.UNDONE, note="rolled back")
                self.events.step_finished(step, StepState.UNDONE, "rolled back")
            self.journal.finish("rolled back")
        finally:
            self.ctx.begin_step(None)
            self.ctx.close()
        return not_undoable
