"""The hot copy (copy.method mariabackup / xtrabackup) as a plan: which steps, in which order,
what the donor's freeze and the switch cover, where the backup account's password lives, the
commands per tool and flavor, and the verdicts of its preflight checks."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support import runbook_error
from test_render import make_plan

from resync.actions.conditions import AtLeast, Same
from resync.actions.dialect import ServerVersion, dialect_for
from resync.actions.types import (
    Assert,
    Capture,
    HoldLock,
    Leaf,
    LockAlive,
    Ref,
    ReleaseLock,
    Shell,
    Sql,
    When,
)
from resync.model.errors import ResyncError
from resync.model.keys import DONOR, SOURCE, Key
from resync.model.runbook import parse_runbook
from resync.plan.build import Plan, assumed_facts, build_plan, parse_version_overrides
from resync.steps.copy.hot import (
    BackupStream,
    FreezeDonor,
    HotCopy,
    SwitchOver,
)
from resync.steps.copy.hot_commands import (
    ACCOUNT_HASH,
    BACKUP,
    SWITCH_LOCK_SECONDS,
    TOOLS,
    ParseBinlogInfo,
    SameGtidPosition,
    backup_account_possible,
    donor_tool_fits,
    lock_report,
    recipient_tool_fits,
    tool_version,
)
from resync.steps.replication import PointReplica, ResetBinlogs

ROOT = Path(__file__).resolve().parents[2]


def keys(plan: Plan) -> list[str]:
    return [s.key for s in plan.steps]


def old_primary_hot() -> Plan:
    text = (ROOT / "runbooks/rebuild-old-primary.yaml").read_text()
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("copy:"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i][:1] not in (" ", "\n"))
    copy = "".join(lines[start:end])
    return make_plan("rebuild-old-primary",
                     edit=(copy, "copy:\n  method: mariabackup\n  hot: {parallel: 2}\n"))


def plan_of(name: str, versions: str, *edits: tuple[str, str]) -> Plan:
    """An example runbook with several edits, for the given server versions."""
    text = (ROOT / "runbooks" / f"{name}.yaml").read_text()
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    loaded = parse_runbook(text, Path("runbooks") / f"{name}.yaml")
    return build_plan(loaded, assumed_facts(loaded, parse_version_overrides(versions, loaded)))


def step(plan: Plan, key: str) -> Any:
    return next(s for s in plan.steps if s.key == key)


def texts(actions: tuple[Any, ...]) -> list[str]:
    out = []
    for a in actions:
        if isinstance(a, HoldLock):
            out += [s.render() for s in a.statements]
        elif isinstance(a, When):
            out += [a.render(), *texts(a.then), *texts(a.otherwise)]
        elif isinstance(a, BackupStream):
            out += [p.render() for p in a.parts()]
        elif isinstance(a, Leaf):
            out.append(a.render())
    return out


# -- the steps ---------------------------------------------------------------------------------------

def test_replica_rebuild_never_stops_nor_locks_the_donor() -> None:
    plan = make_plan("rebuild-replica-hot")
    assert keys(plan) == [
        "preflight", "stop-service:db2", "move-datadir-aside:db2",
        "copy-datadir:db1->db2:mariabackup", "start-service:db2", "point-replica:db2",
        "wait-replica:db2", "make-writable:db1", "verify-data:db1=db2"]
    # the replica starts at exactly the backup's coordinates, read by the copy step
    copy = step(plan, "copy-datadir:db1->db2:mariabackup")
    assert isinstance(copy, HotCopy) and copy.at == SOURCE
    point = step(plan, "point-replica:db2")
    assert isinstance(point, PointReplica) and point.start_at == SOURCE
    assert "SET GLOBAL gtid_slave_pos = <source.gtid>" in texts(point.plan())


def test_seed_scenario_catches_up_then_freezes_the_donor_then_swaps() -> None:
    plan = old_primary_hot()
    assert keys(plan) == [
        "preflight", "stop-replication:db2", "stop-service:db1", "move-datadir-aside:db1",
        "copy-datadir:db2->db1:mariabackup", "start-service:db1",
        "point-replica:db1:catch-up", "wait-replica:db1:catch-up",
        "read-lock:db2:donor", "stop-replication:db1:caught-up",
        "reset-binlogs:db1", "read-lock:db1:source", "point-replica:db2", "wait-replica:db2",
        "unlock:db1", "make-writable:db1", "verify-data:db1=db2"]
    assert "stop-service:db2" not in keys(plan), "the donor never stops"
    # db1 replicates from db2 from the backup's point first
    assert step(plan, "copy-datadir:db2->db1:mariabackup").at == BACKUP
    catch_up = step(plan, "point-replica:db1:catch-up")
    assert catch_up.start_at == BACKUP and catch_up.source_address == "db2.example.internal"
    # the freeze: read_only first (the application's commits refused from that instant), then
    # the read lock, held until the switch, and the coordinates under it
    freeze = step(plan, "read-lock:db2:donor")
    assert isinstance(freeze, FreezeDonor)
    actions = freeze.plan()
    order = [type(a).__name__ for a in actions]
    assert order[order.index("Sql")] == "Sql" and actions[order.index("Sql")].sql == \
        "SET GLOBAL read_only = ON"
    assert order.index("Sql") < order.index("HoldLock") < order.index("Capture")
    assert freeze.holds_session == freeze.session and str(freeze.released_by) == \
        "stop-replication:db1:caught-up"
    assert {a.columns[0][1] for a in actions if isinstance(a, Capture)} == {DONOR.file, DONOR.gtid}
    # the switch: the lock still holds, db1 has applied exactly those coordinates, then it
    # stops replicating and the lock goes (db2 stays read-only: no undo of read_only here)
    switch = step(plan, "stop-replication:db1:caught-up")
    assert isinstance(switch, SwitchOver)
    s = switch.plan()
    assert isinstance(s[0], LockAlive) and s[0].session == freeze.session
    assert s[1].render() == "SELECT MASTER_GTID_WAIT(<donor.gtid>, 120) AS reached"
    assert isinstance(s[2], Assert) and isinstance(s[2].condition, AtLeast)
    assert [a.render() for a in s[3:5]] == ["STOP SLAVE", "RESET SLAVE ALL"]
    assert isinstance(s[-1], ReleaseLock) and s[-1].into == SWITCH_LOCK_SECONDS
    assert not any(isinstance(a, Sql) and "read_only" in a.sql for a in s)
    # the new primary carries on the donor's history from the frozen coordinates
    reset = step(plan, "reset-binlogs:db1")
    assert isinstance(reset, ResetBinlogs) and reset.gtid_from == DONOR
    # a rollback gives the application its donor back
    assert "SET GLOBAL read_only = OFF" in texts(freeze.undo_plan())


def test_seed_scenario_in_file_position_mode_waits_for_the_file_and_position() -> None:
    plan = make_plan("rebuild-old-primary", "donor=mysql-8.4.3,recipient=mysql-8.4.3",
                     edit=("method: stream ", "method: xtrabackup "))
    assert plan.mode == "file_pos"
    switch = step(plan, "stop-replication:db1:caught-up").plan()
    assert switch[1].render() == ("SELECT SOURCE_POS_WAIT(<donor.file>, <donor.pos>, 120) AS "
                                  "reached")
    copy = step(plan, "copy-datadir:db2->db1:xtrabackup")
    assert not any("GTID" in t for t in texts(copy.plan())), "no GTID to check"
    assert "SHOW BINLOG EVENTS IN <backup.file> FROM <backup.pos> LIMIT 1" in texts(copy.plan())


# -- the copy step ---------------------------------------------------------------------------------

def test_the_backup_account_password_never_leaves_the_donor() -> None:
    copy = step(make_plan("rebuild-replica-hot"), "copy-datadir:db1->db2:mariabackup")
    stream = next(a for a in copy.plan() if isinstance(a, BackupStream))
    parts = stream.parts()
    make = parts[0]
    assert isinstance(make, Shell) and make.host == "db1" and make.into == ACCOUNT_HASH
    text = make.render()
    # born on the donor, written 0600 under root's /run, only its hash printed
    assert "umask 077" in text and "mkdir -m 0700" in text and "pw=$(openssl rand -hex 24)" in text
    assert "printf '[client]\\npassword=%s\\n' \"$pw\" > \"$d/client.cnf\"" in text
    assert "openssl dgst -sha1 -binary | openssl dgst -sha1" in text
    sqls = [p for p in parts if isinstance(p, Sql)]
    assert sqls[1].render() == ("CREATE USER 'resync_backup'@'localhost' IDENTIFIED BY PASSWORD "
                                "<hot.account_hash>")
    assert Ref(ACCOUNT_HASH) in sqls[1].params
    assert sqls[2].render() == ("GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.* TO "
                                "'resync_backup'@'localhost'")
    sender = next(p for p in parts if isinstance(p, Shell) and "--backup" in p.render())
    assert "--defaults-extra-file=/run/resync-backup-<run_id>/client.cnf --user=resync_backup " \
           "--socket=<hot.donor_socket>" in sender.render()
    assert "--log-copy-interval=50" in sender.render() and "--parallel=2" in sender.render()
    # the account and its file go last, and with the step's undo
    assert [p.render() for p in parts[-2:]] == [
        "DROP USER IF EXISTS 'resync_backup'@'localhost'", "rm -rf -- /run/resync-backup-<run_id>"]
    assert texts(copy.undo_plan()) == [p.render() for p in parts[-2:]]
    check = parts[-3]
    assert isinstance(check, Assert) and isinstance(check.condition, Same)


class Recorder:
    """A CompositeRun stand-in: which parts ran; `fail_at` raises there."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.ran: list[int] = []
        self.fail_at = fail_at
        self.executor, self.aid = None, "4.6"

    def do(self, index: int) -> Any:
        self.ran.append(index)
        if index == self.fail_at:
            raise ResyncError("CREATE USER failed")


