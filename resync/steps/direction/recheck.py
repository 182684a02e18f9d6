"""The gate again at the point of no return: on the now-stopped recipient, right before its
datadir is moved aside (what it committed after the preflight would be lost unseen otherwise)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from resync.actions.conditions import Condition
from resync.actions.dialect import ServerVersion
from resync.actions.types import Action, Assert, Captured, Composite, Fmt, Leaf, Ref, Slot, Template
from resync.model.errors import GateRefused, ResyncError
from resync.model.keys import OLD_DATADIR, Key, StepId, StepKind
from resync.model.runbook import LoadedRunbook
from resync.run.executor import CompositeRun
from resync.steps.base import Step
from resync.steps.direction.gate import ErrantGate, errant_gate
from resync.steps.direction.verdict import Finding, NotCaptured, Outcome, decide, outcome


class ErrantTransactions(GateRefused):
    """The recipient holds transactions the donor lacks: rebuilding it would lose them."""


@dataclass(frozen=True)
class NoErrantTransactions(Condition):
    """The gate's verdict over captured values, for an Assert (the recipient is stopped now)."""

    gate: ErrantGate
    binlog: Key | None  # the recipient's binary log read just now (MariaDB); None: preflight's

    def template(self) -> Template:
        g = self.gate
        mode = " (or they are DISCARDED as asked)" if g.discard else ""
        return (f"{g.recipient} has no transaction {g.donor} lacks{mode}: ",
                Slot(g.recheck_summary, Fmt.TEXT))

    def _outcome(self, captured: Captured) -> Outcome:
        try:
            return outcome(self.gate, captured, self.binlog)
        except NotCaptured as exc:
            return decide(self.gate, Finding(unproven=str(exc), refuse_unproven=True))

    def holds(self, captured: Captured) -> bool:
        return self._outcome(captured).ok

    def explain(self, captured: Captured) -> str:
        return self._outcome(captured).detail


class ErrantRecheck(Composite):
    """The gate again on the stopped recipient, right before its datadir is moved aside: the
    donor's state captured again when it is up (else the preflight's), the recipient's binary
    log read (MariaDB), then the verdict. A refusal is a GateRefused (ErrantTransactions)."""

    def __init__(self, gate: ErrantGate, leaves: tuple[Leaf, ...], condition: NoErrantTransactions,
                 ) -> None:
        self.gate, self.condition = gate, condition
        self.host = gate.recipient
        self.title = f"errant transactions on {gate.recipient}, checked again (read-only)"
        self.check = Assert(condition, f"refusing to move {gate.recipient}'s datadir aside:",
                            gate.recipient)
        self.leaves = (*leaves, self.check)

    def parts(self) -> tuple[Leaf, ...]:
        return self.leaves

    def execute(self, run: CompositeRun) -> None:
        last = len(self.leaves) - 1
        for index in range(last):
            run.do(index)
        run.capture(self.gate.recheck_summary, self.condition.explain(run.captured))
        try:
            run.do(last)
        except ResyncError as exc:
            raise ErrantTransactions(str(exc)) from None


def errant_recheck(loaded: LoadedRunbook, versions: Mapping[str, ServerVersion],
                   discard_errant: bool = False, *, donor_up: bool,
                   down: frozenset[str] = frozenset(),
                   gtid_enabled: Mapping[str, bool] | None = None) -> tuple[Action, ...]:
    """The gate at the point of no return, on the now-stopped recipient (one composite action).

    `donor_up`: the donor still answers (its state is captured again under the preflight's
    keys); else the values the preflight captured are used. `down`: the hosts found stopped when
    the plan was made (a MySQL recipient stopped then cannot be proven). MariaDB: the
    recipient's last binary log is read (through its captured @@log_bin_index when the
    preflight saw it running, else from its datadir). MySQL: the preflight's recipient values,
    the donor's GTID comparison run again when it is up (its replica status is not: the run has
    reset it by now)."""
    gate = errant_gate(loaded, versions, down, discard_errant, gtid_enabled)
    leaves: list[Leaf] = []
    binlog: Key | None = None
    if gate.mode in ("mariadb", "mariadb-binlog"):
        if donor_up:
            leaves += gate.donor_actions()
        index = Ref(gate.recipient_key("log_bin_index")) if gate.mode == "mariadb" else None
        leaves.append(gate.read_binlog(gate.recheck_binlog, index, Ref(OLD_DATADIR)))
        binlog = gate.recheck_binlog
    elif gate.mode in ("mysql-gtid", "mysql-auto") and donor_up:
        leaves.append(gate.donor_gtid_subset())
    return (ErrantRecheck(gate, tuple(leaves), NoErrantTransactions(gate, binlog)),)


class RecheckRecipient(Step):
    """The gate again as a step of its own, where no step that moves the datadir follows the
    recipient's stop at once (the EBS copy's mode swap): before the donor is locked and its
    snapshot taken, so that a refusal leaves the donor serving as before."""

    def __init__(self, recipient: str, recheck: tuple[Action, ...]) -> None:
        self.recheck = recheck
        self.id = StepId(StepKind.ERRANT_RECHECK, recipient)
        self.title = f"Check the stopped {recipient} again for transactions the donor lacks"
        self.hosts = (recipient,)
        self.why = ("stopped, it cannot commit any more: what it committed since the preflight "
                    "is checked now, before anything is locked, snapshotted or replaced")
        self.no_undo = "read-only: nothing to undo"

    def plan(self) -> tuple[Action, ...]:
        return self.recheck
