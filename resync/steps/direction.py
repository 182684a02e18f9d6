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

Everything here is pure: parsing and verdicts over captured values; the actions are data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from resync.actions.conditions import Condition
from resync.actions.dialect import DEFAULT_VERSION, ServerVersion, dialect_for
from resync.actions.quoting import q
from resync.actions.types import (
    Action,
    Assert,
    Capture,
    Captured,
    Composite,
    Fmt,
    Leaf,
    Ref,
    Shell,
    Slot,
    Template,
)
from resync.model.errors import GateRefused, ResyncError
from resync.model.keys import OLD_DATADIR, Key, preflight_value
from resync.model.runbook import LoadedRunbook
from resync.run.executor import CompositeRun

GtidState = dict[tuple[int, int], int]  # (domain, server_id) -> the last seq_no logged
DISCARD_OPTION = "--discard-errant"
TRUE_VALUES = ("1", "ON", "YES")


class NotCaptured(Exception):
    """A value a verdict needs was not captured (its query failed or did not run)."""


class ErrantTransactions(GateRefused):
    """The recipient holds transactions the donor lacks: rebuilding it would lose them."""


# -- MariaDB GTID lists ---------------------------------------------------------------------------

_GTID = re.compile(r"^(\d+)-(\d+)-(\d+)$")


def parse_gtid_list(text: object) -> GtidState:
    """'0-1-5,1-2-7' (gtid_binlog_state, gtid_slave_pos, ...) -> {(0, 1): 5, (1, 2): 7}.

    Empty text or None is the empty state; a (domain, server_id) listed twice keeps its highest
    seq_no. Anything that is not a GTID list is a ValueError (never silently "nothing errant").
    """
    state: GtidState = {}
    if text is None:
        return state
    for item in str(text).replace("\n", ",").split(","):
        item = item.strip()
        if not item:
            continue
        m = _GTID.match(item)
        if m is None:
            raise ValueError(f"not a MariaDB GTID: {item!r} (in {str(text)[:200]!r})")
        key = (int(m[1]), int(m[2]))
        state[key] = max(state.get(key, 0), int(m[3]))
    return state


def format_gtid_state(state: Mapping[tuple[int, int], int]) -> str:
    return ",".join(f"{d}-{s}-{n}" for (d, s), n in sorted(state.items())) or "(empty)"


@dataclass(frozen=True)
class Errant:
    """Transactions of one (domain, server_id) the recipient logged and the donor lacks."""

    domain: int
    server_id: int
    recipient_seq: int
    donor_seq: int | None  # the donor's last seq_no for the same domain and server_id

    @property
    def at_most(self) -> int:
        """An upper bound: other servers' GTIDs of the domain may share the seq_no range."""
        return self.recipient_seq - (self.donor_seq or 0)

    def __str__(self) -> str:
        d, s = self.domain, self.server_id
        first = (self.donor_seq or 0) + 1
        span = (f"{d}-{s}-{self.recipient_seq}" if first >= self.recipient_seq
                else f"{d}-{s}-{first}..{d}-{s}-{self.recipient_seq}")
        donor = f"{d}-{s}-{self.donor_seq}" if self.donor_seq is not None else "none"
        count = "transaction" if self.at_most == 1 else "transactions"
        return (f"{span} (domain {d}, server_id {s}: recipient at {self.recipient_seq}, donor's "
                f"last {donor}; at most {self.at_most} {count})")


def mariadb_errant(recipient: Mapping[tuple[int, int], int],
                   donor: Sequence[Mapping[tuple[int, int], int]]) -> tuple[Errant, ...]:
    """The recipient's GTIDs no donor state covers: a GTID d-s-n is covered when one of the
    donor's states has the same domain d and server_id s with a seq_no >= n."""
    out: list[Errant] = []
    for (d, s), n in sorted(recipient.items()):
        seen = [st[(d, s)] for st in donor if (d, s) in st]
        best = max(seen) if seen else None
        if best is None or best < n:
            out.append(Errant(d, s, n, best))
    return tuple(out)


# -- a stopped MariaDB recipient: its last binary log ------------------------------------------------

