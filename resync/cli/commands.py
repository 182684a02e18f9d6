"""The command line. The only place that turns errors into messages and exit codes.

Exit codes: 0 done, 1 a step failed (state is in the journal), 2 bad input (nothing changed),
3 refused by a gate (preflight, window), 130 aborted by the operator.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from resync.model.runbook import LoadedRunbook

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_REFUSED, EXIT_ABORTED = 1, 2, 3, 130


def _console() -> Console:
    return Console(highlight=False)


def _guard(fn: Callable[..., None]) -> Callable[..., None]:
    """Run a command, mapping resync errors to a message and an exit code."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        from resync.model.errors import ResyncError

        err = Console(stderr=True, highlight=False)
        try:
            fn(*args, **kwargs)
        except ResyncError as exc:
            err.print(f"[bold red]resync:[/bold red] {escape(str(exc))}", soft_wrap=True)
            if exc.hint:
                err.print(escape(exc.hint), soft_wrap=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            err.print("[bold red]resync:[/bold red] interrupted")
            sys.exit(EXIT_ABORTED)
        except OSError as exc:  # a file resync writes (a journal, a log): a message, no traceback
            where = f" {exc.filename}" if exc.filename else ""
            err.print(f"[bold red]resync:[/bold red] cannot use{escape(where)}: "
                      f"{escape(exc.strerror or str(exc))}", soft_wrap=True)
            err.print("a run stops where its journal can no longer be written: the journal on "
                      "disk holds every step up to its last write (`resync status`, `resync "
                      "resume JOURNAL` once the cause is fixed)", soft_wrap=True)
            sys.exit(EXIT_FAILED)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="resync")
def main() -> None:
    """Rebuild one MySQL/MariaDB server of a primary-replica pair from the other."""
    import logging

    # warnings from below the CLI (e.g. an unknown SSH host key accepted on request) reach stderr
    logging.basicConfig(level=logging.WARNING, format="resync: warning: %(message)s")


def _load(path: str, *, secrets: bool = False) -> LoadedRunbook:
    """The runbook; with `secrets`, every password_env must be set too (before anything runs)."""
    from resync.model.runbook import load_runbook

    loaded = load_runbook(path)
    if secrets:
        from resync.run.runner import require_secrets

        require_secrets(loaded)
    return loaded


_LOG_JSON_HELP = ("append one JSON object per event to FILE (steps, actions, progress, gate "
                  "decisions, summary; secrets masked), flushed line by line")
_DISCARD_HELP = ("go ahead although the recipient holds transactions the donor lacks (listed "
                 "by preflight); they stay in its binary logs, kept with its old datadir")


@main.command()
@click.argument("runbook", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text")
@click.option("--server-version", "server_version", metavar="ROLE=VERSION,...",
              help="render SQL for these versions, e.g. donor=mariadb-10.11,recipient=mysql-8.4")
@click.option("--detect", is_flag=True, help="connect (5 s timeout) to read the real versions")
@click.option("--out", "out", type=click.Path(dir_okay=False),
              help="also write the plan (JSON, with its hash) here, for `run --plan`")
@click.option("--discard-errant", is_flag=True, help=_DISCARD_HELP)
@click.option("--brief", is_flag=True,
              help="text format: one line per step (its summary) and the destructive markers")
@_guard
def plan(runbook: str, fmt: str, server_version: str | None, detect: bool, out: str | None,
         discard_errant: bool, brief: bool) -> None:
    """Print every step, host, SQL statement and command, without connecting anywhere."""
    from dataclasses import replace

    from resync.cli.render import render_json, render_markdown, render_text
    from resync.plan.build import assumed_facts, build_plan, parse_version_overrides

    loaded = _load(runbook)
    if detect:
        from resync.run.runner import detected_plan

        the_plan = detected_plan(loaded, timeout=5.0, estimate=True,
                                 discard_errant=discard_errant)
    else:
        versions = parse_version_overrides(server_version, loaded)
        the_plan = build_plan(loaded, replace(assumed_facts(loaded, versions),
                                              discard_errant=discard_errant))
    if out:
        from resync.run.journal import atomic_write

        atomic_write(Path(out), render_json(the_plan))
    if fmt == "json":
        click.echo(render_json(the_plan), nl=False)
    elif fmt == "markdown":
        click.echo(render_markdown(the_plan), nl=False)
    else:
        render_text(the_plan, _console(), brief=brief)


@main.command()
@click.argument("runbook", type=click.Path(dir_okay=False))
@click.option("--window", "window", is_flag=True,
              help="also: does the run fit the runbook's next window (size, measured rate, "
                   "phases, margin)? exit 3 when it does not")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              help="with --window: json for a change-management tool")
