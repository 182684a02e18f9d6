"""Render a plan as text (rich), markdown (change tickets) or JSON (tools). One view, three forms."""

from __future__ import annotations

import html
import json

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from resync.actions.types import ActionView
from resync.model.keys import StepKind
from resync.plan.build import Plan
from resync.plan.document import StepView, plan_document, step_views
from resync.plan.estimate import Estimate


def header(plan: Plan, plan_sha256: str | None = None) -> list[tuple[str, str]]:
    from resync.run.connect import describe_control_connections
    from resync.steps.replication import tls_header

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
        ("runbook", f"{rb.label} ({plan.loaded.path})"),
        ("donor (good data)", f"{rb.donor} ({rb.hosts[rb.donor].address})"),
        ("recipient (rebuilt)", f"{rb.recipient} ({rb.hosts[rb.recipient].address})"),
        ("primary afterwards", f"{rb.primary_after}; replica: {rb.replica_after}"),
        ("replication", f"{plan.mode} (runbook: {rb.replication.mode})"),
        *tls_header(plan.steps),
        ("control connections", describe_control_connections(plan.loaded, plan.facts.tls)),
        ("server versions", f"{versions} — {source}"),
        *([("stopped servers", ", ".join(sorted(plan.facts.down)) + ": not running (nothing holds "
            "its datadir open); version read from its server binary")] if plan.facts.down else []),
        ("copy", _copy_line(plan)),
        ("old datadir", "kept on the recipient's old data volume, detached (ebs mode swap), "
                        "until the operator removes it" if _swap(plan) else
                        f"kept at {rb.hosts[rb.recipient].datadir.rstrip('/')}.resync-<run_id> "
                        "until the operator removes it"),
        ("values in <...>", "captured while the run goes (coordinates, run id)"),
        ("estimate", plan.facts.estimate.describe() if plan.facts.estimate else
         "with --detect: the donor's volume and datadir sizes, snapshot and lock times (`resync "
         "check` shows them too)" if rb.copy_.method == "ebs" else
         "with --detect: datadir size and a bandwidth probe (`resync check` measures it too)"),
        *([("ERRANT TRANSACTIONS", "--discard-errant: transactions only the recipient has are "
            "DISCARDED from the served data (they stay in its binary logs, kept with its old "
            "datadir)")] if plan.facts.discard_errant else []),
        ("plan sha256", plan_sha256 or plan_document(plan)["plan_sha256"]),
    ]


def _swap(plan: Plan) -> bool:
    c = plan.loaded.model.copy_
    return c.method == "ebs" and c.ebs.mode == "swap"


def _copy_line(plan: Plan) -> str:
    c = plan.loaded.model.copy_
    if c.method == "ebs":
        e = c.ebs
        return (f"ebs: a snapshot of the donor's data volume (lock and "
                f"{'fsfreeze' if e.freeze else 'no freeze'} only while it starts), a "
                f"{e.volume.type} volume of it in the recipient's zone attached as {e.device}, "
                f"mode {e.mode}; the snapshot is {'kept' if e.keep_snapshot else 'deleted'} "
                "at the end; the donor keeps running" +
                ("; prewarm: not needed in mode copy (the copy reads every block once)"
                 if e.mode == "copy" and e.prewarm else "") +
                (f"; the new volume replaces the recipient's data volume ({e.fstab} rewritten)"
                 if e.mode == "swap" else ""))
    if c.method in ("mariabackup", "xtrabackup"):
        return (f"{c.method} --backup streamed host to host, port {c.port}, prepared on the "
                "recipient: the donor serves throughout (its commits wait only for the tool's "
                "short lock); PLAINTEXT on the wire: only across trusted networks")
    line = f"{c.method}, port {c.port}" if c.method == "stream" else "ssh (OpenSSH client on the donor)"
    line += f", compress {c.compress}"
    if c.compress == "none":
        line += (" (off by default: on a fast link it is slower — measured here on 2 cores: raw "
                 "~666 MB/s, zstd -1 -T0 ~195 MB/s)")
    if c.method == "stream":
        line += "; PLAINTEXT on the wire: only across trusted networks (method ssh encrypts)"
    return line


