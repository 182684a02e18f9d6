"""Stop and start the MySQL service on a host with the runbook's own service commands."""

from __future__ import annotations

from resync.actions import Action, Check, Shell
from resync.errors import DatabaseError
from resync.runbook import ServiceSettings
from resync.steps.base import Step, StepContext
from resync.waiting import wait_until


def server_answers(ctx: StepContext, host: str) -> bool:
    try:
        ctx.session(host).execute("SELECT 1")
    except DatabaseError:
        return False
    return True


def wait_state(ctx: StepContext, host: str, *, up: bool, timeout: float) -> None:
    wait_until(lambda: server_answers(ctx, host) == up,
               what=f"MySQL on {host} to {'accept connections' if up else 'stop'}",
               timeout=timeout, interval=0.25, clock=ctx.clock)


class _ServiceStep(Step):
    """Stop and start mirror each other: each one's undo is the other's run."""

    up: bool

    def __init__(self, host: str, service: ServiceSettings, role: str) -> None:
        self.host_name, self.service = host, service
        verb = "start" if self.up else "stop"
        self.key = f"{verb}-service:{host}"
        self.title = f"{verb.capitalize()} MySQL on {host} ({role})"
        self.hosts = (host,)

    def _command(self, up: bool) -> Shell:
        line = self.service.start if up else self.service.stop
        return Shell.line(self.host_name, line, privileged=True, timeout=self.service.timeout)

    def plan(self) -> tuple[Action, ...]:
        wait = "accepts connections (SELECT 1)" if self.up else "no longer accepts connections"
        return (self._command(self.up), Check(self.host_name, f"wait until the server {wait}"))

    def undo_plan(self) -> tuple[Action, ...]:
        return (self._command(not self.up),)

    def observe(self, ctx: StepContext) -> bool:
        return server_answers(ctx, self.host_name) == self.up

    def run(self, ctx: StepContext) -> None:
        ctx.shell(self._command(self.up))

    def verify(self, ctx: StepContext) -> None:
        wait_state(ctx, self.host_name, up=self.up, timeout=self.service.timeout)

    def undo(self, ctx: StepContext) -> None:
        if server_answers(ctx, self.host_name) != self.up:
            return  # already in the state the undo would bring
        ctx.shell(self._command(not self.up))
        wait_state(ctx, self.host_name, up=not self.up, timeout=self.service.timeout)


class StopService(_ServiceStep):
    up = False
    why = "a physical copy needs the donor shut down cleanly and the recipient stopped"


class StartService(_ServiceStep):
    up = True