@click.option("--all", "every", is_flag=True, help="list every check, not only those that fail")
@_guard
def check(runbook: str, window: bool, fmt: str, every: bool) -> None:
    """Run the preflight checks alone: how many pass, and each that fails with the reason."""
    if window or fmt != "text":
        from resync.cli.window import check_window

        check_window(runbook, fmt, window=window)
        return
    from resync.cli.ui import preflight_overview
    from resync.model.errors import GateRefused, PreflightFailed
    from resync.model.keys import StepKind
    from resync.run.runner import detected_plan, run_scratch
    from resync.steps.preflight import results_of

    loaded = _load(runbook, secrets=True)
    preflight = detected_plan(loaded).step(StepKind.PREFLIGHT)
    assert preflight is not None
    # PreflightFailed is not the end here: the table below shows every result
    captured, _ = run_scratch(loaded, preflight.key, preflight.plan(), stopped_by=PreflightFailed)
    results = results_of(captured)
    preflight_overview(_console(), loaded.model.label, results, every=every)
    if not all(r.ok for r in results):
        raise GateRefused("preflight failed (nothing was changed)")


@main.command()
@click.argument("runbook", type=click.Path(dir_okay=False))
@click.option("--yes", is_flag=True, help="unattended: no questions")
@click.option("--journal", "journal_path", type=click.Path(dir_okay=False),
              help="journal file (default: resync-journal/<name>-<run id>.json)")
@click.option("--plan", "reviewed", type=click.Path(exists=True, dir_okay=False),
              help="the reviewed plan (plan --detect --out): refuse (exit 3) if this run's differs")
@click.option("--discard-errant", is_flag=True, help=_DISCARD_HELP)
@click.option("--log-json", "log_json", type=click.Path(dir_okay=False), help=_LOG_JSON_HELP)
@click.option("--no-wait", "no_wait", is_flag=True,
              help="before the runbook's window: refuse (exit 3) instead of waiting for it")
@_guard
def run(runbook: str, yes: bool, journal_path: str | None, reviewed: str | None,
        discard_errant: bool, log_json: str | None, no_wait: bool) -> None:
    """Run the resync: each step shown with its exact commands, confirmed, journaled."""
    from resync.run.runner import start_run

    start_run(_load(runbook), _console(), yes=yes,
              journal_path=Path(journal_path) if journal_path else None,
              reviewed=Path(reviewed) if reviewed else None, discard_errant=discard_errant,
              log_json=Path(log_json) if log_json else None, no_wait=no_wait)


def _on_journal(yes_help: str) -> Callable[[Callable[..., None]], Any]:
    """The arguments of the commands that act on a journaled run."""

    def decorate(fn: Callable[..., None]) -> Any:
        fn = _guard(fn)
        fn = click.option("--yes", is_flag=True, help=yes_help)(fn)
        fn = click.option("--runbook", help="the runbook, if it moved since the run started")(fn)
        fn = click.option("--log-json", "log_json", type=click.Path(dir_okay=False),
                          help=_LOG_JSON_HELP)(fn)
        fn = click.argument("journal_path", metavar="JOURNAL",
                            type=click.Path(exists=True, dir_okay=False))(fn)
        return main.command()(fn)

    return decorate