def test_the_account_and_its_file_go_even_when_the_stream_fails() -> None:
    copy = step(make_plan("rebuild-replica-hot"), "copy-datadir:db1->db2:mariabackup")
    stream = next(a for a in copy.plan() if isinstance(a, BackupStream))
    run = Recorder(fail_at=1)
    with pytest.raises(ResyncError, match="CREATE USER failed"):
        stream.execute(run)  # type: ignore[arg-type]
    last = len(stream.parts())
    assert run.ran == [0, 1, last - 2, last - 1], "made, failed, then dropped and removed"


def test_prepare_exclusions_and_the_coordinates_are_checked_on_the_donor() -> None:
    copy = step(make_plan("rebuild-replica-hot"), "copy-datadir:db1->db2:mariabackup")
    t = texts(copy.plan())
    assert "mariabackup --prepare --target-dir=/var/lib/mysql --use-memory=1024M" in t
    finish = next(x for x in t if "IFS=;" in x)
    assert "'./*-bin.[0-9]*'" in finish and "IFS=;" in finish and finish.endswith(
        "chown -R mysql:mysql /var/lib/mysql")
    parse = next(a for a in copy.plan() if isinstance(a, ParseBinlogInfo))
    assert parse.outputs() == (SOURCE.file, SOURCE.pos, SOURCE.gtid)
    assert t[-4:] == [
        "SHOW BINLOG EVENTS IN <source.file> FROM <source.pos> LIMIT 1",
        "assert <source.gtid> is set",
        "SELECT BINLOG_GTID_POS(<source.file>, <source.pos>) AS gtid",
        "assert <source.gtid> is the GTID position <hot.binlog_gtid_pos>"]


