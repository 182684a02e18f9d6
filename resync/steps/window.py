"""The window gate: a run starts only inside its maintenance window and when its estimate fits.

`WindowGate` comes right after the preflight (whose measurements it reads: the donor's datadir
size, the copy bandwidth, the EBS volume) and before the maintenance page goes on: a refusal
(exit 3) leaves everything as it was. `WindowRecheck` comes at the point of no return, right
before the recipient's datadir is moved aside (the EBS copy's mode swap: right before the
recipient is checked again, the donor not yet locked): what is left of the run, against the
time left now that the steps before it have taken what they took. After it nothing stops for
time: a run that ends after its window has overrun, and says so.

Both are data like every step: one composite whose single record is the decision, with the
window, the margin and the figures in its text. The time of day comes from the executor's
clock (`resync.window.clock.now_of`), so tests inject it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from resync.actions.types import Action, Captured, Composite, Fmt, Leaf, Slot, Template
from resync.model.keys import WINDOW_ENDS_AT, Key, StepId, StepKind
from resync.model.runbook import LoadedRunbook, Runbook
from resync.model.window import WindowSettings
from resync.run.executor import CompositeRun
from resync.steps.base import Step
from resync.window.clock import now_of
from resync.window.figures import NotEstimable, run_figures
from resync.window.fit import Fit, WindowRefused
from resync.window.occurrences import state_at

Point = Literal["gate", "recheck"]


@dataclass(frozen=True)
class WindowKeys:
    """The values one check captures: `window.gate.*` or `window.recheck.*`."""

    point: Point

    def key(self, name: str) -> Key:
        return Key(f"window.{self.point}.{name}")

    @property
    def left(self) -> Key:
        return self.key("seconds_left")

    @property
    def needed(self) -> Key:
        return self.key("needed_seconds")

    @property
    def decision(self) -> Key:
        return self.key("decision")


@dataclass(frozen=True)
class WindowVerdict(Leaf):
    """The decision (one journal record): its criterion, then the figures it was made on."""

    point: Point
    criterion: str
    host: str = "-"
    kind = "window"

    def template(self) -> Template:
        keys = WindowKeys(self.point)
        return (f"check {self.criterion}: needs ", Slot(keys.needed, Fmt.TEXT), " s, ",
                Slot(keys.left, Fmt.TEXT), " s left")

    def outputs(self) -> tuple[Key, ...]:
        keys = WindowKeys(self.point)
        return (keys.left, keys.needed, keys.decision, WINDOW_ENDS_AT)


@dataclass(frozen=True)
class Decision:
    ok: bool
    detail: str
    values: dict[Key, str | int | float]


def decide(point: Point, rb: Runbook, settings: WindowSettings, captured: Captured,
           now: datetime) -> Decision:
    """The gate's (or the recheck's) verdict at `now` over the run's captured figures."""
    keys = WindowKeys(point)
    state = state_at(settings, now)
    if state.phase != "inside" or state.window is None:
        refused = ("the run cannot start" if point == "gate"
                   else "refusing to cross the point of no return")
        detail = f"{refused}: {state.describe()}"
        return Decision(False, detail, {keys.left: 0, keys.needed: "-", keys.decision: "outside"})
    left = state.seconds_left
    try:
        figures = run_figures(captured, rb, at_point_of_no_return=point == "recheck")
    except NotEstimable as exc:
        return Decision(False, f"no estimate to check against the window: {exc}",
                        {keys.left: round(left), keys.needed: "-", keys.decision: "no estimate"})
    fit = Fit(figures, settings.margin, left)
    values: dict[Key, str | int | float] = {
        keys.left: round(left), keys.needed: round(fit.needed),
        keys.key("estimate_seconds"): round(figures.total, 1),
        keys.key("write_downtime_seconds"): round(figures.write_downtime, 1),
        keys.decision: "fits" if fit.fits else "does not fit"}
    if fit.fits:  # the recheck's own: a run resumed in a later window ends by that one
        values[WINDOW_ENDS_AT] = int(state.window.end.timestamp())
    where = "ahead of the run" if point == "gate" else "left at the point of no return"
    detail = (f"{state.describe()}; {fit.describe()} ({where}: {figures.describe()})")
    return Decision(fit.fits, detail, values)


class WindowCheck(Composite):
    def __init__(self, rb: Runbook, settings: WindowSettings, point: Point) -> None:
        self.rb, self.settings, self.point = rb, settings, point
        self.host = "-"
        margin = f"{settings.margin * 100:g}%"
        if point == "gate":
            criterion = (f"now inside the window {settings.describe()}, and the estimated "
                         f"write-downtime and whole run (preflight's datadir size and bandwidth), "
                         f"each + {margin}, fit the time left")
        else:
            criterion = (f"still inside the window {settings.describe()}, and what is left of "
                         f"the run (figures measured so far) + {margin} fits the time left; "
                         "after this nothing stops for time")
        self.verdict = WindowVerdict(point, criterion)
        self.title = f"the maintenance window ({'gate' if point == 'gate' else 'checked again'})"

    def parts(self) -> tuple[Leaf, ...]:
        return (self.verdict,)

    def execute(self, run: CompositeRun) -> None:
        started = time.monotonic()
        decision = decide(self.point, self.rb, self.settings, run.captured, now_of(run.clock)())
        for key, value in decision.values.items():
            run.capture(key, value)
        run.record(0, decision.ok, started, decision.detail)
        if not decision.ok:
            raise WindowRefused(f"window: {decision.detail}; nothing was changed by this step")


class WindowGate(Step):
    no_undo = "read-only: nothing to undo"

    def __init__(self, rb: Runbook, settings: WindowSettings) -> None:
        self.check = WindowCheck(rb, settings, "gate")
        self.id = StepId(StepKind.WINDOW_GATE)
        self.title = f"Window gate: {settings.describe()}"
        self.why = ("read-only: refuses the run (exit 3) outside the window, or when the "
                    "estimate with its margin does not fit the time left; nothing has changed "
                    "yet")

    def plan(self) -> tuple[Action, ...]:
        return (self.check,)


class WindowRecheck(Step):
    no_undo = "read-only: nothing to undo"

    def __init__(self, rb: Runbook, settings: WindowSettings) -> None:
        self.check = WindowCheck(rb, settings, "recheck")
        self.id = StepId(StepKind.WINDOW_RECHECK)
        self.title = f"Window checked again at the point of no return: {settings.describe()}"
        self.why = ("read-only: the last moment a refusal leaves the recipient's data in place "
                    "(refused: exit 3, `resync rollback` or resume in the next window); after "
                    "it the run finishes even past the window's end (an overrun)")

    def plan(self) -> tuple[Action, ...]:
        return (self.check,)


# where the recheck goes: before the first of these (the datadir moved aside; the EBS mode
# swap's own recheck of the recipient, which precedes the donor's lock and snapshot)
POINT_OF_NO_RETURN = (StepKind.MOVE_DATADIR, StepKind.ERRANT_RECHECK)


def with_window(steps: list[Step], loaded: LoadedRunbook) -> list[Step]:
    """`steps` with the window's gate after the preflight and its recheck before the point of
    no return; unchanged when the runbook has no `window:`."""
    rb = loaded.model
    settings = rb.window
    if settings is None:
        return steps
    out: list[Step] = []
    recheck: Step | None = WindowRecheck(rb, settings)
    for step in steps:
        if recheck is not None and step.id.kind in POINT_OF_NO_RETURN:
            out.append(recheck)
            recheck = None
        out.append(step)
        if step.id.kind is StepKind.PREFLIGHT:
            out.append(WindowGate(rb, settings))
    return out
