"""`copy.method: ebs` end to end: real MariaDB servers on loop-device volumes, moto's EC2 with the
block-level effect done on loop devices (ebs_peer.py says what is simulated), the product's own
discovery with the test-only serial map. The replica rebuild and the seed scenario, a rollback,
and the leftovers of a killed run found by tag and deleted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pymysql
import yaml
from aws import aws_fixture, moto_endpoint_fixture  # noqa: F401  (fixtures by name)
from ebs_peer import EbsWorld, ebs_pair_fixture, ebs_world_fixture  # noqa: F401
from helpers import (
    connect,
    fail_over_and_damage_db1,
    journal_of,
    load_app_data,
    resync,
    sql,
    verify_ok,
    wait_rows,
)

from resync.testing.sandbox import REPL_PASSWORD_ENV, Sandbox


def ebs_runbook(tmp_path: Path, world: EbsWorld, *, donor: str, recipient: str,
                primary_after: str, **ebs: Any) -> Path:
    doc = {
        "version": 1, "name": f"ebs-{donor}-to-{recipient}",
        "hosts": world.sandbox.runbook_hosts(), "donor": donor, "recipient": recipient,
        "primary_after": primary_after,
        "replication": {"user": "repl", "password_env": REPL_PASSWORD_ENV, "healthy_timeout": 60},
        "copy": {"method": "ebs", "stall_timeout": 30,
                 "ebs": world.ebs_section(donor, recipient, timeout=120, **ebs)},
    }
    path = tmp_path / "runbook.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def tagged(world: EbsWorld, run_id: str) -> dict[str, list[str]]:
    ec2 = world.aws.client("ec2")
    by_tag = [{"Name": "tag:resync:run-id", "Values": [run_id]}]
    return {"volumes": [v["VolumeId"] for v in ec2.describe_volumes(Filters=by_tag)["Volumes"]],
            "snapshots": [s["SnapshotId"] for s in ec2.describe_snapshots(
                OwnerIds=["self"], Filters=by_tag)["Snapshots"]]}


def mariadbd_pid(server: Any) -> int:
    return int(server.pidfile.read_text().strip())


class Writer:
    """Inserts into app.ticks on `host` every 20 ms through the run; counts what was acknowledged."""

    def __init__(self, pair: Sandbox, host: str) -> None:
        self.pair, self.host = pair, host
        self.acked: list[int] = []
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                conn = connect(self.pair, self.host)
                try:
                    with conn.cursor() as cur:
                        cur.execute("INSERT INTO app.ticks VALUES (%s)", (n,))
                    self.acked.append(n)
                finally:
                    conn.close()
            except pymysql.MySQLError:
                self.refused += 1
            time.sleep(0.02)


def test_replica_rebuilt_from_a_snapshot_while_the_primary_keeps_serving(
        tmp_path: Path, ebs_pair: EbsWorld) -> None:
    world, pair = ebs_pair, ebs_pair.sandbox
    load_app_data(pair)
    sql(pair, "db1", "CREATE TABLE app.ticks (n INT PRIMARY KEY) ENGINE=InnoDB")
    sql(pair, "db2", "SET GLOBAL read_only = OFF")
    sql(pair, "db2", "SET SESSION sql_log_bin = 0")  # a drift of the replica: repaired by the run
    runbook = ebs_runbook(tmp_path, world, donor="db1", recipient="db2", primary_after="db1",
                          freeze=True)
    donor_pid = mariadbd_pid(pair["db1"])

    with Writer(pair, "db1") as writer:
        out = resync(tmp_path, "run", "--yes", str(runbook), check=True).stdout
        time.sleep(0.5)

    assert "verification (CHECKSUM TABLE)" in out
    assert mariadbd_pid(pair["db1"]) == donor_pid, "the donor was never stopped"
    assert writer.acked and writer.refused == 0, "the primary took every write through the run"
    # every acknowledged write is on the rebuilt replica (it replicates from the snapshot's point)
    wait_rows(pair, "db2", "SELECT COUNT(*) AS n FROM app.ticks", [{"n": len(writer.acked)}])
    assert "match" in verify_ok(tmp_path, runbook)

    journal = json.loads(journal_of(tmp_path).read_text())
    captured = journal["captured"]
    assert journal["outcome"] == "done"
    assert 0 < captured["ebs.write_lock_seconds"] < 10
    assert captured["figures.write_downtime_seconds"] == captured["ebs.write_lock_seconds"]
    assert captured["donor.ebs.volume_id"] == world.volumes["db1"]
    assert captured["recipient.ebs.device"] == world.restore_device
    # the snapshot was taken with the filesystem frozen by resync (the hook found it frozen)
    (snap,) = world.of_kind("snapshot")
    assert snap.detail["frozen"] == "already"
    assert world.kinds()[-3:] == ["detach", "delete-volume", "delete-snapshot"]
    assert world.errors == []
    assert tagged(world, journal["run_id"]) == {"volumes": [], "snapshots": []}
    # the donor's filesystem is thawed: it takes writes (checked above) and fsfreeze -u says so
    thaw = subprocess.run(["fsfreeze", "-u", str(pair["db1"].base)], capture_output=True, text=True)
    assert thaw.returncode != 0 and "Invalid argument" in thaw.stderr
    # nothing of the run is left mounted on the recipient
    assert not any(str(m.target).startswith("/mnt/resync-") for m in _mounts())


def _mounts() -> list[Any]:
    from resync.testing.sandbox import mount_table

    return mount_table()


def test_seed_scenario_with_ebs_keeps_the_donor_read_only_until_it_replicates(
        tmp_path: Path, ebs_pair: EbsWorld) -> None:
    world, pair = ebs_pair, ebs_pair.sandbox
    load_app_data(pair)
    fail_over_and_damage_db1(pair)
    runbook = ebs_runbook(tmp_path, world, donor="db2", recipient="db1", primary_after="db1",
                          keep_snapshot=True)
    donor_pid = mariadbd_pid(pair["db2"])

    resync(tmp_path, "run", "--yes", str(runbook), check=True)

    assert mariadbd_pid(pair["db2"]) == donor_pid, "the donor was never stopped"
    assert sql(pair, "db1", "SELECT item FROM app.orders WHERE id = 5001") == [
        {"item": "written on db2 after failover"}]
    assert sql(pair, "db1", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 9999") == [{"n": 0}]
    assert sql(pair, "db1", "SELECT COUNT(*) AS n FROM app.audit") == [{"n": 500}]
    assert sql(pair, "db2", "SELECT @@read_only AS ro") == [{"ro": 1}]
    sql(pair, "db1", "INSERT INTO app.orders VALUES (7001, 'written on db1 after resync', 2)")
    wait_rows(pair, "db2", "SELECT item FROM app.orders WHERE id = 7001",
              [{"item": "written on db1 after resync"}])
    assert "match" in verify_ok(tmp_path, runbook)
    journal = json.loads(journal_of(tmp_path).read_text())
    assert journal["outcome"] == "done"
    # keep_snapshot: the snapshot stays, the temporary volume does not
    left = tagged(world, journal["run_id"])
    assert left["volumes"] == [] and left["snapshots"] == [journal["captured"]["ebs.snapshot_id"]]
    old = Path(journal["captured"]["recipient.old_datadir"])
    assert (old / "app" / "orders.ibd").exists(), "the old datadir is kept"


def test_rollback_after_the_copy_restores_and_deletes_what_the_run_made(
        tmp_path: Path, ebs_pair: EbsWorld) -> None:
    world, pair = ebs_pair, ebs_pair.sandbox
    load_app_data(pair)
    fail_over_and_damage_db1(pair)
    runbook = ebs_runbook(tmp_path, world, donor="db2", recipient="db1", primary_after="db1")
    # stop the run at its first question after the copy: answer "abort" there
    steps = json.loads(resync(tmp_path, "plan", str(runbook), "--format", "json",
                              check=True).stdout)["steps"]
    keys = [s["key"] for s in steps]
    answers = "".join("y\n" for _ in keys[:keys.index("start-service:db1")]) + "a\n"
    proc = resync(tmp_path, "run", str(runbook), stdin=answers)
    assert proc.returncode != 0, proc.stdout
    journal = json.loads(journal_of(tmp_path).read_text())
    assert journal["captured"].get("ebs.volume_id"), "the volume was made before the abort"
    assert sql(pair, "db2", "SELECT @@read_only AS ro") == [{"ro": 1}], "read-only after the snapshot"

    resync(tmp_path, "rollback", "--yes", str(journal_of(tmp_path)), check=True)

    # db1 has its old (damaged) data back; db2 takes writes again; AWS holds nothing of the run
    assert sql(pair, "db1", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 9999") == [{"n": 1}]
    assert sql(pair, "db2", "SELECT @@read_only AS ro") == [{"ro": 0}]
    assert tagged(world, journal["run_id"]) == {"volumes": [], "snapshots": []}
    assert world.restored is None
    assert not any(str(m.target).startswith("/mnt/resync-") for m in _mounts())


def test_cleanup_by_run_id_deletes_what_a_killed_run_left(tmp_path: Path,
                                                          ebs_pair: EbsWorld) -> None:
    world, pair = ebs_pair, ebs_pair.sandbox
    load_app_data(pair)
    runbook = ebs_runbook(tmp_path, world, donor="db1", recipient="db2", primary_after="db1")
    proc = subprocess.Popen([sys.executable, "-m", "resync", "run", "--yes", str(runbook)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    try:
        while not world.of_kind("attach"):  # the volume is attached: kill the run there
            assert proc.poll() is None, "the run ended before it attached its volume"
            assert time.monotonic() < deadline, "the run never attached its volume"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    run_id = json.loads(journal_of(tmp_path).read_text())["run_id"]
    left = tagged(world, run_id)
    assert left["volumes"] and left["snapshots"], left

    listed = resync(tmp_path, "cleanup", "--run-id", run_id, "--runbook", str(runbook), stdin="n\n")
    assert listed.returncode == 130, listed.stdout + listed.stderr  # the operator said no
    assert left["volumes"][0] in listed.stdout and tagged(world, run_id) == left, "nothing deleted"

    out = resync(tmp_path, "cleanup", "--run-id", run_id, "--runbook", str(runbook), "--yes",
                 check=True).stdout
    assert f"deleted {len(left['volumes']) + len(left['snapshots'])} leftover(s)" in out
    assert tagged(world, run_id) == {"volumes": [], "snapshots": []}
    (detach,) = world.of_kind("detach")
    assert detach.volume_id == left["volumes"][0]
    assert world.restored is None and world.errors == []
