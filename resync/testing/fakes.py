"""Fakes for tests: a clock whose sleep() advances time at once, and the servers and hosts an
executor talks to (scripted replies, everything recorded)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from resync.transport.local import CommandResult

Rows = list[dict[str, Any]]
Reply = Rows | BaseException | Callable[[tuple[object, ...]], Rows]  # rows, raised, or by params


@dataclass
class FakeClock:
    """A clock for tests: sleep() advances time instantly."""

    t: float = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class FakeWorld:
    """The servers and hosts a run talks to (`Executor(hosts=world.host, connect=world.connect)`):
    scripted replies per SQL text and outputs per command; everything sent is recorded."""

    replies: dict[str, Reply] = field(default_factory=dict)
    outputs: dict[str, CommandResult] = field(default_factory=dict)
    sent: list[tuple[int, str, tuple[object, ...]]] = field(default_factory=list)  # (session, sql, params)
    commands: list[str] = field(default_factory=list)
    sessions: list[FakeSession] = field(default_factory=list)
    on_execute: Callable[[str], None] | None = None  # called with each statement before its reply

    def connect(self, host: str) -> Any:
        session = FakeSession(self, host, len(self.sessions))
        self.sessions.append(session)
        return session

    def host(self, name: str) -> Any:
        return FakeHost(self, name)

    def executed(self) -> list[str]:
        return [sql for _, sql, _ in self.sent]

    def answer(self, host: str, command: str) -> CommandResult:
        """What a command run on `host` gives (override to run it for real): its scripted output,
        else success with no output."""
        return self.outputs.get(command, CommandResult(host, command, 0, "", ""))


@dataclass
class FakeSession:
    world: FakeWorld
    host: str
    number: int
    closed: bool = False

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> Rows:
        assert not self.closed, f"statement on a closed session: {sql}"
        self.world.sent.append((self.number, sql, params))
        if self.world.on_execute is not None:
            self.world.on_execute(sql)
        reply = self.world.replies.get(sql, [])
        if isinstance(reply, BaseException):
            raise reply
        if callable(reply):
            return reply(params)
        return reply

    def alive(self) -> bool:
        return not self.closed

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeHost:
    world: FakeWorld
    name: str

    def run(self, command: str, *, privileged: bool = False, timeout: float | None = None,
            check: bool = True) -> CommandResult:
        self.world.commands.append(command)
        return self.world.answer(self.name, command)

    def start(self, command: str, *, privileged: bool = False) -> Any:
        raise AssertionError("no background commands in these tests")

    def close(self) -> None:
        pass
