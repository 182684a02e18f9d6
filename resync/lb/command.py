"""`resync lb status|register|deregister`: the actions for an lb.yaml, run by the executor.

Who the instance is: `--instance ID [--address IP]`, else lb.yaml's `self:` values, else IMDSv2
(`self: imds`, the default). Every AWS call, IMDS read and HAProxy command is an action the
executor journals (in memory); the table printed at the end lists them, also after a failure.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from resync.actions.types import Leaf, Ref
from resync.lb.aws import make_client_factory, region_of_zone
from resync.lb.base import LOCAL_HOST, Member, Target
from resync.lb.imds import ImdsIdentity, endpoint
from resync.lb.instance import complete_lifecycle, describe_instance
from resync.lb.members import deregister_actions, members_for, register_actions, status_actions
from resync.model.errors import BadInputError, ResyncError
from resync.model.lb import LbConfig, Route53Entry

if TYPE_CHECKING:
    from rich.console import Console

    from resync.run.executor import Executor
    from resync.run.journal import CommandRecord
    from resync.run.waiting import Clock
    from resync.transport.local import Host

COMMANDS = ("status", "register", "deregister")


@dataclass(frozen=True)
class Who:
    """The instance, as the command line gives it."""

    use_self: bool = False
    instance: str | None = None
    address: str | None = None


@dataclass
class LbPlan:
    actions: list[Leaf]
    members: list[Member]
    target: Target
    status_of: dict[int, int] = field(default_factory=dict)  # member index -> action index


def target_for(cfg: LbConfig, who: Who) -> tuple[list[Leaf], Target]:
    """The identity actions to run first, and the target the members act for."""
    if who.use_self == (who.instance is not None):
        raise BadInputError("give either --self or --instance ID")
    if who.address is not None and who.instance is None:
        raise BadInputError("--address goes with --instance")
    given = cfg.self_
    if who.instance is not None:
        instance_id, address, zone = who.instance, who.address, None
    elif given is not None:
        instance_id, address, zone = given.instance_id, given.address, given.availability_zone
    else:
        imds = ImdsIdentity(base=endpoint())
        return [imds], imds.target
    needs_address = any(isinstance(m, Route53Entry) for m in cfg.members)
    if address is None and needs_address:  # the records need it: ask EC2
        captured = Target.captured()
        return [describe_instance(instance_id)], Target(instance_id, captured.address,
                                                        captured.availability_zone)
    return [], Target(instance_id, address, zone)


def build(cfg: LbConfig, command: str, who: Who, *, hook: str | None = None,
          group: str | None = None) -> LbPlan:
    if command not in COMMANDS:
        raise BadInputError(f"unknown lb command {command!r}")
    if hook is None and group is not None:
        raise BadInputError("--asg goes with --complete-lifecycle")
    if hook is not None and command != "deregister":
        raise BadInputError("--complete-lifecycle goes with deregister")
    identity, target = target_for(cfg, who)
    members = members_for(cfg.members, target, "lb")
    body = {"status": status_actions, "register": register_actions,
            "deregister": deregister_actions}[command](members)
    actions = [*identity, *body]
    if hook is not None:
        if target.instance_id is None:
            raise BadInputError("--complete-lifecycle needs the instance id")
        actions += complete_lifecycle(hook, group, target.instance_id)
    plan = LbPlan(actions, members, target)
    if command == "status":
        for i, member in enumerate(members):
            wanted = member.status()[-1]
            plan.status_of[i] = next(j for j, a in enumerate(actions) if a is wanted or a == wanted)
    return plan


class Countdown:
    """The executor's progress: one line rewritten on a terminal, a line per change in a log."""

    def __init__(self, console: Console) -> None:
        self.console, self._last, self._printed = console, "", 0.0

    def __call__(self, done: int, total: int | None, label: str) -> None:
        if self.console.is_terminal:
            sys.stderr.write(f"\r\x1b[K{label}")
            sys.stderr.flush()
            return
        head = label.split(":")[0]
        now = time.monotonic()
        if head != self._last or now - self._printed >= 15 or done == total:
            self._last, self._printed = head, now
            print(label, file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.console.is_terminal:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _host(name: str) -> Host:
    from resync.transport.local import LocalHost

    if name == LOCAL_HOST:
        return LocalHost(name)
    from resync.transport.ssh import SSHHost
    from resync.transport.ssh_config import SSHTarget

    return SSHHost(name, SSHTarget(host=name), name)  # as `ssh NAME` would reach it


def _no_database(name: str) -> Any:
    raise ResyncError("the lb commands talk to no database")


def executor(cfg: LbConfig, progress: Countdown | None = None,
             clock: Clock | None = None) -> Executor:
    from resync.run.executor import Executor
    from resync.run.journal import MemoryJournal
    from resync.run.waiting import SystemClock

    exe = Executor(MemoryJournal("lb"), hosts=_host, connect=_no_database,
                   clock=clock or SystemClock())
    if progress is not None:
        exe.progress = progress

    def zone_region() -> str | None:  # an instance's own region, from the zone IMDS gave
        return region_of_zone(str(exe.captured.get("self.availability_zone") or ""))

    exe.aws_factory = make_client_factory(cfg.aws.region, zone_region)
    return exe


def records_table(records: Sequence[CommandRecord], title: str) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_lines=False)
    for col, style in (("#", "dim"), ("host", ""), ("action", ""), ("result", ""),
                       ("s", "dim"), ("detail", "dim")):
        table.add_column(col, style=style, overflow="fold")
    for r in records:
        result = (Text("ok", style="green") if r.ok else Text("FAILED", style="bold red")
                  if r.ok is False else Text("running"))
        table.add_row(r.action, r.host, Text(r.text), result, f"{r.seconds:.1f}",
                      Text(r.detail or ""))
    return table


