"""Preflight: verdicts are pure functions over captured values; the checks themselves are data.

Refusals a sandbox cannot easily stage (too little disk, binlog off, versions, a taken port) are
pinned on the verdict functions; build_checks() must make a list that connects to nothing.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from resync.actions.dialect import ServerVersion
from resync.actions.types import Capture, CaptureRows, Composite, Leaf, Login, Shell, Value
from resync.model.errors import ResyncError
from resync.model.keys import DONOR_BYTES, preflight_value
from resync.model.runbook import load_runbook
from resync.plan.build import assumed_facts, copy_spec
from resync.steps import preflight
from resync.steps.copy.commands import CopySpec
from resync.steps.preflight import verdicts

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "rebuild-old-primary.yaml"
GIB = 2**30


def spec(**changes: object) -> CopySpec:
    base = CopySpec(donor="db2", recipient="db1", donor_datadir="/var/lib/mysql",
                    recipient_datadir="/var/lib/mysql", listen_address="db1", port=7878,
                    owner="mysql:mysql", excludes=("./*-bin.[0-9]*",))
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def disk(donor_bytes: Value, free_bytes: Value) -> dict[str, Value]:
    return {str(DONOR_BYTES): donor_bytes, str(preflight_value("db1", "free_bytes")): free_bytes}


# -- verdicts ------------------------------------------------------------------------------------


def test_too_little_disk_on_the_recipient_is_refused() -> None:
    captured = disk(str(100 * GIB), str(105 * GIB))  # needs 110 GiB
    with pytest.raises(ResyncError,
                       match=r"db1 has 105\.00 GiB free under /var/lib, needs 110\.00 GiB"):
        verdicts.enough_disk_space(captured, "db1", "/var/lib")


def test_enough_disk_passes_and_names_the_sizes() -> None:
    verdict = verdicts.enough_disk_space(disk(10 * GIB, 12 * GIB), "db1", "/var/lib")
    assert verdict == "to copy: 10.00 GiB of the donor's datadir; 12.00 GiB free on db1"


def test_unreadable_disk_figures_are_refused_not_crashed() -> None:
    with pytest.raises(ResyncError, match="could not read the donor's datadir size"):
        verdicts.enough_disk_space(disk("", "12"), "db1", "/var/lib")


def test_a_host_that_did_not_answer_skips_its_verdict() -> None:
    with pytest.raises(preflight.Skip, match="db1 did not answer"):
        verdicts.enough_disk_space({str(DONOR_BYTES): 1}, "db1", "/var/lib")


@pytest.mark.parametrize(("donor", "recipient", "problem"), [
    ("mariadb-10.11.19", "mariadb-10.6.20", "older than the donor .* at major.minor level"),
    ("mariadb-11.4.2", "mariadb-10.11.19", "older than the donor"),
    ("mysql-8.4.3", "mysql-8.0.36", "older than the donor"),
    ("mysql-8.0.36", "mysql-8.0.30", "older than the donor .* at patch level"),
    ("mysql-5.7.44", "mysql-5.7.43", "older than the donor"),
    ("mysql-8.4.3", "mariadb-11.4.4", "one flavor"),
    ("mariadb-10.11.5", "mysql-8.0.36", "one flavor"),
])
def test_incompatible_versions_are_refused(donor: str, recipient: str, problem: str) -> None:
    with pytest.raises(ResyncError, match=problem):
        verdicts.versions_compatible(ServerVersion.parse(donor), ServerVersion.parse(recipient))


@pytest.mark.parametrize(("donor", "recipient"), [
    ("mariadb-10.6.20", "mariadb-10.11.19"),
    ("mariadb-10.11.5", "mariadb-10.11.2"),  # the same series: a patch older is fine
    ("mysql-8.0.30", "mysql-8.0.36"),
    ("mysql-8.0.36", "mysql-8.4.3"),
    ("mysql-8.4.3", "mysql-8.4.3"),
])
def test_same_or_newer_recipient_is_accepted(donor: str, recipient: str) -> None:
    assert verdicts.versions_compatible(ServerVersion.parse(donor),
                                        ServerVersion.parse(recipient)) == f"{donor} -> {recipient}"


def test_the_replica_afterwards_must_not_be_older_than_its_primary() -> None:
    v = ServerVersion.parse
    with pytest.raises(ResyncError, match=r"afterwards db2 \(mysql-8.0.30\) replicates from db1 "
                                          r"\(mysql-8.0.36\), which is newer"):
        verdicts.replica_not_older("db1", v("mysql-8.0.36"), "db2", v("mysql-8.0.30"))
    with pytest.raises(ResyncError, match="older than its primary"):
        verdicts.replica_not_older("db1", v("mariadb-10.11.2"), "db2", v("mariadb-10.6.9"))
    with pytest.raises(ResyncError, match="different flavors"):
        verdicts.replica_not_older("db1", v("mariadb-10.11.2"), "db2", v("mysql-8.0.36"))
    assert verdicts.replica_not_older("db1", v("mariadb-10.11.5"), "db2",
                                      v("mariadb-10.11.2")) == (
        "db1 (mariadb-10.11.5) -> db2 (mariadb-10.11.2)")


def test_equal_server_ids_are_refused() -> None:
    with pytest.raises(ResyncError, match="same server_id 7"):
        verdicts.distinct_server_ids(7, 7)
    assert verdicts.distinct_server_ids(1, 2) == "1 / 2"


def test_binlog_off_is_refused() -> None:
    with pytest.raises(ResyncError, match="binary logging is off"):
        verdicts.switched_on(0, "binary logging is off")
    with pytest.raises(ResyncError):
        verdicts.switched_on("OFF", "off")
    assert verdicts.switched_on(1, "unused") == "on"
    assert verdicts.switched_on("ON", "unused") == "on"


def test_missing_tools_are_listed() -> None:
    key = str(preflight_value("db2", "missing_tools"))
    with pytest.raises(ResyncError, match=r"missing on db2: nc, openssl \(Debian: apt-get"):
        verdicts.tools_installed({key: "nc\nopenssl"}, "db2", ("tar", "nc", "openssl"))
    assert verdicts.tools_installed({key: ""}, "db2", ("tar", "nc")) == "tar, nc"


def test_a_taken_copy_port_is_named() -> None:
    key = str(preflight_value("db1", "port_listeners"))
    listener = "LISTEN 0 1 0.0.0.0:7878 0.0.0.0:*"
    with pytest.raises(ResyncError, match=f"something already listens on port 7878: {listener}"):
        verdicts.port_free({key: listener}, "db1", 7878)
    assert verdicts.port_free({key: "  \n"}, "db1", 7878) == "free"


def test_replication_user_must_exist_with_the_privilege() -> None:
    key = str(preflight_value("db2", "replication_users"))
    with pytest.raises(ResyncError, match="no user 'repl' with REPLICATION SLAVE on db2"):
        verdicts.replication_user_exists({key: 0}, "db2", "repl")
    with pytest.raises(ResyncError, match="no user 'repl'"):
        verdicts.replication_user_exists({key: None}, "db2", "repl")
    assert "'repl' can log in to db2" in verdicts.replication_user_exists({key: 1}, "db2", "repl")


def test_a_mount_point_datadir_is_refused() -> None:
    key = str(preflight_value("db1", "datadir_kind"))
    with pytest.raises(ResyncError, match="is a mount point"):
        verdicts.not_a_mount_point({key: "mount"}, "db1", "/var/lib/mysql")
    assert "is a directory" in verdicts.not_a_mount_point({key: "dir"}, "db1", "/var/lib/mysql")


def test_innodb_files_outside_the_datadir_are_refused() -> None:
    from resync.steps.preflight.layout import innodb_dirs_inside

    inside = {"innodb_data_home_dir": "", "innodb_log_group_home_dir": "./",
              "innodb_undo_directory": "/var/lib/mysql/"}
    assert "live in the datadir" in innodb_dirs_inside(inside, "/var/lib/mysql", "db1")
    with pytest.raises(ResyncError, match="innodb_log_group_home_dir=/redo"):
        innodb_dirs_inside({**inside, "innodb_log_group_home_dir": "/redo"}, "/var/lib/mysql", "db1")


def test_settings_baked_into_the_files_must_match() -> None:
    from resync.steps.preflight.layout import settings_match

    donor = {"innodb_page_size": "16384", "lower_case_table_names": "0",
             "innodb_data_file_path": "ibdata1:12M:autoextend"}
    assert "innodb_page_size=16384" in settings_match(donor, dict(donor))
    with pytest.raises(ResyncError, match="innodb_page_size: donor '16384', recipient '65536'"):
        settings_match(donor, {**donor, "innodb_page_size": "65536"})


# -- build_checks: data only -----------------------------------------------------------------------


def leaves_of(checks: tuple[preflight.Check, ...]) -> list[Leaf]:
    out: list[Leaf] = []
    for check in checks:
        for action in check.actions:
            out += action.parts() if isinstance(action, Composite) else [action]
    return out


def built(monkeypatch: pytest.MonkeyPatch) -> tuple[preflight.Check, ...]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("building the checks tried to connect")

    monkeypatch.setattr("resync.transport.mysql.connect", refuse)
    monkeypatch.setattr("resync.run.connect.make_host", refuse)
    loaded = load_runbook(RUNBOOK)
    facts = assumed_facts(loaded, {})
    return preflight.build_checks(loaded, copy_spec(loaded, facts), frozenset(), facts.versions)


def test_build_checks_is_pure_data(monkeypatch: pytest.MonkeyPatch) -> None:
    checks = built(monkeypatch)
    names = [c.name for c in checks]
    assert len(names) == len(set(names)) == 22
    for name in ("versions compatible", "distinct server_id", "replication user", "disk space",
                 "db1: copy port 7878 free", "db2: tools", "db1: tools",
                 "replica not older than its primary", "no errant transactions on db1",
                 "db1: table files in the datadir", "db2: table files in the datadir",
                 "db1: no encryption keys needed", "db2: no encryption keys needed",
                 "db1: binary and relay logs"):
        assert name in names
    for leaf in leaves_of(checks):
        # frozen dataclasses of text and numbers: nothing holds a host or a session
        assert dataclasses.is_dataclass(leaf), leaf
        for f in dataclasses.fields(leaf):
            value = getattr(leaf, f.name)
            assert not callable(value) or isinstance(value, type), (leaf, f.name)
            assert type(value).__module__.split(".")[:2] != ["resync", "transport"], (leaf, f.name)
        assert leaf.host in ("db1", "db2"), leaf
        assert leaf.render()  # renders without any captured value
    # checks without actions of their own judge what others captured
    assert [c.actions for c in checks if c.name == "versions compatible"] == [()]


def test_replication_user_check_logs_in_for_real(monkeypatch: pytest.MonkeyPatch) -> None:
    (check,) = [c for c in built(monkeypatch) if c.name == "replication user"]
    count, login = check.actions
    assert isinstance(count, Capture) and count.params == ("repl",)
    assert isinstance(login, Login)
    assert (login.host, login.user, login.password_env) == ("db2", "repl", "REPL_PASSWORD")
    assert login.render() == "log in as 'repl' (password from $REPL_PASSWORD)"


def test_every_check_ends_in_a_verdict_record(monkeypatch: pytest.MonkeyPatch) -> None:
    checks = built(monkeypatch)
    parts = preflight.Checks("db1", checks).parts()
    verdicts = [p for p in parts if isinstance(p, preflight.Verdict)]
    assert [v.name for v in verdicts] == [c.name for c in checks]
    assert isinstance(parts[-1], preflight.Verdict)
    kinds = {type(p) for p in parts}
    assert kinds <= {Capture, CaptureRows, Shell, Login, preflight.Verdict,
                     *(type(p) for p in parts if p.kind == "poll")}


def test_the_disk_check_reads_both_sides(monkeypatch: pytest.MonkeyPatch) -> None:
    (check,) = [c for c in built(monkeypatch) if c.name == "disk space"]
    du, df = check.actions
    assert isinstance(du, Shell) and isinstance(df, Shell)
    assert (du.host, du.privileged, du.into) == ("db2", True, DONOR_BYTES)
    assert du.render().startswith("du -sb --exclude=")
    assert (df.host, df.into) == ("db1", preflight_value("db1", "free_bytes"))
    verdict = check.judge(disk(GIB, 2 * GIB))
    assert "1.00 GiB" in verdict
    with pytest.raises(ResyncError, match="GiB free"):
        check.judge(disk(2 * GIB, GIB))


def test_ssh_method_checks_reachability_instead_of_the_port(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load_runbook(RUNBOOK)
    facts = assumed_facts(loaded, {})
    ssh = dataclasses.replace(copy_spec(loaded, facts), method="ssh", ssh_target="root@db1")
    names = [c.name for c in preflight.build_checks(loaded, ssh, frozenset(), facts.versions)]
    assert "db2: ssh to db1" in names
    assert not [n for n in names if "copy port" in n]


# -- direction and errant transactions: wired in (the logic is tests/unit/test_direction.py) -----


def checks_for(versions: str | None = None, down: frozenset[str] = frozenset(),
               **options: object) -> dict[str, preflight.Check]:
    from resync.plan.build import parse_version_overrides

    loaded = load_runbook(RUNBOOK)
    facts = assumed_facts(loaded, parse_version_overrides(versions, loaded))
    built = preflight.build_checks(loaded, copy_spec(loaded, facts), down, facts.versions,
                                   **options)  # type: ignore[arg-type]
    return {c.name: c for c in built}


def test_the_errant_check_says_which_mode_is_in_force() -> None:
    refusing = checks_for()["no errant transactions on db1"]
    assert refusing.criterion.endswith("refused if it has any")
    assert [a.host for a in refusing.actions] == ["db1", "db2"]
    discarding = checks_for(discard_errant=True)["no errant transactions on db1"]
    assert "DISCARDED" in discarding.criterion


def test_the_errant_check_refuses_through_the_checks_verdict() -> None:
    check = checks_for()["no errant transactions on db1"]
    captured = {str(preflight_value("db1", "gtid_binlog_state")): "0-1-5,0-2-3",
                str(preflight_value("db2", "gtid_binlog_state")): "0-1-5",
                str(preflight_value("db2", "gtid_slave_pos")): "",
                str(preflight_value("db2", "gtid_current_pos")): "0-1-5"}
    result = check.result(captured, None)
    assert not result.ok and "0-2-1..0-2-3" in result.detail
    missing = check.result({}, None)
    assert not missing.ok and missing.detail.startswith("not checked:")


def test_mysql_gtid_facts_pick_the_comparison() -> None:
    on = checks_for("donor=mysql-8.0.36,recipient=mysql-8.0.36",
                    gtid_enabled={"db1": True, "db2": True})["no errant transactions on db1"]
    assert ["GTID_SUBSET" in a.render() for a in on.actions] == [False, True]
    preflight_step = preflight.Preflight(load_runbook(RUNBOOK), spec(), frozenset(),
                                         {"db1": ServerVersion.parse("mysql-8.0.36"),
                                          "db2": ServerVersion.parse("mysql-8.0.36")},
                                         discard_errant=True, gtid_enabled={"db1": False, "db2": False})
    (composite,) = preflight_step.plan()
    assert isinstance(composite, preflight.Checks)
    (errant,) = [c for c in composite.checks if c.name == "no errant transactions on db1"]
    assert [a.render() for a in errant.actions] == ["SHOW MASTER STATUS", "SHOW REPLICA STATUS"]
    assert "DISCARDED" in errant.criterion


def test_a_stopped_recipient_is_checked_from_its_binary_log() -> None:
    checks = checks_for(down=frozenset({"db1"}))
    (shell, donor) = checks["no errant transactions on db1"].actions
    assert isinstance(shell, Shell) and shell.host == "db1" and shell.privileged
    assert isinstance(donor, Capture) and donor.host == "db2"
    # nothing is asked of its server: no tablespace, encryption or log queries on db1
    assert "db1: table files in the datadir" not in checks
    assert "db1: binary and relay logs" not in checks
    assert "db2: table files in the datadir" in checks


# -- the datadir's surroundings -----------------------------------------------------------------------


def test_surroundings_queries_follow_the_version() -> None:
    from resync.steps.preflight.layout import global_variables_sql, tablespace_files_sql

    assert "FILENAME" in tablespace_files_sql("mariadb", (10, 11, 5))
    assert "INNODB_SYS_DATAFILES" in tablespace_files_sql("mariadb", (10, 5, 20))
    assert "information_schema.FILES" in tablespace_files_sql("mysql", (8, 0, 36))
    maria = global_variables_sql("mariadb", ("log_bin_basename",))
    assert "information_schema.GLOBAL_VARIABLES" in maria and "AS log_bin_basename" in maria
    assert "performance_schema.global_variables" in global_variables_sql("mysql", ("a",))
    mysql = checks_for("donor=mysql-8.0.36,recipient=mysql-8.0.36")
    (tablespaces, links) = mysql["db2: table files in the datadir"].actions
    assert isinstance(tablespaces, CaptureRows) and "FILES" in tablespaces.sql
    assert isinstance(links, Shell) and links.privileged and "-type l" in links.render()
    assert "db1: its own TLS keys and persisted settings" in mysql
    assert "db1: its own TLS keys and persisted settings" not in checks_for()


def spaces(*rows: tuple[str, str]) -> str:
    return json.dumps([list(r) for r in rows])


def test_table_files_outside_the_datadir_are_refused() -> None:
    from resync.steps.preflight.layout import files_inside

    inside = spaces(("innodb_system", "./ibdata1"), ("app/orders", "./app/orders.ibd"),
                    ("mysql", "/var/lib/mysql/mysql.ibd"), ("innodb_undo_001", "/undo/undo_001"),
                    ("innodb_system", "/ibdata/ibdata1"))
    assert files_inside(inside, "", "/var/lib/mysql", "db1") == (
        "every tablespace file in the datadir; no .isl link files or symbolic links")
    outside = spaces(("app/big", "/data2/app/big.ibd"), ("ts1", "/var/lib/mysql-extra/ts1.ibd"))
    with pytest.raises(ResyncError, match=r"tablespace app/big: /data2/app/big.ibd; tablespace ts1: "
                                          r"/var/lib/mysql-extra/ts1.ibd"):
        files_inside(outside, "", "/var/lib/mysql", "db1")
    links = "isl app/big.isl\nlink reports -> /data2/reports\nlink app/t.MYD -> /x/t.MYD\n"
    with pytest.raises(ResyncError) as refused:
        files_inside(spaces(), links, "/var/lib/mysql", "db2")
    text = str(refused.value)
    assert "on db2 table files live outside the datadir" in text
    assert "InnoDB link file app/big.isl" in text
    assert "symbolic link reports -> /data2/reports" in text and "app/t.MYD -> /x/t.MYD" in text


def test_encryption_or_a_keyring_is_refused() -> None:
    from resync.steps.preflight.layout import no_encryption

    off = json.dumps([["innodb_encrypt_tables", "OFF"], ["innodb_encrypt_log", "OFF"]])
    assert no_encryption("[]", off, "db1") == "no keyring or key management plugin; encryption off"
    with pytest.raises(ResyncError, match=r"plugin file_key_management.*the copy would need the keys"):
        no_encryption(json.dumps([["file_key_management"]]), off, "db1")
    with pytest.raises(ResyncError, match="innodb_encrypt_tables=FORCE"):
        no_encryption("[]", json.dumps([["innodb_encrypt_tables", "FORCE"]]), "db1")
    with pytest.raises(ResyncError, match="default_table_encryption=ON"):
        no_encryption("[]", json.dumps([["default_table_encryption", "ON"]]), "db1")


def test_logs_outside_the_datadir_are_named_not_refused() -> None:
    from resync.steps.preflight.layout import logs_placement

    inside = logs_placement({"log_bin_basename": "/var/lib/mysql/mysql-bin",
                             "relay_log_basename": "/var/lib/mysql/relay-bin"}, "/var/lib/mysql", "db1")
    assert inside == ("on db1: binary logs /var/lib/mysql/mysql-bin.*: in the datadir, set aside "
                      "with it; relay logs /var/lib/mysql/relay-bin.*: in the datadir, set aside "
                      "with it")
    outside = logs_placement({"log_bin_basename": "/binlogs/db1-bin", "relay_log_basename": None},
                             "/var/lib/mysql", "db1")
    assert "binary logs /binlogs/db1-bin.*: OUTSIDE the datadir" in outside
    assert "moved aside with the old datadir" in outside and "relay logs: none" in outside
    check = checks_for()["db1: binary and relay logs"]
    (capture,) = check.actions
    assert isinstance(capture, Capture)
    assert {str(k) for k in capture.outputs()} == {
        "preflight.db1.log_bin_basename", "preflight.db1.relay_log_basename",
        "preflight.db1.log_bin_index"}


def test_a_mysql_recipients_own_files_are_described() -> None:
    from resync.steps.preflight.layout import own_files

    assert own_files("", (), "db1") == "no TLS keys or mysqld-auto.cnf in db1's datadir"
    text = own_files("ca.pem\nserver-key.pem\nmysqld-auto.cnf\n", ("./mysqld-auto.cnf",), "db1")
    assert "db1's ca.pem, server-key.pem are replaced by the donor's copy" in text
    kept = own_files("ca.pem\nserver-key.pem\n", ("./ca.pem", "./server-key.pem"), "db1")
    assert "db1's own TLS keys (ca.pem, server-key.pem) are not copied over" in kept
    assert "put back from its old datadir" in kept
    assert "mysqld-auto.cnf (SET PERSIST settings) is not copied" in text
    assert "replaced by the donor's" in own_files("mysqld-auto.cnf", (), "db1")
