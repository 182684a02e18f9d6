"""Verify the data: at a synced point, CHECKSUM TABLE every user table on primary and replica."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from resync.actions.dialect import Dialect
from resync.actions.types import Action, Check, Sql
from resync.model.errors import ResyncError
from resync.steps.base import Step, StepContext
from resync.steps.locking import take_read_lock

SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")
LIST_TABLES = ("SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t FROM information_schema.TABLES "
               "WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN (%s, %s, %s, %s) "
               "ORDER BY TABLE_SCHEMA, TABLE_NAME")


def quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class TableCheck:
    table: str
    primary: int | None
    replica: int | None

    @property
    def ok(self) -> bool:
        return self.primary == self.replica


def checksums(ctx: StepContext, host: str, tables: list[str]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for chunk in (tables[i:i + 50] for i in range(0, len(tables), 50)):
        rows = ctx.query(host, "CHECKSUM TABLE " + ", ".join(
            ".".join(quote_ident(p) for p in t.split(".", 1)) for t in chunk))
        for row in rows:
            value = row.get("Checksum")
            out[str(row["Table"])] = None if value is None else int(str(value))
    return out


def compare_data(ctx: StepContext, primary: str, replica: str, dialect: Dialect,
                 mode: Literal["gtid", "file_pos"], lock_timeout: int,
                 wait_timeout: int = 300) -> list[TableCheck]:
    """Lock the primary, let the replica reach its position, checksum both, unlock."""
    lock = take_read_lock(ctx, primary, lock_timeout)
    try:
        if mode == "gtid":
            gtid_row = ctx.sql(Sql(primary, dialect.gtid_position().sql), lock)
            position = str(next(iter(gtid_row[0].values())) or "")
            wait = dialect.wait_for_gtid(position, wait_timeout)
        else:
            status = ctx.sql(Sql(primary, dialect.binlog_status().sql), lock)
            wait = dialect.wait_for_file_pos(str(status[0]["File"]),
                                             int(str(status[0]["Position"])), wait_timeout)
        rows = ctx.query(replica, wait.sql, wait.params)
        result = next(iter(rows[0].values())) if rows else None
        if result is None or int(str(result)) < 0:
            raise ResyncError(f"{replica} did not reach {primary}'s position within "
                              f"{wait_timeout}s (result {result}): cannot compare data")
        tables = [f"{r['s']}.{r['t']}" for r in ctx.query(primary, LIST_TABLES, SYSTEM_SCHEMAS)]
        on_primary = checksums(ctx, primary, tables)
        on_replica = checksums(ctx, replica, tables)
    finally:
        ctx.sql(Sql(primary, "UNLOCK TABLES"), lock)
        lock.close()
    return [TableCheck(t, on_primary.get(t), on_replica.get(t)) for t in tables]


class VerifyData(Step):
    def __init__(self, primary: str, replica: str, dialect: Dialect,
                 mode: Literal["gtid", "file_pos"], lock_timeout: int) -> None:
        self.primary, self.replica, self.dialect, self.mode = primary, replica, dialect, mode
        self.lock_timeout = lock_timeout
        self.key = f"verify-data:{primary}={replica}"
        self.title = f"Verify: checksum every user table on {primary} and {replica}"
        self.hosts = (primary, replica)
        self.why = ("the run fails, naming the tables, if any checksum differs; the primary stays "
                    "read-locked while the checksums run (longer with more data): keep the "
                    "application in maintenance until this step is done")

    def plan(self) -> tuple[Action, ...]:
        wait = (self.dialect.wait_for_gtid("<primary gtid>", 300) if self.mode == "gtid" else
                self.dialect.wait_for_file_pos("<primary file>", 0, 300))
        return (Sql(self.primary, "FLUSH TABLES WITH READ LOCK"),
                Check(self.replica, "wait for the primary's position: "
                      + Sql(self.replica, wait.sql, wait.params).render()),
                Check(self.primary, "CHECKSUM TABLE <every user table> (also on the replica)"),
                Sql(self.primary, "UNLOCK TABLES"))

    def run(self, ctx: StepContext) -> None:
        results = compare_data(ctx, self.primary, self.replica, self.dialect, self.mode,
                               self.lock_timeout)
        bad = [r.table for r in results if not r.ok]
        ctx.capture("verify.tables", len(results))
        ctx.capture("verify.report", json.dumps([[r.table, r.primary, r.replica]
                                                 for r in results]))
        if bad:
            raise ResyncError(f"checksums differ for {len(bad)} table(s): {', '.join(bad)}")
