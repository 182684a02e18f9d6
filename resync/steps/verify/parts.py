"""The verify's leaves as the plan lists them: each statement it runs, and how often.

The chunked verify runs its statements many times (per table, per chunk, per position), so each
is one leaf that says when it runs ("each chunk: SELECT ..."), journaled once at the end with
its count and time (as a Poll records its looks). The text is built by the same functions that
build the statements run, with placeholders where a table, a key or a position goes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from resync.actions.dialect import Dialect, Statement
from resync.actions.types import CaptureRows, Leaf, Ref, Slot, Sql, Template
from resync.model.keys import VERIFY_TABLES, Key
from resync.steps.verify.chunks import (
    CHUNK_SECONDS,
    LOCK_BUDGET,
    LOCKED_BOUNDARY_CAP,
    LOCKED_CHECKSUM_CAP,
    PLAN_BOUNDARY,
    PLAN_CHECKSUM,
    ROUND_SECONDS,
)
from resync.steps.verify.progress import REPLICA_TABLES

SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")
LIST_TABLES = ("SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t, ENGINE AS e, TABLE_ROWS AS n "
               "FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' "
               "AND TABLE_SCHEMA NOT IN (%s, %s, %s, %s) ORDER BY TABLE_SCHEMA, TABLE_NAME")
COLUMNS = ("SELECT COLUMN_NAME AS c, DATA_TYPE AS t, IS_NULLABLE AS n "
           "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
           "ORDER BY ORDINAL_POSITION")
INDEXES = ("SELECT INDEX_NAME AS i, NON_UNIQUE AS nu, COLUMN_NAME AS c, SUB_PART AS p "
           "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
           "ORDER BY INDEX_NAME <> 'PRIMARY', INDEX_NAME, SEQ_IN_INDEX")
SESSION_SETUP = "SET SESSION time_zone = '+00:00'"  # TIMESTAMP values read alike on both
ISOLATION = "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"
SNAPSHOT = "START TRANSACTION WITH CONSISTENT SNAPSHOT"
SNAPSHOT_LOCK_WAIT = "SET SESSION lock_wait_timeout = 1"  # MySQL's minimum: the longest wait
FTWRL = "FLUSH TABLES WITH READ LOCK"
UNLOCK = "UNLOCK TABLES"
COMMIT = "COMMIT"
# a snapshot holds a metadata lock on each table it read until it ends: DDL waiting for one
# would make every later write to that table wait too
MDL_WAITERS = ("SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST "
               "WHERE STATE = 'Waiting for table metadata lock'")
MDL_CHECK_SECONDS = 0.2
WAIT_SECONDS = 300  # for the replica to reach the primary's position

# placeholders of the plan's text: values of one iteration, never captured
AT_FILE, AT_POS, AT_GTID = Key("verify.at.file"), Key("verify.at.pos"), Key("verify.at.gtid")
SCHEMA, TABLE = Key("verify.at.schema"), Key("verify.at.table")

Mode = Literal["gtid", "file_pos"]


@dataclass(frozen=True)
class Each(Leaf):
    """A statement (or a wait) run many times: when it runs, and its text."""

    host: str
    when: str
    statement: Template
    kind = "each"

    def template(self) -> Template:
        return _merge((f"{self.when}: ", *self.statement))


def _merge(parts: Sequence[str | Slot]) -> Template:
    out: list[str | Slot] = []
    for part in parts:
        if isinstance(part, str) and out and isinstance(out[-1], str):
            out[-1] += part
        elif part != "":
            out.append(part)
    return tuple(out)


def _each(host: str, when: str, statement: Statement | str) -> Each:
    sql = statement if isinstance(statement, Statement) else Statement(statement)
    return Each(host, when, Sql(host, sql.sql, sql.params).template())


def by_gtid(mode: Mode, replica: Dialect) -> bool:
    """MySQL with GTIDs stops the replica's applier at a GTID set; otherwise (and always on
    MariaDB, whose snapshot names its binlog file and position) at a file and position."""
    return mode == "gtid" and replica.applier_until_gtid


@dataclass(frozen=True)
class VerifyParts:
    """The leaves of the chunked verify, by name, in the order the plan lists them."""

    names: tuple[str, ...]
    leaves: tuple[Leaf, ...]

    def index(self, name: str) -> int:
        return self.names.index(name)

    def __contains__(self, name: str) -> bool:
        return name in self.names


def verify_parts(primary: str, replica: str, pd: Dialect, rd: Dialect, mode: Mode) -> VerifyParts:
    gtid = by_gtid(mode, rd)
    status = rd.replica_status().sql
    f = rd.status_fields
    named: list[tuple[str, Leaf]] = [
        ("tables", CaptureRows(primary, LIST_TABLES, SYSTEM_SCHEMAS, into=VERIFY_TABLES)),
        ("replica_tables", CaptureRows(replica, LIST_TABLES, SYSTEM_SCHEMAS,
                                       into=REPLICA_TABLES)),
        ("session_p", _each(primary, "each session it opens", SESSION_SETUP)),
        ("session_r", _each(replica, "each session it opens", SESSION_SETUP)),
        ("columns", _each(primary, "each table (or on the replica, for a table only there)",
                          Statement(COLUMNS, (Ref(SCHEMA), Ref(TABLE))))),
        ("indexes", _each(primary, "each table (idem)",
                          Statement(INDEXES, (Ref(SCHEMA), Ref(TABLE))))),
        ("running", _each(replica, f"before each pause, {f.sql_running}=Yes is required", status)),
        ("pause", _each(replica, "each position (a snapshot round, or a locked chunk)",
                        rd.stop_applier())),
    ]
    # a consistent snapshot of the primary at a known position
    snapshot: list[tuple[str, Leaf]] = [("isolation_p", _each(primary, "each round", ISOLATION))]
    if pd.snapshot_position() is None:  # MySQL: a read lock for milliseconds around it
        snapshot += [
            ("lock_wait_p", _each(primary, "each round", SNAPSHOT_LOCK_WAIT)),
            ("ftwrl", _each(primary, "each round (held for milliseconds)", FTWRL)),
            ("snapshot_p", _each(primary, "each round", SNAPSHOT)),
            ("position_p", _each(primary, "each round, under that lock",
                                 pd.gtid_position() if gtid else pd.binlog_status())),
            ("unlock_p", _each(primary, "each round", UNLOCK)),
        ]
    else:  # MariaDB: the snapshot's own binlog position, no lock
        position = pd.snapshot_position()
        assert position is not None
        snapshot += [("snapshot_p", _each(primary, "each round", SNAPSHOT)),
                     ("position_p", _each(primary, "each round", position))]
    named += snapshot
    # the same position on the replica
    until = (rd.start_applier_until_gtid(Ref(AT_GTID)) if gtid
             else rd.start_applier_until_file_pos(Ref(AT_FILE), Ref(AT_POS)))
    reached = (rd.gtid_applied(Ref(AT_GTID)) if gtid else
               f"check in {status}: {f.source_log_file} = <verify.at.file> and "
               f"{f.exec_source_log_pos} = <verify.at.pos> (another position is tried, 3 at "
               "most, if it stopped elsewhere)")
    named += [
        ("until", _each(replica, "each position it is not at yet", until)),
        ("stopped", Each(replica, "each position it is not at yet", (
            f"poll {status} until {f.sql_running}=No (at most {WAIT_SECONDS}s; fails at once "
            f"on {f.last_sql_error}; at the position and idle after 0.5s: "
            f"{rd.stop_applier().sql}, then checked)",))),
        ("reached", _each(replica, "each position, before and after", reached)),
        ("isolation_r", _each(replica, "each round", ISOLATION)),
        ("snapshot_r", _each(replica, "each round, while its applier waits", SNAPSHOT)),
        ("resume", _each(replica, "each position (and at the start, if a killed verify left it "
                                  "paused)", rd.start_applier())),
        # transactional tables: chunks inside the two snapshots, both servers at once
        ("boundary", _each(primary, f"each chunk (sized to {CHUNK_SECONDS:g}s)", PLAN_BOUNDARY)),
        ("checksum_p", _each(primary, "each chunk, in the snapshot", PLAN_CHECKSUM)),
        ("checksum_r", _each(replica, "each chunk, in the snapshot, meanwhile", PLAN_CHECKSUM)),
        ("mdl_waiters", _each(primary, f"each chunk ({MDL_CHECK_SECONDS:g}s apart at most), here "
                                       "and on the replica: a session waiting for a table the "
                                       "snapshots read ends the round at once", MDL_WAITERS)),
        ("end_p", _each(primary, f"each round's end (after {ROUND_SECONDS:g}s at most)",
                        COMMIT)),
        ("end_r", _each(replica, "each round's end", COMMIT)),
        # non-transactional tables (MyISAM, Aria ...): one chunk per lock, then the replica
        ("lock_wait", _each(primary, "its table-lock session", SNAPSHOT_LOCK_WAIT)),
        ("lock", _each(primary, "each non-transactional chunk (retried while a writer holds "
                                "it)", pd.lock_table_read("<table>"))),
        ("lock_position", _each(primary, "each locked chunk", pd.gtid_position() if gtid
                                else pd.binlog_status())),
        ("locked_boundary", _each(primary, "each locked chunk (or the middle of a differing "
                                           "range: one half per lock)", pd.time_limited(
            PLAN_BOUNDARY, LOCKED_BOUNDARY_CAP))),
        ("locked_checksum", _each(primary, f"each locked chunk (less time when the lock's "
                                           f"{LOCK_BUDGET:g}s are nearly up)", pd.time_limited(
            PLAN_CHECKSUM, LOCKED_CHECKSUM_CAP))),
        ("unlock", _each(primary, "each locked chunk", UNLOCK)),
        ("locked_checksum_r", _each(replica, "each locked chunk, at its position",
                                    PLAN_CHECKSUM)),
        # a differing chunk of a transactional table, bisected in the snapshots
        ("split_p", _each(primary, "each differing range, at its middle",
                          PLAN_BOUNDARY.replace("<chunk rows - 1>", "<rows / 2>"))),
        ("split_r", _each(replica, "each differing range with more rows here",
                          PLAN_BOUNDARY.replace("<chunk rows - 1>", "<rows / 2>"))),
        ("half_p", _each(primary, "each half of a differing range", PLAN_CHECKSUM)),
        ("half_r", _each(replica, "each half of a differing range", PLAN_CHECKSUM)),
    ]
    return VerifyParts(tuple(n for n, _ in named), tuple(leaf for _, leaf in named))
