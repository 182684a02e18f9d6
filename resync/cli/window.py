"""`resync window RUNBOOK`: the next maintenance windows, in the window's zone and in UTC.
`resync check RUNBOOK --window [--format json]`: go/no-go for the next window, ahead of time.

The check runs the preflight as `check` does (it measures the donor's datadir and the link, as
the run's preflight will), then answers whether the run fits the next window's length with the
window's margin, phase by phase, and whether the donor keeps its binary logs long enough where
the replica must catch up from them. Exit 0: go; 3: no-go (the reasons are listed); 2: bad input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from datetime import datetime

    from rich.console import Console

    from resync.actions.types import Captured
    from resync.model.runbook import LoadedRunbook
    from resync.model.window import WindowSettings
    from resync.plan.build import Plan
    from resync.steps.preflight.checks import CheckResult
    from resync.window.occurrences import Occurrence

RUNBOOK = click.argument("runbook", type=click.Path(dir_okay=False))


@click.command("window")
@RUNBOOK
@click.option("--count", default=5, show_default=True, type=click.IntRange(1, 200),
              help="how many windows to list")
def window(runbook: str, count: int) -> None:
    """The runbook's next maintenance windows, local and UTC, with daylight-saving flags."""
    from resync.cli.commands import _guard

    _guard(_show_windows)(runbook, count)


def _settings(loaded: LoadedRunbook) -> WindowSettings:
    from resync.model.errors import BadInputError

    if loaded.model.window is None:
        raise BadInputError(f"{loaded.path} has no window: section (start or cron, duration, "
                            "timezone, margin): see runbooks/rebuild-replica-window.yaml")
    return loaded.model.window


def _show_windows(runbook: str, count: int) -> None:
    from rich.markup import escape
    from rich.table import Table

    from resync.cli.commands import _console, _load
    from resync.window.clock import system_now
    from resync.window.occurrences import state_at, windows

    loaded = _load(runbook)
    settings = _settings(loaded)
    now = system_now()
    console = _console()
    console.print(f"window of {escape(loaded.model.label)}: {escape(settings.describe())}",
                  soft_wrap=True)
    console.print(f"now {now.astimezone(settings.zone):%a %Y-%m-%d %H:%M %Z} ({now:%H:%M} UTC): "
                  f"{escape(state_at(settings, now).describe())}", soft_wrap=True)
    found = windows(settings, now, count)
    if not found:
        console.print("no window ahead: its only start is over")
        return
    table = Table()
    for column in ("#", f"start ({settings.timezone})", "end", "start (UTC)", "end (UTC)", "note"):
        table.add_column(column)
    for i, occurrence in enumerate(found, 1):
        table.add_row(str(i), *_row(occurrence))
    console.print(table)


def _row(o: Occurrence) -> tuple[str, str, str, str, str]:
    from rich.markup import escape

    note = o.placed.note()
    if not o.exists:
        return (f"{o.placed.wall:%a %Y-%m-%d %H:%M}", "-", "-", "-",
                f"[bold red]DOES NOT EXIST[/bold red]: {escape(note)}; no run starts in it")
    return (f"{o.local_start:%a %Y-%m-%d %H:%M %Z}", f"{o.local_end:%a %Y-%m-%d %H:%M %Z}",
            f"{o.start:%Y-%m-%d %H:%M}", f"{o.end:%Y-%m-%d %H:%M}",
            f"[yellow]{escape(note)}[/yellow]" if note else "")


# -- check --window ---------------------------------------------------------------------------


def check_window(runbook: str, fmt: str, *, window: bool) -> None:
    import json

    from resync.cli.commands import _console, _load
    from resync.model.errors import BadInputError, GateRefused, PreflightFailed
    from resync.model.keys import StepKind
    from resync.run.runner import detected_plan, run_scratch
    from resync.steps.preflight import results_of
    from resync.window.clock import system_now

    if not window:
        raise BadInputError("--format goes with --window (the preflight's own table is text)")
    loaded = _load(runbook, secrets=True)
    _settings(loaded)  # no window: bad input before anything connects
    now = system_now()
    plan = detected_plan(loaded)
    preflight = plan.step(StepKind.PREFLIGHT)
    assert preflight is not None
    # a failed check does not end it here: the answer lists it with the rest
    captured, _ = run_scratch(loaded, preflight.key, preflight.plan(), stopped_by=PreflightFailed)
    results = results_of(captured)
    doc = go_no_go(loaded, plan, dict(captured), results, now)
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2))
    else:
        _print_answer(_console(), loaded, results, doc)
    if not doc["go"]:
        raise GateRefused("does not fit the next window: " + "; ".join(doc["reasons"]))


