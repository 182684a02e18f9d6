"""Verify the data: at a synced point, CHECKSUM TABLE every user table on primary and replica."""

from __future__ import annotations

import json
from typing import Literal

from resync.actions.conditions import AtLeast, NonEmptyList, SameChecksums
from resync.actions.dialect import Dialect
from resync.actions.types import (
    Action,
    Assert,
    Capture,
    Captured,
    CaptureRows,
    Ref,
    ReleaseLock,
    Tables,
    When,
)
from resync.model.keys import (
    VERIFY_POSITION,
    VERIFY_PRIMARY_SUMS,
    VERIFY_REPLICA_SUMS,
    VERIFY_TABLES,
    VERIFY_WAIT,
    Coordinates,
    Key,
    StepId,
    StepKind,
)
from resync.steps.base import Step
from resync.steps.locking import capture_coordinates, read_lock

SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")
LIST_TABLES = ("SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t FROM information_schema.TABLES "
               "WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN (%s, %s, %s, %s) "
               "ORDER BY TABLE_SCHEMA, TABLE_NAME")
WAIT_SECONDS = 300
VERIFY_AT = Coordinates(Key("verify.file"), Key("verify.pos"), VERIFY_POSITION)


def compare_actions(primary: str, replica: str, primary_dialect: Dialect, replica_dialect: Dialect,
                    mode: Literal["gtid", "file_pos"], lock_timeout: int) -> tuple[Action, ...]:
    """Lock the primary, let the replica reach its position, checksum both, unlock, compare."""
    session = f"verify:{primary}"
    file_cap, gtid_cap = capture_coordinates(primary, primary_dialect, VERIFY_AT, session)
    if mode == "gtid":
        position: tuple[Action, ...] = (gtid_cap,)
        wait = replica_dialect.wait_for_gtid(Ref(VERIFY_AT.gtid), WAIT_SECONDS)
    else:
        position = (file_cap,)
        wait = replica_dialect.wait_for_file_pos(Ref(VERIFY_AT.file), Ref(VERIFY_AT.pos),
                                                 WAIT_SECONDS)
    return (
        read_lock(primary, session, lock_timeout),
        *position,
        Capture(replica, wait.sql, wait.params, columns=(("reached", VERIFY_WAIT),)),
        Assert(AtLeast(VERIFY_WAIT, 0), f"{replica} did not reach {primary}'s position within "
               f"{WAIT_SECONDS}s: cannot compare data", replica),
        CaptureRows(primary, LIST_TABLES, SYSTEM_SCHEMAS, session, into=VERIFY_TABLES),
        When(NonEmptyList(VERIFY_TABLES), (
            CaptureRows(primary, "CHECKSUM TABLE %s", (Tables(Ref(VERIFY_TABLES)),), session,
                        into=VERIFY_PRIMARY_SUMS),
            CaptureRows(replica, "CHECKSUM TABLE %s", (Tables(Ref(VERIFY_TABLES)),),
                        into=VERIFY_REPLICA_SUMS)),
             otherwise_note="no user tables: nothing to compare"),
        ReleaseLock(primary, session),
        Assert(SameChecksums(VERIFY_PRIMARY_SUMS, VERIFY_REPLICA_SUMS),
               "checksums differ", primary),
    )


def verify_step_id(primary: str, replica: str) -> StepId:
    return StepId(StepKind.VERIFY, f"{primary}={replica}")


class VerifyData(Step):
    def __init__(self, primary: str, replica: str, primary_dialect: Dialect,
                 replica_dialect: Dialect, mode: Literal["gtid", "file_pos"],
                 lock_timeout: int) -> None:
        self.primary, self.replica = primary, replica
        self.actions = compare_actions(primary, replica, primary_dialect, replica_dialect, mode,
                                       lock_timeout)
        self.id = verify_step_id(primary, replica)
        self.title = f"Verify: checksum every user table on {primary} and {replica}"
        self.hosts = (primary, replica)
        self.why = ("the run fails, naming the tables, if any checksum differs; the primary stays "
                    "read-locked while the checksums run (longer with more data): keep the "
                    "application in maintenance until this step is done")

    def plan(self) -> tuple[Action, ...]:
        return self.actions


def checksum_rows(captured: Captured) -> list[tuple[str, str | None, str | None]]:
    """(table, primary checksum, replica checksum) from a run's captured values."""

    def sums(key: Key) -> dict[str, str | None]:
        raw = captured.get(str(key))
        return {str(r[0]): r[1] for r in json.loads(str(raw))} if raw else {}

    a, b = sums(VERIFY_PRIMARY_SUMS), sums(VERIFY_REPLICA_SUMS)
    return [(t, a.get(t), b.get(t)) for t in dict.fromkeys([*a, *b])]

