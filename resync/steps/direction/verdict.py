"""The gate's verdict over captured values: what the comparison found (`finding`), then whether
the run may go on (`decide`). Pure: it reads what the gate's actions captured, runs nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from resync.actions.types import Captured
from resync.model.keys import Key
from resync.steps.direction.binlog import parse_binlog_output
from resync.steps.direction.gtid import GtidState, format_gtid_state, mariadb_errant, parse_gtid_list
from resync.steps.direction.positions import position_ahead, replicates_from

if TYPE_CHECKING:  # the gate calls these verdicts; they only read its fields and keys
    from resync.steps.direction.gate import ErrantGate

DISCARD_OPTION = "--discard-errant"
TRUE_VALUES = ("1", "ON", "YES")


class NotCaptured(Exception):
    """A value a verdict needs was not captured (its query failed or did not run)."""


@dataclass(frozen=True)
class Finding:
    """What the comparison found: errant transactions, or why nothing could be proven."""

    errant: tuple[str, ...] = ()
    unproven: str = ""  # why it cannot be proven ("" when it was)
    refuse_unproven: bool = False  # an unproven direction refuses (unless discarding)
    basis: str = ""  # what was compared, for the detail
    note: str = ""  # said in every outcome
    settled: str = ""  # decided earlier (a repeated step): passes with this detail


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str


def finding(gate: ErrantGate, captured: Captured, binlog: Key | None = None) -> Finding:
    """The comparison over captured values (NotCaptured when a value is missing). `binlog`:
    read the recipient's GTIDs from this captured binary log output instead."""
    mode = gate.mode
    if mode == "donor-down":
        return Finding(unproven=f"{gate.donor} is down", refuse_unproven=True)
    if mode == "mysql-stopped":
        return Finding(unproven=f"{gate.recipient} is down and runs MySQL: its binary log is "
                                "not read", refuse_unproven=True)
    if binlog is not None or mode == "mariadb-binlog":
        return _mariadb_binlog(gate, captured, binlog or gate.recipient_binlog)
    if mode == "mariadb":
        return _mariadb(gate, captured,
                        parse_gtid_list(_get(captured, gate.recipient_key("gtid_binlog_state"))))
    if mode == "mysql-auto":
        on = [str(_get(captured, k)).upper() == "ON"
              for k in (gate.recipient_key("gtid_mode"), gate.donor_key("gtid_mode"))]
        return _mysql_gtid(gate, captured) if all(on) else _mysql_file_pos(gate, captured)
    if mode == "mysql-gtid":
        return _mysql_gtid(gate, captured)
    return _mysql_file_pos(gate, captured)


def _mariadb(gate: ErrantGate, captured: Captured, recipient: GtidState,
             note: str = "") -> Finding:
    donor = [parse_gtid_list(_get(captured, k)) for k in gate.donor_gtid_keys]
    if not recipient and not _log_bin_on(gate, captured):
        return Finding(unproven=f"nothing to compare: {gate.recipient} does not write a "
                                "binary log, so it logs no GTIDs", note=note)
    names = ("gtid_binlog_state", "gtid_slave_pos", "gtid_current_pos")  # gate.donor_gtid_keys
    basis = (f"{gate.recipient} logged {format_gtid_state(recipient)}; {gate.donor}: " +
             ", ".join(f"{n} {format_gtid_state(s)}"
                       for n, s in zip(names, donor, strict=True)))
    return Finding(tuple(str(e) for e in mariadb_errant(recipient, donor)), basis=basis,
                   note=note)


def _mariadb_binlog(gate: ErrantGate, captured: Captured, key: Key) -> Finding:
    read = parse_binlog_output(_get(captured, key))
    if read.moved is not None:
        before = str(captured.get(str(gate.recheck_summary)) or "")
        settled = (f"{gate.recipient}'s datadir is already aside at {read.moved}: an earlier "
                   "attempt of this step checked it and moved it")
        if before and not before.startswith(settled):
            settled += f" ({before})"
        return Finding(settled=settled)
    where = f"{gate.recipient}'s datadir ({gate.recipient_datadir})"
    if read.missing is not None:
        if not _log_bin_on(gate, captured):
            return Finding(unproven=f"nothing to compare: {gate.recipient} did not write a "
                                    "binary log (log_bin was off at preflight)")
        return Finding(unproven=f"its binary log could not be read from {where}: "
                                f"{read.missing}", refuse_unproven=True)
    if not read.has_list:
        tail = f" (mariadb-binlog exited {read.exit_code})" if read.exit_code else ""
        return Finding(unproven=f"the Gtid list event of {read.file} could not be read{tail}",
                       refuse_unproven=True)
    note = (f"mariadb-binlog exited {read.exit_code} on {read.file}: a torn last event is "
            "not a committed transaction" if read.exit_code else "")
    return _mariadb(gate, captured, read.state, note)


