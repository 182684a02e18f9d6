"""Start, resume and roll back runs: shared by the CLI and the demo (same code path as `run`)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from resync.actions.conditions import IsSet
from resync.actions.quoting import q
from resync.actions.types import Action, Captured, Ref, Shell, When
from resync.model.errors import (
    Aborted,
    BadInputError,
    DatabaseError,
    GateRefused,
    HostError,
    PreflightFailed,
    ResyncError,
    StepFailed,
)
from resync.model.keys import (
    CLEANUP_REMOVED,
    DONOR_BYTES,
    OLD_DATADIR,
    Key,
    StepKind,
)
from resync.model.runbook import LoadedRunbook, load_runbook
from resync.model.secrets import Secret
from resync.plan.build import Plan, build_plan, journaled_facts
from resync.plan.document import differences, plan_document
from resync.run.executor import Executor, ProgressFn
from resync.run.figures import record_downtime
from resync.run.journal import Journal, JournalLock, MemoryJournal, StepState
from resync.steps.copy.ebs.keys import OLD_VOLUME

if TYPE_CHECKING:
    from resync.notify.audience import Audience


def runbook_secrets(loaded: LoadedRunbook) -> list[Secret]:
    """Every password_env must be set before anything is touched (exit 2 names file and line)."""
    rb = loaded.model
    found = [loaded.secret(env, "hosts", name, "mysql", "password_env")
             for name in (rb.donor, rb.recipient)
             if (env := rb.hosts[name].mysql.password_env)]
    found.append(loaded.secret(rb.replication.password_env, "replication", "password_env"))
    from resync.notify.build import webhook_secrets  # notify.webhooks[].url_env: set them too

    return found + webhook_secrets(loaded)


def require_secrets(loaded: LoadedRunbook) -> None:
    runbook_secrets(loaded)


def executor_for(loaded: LoadedRunbook, journal: Journal, *, timeout: float | None = None,
                 progress: ProgressFn | None = None) -> Executor:
    """The executor of a runbook's hosts and servers (timeout: a shorter connect timeout)."""
    from resync.run.connect import connection_spec, make_host
    from resync.transport.mysql import connect

    def spec(name: str) -> Any:
        s = connection_spec(loaded, name)
        return replace(s, connect_timeout=timeout) if timeout is not None else s

    def login(name: str, user: str, password: Secret) -> Any:
        return connect(replace(spec(name), name=f"{name} as {user}", user=user, password=password,
                               defaults_file=None, connect_timeout=5))

    exe = Executor(journal, hosts=lambda name: make_host(loaded, name),
                   connect=lambda name: connect(spec(name)), login=login,
                   secrets=runbook_secrets(loaded))
    if progress is not None:
        exe.progress = progress
    return exe


def detected_plan(loaded: LoadedRunbook, timeout: float | None = None, estimate: bool = False,
                  journal: Journal | None = None, discard_errant: bool = False) -> Plan:
    """Connect to both servers and hosts: versions, GTID mode, copy tools -> the plan.

    With `estimate`, also measure the donor's datadir and the copy bandwidth (a short probe).
    The queries and commands are recorded in `journal` (in memory if none is given).
    """
    from resync.plan.detect import detect_facts

    exe = executor_for(loaded, journal or MemoryJournal("detect"), timeout=timeout)
    try:
        facts = replace(detect_facts(exe, loaded), discard_errant=discard_errant)
        plan = build_plan(loaded, facts)
        if estimate:
            plan = build_plan(loaded, replace(facts, estimate=measure_estimate(exe, plan)))
    except (DatabaseError, HostError) as exc:
        raise PreflightFailed([f"{exc} (nothing was changed)"]) from None
    finally:
        exe.close()
    return plan


