"""Render a plan as text (rich), markdown (change tickets) or JSON (tools). One view, three forms."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from resync.actions.types import Action, Check, Sql
from resync.plan.build import Plan
from resync.steps.base import Step


@dataclass(frozen=True)
class ActionView:
    host: str
    kind: str  # sql | shell | check
    text: str


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


def _view(action: Action) -> ActionView:
    kind = "sql" if isinstance(action, Sql) else "check" if isinstance(action, Check) else "shell"
    return ActionView(action.host, kind, action.render())


def step_view(number: int, step: Step) -> StepView:
    return StepView(number, step.key, step.title, list(step.hosts), step.destructive, step.why,
                    [_view(a) for a in step.plan()], [_view(a) for a in step.undo_plan()])


def views(plan: Plan) -> list[StepView]:
    return [step_view(i, s) for i, s in enumerate(plan.steps, 1)]


def header(plan: Plan) -> list[tuple[str, str]]:
    rb = plan.loaded.model
    versions = ", ".join(f"{h}={v.flavor}-{v.major}.{v.minor}"
                         if plan.facts.source != "detected" and v.patch == 0 else f"{h}={v}"
                         for h, v in plan.facts.versions.items())
    source = {
        "detected": "detected from the servers",
        "given": "given with --server-version",
        "assumed": "ASSUMED (no --detect or --server-version): check before the window",
    }[plan.facts.source]
    return [
        ("runbook", f"{rb.name} ({plan.loaded.path})"),
        ("donor (good data)", f"{rb.donor} ({rb.hosts[rb.donor].address})"),
        ("recipient (rebuilt)", f"{rb.recipient} ({rb.hosts[rb.recipient].address})"),
        ("primary afterwards", f"{rb.primary_after}; replica: {rb.replica_after}"),
        ("replication", f"{plan.mode} (runbook: {rb.replication.mode})"),
        ("server versions", f"{versions} — {source}"),
        *([("stopped servers", ", ".join(sorted(plan.facts.down)) + ": not running (nothing holds "
            "its datadir open); version read from its server binary")] if plan.facts.down else []),
        ("copy", _copy_line(plan)),
        ("old datadir", f"kept at {rb.hosts[rb.recipient].datadir.rstrip('/')}.resync-<run_id> "
                        "until the operator removes it"),
        ("values in <...>", "captured while the run goes (coordinates, run id)"),
        ("estimate", plan.facts.estimate.describe() if plan.facts.estimate else
         "with --detect: datadir size and a bandwidth probe (`resync check` measures it too)"),
    ]


def _copy_line(plan: Plan) -> str:
    c = plan.loaded.model.copy_
    line = f"{c.method}, port {c.port}" if c.method == "stream" else "ssh (OpenSSH client on the donor)"
    line += f", compress {c.compress}"
    if c.compress == "none":
        line += (" (off by default: on a fast link it is slower — measured here on 2 cores: raw "
                 "~666 MB/s, zstd -1 -T0 ~195 MB/s)")
    if c.method == "stream":
        line += "; PLAINTEXT on the wire: only across trusted networks (method ssh encrypts)"
    return line


def render_header(plan: Plan, console: Console) -> None:
    meta = Table.grid(padding=(0, 2))
    for name, value in header(plan):
        meta.add_row(Text(name, style="bold"), Text(value))
    console.print(meta)


def step_panel(v: StepView, *, undo: bool = False) -> Panel:
    """One step as `plan` prints it and as `run` shows it before asking: the same panel."""
    lines = [Text(v.why, style="dim")] if v.why and not undo else []
    lines += [_action_text(a) for a in (v.undo if undo else v.actions)] or [Text("-")]
    if not undo:
        lines.append(Text("undo: ", style="bold").append(
            "; ".join(f"[{a.host}] {a.text}" for a in v.undo) if v.undo else
            "none" + (" — DESTRUCTIVE" if v.destructive else ""),
            style="magenta" if v.undo else ("bold red" if v.destructive else "dim")))
    flag = " — DESTRUCTIVE" if v.destructive and not undo else ""
    title = f"{v.number}. {'UNDO ' if undo else ''}{v.title}{flag}"
    return Panel(Text("\n").join(lines), title=title, title_align="left",
                 border_style="red" if v.destructive else "blue")


def render_text(plan: Plan, console: Console) -> None:
    render_header(plan, console)
    for v in views(plan):
        console.print(step_panel(v))


def _action_text(a: ActionView) -> Text:
    style = {"sql": "cyan", "shell": "green", "check": "italic dim"}[a.kind]
    prefix = {"sql": "sql> ", "shell": "$ ", "check": "? "}[a.kind]
    return Text(f"[{a.host}] {prefix}{a.text}", style=style)


def render_markdown(plan: Plan) -> str:
    rb = plan.loaded.model
    out = [f"# resync plan: {rb.name}", ""]
    out += [f"- **{k}**: {v}" for k, v in header(plan)]
    out.append("")
    for v in views(plan):
        flag = " — **DESTRUCTIVE**" if v.destructive else ""
        out += [f"## {v.number}. {v.title}{flag}", ""]
        if v.why:
            out += [f"_{v.why}_", ""]
        out += _md_actions(v.actions)
        if v.undo:
            out += ["Undo:", "", *_md_actions(v.undo)]
        elif v.destructive:
            out += ["Undo: none", ""]
    return "\n".join(out).rstrip() + "\n"


def _md_actions(actions: list[ActionView]) -> list[str]:
    out: list[str] = []
    for a in actions:
        if a.kind == "check":
            out.append(f"- check on `{a.host}`: {a.text}")
        else:
            lang = "sql" if a.kind == "sql" else "sh"
            out += [f"- on `{a.host}`:", "", f"  ```{lang}", f"  {a.text}", "  ```"]
    return [*out, ""]


def render_json(plan: Plan) -> str:
    rb = plan.loaded.model
    doc = {
        "runbook": {"name": rb.name, "path": str(plan.loaded.path),
                    "sha256": plan.loaded.sha256},
        "donor": rb.donor, "recipient": rb.recipient, "primary_after": rb.primary_after,
        "replication_mode": plan.mode,
        "versions": {h: str(v) for h, v in plan.facts.versions.items()},
        "versions_source": plan.facts.source,
        "steps": [asdict(v) for v in views(plan)],
    }
    return json.dumps(doc, indent=2) + "\n"