def test_xtrabackup_commands_and_mysql_statements_come_from_the_same_table() -> None:
    plan = plan_of("rebuild-replica-hot", "donor=mysql-8.0.36,recipient=mysql-8.0.36",
                   ("method: mariabackup ", "method: xtrabackup "), ("mode: auto ", "mode: gtid "))
    copy = step(plan, "copy-datadir:db1->db2:xtrabackup")
    t = texts(copy.plan())
    joined = "\n".join(t)
    assert "xtrabackup --defaults-extra-file=" in joined and "xbstream -x -C /var/lib/mysql" in joined
    assert "xtrabackup --prepare --target-dir=/var/lib/mysql" in joined
    assert ("CREATE USER 'resync_backup'@'localhost' IDENTIFIED WITH mysql_native_password AS "
            "<hot.account_hash>") in t
    assert ("GRANT RELOAD, PROCESS, LOCK TABLES, REPLICATION CLIENT, BACKUP_ADMIN ON *.* TO "
            "'resync_backup'@'localhost'") in t
    assert "GRANT SELECT ON performance_schema.log_status TO 'resync_backup'@'localhost'" in t
    assert "SELECT GTID_SUBSET(<source.gtid>, @@GLOBAL.gtid_executed) AS contained" in t
    assert "LOCK INSTANCE FOR BACKUP" in copy.why


