"""The SQL resync runs, per server flavor and version, as one table of syntax rows.

`dialect_for(version)` picks the newest row of `_ROWS` whose `since` is not after the server's
version; each row is the previous one plus what that release changed, so `_ROWS` reads like the
release notes. Every value is a `%s` parameter (pymysql paramstyle), never pasted into SQL.
The password is passed through as the caller's object (a `Secret`): whoever executes a
`Statement` must reveal it just before the driver call, because pymysql falls back to `str()`
for unknown types and `str(Secret)` is the mask.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Flavor = Literal["mysql", "mariadb"]

_FLAVORS: tuple[Flavor, ...] = ("mysql", "mariadb")
_PARSE_RE = re.compile(
    r"^(?P<flavor>mysql|mariadb)[-:](?P<major>\d+)\.(?P<minor>\d+)(?:\.(?P<patch>\d+))?$",
    re.IGNORECASE,
)
_SERVER_RE = re.compile(r"^(?P<major>\d+)\.(?P<minor>\d+)(?:\.(?P<patch>\d+))?(?![\d.])")
# MariaDB < 11 presented itself as "5.5.5-10.x.y-MariaDB" on the wire; some tools copy that.
_MARIADB_WIRE_PREFIX = "5.5.5-"


@dataclass(frozen=True, order=True)
class ServerVersion:
    """A server flavor and version. Ordering is only meaningful within one flavor."""

    flavor: Flavor
    major: int
    minor: int
    patch: int = 0

    def __post_init__(self) -> None:
        if self.flavor not in _FLAVORS:
            raise ValueError(f"unknown server flavor {self.flavor!r}: expected mysql or mariadb")
        for name in ("major", "minor", "patch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} version must be a non-negative int, got {value!r}")

    @classmethod
    def parse(cls, text: str) -> ServerVersion:
        """Parse user input such as "mariadb-10.11", "mysql-8.0.22" or "mysql:8.4.3"."""
        match = _PARSE_RE.match(text.strip())
        if match is None:
            raise ValueError(
                f"bad server version {text!r}: expected FLAVOR-MAJOR.MINOR[.PATCH] with FLAVOR "
                "mysql or mariadb, e.g. 'mariadb-10.11' or 'mysql-8.0.22'"
            )
        flavor: Flavor = "mariadb" if match["flavor"].lower() == "mariadb" else "mysql"
        return cls(flavor, int(match["major"]), int(match["minor"]), int(match["patch"] or 0))

    @classmethod
    def from_server(cls, version: str, version_comment: str = "") -> ServerVersion:
        """Build from `SELECT @@version, @@version_comment` of a live server.

        MariaDB says so in @@version ("10.11.19-MariaDB-0+deb12u1-log") or in the comment
        ("mariadb.org binary distribution"); anything else (Oracle, Percona, ...) is MySQL.
        """
        text = version.strip()
        is_mariadb = "mariadb" in f"{text} {version_comment}".lower()
        if is_mariadb and text.startswith(_MARIADB_WIRE_PREFIX):
            text = text[len(_MARIADB_WIRE_PREFIX) :]
        match = _SERVER_RE.match(text)
        if match is None:
            raise ValueError(
                f"cannot read a server version from @@version={version!r} "
                f"(@@version_comment={version_comment!r}): expected it to start with X.Y.Z"
            )
        flavor: Flavor = "mariadb" if is_mariadb else "mysql"
        return cls(flavor, int(match["major"]), int(match["minor"]), int(match["patch"] or 0))

    @property
    def number(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def __str__(self) -> str:
        return f"{self.flavor}-{self.major}.{self.minor}.{self.patch}"


@dataclass(frozen=True)
class Statement:
    """One SQL statement with `%s` placeholders and the values that fill them."""

    sql: str
    params: tuple[Any, ...] = ()  # values, Refs, secrets: whatever the executor binds

    def preview(self) -> str:
        """Values quoted in via str(), so a `Secret` shows masked. For plans/logs; never run it."""
        return self.sql % tuple(_preview_value(p) for p in self.params)


def _preview_value(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class ReplicationTLS:
    """How a replica's connection to its source is secured: the runbook's `replication.tls`
    decided for one source (resync.steps.replication.decide_tls). Paths are on the replica's
    host; a CA also turns on the check of the source's certificate and host name."""

    enabled: bool = False
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    # TLS off only (MySQL 8): GET_SOURCE_PUBLIC_KEY=1, the source's RSA key taken unauthenticated
    rsa_key_exchange: bool = False

    @property
    def verified(self) -> bool:
        return self.enabled and self.ca is not None


