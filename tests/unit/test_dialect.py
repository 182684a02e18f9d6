"""Pins every cell of the dialect table: each statement, for each representative version."""

from __future__ import annotations

import dataclasses

import pytest

from resync.actions.dialect import (
    DEFAULT_VERSION,
    PLAINTEXT,
    Dialect,
    ReplicaStatusFields,
    ReplicationTLS,
    ServerVersion,
    Statement,
    dialect_for,
)
from resync.model.secrets import MASK, Secret

M57 = "mysql-5.7.44"
M8021 = "mysql-8.0.21"
M8022 = "mysql-8.0.22"
M8023 = "mysql-8.0.23"
M8026 = "mysql-8.0.26"
M82 = "mysql-8.2.0"
M84 = "mysql-8.4.3"
M91 = "mysql-9.1.0"
MD106 = "mariadb-10.6.20"
MD1011 = "mariadb-10.11.19"
MD114 = "mariadb-11.4.4"
ALL = (M57, M8021, M8022, M8023, M8026, M82, M84, M91, MD106, MD1011, MD114)
MYSQL = ALL[:8]
MARIADB = ALL[8:]

PASSWORD = Secret("s3cr3t-pw", source="$REPL_PASSWORD")


def dialect(version: str) -> Dialect:
    return dialect_for(ServerVersion.parse(version))


def table(*rows: tuple[tuple[str, ...], object]) -> list[tuple[str, object]]:
    """Expand (versions, expected) rows into one (version, expected) case per version."""
    cases = [(version, expected) for versions, expected in rows for version in versions]
    assert sorted(v for v, _ in cases) == sorted(ALL), "every version needs exactly one row"
    return cases


# --- simple statements ------------------------------------------------------------------------

SLAVE_WORD = (M57, M8021, *MARIADB)
REPLICA_WORD = (M8022, M8023, M8026, M82, M84, M91)
OLD_BINLOG = (M57, M8021, M8022, M8023, M8026, *MARIADB)
NEW_BINLOG = (M82, M84, M91)

SIMPLE_CASES = {
    "stop_replica": table((SLAVE_WORD, "STOP SLAVE"), (REPLICA_WORD, "STOP REPLICA")),
    "start_replica": table((SLAVE_WORD, "START SLAVE"), (REPLICA_WORD, "START REPLICA")),
    "reset_replica_all": table(
        (SLAVE_WORD, "RESET SLAVE ALL"), (REPLICA_WORD, "RESET REPLICA ALL")
    ),
    "replica_status": table(
        (SLAVE_WORD, "SHOW SLAVE STATUS"), (REPLICA_WORD, "SHOW REPLICA STATUS")
    ),
    "binlog_status": table(
        (OLD_BINLOG, "SHOW MASTER STATUS"), (NEW_BINLOG, "SHOW BINARY LOG STATUS")
    ),
    "reset_binlogs": table(
        (OLD_BINLOG, "RESET MASTER"), (NEW_BINLOG, "RESET BINARY LOGS AND GTIDS")
    ),
    "gtid_position": table(
        (MYSQL, "SELECT @@GLOBAL.gtid_executed AS gtid"),
        (MARIADB, "SELECT @@GLOBAL.gtid_binlog_pos AS gtid"),
    ),
}


@pytest.mark.parametrize(
    ("method", "version", "sql"),
    [(method, v, sql) for method, cases in SIMPLE_CASES.items() for v, sql in cases],
)
def test_simple_statement(method: str, version: str, sql: str) -> None:
    assert getattr(dialect(version), method)() == Statement(sql)


@pytest.mark.parametrize(
    ("version", "expected"),
    table((MYSQL, Statement("SELECT @@GLOBAL.gtid_mode AS gtid_mode")), (MARIADB, None)),
)
def test_gtid_enabled_query(version: str, expected: Statement | None) -> None:
    assert dialect(version).gtid_enabled_query() == expected


# --- replica status columns -------------------------------------------------------------------

