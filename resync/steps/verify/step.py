"""The verify step: every user table checksummed on primary and replica in key chunks, both
servers at one binlog position at a time, while the primary keeps taking writes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from resync.actions.conditions import Condition, Equals
from resync.actions.dialect import Dialect
from resync.actions.types import Action, Assert, Captured, Sql, Template, When
from resync.model.keys import (
    VERIFY_PRIMARY_SUMS,
    VERIFY_REPLICA_SUMS,
    StepId,
    StepKind,
)
from resync.steps.base import Step
from resync.steps.verify.chunks import LOCK_BUDGET, LOCKED_CHUNK_SECONDS, ROUND_SECONDS
from resync.steps.verify.composite import ChunkedVerify
from resync.steps.verify.parts import Mode
from resync.steps.verify.progress import PAUSED, PROGRESS, Progress


@dataclass(frozen=True)
class ChunksMatch(Condition):
    """No chunk of any table differed (the verify's progress, as captured)."""

    progress: str = str(PROGRESS)

    def template(self) -> Template:
        return (f"every chunk of every table has the same checksum on both servers "
                f"({self.progress})",)

    def holds(self, captured: Captured) -> bool:
        return not Progress.load(captured).differing()

    def explain(self, captured: Captured) -> str:
        progress = Progress.load(captured)
        names = [t.name for t in progress.differing()]
        found = [describe(item) for item in progress.report()]
        shown = "; ".join(found[:10]) + (f"; ... ({len(found)} in all)" if len(found) > 10 else "")
        return f"for: {', '.join(names)}" + (f" — {shown}" if shown else "")


@dataclass(frozen=True)
class AllCompared(Condition):
    """Every table was compared to its end (none left unverified)."""

    progress: str = str(PROGRESS)

    def template(self) -> Template:
        return (f"every table was compared to its end ({self.progress})",)

    def holds(self, captured: Captured) -> bool:
        return not Progress.load(captured).unverified()

    def explain(self, captured: Captured) -> str:
        left = Progress.load(captured).unverified()
        return "; ".join(f"{t.name}: {t.note or t.status}" for t in left)


def describe(item: dict[str, Any]) -> str:
    """A differing range for people: table, key range, rows and checksums on each side."""
    p, r = item["primary"], item["replica"]
    what = item.get("rows") or item["range"]
    note = f" ({item['note']})" if item.get("note") else ""
    return (f"{item['table']} {what}: primary {p[0]} row(s) crc {int(p[1]):08x}, replica {r[0]} "
            f"row(s) crc {int(r[1]):08x}{note}")


def compare_actions(primary: str, replica: str, primary_dialect: Dialect, replica_dialect: Dialect,
                    mode: Mode, lock_timeout: int) -> tuple[Action, ...]:
    """Checksum both servers chunk by chunk at shared positions, then compare."""
    return (
        ChunkedVerify(primary, replica, primary_dialect, replica_dialect, mode, lock_timeout),
        Assert(ChunksMatch(), "checksums differ", primary),
        Assert(AllCompared(), "not every table could be compared", primary),
    )


def verify_step_id(primary: str, replica: str) -> StepId:
    return StepId(StepKind.VERIFY, f"{primary}={replica}")


class VerifyData(Step):
    def __init__(self, primary: str, replica: str, primary_dialect: Dialect,
                 replica_dialect: Dialect, mode: Mode, lock_timeout: int) -> None:
        self.primary, self.replica = primary, replica
        self.replica_dialect = replica_dialect
        self.actions = compare_actions(primary, replica, primary_dialect, replica_dialect, mode,
                                       lock_timeout)
        self.id = verify_step_id(primary, replica)
        self.title = (f"Verify: checksum every user table on {primary} and {replica} in key "
                      "chunks (no long lock)")
        self.hosts = (primary, replica)
        self.why = (
            "the application may write throughout: both servers are compared at one binlog "
            "position at a time (the primary's consistent snapshot, renewed every "
            f"{ROUND_SECONDS:g}s; the replica's applier stopped exactly there for a moment); "
            "non-transactional tables are read-locked one chunk at a time for at most "
            f"{LOCK_BUDGET:g}s ({LOCKED_CHUNK_SECONDS:g}s targeted); resumable chunk by chunk; "
            "the run fails, naming the tables and key ranges, if any chunk differs")

    def plan(self) -> tuple[Action, ...]:
        return self.actions

    def undo_plan(self) -> tuple[Action, ...]:
        start = self.replica_dialect.start_applier()
        return (When(Equals(PAUSED, 1), (Sql(self.replica, start.sql),),
                     otherwise_note="the replica's applier was not left stopped"),)


def checksum_rows(captured: Captured) -> list[tuple[str, str | None, str | None]]:
    """(table, primary checksum, replica checksum) from a run's captured values."""

    def sums(key: object) -> dict[str, str | None]:
        raw = captured.get(str(key))
        return {str(r[0]): r[1] for r in json.loads(str(raw))} if raw else {}

    a, b = sums(VERIFY_PRIMARY_SUMS), sums(VERIFY_REPLICA_SUMS)
    return [(t, a.get(t), b.get(t)) for t in dict.fromkeys([*a, *b])]