PLAINTEXT = ReplicationTLS()


@dataclass(frozen=True)
class ReplicaStatusFields:
    """Column names in the replica-status result of one version."""

    io_running: str
    sql_running: str
    seconds_behind: str
    last_io_error: str
    last_sql_error: str
    source_host: str
    source_port: str
    source_log_file: str  # file of the executed position (pairs with exec_source_log_pos)
    exec_source_log_pos: str
    using_gtid: str | None  # MariaDB "Using_Gtid" (No/Slave_Pos/...), MySQL "Auto_Position" (0/1)


_SLAVE_FIELDS = ReplicaStatusFields(
    io_running="Slave_IO_Running",
    sql_running="Slave_SQL_Running",
    seconds_behind="Seconds_Behind_Master",
    last_io_error="Last_IO_Error",
    last_sql_error="Last_SQL_Error",
    source_host="Master_Host",
    source_port="Master_Port",
    source_log_file="Relay_Master_Log_File",
    exec_source_log_pos="Exec_Master_Log_Pos",
    using_gtid="Auto_Position",
)
_REPLICA_FIELDS = ReplicaStatusFields(
    io_running="Replica_IO_Running",
    sql_running="Replica_SQL_Running",
    seconds_behind="Seconds_Behind_Source",
    last_io_error="Last_IO_Error",
    last_sql_error="Last_SQL_Error",
    source_host="Source_Host",
    source_port="Source_Port",
    source_log_file="Relay_Source_Log_File",
    exec_source_log_pos="Exec_Source_Log_Pos",
    using_gtid="Auto_Position",
)


@dataclass(frozen=True)
class _Syntax:
    """The syntax in force from one release until the next row of `_ROWS`."""

    replica_word: str  # START <word>, STOP <word>, RESET <word> ALL, SHOW <word> STATUS
    change_source: str  # the statement that points a replica at its source
    option_prefix: str  # <prefix>_HOST, <prefix>_PORT, ... <prefix>_SSL
    public_key_option: str | None  # emitted only with TLS off and replication.allow_rsa_key_exchange
    gtid_option: str  # what makes change_source use GTIDs instead of a file position
    binlog_status: str
    reset_binlogs: str
    pos_wait_function: str
    gtid_wait_sql: str  # (gtid_set, timeout) -> 0 reached, -1 timed out
    gtid_position_sql: str
    gtid_enabled_sql: str | None
    seed_gtid_sql: str
    seed_resets_binlogs: bool  # MySQL: gtid_purged can only be set once gtid_executed is empty
    seed_primary_sql: str  # the new primary's GTID history, right after its binlogs were reset
    status_fields: ReplicaStatusFields
    skip_replica_start_option: str  # option file: do not start replication threads at startup
    super_read_only: bool  # MySQL: read_only alone lets SUPER/CONNECTION_ADMIN users write
    # verify (resync.steps.verify): a snapshot at a known position, the replica paused there.
    # MariaDB: the snapshot's own binlog position, read without a lock (None: MySQL takes FTWRL
    # for milliseconds around START TRANSACTION WITH CONSISTENT SNAPSHOT and the position)
    snapshot_position_sql: str | None = None
    # START <word> SQL_THREAD UNTIL <this> = %s; None: by file/position only (MariaDB's
    # UNTIL master_gtid_pos needs the IO thread stopped too, a semi-sync primary would wait)
    applier_until_gtid: str | None = "SQL_AFTER_GTIDS"
    gtid_applied_sql: str = "SELECT GTID_SUBSET(%s, @@GLOBAL.gtid_executed) AS reached"
    lock_nowait: str = ""  # LOCK TABLES ... READ<this>: MariaDB 10.3+ fails at once if taken
    # a cap on one SELECT's time: MySQL's optimizer hint; MariaDB 10.3+: SET STATEMENT
    statement_time_prefix: str = "SELECT /*+ MAX_EXECUTION_TIME({ms}) */"
    # one row, column `tls`: YES when the server accepts TLS connections
    tls_offered_sql: str = "SELECT @@GLOBAL.have_ssl AS tls"
    # MariaDB 11.3+ (MDEV-31857): a replica uses TLS and verifies the source's certificate unless
    # told otherwise, so resync says <prefix>_SSL=0 / _SSL_VERIFY_SERVER_CERT=0 where it means it
    replica_tls_by_default: bool = False


