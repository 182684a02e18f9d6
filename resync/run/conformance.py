"""Did the run do what its plan said? Plan actions (values filled in) against journal records.

For every step that finished, the records of its last attempt must be its plan's leaves, in
order, with the same text once the plan's `<name>` slots are filled with the run's values; a
`when` contributes the branch the journal says it took.
"""

from __future__ import annotations

from typing import Any

from resync.actions.types import render, template_from_json
from resync.run.journal import CommandRecord, JournalData, StepState

CONTAINERS = ("hold", "composite")


def expected_leaves(actions: list[dict[str, Any]], taken: dict[str, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for action in actions:
        if action["kind"] in CONTAINERS:
            out += expected_leaves(action.get("actions", []), taken)
        elif action["kind"] == "when":
            out.append(action)
            branch = taken.get(action["id"])
            if branch is not None:
                out += expected_leaves(action.get(branch, []), taken)
        else:
            out.append(action)
    return out


def mismatches(data: JournalData) -> list[str]:
    """Every difference between the journal's plan and its records (empty: the run conformed)."""
    if data.plan is None:
        return ["the journal holds no plan"]
    problems: list[str] = []
    plan_steps = {s["key"]: s for s in data.plan["steps"]}
    for step in data.steps:
        if step.state is not StepState.DONE or step.attempts == 0:
            continue
        records = [r for r in data.commands if r.step == step.key and r.phase == "run"
                   and r.attempt == step.attempts and r.kind != "diagnose"]
        taken = {r.action: r.result or "" for r in records if r.kind == "when"}
        expected = expected_leaves(plan_steps[step.key]["actions"], taken)
        problems += _compare(step.key, expected, records, data.captured)
    return problems


def _compare(step: str, expected: list[dict[str, Any]], records: list[CommandRecord],
             captured: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for i in range(max(len(expected), len(records))):
        if i >= len(records):
            out.append(f"{step}: planned action {expected[i]['id']} was not journaled: "
                       f"{expected[i]['text']}")
            continue
        if i >= len(expected):
            out.append(f"{step}: journaled action {records[i].action} is not in the plan: "
                       f"{records[i].text}")
            continue
        plan_text = (expected[i]["text"] if expected[i]["kind"] == "when" else
                     render(template_from_json(expected[i]["template"]), captured))
        record = records[i]
        if (expected[i]["id"], expected[i]["host"], plan_text) != (record.action, record.host,
                                                                   record.text):
            out.append(f"{step}: action {expected[i]['id']} planned [{expected[i]['host']}] "
                       f"{plan_text!r}, journaled {record.action} [{record.host}] {record.text!r}")
    return out