BINLOG_FILE_MARK = "RESYNC-BINLOG"
NO_BINLOG_MARK = "RESYNC-NO-BINLOG"
EXIT_MARK = "RESYNC-EXIT"
MOVED_MARK = "RESYNC-MOVED"
_EVENT = re.compile(r"^#\d+\s+\d+:\d+:\d+\s+server id \d+\s+end_log_pos \d+\b")
_EVENT_GTID = re.compile(r"\sGTID (\d+)-(\d+)-(\d+)\b")
# keeps what the verdict needs of mariadb-binlog's output: the Gtid list event (it may go on over
# several "# " lines) and the last GTID event of each domain-server_id (event headers only: a
# query's text is never read as an event)
_AWK = ('inl { print; if (index($0, "]")) inl = 0; next } '
        '/^#[0-9]+ +[0-9]+:[0-9]+:[0-9]+ +server id [0-9]+ +end_log_pos [0-9]+/ { '
        'if (!l && index($0, "Gtid list [")) { print; l = 1; if (!index($0, "]")) inl = 1; next } '
        'if (match($0, /[ \\t]GTID [0-9]+-[0-9]+-[0-9]+/)) { '
        'g = substr($0, RSTART + 6, RLENGTH - 6); split(g, a, "-"); last[a[1] "-" a[2]] = $0 } } '
        'END { for (k in last) print last[k] }')
_FIND_INDEX = 'ls -1t -- "$d"/*.index 2>/dev/null | grep -v relay | head -n 1'


@dataclass(frozen=True)
class BinlogRead:
    """What the last binary log of a stopped server says about its GTIDs."""

    file: str | None
    state: GtidState
    has_list: bool  # its Gtid list event was read: the state of every earlier binary log
    missing: str | None = None  # why no binary log was read
    exit_code: int | None = None  # mariadb-binlog's, when it was not 0
    moved: str | None = None  # the datadir was moved aside there already (a repeated step)


def parse_binlog_output(text: object) -> BinlogRead:
    """The output of `binlog_gtids_command` (or mariadb-binlog's own): the Gtid list event sets
    the state at the file's start; every GTID event after it moves its (domain, server_id) on."""
    file: str | None = None
    missing: str | None = None
    exit_code: int | None = None
    moved: str | None = None
    state: GtidState = {}
    has_list = False
    listing: list[str] | None = None
    for raw in str(text or "").splitlines():
        line = raw.rstrip()
        if listing is not None:  # "# 0-7-4," continuation lines of the Gtid list
            listing.append(line.lstrip("#").strip())
            if "]" in line:
                state.update(_gtid_list_text(" ".join(listing)))
                listing = None
            continue
        if line.startswith(BINLOG_FILE_MARK + " "):
            file = line[len(BINLOG_FILE_MARK) + 1:].strip()
        elif line.startswith(NO_BINLOG_MARK):
            missing = line[len(NO_BINLOG_MARK):].strip() or "no binary log"
        elif line.startswith(MOVED_MARK + " "):
            moved = line[len(MOVED_MARK) + 1:].strip()
        elif line.startswith(EXIT_MARK + " "):
            exit_code = int(line[len(EXIT_MARK) + 1:].strip() or 1)
        elif _EVENT.match(line):
            at = line.find("Gtid list [")
            if at >= 0 and not has_list:
                has_list = True
                rest = line[at + len("Gtid list "):]
                if "]" in rest:
                    state.update(_gtid_list_text(rest))
                else:
                    listing = [rest]
                continue
            m = _EVENT_GTID.search(line)
            if m:
                state[(int(m[1]), int(m[2]))] = int(m[3])
    if listing is not None:
        raise ValueError("the Gtid list event of the binary log is cut short")
    return BinlogRead(file, state, has_list, missing, exit_code, moved)


def _gtid_list_text(text: str) -> GtidState:
    inner = text.strip()
    if not inner.startswith("[") or "]" not in inner:
        raise ValueError(f"not a Gtid list: {text!r}")
    return parse_gtid_list(inner[1:inner.index("]")].replace(" ", ""))


