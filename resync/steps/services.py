"""Stop and start the MySQL service on a host with the runbook's own service commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from resync.actions.types import Action, Check, Shell, q
from resync.model.errors import DatabaseError, ResyncError
from resync.model.runbook import ServiceSettings
from resync.run.waiting import wait_until
from resync.steps.base import Step, StepContext

if TYPE_CHECKING:
    from resync.transport.local import Host


def server_answers(ctx: StepContext, host: str) -> bool:
    try:
        ctx.session(host).execute("SELECT 1")
    except DatabaseError:
        return False
    return True


def datadir_user(host: Host, datadir: str) -> str:
    """A process holding a file of the datadir open ("" if none). A server that no longer answers
    may still be flushing its buffer pool; a wrong address makes a running one look stopped."""
    pattern = q("-> " + datadir.rstrip("/") + "/")
    return host.run(f"ls -l /proc/[0-9]*/fd 2>/dev/null | grep -F -- {pattern} | head -1",
                    privileged=True, check=False).stdout.strip()


def server_stopped(ctx: StepContext, host: str, datadir: str) -> bool:
    return not server_answers(ctx, host) and not datadir_user(ctx.host(host), datadir)


def require_stopped(ctx: StepContext, host: str, datadir: str, why: str) -> None:
    if server_answers(ctx, host):
        raise ResyncError(f"MySQL on {host} is running: {why}")
    if user := datadir_user(ctx.host(host), datadir):
        raise ResyncError(f"a process on {host} still holds {datadir} open ({user}): {why}")


def wait_state(ctx: StepContext, host: str, datadir: str, *, up: bool, timeout: float) -> None:
    wait_until(lambda: server_answers(ctx, host) if up else server_stopped(ctx, host, datadir),
               what=f"MySQL on {host} to {'accept connections' if up else 'stop and release its datadir'}",
               timeout=timeout, interval=0.25, clock=ctx.clock)


class _ServiceStep(Step):
    """Stop and start mirror each other: each one's undo is the other's run."""

    up: bool

    def __init__(self, host: str, service: ServiceSettings, datadir: str, role: str) -> None:
        self.host_name, self.service, self.datadir = host, service, datadir
        verb = "start" if self.up else "stop"
        self.key = f"{verb}-service:{host}"
        self.title = f"{verb.capitalize()} MySQL on {host} ({role})"
        self.hosts = (host,)

    def _command(self, up: bool) -> Shell:
        line = self.service.start if up else self.service.stop
        return Shell.line(self.host_name, line, privileged=True, timeout=self.service.timeout)

    def plan(self) -> tuple[Action, ...]:
        wait = ("accepts connections (SELECT 1)" if self.up else
                f"no longer accepts connections and no process holds {self.datadir} open")
        return (self._command(self.up), Check(self.host_name, f"wait until the server {wait}"))

    def undo_plan(self) -> tuple[Action, ...]:
        return (self._command(not self.up),)

    def _in_state(self, ctx: StepContext, up: bool) -> bool:
        return (server_answers(ctx, self.host_name) if up else
                server_stopped(ctx, self.host_name, self.datadir))

    def observe(self, ctx: StepContext) -> bool:
        return self._in_state(ctx, self.up)

    def run(self, ctx: StepContext) -> None:
        ctx.shell(self._command(self.up))

    def verify(self, ctx: StepContext) -> None:
        wait_state(ctx, self.host_name, self.datadir, up=self.up, timeout=self.service.timeout)

    def undo(self, ctx: StepContext) -> None:
        if self._in_state(ctx, not self.up):
            return  # already in the state the undo would bring
        ctx.shell(self._command(not self.up))
        wait_state(ctx, self.host_name, self.datadir, up=not self.up, timeout=self.service.timeout)


class StopService(_ServiceStep):
    up = False
    why = "a physical copy needs the donor shut down cleanly and the recipient stopped"


class StartService(_ServiceStep):
    up = True
