"""The commands of a hot copy (`copy.method: mariabackup` / `xtrabackup`), as data.

The donor's backup tool streams its datadir (`--backup --stream=xbstream`) while the server
serves; the stream crosses to the recipient through the stream method's transport (the seam is
`stream_ends`: today the copy relay of `relay.py`, which counts and checksums each end) and is
extracted there (`mbstream -x` / `xbstream -x`) into the fresh datadir, then prepared
(`--prepare`: the redo log the tool copied alongside is applied, so the files are consistent at
the backup's point).

The tool logs in to the donor's server with a one-time account made for the copy. Its password
is born on the donor (`openssl rand`) and written there into a 0600 defaults file under /run
(root's), never on a command line; only its mysql_native_password hash (SHA1(SHA1(password)))
leaves the host, for `CREATE USER ... IDENTIFIED BY PASSWORD`. The account has just the tool's
privileges, is reachable only on the server's socket ('localhost'), and it and the file are gone
as soon as the stream ends (also when it fails, and on rollback). The runbook's own passwords are
never handed to a host.

The tool's lock is measured from its own log: each line of its stderr is stamped with the time it
was read ($EPOCHREALTIME: microseconds; the tool's own stamps have whole seconds), and the
sender's last lines say how long commits and writes to non-transactional tables were blocked.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from resync.actions.conditions import Condition
from resync.actions.dialect import Flavor, ServerVersion
from resync.actions.external import External, ExternalContext, Outcome
from resync.actions.quoting import q
from resync.actions.types import Captured, Fmt, Ref, Shell, Slot, Template, Value
from resync.model.errors import ResyncError
from resync.model.keys import RUN_ID, Coordinates, Key
from resync.steps.copy import relay
from resync.steps.copy.commands import (
    CopySpec,
    _compress,
    _decompress,
    relay_prelude,
    relay_receiver,
    relay_sender,
    tagged,
)
from resync.steps.direction.gtid import parse_gtid_list

HOT_METHODS = ("mariabackup", "xtrabackup")
BACKUP_USER, BACKUP_HOST = "resync_backup", "localhost"  # the one-time account: on the socket only
CREDENTIALS = ("/run/resync-backup-", Ref(RUN_ID))  # a directory on the donor, 0700, root's
# Under the commit lock the tool waits until its redo log copier has read up to the lock's LSN;
# the copier looks every --log-copy-interval (1000 ms by default): under a write load the commit
# lock then lasted a whole second (1.005 s measured here); every 50 ms it lasts a few tens of ms
LOG_COPY_INTERVAL_MS = 50
LOCK_REPORT = re.compile(r"^RESYNC backup-lock commit=(\S+) nontransactional=(\S+)$", re.MULTILINE)
LOCK_LINE = re.compile(r"^RESYNC backup-log (.*)$", re.MULTILINE)
VERSION_LINE = re.compile(r"based on (MySQL|MariaDB) server (\d+)\.(\d+)\.(\d+)", re.IGNORECASE)

BACKUP = Coordinates.named("backup")  # the backup's point (the seed's scenario: the catch-up's)
DONOR_SOCKET = Key("hot.donor_socket")
ACCOUNT_HASH = Key("hot.account_hash")  # mysql_native_password hash of the one-time password
BINLOG_INFO = Key("hot.binlog_info")
BINLOG_GTID = Key("hot.binlog_gtid_pos")
GTID_CONTAINED = Key("hot.gtid_contained")
WRITE_LOCK_SECONDS = Key("hot.write_lock_seconds")  # the donor's commits blocked by the tool
NONTRANSACTIONAL_LOCK_SECONDS = Key("hot.nontransactional_lock_seconds")
LOCK_LOG = Key("hot.lock_log")  # the tool's lines that bound its locks, stamped
CAUGHT_UP = Key("hot.caught_up")
SWITCH_LOCK_SECONDS = Key("hot.switch_lock_seconds")  # the seed's scenario: the freeze's lock


@dataclass(frozen=True)
class SameGtidPosition(Condition):
    """Two captured MariaDB GTID positions list the same GTIDs (in any order)."""

    first: Key
    second: Key

    def template(self) -> Template:
        return (Slot(self.first, Fmt.SQL), " is the GTID position ", Slot(self.second, Fmt.SQL))

    def holds(self, captured: Captured) -> bool:
        a, b = captured.get(str(self.first)), captured.get(str(self.second))
        try:
            return a is not None and b is not None and parse_gtid_list(a) == parse_gtid_list(b)
        except ValueError:
            return False

    def explain(self, captured: Captured) -> str:
        return (f"({self.first} {captured.get(str(self.first))!r}, "
                f"{self.second} {captured.get(str(self.second))!r})")


@dataclass(frozen=True, kw_only=True)
class ParseBinlogInfo(External):
    """The backup's `file<TAB>position[<TAB>GTID]` (a MySQL GTID set may go on over several
    lines) -> the coordinates: file, position (a number), GTID (None when there is none)."""

    host: str
    source: Key
    at: Coordinates
    kind = "parse"

    def template(self) -> Template:
        return (f"{self.at.file}, {self.at.pos}, {self.at.gtid} from ", Slot(self.source, Fmt.SQL))

    def outputs(self) -> tuple[Key, ...]:
        return (self.at.file, self.at.pos, self.at.gtid)

    def perform(self, ctx: ExternalContext) -> Outcome:
        raw = str(ctx.captured.get(str(self.source)) or "")
        first, *more = raw.strip().splitlines() or [""]
        fields = first.split("\t")
        if len(fields) < 2 or not fields[0] or not fields[1].isdigit():
            raise ResyncError(f"cannot read the backup's binlog coordinates from {raw[:200]!r}")
        gtid = "".join([*fields[2:3], *(line.strip() for line in more)]).strip()
        values: dict[Key, Value] = {self.at.file: fields[0], self.at.pos: int(fields[1]),
                                    self.at.gtid: gtid or None}
        return Outcome(detail=f"file {fields[0]}, position {fields[1]}, GTID {gtid or '(none)'}",
                       values=values)


@dataclass(frozen=True)
class BackupTool:
    """One backup tool: its programs and the lines of its log that bound its locks."""

    name: str  # the backup program (--backup, --prepare)
    extractor: str  # reads the xbstream on the recipient
    flavor: str  # the servers it backs up
    package: str  # where it comes from (the preflight's hint)
    binlog_info: tuple[str, ...]  # the file it writes the binlog coordinates to (newest name first)
    commit_lock: tuple[str, ...]  # a log line with one of these: commits wait from here ...
    nontransactional_lock: tuple[str, ...]  # ... writes to MyISAM/Aria/CSV tables from here ...
    unlocked: tuple[str, ...]  # ... until a line with one of these


TOOLS = {
    # BACKUP STAGE FLUSH..END blocks writes to non-transactional tables (their files are copied
    # under BLOCK_DDL: that part grows with their size); BLOCK_COMMIT..END blocks commits while the
    # tool copies the log tables and the redo log's tail and reads the binlog position
    "mariabackup": BackupTool(
        "mariabackup", "mbstream", "mariadb", "mariadb-backup (same version as the server)",
        ("mariadb_backup_binlog_info", "xtrabackup_binlog_info"),
        ("Starting BACKUP STAGE BLOCK_COMMIT", "Executing FLUSH TABLES WITH READ LOCK"),
        ("Starting BACKUP STAGE FLUSH", "Executing FLUSH TABLES WITH READ LOCK"),
        ("All tables unlocked",)),
    # XtraBackup 8.0 (LOCK INSTANCE FOR BACKUP blocks DDL only): commits wait while it reads
    # performance_schema.log_status, or under FLUSH TABLES WITH READ LOCK when the server has
    # non-InnoDB tables (or LOCK BINLOG FOR BACKUP on Percona Server)
    "xtrabackup": BackupTool(
        "xtrabackup", "xbstream", "mysql", "percona-xtrabackup-80 (or -84: as the server)",
        ("xtrabackup_binlog_info",),
        ("Executing FLUSH TABLES WITH READ LOCK", "Executing LOCK BINLOG FOR BACKUP",
         "Selecting LSN and binary log position from p_s.log_status"),
        ("Executing FLUSH TABLES WITH READ LOCK", "Executing LOCK TABLES FOR BACKUP"),
        ("All tables unlocked",)),
}


def credentials_file() -> tuple[str | Ref, ...]:
    return (*CREDENTIALS, "/client.cnf")


def make_credentials(host: str, into: Key) -> Shell:
    """On the donor: a fresh one-time password in a 0600 defaults file; prints only its hash."""
    return Shell.line(
        host, "set -euo pipefail; umask 077; d=", *CREDENTIALS, "; rm -rf -- \"$d\"; "
        "mkdir -m 0700 -- \"$d\"; pw=$(openssl rand -hex 24); "
        "printf '[client]\\npassword=%s\\n' \"$pw\" > \"$d/client.cnf\"; "
        "printf '*%s\\n' \"$(printf %s \"$pw\" | openssl dgst -sha1 -binary | openssl dgst -sha1 -r"
        " | cut -c1-40 | tr a-f A-F)\"", privileged=True, into=into)


def remove_credentials(host: str) -> Shell:
    return Shell.line(host, "rm -rf -- ", *CREDENTIALS, privileged=True)


def _first(markers: tuple[str, ...], var: str) -> str:
    """An awk rule: the time stamp of the first line holding one of `markers`, into `var`."""
    test = " || ".join(f'index($0, "{m}")' for m in markers)
    return f"!{var} && ({test}) {{ {var} = $1 }} "


def lock_report(tool: BackupTool) -> str:
    """awk over the stamped log: `RESYNC backup-lock commit=S nontransactional=S` ('-': the tool
    never logged that lock), then the lines that bound the locks, prefixed `RESYNC backup-log`."""
    program = (_first(tool.commit_lock, "c") + _first(tool.nontransactional_lock, "f")
               + _first(tool.unlocked, "e") +
               'END { printf "RESYNC backup-lock commit=%s nontransactional=%s\\n", '
               '(c && e) ? sprintf("%.3f", e - c) : "-", (f && e) ? sprintf("%.3f", e - f) : "-" }')
    lines = " ".join(f"-e {q(m)}" for m in dict.fromkeys(
        (*tool.commit_lock, *tool.nontransactional_lock, *tool.unlocked, "BACKUP STAGE",
         "binlog position")))
    return (f"awk {q(program)} \"$t/log\"; grep -F {lines} \"$t/log\" | "
            "sed 's/^/RESYNC backup-log /' || true")


def backup_source(spec: CopySpec, tool: BackupTool, socket: Key, parallel: int) -> tuple[str | Ref, ...]:
    """The donor's producer: the backup on stdout, its log stamped into "$t/log" (a fifo, read
    by a loop that stamps each line as it arrives). Ends with `|` into the transport."""
    return (
        't=$(mktemp -d /tmp/resync-hot.XXXXXX); trap \'rm -rf -- "$t"\' EXIT; mkfifo "$t/err"; '
        'while IFS= read -r l; do printf \'%s %s\\n\' "${EPOCHREALTIME:-$(date +%s.%N)}" "$l"; '
        'done < "$t/err" > "$t/log" & sp=$!; rc=0; ',
        f"{tool.name} --defaults-extra-file=", *credentials_file(),
        f" --user={BACKUP_USER} --socket=", Ref(socket),
        f" --backup --stream=xbstream --target-dir=\"$t\" --datadir={q(spec.donor_datadir)}"
        f" --parallel={parallel} --log-copy-interval={LOG_COPY_INTERVAL_MS} 2> \"$t/err\" | ")


def stream_ends(spec: CopySpec, source: tuple[str | Ref, ...], sink: str,
                after_send: str) -> tuple[tuple[Shell, ...], Shell, Shell]:
    """THE TRANSPORT SEAM: `source` (donor, ends with `| `) -> the wire -> `sink` (recipient,
    reads stdin). Returns (what to run first, one after the other; the receiving end; the
    sending end). Today the copy relay: each end counts and checksums the wire bytes and prints
    `RESYNC sent|received bytes=N <digest>=HEX` (relay.REPORT) on stderr; the receiver lets in
    only the donor with the run's one-time token. `after_send` runs on the donor once the
    pipeline has ended, its exit status in $rc."""
    limit = (f"pv -q -L {int(spec.rate_limit_mb_per_s * 1_000_000)} | "
             if spec.rate_limit_mb_per_s else "")
    return (relay_prelude(spec),
            tagged(spec.recipient, "set -euo pipefail; ", *relay_receiver(spec),
                   f" | {_decompress(spec)}{sink}"),
            tagged(spec.donor, "set -euo pipefail; ", *source, f"{limit}{_compress(spec)}",
                   *relay_sender(spec), f" || rc=$?; {after_send}"))


def wire_report(output: str, sent: bool) -> str:
    """`wire=<bytes> <digest>=<hex>` as one end reported it ('' when it did not)."""
    role = "sent" if sent else "received"
    found = next((m for m in relay.REPORT.finditer(output) if m.group(1) == role), None)
    return f"wire={found.group(2)} {found.group(3)}={found.group(4)}" if found else ""


def backup_ends(spec: CopySpec, tool: BackupTool, socket: Key,
                parallel: int) -> tuple[tuple[Shell, ...], Shell, Shell]:
    """The hot copy's two ends: the backup on the donor, the extraction on the recipient."""
    # the pipeline's status is kept ($rc) until the log has been read: on failure its tail says why
    after = (f"wait $sp; {lock_report(tool)}; if [ $rc -ne 0 ]; then "
             "tail -n 40 \"$t/log\" >&2; exit $rc; fi")
    sink = f"{tool.extractor} -x -C {q(spec.recipient_datadir)} --parallel={parallel}"
    return stream_ends(spec, backup_source(spec, tool, socket, parallel), sink, after)


