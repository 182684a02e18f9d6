"""The step contract: an id, the hosts it touches, the actions it runs and the actions that undo it.

A step is data: `plan()` is what runs, `undo_plan()` is what a rollback runs, both rendered by
`resync plan` exactly as the executor will send them. There is no hand-written run() to drift
from its plan. A step's plan is safe to run again from its start: a resumed run does that with
a step the previous process left unfinished.
"""

from __future__ import annotations

from resync.actions.types import Action
from resync.model.keys import StepId


class Step:
    id: StepId
    title: str = ""
    hosts: tuple[str, ...] = ()
    destructive: bool = False
    why: str = ""  # one line for the plan: why this step exists
    # the plan's first layer, in plain words: what moves from where to where (default: the title);
    # figures that are measured (sizes, rates) are added by the renderer, never hashed here
    summary: str = ""
    notes: tuple[str, ...] = ()  # lines a reviewer reads before the exact actions (e.g. exclusions)
    no_undo: str = ""  # what the plan says when undo_plan() is empty
    # a lock this step leaves held on a named session, and the step after which it is not needed:
    # a resumed run redoes this step if the session died with the previous process before then
    holds_session: str | None = None
    released_by: StepId | None = None

    @property
    def key(self) -> str:
        return str(self.id)

    def plan(self) -> tuple[Action, ...]:
        return ()

    def undo_plan(self) -> tuple[Action, ...]:
        """Actions that undo this step; empty when it cannot (or need not) be undone."""
        return ()