def render_header(plan: Plan, console: Console, plan_sha256: str | None = None) -> None:
    meta = Table.grid(padding=(0, 2))
    for name, value in header(plan, plan_sha256):
        meta.add_row(Text(name, style="bold"), Text(value))
    console.print(meta)


# A long action text (the copy relay's program, installed on both hosts, used by the bandwidth
# probe and by the copy) is printed in full once per plan; a repeat names the step that shows it.
LONG_TEXT = 300
FOLD_LINES = 4  # markdown folds a script of more lines (or LONG_TEXT characters) under its first
Shown = dict[str, int]  # a long action text -> the number of the step that printed it


def _once(text: str, number: int, shown: Shown | None) -> str:
    if shown is None or len(text) < LONG_TEXT:
        return text
    if text not in shown:
        shown[text] = number
        return text
    first = shown[text]
    where = "above" if first == number else f"in step {first}"
    return f"{text.splitlines()[0][:120]} … (the same text as {where}, shown there in full)"


def figures(plan: Plan, v: StepView) -> str:
    """What the estimate adds to the copy's summary: how much, how long (measured, so never part
    of the hashed plan)."""
    e = plan.facts.estimate
    if e is None or not v.key.startswith(f"{StepKind.COPY.value}:"):
        return ""
    rate = (f" at {e.bandwidth / 1e6:.0f} MB/s ({e.bandwidth_source})"
            if isinstance(e, Estimate) else " (assumed rate of a restored volume)")
    return f"; {e.datadir_bytes / 1e9:.2f} GB, ~{e.copy_seconds:.0f} s{rate}"


def step_panel(v: StepView, *, undo: bool = False, shown: Shown | None = None,
               extra: str = "") -> Panel:
    """One step as `plan` prints it and as `run` shows it before asking: the same panel.
    It leads with the summary in plain words (`extra`: the estimate's figures for it), then the
    notes, then why, then the exact actions. `shown`: long texts printed by earlier panels of the
    same plan (printed once)."""
    lines = [Text((v.summary or v.title) + extra, style="bold")] if not undo else []
    lines += [Text(note) for note in v.notes] if not undo else []
    lines += [Text(v.why, style="dim")] if v.why and not undo else []
    lines += [*_action_lines(v.undo if undo else v.actions, number=v.number, shown=shown)] \
        or [Text("-")]
    if not undo:
        if v.undo:
            lines.append(Text("undo:", style="bold magenta"))
            lines += _action_lines(v.undo, indent=1, number=v.number, shown=shown)
        else:
            lines.append(Text("undo: ", style="bold").append(
                v.no_undo or ("none" + (" — DESTRUCTIVE" if v.destructive else "")),
                style="bold red" if v.destructive else "dim"))
    flag = " — DESTRUCTIVE" if v.destructive and not undo else ""
    title = f"{v.number}. {'UNDO ' if undo else ''}{v.title}{flag}"
    return Panel(Text("\n").join(lines), title=title, title_align="left",
                 border_style="red" if v.destructive else "blue")


def render_text(plan: Plan, console: Console, *, brief: bool = False) -> None:
    """The plan; `brief`: only each step's summary and its destructive marker."""
    render_header(plan, console)
    shown: Shown = {}
    for v in step_views(plan):
        if brief:
            flag = Text(" — DESTRUCTIVE", style="bold red") if v.destructive else Text("")
            console.print(Text(f"{v.number:>2}. ", style="bold")
                          .append((v.summary or v.title) + figures(plan, v)).append(flag))
        else:
            console.print(step_panel(v, shown=shown, extra=figures(plan, v)))


_STYLE = {"sql": "cyan", "capture": "cyan", "shell": "green", "poll": "italic", "probe": "italic",
          "release": "cyan", "assert": "yellow", "when": "yellow", "check": "italic dim",
          "login": "cyan", "hold": "bold cyan", "composite": "bold green"}
_PREFIX = {"sql": "sql> ", "capture": "sql> ", "release": "sql> ", "shell": "$ ", "poll": "",
           "probe": "", "assert": "", "when": "", "check": "? ", "login": "", "hold": "",
           "composite": ""}