def binlog_gtids_command(datadir: str, index: Ref | None = None,
                         moved_to: Ref | None = None) -> tuple[str | Ref, ...]:
    """Shell parts printing what `parse_binlog_output` reads, from the server's last binary log.

    The binary log index is `index` (a captured @@log_bin_index) when given, else the newest
    `*.index` in the datadir that is not a relay log's. `moved_to`: where the datadir goes aside;
    once it is there, an earlier attempt of the step passed this check and moved it (MOVED is
    printed: a resumed step repeats its plan). Read-only; always exits 0 (a missing index or
    tool is printed as NO-BINLOG, mariadb-binlog's failure as EXIT)."""
    d = q(datadir.rstrip("/"))
    moved: tuple[str | Ref, ...] = (
        ("o=", moved_to, f'; if [ -e "$o" ]; then echo "{MOVED_MARK} $o"; exit 0; fi; ')
        if moved_to is not None else ())
    head: tuple[str | Ref, ...] = (
        (f"d={d}; i=", index, '; case "$i" in /*) ;; ?*) i="$d/${i#./}";; esac; '
         '[ -f "$i" ] || i=; ')
        if index is not None else (f"d={d}; i=$({_FIND_INDEX}); ",))
    return (*moved, *head,
            f'if [ -z "$i" ]; then echo "{NO_BINLOG_MARK} no binary log index"; exit 0; fi; '
            "f=$(grep -v '^[[:space:]]*$' \"$i\" | tail -n 1); "
            'case "$f" in /*) ;; *) f="$d/${f#./}";; esac; '
            f'echo "{BINLOG_FILE_MARK} $f"; '
            "b=$(command -v mariadb-binlog || command -v mysqlbinlog) || "
            f'{{ echo "{NO_BINLOG_MARK} neither mariadb-binlog nor mysqlbinlog is installed"; '
            "exit 0; }; "
            f"\"$b\" --no-defaults \"$f\" 2>/dev/null | awk '{_AWK}'; "
            f's=${{PIPESTATUS[0]}}; [ "$s" = 0 ] || echo "{EXIT_MARK} $s"')


# -- MySQL without GTIDs: binary log positions ------------------------------------------------------

def binlog_sequence(file: str) -> int:
    """The numeric suffix of a binary log file name: mysql-bin.000012 -> 12."""
    _, _, suffix = str(file).rpartition(".")
    if not suffix.isdigit():
        raise ValueError(f"not a binary log file name: {file!r}")
    return int(suffix)


def position_ahead(recipient: tuple[str, int], donor: tuple[str, int]) -> bool:
    """Whether the recipient's binary log position is past the donor's executed one (file by
    its numeric suffix, then position)."""
    return (binlog_sequence(recipient[0]), int(recipient[1])) > \
        (binlog_sequence(donor[0]), int(donor[1]))


def replicates_from(source_host: object, source_port: object, names: Sequence[str],
                    port: int) -> bool:
    """Whether a replica's source (SHOW REPLICA STATUS) is the server at one of `names`:`port`."""
    if source_host is None or str(source_host).strip() == "":
        return False
    try:
        same_port = int(str(source_port)) == port
    except ValueError:
        return False
    return same_port and str(source_host).strip().lower().rstrip(".") in \
        {n.lower().rstrip(".") for n in names}


# -- findings and verdicts -------------------------------------------------------------------------

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


Mode = Literal["mariadb", "mariadb-binlog", "mysql-gtid", "mysql-file-pos", "mysql-auto",
               "mysql-stopped", "donor-down"]


