"""Interactive runs confirm the locked phase once, before the donor's lock: no question waits
for a person while the application cannot write (issue 13)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from resync.cli.ui import TerminalUI
from resync.model.keys import StepKind
from resync.model.runbook import load_runbook
from resync.plan.build import Plan, assumed_facts, build_plan
from resync.plan.phases import lock_window
from resync.run.engine import Decision

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"


def plan_of(name: str) -> Plan:
    loaded = load_runbook(RUNBOOKS / f"{name}.yaml")
    return build_plan(loaded, assumed_facts(loaded, {}))


def walk(plan: Plan, monkeypatch: pytest.MonkeyPatch, answers: dict[int, str] | None = None,
         estimate: float | None = 1.7) -> tuple[list[str], list[Decision], str]:
    """Confirm every step in order as the engine does; returns the keys asked about (the step
    being confirmed when a question came), the decisions and the output."""
    asked: list[str] = []
    current: list[str] = []

    def ask(question: str, **_: object) -> str:
        asked.append(current[-1])
        return (answers or {}).get(len(asked), "y")

    monkeypatch.setattr("resync.cli.ui.Prompt.ask", ask)
    out = io.StringIO()
    ui = TerminalUI(Console(file=out, width=200, color_system=None), interactive=True, live=True)
    ui.number_steps(list(plan.steps))
    rb = plan.loaded.model
    window = lock_window(plan.steps, rb.donor, rb.primary_after)
    assert window is not None
    ui.lock_phase(window.keys(plan.steps), lambda: estimate)
    decisions = []
    for step in plan.steps:
        current.append(step.key)
        decisions.append(ui.confirm(step))
        if decisions[-1] is Decision.ABORT:
            break
    return asked, decisions, out.getvalue()


@pytest.mark.parametrize("name", ["rebuild-old-primary", "rebuild-replica"])
def test_no_question_while_writes_are_blocked(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_of(name)
    rb = plan.loaded.model
    window = lock_window(plan.steps, rb.donor, rb.primary_after)
    assert window is not None
    locked = window.keys(plan.steps)
    lock = next(s for s in plan.steps if s.id.kind is StepKind.READ_LOCK and s.id.subject == rb.donor)
    assert locked[0] == lock.key and locked[-1].startswith("make-writable:")
    asked, decisions, out = walk(plan, monkeypatch)
    assert all(d is Decision.RUN for d in decisions)
    in_window = [k for k in asked if k in locked]
    assert in_window == [locked[0]], "one question, at the lock step, before it runs"
    assert len(asked) == len(plan.steps) - len(locked) + 1
    assert "estimated write-downtime ~1.7 s" in out
    for key in locked:  # every step of the phase was shown before the one question
        number = [s.key for s in plan.steps].index(key) + 1
        assert f"{number}. " in out.split("the locked phase")[0]


def test_aborting_the_locked_phase_stops_before_the_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_of("rebuild-old-primary")
    rb = plan.loaded.model
    window = lock_window(plan.steps, rb.donor, rb.primary_after)
    assert window is not None
    before = [s.key for s in plan.steps].index(window.opens)
    asked, decisions, _ = walk(plan, monkeypatch, answers={before + 1: "a"})
    assert asked[-1] == window.opens
    assert decisions[-1] is Decision.ABORT and len(decisions) == before + 1


def test_without_an_estimate_the_question_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, out = walk(plan_of("rebuild-replica"), monkeypatch, estimate=None)
    assert "no estimate" in out