def go_no_go(loaded: LoadedRunbook, plan: Plan, values: dict[str, Any],
             results: list[CheckResult], now: datetime) -> dict[str, Any]:
    """The answer as a document (what `--format json` prints)."""
    from resync.window.figures import NotEstimable, run_figures
    from resync.window.fit import Fit
    from resync.window.horizon import catch_up_reason, judge_horizon
    from resync.window.occurrences import state_at

    rb = loaded.model
    settings = _settings(loaded)
    reasons = [f"preflight: {r.name}: {r.detail}" for r in results if not r.ok]
    try:
        figures = run_figures(values, rb)
    except NotEstimable:  # the preflight stopped before its probe: measure on its own
        values.update(_measure_link(loaded, plan))
        try:
            figures = run_figures(values, rb)
        except NotEstimable as exc:
            figures = None
            reasons.append(f"no estimate: {exc}")
    state = state_at(settings, now)
    upcoming = state.window if state.phase != "after" else None
    if upcoming is None:
        reasons.append(f"no window ahead: {state.describe()}")
    fit = Fit(figures, settings.margin, settings.seconds) if figures is not None else None
    if fit is not None and not fit.fits:
        reasons.append(fit.describe())
    retention = _retention(loaded, plan) if catch_up_reason(rb) else None
    horizon = judge_horizon(rb, retention, settings.seconds, figures.total if figures else 0.0)
    if not horizon.ok:
        reasons.append(f"binary log horizon: {horizon.describe()}")
    return {
        "runbook": {"name": rb.name, "title": rb.title, "path": str(loaded.path)},
        "checked_at": now.isoformat(),
        "window": {"start": settings.start.isoformat() if settings.start else None,
                   "cron": settings.cron, "timezone": settings.timezone,
                   "duration_seconds": settings.seconds, "margin": settings.margin,
                   "describe": settings.describe()},
        "next_window": {**upcoming.as_json(), "in_progress": state.phase == "inside",
                        "seconds_until_start": round(state.seconds_until_start),
                        "seconds_left": round(state.seconds_left)} if upcoming else None,
        "skipped_windows": [o.as_json() for o in state.skipped],
        "preflight": {"ok": all(r.ok for r in results) and bool(results),
                      "failures": [{"check": r.name, "detail": r.detail}
                                   for r in results if not r.ok]},
        "estimate": figures.as_json() if figures else None,
        "fit": {**fit.as_json(), "describe": fit.describe()} if fit else None,
        "binlog_horizon": {**horizon.as_json(), "describe": horizon.describe()},
        "go": not reasons,
        "reasons": reasons,
    }


def _measure_link(loaded: LoadedRunbook, plan: Plan) -> Captured:
    """The donor's datadir size and the link's rate, measured alone (what `plan --detect`
    does); nothing when they cannot be (the preflight's failures say why)."""
    from resync.model.errors import ResyncError
    from resync.run.runner import measure_estimate, scratch_executor

    exe = scratch_executor(loaded)
    try:
        measure_estimate(exe, plan)
    except ResyncError:
        pass
    finally:
        exe.close()
    return exe.captured


def _retention(loaded: LoadedRunbook, plan: Plan) -> float | None:
    """The donor's binary log retention in seconds (0: never purged); None if unreadable."""
    from resync.actions.types import Capture
    from resync.model.errors import ResyncError
    from resync.model.keys import Key
    from resync.run.runner import run_scratch

    donor = loaded.model.donor
    key = Key(f"window.{donor}.binlog_retention_seconds")
    statement = plan.dialect(donor).binlog_retention()
    try:
        captured, _ = run_scratch(loaded, "binlog-horizon",
                                  [Capture(donor, statement.sql, columns=(("seconds", key),))])
    except ResyncError:
        return None
    value = captured.get(str(key))
    return None if value is None else float(str(value))


def _print_answer(console: Console, loaded: LoadedRunbook, results: list[CheckResult],
                  doc: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from resync.cli.ui import preflight_overview
    from resync.window.zones import format_span

    preflight_overview(console, loaded.model.label, results)
    lines = [("window", doc["window"]["describe"])]
    upcoming = doc["next_window"]
    if upcoming is not None:
        when = (f"in progress, {format_span(upcoming['seconds_left'])} left"
                if upcoming["in_progress"]
                else f"starts in {format_span(upcoming['seconds_until_start'])}")
        lines.append(("next window", f"{upcoming['describe']}, {when}"
                      + (f"; {upcoming['note']}" if upcoming["note"] else "")))
    for skipped in doc["skipped_windows"]:
        lines.append(("skipped", skipped["note"]))
    if doc["estimate"] is not None:
        e = doc["estimate"]
        phases = ", ".join(f"{name} {format_span(seconds)}" + (" (writes stopped)"
                                                     if name in e["downtime_phases"] else "")
                           for name, seconds in e["phases"].items())
        lines.append(("estimate", f"{e['basis']}; {phases}"))
    if doc["fit"] is not None:
        lines.append(("fit", doc["fit"]["describe"] + " (the window's length)"))
    lines.append(("binlog horizon", doc["binlog_horizon"]["describe"]))
    verdict = ("[bold green]GO[/bold green]: the run fits the next window" if doc["go"] else
               "[bold red]NO-GO[/bold red]: " + escape("; ".join(doc["reasons"])))
    grid = Table.grid(padding=(0, 2))
    for name, text in lines:
        grid.add_row(f"[bold]{name}[/bold]", escape(text))
    console.print(grid)
    console.print(verdict, soft_wrap=True)