_MYSQL_5_7 = _Syntax(
    replica_word="SLAVE",
    change_source="CHANGE MASTER TO",
    option_prefix="MASTER",
    public_key_option=None,
    gtid_option="MASTER_AUTO_POSITION=1",
    binlog_status="SHOW MASTER STATUS",
    reset_binlogs="RESET MASTER",
    pos_wait_function="MASTER_POS_WAIT",
    # WAIT_FOR_EXECUTED_GTID_SET returns 0 = reached, 1 = timeout; negate it so that, as with
    # MASTER_GTID_WAIT and MASTER_POS_WAIT, -1 means timeout (and the call runs only once).
    gtid_wait_sql="SELECT -WAIT_FOR_EXECUTED_GTID_SET(%s, %s) AS reached",
    gtid_position_sql="SELECT @@GLOBAL.gtid_executed AS gtid",
    gtid_enabled_sql="SELECT @@GLOBAL.gtid_mode AS gtid_mode",
    seed_gtid_sql="SET GLOBAL gtid_purged = %s",
    seed_resets_binlogs=True,
    seed_primary_sql="SET GLOBAL gtid_purged = %s",
    status_fields=_SLAVE_FIELDS,
    skip_replica_start_option="skip-slave-start",
    super_read_only=True,
)
_MYSQL_8_0_4 = replace(_MYSQL_5_7, public_key_option="GET_MASTER_PUBLIC_KEY=1")
# have_ssl is deprecated from 8.0.26 and gone in 8.4; the main TLS channel's state is in
# performance_schema from 8.0.21 ('unknown' when performance_schema is off: no row)
_MYSQL_8_0_21 = replace(_MYSQL_8_0_4, tls_offered_sql=(
    "SELECT COALESCE((SELECT IF(UPPER(VALUE) = 'YES', 'YES', 'NO') "
    "FROM performance_schema.tls_channel_status "
    "WHERE CHANNEL = 'mysql_main' AND PROPERTY = 'Enabled'), 'unknown') AS tls"))
_MYSQL_8_0_22 = replace(_MYSQL_8_0_21, replica_word="REPLICA", status_fields=_REPLICA_FIELDS)
_MYSQL_8_0_23 = replace(
    _MYSQL_8_0_22,
    change_source="CHANGE REPLICATION SOURCE TO",
    option_prefix="SOURCE",
    public_key_option="GET_SOURCE_PUBLIC_KEY=1",
    gtid_option="SOURCE_AUTO_POSITION=1",
)
_MYSQL_8_0_26 = replace(_MYSQL_8_0_23, pos_wait_function="SOURCE_POS_WAIT",
                        skip_replica_start_option="skip-replica-start")
