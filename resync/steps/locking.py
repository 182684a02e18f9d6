"""FLUSH TABLES WITH READ LOCK held on a dedicated session, coordinates captured under it."""

from __future__ import annotations

from resync.actions.dialect import Dialect
from resync.actions.types import Action, Capture, CaptureRows, HoldLock, ReleaseLock, Sql
from resync.model.keys import Coordinates, StepId, StepKind
from resync.steps.base import Step

BLOCKERS = ("SELECT ID, USER, TIME, STATE, LEFT(INFO, 120) AS INFO "
            "FROM information_schema.PROCESSLIST "
            "WHERE COMMAND NOT IN ('Sleep', 'Daemon', 'Binlog Dump') "
            "AND ID <> CONNECTION_ID() ORDER BY TIME DESC LIMIT 10")


def lock_session(host: str, purpose: str) -> str:
    return f"read-lock:{host}:{purpose}"


def read_lock(host: str, session: str, timeout: int) -> HoldLock:
    """FTWRL on a new session; on a lock-wait timeout the blockers are named, nothing is held."""
    return HoldLock(host, session, (
        Sql(host, "SET SESSION lock_wait_timeout = %s", (timeout,), session=session),
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
    """Stop writes on a host and record its binlog coordinates; the lock stays held after the step."""

    def __init__(self, host: str, dialect: Dialect, prefix: str, timeout: int, purpose: str,
                 released_by: StepId) -> None:
        self.host_name, self.dialect, self.timeout = host, dialect, timeout
        self.at = Coordinates.named(prefix)
        self.released_by = released_by
        self.session = lock_session(host, prefix)
        self.holds_session = self.session
        self.id = StepId(StepKind.READ_LOCK, host, prefix)
        self.title = f"Read-lock {host} and record its coordinates ({purpose})"
        self.hosts = (host,)
        self.why = ("FLUSH TABLES WITH READ LOCK on a dedicated session that stays open; "
                    f"coordinates captured as {self.at.file} / {self.at.pos} / {self.at.gtid}")

    def plan(self) -> tuple[Action, ...]:
        return (read_lock(self.host_name, self.session, self.timeout),
                *capture_coordinates(self.host_name, self.dialect, self.at, self.session))

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
