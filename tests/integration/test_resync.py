"""The resync, end to end, on real servers: `resync run/resume/rollback/verify/check` as a user runs them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    ProcessListWatch,
    connect,
    dialect,
    fail_over_and_damage_db1,
    journal_of,
    load_app_data,
    resync,
    seed_incident,
    sql,
    start_run_until_copy,
    verify_ok,
    wait_rows,
    write_runbook,
)

from resync.testing.sandbox import REPL_PASSWORD_ENV, SANDBOX_PASSWORD_ENV, Sandbox


# --- scenarios -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["gtid", "file_pos"])
def test_seed_scenario_rebuilds_old_primary_from_replica(tmp_path: Path, sandbox_pair: Any,
                                                         mode: str) -> None:
    pair = sandbox_pair
    runbook = seed_incident(tmp_path, pair, mode=mode)

    with ProcessListWatch([os.environ[SANDBOX_PASSWORD_ENV], os.environ[REPL_PASSWORD_ENV]]) as ps:
        out = resync(tmp_path, "run", "--yes", str(runbook), check=True).stdout
    assert ps.samples > 10 and ps.seen == [], "no password in any process's command line"

    assert "verification (key-chunk checksums)" in out
    # db1 has db2's data: the failover write, the updates, and not its own damage
    assert sql(pair, "db1", "SELECT item FROM app.orders WHERE id = 5001") == [
        {"item": "written on db2 after failover"}]
    assert sql(pair, "db1", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 9999") == [{"n": 0}]
    assert sql(pair, "db1", "SELECT COUNT(*) AS n FROM app.orders") == [{"n": 2001}]
    assert sql(pair, "db1", "SELECT COUNT(*) AS n FROM app.audit") == [{"n": 500}]
    # db1 is the primary again: its writes reach db2
    sql(pair, "db1", "INSERT INTO app.orders VALUES (7001, 'written on db1 after resync', 2)")
    wait_rows(pair, "db2", "SELECT item FROM app.orders WHERE id = 7001",
              [{"item": "written on db1 after resync"}])
    d1, d2 = dialect(pair, "db1"), dialect(pair, "db2")
    assert sql(pair, "db1", d1.replica_status().sql) == []
    status = sql(pair, "db2", d2.replica_status().sql)[0]
    assert status[d2.status_fields.io_running] == "Yes"
    assert status[d2.status_fields.sql_running] == "Yes"
    using_gtid = str(status[d2.status_fields.using_gtid])
    assert using_gtid in (("Slave_Pos", "1") if mode == "gtid" else ("No", "0"))
    assert "tables equal" in verify_ok(tmp_path, runbook)

    journal = json.loads(journal_of(tmp_path).read_text())
    assert journal["outcome"] == "done"
    assert all(s["state"] == "done" for s in journal["steps"])
    old = Path(journal["captured"]["recipient.old_datadir"])
    if isinstance(pair, Sandbox):
        assert (old / "app" / "orders.ibd").exists(), "the old datadir must be kept"
        assert os.path.getsize(old / "app" / "audit.MYD") == 1000, "kept as it was, damage included"
    text = journal_of(tmp_path).read_text()
    for secret in (os.environ[SANDBOX_PASSWORD_ENV], os.environ[REPL_PASSWORD_ENV]):
        assert secret not in text
    assert journal["captured"]["copy.bytes"] > 1_000_000

    resync(tmp_path, "cleanup", "--yes", str(journal_of(tmp_path)), check=True)
    assert not old.exists(), "cleanup removes the old datadir once the run is done and verified"


@pytest.mark.parametrize("mode", ["gtid", "file_pos"])
def test_drifted_replica_is_rebuilt_from_primary(tmp_path: Path, sandbox_pair: Any, mode: str) -> None:
    pair = sandbox_pair
    load_app_data(pair)
    conn = connect(pair, "db2")
    with conn.cursor() as cur:  # drift: writes on the replica that the primary never saw
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.execute("UPDATE app.orders SET qty = -1 WHERE id < 100")
        cur.execute("DELETE FROM app.audit WHERE id > 400")
    conn.close()
    runbook = write_runbook(tmp_path, pair, donor="db1", recipient="db2", primary_after="db1",
                            mode=mode)
    drift = resync(tmp_path, "verify", str(runbook))
    assert drift.returncode == 1, "the drift must be detected"
    assert "checksums differ for: app.audit, app.orders" in drift.stderr

    resync(tmp_path, "run", "--yes", str(runbook), check=True)

    assert sql(pair, "db2", "SELECT COUNT(*) AS n FROM app.orders WHERE qty = -1") == [{"n": 0}]
    assert sql(pair, "db2", "SELECT COUNT(*) AS n FROM app.audit") == [{"n": 500}]
    sql(pair, "db1", "INSERT INTO app.orders VALUES (8001, 'after rebuild', 3)")
    wait_rows(pair, "db2", "SELECT item FROM app.orders WHERE id = 8001", [{"item": "after rebuild"}])
    assert sql(pair, "db1", dialect(pair, "db1").replica_status().sql) == []
    verify_ok(tmp_path, runbook)


def _run_until_copied_then_kill(tmp_path: Path, runbook: Path) -> Path:
    proc = start_run_until_copy(tmp_path, runbook, "done")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return journal_of(tmp_path)


def test_sigkill_after_copy_then_resume_finishes(tmp_path: Path, sandbox_pair: Any) -> None:
    pair = sandbox_pair
    runbook = seed_incident(tmp_path, pair)
    journal = _run_until_copied_then_kill(tmp_path, runbook)
    assert json.loads(journal.read_text())["outcome"] is None

    resync(tmp_path, "resume", "--yes", str(journal), check=True)

    data = json.loads(journal.read_text())
    assert data["outcome"] == "done"
    assert [s["key"] for s in data["steps"] if s["state"] != "done"] == []
    verify_ok(tmp_path, runbook)
    assert sql(pair, "db1", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 5001") == [{"n": 1}]


def test_rollback_after_datadir_swap_restores_old_datadir(tmp_path: Path, sandbox_pair: Any) -> None:
    pair = sandbox_pair
    runbook = seed_incident(tmp_path, pair)
    journal = _run_until_copied_then_kill(tmp_path, runbook)
    old = Path(json.loads(journal.read_text())["captured"]["recipient.old_datadir"])

    resync(tmp_path, "rollback", "--yes", str(journal), check=True)

    # db1 runs on its own old data again (the row only it had is back); db2 runs untouched
    assert sql(pair, "db1", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 9999") == [{"n": 1}]
    assert sql(pair, "db1", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 5001") == [{"n": 0}]
    assert sql(pair, "db2", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 5001") == [{"n": 1}]
    assert not old.exists(), "the old datadir went back into place"
    # db2 points at db1 again, as before the run (stopped, as the failover left it)
    d2 = dialect(pair, "db2")
    status = sql(pair, "db2", d2.replica_status().sql)[0]
    assert int(status[d2.status_fields.source_port]) == pair.runbook_hosts()["db1"]["mysql"]["port"]
    assert status[d2.status_fields.sql_running] == "No"
    assert Path(f"{old}.rejected").is_dir(), "the copied datadir is kept aside, not deleted"
    assert json.loads(journal.read_text())["outcome"] == "rolled back"
    refused = resync(tmp_path, "cleanup", "--yes", str(journal))
    assert refused.returncode == 3 and "has not finished with its data verified" in refused.stderr
    again = resync(tmp_path, "resume", "--yes", str(journal))
    assert again.returncode == 3 and "this run is rolled back: nothing to resume" in again.stderr


# --- refusals: nothing changes --------------------------------------------------------------------
def test_lock_timeout_names_the_blocker_and_rollback_restores_the_recipient(
        tmp_path: Path, sandbox_pair: Any) -> None:
    pair = sandbox_pair
    load_app_data(pair)
    runbook = write_runbook(tmp_path, pair, donor="db1", recipient="db2", primary_after="db1",
                            lock_wait_timeout=1)
    blocker = connect(pair, "db1")
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLES app.orders WRITE")
    sleeper = threading.Thread(target=lambda: sql(pair, "db1", "SELECT SLEEP(8) AS s"))
    sleeper.start()
    try:
        proc = resync(tmp_path, "run", "--yes", str(runbook))
    finally:
        blocker.close()
        sleeper.join()
    assert proc.returncode == 1, proc.stderr
    assert "could not take FLUSH TABLES WITH READ LOCK on db1 within 1s" in proc.stderr
    assert "no lock is held" in proc.stderr
    assert "SLEEP(8)" in proc.stderr, "the blocking queries are named"
    # the donor was never stopped nor locked; the recipient was stopped and went aside before
    # the lock (only the donor is inside the lock window): a rollback brings it back
    states = {s["key"]: s["state"] for s in json.loads(journal_of(tmp_path).read_text())["steps"]}
    assert states["read-lock:db1:source"] == "failed"
    assert [k for k, v in states.items() if v == "done"] == [
        "preflight", "stop-service:db2", "move-datadir-aside:db2", "preflush:db1"]
    assert sql(pair, "db1", "SELECT @@read_only AS ro") == [{"ro": 0}], "db1 serves on"
    resync(tmp_path, "rollback", "--yes", str(journal_of(tmp_path)), check=True)
    d2 = dialect(pair, "db2")
    assert sql(pair, "db2", d2.replica_status().sql)[0][d2.status_fields.sql_running] == "Yes"


def test_wrong_password_is_refused_before_anything(tmp_path: Path, sandbox_pair: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pair = sandbox_pair
    runbook = write_runbook(tmp_path, pair, donor="db2", recipient="db1")
    monkeypatch.setenv(SANDBOX_PASSWORD_ENV, "not-the-password")
    proc = resync(tmp_path, "run", "--yes", str(runbook))
    assert proc.returncode == 3
    assert "wrong user or password" in proc.stderr
    assert "not-the-password" not in proc.stderr + proc.stdout
    assert not (tmp_path / "resync-journal").exists(), "refused before a journal was started"


def test_check_reports_each_preflight_result(tmp_path: Path, sandbox_pair: Any) -> None:
    pair = sandbox_pair
    runbook = write_runbook(tmp_path, pair, donor="db2", recipient="db1")
    proc = resync(tmp_path, "check", str(runbook), "--all", check=True)
    assert "checks pass" in proc.stdout
    for name in ("distinct server_id", "replication user", "disk space", "db1: log_bin on"):
        assert name in proc.stdout
    assert "FAIL" not in proc.stdout


def test_status_shows_both_hosts(tmp_path: Path, sandbox_pair: Any) -> None:
    runbook = write_runbook(tmp_path, sandbox_pair, donor="db2", recipient="db1")
    out = resync(tmp_path, "status", str(runbook), check=True).stdout
    assert "db2 (donor)" in out and "db1 (recipient)" in out
    assert "IO Yes, SQL Yes, lag 0" in out  # db2 replicates from db1
    assert "not a replica" in out


def test_demo_runs_end_to_end(tmp_path: Path, sandbox_root: Path) -> None:
    proc = resync(tmp_path, "demo", "--yes", "--size-mb", "5", "--dir", str(sandbox_root))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "a row written on db1 arrived on db2" in proc.stdout
    assert re.search(r"verification \(key-chunk checksums\): ([\d,]+) of \1 tables equal\n",
                     proc.stdout), "every table equal"
    assert not list(sandbox_root.glob("sandbox/*/run/*.pid")), "servers stopped at the end"


def test_operator_abort_at_a_prompt_changes_nothing(tmp_path: Path, sandbox_pair: Any) -> None:
    pair = sandbox_pair
    runbook = write_runbook(tmp_path, pair, donor="db1", recipient="db2", primary_after="db1")
    proc = resync(tmp_path, "run", str(runbook), stdin="y\na\n")  # run preflight, abort the stop
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert "aborted by the operator before step 'stop-service:db2'" in proc.stderr
    assert "stop.sh" in proc.stdout, "the step was shown with its command first"
    assert "run this step? (y)es / (s)kip / (a)bort" in proc.stdout, "the choices are readable"
    data = json.loads(journal_of(tmp_path).read_text())
    assert data["outcome"] == "aborted"
    assert [s["state"] for s in data["steps"]][:2] == ["done", "pending"]
    d2 = dialect(pair, "db2")
    assert sql(pair, "db2", d2.replica_status().sql)[0][d2.status_fields.sql_running] == "Yes"


def test_equal_server_id_is_refused(tmp_path: Path, sandbox_pair: Any) -> None:
    pair = sandbox_pair
    original = sql(pair, "db1", "SELECT @@GLOBAL.server_id AS id")[0]["id"]
    other = sql(pair, "db2", "SELECT @@GLOBAL.server_id AS id")[0]["id"]
    sql(pair, "db1", "SET GLOBAL server_id = %s", (other,))
    try:
        runbook = write_runbook(tmp_path, pair, donor="db2", recipient="db1")
        proc = resync(tmp_path, "run", "--yes", str(runbook))
    finally:
        sql(pair, "db1", "SET GLOBAL server_id = %s", (original,))
    assert proc.returncode == 3, proc.stderr
    assert f"donor and recipient have the same server_id {other}" in proc.stderr
    states = [s["state"] for s in json.loads(journal_of(tmp_path).read_text())["steps"]]
    assert states[0] == "failed" and set(states[1:]) == {"pending"}


def test_seed_scenario_with_the_old_primary_already_shut_down(tmp_path: Path,
                                                              sandbox_pair: Any) -> None:
    """The seed's DBA shut the corrupted master down before resyncing: resync accepts a stopped
    recipient once its host shows that nothing holds its datadir open."""
    pair = sandbox_pair
    if not isinstance(pair, Sandbox):
        pytest.skip("stopping a server needs the local sandbox (RESYNC_TEST_TARGET is set)")
    load_app_data(pair)
    fail_over_and_damage_db1(pair)
    pair["db1"].stop()
    runbook = write_runbook(tmp_path, pair, donor="db2", recipient="db1")

    out = resync(tmp_path, "run", "--yes", str(runbook), check=True).stdout

    assert "db1: not running (nothing holds its datadir open)" in out, "the plan header says so"
    journal = json.loads(journal_of(tmp_path).read_text())
    stop = [c for c in journal["commands"] if c["step"] == "stop-service:db1"]
    assert [c["kind"] for c in stop] == ["probe", "when", "poll", "poll"], "no stop command ran"
    assert stop[1]["result"] == "else" and "0 = 1" in stop[1]["detail"]
    assert sql(pair, "db1", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 5001") == [{"n": 1}]
    verify_ok(tmp_path, runbook)


def test_unreachable_port_of_a_running_server_is_refused(tmp_path: Path, sandbox_pair: Any) -> None:
    """A wrong port must not pass for a stopped server: the datadir is in use, so refuse."""
    if not isinstance(sandbox_pair, Sandbox):
        pytest.skip("needs the local sandbox (RESYNC_TEST_TARGET is set)")
    hosts = sandbox_pair.runbook_hosts()
    hosts["db1"]["mysql"]["port"] = 1
    runbook = write_runbook(tmp_path, sandbox_pair, donor="db2", recipient="db1", hosts=hosts)
    proc = resync(tmp_path, "run", "--yes", str(runbook))
    assert proc.returncode == 3
    assert "a running process holds" in proc.stderr and "check mysql.host/port" in proc.stderr
    assert not (tmp_path / "resync-journal").exists()


def test_unreachable_donor_is_refused_before_anything(tmp_path: Path, sandbox_pair: Any) -> None:
    hosts = sandbox_pair.runbook_hosts()
    hosts["db2"]["mysql"]["port"] = 1  # nothing listens there
    runbook = write_runbook(tmp_path, sandbox_pair, donor="db2", recipient="db1", hosts=hosts)
    proc = resync(tmp_path, "run", "--yes", str(runbook))
    assert proc.returncode == 3
    assert "[db2] cannot connect" in proc.stderr and "server unreachable" in proc.stderr
    assert not (tmp_path / "resync-journal").exists()


def test_sigkill_during_the_copy_then_resume_stops_the_orphaned_ends(tmp_path: Path,
                                                                    sandbox_pair: Any) -> None:
    """Regression: the two ends of a copy outlive a killed resync; a resume that copied again
    beside them would mix two streams in one datadir."""
    pair = sandbox_pair
    if not isinstance(pair, Sandbox):
        pytest.skip("needs the local sandbox (RESYNC_TEST_TARGET is set)")
    runbook = seed_incident(tmp_path, pair, copy={"rate_limit_mb_per_s": 5})
    proc = start_run_until_copy(tmp_path, runbook, "running")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_id = json.loads(journal_of(tmp_path).read_text())["run_id"]
    orphans = subprocess.run(["pgrep", "-f", f"resync-copy-run {run_id}"], capture_output=True)
    assert orphans.returncode == 0, "the ends outlived the controller (the case this test pins)"

    resync(tmp_path, "resume", "--yes", str(journal_of(tmp_path)), check=True)

    left = subprocess.run(["pgrep", "-f", f"resync-copy-run {run_id}"], capture_output=True)
    assert left.returncode == 1, "no end of the copy is left running"
    verify_ok(tmp_path, runbook)
    assert sql(pair, "db1", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 5001") == [{"n": 1}]


def test_seed_scenario_with_gtid_strict_mode(tmp_path: Path, sandbox_pair: Any) -> None:
    """Regression: the new primary restarted its GTID sequence at 1 after RESET MASTER, below
    the sequence numbers the old replica had logged itself, and strict mode stopped replication."""
    pair = sandbox_pair
    if not isinstance(pair, Sandbox):
        pytest.skip("gtid_strict_mode in my.cnf needs the local sandbox (MariaDB)")
    for server in pair:  # in my.cnf: a SET GLOBAL would not survive the restarts of the run
        server.stop()
        with server.cnf.open("a") as cnf:
            cnf.write("\n[mariadbd]\ngtid_strict_mode = 1\n")
        server.start()
    pair.setup_replication("db1", "db2")
    assert sql(pair, "db2", "SELECT @@GLOBAL.gtid_strict_mode AS m") == [{"m": 1}]
    runbook = seed_incident(tmp_path, pair, mode="gtid")

    resync(tmp_path, "run", "--yes", str(runbook), check=True)

    sql(pair, "db1", "INSERT INTO app.orders VALUES (7101, 'strict', 1)")
    wait_rows(pair, "db2", "SELECT item FROM app.orders WHERE id = 7101", [{"item": "strict"}])
    verify_ok(tmp_path, runbook)


def test_recipient_datadir_on_a_mount_point_is_refused(tmp_path: Path, sandbox_pair: Any) -> None:
    pair = sandbox_pair
    if not isinstance(pair, Sandbox):
        pytest.skip("needs the local sandbox (RESYNC_TEST_TARGET is set)")
    datadir = str(pair["db1"].datadir)
    if subprocess.run(["mount", "--bind", datadir, datadir], capture_output=True).returncode:
        pytest.skip("bind mounts are not permitted here (mount --bind needs CAP_SYS_ADMIN)")
    try:
        runbook = write_runbook(tmp_path, pair, donor="db2", recipient="db1")
        proc = resync(tmp_path, "check", str(runbook))
    finally:
        subprocess.run(["umount", datadir], check=True)
    assert proc.returncode == 3
    assert "is a mount point" in proc.stdout


def test_rollback_of_a_finished_run_restores_both_servers(tmp_path: Path, sandbox_pair: Any) -> None:
    pair = sandbox_pair
    runbook = seed_incident(tmp_path, pair)
    resync(tmp_path, "run", "--yes", str(runbook), check=True)

    refused = resync(tmp_path, "rollback", "--yes", str(journal_of(tmp_path)))
    assert refused.returncode == 3, "a finished run is rolled back only with --force"
    assert "db1 the primary: it may have taken writes" in refused.stderr
    resync(tmp_path, "rollback", "--yes", "--force", str(journal_of(tmp_path)), check=True)

    assert sql(pair, "db1", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 9999") == [{"n": 1}]
    d2 = dialect(pair, "db2")
    status = sql(pair, "db2", d2.replica_status().sql)[0]
    assert int(status[d2.status_fields.source_port]) == pair.runbook_hosts()["db1"]["mysql"]["port"]
    assert status[d2.status_fields.sql_running] == "No", "stopped, as the failover had left it"


def test_reviewed_plan_binds_the_run(tmp_path: Path, sandbox_pair: Any) -> None:
    """plan --detect --out, then run --plan: the same plan runs and its hash is journaled; a
    runbook changed after the review (another copy port) is refused before anything runs."""
    pair = sandbox_pair
    runbook = seed_incident(tmp_path, pair)
    reviewed = tmp_path / "reviewed.json"
    resync(tmp_path, "plan", "--detect", "--out", str(reviewed), str(runbook), check=True)
    doc = json.loads(reviewed.read_text())

    text = runbook.read_text()
    changed = tmp_path / "changed.yaml"
    changed.write_text(text.replace("stall_timeout: 30", "stall_timeout: 31"))
    refused = resync(tmp_path, "run", "--yes", "--plan", str(reviewed), str(changed))
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "differs from the reviewed plan" in refused.stderr
    assert "no growth for 31s" in refused.stderr, refused.stderr
    assert not (tmp_path / "resync-journal").exists(), "nothing ran, no journal"

    resync(tmp_path, "run", "--yes", "--plan", str(reviewed), str(runbook), check=True)
    journal = json.loads(journal_of(tmp_path).read_text())
    assert journal["plan_sha256"] == doc["plan_sha256"]
    assert journal["plan"]["steps"] == doc["steps"]
    kinds = {c["kind"] for c in journal["commands"]}
    assert {"sql", "capture", "shell", "poll", "when", "check", "release"} <= kinds
    assert any(c["step"] == "detect" for c in journal["commands"]), "detection is journaled too"


def test_logs_outside_the_datadir_go_aside_with_it(tmp_path: Path, make_sandbox: Any) -> None:
    """log_bin under a logs directory (as /var/log/mysql): the old primary's binary logs are the
    only record of what it did; they go aside with its old datadir (RESET MASTER on the rebuilt
    server would delete them otherwise) and come back with a rollback."""
    pair = make_sandbox(logs_outside_datadir=True)
    pair.setup_replication("db1", "db2")
    runbook = seed_incident(tmp_path, pair)
    logs = pair["db1"].base / "logs"
    before = sorted(p.name for p in logs.glob("mysql-bin.*"))
    assert before, "db1 logs its binary log outside its datadir"

    resync(tmp_path, "run", "--yes", str(runbook), check=True)
    old = Path(json.loads(journal_of(tmp_path).read_text())["captured"]["recipient.old_datadir"])
    kept = Path(f"{old}.binlogs")
    # every file (and mysql-bin.state, written by the server's shutdown)
    assert set(before) <= {p.name for p in kept.iterdir()}, "moved aside"
    assert "written on db2 after failover" in str(sql(pair, "db1", "SELECT item FROM app.orders "
                                                                  "WHERE id = 5001"))

    resync(tmp_path, "rollback", "--yes", "--force", str(journal_of(tmp_path)), check=True)
    assert set(before) <= {p.name for p in logs.glob("mysql-bin.*")}, "back in place"
    assert not kept.exists()
    assert any(Path(f"{old}.rejected.binlogs").iterdir()), "the rebuilt server's logs: kept aside"
    assert sql(pair, "db1", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 9999") == [{"n": 1}]
