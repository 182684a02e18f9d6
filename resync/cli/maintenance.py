"""`resync maintenance on|off|status RUNBOOK`: the runbook's maintenance page by hand.

The same actions as the run's maintenance steps, through an executor whose journal stays in
memory; every action is printed with how it ended, then the probe's answer. Exit 0 done, 1 a
command or the probe failed, 2 bad input (no `maintenance:` section, invalid runbook).
These commands touch no MySQL server: no password variable needs to be set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from collections.abc import Sequence

    from resync.actions.types import Action
    from resync.model.maintenance import MaintenanceSettings
    from resync.model.runbook import LoadedRunbook
    from resync.run.executor import Executor
    from resync.run.journal import Journal
    from resync.transport.local import Host
    from resync.transport.mysql import Session

RUNBOOK = click.argument("runbook", type=click.Path(dir_okay=False))


@click.group()
def maintenance() -> None:
    """The runbook's maintenance page by hand (on, off, status)."""


@maintenance.command("on")
@RUNBOOK
def page_on(runbook: str) -> None:
    """Put the maintenance page up, then check that it is served (and health still answers)."""
    from resync.cli.commands import _guard

    _guard(_switch)(runbook, True)


@maintenance.command("off")
@RUNBOOK
def page_off(runbook: str) -> None:
    """Take the maintenance page down, then check that the application answers again."""
    from resync.cli.commands import _guard

    _guard(_switch)(runbook, False)


@maintenance.command("status")
@RUNBOOK
def page_status(runbook: str) -> None:
    """Show what the switch says (map entry, servers, flag files) and what the probe sees."""
    from resync.cli.commands import _guard

    _guard(_status)(runbook)


def settings_of(loaded: LoadedRunbook) -> MaintenanceSettings:
    from resync.model.errors import BadInputError

    m = loaded.model.maintenance
    if m is None:
        raise BadInputError(f"{loaded.path}: the runbook has no `maintenance:` section")
    return m


def maintenance_executor(loaded: LoadedRunbook) -> Executor:
    """An executor for the runbook's hosts and this machine (the reserved host @controller),
    with no MySQL connection and so no password to read."""
    from resync.model.errors import ResyncError
    from resync.model.maintenance import CONTROLLER
    from resync.run.connect import make_host
    from resync.run.executor import Executor
    from resync.run.journal import MemoryJournal
    from resync.transport.local import LocalHost

    def host(name: str) -> Host:
        return LocalHost(name) if name == CONTROLLER else make_host(loaded, name)

    def no_mysql(name: str) -> Session:
        raise ResyncError(f"the maintenance commands do not connect to MySQL (asked for {name})")

    return Executor(MemoryJournal("maintenance"), hosts=host, connect=no_mysql)


def _records(journal: Journal) -> None:
    for r in journal.data.commands:
        mark = "ok" if r.ok else "FAILED"
        line = f"  {mark:6} [{r.host}] {r.text}"
        if r.result:
            line += f" -> {r.result}"
        if r.detail and (r.kind == "http" or not r.ok):
            line += f"\n         {r.detail.strip()}"
        click.echo(line)


def _run(loaded: LoadedRunbook, step: str, actions: Sequence[Action]) -> Journal:
    exe = maintenance_executor(loaded)
    exe.begin(step)
    try:
        exe.run(actions)
    finally:
        _records(exe.journal)
        exe.close()
    return exe.journal


def _switch(runbook: str, on: bool) -> None:
    from resync.cli.commands import _load
    from resync.model.errors import ResyncError
    from resync.model.keys import StepKind
    from resync.steps.maintenance import describe, off_actions, on_actions

    loaded = _load(runbook)
    m = settings_of(loaded)
    word = "on" if on else "off"
    click.echo(f"maintenance page {word}: {describe(m)}")
    kind = StepKind.MAINTENANCE_ON if on else StepKind.MAINTENANCE_OFF
    try:
        journal = _run(loaded, kind.value, on_actions(m) if on else off_actions(m))
    except ResyncError as exc:
        exc.hint = (f"the commands marked ok above ran; `resync maintenance status {runbook}` "
                    "shows where the page stands")
        raise
    probe = [r for r in journal.data.commands if r.kind == "http"]
    seen = probe[-1].detail if probe else ""
    click.echo(f"the maintenance page is {word}" + (f" ({seen})" if seen else ""))


def _status(runbook: str) -> None:
    from resync.cli.commands import _load
    from resync.steps.maintenance import (
        PROBE_SEES_PAGE,
        STATE,
        describe,
        flag_state,
        status_actions,
    )

    loaded = _load(runbook)
    m = settings_of(loaded)
    click.echo(f"maintenance page: {describe(m)}")
    journal = _run(loaded, "maintenance-status", status_actions(m))
    captured = journal.data.captured
    if m.kind == "flag_file":
        flags = ", ".join(f"{h} {captured.get(str(flag_state(h)))}" for h in m.hosts or ())
        click.echo(f"switch: flag file {m.path}: {flags}")
    elif m.kind == "haproxy_map":
        click.echo(f"switch: {'on' if captured.get(str(STATE)) == 'on' else 'off'} "
                   f"({m.key} {'is' if captured.get(str(STATE)) == 'on' else 'is not'} in {m.map})")
    elif m.kind == "haproxy_servers":
        click.echo(f"switch: {captured.get(str(STATE))}")
    elif m.status_cmd:
        click.echo(f"switch (status_cmd): {captured.get(str(STATE))}")
    seen = [r.detail for r in journal.data.commands if r.kind == "http"]
    served = captured.get(str(PROBE_SEES_PAGE)) == 1
    click.echo(f"probe: the page is {'served' if served else 'not served'}"
               + (f" ({seen[-1]})" if seen else ""))
