"""The step contract: name, hosts, observe(), plan(), run(), verify(), undo()."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from resync.actions.types import Action, Captured, Shell, Sql

if TYPE_CHECKING:
    from resync.run.waiting import Clock
    from resync.transport.local import CommandResult, Host
    from resync.transport.mysql import Session


class StepContext(Protocol):
    """What a step may use while it runs. Implemented by resync.context.RunContext and test fakes."""

    @property
    def captured(self) -> Captured: ...
    @property
    def clock(self) -> Clock: ...
    def capture(self, key: str, value: str | int | float | None) -> None: ...
    def sql(self, action: Sql, session: Session | None = None) -> list[dict[str, Any]]: ...
    def shell(self, action: Action, *, check: bool = True) -> CommandResult: ...
    def record_shell(self, action: Shell, exit_code: int, tail: str) -> None: ...
    def query(self, host: str, sql: str, params: tuple[object, ...] = ()) -> list[dict[str, Any]]: ...
    def session(self, host: str) -> Session: ...
    def new_session(self, host: str) -> Session: ...
    def hold(self, host: str, session: Session) -> None: ...
    def release(self, host: str) -> None: ...
    def holds(self, host: str) -> bool: ...
    def host(self, name: str) -> Host: ...
    def progress(self, done: int, total: int | None, label: str) -> None: ...


class Step:
    """Base class. Subclasses set key/title/hosts and override what they need.

    plan() returns the exact actions run() executes; the default run() executes them in order.
    """

    key: str = ""
    title: str = ""
    hosts: tuple[str, ...] = ()
    destructive: bool = False
    why: str = ""  # one line for the plan: why this step exists
    # for effects held by this process (a read lock on an open connection): the key of the step
    # after which the effect is no longer needed; until then, a resumed run redoes this step
    released_by: str | None = None

    def plan(self) -> tuple[Action, ...]:
        return ()

    def undo_plan(self) -> tuple[Action, ...]:
        """Actions that undo this step; empty when it cannot be undone."""
        return ()

    def observe(self, ctx: StepContext) -> bool:
        """Is the effect of this step already in place? (used on resume and to skip no-ops)"""
        return False

    def in_effect(self, ctx: StepContext) -> bool:
        """For steps with `released_by`: is the effect still held by this process?"""
        return True

    def run(self, ctx: StepContext) -> None:
        for action in self.plan():
            execute(ctx, action)

    def verify(self, ctx: StepContext) -> None:
        """Raise if the step's effect is not in place after run()."""

    def undo(self, ctx: StepContext) -> None:
        for action in self.undo_plan():
            execute(ctx, action)


def execute(ctx: StepContext, action: Action) -> None:
    if isinstance(action, Sql):
        ctx.sql(action)
    else:
        ctx.shell(action)