def measure_estimate(exe: Executor, plan: Plan) -> Any:
    from resync.model.keys import PROBE_RATE
    from resync.plan.estimate import PROBE_BYTES, Estimate
    from resync.steps.copy.pipeline import BandwidthProbe
    from resync.steps.preflight import Preflight

    preflight = plan.step(StepKind.PREFLIGHT)
    assert isinstance(preflight, Preflight)
    spec = preflight.spec
    skip = " ".join(f"--exclude={q(p.removeprefix('./'))}" for p in spec.excludes)
    exe.begin("estimate")
    exe.run([Shell.line(spec.donor, f"du -sb {skip} {q(spec.donor_datadir)} | cut -f1",
                        privileged=True, into=DONOR_BYTES)])
    if spec.method == "ebs":
        from resync.steps.copy.ebs.checks import discovery_actions, ebs_estimate

        rb = plan.loaded.model
        exe.run(list(discovery_actions(plan.loaded)))
        return ebs_estimate(exe.captured, rb.copy_.ebs, rb.primary_after == rb.donor)
    size = int(str(exe.captured[str(DONOR_BYTES)]))
    declared = plan.loaded.model.copy_.bandwidth_mb_per_s
    rebuild_primary = plan.loaded.model.primary_after == plan.loaded.model.recipient
    if declared:
        return Estimate(size, declared * 1e6, "runbook", rebuild_primary)
    exe.run([BandwidthProbe(spec, PROBE_BYTES)])
    return Estimate(size, float(str(exe.captured[str(PROBE_RATE)])), "probe", rebuild_primary)


def new_journal(loaded: LoadedRunbook, plan: Plan, journal_path: Path | None,
                detection: Journal | None = None) -> Journal:
    # unique on the host even for two runs started in one second: the copy ends carry it
    run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)
    path = journal_path or Path(f"resync-journal/{loaded.model.name}-{run_id}.json")
    doc = plan_document(plan)
    journal = Journal.create(path, run_id=run_id, runbook_path=str(loaded.path.resolve()),
                             runbook_sha256=loaded.sha256,
                             steps=[(s.key, s.title) for s in plan.steps], plan=doc,
                             plan_sha256=doc["plan_sha256"])
    if detection is not None:  # what the plan was detected from, recorded before the first step
        journal.data.commands.extend(detection.data.commands)
    journal.data.captured.update(plan.initial_values(run_id))
    journal.save()
    return journal


def execute(loaded: LoadedRunbook, plan: Plan, journal: Journal, console: Console, *, yes: bool,
            rollback: bool = False, audience: Audience | None = None) -> None:
    """`audience`: the terminal, the JSON log, the notifications (default: the terminal)."""
    from resync.cli.render import render_header
    from resync.cli.ui import summary
    from resync.notify.audience import open_audience
    from resync.run.engine import Engine
    from resync.run.events import EventName

    if audience is None:
        with open_audience(loaded, console, yes=yes, rollback=rollback) as made:
            return execute(loaded, plan, journal, console, yes=yes, rollback=rollback,
                           audience=made)
    ui, events = audience.ui, audience.events
    journal = audience.attach(journal, plan, rollback=rollback)
    render_header(plan, console, plan_sha256=journal.data.plan_sha256)
    exe = executor_for(loaded, journal, progress=events.progress)
    events.watch_secrets(exe.secrets)
    engine = Engine(plan.steps, journal, exe, confirm=ui.confirm, events=events,
                    must_run=lambda step: step.id.kind is StepKind.PREFLIGHT)
    console.print(f"journal: [bold]{journal.path}[/bold]")
    if rollback:
        left = engine.rollback()
        if left:
            console.print(f"no undo for: {', '.join(left)}")
        console.print(f"rolled back; journal: {journal.path}")
        events.finished(EventName.SUCCESS, "rolled back" + (f"; no undo for: {', '.join(left)}"
                                                            if left else ""))
        return None
    try:
        engine.run()
        record_downtime(journal, plan)
        events.finished(EventName.SUCCESS, "done")
    except (StepFailed, Aborted, GateRefused) as exc:
        if isinstance(exc, GateRefused) and journal.step(plan.steps[0].key).state is not \
                StepState.DONE:
            raise  # refused before anything changed: nothing to resume or undo
        exc.hint = (f"the state is in the journal {journal.path}: fix the cause, then "
                    f"`resync resume {journal.path}`, or undo with `resync rollback {journal.path}`"
                    " (the recipient's old datadir is kept either way)")
        page_on = plan.step(StepKind.MAINTENANCE_ON)
        if page_on is not None and journal.step(page_on.key).state is StepState.DONE:
            exc.hint += ("; the maintenance page STAYS ON: the rollback takes it down, or "
                         f"`resync maintenance off {plan.loaded.path}`")
        audience.failed(exc, journal.path)
        raise
    finally:
        summary(console, journal)