def prepare(spec: CopySpec, tool: BackupTool, memory_mb: int) -> Shell:
    """Apply the copied redo log: the datadir becomes consistent at the backup's point. Safe to
    repeat (a prepared backup is prepared again without harm)."""
    return Shell.line(spec.recipient, f"{tool.name} --prepare --target-dir="
                      f"{q(spec.recipient_datadir)} --use-memory={memory_mb}M", privileged=True)


def finish_datadir(spec: CopySpec) -> Shell:
    """The copy's exclusions applied as for every method (whatever the tool brought along that
    the recipient must not have: a MySQL auto.cnf, logs), then the datadir given to its owner.
    Each pattern is a glob only: IFS empty, no word splitting, no other expansion."""
    d = q(spec.recipient_datadir)
    patterns = " ".join(q(p) for p in spec.excludes)
    return Shell.line(spec.recipient, f"set -euo pipefail; shopt -s nullglob; cd {d}; IFS=; "
                      f"for p in {patterns}; do for f in $p; do rm -rf -- \"$f\"; done; done; "
                      f"chown -R {q(spec.owner)} {d}", privileged=True)


def read_binlog_info(spec: CopySpec, tool: BackupTool, into: Key) -> Shell:
    """The backup's coordinates as the tool wrote them: `file<TAB>position[<TAB>GTID]`."""
    names = " ".join(tool.binlog_info)
    return Shell.line(spec.recipient, f"cd {q(spec.recipient_datadir)}; for f in {names}; do "
                      "[ -e \"$f\" ] && exec cat -- \"$f\"; done; "
                      f"echo 'the backup wrote no binlog coordinates ({names})' >&2; exit 1",
                      privileged=True, into=into)


