"""The engine: runs planned steps in order with confirmation, journaling every transition.

Run and resume are one loop: steps done in the journal are passed over; every other step is
confirmed and its planned actions are run from the start (a step's plan is safe to repeat).
Rollback runs the planned undo actions of the steps that ran, in reverse order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from typing import Protocol

from resync.model.errors import Aborted, GateRefused, ResyncError, StepFailed
from resync.run.executor import Executor
from resync.run.journal import Journal, StepState
from resync.steps.base import Step


class Decision(Enum):
    RUN = "run"
    SKIP = "skip"
    ABORT = "abort"


Confirm = Callable[[Step], Decision]


def always_run(step: Step) -> Decision:
    return Decision.RUN


class Events(Protocol):
    def step_started(self, step: Step) -> None: ...
    def step_finished(self, step: Step, state: StepState, note: str | None) -> None: ...


class QuietEvents:
    def step_started(self, step: Step) -> None:
        pass

    def step_finished(self, step: Step, state: StepState, note: str | None) -> None:
        pass


class Engine:
    def __init__(self, steps: Sequence[Step], journal: Journal, executor: Executor,
                 confirm: Confirm = always_run, events: Events | None = None,
                 must_run: Callable[[Step], bool] = lambda step: False) -> None:
        self.steps = list(steps)
        self.journal = journal
        self.executor = executor
        self.confirm = confirm
        self.events = events or QuietEvents()
        self.must_run = must_run  # steps the operator may not skip (preflight)

    def run(self) -> None:
        try:
            for step in self.steps:
                self._run_one(step)
            self.journal.finish("done")
        except Aborted:
            self.journal.finish("aborted")
            raise
        except KeyboardInterrupt:  # Ctrl-C between two steps (during one: _run_one's own)
            self.journal.finish("aborted")
            raise Aborted("aborted by the operator (Ctrl-C) between two steps") from None
        except (StepFailed, GateRefused):
            self.journal.finish("failed")
            raise
        finally:
            self.executor.close()

    def _run_one(self, step: Step) -> None:
        record = self.journal.step(step.key)
        if record.state is StepState.SKIPPED:
            return
        if record.state is StepState.DONE:
            if not self._lost_with_previous_process(step):
                return
            self.journal.transition(step.key, StepState.PENDING,
                                    note="redone: its lock died with the previous process")
        decision = self.confirm(step)
        if decision is Decision.ABORT:
            raise Aborted(f"aborted by the operator before step '{step.key}'")
        if decision is Decision.SKIP:
            if self.must_run(step):
                raise Aborted(f"step '{step.key}' cannot be skipped: the run stops here "
                              "(nothing was changed by it)")
            self.journal.transition(step.key, StepState.SKIPPED, note="skipped by the operator")
            self.events.step_finished(step, StepState.SKIPPED, "skipped by the operator")
            return
        self.journal.transition(step.key, StepState.RUNNING)
        self.executor.begin(step.key, attempt=self.journal.step(step.key).attempts)
        self.events.step_started(step)
        try:
            self.executor.run(step.plan())
        except KeyboardInterrupt:
            self.journal.transition(step.key, StepState.FAILED,
                                    error="aborted by the operator (Ctrl-C)")
            raise Aborted(f"aborted by the operator (Ctrl-C) during step '{step.key}'") from None
        except GateRefused as exc:  # a gate refusing is not a failure: nothing was changed
            self.journal.transition(step.key, StepState.FAILED, error=str(exc))
            self.events.step_finished(step, StepState.FAILED, str(exc))
            raise
        except ResyncError as exc:
            self._fail(step, str(exc))
        except Exception as exc:  # an unexpected bug still leaves a journal that names the step
            self._fail(step, f"{type(exc).__name__}: {exc}")
        finally:
            self.executor.begin("-")
        self.journal.transition(step.key, StepState.DONE)
        self.events.step_finished(step, StepState.DONE, None)

    def _lost_with_previous_process(self, step: Step) -> bool:
        """A done step whose lock lived in a session of a process that is gone must be redone if
        the step that ends its need has not run yet: otherwise writes could slip between the
        coordinates captured under the lock and the copy."""
        if step.holds_session is None or step.released_by is None:
            return False
        if self.executor.holds(step.holds_session):
            return False
        return self.journal.step(str(step.released_by)).state is not StepState.DONE

    def _fail(self, step: Step, cause: str) -> None:
        self.journal.transition(step.key, StepState.FAILED, error=cause)
        self.events.step_finished(step, StepState.FAILED, cause)
        raise StepFailed(step.key, cause)

    def rollback(self) -> list[str]:
        """Undo the steps that ran, in reverse order. Returns the keys of those with no undo."""
        not_undoable: list[str] = []
        try:
            for step in reversed(self.steps):
                record = self.journal.step(step.key)
                if record.state not in (StepState.DONE, StepState.FAILED, StepState.RUNNING):
                    continue
                actions = step.undo_plan()
                if not actions:
                    not_undoable.append(step.key)
                    continue
                decision = self.confirm(step)
                if decision is Decision.ABORT:
                    raise Aborted(f"rollback aborted by the operator at step '{step.key}'")
                if decision is Decision.SKIP:
                    continue
                self.executor.begin(step.key, phase="undo")
                self.events.step_started(step)
                try:
                    self.executor.run(actions)
                except ResyncError as exc:
                    self.journal.transition(step.key, record.state, error=f"undo failed: {exc}")
                    raise StepFailed(step.key, f"undo failed: {exc}") from None
                finally:
                    self.executor.begin("-")
                self.journal.transition(step.key, StepState.UNDONE, note="rolled back")
                self.events.step_finished(step, StepState.UNDONE, "rolled back")
            self.journal.finish("rolled back")
        finally:
            self.executor.close()
        return not_undoable