@dataclass(frozen=True)
class ErrantGate:
    """The errant-transaction check of one runbook: its actions (data) and its verdict."""

    donor: str
    recipient: str
    mode: Mode
    discard: bool
    recipient_datadir: str
    recipient_names: tuple[str, ...]  # the recipient's address and MySQL host (its replicas' view)
    recipient_port: int
    donor_status_sql: str = ""  # SHOW REPLICA/SLAVE STATUS (MySQL)
    donor_status_fields: tuple[str, str, str, str] = ("", "", "", "")  # host, port, file, pos
    recipient_binlog_sql: str = ""  # SHOW MASTER/BINARY LOG STATUS (MySQL)

    # -- keys ---------------------------------------------------------------------------------
    def _r(self, name: str) -> Key:
        return preflight_value(self.recipient, name)

    def _d(self, name: str) -> Key:
        return preflight_value(self.donor, name)

    @property
    def donor_gtid_keys(self) -> tuple[Key, Key, Key]:
        return (self._d("gtid_binlog_state"), self._d("gtid_slave_pos"),
                self._d("gtid_current_pos"))

    @property
    def recipient_binlog(self) -> Key:
        """The stopped recipient's binary log read at preflight."""
        return self._r("binlog_gtids")

    @property
    def recheck_binlog(self) -> Key:
        return Key(f"recheck.{self.recipient}.binlog_gtids")

    @property
    def recheck_summary(self) -> Key:
        return Key(f"recheck.{self.recipient}.errant")

    # -- the plan's words ---------------------------------------------------------------------
    def criterion(self) -> str:
        r, d = self.recipient, self.donor
        sources = f"{d}'s gtid_binlog_state, gtid_slave_pos or gtid_current_pos"
        what = {
            "mariadb": f"every GTID {r} logged (gtid_binlog_state) is in {sources}",
            "mariadb-binlog": f"every GTID in {r}'s last binary log (read from its datadir: "
                              f"the server is down) is in {sources}",
            "mysql-gtid": f"{r}'s gtid_executed is a subset of {d}'s (GTID_SUBSET)",
            "mysql-file-pos": f"if {d} replicates from {r}: {r}'s binary log position is not "
                              f"ahead of what {d} executed (no GTIDs)",
            "mysql-auto": f"with GTIDs: {r}'s gtid_executed is a subset of {d}'s; without: if "
                          f"{d} replicates from {r}, {r} is not ahead of what {d} executed",
            "mysql-stopped": f"{r} is down: without its server its transactions cannot be "
                             f"compared with {d}'s",
            "donor-down": f"{d} is down: {r}'s transactions cannot be compared with its",
        }[self.mode]
        mode = ("errant transactions are DISCARDED (listed, not refused)" if self.discard
                else "refused if it has any")
        return f"{r} has no transaction {d} lacks: {what}; {mode}"

    # -- actions --------------------------------------------------------------------------------
    def donor_actions(self) -> tuple[Leaf, ...]:
        d = self.donor
        if self.mode in ("mariadb", "mariadb-binlog"):
            return (Capture(d, "SELECT @@GLOBAL.gtid_binlog_state AS binlog_state, "
                               "@@GLOBAL.gtid_slave_pos AS slave_pos, "
                               "@@GLOBAL.gtid_current_pos AS current_pos",
                            columns=tuple(zip(("binlog_state", "slave_pos", "current_pos"),
                                              self.donor_gtid_keys, strict=True))),)
        out: list[Leaf] = []
        if self.mode in ("mysql-gtid", "mysql-auto"):
            out.append(self.donor_gtid_subset())
        if self.mode in ("mysql-file-pos", "mysql-auto"):
            names = ("source_host", "source_port", "source_file", "source_exec_pos")
            out.append(Capture(d, self.donor_status_sql, missing=None,
                               columns=tuple((c, self._d(n)) for c, n in
                                             zip(self.donor_status_fields, names, strict=True))))
        return tuple(out)

    def donor_gtid_subset(self) -> Capture:
        """MySQL: which of the recipient's captured gtid_executed the donor lacks."""
        executed = Ref(self._r("gtid_executed"))
        return Capture(self.donor, "SELECT @@GLOBAL.gtid_mode AS gtid_mode, "
                                   "GTID_SUBSET(%s, @@GLOBAL.gtid_executed) AS subset, "
                                   "GTID_SUBTRACT(%s, @@GLOBAL.gtid_executed) AS errant",
                       (executed, executed),
                       columns=(("gtid_mode", self._d("gtid_mode")),
                                ("subset", self._d("gtid_subset")),
                                ("errant", self._d("gtid_errant"))))

    def recipient_actions(self) -> tuple[Leaf, ...]:
        r = self.recipient
        if self.mode == "mariadb":
            return (Capture(r, "SELECT @@GLOBAL.gtid_binlog_state AS binlog_state",
                            columns=(("binlog_state", self._r("gtid_binlog_state")),)),)
        if self.mode == "mariadb-binlog":
            return (self.read_binlog(self.recipient_binlog),)
        out: list[Leaf] = []
        if self.mode in ("mysql-gtid", "mysql-auto"):
            out.append(Capture(r, "SELECT @@GLOBAL.gtid_mode AS gtid_mode, "
                                  "@@GLOBAL.gtid_executed AS gtid_executed",
                               columns=(("gtid_mode", self._r("gtid_mode")),
                                        ("gtid_executed", self._r("gtid_executed")))))
        if self.mode in ("mysql-file-pos", "mysql-auto"):
            out.append(Capture(r, self.recipient_binlog_sql, missing=None,
                               columns=(("File", self._r("binlog_file")),
                                        ("Position", self._r("binlog_pos")))))
        return tuple(out)

    def preflight_actions(self) -> tuple[Leaf, ...]:
        """The recipient's state first, then the donor's (the MySQL subset needs the former)."""
        if self.mode in ("mysql-stopped", "donor-down"):
            return ()  # nothing to ask: it refuses unless discarding
        return (*self.recipient_actions(), *self.donor_actions())

    def read_binlog(self, into: Key, index: Ref | None = None,
                    moved_to: Ref | None = None) -> Shell:
        return Shell.line(self.recipient,
                          *binlog_gtids_command(self.recipient_datadir, index, moved_to),
                          privileged=True, into=into)

    # -- verdict -------------------------------------------------------------------------------
    def finding(self, captured: Captured, binlog: Key | None = None) -> Finding:
        """The comparison over captured values (NotCaptured when a value is missing). `binlog`:
        read the recipient's GTIDs from this captured binary log output instead."""
        mode = self.mode
        if mode == "donor-down":
            return Finding(unproven=f"{self.donor} is down", refuse_unproven=True)
        if mode == "mysql-stopped":
            return Finding(unproven=f"{self.recipient} is down and runs MySQL: its binary log is "
                                    "not read", refuse_unproven=True)
        if binlog is not None or mode == "mariadb-binlog":
            return self._mariadb_binlog(captured, binlog or self.recipient_binlog)
        if mode == "mariadb":
            return self._mariadb(captured, parse_gtid_list(_get(captured,
                                                                self._r("gtid_binlog_state"))))
        if mode == "mysql-auto":
            on = [str(_get(captured, k)).upper() == "ON"
                  for k in (self._r("gtid_mode"), self._d("gtid_mode"))]
            return self._mysql_gtid(captured) if all(on) else self._mysql_file_pos(captured)
        if mode == "mysql-gtid":
            return self._mysql_gtid(captured)
        return self._mysql_file_pos(captured)

    def _donor_states(self, captured: Captured) -> list[GtidState]:
        return [parse_gtid_list(_get(captured, k)) for k in self.donor_gtid_keys]

    def _mariadb(self, captured: Captured, recipient: GtidState, note: str = "") -> Finding:
        donor = self._donor_states(captured)
        log_bin = captured.get(str(self._r("log_bin")))
        if not recipient and log_bin is not None and str(log_bin).upper() not in TRUE_VALUES:
            return Finding(unproven=f"nothing to compare: {self.recipient} does not write a "
                                    "binary log, so it logs no GTIDs", note=note)
        names = ("gtid_binlog_state", "gtid_slave_pos", "gtid_current_pos")
        basis = (f"{self.recipient} logged {format_gtid_state(recipient)}; {self.donor}: " +
                 ", ".join(f"{n} {format_gtid_state(s)}" for n, s in zip(names, donor, strict=True)))
        return Finding(tuple(str(e) for e in mariadb_errant(recipient, donor)), basis=basis,
                       note=note)

    def _mariadb_binlog(self, captured: Captured, key: Key) -> Finding:
        read = parse_binlog_output(_get(captured, key))
        if read.moved is not None:
            before = str(captured.get(str(self.recheck_summary)) or "")
            settled = (f"{self.recipient}'s datadir is already aside at {read.moved}: an earlier "
                       "attempt of this step checked it and moved it")
            if before and not before.startswith(settled):
                settled += f" ({before})"
            return Finding(settled=settled)
        where = f"{self.recipient}'s datadir ({self.recipient_datadir})"
        if read.missing is not None:
            log_bin = captured.get(str(self._r("log_bin")))
            if log_bin is not None and str(log_bin).upper() not in TRUE_VALUES:
                return Finding(unproven=f"nothing to compare: {self.recipient} did not write a "
                                        "binary log (log_bin was off at preflight)")
            return Finding(unproven=f"its binary log could not be read from {where}: "
                                    f"{read.missing}", refuse_unproven=True)
        if not read.has_list:
            tail = f" (mariadb-binlog exited {read.exit_code})" if read.exit_code else ""
            return Finding(unproven=f"the Gtid list event of {read.file} could not be read{tail}",
                           refuse_unproven=True)
        note = (f"mariadb-binlog exited {read.exit_code} on {read.file}: a torn last event is "
                "not a committed transaction" if read.exit_code else "")
        return self._mariadb(captured, read.state, note)

    def _mysql_gtid(self, captured: Captured) -> Finding:
        subset = _get(captured, self._d("gtid_subset"))
        errant = str(captured.get(str(self._d("gtid_errant"))) or "").strip()
        executed = str(captured.get(str(self._r("gtid_executed"))) or "").strip()
        if str(subset) == "1":
            return Finding(basis=f"{self.recipient}'s gtid_executed "
                                 f"'{_short(executed) or '(empty)'}' is a subset of {self.donor}'s")
        return Finding((errant or "(GTID_SUBTRACT returned nothing)",),
                       basis=f"GTID_SUBSET = {subset}")

    def _mysql_file_pos(self, captured: Captured) -> Finding:
        host, port = _get(captured, self._d("source_host")), _get(captured, self._d("source_port"))
        if not replicates_from(host, port, self.recipient_names, self.recipient_port):
            source = f"replicates from {host}:{port}" if host else "does not replicate"
            return Finding(unproven=f"cannot be proven without GTIDs: {self.donor} {source}, not "
                                    f"from {self.recipient} (only a replica of {self.recipient} "
                                    "shows how far it got)")
        r_file, r_pos = (_get(captured, self._r(n)) for n in ("binlog_file", "binlog_pos"))
        d_file, d_pos = (_get(captured, self._d(n)) for n in ("source_file", "source_exec_pos"))
        if r_file is None:
            return Finding(unproven=f"nothing to compare: {self.recipient} writes no binary "
                                    "log")
        if d_file is None or d_pos is None:
            return Finding(unproven=f"cannot be proven: {self.donor} reports no executed "
                                    f"position of {self.recipient}'s binary log")
        mine, theirs = (str(r_file), int(str(r_pos))), (str(d_file), int(str(d_pos)))
        basis = (f"{self.recipient} is at {mine[0]}:{mine[1]}, {self.donor} executed it up to "
                 f"{theirs[0]}:{theirs[1]}")
        if position_ahead(mine, theirs):
            return Finding((f"{self.recipient}'s binary log from {theirs[0]}:{theirs[1]} to "
                            f"{mine[0]}:{mine[1]} (never executed on {self.donor})",), basis=basis)
        return Finding(basis=basis)

    def decide(self, finding: Finding) -> Outcome:
        r, d = self.recipient, self.donor
        if finding.settled:
            return Outcome(True, finding.settled)
        kept = f"{r}'s binary logs stay with its old datadir"
        note = f" ({finding.note})" if finding.note else ""
        if finding.errant:
            listed = "; ".join(finding.errant)
            if self.discard:
                return Outcome(True, f"ERRANT transactions DISCARDED as asked: {r} has {listed}, "
                                     f"which {d} lacks; {kept}{note}")
            return Outcome(False, f"{r} has transactions {d} lacks: {listed}. Rebuilding {r} "
                                  f"from {d} would throw them away. If donor and recipient are "
                                  f"swapped in the runbook, swap them; to throw these "
                                  f"transactions away on purpose, run with {DISCARD_OPTION} "
                                  f"({kept}){note}")
        if finding.unproven:
            if not finding.refuse_unproven:
                return Outcome(True, f"{finding.unproven}{note}")
            if self.discard:
                return Outcome(True, f"not proven: {finding.unproven}; any errant transactions "
                                     f"are DISCARDED as asked; {kept}{note}")
            return Outcome(False, f"whether {r} has transactions {d} lacks cannot be proven: "
                                  f"{finding.unproven}. Refusing to throw them away unseen: "
                                  f"start it so that it can be compared, or run with "
                                  f"{DISCARD_OPTION} ({kept}){note}")
        return Outcome(True, f"none: every transaction of {r} is on {d} ({finding.basis}){note}")

    def outcome(self, captured: Captured, binlog: Key | None = None) -> Outcome:
        try:
            return self.decide(self.finding(captured, binlog))
        except NotCaptured:
            raise
        except ValueError as exc:  # an answer that could not be read is no proof
            return self.decide(Finding(unproven=str(exc), refuse_unproven=True))

    def judge(self, captured: Captured) -> str:
        """The preflight verdict: its detail, or ResyncError when refused."""
        result = self.outcome(captured)
        if not result.ok:
            raise ResyncError(result.detail)
        return result.detail


