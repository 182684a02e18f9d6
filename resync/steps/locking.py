"""FLUSH TABLES WITH READ LOCK held on a dedicated session, coordinates captured under it."""

from __future__ import annotations

from resync.actions.conditions import All, Answers, Equals, IsSet, Same
from resync.actions.dialect import Dialect
from resync.actions.types import (
    Action,
    Assert,
    Capture,
    CaptureRows,
    HoldLock,
    Probe,
    ReleaseLock,
    Sql,
    When,
)
from resync.model.keys import Coordinates, StepId, StepKind, server_up
from resync.steps.base import Step
from resync.steps.services import answers_probe

BLOCKERS = ("SELECT ID, USER, TIME, STATE, LEFT(INFO, 120) AS INFO "
            "FROM information_schema.PROCESSLIST "
            "WHERE COMMAND NOT IN ('Sleep', 'Daemon', 'Binlog Dump') "
            "AND ID <> CONNECTION_ID() ORDER BY TIME DESC LIMIT 10")


def lock_session(host: str, purpose: str) -> str:
    return f"read-lock:{host}:{purpose}"


# the lock session must outlive the longest window it covers (a copy of hours): the server would
# otherwise close it as idle (wait_timeout) and the lock would end unnoticed
LOCK_SESSION_IDLE_SECONDS = 7 * 24 * 3600


def read_lock(host: str, session: str, timeout: int) -> HoldLock:
    """FTWRL on a new session; on a lock-wait timeout the blockers are named, nothing is held."""
    return HoldLock(host, session, (
        Sql(host, "SET SESSION lock_wait_timeout = %s, wait_timeout = %s, net_read_timeout = %s, "
                  "net_write_timeout = %s", (timeout, LOCK_SESSION_IDLE_SECONDS, 600, 600),
            session=session),
        Sql(host, "FLUSH TABLES WITH READ LOCK", session=session)),
        diagnose=CaptureRows(host, BLOCKERS),
        what=f"FLUSH TABLES WITH READ LOCK on {host} within {timeout}s")


def capture_coordinates(host: str, dialect: Dialect, at: Coordinates,
                        session: str | None) -> tuple[Capture, Capture]:
    status, gtid = dialect.binlog_status(), dialect.gtid_position()
    return (Capture(host, status.sql, status.params, session,
                    columns=(("File", at.file), ("Position", at.pos)),
                    missing="returned no binary log status: is log_bin enabled?"),
            Capture(host, gtid.sql, gtid.params, session, columns=(("gtid", at.gtid),)))


class ReadLockAndCapture(Step):
    """Stop writes on a host and record its binlog coordinates; the lock stays held after the step.

    `recapture`: taken again after a crash, the coordinates are captured again (right before the
    copy: nothing has used them yet). Otherwise a second capture must prove that nothing was
    written since the first (same position and GTID set), or the step stops.
    `start_if_down`: a server found stopped (killed run, operator) is started read-only first.
    """

    def __init__(self, host: str, dialect: Dialect, prefix: str, timeout: int, purpose: str,
                 released_by: StepId, *, recapture: bool,
                 start_if_down: tuple[Action, ...] = (), before: tuple[Action, ...] = ()) -> None:
        self.host_name, self.dialect, self.timeout = host, dialect, timeout
        self.at = Coordinates.named(prefix)
        self.recapture, self.start_if_down = recapture, start_if_down
        self.before = before  # e.g. a thaw of what a killed attempt left frozen
        self.released_by = released_by
        self.session = lock_session(host, prefix)
        self.holds_session = self.session
        self.id = StepId(StepKind.READ_LOCK, host, prefix)
        self.title = f"Read-lock {host} and record its coordinates ({purpose})"
        self.hosts = (host,)
        self.why = ("FLUSH TABLES WITH READ LOCK on a dedicated session that stays open; "
                    f"coordinates captured as {self.at.file} / {self.at.pos} / {self.at.gtid}")

    def plan(self) -> tuple[Action, ...]:
        host = self.host_name
        actions: list[Action] = [*self.before]
        if self.start_if_down:
            up = server_up(host)
            actions += [Probe(answers_probe(host), Answers(), up),
                        When(Equals(up, 0), self.start_if_down,
                             otherwise_note="it runs: nothing to start")]
        actions.append(read_lock(host, self.session, self.timeout))
        capture = capture_coordinates(host, self.dialect, self.at, self.session)
        if self.recapture:
            return (*actions, *capture)
        again = Coordinates.named(f"{self.at.file.name.rsplit('.', 1)[0]}.again")
        proof = (*capture_coordinates(host, self.dialect, again, self.session),
                 Assert(All((Same(self.at.file, again.file), Same(self.at.pos, again.pos),
                             Same(self.at.gtid, again.gtid))),
                        f"{host} was written to since its coordinates were captured: they cannot "
                        "be used; roll back, or start a new run", host))
        return (*actions, When(IsSet(self.at.file), proof, capture,
                               otherwise_note="first capture"))

    def undo_plan(self) -> tuple[Action, ...]:
        return (ReleaseLock(self.host_name, self.session),)


class Unlock(Step):
    why = "writes may resume: the replica is running and caught up"

    def __init__(self, host: str, session: str) -> None:
        self.host_name, self.session = host, session
        self.id = StepId(StepKind.UNLOCK, host)
        self.title = f"Release the read lock on {host}"
        self.hosts = (host,)

    def plan(self) -> tuple[Action, ...]:
        return (ReleaseLock(self.host_name, self.session),)