@_on_journal("unattended: no questions")
def resume(journal_path: str, runbook: str | None, yes: bool, log_json: str | None) -> None:
    """Continue a run from its journal: re-observe, then go on from the first step not done."""
    from resync.run.runner import continue_run

    continue_run(Path(journal_path), runbook, _console(), yes=yes,
                 log_json=Path(log_json) if log_json else None)


@click.option("--force", is_flag=True,
              help="roll back a finished run too (the new primary's writes since then are moved "
                   "aside with the copied datadir)")
@_on_journal("unattended: no questions")
def rollback(journal_path: str, runbook: str | None, yes: bool, force: bool,
             log_json: str | None) -> None:
    """Undo the steps of a run in reverse order (restores the old datadir and the topology)."""
    from resync.run.runner import continue_run

    continue_run(Path(journal_path), runbook, _console(), yes=yes, rollback=True, force=force,
                 log_json=Path(log_json) if log_json else None)


@main.command()
@click.argument("journal_path", metavar="[JOURNAL]", required=False,
                type=click.Path(exists=True, dir_okay=False))
@click.option("--run-id", help="copy method ebs: detach and delete the volumes and snapshots "
                               "tagged with this run id (what a failed run left in AWS)")
@click.option("--runbook", help="the runbook (with --run-id: where to look; else: if it moved "
                                "since the run started)")
@click.option("--yes", is_flag=True, help="no question (the old datadir: the run must still be "
                                          "done and verified)")
@_guard
def cleanup(journal_path: str | None, run_id: str | None, runbook: str | None, yes: bool) -> None:
    """Delete the recipient's kept old datadir (JOURNAL: once the run is done and its data
    verified), or with --run-id what an EBS copy left in AWS."""
    from resync.model.errors import BadInputError

    if run_id is not None:
        from resync.cli.ebs_cleanup import cleanup_leftovers
        from resync.run.journal import Journal

        source = runbook or (Journal.load(Path(journal_path)).data.runbook_path
                             if journal_path else None)
        if source is None:
            raise BadInputError("--run-id needs --runbook RUNBOOK (its copy.ebs.region is where "
                                "to look) or the run's JOURNAL")
        cleanup_leftovers(_load(source), run_id, _console(), yes=yes)
        return
    if journal_path is None:
        raise BadInputError("give the run's JOURNAL (its old datadir), or --run-id ID --runbook "
                            "RUNBOOK (what an EBS copy left in AWS)")
    from resync.run.runner import cleanup as clean

    clean(Path(journal_path), runbook, _console(), yes=yes)


@main.command()
@click.argument("runbook", type=click.Path(dir_okay=False))
@_guard
def status(runbook: str) -> None:
    """Replication threads, lag, last error and coordinates of both hosts."""
    from resync.cli.status import render_status

    loaded = _load(runbook, secrets=True)
    render_status(loaded, _console())


@main.command()
@click.argument("runbook", type=click.Path(dir_okay=False))
@click.option("--journal", "journal_path", type=click.Path(dir_okay=False),
              help="where its progress is kept (default: resync-journal/verify-<name>/journal.json)")