SLAVE_FIELDS = ReplicaStatusFields(
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
REPLICA_FIELDS = ReplicaStatusFields(
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
MARIADB_FIELDS = dataclasses.replace(SLAVE_FIELDS, using_gtid="Using_Gtid")


@pytest.mark.parametrize(
    ("version", "fields"),
    table(((M57, M8021), SLAVE_FIELDS), (REPLICA_WORD, REPLICA_FIELDS), (MARIADB, MARIADB_FIELDS)),
)
def test_status_fields(version: str, fields: ReplicaStatusFields) -> None:
    assert dialect(version).status_fields == fields


# --- CHANGE MASTER TO / CHANGE REPLICATION SOURCE TO ------------------------------------------

MASTER_BASE = "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, MASTER_PASSWORD=%s"
SOURCE_BASE = (
    "CHANGE REPLICATION SOURCE TO "
    "SOURCE_HOST=%s, SOURCE_PORT=%s, SOURCE_USER=%s, SOURCE_PASSWORD=%s"
)
OLD_CHANGE = (M8021, M8022)  # CHANGE MASTER TO, GET_MASTER_PUBLIC_KEY available
NEW_CHANGE = (M8023, M8026, M82, M84, M91)
MARIADB_OLD = (MD106, MD1011)
MARIADB_TLS_DEFAULT = (MD114,)  # 11.3+: a replica uses TLS and verifies unless told otherwise

CA, CERT, KEY = "/etc/mysql/tls/ca.pem", "/etc/mysql/tls/replica.pem", "/etc/mysql/tls/replica-key.pem"
VERIFIED = ReplicationTLS(True, CA, CERT, KEY)
UNVERIFIED = ReplicationTLS(True)
RSA = ReplicationTLS(False, rsa_key_exchange=True)

FILE_POS = ", MASTER_LOG_FILE=%s, MASTER_LOG_POS=%s"
SOURCE_FILE_POS = ", SOURCE_LOG_FILE=%s, SOURCE_LOG_POS=%s"
MASTER_VERIFIED = (", MASTER_SSL=1, MASTER_SSL_CA=%s, MASTER_SSL_CERT=%s, MASTER_SSL_KEY=%s, "
                   "MASTER_SSL_VERIFY_SERVER_CERT=1")
SOURCE_VERIFIED = (", SOURCE_SSL=1, SOURCE_SSL_CA=%s, SOURCE_SSL_CERT=%s, SOURCE_SSL_KEY=%s, "
                   "SOURCE_SSL_VERIFY_SERVER_CERT=1")
MASTER_OFF_11_3 = ", MASTER_SSL=0, MASTER_SSL_VERIFY_SERVER_CERT=0"

# plaintext: no TLS option, and no GET_*_PUBLIC_KEY unless allow_rsa_key_exchange asks for it
FILE_POS_CASES = table(
    ((M57, *OLD_CHANGE, *MARIADB_OLD), MASTER_BASE + FILE_POS),
    (NEW_CHANGE, SOURCE_BASE + SOURCE_FILE_POS),
    (MARIADB_TLS_DEFAULT, MASTER_BASE + FILE_POS + MASTER_OFF_11_3),
)
FILE_POS_VERIFIED_CASES = table(
    ((M57, *OLD_CHANGE, *MARIADB_OLD, *MARIADB_TLS_DEFAULT),
     MASTER_BASE + FILE_POS + MASTER_VERIFIED),
    (NEW_CHANGE, SOURCE_BASE + SOURCE_FILE_POS + SOURCE_VERIFIED),
)
GTID_CASES = table(
    ((M57, *OLD_CHANGE), MASTER_BASE + ", MASTER_AUTO_POSITION=1"),
    (NEW_CHANGE, SOURCE_BASE + ", SOURCE_AUTO_POSITION=1"),
    (MARIADB_OLD, MASTER_BASE + ", MASTER_USE_GTID=slave_pos"),
    (MARIADB_TLS_DEFAULT, MASTER_BASE + ", MASTER_USE_GTID=slave_pos" + MASTER_OFF_11_3),
)
GTID_UNVERIFIED_CASES = table(
    ((M57, *OLD_CHANGE), MASTER_BASE + ", MASTER_AUTO_POSITION=1, MASTER_SSL=1"),
    (NEW_CHANGE, SOURCE_BASE + ", SOURCE_AUTO_POSITION=1, SOURCE_SSL=1"),
    (MARIADB_OLD, MASTER_BASE + ", MASTER_USE_GTID=slave_pos, MASTER_SSL=1"),
    # no CA to verify with: said explicitly where the server would verify by default
    (MARIADB_TLS_DEFAULT, MASTER_BASE + ", MASTER_USE_GTID=slave_pos, MASTER_SSL=1, "
                          "MASTER_SSL_VERIFY_SERVER_CERT=0"),
)
GTID_RSA_CASES = table(
    ((M57,), MASTER_BASE + ", MASTER_AUTO_POSITION=1"),  # 5.7 has no such option
    (OLD_CHANGE, MASTER_BASE + ", MASTER_AUTO_POSITION=1, GET_MASTER_PUBLIC_KEY=1"),
    (NEW_CHANGE, SOURCE_BASE + ", SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1"),
    (MARIADB_OLD, MASTER_BASE + ", MASTER_USE_GTID=slave_pos"),
    (MARIADB_TLS_DEFAULT, MASTER_BASE + ", MASTER_USE_GTID=slave_pos" + MASTER_OFF_11_3),
)


@pytest.mark.parametrize(("version", "sql"), FILE_POS_CASES)
def test_change_source_file_pos(version: str, sql: str) -> None:
    stmt = dialect(version).change_source_file_pos(
        "db-a.example", 3306, "repl", PASSWORD, "binlog.000042", 1234
    )
    assert stmt == Statement(sql, ("db-a.example", 3306, "repl", PASSWORD, "binlog.000042", 1234))


@pytest.mark.parametrize(("version", "sql"), FILE_POS_VERIFIED_CASES)
def test_change_source_file_pos_tls_verified(version: str, sql: str) -> None:
    stmt = dialect(version).change_source_file_pos(
        "db-a.example", 3307, "repl", PASSWORD, "binlog.000042", 4, tls=VERIFIED
    )
    # the paths are parameters too, after the coordinates, in the order of their options
    assert stmt == Statement(sql, ("db-a.example", 3307, "repl", PASSWORD, "binlog.000042", 4,
                                   CA, CERT, KEY))


@pytest.mark.parametrize(("version", "sql"), GTID_CASES)
def test_change_source_gtid(version: str, sql: str) -> None:
    stmt = dialect(version).change_source_gtid("db-a.example", 3306, "repl", PASSWORD)
    assert stmt == Statement(sql, ("db-a.example", 3306, "repl", PASSWORD))


@pytest.mark.parametrize(("version", "sql"), GTID_UNVERIFIED_CASES)
def test_change_source_gtid_tls_without_ca(version: str, sql: str) -> None:
    stmt = dialect(version).change_source_gtid("db-a.example", 3306, "repl", PASSWORD,
                                               tls=UNVERIFIED)
    assert stmt == Statement(sql, ("db-a.example", 3306, "repl", PASSWORD))


@pytest.mark.parametrize(("version", "sql"), GTID_RSA_CASES)
def test_change_source_gtid_rsa_key_exchange_only_when_asked_and_tls_off(version: str,
                                                                          sql: str) -> None:
    d = dialect(version)
    assert d.change_source_gtid("h", 3306, "u", PASSWORD, tls=RSA).sql == sql.replace(
        "db-a.example", "h")
    option = d.rsa_key_exchange_option(RSA)
    assert (option is not None) == ("PUBLIC_KEY" in sql)
    assert option is None or sql.endswith(option)
    # with TLS on, the flag changes nothing: the key comes over the verified channel
    with_tls = d.change_source_gtid("h", 3306, "u", PASSWORD,
                                    tls=ReplicationTLS(True, CA, rsa_key_exchange=True))
    assert "PUBLIC_KEY" not in with_tls.sql and "VERIFY_SERVER_CERT=1" in with_tls.sql
    assert d.rsa_key_exchange_option(ReplicationTLS(True, rsa_key_exchange=True)) is None
    assert d.rsa_key_exchange_option(PLAINTEXT) is None


@pytest.mark.parametrize("version", ALL)
def test_verify_server_cert_exactly_when_a_ca_is_given(version: str) -> None:
    d = dialect(version)
    for tls, verify in ((VERIFIED, "=1"), (ReplicationTLS(True, CA), "=1"), (UNVERIFIED, "=0"),
                        (ReplicationTLS(True, cert=CERT, key=KEY), "=0")):
        sql = d.change_source_gtid("h", 3306, "u", PASSWORD, tls=tls).sql
        if verify == "=1" or (d.version.flavor == "mariadb" and d.version.number >= (11, 3, 0)):
            assert f"_SSL_VERIFY_SERVER_CERT{verify}" in sql, (version, tls, sql)
        else:
            assert "VERIFY_SERVER_CERT" not in sql, (version, tls, sql)


@pytest.mark.parametrize(
    ("version", "sql"),
    [("mysql-5.7.44", "SELECT @@GLOBAL.have_ssl AS tls"),
     ("mysql-8.0.20", "SELECT @@GLOBAL.have_ssl AS tls"),
     ("mariadb-10.11.19", "SELECT @@GLOBAL.have_ssl AS tls"),
     ("mariadb-11.4.4", "SELECT @@GLOBAL.have_ssl AS tls")],
)
def test_tls_offered_reads_have_ssl(version: str, sql: str) -> None:
    assert dialect(version).tls_offered() == Statement(sql)


@pytest.mark.parametrize("version", ("mysql-8.0.21", M8026, M84, M91))
def test_tls_offered_reads_the_main_tls_channel_where_have_ssl_is_deprecated_or_gone(
        version: str) -> None:
    sql = dialect(version).tls_offered().sql
    assert "performance_schema.tls_channel_status" in sql and "have_ssl" not in sql
    assert "CHANNEL = 'mysql_main'" in sql and "PROPERTY = 'Enabled'" in sql
    assert sql.endswith(" AS tls") and "'unknown'" in sql  # a row even with performance_schema off


def test_mariadb_11_3_is_the_first_row_with_replica_tls_by_default() -> None:
    assert dialect("mariadb-11.2.6").change_source_gtid("h", 1, "u", PASSWORD).sql.endswith(
        "MASTER_USE_GTID=slave_pos")
    assert dialect("mariadb-11.3.0").change_source_gtid("h", 1, "u", PASSWORD).sql.endswith(
        MASTER_OFF_11_3)


@pytest.mark.parametrize("version", ALL)
def test_password_is_a_parameter_never_sql(version: str) -> None:
    d = dialect(version)
    for stmt in (
        d.change_source_file_pos("h", 3306, "u", PASSWORD, "binlog.000001", 4, tls=VERIFIED),
        d.change_source_gtid("h", 3306, "u", PASSWORD, tls=VERIFIED),
    ):
        assert any(p is PASSWORD for p in stmt.params)
        assert PASSWORD.reveal() not in stmt.sql
        assert MASK not in stmt.sql
        assert stmt.sql.count("%s") == len(stmt.params)
        assert "'" not in stmt.sql  # no value is quoted into the SQL text
        assert MASK in stmt.preview()
        assert PASSWORD.reveal() not in stmt.preview()


# --- GTID seeding and waits -------------------------------------------------------------------

GTID_SET = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-57"


@pytest.mark.parametrize(
    ("version", "expected"),
    table(
        (OLD_BINLOG[:5], (Statement("RESET MASTER"), Statement("SET GLOBAL gtid_purged = %s"))),
        (
            NEW_BINLOG,
            (
                Statement("RESET BINARY LOGS AND GTIDS"),
                Statement("SET GLOBAL gtid_purged = %s"),
            ),
        ),
        (MARIADB, (Statement("SET GLOBAL gtid_slave_pos = %s"),)),
    ),
)
def test_seed_gtid(version: str, expected: tuple[Statement, ...]) -> None:
    with_params = tuple(
        dataclasses.replace(s, params=(GTID_SET,)) if "%s" in s.sql else s for s in expected
    )
    assert dialect(version).seed_gtid(GTID_SET) == with_params


@pytest.mark.parametrize(
    ("version", "sql"),
    table(
        ((M57, M8021, M8022, M8023, *MARIADB), "SELECT MASTER_POS_WAIT(%s, %s, %s) AS reached"),
        ((M8026, M82, M84, M91), "SELECT SOURCE_POS_WAIT(%s, %s, %s) AS reached"),
    ),
)
def test_wait_for_file_pos(version: str, sql: str) -> None:
    stmt = dialect(version).wait_for_file_pos("binlog.000042", 1234, 300)
    assert stmt == Statement(sql, ("binlog.000042", 1234, 300))


def test_wait_for_file_pos_accepts_placeholders() -> None:
    from resync.actions.types import Ref
    from resync.model.keys import Key

    file, pos = Ref(Key("verify.file")), Ref(Key("verify.pos"))
    stmt = dialect(M84).wait_for_file_pos(file, pos, 300)
    assert stmt == Statement("SELECT SOURCE_POS_WAIT(%s, %s, %s) AS reached", (file, pos, 300))


@pytest.mark.parametrize(
    ("version", "sql"),
    table(
        (MYSQL, "SELECT -WAIT_FOR_EXECUTED_GTID_SET(%s, %s) AS reached"),
        (MARIADB, "SELECT MASTER_GTID_WAIT(%s, %s) AS reached"),
    ),
)
def test_wait_for_gtid(version: str, sql: str) -> None:
    assert dialect(version).wait_for_gtid(GTID_SET, 300) == Statement(sql, (GTID_SET, 300))


@pytest.mark.parametrize("timeout", [0, -1, True])
def test_waits_reject_timeouts_that_mean_forever(timeout: int) -> None:
    d = dialect(MD1011)
    with pytest.raises(ValueError, match="timeout"):
        d.wait_for_file_pos("binlog.000001", 4, timeout)
    with pytest.raises(ValueError, match="timeout"):
        d.wait_for_gtid(GTID_SET, timeout)


def test_ints_are_checked() -> None:
    d = dialect(M84)
    with pytest.raises(ValueError, match="port"):
        d.change_source_gtid("h", "3306", "u", PASSWORD)
    with pytest.raises(ValueError, match="log_pos"):
        d.change_source_file_pos("h", 3306, "u", PASSWORD, "binlog.000001", -4)
    with pytest.raises(ValueError, match="log_pos"):
        d.wait_for_file_pos("binlog.000001", -1, 10)


# --- row boundaries ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "method", "expected_fragment"),
    [
        ("mysql-8.0.0", "change_source_gtid", "MASTER_AUTO_POSITION=1"),
        ("mysql-8.0.3", "change_source_gtid", "MASTER_AUTO_POSITION=1"),
        ("mysql-8.0.4", "change_source_gtid_rsa", "MASTER_AUTO_POSITION=1, GET_MASTER_PUBLIC_KEY=1"),
        ("mysql-8.0.20", "tls_offered", "have_ssl"),
        ("mysql-8.0.21", "tls_offered", "tls_channel_status"),
        ("mariadb-11.2.9", "change_source_gtid", "slave_pos"),
        ("mariadb-11.3.0", "change_source_gtid", "MASTER_SSL=0"),
        ("mysql-8.0.21", "stop_replica", "STOP SLAVE"),
        ("mysql-8.0.22", "stop_replica", "STOP REPLICA"),
        ("mysql-8.0.22", "change_source_gtid", "CHANGE MASTER TO"),
        ("mysql-8.0.23", "change_source_gtid", "CHANGE REPLICATION SOURCE TO"),
        ("mysql-8.0.25", "wait_for_file_pos", "MASTER_POS_WAIT"),
        ("mysql-8.0.26", "wait_for_file_pos", "SOURCE_POS_WAIT"),
        ("mysql-8.1.0", "binlog_status", "SHOW MASTER STATUS"),
        ("mysql-8.2.0", "binlog_status", "SHOW BINARY LOG STATUS"),
        ("mariadb-10.0.38", "change_source_gtid", "MASTER_USE_GTID=slave_pos"),
        ("mariadb-12.0.2", "stop_replica", "STOP SLAVE"),
    ],
)
def test_row_boundaries(version: str, method: str, expected_fragment: str) -> None:
    d = dialect(version)
    calls = {
        "change_source_gtid": lambda: d.change_source_gtid("h", 3306, "u", PASSWORD),
        "change_source_gtid_rsa": lambda: d.change_source_gtid("h", 3306, "u", PASSWORD, tls=RSA),
        "wait_for_file_pos": lambda: d.wait_for_file_pos("binlog.000001", 4, 10),
    }
    stmt = calls[method]() if method in calls else getattr(d, method)()
    assert expected_fragment in stmt.sql


def test_mysql_8_4_and_later_use_only_new_names() -> None:
    old_words = ("MASTER", "SLAVE")
    for version in (M84, M91, "mysql-9.5.0"):
        d = dialect(version)
        statements = [
            d.stop_replica(),
            d.start_replica(),
            d.reset_replica_all(),
            d.replica_status(),
            d.binlog_status(),
            d.reset_binlogs(),
            d.change_source_file_pos("h", 3306, "u", PASSWORD, "binlog.000001", 4, tls=VERIFIED),
            d.change_source_gtid("h", 3306, "u", PASSWORD, tls=RSA),
            *d.seed_gtid(GTID_SET),
            d.wait_for_file_pos("binlog.000001", 4, 10),
            d.wait_for_gtid(GTID_SET, 10),
        ]
        for stmt in statements:
            assert not any(word in stmt.sql for word in old_words), (version, stmt.sql)
        assert not any(
            word in f for f in dataclasses.astuple(d.status_fields) for word in old_words
        )


@pytest.mark.parametrize(
    "version",
    [
        ServerVersion("mysql", 5, 6, 51),
        ServerVersion("mysql", 5, 5, 62),
        ServerVersion("mysql", 6, 0, 11),
        ServerVersion("mysql", 7, 6, 0),
        ServerVersion("mariadb", 5, 5, 68),
        ServerVersion("mariadb", 5, 5, 0),
    ],
)
def test_unsupported_versions(version: ServerVersion) -> None:
    with pytest.raises(ValueError, match=r"unsupported server version .*MySQL 5\.7.*MariaDB 10\.0"):
        dialect_for(version)
    with pytest.raises(ValueError, match="unsupported"):
        Dialect(version)


def test_lowest_supported_versions() -> None:
    assert dialect_for(ServerVersion("mysql", 5, 7, 0)).stop_replica().sql == "STOP SLAVE"
    assert dialect_for(ServerVersion("mariadb", 10, 0)).stop_replica().sql == "STOP SLAVE"


def test_default_version() -> None:
    assert ServerVersion("mariadb", 10, 11) == DEFAULT_VERSION
    assert dialect_for(DEFAULT_VERSION).change_source_gtid("h", 3306, "u", PASSWORD).sql == (
        MASTER_BASE + ", MASTER_USE_GTID=slave_pos"
    )


def test_dialect_is_frozen_and_compares_by_version() -> None:
    d = dialect(M8026)
    assert d == Dialect(ServerVersion("mysql", 8, 0, 26))
    assert d.version == ServerVersion("mysql", 8, 0, 26)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.version = DEFAULT_VERSION  # type: ignore[misc]


# --- ServerVersion ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mariadb-10.11", ServerVersion("mariadb", 10, 11, 0)),
        ("mysql-8.0.22", ServerVersion("mysql", 8, 0, 22)),
        ("mysql-8.4.3", ServerVersion("mysql", 8, 4, 3)),
        ("mariadb-11.4.2", ServerVersion("mariadb", 11, 4, 2)),
        ("mysql-5.7", ServerVersion("mysql", 5, 7, 0)),
        ("MariaDB-10.6.20", ServerVersion("mariadb", 10, 6, 20)),
        ("  mysql-9.1.0 ", ServerVersion("mysql", 9, 1, 0)),
        ("mysql:8.0.36", ServerVersion("mysql", 8, 0, 36)),
    ],
)
def test_parse(text: str, expected: ServerVersion) -> None:
    assert ServerVersion.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "mariadb",
        "mariadb-",
        "10.11",
        "mariadb-10",
        "mariadb 10.11",
        "mariadb10.11",
        "postgres-16.1",
        "percona-8.0.35",
        "mysql-8.0.x",
        "mysql-8.0.22.1",
        "mysql-8.0.22-log",
        "mysql--8.0",
        "mysql-v8.0",
    ],
)
def test_parse_rejects_bad_input(text: str) -> None:
    with pytest.raises(ValueError, match=r"bad server version .*mariadb-10\.11"):
        ServerVersion.parse(text)