def start_run(loaded: LoadedRunbook, console: Console, *, yes: bool,
              journal_path: Path | None = None, plan: Plan | None = None,
              reviewed: Path | None = None, discard_errant: bool = False,
              log_json: Path | None = None, no_wait: bool = False) -> Journal:
    """Start a run. `plan` is the one already shown to the operator, if any: it is what runs.
    `reviewed`: a plan file (`plan --detect --out`) this run must equal, action for action.
    `log_json`: a file each event is appended to as a JSON line. `no_wait`: before the
    runbook's window, refuse instead of waiting for it."""
    from resync.notify.audience import open_audience
    from resync.window.wait import run_in_window

    require_secrets(loaded)
    # before detection: a run refused before its journal exists is logged and notified too;
    # one run of the runbook at a time, inside its window (waited for before anything is read)
    with open_audience(loaded, console, yes=yes, log_json=log_json) as audience, \
            run_in_window(loaded, console, no_wait=no_wait):
        detection = MemoryJournal("detect")
        plan = plan or detected_plan(loaded, journal=detection, discard_errant=discard_errant)
        if reviewed is not None:
            check_reviewed(reviewed, plan)
        journal = new_journal(loaded, plan, journal_path, detection)
        with JournalLock(journal.path):
            execute(loaded, plan, journal, console, yes=yes, audience=audience)
    return journal