_MYSQL_8_2_0 = replace(
    _MYSQL_8_0_26,
    binlog_status="SHOW BINARY LOG STATUS",
    reset_binlogs="RESET BINARY LOGS AND GTIDS",
)
_MARIADB_10_0 = _Syntax(
    replica_word="SLAVE",
    change_source="CHANGE MASTER TO",
    option_prefix="MASTER",
    public_key_option=None,
    gtid_option="MASTER_USE_GTID=slave_pos",
    binlog_status="SHOW MASTER STATUS",
    reset_binlogs="RESET MASTER",
    pos_wait_function="MASTER_POS_WAIT",
    gtid_wait_sql="SELECT MASTER_GTID_WAIT(%s, %s) AS reached",
    gtid_position_sql="SELECT @@GLOBAL.gtid_binlog_pos AS gtid",
    gtid_enabled_sql=None,
    seed_gtid_sql="SET GLOBAL gtid_slave_pos = %s",
    seed_resets_binlogs=False,
    seed_primary_sql="SET GLOBAL gtid_binlog_state = %s",
    status_fields=replace(_SLAVE_FIELDS, using_gtid="Using_Gtid"),
    skip_replica_start_option="skip-slave-start",
    super_read_only=False,  # read_only refuses every user without READ_ONLY ADMIN / SUPER
    snapshot_position_sql="SHOW SESSION STATUS LIKE 'binlog_snapshot_%'",
    applier_until_gtid=None,
    gtid_applied_sql="SELECT MASTER_GTID_WAIT(%s, 0) = 0 AS reached",
)
_MARIADB_10_3 = replace(_MARIADB_10_0, lock_nowait=" NOWAIT",
                        statement_time_prefix="SET STATEMENT max_statement_time = {s} FOR SELECT")
_MARIADB_11_3 = replace(_MARIADB_10_3, replica_tls_by_default=True)

# (flavor, since, syntax), sorted by flavor then since. A server gets the last row of its flavor
# whose `since` is not after its version; None marks versions resync does not support.
_ROWS: tuple[tuple[Flavor, tuple[int, int, int], _Syntax | None], ...] = (
    ("mysql", (5, 7, 0), _MYSQL_5_7),
    ("mysql", (5, 8, 0), None),  # MySQL 6.x and 7.x never shipped as servers
    ("mysql", (8, 0, 0), _MYSQL_5_7),  # 8.0.0-8.0.3 were milestones without GET_MASTER_PUBLIC_KEY
    ("mysql", (8, 0, 4), _MYSQL_8_0_4),
    ("mysql", (8, 0, 21), _MYSQL_8_0_21),  # TLS state in performance_schema.tls_channel_status
    ("mysql", (8, 0, 22), _MYSQL_8_0_22),
    ("mysql", (8, 0, 23), _MYSQL_8_0_23),
    ("mysql", (8, 0, 26), _MYSQL_8_0_26),
    ("mysql", (8, 2, 0), _MYSQL_8_2_0),  # 8.4.0 removed the old names; 9.x stays on this row
    ("mariadb", (10, 0, 0), _MARIADB_10_0),  # 10.5 added REPLICA aliases; old names still valid
    ("mariadb", (10, 3, 0), _MARIADB_10_3),  # LOCK TABLES ... NOWAIT, max_statement_time
    ("mariadb", (11, 3, 0), _MARIADB_11_3),  # replicas use TLS and verify by default
)
SUPPORTED_RANGE = "MySQL 5.7, MySQL 8.0 or later, MariaDB 10.0 or later"


def _syntax_for(version: ServerVersion) -> _Syntax:
    found: _Syntax | None = None
    for flavor, since, syntax in _ROWS:
        if flavor == version.flavor and since <= version.number:
            found = syntax
    if found is None:
        raise ValueError(f"unsupported server version {version}: resync supports {SUPPORTED_RANGE}")
    return found


def _int_or_placeholder(name: str, value: object, minimum: int = 1) -> object:
    """An int, checked; or a placeholder for a value captured at run time (a plan's Ref).
    Strings are refused: a quoted number (MASTER_PORT='3306') is a syntax error."""
    if isinstance(value, str | bytes | float | int):  # bool is an int: refused by the check
        return _checked_int(name, value, minimum)  # type: ignore[arg-type]
    return value


def _port(port: object) -> object:
    return _int_or_placeholder("port", port)


