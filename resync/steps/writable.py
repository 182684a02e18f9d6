"""The end of the write-downtime: the new primary takes writes, the replica stays read-only."""

from __future__ import annotations

from resync.actions.conditions import Equals
from resync.actions.dialect import Dialect
from resync.actions.types import Action, Assert, Capture, Sql
from resync.model.keys import Key, StepId, StepKind
from resync.steps.base import Step


def read_only_key(host: str) -> Key:
    return Key(f"{host}.read_only")


class MakeWritable(Step):
    why = ("the replica runs and has caught up: the new primary may take writes; the replica "
           "stays read-only (a write there would be an errant transaction)")

    def __init__(self, primary: str, replica: str, primary_dialect: Dialect,
                 replica_dialect: Dialect) -> None:
        self.primary, self.replica = primary, replica
        self.primary_dialect, self.replica_dialect = primary_dialect, replica_dialect
        self.id = StepId(StepKind.MAKE_WRITABLE, primary)
        self.title = f"Make {primary} writable (the new primary); {replica} stays read-only"
        self.hosts = (primary, replica)

    def plan(self) -> tuple[Action, ...]:
        p, r = self.primary, self.replica
        return (*(Sql(r, s.sql) for s in self.replica_dialect.set_read_only(True)),
                *(Sql(p, s.sql) for s in self.primary_dialect.set_read_only(False)),
                Capture(p, "SELECT @@GLOBAL.read_only AS ro", columns=(("ro", read_only_key(p)),)),
                Capture(r, "SELECT @@GLOBAL.read_only AS ro", columns=(("ro", read_only_key(r)),)),
                Assert(Equals(read_only_key(p), 0), f"{p} is still read-only", p),
                Assert(Equals(read_only_key(r), 1), f"{r} is not read-only", r))

    def undo_plan(self) -> tuple[Action, ...]:
        return tuple(Sql(self.primary, s.sql) for s in self.primary_dialect.set_read_only(True))