@pytest.mark.parametrize(("version", "lock", "monitor"), [
    ("mariadb-10.3.39", "FLUSH TABLES WITH READ LOCK", "REPLICATION CLIENT"),
    ("mariadb-10.4.34", "BACKUP STAGE BLOCK_COMMIT", "REPLICATION CLIENT"),
    ("mariadb-10.11.19", "BACKUP STAGE BLOCK_COMMIT", "BINLOG MONITOR"),
    ("mysql-5.7.44", "FLUSH TABLES WITH READ LOCK", "REPLICATION CLIENT"),
    ("mysql-8.4.3", "LOCK INSTANCE FOR BACKUP", "REPLICATION CLIENT")])
def test_dialect_backup_lock_and_privileges(version: str, lock: str, monitor: str) -> None:
    d = dialect_for(ServerVersion.parse(version))
    assert d.backup_lock().sql == lock
    assert monitor in d.backup_privileges()
    assert ("BACKUP_ADMIN" in d.backup_privileges()) == version.startswith("mysql-8")
    assert d.binlog_events_at("mysql-bin.000002", 2517).preview() == (
        "SHOW BINLOG EVENTS IN 'mysql-bin.000002' FROM 2517 LIMIT 1")
    at = d.gtid_at_binlog_position("f", 4)
    assert (at is not None) == version.startswith("mariadb")


# -- what the copy reads back ------------------------------------------------------------------------

class Ctx:
    def __init__(self, captured: dict[str, Any]) -> None:
        self.captured = captured


@pytest.mark.parametrize(("raw", "file", "pos", "gtid"), [
    ("mysql-bin.000002\t2517\t0-1-11", "mysql-bin.000002", 2517, "0-1-11"),
    ("mysql-bin.000002\t2517\t0-1-11,1-2-7\n", "mysql-bin.000002", 2517, "0-1-11,1-2-7"),
    ("binlog.000003\t197\t3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5,\n"
     "4F11FA47-71CA-11E1-9E33-C80AA9429562:1-2", "binlog.000003", 197,
     "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5,4F11FA47-71CA-11E1-9E33-C80AA9429562:1-2"),
    ("binlog.000003\t197", "binlog.000003", 197, None)])
def test_binlog_info_is_parsed_into_the_coordinates(raw: str, file: str, pos: int,
                                                    gtid: str | None) -> None:
    leaf = ParseBinlogInfo(host="db2", source=Key("hot.binlog_info"), at=SOURCE)
    out = leaf.perform(Ctx({"hot.binlog_info": raw}))  # type: ignore[arg-type]
    assert dict(out.values) == {SOURCE.file: file, SOURCE.pos: pos, SOURCE.gtid: gtid}


def test_unreadable_binlog_info_is_refused() -> None:
    leaf = ParseBinlogInfo(host="db2", source=Key("hot.binlog_info"), at=SOURCE)
    with pytest.raises(ResyncError, match="cannot read the backup's binlog coordinates"):
        leaf.perform(Ctx({"hot.binlog_info": "nonsense"}))  # type: ignore[arg-type]


def test_gtid_positions_compare_as_sets() -> None:
    same = SameGtidPosition(Key("a"), Key("b"))
    assert same.holds({"a": "0-1-11,1-2-7", "b": "1-2-7,0-1-11"})
    assert not same.holds({"a": "0-1-11", "b": "0-1-12"})
    assert not same.holds({"a": "0-1-11", "b": None}), "NULL: the position is not in the binlog"


STAMPED = """\
1796105559.259935 [00] 2026-12-01 06:12:39 Starting BACKUP STAGE FLUSH
1796105559.283803 [00] 2026-12-01 06:12:39 Started BACKUP STAGE BLOCK_DDL
1796105559.340260 [00] 2026-12-01 06:12:39 Starting BACKUP STAGE BLOCK_COMMIT
1796105559.340668 [00] 2026-12-01 06:12:39 Acquired locks for BACKUP STAGE BLOCK_COMMIT
1796105559.401651 [00] 2026-12-01 06:12:39 All tables unlocked
1796105559.401784 [00] 2026-12-01 06:12:39 MySQL binlog position: filename 'mysql-bin.000001'
"""


