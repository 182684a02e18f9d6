"""Both servers at one position: the primary's consistent snapshot (or a short table lock) at a
known binlog position, the replica's applier stopped exactly there, then started again.

The replica's applier is stopped *before* the primary's position is taken, so the replica can
only be behind it; START ... SQL_THREAD UNTIL that position then stops it exactly there (the
IO thread keeps receiving all along). Its own snapshot (or the locked table's checksum) is
taken while it waits, and it is started again at once: replication lags by the time this
takes, never by the checksums.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from resync.actions.dialect import Dialect, Statement
from resync.model.errors import DatabaseError, ResyncError
from resync.run.executor import CompositeRun
from resync.steps.verify.parts import (
    COMMIT,
    FTWRL,
    ISOLATION,
    SESSION_SETUP,
    SNAPSHOT,
    SNAPSHOT_LOCK_WAIT,
    UNLOCK,
    WAIT_SECONDS,
)
from resync.steps.verify.progress import PAUSED
from resync.transport.mysql import Session

LOCK_BUSY = (1205, 1213)  # lock wait timeout (NOWAIT: taken), deadlock
T = TypeVar("T")
U = TypeVar("U")


@dataclass
class Tally:
    """How often one leaf of the plan ran, for how long, and how it ended."""

    count: int = 0
    seconds: float = 0.0
    error: str | None = None
    note: str = ""

    def add(self, seconds: float) -> None:
        self.count += 1
        self.seconds += seconds


class Server:
    """One side's sessions (each opened on first use) and its statements, timed per leaf."""

    def __init__(self, run: CompositeRun, host: str, dialect: Dialect, role: str,
                 tallies: dict[str, Tally]) -> None:
        self.run, self.host, self.dialect, self.role = run, host, dialect, role
        self.tallies = tallies
        self._sessions: dict[str, Session] = {}

    def session(self, name: str) -> Session:
        if name not in self._sessions:
            session = self.run.executor.connect(self.host)
            self._sessions[name] = session
            self.sql("session_" + self.role[0], name, SESSION_SETUP)
            if name == "lock":  # a busy table is not waited for (MySQL has no NOWAIT there)
                self.sql("lock_wait", name, SNAPSHOT_LOCK_WAIT)
        return self._sessions[name]

    def sql(self, part: str, session: str, statement: Statement | str,
            params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        text = statement.sql if isinstance(statement, Statement) else statement
        if isinstance(statement, Statement):
            params = statement.params
        tally = self.tallies[part]
        started = time.monotonic()
        try:
            return self.session(session).execute(text, tuple(params))
        except DatabaseError as exc:
            tally.error = str(exc)
            raise
        finally:
            tally.add(time.monotonic() - started)

    def drop(self, name: str) -> None:
        session = self._sessions.pop(name, None)
        if session is not None:
            session.close()

    def close(self) -> None:
        for name in list(self._sessions):
            self.drop(name)


@dataclass(frozen=True)
class Position:
    file: str | None = None
    pos: int | None = None
    gtid: str | None = None

    def __str__(self) -> str:
        return self.gtid if self.gtid is not None else f"{self.file}:{self.pos}"


class TooSlow(ResyncError):
    """A statement under a table lock ran out of its time: the lock was released."""


class Missed(ResyncError):
    """The replica's applier stopped elsewhere than the position: another position is tried."""


MISSED_TRIES = 3


class Syncer:
    """Brings the replica to the primary's position, for a snapshot round or a locked chunk."""

    def __init__(self, primary: Server, replica: Server, by_gtid: bool, lock_timeout: float,
                 lock_budget: float) -> None:
        self.primary, self.replica, self.by_gtid = primary, replica, by_gtid
        self.lock_timeout, self.lock_budget = lock_timeout, lock_budget
        self.run = primary.run
        self.longest_lock = 0.0  # seconds the primary held a lock (FTWRL, a table's)
        self._until = False  # the applier runs with an UNTIL condition not yet reached

    # -- the replica's applier --------------------------------------------------------------------
    def recover(self) -> None:
        """A killed verify may have left the applier stopped, or running with an UNTIL that
        would stop it later: stop it (a no-op if it is) and start it without one."""
        if self.run.captured.get(str(PAUSED)) not in (1, "1"):
            return
        self.replica.tallies["resume"].note = "started again after a verify that was killed"
        self._until = True
        self._resume()

    def _running(self) -> None:
        rd = self.replica.dialect
        rows = self.replica.sql("running", "control", rd.replica_status())
        f = rd.status_fields
        if not rows or rows[0].get(f.sql_running) != "Yes":
            row = rows[0] if rows else {}
            raise ResyncError(
                f"[{self.replica.host}] replication is not running ({f.sql_running}="
                f"{row.get(f.sql_running, 'not a replica')}, {f.io_running}="
                f"{row.get(f.io_running, '-')} {row.get(f.last_sql_error) or ''}): the data can "
                "only be compared with the replica at the primary's position; start it first")

    def _pause(self) -> None:
        self._running()
        self.run.capture(PAUSED, 1)
        self.replica.sql("pause", "control", self.replica.dialect.stop_applier())

    def _resume(self) -> None:
        if self._until:  # a START ... UNTIL that did not get there: it would stop it there later
            self.replica.sql("pause", "control", self.replica.dialect.stop_applier())
            self._until = False
        self.replica.sql("resume", "control", self.replica.dialect.start_applier())
        self.run.capture(PAUSED, 0)

    def _status(self) -> dict[str, Any]:
        rows = self.replica.session("control").execute(self.replica.dialect.replica_status().sql)
        return rows[0] if rows else {}

    def _at(self, at: Position, row: dict[str, Any]) -> bool:
        """Has the (stopped) applier executed exactly up to the position?"""
        if self.by_gtid:
            got = self.replica.sql("reached", "control", self.replica.dialect.gtid_applied(at.gtid))
            return bool(got) and str(got[0].get("reached")) == "1"
        self.replica.tallies["reached"].add(0.0)
        f = self.replica.dialect.status_fields
        return (row.get(f.source_log_file) == at.file
                and str(row.get(f.exec_source_log_pos)) == str(at.pos))

    def _reach(self, at: Position) -> None:
        """The applier (stopped before the position was taken, so not past it) runs until the
        position: START ... UNTIL it, unless it is there already; then it is checked."""
        rd, f = self.replica.dialect, self.replica.dialect.status_fields
        if self._at(at, self._status()):
            return
        until = (rd.start_applier_until_gtid(at.gtid) if self.by_gtid
                 else rd.start_applier_until_file_pos(at.file, at.pos))
        self._until = True
        self.replica.sql("until", "control", until)
        tally, started = self.replica.tallies["stopped"], time.monotonic()
        looks, interval, row = 0, 0.005, {}
        try:
            while True:
                row = self._status()
                looks += 1
                if row.get(f.sql_running) != "Yes":
                    break
                if not self.by_gtid and time.monotonic() - started > 0.5 and self._at(at, row):
                    # there, idle, and the UNTIL not noticed (MariaDB after a GTID connect):
                    # stopped by hand, then checked again (an event applied since: too far)
                    self.replica.sql("pause", "control", rd.stop_applier())
                    row = self._status()
                    break
                if time.monotonic() - started > WAIT_SECONDS:
                    seen = ", ".join(f"{k}={row.get(k)}" for k in (
                        f.io_running, f.seconds_behind, f.source_log_file, f.exec_source_log_pos,
                        "Until_Condition", "Until_Log_File", "Until_Log_Pos"))
                    raise ResyncError(
                        f"[{self.replica.host}] did not reach {self.primary.host}'s position {at} "
                        f"within {WAIT_SECONDS}s ({seen}): cannot compare data")
                time.sleep(interval)
                interval = min(0.1, interval * 1.5)
        finally:
            tally.add(time.monotonic() - started)
            tally.note = f"{looks} look(s) at the last position"
        self._until = False  # stopped: at the position, or short of it with an error
        if row.get(f.last_sql_error):
            raise ResyncError(f"[{self.replica.host}] replication stopped with an error: "
                              f"{row.get(f.last_sql_error)}")
        if not self._at(at, row):
            raise Missed(f"[{self.replica.host}] its applier stopped, but not at "
                         f"{self.primary.host}'s position {at} ({f.source_log_file}="
                         f"{row.get(f.source_log_file)}, {f.exec_source_log_pos}="
                         f"{row.get(f.exec_source_log_pos)}): cannot compare there")

    # -- the primary's position -----------------------------------------------------------------
    def _position(self, rows: list[dict[str, Any]], where: str) -> Position:
        if self.by_gtid:
            gtid = rows[0].get("gtid") if rows else None
            if not gtid:
                raise ResyncError(f"[{self.primary.host}] has no GTID position ({where})")
            return Position(gtid=str(gtid).replace("\n", ""))
        if rows and "Variable_name" in rows[0]:  # SHOW STATUS LIKE 'binlog_snapshot_%'
            values = {str(r["Variable_name"]).lower(): r["Value"] for r in rows}
            file, pos = values.get("binlog_snapshot_file"), values.get("binlog_snapshot_position")
        else:
            file, pos = (rows[0].get("File"), rows[0].get("Position")) if rows else (None, None)
        if not file:
            raise ResyncError(f"[{self.primary.host}] returned no binary log position ({where}): "
                              "is log_bin enabled?")
        return Position(str(file), int(str(pos)))

    def _retrying(self, what: str, attempt: Callable[[], T]) -> T:
        """Take a lock that must not be waited for: try again while it is busy."""
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                return attempt()
            except DatabaseError as exc:
                if exc.code not in LOCK_BUSY or time.monotonic() > deadline:
                    raise ResyncError(f"[{self.primary.host}] could not take {what} within "
                                      f"{self.lock_timeout:g}s: {exc}") from None
            time.sleep(0.05)

    def _snapshot_primary(self) -> Position:
        p, pd = self.primary, self.primary.dialect
        p.sql("isolation_p", "snap", ISOLATION)
        status = pd.snapshot_position()
        if status is not None:  # MariaDB: the snapshot knows its own position
            p.sql("snapshot_p", "snap", SNAPSHOT)
            return self._position(p.sql("position_p", "snap", status), "its snapshot")
        p.sql("lock_wait_p", "snap", SNAPSHOT_LOCK_WAIT)
        self._retrying("FLUSH TABLES WITH READ LOCK", lambda: p.sql("ftwrl", "snap", FTWRL))
        held = time.monotonic()
        try:
            p.sql("snapshot_p", "snap", SNAPSHOT)
            where = pd.gtid_position() if self.by_gtid else pd.binlog_status()
            return self._position(p.sql("position_p", "snap", where), "under FTWRL")
        finally:
            p.sql("unlock_p", "snap", UNLOCK)
            self.longest_lock = max(self.longest_lock, time.monotonic() - held)

    # -- a snapshot round, a locked chunk ---------------------------------------------------------
    def open_round(self) -> Position:
        """Both servers in a consistent snapshot of the same position."""
        for attempt in range(MISSED_TRIES):
            self._pause()
            try:
                at = self._snapshot_primary()  # a new one: START TRANSACTION ends the last
                self._reach(at)
                self.replica.sql("isolation_r", "snap", ISOLATION)
                self.replica.sql("snapshot_r", "snap", SNAPSHOT)
                return at
            except Missed:
                if attempt == MISSED_TRIES - 1:
                    raise
            finally:
                self._resume()
        raise AssertionError("unreachable")

    def close_round(self) -> None:
        for server, part in ((self.primary, "end_p"), (self.replica, "end_r")):
            try:
                server.sql(part, "snap", COMMIT)
            except DatabaseError:
                server.drop("snap")  # a session that broke: the next round opens another

    def locked(self, table: str, on_primary: Callable[[float], T],
               on_replica: Callable[[T], U]) -> tuple[T, U]:
        for attempt in range(MISSED_TRIES):
            try:
                return self._locked(table, on_primary, on_replica)
            except Missed:
                if attempt == MISSED_TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _locked(self, table: str, on_primary: Callable[[float], T],
                on_replica: Callable[[T], U]) -> tuple[T, U]:
        """One table read-locked on the primary (no longer than the lock budget): its position
        taken, `on_primary(deadline)` run and the lock released; then the replica brought to that
        position, `on_replica` run there while its applier waits. While a writer holds the
        table, the applier runs again between the tries."""
        p, pd = self.primary, self.primary.dialect
        give_up, wait = time.monotonic() + self.lock_timeout, 0.02
        while True:
            self._pause()
            try:
                p.sql("lock", "lock", pd.lock_table_read(table))
                break
            except DatabaseError as exc:
                self._resume()
                if exc.code not in LOCK_BUSY:
                    raise  # no such table, ...
                if time.monotonic() > give_up:
                    raise ResyncError(f"[{p.host}] could not take a read lock on {table} within "
                                      f"{self.lock_timeout:g}s: {exc}") from None
            except BaseException:
                self._resume()
                raise
            time.sleep(wait)
            wait = min(0.5, wait * 2)
        try:
            held = time.monotonic()
            try:
                where = pd.gtid_position() if self.by_gtid else pd.binlog_status()
                at = self._position(p.sql("lock_position", "lock", where), "under LOCK TABLES")
                mine = on_primary(held + self.lock_budget)
            finally:
                try:
                    p.sql("unlock", "lock", UNLOCK)
                except DatabaseError:
                    p.drop("lock")  # closing the session releases its lock too
                self.longest_lock = max(self.longest_lock, time.monotonic() - held)
            self._reach(at)
            theirs = on_replica(mine)
        finally:
            self._resume()
        return mine, theirs