def tool_probe(tool: BackupTool, *programs: str) -> str:
    """Prints `missing <program>` for each of `programs` not installed, then the tool's version
    line (`... based on MariaDB server 10.11.19 ...`)."""
    return (f"for p in {' '.join(programs)}; do command -v $p >/dev/null || echo missing $p; "
            f"done; {tool.name} --version 2>&1 | head -1; true")


# -- the preflight's verdicts (pure) ---------------------------------------------------------------

GRANTS_SQL = ("SELECT PRIVILEGE_TYPE AS privilege, IS_GRANTABLE AS grantable "
              "FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = CONCAT(\"'\", "
              "SUBSTRING_INDEX(CURRENT_USER(), '@', 1), \"'@'\", "
              "SUBSTRING_INDEX(CURRENT_USER(), '@', -1), \"'\")")
NATIVE_PASSWORD_SQL = ("SELECT PLUGIN_STATUS AS status FROM information_schema.PLUGINS "
                       "WHERE PLUGIN_NAME = 'mysql_native_password'")


def tool_version(probe: str, tool: BackupTool, host: str) -> ServerVersion:
    """The server release the tool was built from, from `tool_probe`'s output."""
    missing = [line.split()[1] for line in probe.splitlines()
               if line.startswith("missing ") and len(line.split()) == 2]
    if missing:
        raise ResyncError(f"not installed on {host}: {', '.join(missing)} (install {tool.package})")
    found = VERSION_LINE.search(probe)
    if found is None:
        raise ResyncError(f"cannot read {tool.name}'s version on {host}: {probe.strip()[-200:]!r}")
    flavor: Flavor = "mariadb" if found.group(1).lower() == "mariadb" else "mysql"
    return ServerVersion(flavor, int(found.group(2)), int(found.group(3)), int(found.group(4)))


