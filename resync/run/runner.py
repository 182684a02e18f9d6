"""Start, resume and roll back runs: shared by the CLI and the demo (same code path as `run`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from resync.model.errors import (
    Aborted,
    DatabaseError,
    GateRefused,
    HostError,
    PreflightFailed,
    StepFailed,
)
from resync.model.runbook import LoadedRunbook, load_runbook
from resync.plan.build import Plan, build_plan, detect_facts, detect_tools, journaled_facts
from resync.plan.estimate import Estimate
from resync.run.journal import Journal, JournalLock

if TYPE_CHECKING:
    from resync.run.executor import RunContext


def require_secrets(loaded: LoadedRunbook) -> None:
    """Every password_env must be set before anything is touched (exit 2 names file and line)."""
    rb = loaded.model
    for name in (rb.donor, rb.recipient):
        env = rb.hosts[name].mysql.password_env
        if env:
            loaded.secret(env, "hosts", name, "mysql", "password_env")
    loaded.secret(rb.replication.password_env, "replication", "password_env")


def detected_plan(loaded: LoadedRunbook, timeout: float | None = None,
                  estimate: bool = False) -> Plan:
    """Connect to both servers and hosts: versions, GTID mode, copy tools -> the plan.

    With `estimate`, also measure the donor's datadir and the copy bandwidth (a short probe).
    """
    from dataclasses import replace

    from resync.run.executor import make_host

    try:
        facts = detect_facts(loaded, timeout=timeout, host_factory=make_host)
        facts = replace(facts, tools=detect_tools(loaded, make_host))
        plan = build_plan(loaded, facts)
        if estimate:
            plan = build_plan(loaded, replace(facts, estimate=measure_estimate(loaded, plan)))
    except (DatabaseError, HostError) as exc:
        raise PreflightFailed([f"{exc} (nothing was changed)"]) from None
    return plan


def measure_estimate(loaded: LoadedRunbook, plan: Plan) -> Estimate:
    from resync.steps.preflight import Preflight, datadir_bytes, estimate_copy

    spec = next(s for s in plan.steps if isinstance(s, Preflight)).spec
    ctx = scratch_context(loaded)
    try:
        size = datadir_bytes(ctx.host(spec.donor), spec.donor_datadir, spec.excludes)
        return estimate_copy(ctx, loaded, spec, size)
    finally:
        ctx.close()


def new_journal(loaded: LoadedRunbook, plan: Plan, journal_path: Path | None) -> Journal:
    run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    path = journal_path or Path(f"resync-journal/{loaded.model.name}-{run_id}.json")
    journal = Journal.create(path, run_id=run_id, runbook_path=str(loaded.path.resolve()),
                             runbook_sha256=loaded.sha256,
                             steps=[(s.key, s.title) for s in plan.steps])
    for key, value in plan.initial_values(run_id).items():
        journal.capture(key, value)
    return journal


def execute(loaded: LoadedRunbook, plan: Plan, journal: Journal, console: Console, *, yes: bool,
            rollback: bool = False) -> None:
    from resync.cli.render import render_header
    from resync.cli.ui import TerminalUI, summary
    from resync.run.engine import Engine
    from resync.run.executor import RunContext

    ui = TerminalUI(console, interactive=not yes, undo=rollback)
    ui.number_steps(list(plan.steps))
    render_header(plan, console)
    ctx = RunContext(loaded, journal, progress=ui.progress)
    engine = Engine(plan.steps, journal, ctx, confirm=ui.confirm, events=ui)
    console.print(f"journal: [bold]{journal.path}[/bold]")
    if rollback:
        left = engine.rollback()
        if left:
            console.print(f"no undo for: {', '.join(left)}")
        console.print(f"rolled back; journal: {journal.path}")
        return
    try:
        engine.run()
        record_downtime(journal, plan.loaded.model.primary_after)
    except (StepFailed, Aborted) as exc:
        exc.hint = (f"the state is in the journal {journal.path}: fix the cause, then "
                    f"`resync resume {journal.path}`, or undo with `resync rollback {journal.path}`"
                    " (the recipient's old datadir is kept either way)")
        raise
    finally:
        summary(console, journal)


def record_downtime(journal: Journal, primary: str) -> None:
    """Write-downtime: from the read lock on the donor until the new primary takes writes again."""
    steps = {s.key: s for s in journal.data.steps}
    lock = next((s for s in journal.data.steps if s.key.startswith("read-lock:")), None)
    end = steps.get(f"unlock:{primary}") or steps.get(f"start-service:{primary}")
    copy = next((s for s in journal.data.steps if s.key.startswith("copy-datadir:")), None)
    if not (lock and end and lock.started_at and end.finished_at):
        return
    downtime = end.finished_at - lock.started_at
    journal.capture("figures.write_downtime_seconds", round(downtime, 3))
    if copy and copy.started_at and copy.finished_at:
        journal.capture("figures.downtime_minus_copy_seconds",
                        round(downtime - (copy.finished_at - copy.started_at), 3))


def start_run(loaded: LoadedRunbook, console: Console, *, yes: bool,
              journal_path: Path | None = None, plan: Plan | None = None) -> Journal:
    """Start a run. `plan` is the one already shown to the operator, if any: it is what runs."""
    require_secrets(loaded)
    plan = plan or detected_plan(loaded)
    journal = new_journal(loaded, plan, journal_path)
    with JournalLock(journal.path):
        execute(loaded, plan, journal, console, yes=yes)
    return journal


def continue_run(journal_path: Path, runbook: str | None, console: Console, *, yes: bool,
                 rollback: bool = False) -> None:
    """Resume (or roll back) a journaled run; the lock is taken before the journal is read."""
    with JournalLock(journal_path):
        loaded, plan, journal = from_journal(journal_path, runbook)
        outcome = journal.data.outcome
        if not rollback and outcome in ("done", "rolled back"):
            raise GateRefused(f"this run is {outcome}: nothing to resume (start a new run with "
                              "`resync run` if the servers need it again)")
        execute(loaded, plan, journal, console, yes=yes, rollback=rollback)


def from_journal(journal_path: Path, runbook: str | None) -> tuple[LoadedRunbook, Plan, Journal]:
    from resync.run.engine import check_journal_matches

    journal = Journal.load(journal_path)
    loaded = load_runbook(runbook or journal.data.runbook_path)
    require_secrets(loaded)
    plan = build_plan(loaded, journaled_facts(loaded, journal.data.captured))
    check_journal_matches(journal, plan.steps, loaded.sha256)
    return loaded, plan, journal


class _MemoryJournal(Journal):
    """Read-only commands record into memory: nothing of theirs needs to survive a crash."""

    def save(self) -> None:
        pass


def scratch_context(loaded: LoadedRunbook) -> RunContext:
    """A context for read-only commands (check, verify, status)."""
    from resync.run.executor import RunContext
    from resync.run.journal import JournalData

    data = JournalData(run_id="scratch", runbook_path=str(loaded.path),
                       runbook_sha256=loaded.sha256, created_at=time.time(), steps=[])
    return RunContext(loaded, _MemoryJournal(Path("/dev/null"), data))


def cleanup(journal_path: Path, runbook: str | None, console: Console, *, yes: bool) -> None:
    """Delete the recipient's kept old datadir, only after a finished, verified run."""
    from rich.prompt import Confirm

    from resync.actions.types import Ref, Shell
    from resync.run.executor import RunContext
    from resync.run.journal import StepState
    from resync.steps.datadir import OLD_DATADIR

    with JournalLock(journal_path):
        journal = Journal.load(journal_path)
        loaded = load_runbook(runbook or journal.data.runbook_path)
        verified = [s for s in journal.data.steps if s.key.startswith("verify-data:")]
        if journal.data.outcome != "done" or not verified or verified[0].state is not StepState.DONE:
            raise GateRefused("refusing to delete the old datadir: the run has not finished with "
                              "its data verified (outcome: "
                              f"{journal.data.outcome or 'unfinished'}); it may be the only good copy")
        old = journal.data.captured.get(OLD_DATADIR)
        if not old or journal.data.captured.get("cleanup.removed"):
            console.print("nothing to clean up: the old datadir was already removed")
            return
        recipient = loaded.model.recipient
        ctx = RunContext(loaded, journal)
        ctx.begin_step("cleanup")
        try:
            size = ctx.shell(Shell.line(recipient, "du -sh ", Ref(OLD_DATADIR), " | cut -f1",
                                        privileged=True)).stdout.strip()
            console.print(f"old datadir of {recipient}: {old} ({size})")
            if not yes and not Confirm.ask("delete it for good?", console=console, default=False):
                raise Aborted("cleanup aborted by the operator; nothing was deleted")
            ctx.shell(Shell.line(recipient, "rm -rf -- ", Ref(OLD_DATADIR), " ",
                                 Ref(OLD_DATADIR), ".rejected", privileged=True))
            journal.capture("cleanup.removed", time.time())
        finally:
            ctx.begin_step(None)
            ctx.close()
        console.print(f"removed {old}")