@pytest.mark.parametrize(
    ("version", "comment", "expected"),
    [
        ("10.11.19-MariaDB-0+deb12u1-log", "Debian 12", ServerVersion("mariadb", 10, 11, 19)),
        ("10.6.20-MariaDB", "", ServerVersion("mariadb", 10, 6, 20)),
        (
            "11.4.4-MariaDB-ubu2404",
            "mariadb.org binary distribution",
            ServerVersion("mariadb", 11, 4, 4),
        ),
        ("10.5.27", "MariaDB Server", ServerVersion("mariadb", 10, 5, 27)),
        ("5.5.5-10.3.39-MariaDB-0+deb10u2", "Debian 10", ServerVersion("mariadb", 10, 3, 39)),
        ("8.4.3", "MySQL Community Server - GPL", ServerVersion("mysql", 8, 4, 3)),
        ("5.7.44-log", "MySQL Community Server (GPL)", ServerVersion("mysql", 5, 7, 44)),
        ("5.7.44-log", "", ServerVersion("mysql", 5, 7, 44)),
        ("8.0.35-27", "Percona Server (GPL), Release 27", ServerVersion("mysql", 8, 0, 35)),
        ("8.0.36-0ubuntu0.22.04.1", "(Ubuntu)", ServerVersion("mysql", 8, 0, 36)),
        ("9.1.0-commercial", "MySQL Enterprise Server", ServerVersion("mysql", 9, 1, 0)),
        (" 8.0.22 ", "", ServerVersion("mysql", 8, 0, 22)),
    ],
)
def test_from_server(version: str, comment: str, expected: ServerVersion) -> None:
    assert ServerVersion.from_server(version, comment) == expected