def _get(captured: Captured, key: Key) -> object:
    name = str(key)
    if name not in captured:
        raise NotCaptured(f"{name} was not captured")
    return captured[name]


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def errant_gate(loaded: LoadedRunbook, versions: Mapping[str, ServerVersion],
                down: frozenset[str] = frozenset(), discard_errant: bool = False,
                gtid_enabled: Mapping[str, bool] | None = None) -> ErrantGate:
    """The gate for a runbook, given the plan's facts. `gtid_enabled` (MySQL gtid_mode per host)
    picks the GTID or the file/position comparison; without it both are captured and the
    servers' gtid_mode decides."""
    rb = loaded.model
    donor, recipient = rb.donor, rb.recipient
    d_version = versions.get(donor, DEFAULT_VERSION)
    r_version = versions.get(recipient, DEFAULT_VERSION)
    r_host = rb.hosts[recipient]
    mode: Mode
    if donor in down:
        mode = "donor-down"
    elif r_version.flavor == "mariadb":
        mode = "mariadb-binlog" if recipient in down else "mariadb"
    elif recipient in down:
        mode = "mysql-stopped"
    elif gtid_enabled is None or donor not in gtid_enabled or recipient not in gtid_enabled:
        mode = "mysql-auto"
    else:
        mode = "mysql-gtid" if gtid_enabled[donor] and gtid_enabled[recipient] else "mysql-file-pos"
    fields = dialect_for(d_version).status_fields
    return ErrantGate(
        donor=donor, recipient=recipient, mode=mode, discard=discard_errant,
        recipient_datadir=r_host.datadir.rstrip("/"),
        recipient_names=tuple(dict.fromkeys((r_host.address, r_host.mysql_host))),
        recipient_port=r_host.mysql.port,
        donor_status_sql=dialect_for(d_version).replica_status().sql,
        donor_status_fields=(fields.source_host, fields.source_port, fields.source_log_file,
                             fields.exec_source_log_pos),
        recipient_binlog_sql=dialect_for(r_version).binlog_status().sql)


# -- at the point of no return ---------------------------------------------------------------------

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
            return self.gate.outcome(captured, self.binlog)
        except NotCaptured as exc:
            return self.gate.decide(Finding(unproven=str(exc), refuse_unproven=True))

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
        index = Ref(preflight_value(gate.recipient, "log_bin_index")) \
            if gate.mode == "mariadb" else None
        leaves.append(gate.read_binlog(gate.recheck_binlog, index, Ref(OLD_DATADIR)))
        binlog = gate.recheck_binlog
    elif gate.mode in ("mysql-gtid", "mysql-auto") and donor_up:
        leaves.append(gate.donor_gtid_subset())
    return (ErrantRecheck(gate, tuple(leaves), NoErrantTransactions(gate, binlog)),)


__all__ = ["DISCARD_OPTION", "Errant", "ErrantGate", "ErrantRecheck", "ErrantTransactions",
           "NoErrantTransactions", "NotCaptured", "binlog_gtids_command", "errant_gate",
           "errant_recheck", "mariadb_errant", "parse_binlog_output", "parse_gtid_list",
           "position_ahead", "replicates_from"]
