"""Waiting for a healthy replica: one Poll, run by the executor; the replica's own state is what
the operator sees (a stopped SQL thread's error at once, the last IO/SQL state on a timeout)."""

from __future__ import annotations

from typing import Any

import pytest

from resync.actions.dialect import ServerVersion, dialect_for
from resync.actions.types import Poll, leaves
from resync.model.errors import ResyncError, WaitTimeout
from resync.run.executor import Executor
from resync.run.journal import MemoryJournal
from resync.steps.replication import WaitReplicaHealthy
from resync.testing.fakes import FakeClock

MARIADB = dialect_for(ServerVersion.parse("mariadb-10.11.19"))
MYSQL84 = dialect_for(ServerVersion.parse("mysql-8.4.3"))


class StatusSession:
    """Answers SHOW SLAVE STATUS with the rows given, one per poll (the last one repeats)."""

    def __init__(self, rows: list[dict[str, Any] | None], sql: str = "SHOW SLAVE STATUS") -> None:
        self.rows, self.sql, self.polls = rows, sql, 0

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> list[dict[str, Any]]:
        assert (sql, params) == (self.sql, ())
        row = self.rows[min(self.polls, len(self.rows) - 1)]
        self.polls += 1
        return [] if row is None else [row]

    def alive(self) -> bool:
        return True

    def close(self) -> None:
        pass


def no_host(name: str) -> Any:
    raise AssertionError(f"the wait ran a command on {name}")


def executor(session: StatusSession) -> tuple[Executor, FakeClock]:
    clock = FakeClock()
    connected: list[str] = []

    def connect(host: str) -> Any:
        connected.append(host)
        assert host == "db2"
        return session

    exe = Executor(MemoryJournal("wait"), no_host, connect, clock=clock)
    exe.begin("wait-replica:db2")
    return exe, clock


def status(io: str, sql: str, lag: int | str | None, io_error: str = "",
           sql_error: str = "") -> dict[str, Any]:
    return {"Slave_IO_Running": io, "Slave_SQL_Running": sql, "Seconds_Behind_Master": lag,
            "Last_IO_Error": io_error, "Last_SQL_Error": sql_error, "Master_Host": "db1"}


def wait(exe: Executor, timeout: float = 30, dialect: Any = MARIADB) -> None:
    exe.run(WaitReplicaHealthy("db2", dialect, timeout=timeout).plan())


def test_the_step_is_one_poll() -> None:
    (poll,) = WaitReplicaHealthy("db2", MARIADB, timeout=120).plan()
    assert isinstance(poll, Poll) and poll.host == "db2"
    assert [p.id for p in leaves([poll])] == ["0"]
    assert poll.render() == (
        "poll SHOW SLAVE STATUS until Slave_IO_Running=Yes and Slave_SQL_Running=Yes and "
        "Seconds_Behind_Master=0 (every 0.5s, at most 120s; fails at once when "
        "Slave_SQL_Running=No with Last_SQL_Error set, or no replication configured)")


def test_healthy_after_catching_up() -> None:
    session = StatusSession([status("Connecting", "Yes", None), status("Yes", "Yes", 12),
                             status("Yes", "Yes", "0")])
    exe, clock = executor(session)
    wait(exe)
    assert session.polls == 3
    assert clock.t == 1.0  # two intervals of 0.5s, no real sleeping
    (record,) = exe.journal.data.commands
    assert (record.action, record.kind, record.host, record.ok) == ("0", "poll", "db2", True)
    assert record.detail is not None and record.detail.startswith("3 look(s)")
    assert "last: Slave_IO_Running=Yes, Slave_SQL_Running=Yes, Seconds_Behind_Master=0" in \
        record.detail


def test_lag_alone_is_not_healthy() -> None:
    session = StatusSession([status("Yes", "Yes", 3)])
    exe, clock = executor(session)
    with pytest.raises(WaitTimeout, match="Seconds_Behind_Master=3"):
        wait(exe, timeout=2)
    assert session.polls == 5  # at 0, 0.5, 1, 1.5 and 2s
    assert clock.t == 2.0


def test_a_stopped_sql_thread_fails_at_once_with_its_error() -> None:
    error = "Error 'Duplicate entry '7' for key 'PRIMARY'' on query"
    session = StatusSession([status("Yes", "No", None, sql_error=error)])
    exe, clock = executor(session)
    with pytest.raises(ResyncError, match=r"\[db2\] Slave_SQL_Running=No with Last_SQL_Error set"
                                          r".*Duplicate entry '7'") as raised:
        wait(exe)
    assert not isinstance(raised.value, WaitTimeout)
    assert session.polls == 1 and clock.t == 0
    (record,) = exe.journal.data.commands
    assert record.ok is False and "Duplicate entry '7'" in (record.detail or "")


def test_no_replication_configured_fails_at_once() -> None:
    session = StatusSession([None])
    exe, _ = executor(session)
    with pytest.raises(ResyncError, match="no replication configured"):
        wait(exe)
    assert session.polls == 1


def test_a_stopped_sql_thread_without_an_error_is_waited_for() -> None:
    # START SLAVE just issued: the SQL thread may show No for a moment, with no error
    session = StatusSession([status("Yes", "No", None), status("Yes", "Yes", 0)])
    exe, _ = executor(session)
    wait(exe)
    assert session.polls == 2


def test_timeout_names_the_last_io_and_sql_state_without_sleeping() -> None:
    io_error = "error connecting to master 'repl@10.0.0.11:3306' - retry-time: 60"
    session = StatusSession([status("Connecting", "Yes", None, io_error=io_error)])
    exe, clock = executor(session)
    with pytest.raises(WaitTimeout, match=r"\[db2\] timed out after 30s waiting until "
                                          r"Slave_IO_Running=Yes .*last: Slave_IO_Running="
                                          r"Connecting, Slave_SQL_Running=Yes, "
                                          r"Seconds_Behind_Master=None, Last_IO_Error=error "
                                          r"connecting to master"):
        wait(exe)
    assert clock.t >= 30
    (record,) = exe.journal.data.commands
    assert record.ok is False and "Connecting" in (record.detail or "")


def test_mysql_84_uses_the_replica_columns() -> None:
    row = {"Replica_IO_Running": "Yes", "Replica_SQL_Running": "No",
           "Seconds_Behind_Source": None, "Last_IO_Error": "",
           "Last_SQL_Error": "Could not execute Write_rows event"}
    session = StatusSession([row], sql="SHOW REPLICA STATUS")
    exe, _ = executor(session)
    with pytest.raises(ResyncError, match=r"Replica_SQL_Running=No.*Could not execute Write_rows"):
        wait(exe, dialect=MYSQL84)