@pytest.mark.parametrize("version", ["", "MariaDB", "v8.0.22", "8", "8.x.1", "8.0.22.1", "-10.6.1"])
def test_from_server_rejects_bad_input(version: str) -> None:
    with pytest.raises(ValueError, match="cannot read a server version"):
        ServerVersion.from_server(version, "")


@pytest.mark.parametrize(
    "args",
    [("oracle", 8, 0, 0), ("mysql", -1, 0, 0), ("mysql", 8, True, 0), ("mysql", 8, 0, "1")],
)
def test_constructor_validates(args: tuple[object, ...]) -> None:
    with pytest.raises(ValueError):
        ServerVersion(*args)  # type: ignore[arg-type]


def test_str_round_trips() -> None:
    v = ServerVersion.from_server("10.11.19-MariaDB-0+deb12u1-log")
    assert str(v) == "mariadb-10.11.19"
    assert ServerVersion.parse(str(v)) == v
    assert str(ServerVersion.parse("mysql-8.4")) == "mysql-8.4.0"


def test_ordering_within_a_flavor() -> None:
    p = ServerVersion.parse
    assert p("mysql-8.0.21") < p("mysql-8.0.22") < p("mysql-8.0.100") < p("mysql-8.2.0")
    assert p("mysql-5.7.44") < p("mysql-8.0.0")
    assert p("mariadb-10.6.20") < p("mariadb-10.11.0") < p("mariadb-11.4.4")
    assert p("mariadb-10.11") == p("mariadb-10.11.0")
    assert p("mysql-8.4.3") >= p("mysql-8.4.0")
    assert max(p("mysql-9.1.0"), p("mysql-8.4.3"), p("mysql-8.0.26")) == p("mysql-9.1.0")
    assert sorted([p(M91), p(M57), p(M8023)]) == [p(M57), p(M8023), p(M91)]


