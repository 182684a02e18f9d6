"""The plan as a document: what `plan --format json` prints, `--out` writes and a run journals.

Its hash covers the steps and every action (templates included), not the header: a reviewed
plan binds a run when the run, rebuilt from what it detects, hashes the same.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from resync.actions.types import ActionView, views
from resync.plan.build import Plan
from resync.steps.base import Step


@dataclass(frozen=True)
class StepView:
    number: int
    key: str
    title: str
    hosts: list[str]
    destructive: bool
    why: str
    actions: list[ActionView]
    undo: list[ActionView]
    no_undo: str
    summary: str = ""  # plain words, the plan's first layer (the title when the step has none)
    notes: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"number": self.number, "key": self.key, "title": self.title, "hosts": self.hosts,
                "destructive": self.destructive, "why": self.why,
                "summary": self.summary or self.title, "notes": list(self.notes),
                "actions": [a.as_json() for a in self.actions],
                "undo": [a.as_json() for a in self.undo], "no_undo": self.no_undo}


def step_view(number: int, step: Step) -> StepView:
    return StepView(number, step.key, step.title, list(step.hosts), step.destructive, step.why,
                    views(step.plan()), views(step.undo_plan()), step.no_undo, step.summary,
                    step.notes)


def step_views(plan: Plan) -> list[StepView]:
    return [step_view(i, s) for i, s in enumerate(plan.steps, 1)]


def steps_json(plan: Plan) -> list[dict[str, Any]]:
    return [v.as_json() for v in step_views(plan)]


def plan_hash(steps: list[dict[str, Any]]) -> str:
    canonical = json.dumps(steps, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def plan_document(plan: Plan) -> dict[str, Any]:
    rb = plan.loaded.model
    steps = steps_json(plan)
    doc: dict[str, Any] = {
        "runbook": {"name": rb.name, "title": rb.title, "path": str(plan.loaded.path),
                    "sha256": plan.loaded.sha256},
        "donor": rb.donor, "recipient": rb.recipient, "primary_after": rb.primary_after,
        "replication_mode": plan.mode,
        "versions": {h: str(v) for h, v in plan.facts.versions.items()},
        "versions_source": plan.facts.source,
        "plan_sha256": plan_hash(steps),
        "steps": steps,
    }
    if plan.facts.estimate is not None:
        doc["estimate"] = plan.facts.estimate.as_values()
    return doc


def differences(reviewed: list[dict[str, Any]], current: list[dict[str, Any]]) -> list[str]:
    """What differs between two plans' steps, action by action, in words."""
    out: list[str] = []
    old = {s["key"]: s for s in reviewed}
    new = {s["key"]: s for s in current}
    for key in old.keys() - new.keys():
        out.append(f"step {key}: in the reviewed plan, not in this run's")
    for key in new.keys() - old.keys():
        out.append(f"step {key}: in this run's plan, not in the reviewed one")
    for key in [k for k in new if k in old]:
        for part in ("actions", "undo"):
            a, b = _flat(old[key][part]), _flat(new[key][part])
            for i in range(max(len(a), len(b))):
                was = a[i] if i < len(a) else "(nothing)"
                now = b[i] if i < len(b) else "(nothing)"
                if was != now:
                    out.append(f"step {key} {part[:-1] if part == 'actions' else 'undo'} #{i}:\n"
                               f"  reviewed: {was}\n  now:      {now}")
        for field in ("title", "destructive", "hosts"):
            if old[key][field] != new[key][field]:
                out.append(f"step {key} {field}: reviewed {old[key][field]!r}, now "
                           f"{new[key][field]!r}")
    return out


def _flat(actions: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for a in actions:
        out.append(f"[{a['host']}] {a['kind']}: {a['text']}")
        for child in ("actions", "then", "else"):
            out += _flat(a.get(child, []))
    return out
