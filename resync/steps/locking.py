"""FLUSH TABLES WITH READ LOCK held on a dedicated connection, coordinates captured under it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from resync.actions.dialect import Dialect
from resync.actions.types import Action, Sql
from resync.model.errors import DatabaseError, LockTimeout, ResyncError
from resync.steps.base import Step, StepContext

if TYPE_CHECKING:
    from resync.transport.mysql import Session

_LOCK_WAIT = "1205"


def coordinates_sql(host: str, dialect: Dialect) -> tuple[Sql, Sql]:
    status, gtid = dialect.binlog_status(), dialect.gtid_position()
    return Sql(host, status.sql, status.params), Sql(host, gtid.sql, gtid.params)


def capture_coordinates(ctx: StepContext, session: Session, host: str, dialect: Dialect,
                        prefix: str) -> None:
    status_sql, gtid_sql = coordinates_sql(host, dialect)
    rows = ctx.sql(status_sql, session)
    if not rows:
        raise ResyncError(f"{host} returned no binary log status: is log_bin enabled?")
    gtid_rows = ctx.sql(gtid_sql, session)
    gtid = next(iter(gtid_rows[0].values())) if gtid_rows else ""
    ctx.capture(f"{prefix}.file", str(rows[0]["File"]))
    ctx.capture(f"{prefix}.pos", int(str(rows[0]["Position"])))
    ctx.capture(f"{prefix}.gtid", str(gtid or "").replace("\n", ""))


def blocking_queries(ctx: StepContext, host: str) -> str:
    rows = ctx.query(host, "SELECT ID, USER, TIME, STATE, LEFT(INFO, 120) AS INFO "
                           "FROM information_schema.PROCESSLIST "
                           "WHERE COMMAND NOT IN ('Sleep', 'Daemon', 'Binlog Dump') "
                           "AND ID <> CONNECTION_ID() ORDER BY TIME DESC LIMIT 10")
    return "; ".join(f"id {r['ID']} {r['USER']} {r['TIME']}s {r['STATE']}: {r['INFO']}"
                     for r in rows) or "(none visible)"


def take_read_lock(ctx: StepContext, host: str, timeout: int) -> Session:
    """FTWRL on a new connection; on timeout report who blocks it and leave nothing locked."""
    session = ctx.new_session(host)
    try:
        ctx.sql(Sql(host, "SET SESSION lock_wait_timeout = %s", (timeout,)), session)
        ctx.sql(Sql(host, "FLUSH TABLES WITH READ LOCK"), session)
    except DatabaseError as exc:
        session.close()
        if _LOCK_WAIT in str(exc) or "timeout" in str(exc).lower():
            raise LockTimeout(f"could not take FLUSH TABLES WITH READ LOCK on {host} within "
                              f"{timeout}s; nothing was changed. Blocking: "
                              f"{blocking_queries(ctx, host)}") from None
        raise
    return session


class ReadLockAndCapture(Step):
    """Stop writes on a host and record its binlog coordinates; the lock stays held after the step."""

    def __init__(self, host: str, dialect: Dialect, prefix: str, timeout: int, purpose: str,
                 released_by: str) -> None:
        self.host_name, self.dialect, self.prefix, self.timeout = host, dialect, prefix, timeout
        self.released_by = released_by
        self.key = f"read-lock:{host}:{prefix}"
        self.title = f"Read-lock {host} and record its coordinates ({purpose})"
        self.hosts = (host,)
        self.why = ("FLUSH TABLES WITH READ LOCK on a dedicated connection that stays open; "
                    f"coordinates captured as {prefix}.file / {prefix}.pos / {prefix}.gtid")

    def plan(self) -> tuple[Action, ...]:
        return (Sql(self.host_name, "SET SESSION lock_wait_timeout = %s", (self.timeout,)),
                Sql(self.host_name, "FLUSH TABLES WITH READ LOCK"),
                *coordinates_sql(self.host_name, self.dialect))

    def run(self, ctx: StepContext) -> None:
        session = take_read_lock(ctx, self.host_name, self.timeout)
        ctx.hold(self.host_name, session)
        capture_coordinates(ctx, session, self.host_name, self.dialect, self.prefix)

    def in_effect(self, ctx: StepContext) -> bool:
        return ctx.holds(self.host_name)

    def undo_plan(self) -> tuple[Action, ...]:
        return (Sql(self.host_name, "UNLOCK TABLES"),)

    def undo(self, ctx: StepContext) -> None:
        ctx.release(self.host_name)


class Unlock(Step):
    def __init__(self, host: str) -> None:
        self.host_name = host
        self.key = f"unlock:{host}"
        self.title = f"Release the read lock on {host}"
        self.hosts = (host,)
        self.why = "writes may resume: the replica is running and caught up"

    def plan(self) -> tuple[Action, ...]:
        return (Sql(self.host_name, "UNLOCK TABLES"),)

    def run(self, ctx: StepContext) -> None:
        # after a crash the connection, and so the lock, is already gone
        ctx.release(self.host_name)