@pytest.mark.parametrize(("log", "commit", "nontransactional"), [
    (STAMPED, "0.061", "0.142"),
    ("1.0 [00] streaming ./ibdata1\n", "-", "-")])
def test_the_lock_is_timed_from_the_tool_s_stamped_log(tmp_path: Path, log: str, commit: str,
                                                      nontransactional: str) -> None:
    (tmp_path / "log").write_text(log)
    out = subprocess.run(["bash", "-c", f"t={tmp_path}; {lock_report(TOOLS['mariabackup'])}"],
                         capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0] == f"RESYNC backup-lock commit={commit} nontransactional={nontransactional}"
    if commit != "-":
        assert lines[1] == ("RESYNC backup-log 1796105559.259935 [00] 2026-12-01 06:12:39 "
                            "Starting BACKUP STAGE FLUSH")
        assert lines[-1].endswith("MySQL binlog position: filename 'mysql-bin.000001'")


# -- the preflight's verdicts ------------------------------------------------------------------------

MARIABACKUP = "mariabackup based on MariaDB server 10.11.19-MariaDB debian-linux-gnu (x86_64)"
SERVER = ServerVersion("mariadb", 10, 11, 19)


def test_the_tool_must_be_installed_and_of_the_server_s_release() -> None:
    tool = TOOLS["mariabackup"]
    assert donor_tool_fits(MARIABACKUP, tool, "db1", SERVER) == (
        "mariabackup 10.11.19 for mariadb-10.11.19")
    with pytest.raises(ResyncError, match="not installed on db1: mariabackup, openssl"):
        donor_tool_fits("missing mariabackup\nmissing openssl\n", tool, "db1", SERVER)
    with pytest.raises(ResyncError, match=re.escape("built for 10.6.16, the server runs 10.11.19")):
        donor_tool_fits(MARIABACKUP.replace("10.11.19", "10.6.16"), tool, "db1", SERVER)
    with pytest.raises(ResyncError, match=re.escape("set copy.method: xtrabackup")):
        donor_tool_fits(MARIABACKUP, tool, "db1", ServerVersion("mysql", 8, 4, 3))
    xtra = "xtrabackup version 8.0.35-30 based on MySQL server 8.0.35 Linux (x86_64)"
    assert tool_version(xtra, TOOLS["xtrabackup"], "db1") == ServerVersion("mysql", 8, 0, 35)
    with pytest.raises(ResyncError, match=re.escape("built for 8.0.35, the server runs 8.0.36")):
        donor_tool_fits(xtra, TOOLS["xtrabackup"], "db1", ServerVersion("mysql", 8, 0, 36))
    # the recipient prepares what the donor's tool made
    assert recipient_tool_fits(MARIABACKUP, tool, "db2", SERVER).startswith("mariabackup 10.11.19")
    with pytest.raises(ResyncError, match="prepared by its own release"):
        recipient_tool_fits(MARIABACKUP, tool, "db2", ServerVersion("mariadb", 11, 4, 2))


def test_the_resync_user_must_be_able_to_make_the_backup_account() -> None:
    needed = dialect_for(SERVER).backup_privileges()
    every = '[["RELOAD", "YES"], ["PROCESS", "YES"], ["LOCK TABLES", "YES"], ' \
            '["BINLOG MONITOR", "YES"], ["CREATE USER", "YES"]]'
    assert "grants RELOAD" in backup_account_possible(every, "ACTIVE", "resync", needed)
    with pytest.raises(ResyncError, match="lacks CREATE USER, BINLOG MONITOR WITH GRANT OPTION"):
        backup_account_possible('[["RELOAD", "YES"], ["PROCESS", "YES"], ["LOCK TABLES", "YES"],'
                                ' ["BINLOG MONITOR", "NO"]]', "ACTIVE", "resync", needed)
    with pytest.raises(ResyncError, match="mysql_native_password plugin is not active"):
        backup_account_possible(every, None, "resync", needed)


def test_hot_settings_belong_to_a_hot_method(tmp_path: Path) -> None:
    text = (ROOT / "runbooks/rebuild-replica-hot.yaml").read_text().replace(
        "method: mariabackup ", "method: stream ")
    path = tmp_path / "runbook.yaml"
    path.write_text(text)
    assert "copy.hot is set but copy.method is not mariabackup or xtrabackup" in str(
        runbook_error(path))
