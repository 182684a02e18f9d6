"""Stop and start the MySQL service on a host with the runbook's own service commands.

"Stopped" means the server no longer answers *and* no process holds a file of its datadir open:
a server that stopped answering may still be flushing its buffer pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from resync.actions.conditions import (
    Answers,
    ColumnAtMost,
    EmptyOutput,
    Equals,
    IsSet,
    NoAnswer,
    Not,
)
from resync.actions.dialect import Dialect
from resync.actions.quoting import q
from resync.actions.types import (
    Action,
    Capture,
    Composite,
    Leaf,
    Poll,
    Probe,
    Ref,
    Shell,
    Sql,
    When,
)
from resync.model.errors import HostError
from resync.model.keys import Key, StepId, StepKind, server_up
from resync.model.runbook import ServiceSettings
from resync.run.executor import CompositeRun, Started
from resync.steps.base import Step

WAIT_INTERVAL = 0.25


def answers_probe(host: str) -> Sql:
    return Sql(host, "SELECT 1")


def datadir_users(host: str, datadir: str) -> Shell:
    """Prints a process holding a file of the datadir open (nothing if none)."""
    pattern = q("-> " + datadir.rstrip("/") + "/")
    return Shell.line(host, f"ls -l /proc/[0-9]*/fd 2>/dev/null | grep -F -- {pattern} | head -1",
                      privileged=True, check=False)


def wait_stopped(host: str, datadir: str, timeout: float) -> tuple[Leaf, ...]:
    return (Poll(answers_probe(host), NoAnswer(), timeout, WAIT_INTERVAL),
            Poll(datadir_users(host, datadir), EmptyOutput(f"no process holds {datadir} open"),
                 timeout, WAIT_INTERVAL))


def wait_started(host: str, timeout: float) -> Poll:
    return Poll(answers_probe(host), Answers(), timeout, WAIT_INTERVAL)


def require_stopped(host: str, datadir: str, why: str) -> tuple[Leaf, ...]:
    """Refuse (at once, no waiting) unless the server is down and its datadir released."""
    return (Poll(answers_probe(host), NoAnswer(), 0, WAIT_INTERVAL,
                 failure=f"MySQL on {host} is running: {why}"),
            Poll(datadir_users(host, datadir), EmptyOutput(f"no process holds {datadir} open"),
                 0, WAIT_INTERVAL, failure=f"a process on {host} still holds {datadir} open: {why}"))


def _command(host: str, service: ServiceSettings, up: bool) -> Shell:
    return Shell.line(host, service.start if up else service.stop, privileged=True,
                      timeout=service.timeout)


@dataclass(frozen=True)
class ServerStart:
    """One server a start step brings up: where, with which commands, in which dialect."""

    host: str
    service: ServiceSettings
    datadir: str
    role: str  # recipient, donor
    dialect: Dialect


class Concurrently(Composite):
    """Commands on several hosts started together, each waited for (its own timeout) and
    journaled: two servers start in the time of the slower one, and both starts are inside
    the write-downtime. A failure of either fails the action once both have ended."""

    def __init__(self, title: str, commands: tuple[Shell, ...]) -> None:
        self.title, self.commands = title, commands
        self.host = commands[0].host

    def parts(self) -> tuple[Leaf, ...]:
        return self.commands

    def execute(self, run: CompositeRun) -> None:
        started: list[Started] = []
        try:
            for index in range(len(self.commands)):
                started.append(run.start(index))
            results = [(end, end.handle.wait(timeout=end.part.timeout)) for end in started]
        except BaseException as exc:
            for end in started:
                end.handle.kill()
                end.killed(f"stopped: {exc}")
            raise
        for end, result in results:
            end.finish(result)
        failed = [result for _, result in results if not result.ok]
        if failed:
            first = failed[0]
            raise HostError(first.host, first.command, first.exit_code, first.tail())


def _dropin_lines(server: ServerStart) -> str:
    return "\\n".join(("# written by resync for one start; removed once the server runs",
                        "[mysqld]", *server.dialect.read_only_options()))


def start_read_only(servers: Sequence[ServerStart]) -> tuple[Action, ...]:
    """Start the servers so that no client without admin rights can write and no replication
    thread starts: read_only (and super_read_only on MySQL) and skip-replica-start in the
    runbook's option-file drop-in for this one start; read_only set again once each answers
    (without a drop-in that is the only protection, and a client could write in between).
    Several servers are started together (Concurrently)."""
    actions: list[Action] = [
        Shell.line(s.host, f"printf '{_dropin_lines(s)}\\n' > {q(s.service.config_dropin)}",
                   privileged=True) for s in servers if s.service.config_dropin]
    starts = tuple(_command(s.host, s.service, True) for s in servers)
    actions.append(starts[0] if len(starts) == 1 else Concurrently(
        "start " + " and ".join(s.host for s in servers) + " together", starts))
    actions += [wait_started(s.host, s.service.timeout) for s in servers]
    actions += [Shell.line(s.host, f"rm -f {q(s.service.config_dropin)}", privileged=True)
                for s in servers if s.service.config_dropin]
    actions += [Sql(s.host, st.sql) for s in servers for st in s.dialect.set_read_only(True)]
    return tuple(actions)


class StopService(Step):
    why = "a physical copy needs the donor shut down cleanly and the recipient stopped"

    def __init__(self, host: str, service: ServiceSettings, datadir: str, role: str,
                 requires: tuple[Action, ...] = ()) -> None:
        self.host_name, self.service, self.datadir = host, service, datadir
        self.requires = requires  # checked first (the donor's lock still holds)
        self.id = StepId(StepKind.STOP_SERVICE, host)
        self.title = f"Stop MySQL on {host} ({role})"
        self.hosts = (host,)

    def plan(self) -> tuple[Action, ...]:
        up = server_up(self.host_name)
        return (*self.requires, Probe(answers_probe(self.host_name), Answers(), up),
                When(Equals(up, 1), (_command(self.host_name, self.service, False),),
                     otherwise_note="already stopped: no stop command"),
                *wait_stopped(self.host_name, self.datadir, self.service.timeout))

    def undo_plan(self) -> tuple[Action, ...]:
        return (_command(self.host_name, self.service, True),
                wait_started(self.host_name, self.service.timeout))


class StartService(Step):
    """Start the recipient (and, when it was stopped for the copy, the donor with it), read-only.
    One server: `start-service:<host>`; two: `start-service:<a>+<b>`, started together."""

    def __init__(self, *servers: ServerStart) -> None:
        self.servers = servers
        hosts = tuple(s.host for s in servers)
        self.host_name = hosts[0]
        self.id = StepId(StepKind.START_SERVICE, "+".join(hosts))
        self.title = ("Start MySQL on " + " and ".join(f"{s.host} ({s.role})" for s in servers)
                      + (" together" if len(servers) > 1 else "") + ", read-only")
        self.hosts = hosts
        no_dropin = [s.host for s in servers if not s.service.config_dropin]
        self.why = ("the copy is complete and matched on both ends; the server comes up "
                    "read-only with replication stopped: nothing can write to it until "
                    "replication is configured" + ("" if not no_dropin else
                                                  f" (no service.config_dropin for "
                                                  f"{', '.join(no_dropin)} in the runbook: "
                                                  "read_only is set right after it answers)"))

    def plan(self) -> tuple[Action, ...]:
        return start_read_only(self.servers)

    def undo_plan(self) -> tuple[Action, ...]:
        # a run killed between writing the drop-in and removing it leaves it behind: the
        # server started again by the rollback would come up read-only for good
        out: list[Action] = []
        for s in self.servers:
            out += [_command(s.host, s.service, False),
                    *wait_stopped(s.host, s.datadir, s.service.timeout)]
            if s.service.config_dropin:
                out.append(Shell.line(s.host, f"rm -f {q(s.service.config_dropin)}",
                                      privileged=True))
        return tuple(out)


# a few pages left to flush at shutdown (16 MB of 16 KiB pages): well under a second of writes
FEW_DIRTY_PAGES = 1000
PREFLUSH_SECONDS = 300.0


class PreflushDonor(Step):
    """Write the donor's dirty pages out before its read lock, so that its shutdown under the
    lock has little left to flush (measured here: a 6 s shutdown became the copy's own time).
    innodb_max_dirty_pages_pct = 0 makes the page cleaners flush everything; its value before
    is captured once (a repeat must not capture the 0) and put back by a rollback; the donor's
    shutdown ends the setting otherwise (it is not persisted)."""

    def __init__(self, host: str, dialect: Dialect) -> None:
        self.host_name, self.dialect = host, dialect
        self.before = Key(f"{host}.innodb_max_dirty_pages_pct")
        self.id = StepId(StepKind.PREFLUSH, host)
        self.title = f"Flush {host}'s dirty pages before its lock (its shutdown is then short)"
        self.hosts = (host,)
        self.why = ("the shutdown under the read lock would flush every dirty page: done now, "
                    "while the donor still serves; a wait that runs out is not an error")

    def plan(self) -> tuple[Action, ...]:
        host, d = self.host_name, self.dialect
        read, dirty = d.max_dirty_pages_pct(), d.dirty_pages()
        return (When(Not(IsSet(self.before)),
                     (Capture(host, read.sql, columns=(("pct", self.before),)),),
                     otherwise_note="captured by an earlier attempt"),
                Sql(host, d.set_max_dirty_pages_pct().sql, (0,)),
                Poll(Sql(host, dirty.sql), ColumnAtMost("Value", FEW_DIRTY_PAGES, "dirty pages"),
                     PREFLUSH_SECONDS, 0.5, timeout_ok=True))

    def undo_plan(self) -> tuple[Action, ...]:
        return (When(IsSet(self.before), (Sql(self.host_name, self.dialect.set_max_dirty_pages_pct()
                                              .sql, (Ref(self.before),)),),
                     otherwise_note="it was not changed"),)
