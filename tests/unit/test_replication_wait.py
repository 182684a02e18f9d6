"""Waiting for a healthy replica: the replica's own last error is what the operator sees."""

from __future__ import annotations

from typing import Any

import pytest

from resync.actions.dialect import ServerVersion, dialect_for
from resync.model.errors import ResyncError, WaitTimeout
from resync.run.waiting import FakeClock
from resync.steps.replication import WaitReplicaHealthy

MARIADB = dialect_for(ServerVersion.parse("mariadb-10.11.19"))


class StatusCtx:
    """Answers SHOW SLAVE STATUS with the rows given, one per poll (the last one repeats)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows, self.clock, self.polls = rows, FakeClock(), 0

    def query(self, host: str, sql: str, params: tuple[object, ...] = ()) -> list[dict[str, Any]]:
        assert sql == "SHOW SLAVE STATUS"
        row = self.rows[min(self.polls, len(self.rows) - 1)]
        self.polls += 1
        return [row]


def status(io: str, sql: str, lag: int | None, io_error: str = "", sql_error: str = "") -> dict[str, Any]:
    return {"Slave_IO_Running": io, "Slave_SQL_Running": sql, "Seconds_Behind_Master": lag,
            "Last_IO_Error": io_error, "Last_SQL_Error": sql_error}


def test_healthy_after_catching_up() -> None:
    ctx = StatusCtx([status("Connecting", "Yes", None), status("Yes", "Yes", 12),
                     status("Yes", "Yes", 0)])
    WaitReplicaHealthy("db2", MARIADB, timeout=30).run(ctx)  # type: ignore[arg-type]
    assert ctx.polls == 3


def test_a_stopped_sql_thread_fails_at_once_with_its_error() -> None:
    ctx = StatusCtx([status("Yes", "No", None, sql_error="Duplicate entry '7' for key 'PRIMARY'")])
    with pytest.raises(ResyncError, match="SQL thread stopped on db2: Duplicate entry '7'"):
        WaitReplicaHealthy("db2", MARIADB, timeout=30).run(ctx)  # type: ignore[arg-type]
    assert ctx.polls == 1


def test_timeout_names_the_last_io_error_without_sleeping() -> None:
    ctx = StatusCtx([status("Connecting", "Yes", None, io_error="error connecting to master "
                            "'repl@10.0.0.11:3306' - retry-time: 60")])
    with pytest.raises(WaitTimeout, match=r"timed out after 30s .* last IO error: error connecting"):
        WaitReplicaHealthy("db2", MARIADB, timeout=30).run(ctx)  # type: ignore[arg-type]
    assert ctx.clock.t >= 30