def check_reviewed(path: Path, plan: Plan) -> None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        steps, digest = doc["steps"], doc["plan_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInputError(f"cannot read the reviewed plan {path}: {exc}") from None
    current = plan_document(plan)
    if current["plan_sha256"] == digest:
        return
    diff = differences(steps, current["steps"]) or ["the plan file was edited (its hash differs)"]
    raise GateRefused(f"this run's plan differs from the reviewed plan {path} "
                      f"({digest[:12]} reviewed, {current['plan_sha256'][:12]} now); nothing was "
                      "changed:\n" + "\n".join(diff[:40]))


def continue_run(journal_path: Path, runbook: str | None, console: Console, *, yes: bool,
                 rollback: bool = False, force: bool = False, log_json: Path | None = None) -> None:
    """Resume (or roll back) a journaled run; the lock is taken before the journal is read."""
    from resync.notify.audience import open_audience

    with JournalLock(journal_path):
        loaded, plan, journal = from_journal(journal_path, runbook)
        with open_audience(loaded, console, yes=yes, rollback=rollback,
                           log_json=log_json) as audience:
            audience.events.run_id = journal.data.run_id  # a refusal below names the run
            outcome = journal.data.outcome
            if not rollback and outcome in ("done", "rolled back"):
                raise GateRefused(f"this run is {outcome}: nothing to resume (start a new run "
                                  "with `resync run` if the servers need it again)")
            if rollback and outcome == "rolled back":
                raise GateRefused("this run is rolled back already: nothing to undo")
            if rollback and not force and _took_writes(plan, journal):
                rb = loaded.model
                raise GateRefused(
                    f"this run made {rb.primary_after} the primary: it may have taken writes "
                    f"since. Rolling back moves its datadir aside (kept as <old datadir>.rejected "
                    f"on {rb.recipient}) and brings back the old one: those writes would no "
                    "longer be served. Use --force if that is what you want")
            execute(loaded, plan, journal, console, yes=yes, rollback=rollback,
                    audience=audience)


def _took_writes(plan: Plan, journal: Journal) -> bool:
    """Has the new primary been opened for writes (the step started, maybe killed midway)?"""
    step = plan.step(StepKind.MAKE_WRITABLE)
    return step is not None and journal.step(step.key).state in (
        StepState.DONE, StepState.RUNNING, StepState.FAILED)


def from_journal(journal_path: Path, runbook: str | None) -> tuple[LoadedRunbook, Plan, Journal]:
    journal = Journal.load(journal_path)
    loaded = load_runbook(runbook or journal.data.runbook_path)
    require_secrets(loaded)
    if journal.data.runbook_sha256 != loaded.sha256:
        raise GateRefused(
            f"the runbook {journal.data.runbook_path} changed since this run started "
            "(sha256 differs): refusing to resume or roll back with different instructions")
    plan = build_plan(loaded, journaled_facts(loaded, journal.data.captured))
    now = plan_document(plan)["plan_sha256"]
    if now != journal.data.plan_sha256:
        raise GateRefused(f"the plan built now ({now[:12]}) differs from the plan this run "
                          f"executes ({journal.data.plan_sha256[:12]}): refusing (was resync "
                          "upgraded mid-run?)")
    return loaded, plan, journal


def scratch_executor(loaded: LoadedRunbook) -> Executor:
    """An executor for read-only commands (check, verify, status): records stay in memory."""
    return executor_for(loaded, MemoryJournal())


def run_scratch(loaded: LoadedRunbook, key: str, actions: Sequence[Action], *,
                stopped_by: type[ResyncError] = ResyncError) -> tuple[Captured, ResyncError | None]:
    """Run read-only `actions` as step `key` on a scratch executor: the values they captured and
    the error of type `stopped_by` that stopped them, if one did (any other error propagates)."""
    exe = scratch_executor(loaded)
    failure: ResyncError | None = None
    try:
        exe.begin(key)
        exe.run(actions)
    except stopped_by as exc:
        failure = exc
    finally:
        exe.close()
    return exe.captured, failure


def _kept_paths() -> list[str | Ref]:
    """The old datadir and what went aside with it (its logs, the rejected copy)."""
    out: list[str | Ref] = []
    for suffix in ("", ".rejected", ".binlogs", ".relaylogs", ".rejected.binlogs",
                   ".rejected.relaylogs"):
        out += [" ", Ref(OLD_DATADIR), suffix] if suffix else [" ", Ref(OLD_DATADIR)]
    return out


def cleanup(journal_path: Path, runbook: str | None, console: Console, *, yes: bool) -> None:
    """Delete the recipient's kept old datadir, only after a finished, verified run."""
    from rich.prompt import Confirm

    from resync.steps.verify import verify_step_id

    with JournalLock(journal_path):
        journal = Journal.load(journal_path)
        loaded = load_runbook(runbook or journal.data.runbook_path)
        if journal.data.runbook_sha256 != loaded.sha256:  # its hosts and paths decide what goes
            raise GateRefused(
                f"the runbook {loaded.path} is not the one this run was started with "
                f"({journal.data.runbook_path}, sha256 differs): refusing to delete anything "
                "with different instructions; nothing was deleted")
        rb = loaded.model
        verify = str(verify_step_id(rb.primary_after, rb.replica_after))
        verified = [s for s in journal.data.steps if s.key == verify]
        if journal.data.outcome != "done" or not verified or verified[0].state is not StepState.DONE:
            raise GateRefused("refusing to delete the old datadir: the run has not finished with "
                              "its data verified (outcome: "
                              f"{journal.data.outcome or 'unfinished'}); it may be the only good copy")
        old = journal.data.captured.get(str(OLD_DATADIR))
        if not old or journal.data.captured.get(str(CLEANUP_REMOVED)):
            console.print("nothing to clean up: the old datadir was already removed")
            return
        recipient = loaded.model.recipient
        exe = executor_for(loaded, journal)
        exe.begin("cleanup")
        size_key = Key("cleanup.old_datadir_size")
        ebs = loaded.model.copy_.ebs
        swapped = loaded.model.copy_.method == "ebs" and ebs.mode == "swap"
        try:
            if swapped:  # the old datadir is on the old data volume, detached; its logs aside
                old = (f"data volume {journal.data.captured.get(str(OLD_VOLUME))} (detached) and "
                       f"what went aside at {old}.*")
                console.print(f"old datadir of {recipient}: {old}")
            else:
                exe.run([Shell.line(recipient, "du -sh ", Ref(OLD_DATADIR), " | cut -f1",
                                    privileged=True, into=size_key)])
                console.print(f"old datadir of {recipient}: {old} "
                              f"({journal.data.captured.get(str(size_key))})")
            if not yes and not Confirm.ask("delete it for good?", console=console, default=False):
                raise Aborted("cleanup aborted by the operator; nothing was deleted")
            exe.run([When(IsSet(OLD_DATADIR), (Shell.line(
                recipient, "rm -rf -- ", *_kept_paths(), privileged=True),))], prefix="1.")
            if swapped:
                from resync.steps.copy.ebs.cleanup import delete_volume

                exe.run([When(IsSet(OLD_VOLUME), (delete_volume(
                    Ref(OLD_VOLUME), region=ebs.region, missing_ok=True),))], prefix="2.")
            journal.capture(str(CLEANUP_REMOVED), time.time())
        finally:
            exe.close()
        console.print(f"removed {old}")