def test_versions_are_hashable_values() -> None:
    assert len({ServerVersion.parse("mysql-8.0"), ServerVersion("mysql", 8, 0, 0)}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_VERSION.major = 11  # type: ignore[misc]


def test_statement_preview_is_for_display() -> None:
    stmt = dialect(MD1011).change_source_file_pos(
        "db'a", 3306, "repl", PASSWORD, "binlog.000042", 1234
    )
    assert stmt.preview() == (
        "CHANGE MASTER TO MASTER_HOST='db\\'a', MASTER_PORT=3306, MASTER_USER='repl', "
        f"MASTER_PASSWORD='{MASK}', MASTER_LOG_FILE='binlog.000042', MASTER_LOG_POS=1234"
    )
    assert Statement("SELECT %s", (None,)).preview() == "SELECT NULL"


@pytest.mark.parametrize(("version", "sql"), [
    ("mariadb-10.11.19", "SET GLOBAL gtid_binlog_state = %s"),
    ("mariadb-11.4.4", "SET GLOBAL gtid_binlog_state = %s"),
    ("mysql-5.7.44", "SET GLOBAL gtid_purged = %s"),
    ("mysql-8.0.26", "SET GLOBAL gtid_purged = %s"),
    ("mysql-8.4.3", "SET GLOBAL gtid_purged = %s"),
])
def test_seed_primary_gtid(version: str, sql: str) -> None:
    statement = dialect(version).seed_primary_gtid("0-2-7")
    assert (statement.sql, statement.params) == (sql, ("0-2-7",))
