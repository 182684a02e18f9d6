"""The run-time context steps execute in: hosts, database sessions, captured values, journal."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from resync.actions.types import Action, Captured, Check, Shell, Sql
from resync.model.errors import DatabaseError, HostError, ResyncError
from resync.model.runbook import LoadedRunbook
from resync.model.secrets import EnvSecret, Secret, mask
from resync.run.journal import CommandRecord, Journal
from resync.run.waiting import Clock, SystemClock
from resync.transport.local import CommandResult, Host, LocalHost
from resync.transport.mysql import ConnectionSpec, Session, connect

ProgressFn = Callable[[int, "int | None", str], None]


def _no_progress(done: int, total: int | None, label: str) -> None:
    pass


def make_host(loaded: LoadedRunbook, name: str) -> Host:
    settings = loaded.model.hosts[name]
    if settings.local:
        return LocalHost(name)
    from resync.model.runbook import SSHSettings
    from resync.transport.ssh import SSHHost  # paramiko only when a host is remote

    return SSHHost(name, settings.ssh or SSHSettings(), settings.address)


class RunContext:
    def __init__(self, loaded: LoadedRunbook, journal: Journal, *, clock: Clock | None = None,
                 progress: ProgressFn | None = None,
                 host_factory: Callable[[LoadedRunbook, str], Host] = make_host,
                 connector: Callable[[ConnectionSpec], Session] = connect) -> None:
        self.loaded = loaded
        self.journal = journal
        self.clock: Clock = clock or SystemClock()
        self._progress = progress or _no_progress
        self._host_factory = host_factory
        self._connector = connector
        self._hosts: dict[str, Host] = {}
        self._sessions: dict[str, Session] = {}
        self.held: dict[str, Session] = {}  # sessions holding a lock, by host
        self._step: str | None = None
        self.secrets: list[Secret] = []

    # -- engine hooks -------------------------------------------------------------------------
    def begin_step(self, key: str | None) -> None:
        self._step = key

    def close(self) -> None:
        for session in [*self._sessions.values(), *self.held.values()]:
            session.close()
        self._sessions.clear()
        self.held.clear()
        for host in self._hosts.values():
            host.close()
        self._hosts.clear()

    # -- values ------------------------------------------------------------------------------
    @property
    def captured(self) -> Captured:
        return self.journal.data.captured

    def capture(self, key: str, value: str | int | float | None) -> None:
        self.journal.capture(key, value)

    def progress(self, done: int, total: int | None, label: str) -> None:
        self._progress(done, total, label)

    # -- hosts and sessions ------------------------------------------------------------------
    def host(self, name: str) -> Host:
        if name not in self._hosts:
            self._hosts[name] = self._host_factory(self.loaded, name)
        return self._hosts[name]

    def spec(self, name: str) -> ConnectionSpec:
        spec = ConnectionSpec.from_runbook(self.loaded, name)
        if spec.password and spec.password not in self.secrets:
            self.secrets.append(spec.password)
        return spec

    def session(self, host: str) -> Session:
        current = self._sessions.get(host)
        if current is not None and current.alive():
            return current
        if current is not None:
            current.close()
        self._sessions[host] = self._connector(self.spec(host))
        return self._sessions[host]

    def new_session(self, host: str) -> Session:
        """A dedicated connection (for a lock that must stay held across steps)."""
        return self._connector(self.spec(host))

    def hold(self, host: str, session: Session) -> None:
        self.release(host)
        self.held[host] = session

    def holds(self, host: str) -> bool:
        return host in self.held

    def release(self, host: str) -> None:
        """UNLOCK TABLES on the held connection, if any (after a crash the lock is already gone)."""
        session = self.held.pop(host, None)
        if session is None:
            return
        if session.alive():
            self.sql(Sql(host, "UNLOCK TABLES"), session)
        session.close()

    # -- executing actions, each one journaled ---------------------------------------------------
    def _record(self, host: str, kind: str, text: str, ok: bool, started: float,
                exit_code: int | None = None, detail: str | None = None) -> None:
        self.journal.record(CommandRecord(
            step=self._step or "-", host=host, kind=kind, text=mask(text, self.secrets), ok=ok,
            exit_code=exit_code, seconds=round(time.monotonic() - started, 3), at=time.time(),
            detail=mask(detail, self.secrets) if detail else None))

    def sql(self, action: Sql, session: Session | None = None) -> list[dict[str, Any]]:
        text = action.render(self.captured)
        started = time.monotonic()
        for value in action.params:
            secret = value.resolve() if isinstance(value, EnvSecret) else value
            if isinstance(secret, Secret) and secret not in self.secrets:
                self.secrets.append(secret)
        sql, params = action.bind(self.captured)
        try:
            rows = (session or self.session(action.host)).execute(sql, params)
        except DatabaseError as exc:
            # the server may quote the statement back, with its bound password in it
            masked = mask(str(exc), self.secrets)
            self._record(action.host, "sql", text, False, started, detail=masked)
            raise DatabaseError(masked) from None
        self._record(action.host, "sql", text, True, started)
        return rows

    def query(self, host: str, sql: str, params: tuple[object, ...] = ()) -> list[dict[str, Any]]:
        """A read-only query for observe()/verify(); journaled like everything else."""
        return self.sql(Sql(host, sql, params))

    def record_shell(self, action: Shell, exit_code: int, tail: str) -> None:
        """Journal a command that ran in the background (the two ends of a copy)."""
        self._record(action.host, "shell", action.render(self.captured), exit_code == 0,
                     time.monotonic(), exit_code, None if exit_code == 0 else tail)

    def shell(self, action: Action, *, check: bool = True) -> CommandResult:
        if not isinstance(action, Shell):
            if isinstance(action, Check):
                raise ResyncError(f"a Check has no command to run: {action.text}")
            raise ResyncError(f"not a shell action: {action!r}")
        text = action.render(self.captured)
        started = time.monotonic()
        command = action.bind(self.captured)
        try:
            result = self.host(action.host).run(command, privileged=action.privileged,
                                                timeout=action.timeout, check=False)
        except HostError as exc:
            self._record(action.host, "shell", text, False, started, None, exc.output_tail)
            raise HostError(action.host, text, exc.returncode,
                            mask(exc.output_tail, self.secrets)) from None
        self._record(action.host, "shell", text, result.ok, started, result.exit_code,
                     None if result.ok else result.tail())
        if check and not result.ok:
            raise HostError(action.host, text, result.exit_code, mask(result.tail(), self.secrets))
        return result