def _checked_int(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class Dialect:
    """The statements for one server version. Build with `dialect_for(version)`."""

    version: ServerVersion
    syntax: _Syntax = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "syntax", _syntax_for(self.version))

    @property
    def status_fields(self) -> ReplicaStatusFields:
        return self.syntax.status_fields

    def stop_replica(self) -> Statement:
        return Statement(f"STOP {self.syntax.replica_word}")

    def start_replica(self) -> Statement:
        return Statement(f"START {self.syntax.replica_word}")

    def reset_replica_all(self) -> Statement:
        return Statement(f"RESET {self.syntax.replica_word} ALL")

    def replica_status(self) -> Statement:
        return Statement(f"SHOW {self.syntax.replica_word} STATUS")

    def max_dirty_pages_pct(self) -> Statement:
        return Statement("SELECT @@GLOBAL.innodb_max_dirty_pages_pct AS pct")

    def set_max_dirty_pages_pct(self) -> Statement:
        """A float variable (90.000000): the value is cast, as a captured text it would be
        refused as a string."""
        return Statement("SET GLOBAL innodb_max_dirty_pages_pct = CAST(%s AS DECIMAL(12,6))")

    def dirty_pages(self) -> Statement:
        """One row: Variable_name, Value (the same status variable in both flavors)."""
        return Statement("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")

    def flush_engine_logs(self) -> Statement:
        """InnoDB's redo log written to disk, the commit records included: with the binary log
        on, a commit makes only the binlog durable, so a crash-consistent copy taken under the
        read lock would otherwise hold transactions InnoDB knows only as prepared, which the
        copied server cannot resolve without the donor's binary logs (it refuses to start).
        The same words in both flavors; NO_WRITE_TO_BINLOG: nothing for replicas to repeat."""
        return Statement("FLUSH NO_WRITE_TO_BINLOG ENGINE LOGS")

    def binlog_status(self) -> Statement:
        """One row (none if binary logging is off) with columns File and Position."""
        return Statement(self.syntax.binlog_status)

    def binlog_retention(self) -> Statement:
        """One row, column `seconds`: how long binary logs are kept before they are purged (0:
        never). MySQL 8.0+ and MariaDB 10.6+: binlog_expire_logs_seconds (MariaDB keeps
        expire_logs_days in step with it); before: expire_logs_days."""
        v = self.version
        if v.number >= ((8, 0, 1) if v.flavor == "mysql" else (10, 6, 1)):
            return Statement("SELECT @@GLOBAL.binlog_expire_logs_seconds AS seconds")
        return Statement("SELECT @@GLOBAL.expire_logs_days * 86400 AS seconds")

    def reset_binlogs(self) -> Statement:
        return Statement(self.syntax.reset_binlogs)

    @property
    def seed_resets_binlogs(self) -> bool:
        """Setting the executed GTID set erases the binary logs first (MySQL)."""
        return self.syntax.seed_resets_binlogs

    def read_only_options(self) -> tuple[str, ...]:
        """Option-file lines for a start that must not accept writes nor start replication."""
        return ("read_only=ON", *(("super_read_only=ON",) if self.syntax.super_read_only else ()),
                self.syntax.skip_replica_start_option)

    def set_read_only(self, on: bool) -> tuple[Statement, ...]:
        """In the order that works: super_read_only implies read_only (and is cleared first)."""
        value = "ON" if on else "OFF"
        if not self.syntax.super_read_only:
            return (Statement(f"SET GLOBAL read_only = {value}"),)
        if on:
            return (Statement("SET GLOBAL read_only = ON"), Statement("SET GLOBAL super_read_only = ON"))
        return (Statement("SET GLOBAL super_read_only = OFF"), Statement("SET GLOBAL read_only = OFF"))

    def gtid_position(self) -> Statement:
        return Statement(self.syntax.gtid_position_sql)

    def gtid_enabled_query(self) -> Statement | None:
        """MySQL: a row whose value is "ON" when GTIDs are on. MariaDB: None, always on."""
        sql = self.syntax.gtid_enabled_sql
        return None if sql is None else Statement(sql)

    def tls_offered(self) -> Statement:
        """One row, column `tls`: YES when the server accepts TLS connections (MariaDB and MySQL
        before 8.0.21: have_ssl, else DISABLED or NO; later MySQL: its main TLS channel)."""
        return Statement(self.syntax.tls_offered_sql)

    def rsa_key_exchange_option(self, tls: ReplicationTLS) -> str | None:
        """The option that makes the replica take the source's RSA public key unauthenticated
        (MySQL 8), when `tls` asks for it and it is emitted: for the plan's warning."""
        if tls.enabled or not tls.rsa_key_exchange:
            return None
        return self.syntax.public_key_option

    def _tls_options(self, tls: ReplicationTLS) -> tuple[list[str], list[object]]:
        p, by_default = self.syntax.option_prefix, self.syntax.replica_tls_by_default
        if not tls.enabled:
            off = [f"{p}_SSL=0", f"{p}_SSL_VERIFY_SERVER_CERT=0"] if by_default else []
            rsa = self.rsa_key_exchange_option(tls)
            return off + ([rsa] if rsa else []), []
        options = [f"{p}_SSL=1"]
        params: list[object] = []
        for name, path in (("CA", tls.ca), ("CERT", tls.cert), ("KEY", tls.key)):
            if path:
                options.append(f"{p}_SSL_{name}=%s")
                params.append(path)
        if tls.ca:  # the certificate, and that it names the host replicated from
            options.append(f"{p}_SSL_VERIFY_SERVER_CERT=1")
        elif by_default:  # no CA to verify with: encrypted, unverified (the plan says so)
            options.append(f"{p}_SSL_VERIFY_SERVER_CERT=0")
        return options, params

    def _change_source(
        self, params: tuple[object, ...], more: tuple[str, ...], tls: ReplicationTLS
    ) -> Statement:
        p = self.syntax.option_prefix
        tls_options, tls_params = self._tls_options(tls)
        options = [f"{p}_HOST=%s", f"{p}_PORT=%s", f"{p}_USER=%s", f"{p}_PASSWORD=%s", *more,
                   *tls_options]
        return Statement(f"{self.syntax.change_source} {', '.join(options)}",
                         (*params, *tls_params))

    def change_source_file_pos(
        self,
        host: object,
        port: object,
        user: str,
        password: object,
        log_file: object,
        log_pos: object,
        tls: ReplicationTLS = PLAINTEXT,
    ) -> Statement:
        """Point the (stopped, reset) replica at host:port from a binlog file and position.

        log_file/log_pos may be placeholders for values captured at run time (a plan's Ref).
        """
        pos = _int_or_placeholder("log_pos", log_pos, minimum=0)
        params = (host, _port(port), user, password, log_file, pos)
        p = self.syntax.option_prefix
        return self._change_source(params, (f"{p}_LOG_FILE=%s", f"{p}_LOG_POS=%s"), tls)

    def change_source_gtid(
        self, host: object, port: object, user: str, password: object,
        tls: ReplicationTLS = PLAINTEXT,
    ) -> Statement:
        """Point the (stopped, reset, seeded) replica at host:port, positioned by GTID."""
        params = (host, _port(port), user, password)
        return self._change_source(params, (self.syntax.gtid_option,), tls)

    def seed_gtid(self, gtid_set: object) -> tuple[Statement, ...]:
        """Run on the replica, after a physical copy and before `change_source_gtid`.

        MySQL resets its binary logs and GTID history first (RESET MASTER or its 8.2+ name):
        gtid_purged can only be set while gtid_executed is empty.
        """
        seed = Statement(self.syntax.seed_gtid_sql, (gtid_set,))
        return (self.reset_binlogs(), seed) if self.syntax.seed_resets_binlogs else (seed,)

    def seed_primary_gtid(self, gtid_set: object) -> Statement:
        """Run on a new primary right after `reset_binlogs`: carry on the GTID history of the data
        it was copied from, so that its next transactions follow what the replica has logged
        (MariaDB gtid_strict_mode) and the replica has no GTIDs the primary lacks (MySQL)."""
        return Statement(self.syntax.seed_primary_sql, (gtid_set,))

    def wait_for_file_pos(self, log_file: object, log_pos: object, timeout: int) -> Statement:
        """One row: events waited for (>= 0), -1 on timeout, NULL if not replicating."""
        sql = f"SELECT {self.syntax.pos_wait_function}(%s, %s, %s) AS reached"
        pos = _int_or_placeholder("log_pos", log_pos, minimum=0)
        return Statement(sql, (log_file, pos, _checked_int("timeout", timeout)))

    def wait_for_gtid(self, gtid_set: object, timeout: int) -> Statement:
        """One row: 0 once the GTID set is applied here, -1 on timeout (both flavors)."""
        return Statement(self.syntax.gtid_wait_sql, (gtid_set, _checked_int("timeout", timeout)))

    # -- verify: a consistent snapshot at a known position; the replica's applier paused there --
    def snapshot_position(self) -> Statement | None:
        """MariaDB: rows Binlog_snapshot_file / Binlog_snapshot_position (Variable_name, Value),
        the binlog position of this session's START TRANSACTION WITH CONSISTENT SNAPSHOT, read
        without a lock. MySQL: None (no such status: the position is read under a FLUSH TABLES
        WITH READ LOCK held for milliseconds around the snapshot's start)."""
        sql = self.syntax.snapshot_position_sql
        return None if sql is None else Statement(sql)

    def stop_applier(self) -> Statement:
        """The SQL (applier) thread only: the IO thread keeps receiving (a semi-sync primary
        does not wait for this replica's acknowledgements)."""
        return Statement(f"STOP {self.syntax.replica_word} SQL_THREAD")

    def start_applier(self) -> Statement:
        return Statement(f"START {self.syntax.replica_word} SQL_THREAD")

    @property
    def applier_until_gtid(self) -> bool:
        """Whether the applier can be stopped at a GTID set (MySQL SQL_AFTER_GTIDS) while the IO
        thread runs; MariaDB stops it at a binlog file and position instead."""
        return self.syntax.applier_until_gtid is not None

    def start_applier_until_file_pos(self, log_file: object, log_pos: object) -> Statement:
        """The applier runs until it has executed the source's binlog up to this position."""
        p = self.syntax.option_prefix
        pos = _int_or_placeholder("log_pos", log_pos, minimum=0)
        return Statement(f"START {self.syntax.replica_word} SQL_THREAD UNTIL {p}_LOG_FILE = %s, "
                         f"{p}_LOG_POS = %s", (log_file, pos))

    def start_applier_until_gtid(self, gtid_set: object) -> Statement:
        until = self.syntax.applier_until_gtid
        if until is None:
            raise ValueError(f"{self.version}: the applier stops at a file and position "
                             "(start_applier_until_file_pos)")
        return Statement(f"START {self.syntax.replica_word} SQL_THREAD UNTIL {until} = %s",
                         (gtid_set,))

    def gtid_applied(self, gtid_set: object) -> Statement:
        """One row: reached = 1 when every GTID of the set has been applied here (no wait)."""
        return Statement(self.syntax.gtid_applied_sql, (gtid_set,))

    def lock_table_read(self, table: str) -> Statement:
        """LOCK TABLES for one (already quoted) table; MariaDB 10.3+ fails at once if a writer
        holds it (NOWAIT) instead of queueing ahead of the writers that come next."""
        return Statement(f"LOCK TABLES {table} READ{self.syntax.lock_nowait}")

    def time_limited(self, select: str, seconds: float) -> str:
        """A SELECT that the server interrupts after `seconds` (MariaDB error 1969, MySQL
        3024); a server without such a cap runs it unbounded."""
        if not select.startswith("SELECT "):
            raise ValueError(f"only a SELECT can be time-limited: {select[:40]}")
        prefix = self.syntax.statement_time_prefix.format(ms=max(1, round(seconds * 1000)),
                                                          s=f"{seconds:g}")
        return prefix + select[len("SELECT"):]

    # -- hot copy (mariabackup / xtrabackup): the server's side ------------------------------------
    def backup_lock(self) -> Statement:
        """What the backup tool itself takes to block commits while it reads the binary log
        position: shown in plans (the tool runs it; resync times it from the tool's log).
        MariaDB 10.4+: BACKUP STAGE (BLOCK_COMMIT blocks commits; FLUSH..END writes to
        non-transactional tables); MySQL 8.0+: LOCK INSTANCE FOR BACKUP (DDL only; commits wait
        only while performance_schema.log_status is read); older: FLUSH TABLES WITH READ LOCK."""
        v = self.version
        if v.flavor == "mariadb":
            return Statement("BACKUP STAGE BLOCK_COMMIT" if v.number >= (10, 4, 0)
                             else "FLUSH TABLES WITH READ LOCK")
        return Statement("LOCK INSTANCE FOR BACKUP" if v.number >= (8, 0, 0)
                         else "FLUSH TABLES WITH READ LOCK")

    def backup_privileges(self) -> tuple[str, ...]:
        """The global privileges the backup tool's account needs on this server."""
        v = self.version
        if v.flavor == "mariadb":  # BINLOG MONITOR: 10.5's name of REPLICATION CLIENT
            return ("RELOAD", "PROCESS", "LOCK TABLES",
                    "BINLOG MONITOR" if v.number >= (10, 5, 0) else "REPLICATION CLIENT")
        return ("RELOAD", "PROCESS", "LOCK TABLES", "REPLICATION CLIENT",
                *(("BACKUP_ADMIN",) if v.number >= (8, 0, 0) else ()))

    def create_backup_account(self, user: str, host: str,
                              password_hash: object) -> tuple[Statement, ...]:
        """A one-time account for the backup tool, identified by a mysql_native_password hash
        ('*' and 40 hex digits, SHA1(SHA1(password))): the password itself stays on the host the
        tool runs on. An earlier attempt's account of the same name is replaced."""
        account = (user, host)
        grant = Statement(f"GRANT {', '.join(self.backup_privileges())} ON *.* TO %s@%s", account)
        if self.version.flavor == "mariadb":
            create = Statement("CREATE USER %s@%s IDENTIFIED BY PASSWORD %s",
                               (*account, password_hash))
            return (self.drop_backup_account(user, host), create, grant)
        create = Statement("CREATE USER %s@%s IDENTIFIED WITH mysql_native_password AS %s",
                           (*account, password_hash))
        # XtraBackup 8 reads the LSN and the binlog position from this table
        log_status = ((Statement("GRANT SELECT ON performance_schema.log_status TO %s@%s",
                                 account),) if self.version.number >= (8, 0, 0) else ())
        return (self.drop_backup_account(user, host), create, grant, *log_status)

    def drop_backup_account(self, user: str, host: str) -> Statement:
        return Statement("DROP USER IF EXISTS %s@%s", (user, host))

    def binlog_events_at(self, log_file: object, log_pos: object) -> Statement:
        """The event at a binary log coordinate: an error unless this server still has that
        file and the position is an event boundary (a replica can start there)."""
        pos = _int_or_placeholder("log_pos", log_pos, minimum=0)
        return Statement("SHOW BINLOG EVENTS IN %s FROM %s LIMIT 1", (log_file, pos))

    def gtid_at_binlog_position(self, log_file: object, log_pos: object) -> Statement | None:
        """MariaDB: one row, column `gtid`, the GTID position the binary log has at (log_file,
        log_pos) (a backup's GTID must be exactly that). MySQL has no such function: None."""
        if self.version.flavor != "mariadb":
            return None
        pos = _int_or_placeholder("log_pos", log_pos, minimum=0)
        return Statement("SELECT BINLOG_GTID_POS(%s, %s) AS gtid", (log_file, pos))

    def gtid_contained(self, gtid_set: object) -> Statement:
        """MySQL: one row, column `contained`, 1 when this server executed every GTID of the set
        (MariaDB compares positions with gtid_at_binlog_position)."""
        return Statement("SELECT GTID_SUBSET(%s, @@GLOBAL.gtid_executed) AS contained", (gtid_set,))


def dialect_for(version: ServerVersion) -> Dialect:
    """The dialect for `version`; ValueError if resync does not support that version."""
    return Dialect(version)


DEFAULT_VERSION = ServerVersion("mariadb", 10, 11)
