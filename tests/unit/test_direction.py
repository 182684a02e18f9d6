"""Direction and errant transactions: parsing, coverage, verdicts, and the check at the point of
no return. All pure, except where a stub mariadb-binlog shows the shell command for real."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from resync.actions.dialect import ServerVersion
from resync.actions.types import Assert, Capture, Ref, Shell, Value, views
from resync.model.errors import GateRefused, ResyncError
from resync.model.keys import Key, preflight_value
from resync.model.runbook import LoadedRunbook, load_runbook
from resync.run.conformance import mismatches
from resync.run.executor import Executor
from resync.run.journal import MemoryJournal, StepRecord, StepState
from resync.steps.direction.binlog import parse_binlog_output
from resync.steps.direction.gate import binlog_gtids_command, errant_gate
from resync.steps.direction.gtid import Errant, format_gtid_state, mariadb_errant, parse_gtid_list
from resync.steps.direction.positions import binlog_sequence, position_ahead, replicates_from
from resync.steps.direction.recheck import ErrantRecheck, ErrantTransactions, errant_recheck
from resync.steps.direction.verdict import DISCARD_OPTION, NotCaptured
from resync.testing.fakes import FakeWorld
from resync.transport.local import CommandResult

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
MARIADB = {"db1": ServerVersion.parse("mariadb-10.11.19"), "db2": ServerVersion.parse("mariadb-10.11.19")}
MYSQL = {"db1": ServerVersion.parse("mysql-8.0.36"), "db2": ServerVersion.parse("mysql-8.0.36")}
MYSQL57 = {"db1": ServerVersion.parse("mysql-5.7.44"), "db2": ServerVersion.parse("mysql-5.7.44")}


@pytest.fixture(scope="module")
def loaded() -> LoadedRunbook:
    """donor db2, recipient db1 (db1.example.internal:3306), primary afterwards db1."""
    return load_runbook(RUNBOOKS / "rebuild-old-primary.yaml")


def r(name: str) -> str:
    return str(preflight_value("db1", name))


def d(name: str) -> str:
    return str(preflight_value("db2", name))


def donor_state(binlog: str = "", slave: str = "", current: str = "") -> dict[str, Value]:
    return {d("gtid_binlog_state"): binlog, d("gtid_slave_pos"): slave,
            d("gtid_current_pos"): current}


# -- MariaDB GTID lists -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "state"), [
    ("0-1-5,1-2-7", {(0, 1): 5, (1, 2): 7}),
    ("", {}),
    (None, {}),
    ("  0-1-5 ,\n 0-2-9\n", {(0, 1): 5, (0, 2): 9}),
    ("0-1-5,0-1-3", {(0, 1): 5}),  # listed twice: the highest seq_no
    ("4294967295-4294967295-18446744073709551615", {(4294967295, 4294967295): 18446744073709551615}),
    (",,", {}),
])
def test_gtid_lists_parse(text: str | None, state: dict[tuple[int, int], int]) -> None:
    assert parse_gtid_list(text) == state


@pytest.mark.parametrize("text", ["0-1", "a-b-c", "0-1-5;0-2-3", "0-1-5-6", "uuid:1-5"])
def test_what_is_not_a_gtid_list_is_an_error_not_an_empty_state(text: str) -> None:
    with pytest.raises(ValueError, match="not a MariaDB GTID"):
        parse_gtid_list(text)


def test_a_state_formats_sorted() -> None:
    assert format_gtid_state({(1, 2): 7, (0, 1): 5}) == "0-1-5,1-2-7"
    assert format_gtid_state({}) == "(empty)"


# -- coverage ----------------------------------------------------------------------------------------


def test_covered_by_any_of_the_donors_states() -> None:
    recipient = parse_gtid_list("0-1-5,0-2-9,1-3-2")
    donor = [parse_gtid_list("0-2-12"), parse_gtid_list("0-1-5"), parse_gtid_list("1-3-4")]
    assert mariadb_errant(recipient, donor) == ()


def test_the_same_domain_and_server_id_are_needed() -> None:
    # the donor's higher seq_no of another server (or domain) covers nothing
    recipient = parse_gtid_list("0-1-5")
    assert mariadb_errant(recipient, [parse_gtid_list("0-2-100,1-1-100")]) == (Errant(0, 1, 5, None),)


def test_errant_transactions_are_named_with_both_sides_and_how_many() -> None:
    recipient = parse_gtid_list("0-1-10,0-2-7,3-1-1")
    donor = [parse_gtid_list("0-1-10,0-2-5"), parse_gtid_list("0-2-4"), parse_gtid_list("")]
    errant = mariadb_errant(recipient, donor)
    assert errant == (Errant(0, 2, 7, 5), Errant(3, 1, 1, None))
    assert [e.at_most for e in errant] == [2, 1]
    assert str(errant[0]) == ("0-2-6..0-2-7 (domain 0, server_id 2: recipient at 7, donor's last "
                              "0-2-5; at most 2 transactions)")
    assert str(errant[1]) == ("3-1-1 (domain 3, server_id 1: recipient at 1, donor's last none; "
                              "at most 1 transaction)")


def test_an_empty_recipient_has_nothing_errant() -> None:
    assert mariadb_errant({}, [{}]) == ()


# -- a stopped recipient's binary log ---------------------------------------------------------------

# mariadb-binlog 10.11 on a file that started with three domains/servers logged before it; a
# query's annotation and a string in it look like a GTID, but are not event headers
RAW = """\
/*!50530 SET @@SESSION.PSEUDO_SLAVE_MODE=1*/;
# at 4
#261201  3:30:25 server id 1  end_log_pos 256 CRC32 0x44fee34e \tStart: binlog v 4
# at 256
#261201  3:30:25 server id 1  end_log_pos 331 CRC32 0x33a7de9d \tGtid list [0-1-3,
# 0-7-4,
# 3-1-1]
# at 331
#261201  3:30:25 server id 1  end_log_pos 374 CRC32 0xf07b3c82 \tBinlog checkpoint mysql-bin.000001
# at 374
#261201  3:30:25 server id 7  end_log_pos 416 CRC32 0x13540b7f \tGTID 0-7-5 trans
/*M!100001 SET @@session.gtid_seq_no=5*//*!*/;
#261201  3:30:25 server id 7  end_log_pos 433 CRC32 0x7ff847e4 \tAnnotate_rows:
#Q> INSERT INTO t.a VALUES ('GTID 9-9-9')
#261201  3:30:25 server id 7  end_log_pos 660 CRC32 0xa028fafc \tGTID 0-7-6 trans
GTID 8-8-8
#261201  3:30:25 server id 1  end_log_pos 700 CRC32 0x9abb54f1 \tGTID 3-1-2 ddl
#261201  3:30:25 server id 1  end_log_pos 842 CRC32 0x043a6f79 \tStop
"""


def test_the_raw_output_of_mariadb_binlog_is_read() -> None:
    read = parse_binlog_output(RAW)
    assert read.has_list
    assert read.state == {(0, 1): 3, (0, 7): 6, (3, 1): 2}
    assert read.file is None and read.missing is None and read.exit_code is None


def test_the_commands_own_output_is_read() -> None:
    out = ("RESYNC-BINLOG /var/lib/mysql/mysql-bin.000002\n"
           "#261201  3:30:25 server id 1  end_log_pos 331 CRC32 0x33a7de9d \tGtid list [0-1-3]\n"
           "#261201  3:30:25 server id 7  end_log_pos 660 CRC32 0xa028fafc \tGTID 0-7-6 trans\n"
           "RESYNC-EXIT 1\n")
    read = parse_binlog_output(out)
    assert (read.file, read.state, read.has_list, read.exit_code) == (
        "/var/lib/mysql/mysql-bin.000002", {(0, 1): 3, (0, 7): 6}, True, 1)


def test_an_empty_gtid_list_and_no_events() -> None:
    out = ("RESYNC-BINLOG /d/mysql-bin.000001\n"
           "#240101 12:00:00 server id 1  end_log_pos 285 \tGtid list []\n")
    read = parse_binlog_output(out)
    assert read.has_list and read.state == {}


def test_no_binary_log_is_said() -> None:
    read = parse_binlog_output("RESYNC-NO-BINLOG no binary log index\n")
    assert read.missing == "no binary log index" and not read.has_list
    assert parse_binlog_output("").missing is None


def test_a_gtid_list_cut_short_is_an_error() -> None:
    with pytest.raises(ValueError, match="cut short"):
        parse_binlog_output("#240101 12:00:00 server id 1  end_log_pos 285 \tGtid list [0-1-3,\n# 0-2")


def _stub_binlog_tool(tmp_path: Path, output: str, code: int = 0) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (tmp_path / "canned").write_text(output)
    tool = bin_dir / "mariadb-binlog"
    tool.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/args\ncat {tmp_path}/canned\nexit {code}\n")
    tool.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def _run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True,
                          env=env, timeout=30)


def test_the_command_reads_the_last_binary_log_of_the_index(tmp_path: Path) -> None:
    datadir = tmp_path / "data"
    datadir.mkdir()
    (datadir / "relay-bin.index").write_text("./relay-bin.000009\n")
    (datadir / "mysql-bin.index").write_text("./mysql-bin.000001\n./mysql-bin.000002\n\n")
    os.utime(datadir / "relay-bin.index", (2e9, 2e9))  # newer, but a relay log's
    env = _stub_binlog_tool(tmp_path, RAW)
    command = Shell.line("db1", *binlog_gtids_command(str(datadir))).bind({})
    proc = _run(command, env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "args").read_text().split() == ["--no-defaults",
                                                       f"{datadir}/mysql-bin.000002"]
    lines = proc.stdout.splitlines()
    assert lines[0] == f"RESYNC-BINLOG {datadir}/mysql-bin.000002"
    assert len(lines) == 1 + 3 + 2  # the Gtid list (3 lines), the last GTID of 0-7 and of 3-1
    read = parse_binlog_output(proc.stdout)
    assert read.state == {(0, 1): 3, (0, 7): 6, (3, 1): 2} and read.exit_code is None
    assert "9-9-9" not in proc.stdout and "8-8-8" not in proc.stdout


def test_the_command_through_a_captured_index_and_a_failing_tool(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "bin.index").write_text(f"{logs}/bin.000007\n")
    env = _stub_binlog_tool(tmp_path, RAW, code=1)
    index = Key("preflight.db1.log_bin_index")
    shell = Shell.line("db1", *binlog_gtids_command(str(tmp_path / "data"), Ref(index)))
    proc = _run(shell.bind({str(index): str(logs / "bin.index")}), env)
    assert proc.returncode == 0, proc.stderr
    read = parse_binlog_output(proc.stdout)
    assert (read.file, read.exit_code, read.has_list) == (f"{logs}/bin.000007", 1, True)
    # log_bin off at preflight: NULL captured: nothing to read
    proc = _run(shell.bind({str(index): None}), env)
    assert parse_binlog_output(proc.stdout).missing == "no binary log index"


def test_the_command_without_an_index(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    env = _stub_binlog_tool(tmp_path, RAW)
    proc = _run(Shell.line("db1", *binlog_gtids_command(str(tmp_path / "data"))).bind({}), env)
    assert proc.returncode == 0
    assert proc.stdout.strip() == "RESYNC-NO-BINLOG no binary log index"


# -- MySQL file/position -------------------------------------------------------------------------------


@pytest.mark.parametrize(("recipient", "donor", "ahead"), [
    (("mysql-bin.000010", 4), ("mysql-bin.000009", 99999), True),
    (("mysql-bin.000009", 500), ("mysql-bin.000009", 400), True),
    (("mysql-bin.000009", 400), ("mysql-bin.000009", 400), False),
    (("mysql-bin.000009", 4), ("mysql-bin.000010", 4), False),
    (("mysql-bin.999999", 4), ("mysql-bin.1000000", 4), False),  # numeric, not text order
    (("binlog.000003", 900), ("db1-bin.000003", 100), True),  # by suffix whatever the basename
])
def test_binlog_positions_compare_by_file_number_then_position(
        recipient: tuple[str, int], donor: tuple[str, int], ahead: bool) -> None:
    assert position_ahead(recipient, donor) is ahead


def test_a_file_without_a_number_is_an_error() -> None:
    assert binlog_sequence("mysql-bin.000012") == 12
    with pytest.raises(ValueError, match="not a binary log file name"):
        binlog_sequence("mysql-bin")


@pytest.mark.parametrize(("host", "port", "expected"), [
    ("db1.example.internal", 3306, True),
    ("DB1.Example.Internal.", "3306", True),
    ("db1.example.internal", 3307, False),
    ("10.0.0.1", 3306, False),
    ("", 3306, False),
    (None, None, False),
    ("db1.example.internal", "", False),
])
def test_replicates_from_the_recipient(host: object, port: object, expected: bool) -> None:
    assert replicates_from(host, port, ("db1.example.internal",), 3306) is expected


# -- verdicts: MariaDB ------------------------------------------------------------------------------


def test_mariadb_mode_and_actions(loaded: LoadedRunbook) -> None:
    gate = errant_gate(loaded, MARIADB)
    assert gate.mode == "mariadb"
    recipient, donor = gate.preflight_actions()
    assert isinstance(recipient, Capture) and recipient.host == "db1"
    assert recipient.render() == "SELECT @@GLOBAL.gtid_binlog_state AS binlog_state"
    assert isinstance(donor, Capture) and donor.host == "db2"
    assert donor.outputs() == tuple(Key(k) for k in donor_state())
    assert "refused if it has any" in gate.criterion()
    assert "DISCARDED" in errant_gate(loaded, MARIADB, discard_errant=True).criterion()


def test_mariadb_covered_passes(loaded: LoadedRunbook) -> None:
    gate = errant_gate(loaded, MARIADB)
    captured = {r("gtid_binlog_state"): "0-1-1004", r("log_bin"): 1,
                **donor_state("0-1-1004,0-2-1006", "0-1-1004", "0-2-1006")}
    assert gate.judge(captured).startswith("none: every transaction of db1 is on db2")


def test_mariadb_swapped_roles_are_refused_with_the_errant_gtids(loaded: LoadedRunbook) -> None:
    # the seed's story read the wrong way round: db1 (recipient) got writes db2 never saw
    gate = errant_gate(loaded, MARIADB)
    captured = {r("gtid_binlog_state"): "0-1-1004,0-2-1006", **donor_state("0-1-1002", "", "0-1-1002")}
    with pytest.raises(ResyncError) as refused:
        gate.judge(captured)
    text = str(refused.value)
    assert "db1 has transactions db2 lacks: 0-1-1003..0-1-1004" in text
    assert "0-2-1..0-2-1006" in text and "donor's last none" in text
    assert "swapped" in text and DISCARD_OPTION in text


def test_mariadb_discarding_lists_what_is_discarded(loaded: LoadedRunbook) -> None:
    gate = errant_gate(loaded, MARIADB, discard_errant=True)
    captured = {r("gtid_binlog_state"): "0-1-7", **donor_state("0-1-5")}
    detail = gate.judge(captured)
    assert "DISCARDED" in detail and "0-1-6..0-1-7" in detail
    assert "db1's binary logs stay with its old datadir" in detail


def test_mariadb_without_a_binary_log_has_nothing_to_compare(loaded: LoadedRunbook) -> None:
    gate = errant_gate(loaded, MARIADB)
    captured = {r("gtid_binlog_state"): "", r("log_bin"): 0, **donor_state("0-2-5")}
    assert gate.judge(captured).startswith("nothing to compare: db1 does not write a binary log")


def test_a_missing_value_is_not_checked_rather_than_passed(loaded: LoadedRunbook) -> None:
    gate = errant_gate(loaded, MARIADB)
    with pytest.raises(NotCaptured, match=r"preflight\.db1\.gtid_binlog_state"):
        gate.judge(donor_state("0-1-5"))


def test_an_unreadable_state_refuses(loaded: LoadedRunbook) -> None:
    gate = errant_gate(loaded, MARIADB)
    with pytest.raises(ResyncError, match="cannot be proven: not a MariaDB GTID"):
        gate.judge({r("gtid_binlog_state"): "garbage", **donor_state("0-1-5")})


def test_a_stopped_mariadb_recipient_is_read_from_its_binary_log(loaded: LoadedRunbook) -> None:
    gate = errant_gate(loaded, MARIADB, frozenset({"db1"}))
    assert gate.mode == "mariadb-binlog"
    shell, donor = gate.preflight_actions()
    assert isinstance(shell, Shell) and shell.privileged and shell.host == "db1"
    assert shell.into == preflight_value("db1", "binlog_gtids")
    assert "mariadb-binlog --no-defaults" not in shell.render()  # found with command -v
    assert "/var/lib/mysql" in shell.render() and "grep -v relay" in shell.render()
    assert isinstance(donor, Capture) and donor.host == "db2"
    assert "last binary log" in gate.criterion()
    covered = {r("binlog_gtids"): RAW, **donor_state("0-1-3,0-7-6", "3-1-2")}
    assert gate.judge(covered).startswith("none:")
    with pytest.raises(ResyncError, match=r"0-7-6 \(domain 0, server_id 7"):
        gate.judge({r("binlog_gtids"): RAW, **donor_state("0-1-3,0-7-5", "3-1-2")})


@pytest.mark.parametrize(("output", "why"), [
    ("RESYNC-NO-BINLOG no binary log index", "could not be read from db1's datadir"),
    ("RESYNC-BINLOG /var/lib/mysql/mysql-bin.000002\nRESYNC-EXIT 1", "Gtid list event"),
])
def test_a_stopped_recipient_whose_log_cannot_be_read_is_refused_unless_discarding(
        loaded: LoadedRunbook, output: str, why: str) -> None:
    captured = {r("binlog_gtids"): output, **donor_state("0-1-3")}
    with pytest.raises(ResyncError, match=why):
        errant_gate(loaded, MARIADB, frozenset({"db1"})).judge(captured)
    detail = errant_gate(loaded, MARIADB, frozenset({"db1"}), discard_errant=True).judge(captured)
    assert "DISCARDED" in detail


# -- verdicts: MySQL ---------------------------------------------------------------------------------


def test_mysql_mode_follows_the_gtid_facts(loaded: LoadedRunbook) -> None:
    on, off = {"db1": True, "db2": True}, {"db1": True, "db2": False}
    assert errant_gate(loaded, MYSQL, gtid_enabled=on).mode == "mysql-gtid"
    assert errant_gate(loaded, MYSQL, gtid_enabled=off).mode == "mysql-file-pos"
    assert errant_gate(loaded, MYSQL).mode == "mysql-auto"
    assert errant_gate(loaded, MYSQL, frozenset({"db1"}), gtid_enabled=on).mode == "mysql-stopped"


def test_mysql_gtid_subset_is_asked_of_the_donor(loaded: LoadedRunbook) -> None:
    gate = errant_gate(loaded, MYSQL, gtid_enabled={"db1": True, "db2": True})
    recipient, donor = gate.preflight_actions()
    assert isinstance(recipient, Capture) and recipient.host == "db1"
    assert isinstance(donor, Capture) and donor.host == "db2"
    executed = Ref(preflight_value("db1", "gtid_executed"))
    assert donor.params == (executed, executed)
    assert "GTID_SUBSET(%s, @@GLOBAL.gtid_executed) AS subset" in donor.sql
    assert "GTID_SUBTRACT(%s, @@GLOBAL.gtid_executed) AS errant" in donor.sql
    assert donor.render({r("gtid_executed"): "uuid:1-5"}).count("'uuid:1-5'") == 2


def test_mysql_gtid_verdicts(loaded: LoadedRunbook) -> None:
    gate = errant_gate(loaded, MYSQL, gtid_enabled={"db1": True, "db2": True})
    base = {r("gtid_executed"): "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-10"}
    assert "is a subset of db2's" in gate.judge({**base, d("gtid_subset"): 1, d("gtid_errant"): ""})
    with pytest.raises(ResyncError, match="db1 has transactions db2 lacks: "
                                          "3e11fa47-71ca-11e1-9e33-c80aa9429562:9-10"):
        gate.judge({**base, d("gtid_subset"): 0,
                    d("gtid_errant"): "3e11fa47-71ca-11e1-9e33-c80aa9429562:9-10"})


def test_mysql_file_position_actions_use_the_versions_names(loaded: LoadedRunbook) -> None:
    gate = errant_gate(loaded, MYSQL57, gtid_enabled={"db1": False, "db2": False})
    recipient, donor = gate.preflight_actions()
    assert isinstance(recipient, Capture) and recipient.sql == "SHOW MASTER STATUS"
    assert recipient.missing is None  # binary logging off: no row, values None
    assert isinstance(donor, Capture) and donor.sql == "SHOW SLAVE STATUS"
    assert [c for c, _ in donor.columns] == ["Master_Host", "Master_Port", "Relay_Master_Log_File",
                                             "Exec_Master_Log_Pos"]
    new = errant_gate(loaded, MYSQL, gtid_enabled={"db1": False, "db2": False})
    assert [a.render() for a in new.preflight_actions()] == ["SHOW MASTER STATUS",
                                                             "SHOW REPLICA STATUS"]


def file_pos(host: Value, port: Value, d_file: Value, d_pos: Value, r_file: Value,
             r_pos: Value) -> dict[str, Value]:
    return {d("source_host"): host, d("source_port"): port, d("source_file"): d_file,
            d("source_exec_pos"): d_pos, r("binlog_file"): r_file, r("binlog_pos"): r_pos}


def test_mysql_file_position_verdicts(loaded: LoadedRunbook) -> None:
    gate = errant_gate(loaded, MYSQL, gtid_enabled={"db1": False, "db2": False})
    ahead = file_pos("db1.example.internal", 3306, "mysql-bin.000004", 1200, "mysql-bin.000005", 154)
    with pytest.raises(ResyncError, match=r"db1's binary log from mysql-bin.000004:1200 to "
                                          r"mysql-bin.000005:154 \(never executed on db2\)"):
        gate.judge(ahead)
    even = file_pos("db1.example.internal", 3306, "mysql-bin.000005", 154, "mysql-bin.000005", 154)
    assert gate.judge(even).startswith("none: every transaction of db1 is on db2 (db1 is at "
                                       "mysql-bin.000005:154")
    elsewhere = file_pos("db9", 3306, "mysql-bin.000004", 1200, "mysql-bin.000005", 154)
    assert gate.judge(elsewhere).startswith("cannot be proven without GTIDs: db2 replicates from "
                                            "db9:3306, not from db1")
    alone = file_pos(None, None, None, None, "mysql-bin.000005", 154)
    assert "db2 does not replicate" in gate.judge(alone)
    no_log = file_pos("db1.example.internal", 3306, "mysql-bin.000004", 1200, None, None)
    assert gate.judge(no_log).startswith("nothing to compare: db1 writes no binary log")
    assert "DISCARDED" in errant_gate(loaded, MYSQL, discard_errant=True,
                                      gtid_enabled={"db1": False, "db2": False}).judge(ahead)


def test_mysql_auto_decides_by_the_servers_gtid_mode(loaded: LoadedRunbook) -> None:
    gate = errant_gate(loaded, MYSQL)
    assert len(gate.preflight_actions()) == 4  # both comparisons are captured
    ahead = file_pos("db1.example.internal", 3306, "mysql-bin.000004", 1200, "mysql-bin.000005", 154)
    gtid: dict[str, Value] = {r("gtid_executed"): "u:1-3", d("gtid_subset"): 1, d("gtid_errant"): ""}
    assert "subset" in gate.judge({**ahead, **gtid, r("gtid_mode"): "ON", d("gtid_mode"): "ON"})
    with pytest.raises(ResyncError, match="never executed on db2"):
        gate.judge({**ahead, **gtid, r("gtid_mode"): "ON", d("gtid_mode"): "OFF"})


def test_a_stopped_mysql_recipient_cannot_be_proven(loaded: LoadedRunbook) -> None:
    gate = errant_gate(loaded, MYSQL, frozenset({"db1"}))
    assert gate.preflight_actions() == ()
    with pytest.raises(ResyncError, match="cannot be proven: db1 is down and runs MySQL"):
        gate.judge({})
    detail = errant_gate(loaded, MYSQL, frozenset({"db1"}), discard_errant=True).judge({})
    assert "DISCARDED" in detail and "binary logs stay with its old datadir" in detail


# -- at the point of no return --------------------------------------------------------------------------


def only(actions: tuple[Any, ...]) -> ErrantRecheck:
    (action,) = actions
    assert isinstance(action, ErrantRecheck)
    return action


def test_recheck_of_mariadb_reads_the_stopped_recipients_binary_log(loaded: LoadedRunbook) -> None:
    recheck = only(errant_recheck(loaded, MARIADB, donor_up=True))
    donor, shell, check = recheck.parts()
    assert isinstance(donor, Capture) and donor.host == "db2"
    assert donor.outputs() == tuple(Key(k) for k in donor_state())  # the preflight's keys
    assert isinstance(shell, Shell) and shell.into == Key("recheck.db1.binlog_gtids")
    # the index the preflight saw the running server use
    assert "<preflight.db1.log_bin_index>" in shell.render()
    assert shell.render().startswith("o=<recipient.old_datadir>; if [ -e \"$o\" ]; then echo "
                                     "\"RESYNC-MOVED $o\"; exit 0; fi; ")
    assert isinstance(check, Assert)
    assert check.render() == "assert db1 has no transaction db2 lacks: <recheck.db1.errant>"
    # a donor already stopped: the preflight's values; a recipient stopped at preflight: no index
    stopped = only(errant_recheck(loaded, MARIADB, donor_up=False, down=frozenset({"db1"})))
    shell, check = stopped.parts()
    assert isinstance(shell, Shell) and "log_bin_index" not in shell.render()
    assert "DISCARDED" in only(errant_recheck(loaded, MARIADB, True, donor_up=False)
                               ).parts()[-1].render()


def test_recheck_of_mysql(loaded: LoadedRunbook) -> None:
    on = {"db1": True, "db2": True}
    gtid = only(errant_recheck(loaded, MYSQL, donor_up=True, gtid_enabled=on)).parts()
    assert [type(p) for p in gtid] == [Capture, Assert] and "GTID_SUBSET" in gtid[0].render()
    assert [type(p) for p in only(errant_recheck(loaded, MYSQL, donor_up=False, gtid_enabled=on)
                                  ).parts()] == [Assert]
    # file/position: the donor's replica status was reset by then: the preflight's values
    off = {"db1": False, "db2": False}
    assert [type(p) for p in only(errant_recheck(loaded, MYSQL, donor_up=True, gtid_enabled=off)
                                  ).parts()] == [Assert]
    stopped = only(errant_recheck(loaded, MYSQL, donor_up=True, down=frozenset({"db1"})))
    assert [type(p) for p in stopped.parts()] == [Assert]


@dataclass
class World(FakeWorld):
    """Replies by SQL text; commands run for real through bash (the stub tool on PATH)."""

    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def answer(self, host: str, command: str) -> CommandResult:
        proc = _run(command, self.env)
        return CommandResult(host, command, proc.returncode, proc.stdout, proc.stderr)


DONOR_SQL = ("SELECT @@GLOBAL.gtid_binlog_state AS binlog_state, @@GLOBAL.gtid_slave_pos AS "
             "slave_pos, @@GLOBAL.gtid_current_pos AS current_pos")


def run_recheck(tmp_path: Path, recheck: ErrantRecheck, donor: dict[str, Any],
                captured: dict[str, Value]) -> Executor:
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    (logs / "mysql-bin.index").write_text("./mysql-bin.000001\n")
    world = World(replies={DONOR_SQL: [donor]}, env=_stub_binlog_tool(tmp_path, RAW))
    journal = MemoryJournal()
    journal.data.captured.update({r("log_bin_index"): str(logs / "mysql-bin.index"),
                                  "recipient.old_datadir": str(tmp_path / "old-datadir"),
                                  **captured})
    ex = Executor(journal, hosts=world.host, connect=world.connect)
    ex.begin("move-datadir-aside:db1")
    try:
        ex.run((recheck,))
    finally:
        ex.close()
    return ex


def test_recheck_passes_and_journals_every_part(tmp_path: Path, loaded: LoadedRunbook) -> None:
    recheck = only(errant_recheck(loaded, MARIADB, donor_up=True))
    donor = {"binlog_state": "0-1-3,0-7-6", "slave_pos": "", "current_pos": "3-1-2"}
    ex = run_recheck(tmp_path, recheck, donor, {})
    records = ex.journal.data.commands
    assert [rec.kind for rec in records] == ["capture", "shell", "assert"]
    assert all(rec.ok for rec in records)
    assert records[-1].text.startswith("assert db1 has no transaction db2 lacks: none: every "
                                       "transaction of db1 is on db2")
    summary = ex.journal.data.captured["recheck.db1.errant"]
    assert isinstance(summary, str) and summary.startswith("none:")


def test_recheck_refuses_as_a_gate(tmp_path: Path, loaded: LoadedRunbook) -> None:
    recheck = only(errant_recheck(loaded, MARIADB, donor_up=True))
    donor = {"binlog_state": "0-1-3", "slave_pos": "", "current_pos": ""}
    with pytest.raises(ErrantTransactions) as refused:
        run_recheck(tmp_path, recheck, donor, {})
    assert isinstance(refused.value, GateRefused) and refused.value.exit_code == 3
    text = str(refused.value)
    assert text.startswith("refusing to move db1's datadir aside: db1 has transactions db2 lacks")
    assert "0-7-1..0-7-6" in text and "3-1-1..3-1-2" in text


def test_recheck_with_the_donor_down_uses_the_preflights_values(tmp_path: Path,
                                                                loaded: LoadedRunbook) -> None:
    recheck = only(errant_recheck(loaded, MARIADB, True, donor_up=False))
    captured = donor_state("0-1-3")  # captured by the preflight
    ex = run_recheck(tmp_path, recheck, {}, captured)
    assert [rec.kind for rec in ex.journal.data.commands] == ["shell", "assert"]
    assert "DISCARDED" in str(ex.journal.data.captured["recheck.db1.errant"])


def test_a_repeated_step_whose_datadir_is_already_aside_passes(tmp_path: Path,
                                                                loaded: LoadedRunbook) -> None:
    # a resumed move step runs its plan again: the datadir went aside after this check passed
    (tmp_path / "old-datadir").mkdir()
    recheck = only(errant_recheck(loaded, MARIADB, donor_up=True))
    donor = {"binlog_state": "0-1-1", "slave_pos": "", "current_pos": ""}  # errant, if it were read
    ex = run_recheck(tmp_path, recheck, donor, {"recheck.db1.errant": "none: every transaction"})
    assert all(rec.ok for rec in ex.journal.data.commands)
    summary = str(ex.journal.data.captured["recheck.db1.errant"])
    assert summary.startswith(f"db1's datadir is already aside at {tmp_path / 'old-datadir'}: an "
                              "earlier attempt of this step checked it and moved it (none: every")
    assert not (tmp_path / "args").exists(), "the binary log was not read"


def test_recheck_of_a_stopped_mysql_recipient_refuses_unless_discarding(
        tmp_path: Path, loaded: LoadedRunbook) -> None:
    with pytest.raises(ErrantTransactions, match="db1 is down and runs MySQL"):
        run_recheck(tmp_path, only(errant_recheck(loaded, MYSQL, donor_up=True,
                                                  down=frozenset({"db1"}))), {}, {})
    ex = run_recheck(tmp_path, only(errant_recheck(loaded, MYSQL, True, donor_up=True,
                                                   down=frozenset({"db1"}))), {}, {})
    assert [rec.ok for rec in ex.journal.data.commands] == [True]


def test_the_recheck_conforms_to_its_plan(tmp_path: Path, loaded: LoadedRunbook) -> None:
    actions = errant_recheck(loaded, MARIADB, donor_up=True)
    donor = {"binlog_state": "0-1-3,0-7-6", "slave_pos": "", "current_pos": "3-1-2"}
    ex = run_recheck(tmp_path, only(actions), donor, {})
    data = ex.journal.data
    key = "move-datadir-aside:db1"
    data.plan = {"steps": [{"key": key, "actions": [v.as_json() for v in views(actions)]}]}
    data.steps = [StepRecord(key=key, title="move", state=StepState.DONE, attempts=1)]
    assert {(rec.step, rec.attempt) for rec in data.commands} == {(key, 1)}
    assert mismatches(data) == []
