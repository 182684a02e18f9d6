"""Direction and errant transactions: nothing the recipient acknowledged may be lost unseen.

A rebuild replaces the recipient's data with the donor's. Whatever the recipient committed that
the donor never received (an "errant" transaction: the old primary's last writes before a
failover, a write made on a replica, or simply donor and recipient swapped in the runbook) would
be thrown away. This gate refuses that, or says exactly what is discarded when the operator
asked for it (`discard_errant`).

How it is proven, per flavor:

- MariaDB (GTIDs always exist): every (domain, server_id) last seq_no the recipient logged
  (gtid_binlog_state; or, for a stopped recipient, its last binary log read with
  mariadb-binlog) must be reached by the donor's gtid_binlog_state, gtid_slave_pos or
  gtid_current_pos for the same domain and server_id.
- MySQL with GTIDs on both: GTID_SUBSET(recipient's gtid_executed, donor's gtid_executed).
- MySQL without GTIDs: only when the donor replicates from the recipient can it be proven: the
  recipient's binary log position must not be ahead of what the donor executed from it.
- MySQL stopped: it cannot be proven; refused unless discarding.

The modules, from pure to running:

- gtid, binlog, positions: parsing and comparing the captured values (no actions).
- verdict: what the comparison found, and whether the run may go on.
- gate: the gate of one runbook: its keys, its criterion, the read-only actions (data).
- recheck: the gate again on the stopped recipient, right before its datadir is moved aside.
"""

from resync.steps.direction.binlog import parse_binlog_output
from resync.steps.direction.gate import ErrantGate, binlog_gtids_command, errant_gate
from resync.steps.direction.gtid import Errant, mariadb_errant, parse_gtid_list
from resync.steps.direction.positions import position_ahead, replicates_from
from resync.steps.direction.recheck import (
    ErrantRecheck,
    ErrantTransactions,
    NoErrantTransactions,
    errant_recheck,
)
from resync.steps.direction.verdict import DISCARD_OPTION, NotCaptured

__all__ = ["DISCARD_OPTION", "Errant", "ErrantGate", "ErrantRecheck", "ErrantTransactions",
           "NoErrantTransactions", "NotCaptured", "binlog_gtids_command", "errant_gate",
           "errant_recheck", "mariadb_errant", "parse_binlog_output", "parse_gtid_list",
           "position_ahead", "replicates_from"]