def status_table(plan: LbPlan, exe: Executor) -> Any:
    from rich.table import Table
    from rich.text import Text

    by_id = {r.action: r for r in exe.journal.data.commands}
    table = Table(title="membership")
    for col in ("member", "state", "seen"):
        table.add_column(col, overflow="fold")
    for i, member in enumerate(plan.members):
        record = by_id.get(str(plan.status_of.get(i)))
        state = exe.captured.get(str(member.state_key))
        style = "green" if state == "in_service" else "yellow"
        table.add_row(Text(member.label), Text(str(state or "?"), style=style),
                      Text(record.detail or "" if record else ""))
    return table


def run_lb(config: str, command: str, who: Who, console: Console, *, hook: str | None = None,
           group: str | None = None, clock: Clock | None = None) -> None:
    from resync.model.lb import load_lb_config

    cfg = load_lb_config(config).model
    plan = build(cfg, command, who, hook=hook, group=group)
    progress = Countdown(console)
    exe = executor(cfg, progress, clock)
    exe.begin(f"lb-{command}")
    failure: ResyncError | None = None
    try:
        exe.run(plan.actions)
    except ResyncError as exc:
        failure = exc
    finally:
        progress.end()
        exe.close()
    console.print(records_table(exe.journal.data.commands, f"resync lb {command}"))
    if command == "status" and failure is None:
        console.print(status_table(plan, exe))
    if failure is not None:
        raise failure
    done = {"status": "", "register": "registered and healthy in every member",
            "deregister": "deregistered and drained from every member"}[command]
    if done:
        who_was = " ".join(captured_target(exe, plan.target).values())
        console.print(f"{who_was}: {done}"
                      + (f"; lifecycle hook {hook} completed (CONTINUE)" if hook else ""))


def captured_target(exe: Executor, target: Target) -> dict[str, str]:
    """The target's values as the run knew them (for messages)."""
    out = {}
    for name in ("instance_id", "address", "availability_zone"):
        value = getattr(target, name)
        if isinstance(value, Ref):
            value = exe.captured.get(str(value.key))
        if value is not None:
            out[name] = str(value)
    return out