def _release(v: ServerVersion) -> str:
    return f"{v.major}.{v.minor}.{v.patch}"


def donor_tool_fits(probe: str, tool: BackupTool, host: str, server: ServerVersion) -> str:
    """The tool backs up this server: same flavor, same major.minor (MySQL: XtraBackup at least
    the server's patch release: an older one refuses a newer server's redo log)."""
    if server.flavor != tool.flavor:
        other = next(t.name for t in TOOLS.values() if t.flavor == server.flavor)
        raise ResyncError(f"{tool.name} backs up {tool.flavor} servers; {host} runs {server}: "
                          f"set copy.method: {other}")
    found = tool_version(probe, tool, host)
    if found.number[:2] != server.number[:2] or (server.flavor == "mysql"
                                                 and found.patch < server.patch):
        raise ResyncError(f"{tool.name} on {host} is built for {_release(found)}, the server "
                          f"runs {_release(server)}: install the tool of the server's release "
                          f"({tool.package})")
    return f"{tool.name} {_release(found)} for {server}"


def recipient_tool_fits(probe: str, tool: BackupTool, host: str,
                        donor_tool: ServerVersion | None) -> str:
    """It prepares what the donor's tool made: the same major.minor release (None: the donor's
    is not known, its own check says why)."""
    found = tool_version(probe, tool, host)
    if donor_tool is None:
        return f"{tool.name} {_release(found)}, {tool.extractor} (the donor's tool is not known)"
    if found.number[:2] != donor_tool.number[:2]:
        raise ResyncError(f"{tool.name} on {host} is {_release(found)}, the donor's "
                          f"{_release(donor_tool)}: a backup is prepared by its own release "
                          f"({tool.package})")
    return f"{tool.name} {_release(found)}, {tool.extractor}"


def backup_account_possible(grants: Value, native: Value, user: str, needed: tuple[str, ...]) -> str:
    """`user` can make the one-time account: CREATE USER, and the tool's privileges with GRANT
    OPTION (global grants only: privileges from roles are not seen here)."""
    rows = [(str(p).upper(), str(g).upper()) for p, g in json.loads(str(grants or "[]"))]
    grantable = {p for p, g in rows if g == "YES"}
    lacking = [] if "CREATE USER" in {p for p, _ in rows} else ["CREATE USER"]
    lacking += [f"{p} WITH GRANT OPTION" for p in needed if p not in grantable]
    if lacking:
        raise ResyncError(f"'{user}' lacks {', '.join(lacking)} (global grants): it makes the "
                          f"backup tool's one-time account '{BACKUP_USER}'@'{BACKUP_HOST}' with "
                          f"{', '.join(needed)}")
    if str(native or "").upper() != "ACTIVE":
        raise ResyncError("the mysql_native_password plugin is not active (MySQL 8.4: "
                          "mysql_native_password=ON): the one-time account is identified by it")
    return f"'{user}' grants {', '.join(needed)} to '{BACKUP_USER}'@'{BACKUP_HOST}'"