def _log_bin_on(gate: ErrantGate, captured: Captured) -> bool:
    """The recipient's log_bin as the preflight saw it; on when it was not captured (a server
    found stopped), so that a missing binary log is never taken for "nothing to compare"."""
    log_bin = captured.get(str(gate.recipient_key("log_bin")))
    return log_bin is None or str(log_bin).upper() in TRUE_VALUES


def _mysql_gtid(gate: ErrantGate, captured: Captured) -> Finding:
    subset = _get(captured, gate.donor_key("gtid_subset"))
    errant = str(captured.get(str(gate.donor_key("gtid_errant"))) or "").strip()
    executed = str(captured.get(str(gate.recipient_key("gtid_executed"))) or "").strip()
    if str(subset) == "1":
        return Finding(basis=f"{gate.recipient}'s gtid_executed "
                             f"'{_short(executed) or '(empty)'}' is a subset of {gate.donor}'s")
    return Finding((errant or "(GTID_SUBTRACT returned nothing)",),
                   basis=f"GTID_SUBSET = {subset}")


def _mysql_file_pos(gate: ErrantGate, captured: Captured) -> Finding:
    r, d = gate.recipient, gate.donor
    host, port = (_get(captured, gate.donor_key(n)) for n in ("source_host", "source_port"))
    if not replicates_from(host, port, gate.recipient_names, gate.recipient_port):
        source = f"replicates from {host}:{port}" if host else "does not replicate"
        return Finding(unproven=f"cannot be proven without GTIDs: {d} {source}, not from {r} "
                                f"(only a replica of {r} shows how far it got)")
    r_file, r_pos = (_get(captured, gate.recipient_key(n)) for n in ("binlog_file", "binlog_pos"))
    d_file, d_pos = (_get(captured, gate.donor_key(n)) for n in ("source_file", "source_exec_pos"))
    if r_file is None:
        return Finding(unproven=f"nothing to compare: {r} writes no binary log")
    if d_file is None or d_pos is None:
        return Finding(unproven=f"cannot be proven: {d} reports no executed position of {r}'s "
                                "binary log")
    mine, theirs = (str(r_file), int(str(r_pos))), (str(d_file), int(str(d_pos)))
    basis = f"{r} is at {mine[0]}:{mine[1]}, {d} executed it up to {theirs[0]}:{theirs[1]}"
    if position_ahead(mine, theirs):
        return Finding((f"{r}'s binary log from {theirs[0]}:{theirs[1]} to {mine[0]}:{mine[1]} "
                        f"(never executed on {d})",), basis=basis)
    return Finding(basis=basis)


def decide(gate: ErrantGate, found: Finding) -> Outcome:
    """Errant or unproven: refused, unless the operator asked to discard (then said loudly)."""
    r, d = gate.recipient, gate.donor
    if found.settled:
        return Outcome(True, found.settled)
    kept = f"{r}'s binary logs stay with its old datadir"
    note = f" ({found.note})" if found.note else ""
    if found.errant:
        listed = "; ".join(found.errant)
        return _unless_discarding(
            gate, f"ERRANT transactions DISCARDED as asked: {r} has {listed}, which {d} lacks; "
                  f"{kept}{note}",
            f"{r} has transactions {d} lacks: {listed}. Rebuilding {r} from {d} would throw "
            f"them away. If donor and recipient are swapped in the runbook, swap them; to throw "
            f"these transactions away on purpose, run with {DISCARD_OPTION} ({kept}){note}")
    if found.unproven:
        if not found.refuse_unproven:
            return Outcome(True, f"{found.unproven}{note}")
        return _unless_discarding(
            gate, f"not proven: {found.unproven}; any errant transactions are DISCARDED as "
                  f"asked; {kept}{note}",
            f"whether {r} has transactions {d} lacks cannot be proven: {found.unproven}. "
            f"Refusing to throw them away unseen: start it so that it can be compared, or run "
            f"with {DISCARD_OPTION} ({kept}){note}")
    return Outcome(True, f"none: every transaction of {r} is on {d} ({found.basis}){note}")


def _unless_discarding(gate: ErrantGate, discarded: str, refused: str) -> Outcome:
    return Outcome(True, discarded) if gate.discard else Outcome(False, refused)


def outcome(gate: ErrantGate, captured: Captured, binlog: Key | None = None) -> Outcome:
    """`finding` then `decide`; a value missing stays NotCaptured (the caller says how to take
    it), an answer that could not be read is no proof."""
    try:
        return decide(gate, finding(gate, captured, binlog))
    except NotCaptured:
        raise
    except ValueError as exc:
        return decide(gate, Finding(unproven=str(exc), refuse_unproven=True))


def _get(captured: Captured, key: Key) -> object:
    name = str(key)
    if name not in captured:
        raise NotCaptured(f"{name} was not captured")
    return captured[name]


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
