"""The errant-transaction gate of one runbook: its captured values' keys, its criterion in the
plan's words, and the read-only actions that gather what its verdict (`verdict.py`) compares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from resync.actions.dialect import DEFAULT_VERSION, ServerVersion, dialect_for
from resync.actions.quoting import q
from resync.actions.types import Capture, Captured, Leaf, Ref, Shell
from resync.model.errors import ResyncError
from resync.model.keys import Key, preflight_value
from resync.model.runbook import LoadedRunbook
from resync.steps.direction.binlog import BINLOG_FILE_MARK, EXIT_MARK, MOVED_MARK, NO_BINLOG_MARK
from resync.steps.direction.verdict import outcome

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
    def recipient_key(self, name: str) -> Key:
        return preflight_value(self.recipient, name)

    def donor_key(self, name: str) -> Key:
        return preflight_value(self.donor, name)

    @property
    def donor_gtid_keys(self) -> tuple[Key, Key, Key]:
        return (self.donor_key("gtid_binlog_state"), self.donor_key("gtid_slave_pos"),
                self.donor_key("gtid_current_pos"))

    @property
    def recipient_binlog(self) -> Key:
        """The stopped recipient's binary log read at preflight."""
        return self.recipient_key("binlog_gtids")

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
                               columns=tuple((c, self.donor_key(n)) for c, n in
                                             zip(self.donor_status_fields, names, strict=True))))
        return tuple(out)

    def donor_gtid_subset(self) -> Capture:
        """MySQL: which of the recipient's captured gtid_executed the donor lacks."""
        executed = Ref(self.recipient_key("gtid_executed"))
        return Capture(self.donor, "SELECT @@GLOBAL.gtid_mode AS gtid_mode, "
                                   "GTID_SUBSET(%s, @@GLOBAL.gtid_executed) AS subset, "
                                   "GTID_SUBTRACT(%s, @@GLOBAL.gtid_executed) AS errant",
                       (executed, executed),
                       columns=(("gtid_mode", self.donor_key("gtid_mode")),
                                ("subset", self.donor_key("gtid_subset")),
                                ("errant", self.donor_key("gtid_errant"))))

    def recipient_actions(self) -> tuple[Leaf, ...]:
        r = self.recipient
        if self.mode == "mariadb":
            return (Capture(r, "SELECT @@GLOBAL.gtid_binlog_state AS binlog_state",
                            columns=(("binlog_state", self.recipient_key("gtid_binlog_state")),)),)
        if self.mode == "mariadb-binlog":
            return (self.read_binlog(self.recipient_binlog),)
        out: list[Leaf] = []
        if self.mode in ("mysql-gtid", "mysql-auto"):
            out.append(Capture(r, "SELECT @@GLOBAL.gtid_mode AS gtid_mode, "
                                  "@@GLOBAL.gtid_executed AS gtid_executed",
                               columns=(("gtid_mode", self.recipient_key("gtid_mode")),
                                        ("gtid_executed", self.recipient_key("gtid_executed")))))
        if self.mode in ("mysql-file-pos", "mysql-auto"):
            out.append(Capture(r, self.recipient_binlog_sql, missing=None,
                               columns=(("File", self.recipient_key("binlog_file")),
                                        ("Position", self.recipient_key("binlog_pos")))))
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

    # -- verdict ------------------------------------------------------------------------------
    def judge(self, captured: Captured) -> str:
        """The preflight verdict: its detail, or ResyncError when refused."""
        result = outcome(self, captured)
        if not result.ok:
            raise ResyncError(result.detail)
        return result.detail


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


# -- a stopped MariaDB recipient: the command that reads its last binary log ------------------------

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