def action_line(a: ActionView, text: str | None = None) -> str:
    """One action as a line of text: [host] sql> ... -> captured names."""
    into = f"  → {', '.join(a.into)}" if a.into else ""
    session = f" (session {a.session})" if a.session and a.kind != "hold" else ""
    return f"[{a.host}] {_PREFIX.get(a.kind, '')}{a.text if text is None else text}{session}{into}"


def _action_lines(actions: list[ActionView], indent: int = 0, *, number: int = 0,
                  shown: Shown | None = None) -> list[Text]:
    out: list[Text] = []
    pad = "    " * indent
    for a in actions:
        out.append(Text(pad + action_line(a, _once(a.text, number, shown)),
                        style=_STYLE.get(a.kind, "")))
        out += _action_lines(a.children, indent + 1, number=number, shown=shown)
        if a.kind == "when" and (a.otherwise or a.note):
            out.append(Text(pad + "  otherwise:" + (f" {a.note}" if a.note and not a.otherwise
                                                     else ""), style="yellow"))
            out += _action_lines(a.otherwise, indent + 1, number=number, shown=shown)
    return out


def render_markdown(plan: Plan) -> str:
    rb = plan.loaded.model
    out = [f"# resync plan: {rb.label}", ""]
    out += [f"- **{k}**: {v}" for k, v in header(plan)]
    out.append("")
    shown: Shown = {}
    for v in step_views(plan):
        flag = " — **DESTRUCTIVE**" if v.destructive else ""
        out += [f"## {v.number}. {v.title}{flag}", ""]
        if v.summary:
            out += [f"**{v.summary}{figures(plan, v)}**", ""]
        if v.notes:
            out += [*(f"- {note}" for note in v.notes), ""]
        if v.why:
            out += [f"_{v.why}_", ""]
        out += _md_actions(v.actions, number=v.number, shown=shown)
        if v.undo:
            out += ["Undo:", "", *_md_actions(v.undo, number=v.number, shown=shown)]
        elif v.no_undo or v.destructive:
            out += [f"Undo: {v.no_undo or 'none'}", ""]
    return "\n".join(out).rstrip() + "\n"


def _md_actions(actions: list[ActionView], depth: int = 0, *, number: int = 0,
                shown: Shown | None = None) -> list[str]:
    out: list[str] = []
    pad = "  " * depth
    for a in actions:
        if a.kind in ("sql", "capture", "release", "shell"):
            lang = "sh" if a.kind == "shell" else "sql"
            into = f" → {', '.join(a.into)}" if a.into else ""
            session = f" (session `{a.session}`)" if a.session else ""
            text = _once(a.text, number, shown)
            out += [f"{pad}- on `{a.host}`{session}{into}:", ""]
            if len(text) >= LONG_TEXT or text.count("\n") >= FOLD_LINES:
                # folded under its first line: a reviewer opens it, the ticket stays readable
                first = html.escape(text.splitlines()[0][:100], quote=False)
                out += [f"{pad}  <details><summary><code>{first}</code> … "
                        f"({_lines(text)}, {len(text)} characters)</summary>", ""]
                out += [f"{pad}  ```{lang}", f"{pad}  {text}", f"{pad}  ```", "",
                        f"{pad}  </details>"]
            else:
                out += [f"{pad}  ```{lang}", f"{pad}  {text}", f"{pad}  ```"]
        elif a.kind in ("hold", "composite"):
            out.append(f"{pad}- on `{a.host}`: {a.text}:")
        else:  # the text says what it is: poll, check, assert, when, probe, log in
            out.append(f"{pad}- on `{a.host}`: {a.text}")
        out += _md_actions(a.children, depth + 1, number=number, shown=shown)
        if a.kind == "when" and (a.otherwise or a.note):
            out.append(f"{pad}  - otherwise: {a.note}" if a.note and not a.otherwise
                       else f"{pad}  - otherwise:")
            out += _md_actions(a.otherwise, depth + 2, number=number, shown=shown)
    return out if depth else [*out, ""]


def _lines(text: str) -> str:
    n = text.count("\n") + 1
    return f"{n} line{'s' if n != 1 else ''}"


def render_json(plan: Plan) -> str:
    return json.dumps(plan_document(plan), indent=2) + "\n"