@click.option("--restart", is_flag=True, help="start over instead of continuing an unfinished verify")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              help="text: counts and the tables that differ; json: every table's result")
@_guard
def verify(runbook: str, journal_path: str | None, restart: bool, fmt: str) -> None:
    """Checksum every user table on primary and replica in key chunks, both at one binlog
    position at a time, without a long lock; killed, it continues from its saved chunks."""
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from resync.cli.ui import MAX_EXCEPTIONS, checksum_overview
    from resync.model.errors import StepFailed
    from resync.run.engine import Engine
    from resync.run.journal import JournalLock
    from resync.run.runner import detected_plan, executor_for
    from resync.steps.verify import VerifyData, checksum_rows, describe
    from resync.steps.verify.standalone import default_path, open_journal, verify_document

    loaded = _load(runbook, secrets=True)
    the_plan = detected_plan(loaded)
    rb = loaded.model
    primary, replica = rb.primary_after, rb.replica_after
    step = VerifyData(primary, replica, the_plan.dialect(primary), the_plan.dialect(replica),
                      the_plan.mode, rb.locks.lock_wait_timeout)
    doc = verify_document(loaded, step, the_plan.mode,
                          {h: str(v) for h, v in the_plan.facts.versions.items()})
    path = Path(journal_path) if journal_path else default_path(loaded)
    # json: stdout carries the document alone; progress and notes go to stderr
    console = _console() if fmt == "text" else Console(stderr=True, highlight=False)
    failure: StepFailed | None = None
    with JournalLock(path):
        journal, note = open_journal(path, loaded, step, doc, restart=restart)
        console.print(f"journal: {escape(note)}")
        bar = Progress("{task.description}", BarColumn(), MofNCompleteColumn(), "rows",
                       TimeRemainingColumn(), console=console, transient=True)
        task = bar.add_task(f"verify {primary} vs {replica}", total=None)

        def progress(done: int, total: int | None, label: str) -> None:
            bar.update(task, completed=done, total=total)

        exe = executor_for(loaded, journal, progress=progress)
        with bar:
            try:
                Engine([step], journal, exe).run()
            except StepFailed as exc:
                failure = exc
    captured = journal.data.captured
    rows = checksum_rows(captured)
    report = json.loads(str(captured.get("verify.report") or "[]"))
    if fmt == "json":
        click.echo(json.dumps({
            "runbook": {"name": rb.name, "title": rb.title}, "primary": primary,
            "replica": replica, "journal": str(path), "equal": failure is None,
            "tables": [{"table": t, "primary": p, "replica": r, "equal": p == r}
                       for t, p, r in rows],
            "differences": report,
            **{k.removeprefix("verify."): captured.get(k) for k in (
                "verify.chunks_read", "verify.resumed_chunks", "verify.longest_lock_seconds")},
        }, indent=2))
    else:
        if rows:
            checksum_overview(console, f"{primary} vs {replica}", rows)
        for item in report[:MAX_EXCEPTIONS]:
            console.print(escape(f"differs: {describe(item)}"), soft_wrap=True)
        if len(report) > MAX_EXCEPTIONS:
            console.print(f"… and {len(report) - MAX_EXCEPTIONS:,} more differing ranges: "
                          "--format json lists them all")
        console.print(f"chunks read: {captured.get('verify.chunks_read')} (kept from before: "
                      f"{captured.get('verify.resumed_chunks')}); longest lock on {primary}: "
                      f"{captured.get('verify.longest_lock_seconds')}s")
    if failure is not None:
        raise failure


@main.command()
@click.option("--yes", is_flag=True, help="run the resync without questions")
@click.option("--size-mb", default=300, show_default=True, help="approximate data to load")
@click.option("--dir", "workdir", type=click.Path(file_okay=False),
              help="where the sandbox lives (default: a temporary directory, removed at the end)")
@click.option("--with-web", is_flag=True,
              help="put HAProxy with a maintenance page in front of a tiny local web app, and "
                   "watch the page go on and off around the resync (needs haproxy and socat)")
@_guard
def demo(yes: bool, size_mb: int, workdir: str | None, with_web: bool) -> None:
    """A local MariaDB pair, broken and resynced before your eyes (needs root)."""
    from resync.testing.demo import run_demo

    run_demo(_console(), yes=yes, size_mb=size_mb, workdir=Path(workdir) if workdir else None,
             with_web=with_web)


def _register_groups() -> None:
    # their modules import click only: the commands load what they need when they run
    from resync.cli.lb import lb
    from resync.cli.lb_haproxy import haproxy_config
    from resync.cli.maintenance import maintenance
    from resync.cli.schedule import schedule
    from resync.cli.window import window

    main.add_command(maintenance)
    main.add_command(window)
    main.add_command(schedule)
    lb.add_command(haproxy_config)
    main.add_command(lb)


_register_groups()
