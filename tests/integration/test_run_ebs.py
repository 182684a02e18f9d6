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
import pytest
import yaml
from aws import Imds, aws_fixture, imds_fixture, moto_endpoint_fixture  # noqa: F401  (by name)
from ebs_peer import EbsWorld, ebs_pair_fixture, ebs_world_fixture  # noqa: F401
from helpers import (
    connect,
    fail_over_and_damage_db1,
    journal_of,
    kill_when,
    load_app_data,
    resync,
    sql,
    start_run,
    step_states,
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


def drift(pair: Sandbox, host: str) -> None:
    """A row only the replica has, never binlogged (a drift, not an errant transaction)."""
    conn = connect(pair, host)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin = 0")
            cur.execute("INSERT INTO app.orders VALUES (8888, 'drift only on the replica', 0)")
    finally:
        conn.close()


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
    drift(pair, "db2")  # repaired by the run
    runbook = ebs_runbook(tmp_path, world, donor="db1", recipient="db2", primary_after="db1",
                          freeze=True)
    donor_pid = mariadbd_pid(pair["db1"])

    with Writer(pair, "db1") as writer:
        out = resync(tmp_path, "run", "--yes", str(runbook), check=True).stdout
        time.sleep(0.5)

    assert "verification (key-chunk checksums)" in out
    assert mariadbd_pid(pair["db1"]) == donor_pid, "the donor was never stopped"
    assert writer.acked and writer.refused == 0, "the primary took every write through the run"
    # every acknowledged write is on the rebuilt replica (it replicates from the snapshot's point)
    wait_rows(pair, "db2", "SELECT COUNT(*) AS n FROM app.ticks", [{"n": len(writer.acked)}])
    assert "tables equal" in verify_ok(tmp_path, runbook)

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
    assert "tables equal" in verify_ok(tmp_path, runbook)
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
    # the operator's Ctrl-C once the copy is done (inside the locked phase: no question there)
    proc = start_run(tmp_path, runbook)
    kill_when(tmp_path, proc, lambda j: any(k.startswith("copy-datadir:") and v == "done"
                                            for k, v in step_states(j).items()), sig=signal.SIGINT)
    assert proc.returncode == 130, (tmp_path / "run.err").read_text()[-2000:]
    journal = json.loads(journal_of(tmp_path).read_text())
    assert journal["outcome"] == "aborted"
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


def test_check_shows_the_figures_and_refuses_a_taken_attach_name(tmp_path: Path,
                                                                 ebs_pair: EbsWorld) -> None:
    world = ebs_pair
    good = ebs_runbook(tmp_path, world, donor="db1", recipient="db2", primary_after="db1")
    out = resync(tmp_path, "check", str(good), "--all", check=True).stdout
    flat = " ".join(out.split())
    assert f"donor {world.instances['db1']} (the runbook) in us-east-1a" in flat
    assert f"{world.volumes['db1']}: 1 GiB in us-east-1a, ext4" in flat
    assert "first snapshot ~" in flat and "write lock ~2s" in flat

    (tmp_path / "taken").mkdir()
    taken = ebs_runbook(tmp_path / "taken", world, donor="db1", recipient="db2",
                        primary_after="db1", device="/dev/sdf")  # db2's own data volume is there
    proc = resync(tmp_path, "check", str(taken))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "/dev/sdf is taken on the recipient" in " ".join(proc.stdout.split())
    assert world.of_kind("snapshot") == [], "a check changes nothing"


@pytest.fixture(name="swap_pair")
def swap_pair_fixture(make_sandbox: Any, ebs_world: Any) -> EbsWorld:
    """db1 primary -> db2 replica, each datadir the mount point of its own loop volume."""
    sandbox = make_sandbox(loop_volumes=True, volume_mount="datadir")
    sandbox.setup_replication("db1", "db2")
    world: EbsWorld = ebs_world(sandbox)
    return world


def fstab_for(tmp_path: Path, world: EbsWorld, server: str) -> Path:
    """An fstab (the test's own file: never the machine's) with the data mount of `server`."""
    s = world.sandbox[server]
    path = tmp_path / "fstab"
    path.write_text("# <file system> <mount point> <type> <options> <dump> <pass>\n"
                    "UUID=0000-root / ext4 errors=remount-ro 0 1\n"
                    f"{s.loop_device} {s.datadir} ext4 noatime,nofail 0 2\n")
    return path


def test_swap_makes_the_new_volume_the_data_volume_and_keeps_the_old_one(
        tmp_path: Path, swap_pair: EbsWorld) -> None:
    world, pair = swap_pair, swap_pair.sandbox
    load_app_data(pair)
    drift(pair, "db2")
    fstab = fstab_for(tmp_path, world, "db2")
    before = fstab.read_text()
    runbook = ebs_runbook(tmp_path, world, donor="db1", recipient="db2", primary_after="db1",
                          mode="swap", prewarm=True, fstab=str(fstab))
    # a file of the donor's that must not come along (the copy's exclusions: relay logs)
    (pair["db1"].datadir / "relay-bin.000999").write_bytes(b"donor's own")

    out = resync(tmp_path, "run", "--yes", str(runbook), check=True).stdout

    assert "verification (key-chunk checksums)" in out
    assert sql(pair, "db2", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 8888") == [{"n": 0}]
    sql(pair, "db1", "INSERT INTO app.orders VALUES (7001, 'after the swap', 1)")
    wait_rows(pair, "db2", "SELECT item FROM app.orders WHERE id = 7001", [{"item": "after the swap"}])
    journal = json.loads(journal_of(tmp_path).read_text())
    captured = journal["captured"]
    # db2's datadir is now the volume made from the snapshot, its fstab line follows it
    (mount,) = [m for m in _mounts() if str(m.target) == str(pair["db2"].datadir)]
    assert mount.source == world.restore_device
    uuid = captured["recipient.ebs.new_uuid"]
    assert subprocess.run(["blkid", "-s", "UUID", "-o", "value", world.restore_device],
                          capture_output=True, text=True).stdout.strip() == uuid
    lines = fstab.read_text().splitlines()
    assert lines[:2] == before.splitlines()[:2], "the other lines are untouched"
    assert lines[2].split() == [f"UUID={uuid}", str(pair["db2"].datadir), "ext4",
                                "noatime,nofail", "0", "2"]
    assert Path(f"{fstab}.resync-{journal['run_id']}").read_text() == before
    # the donor's own files did not come along; the old volume is kept, detached
    assert not (pair["db2"].datadir / "relay-bin.000999").exists()
    assert captured["recipient.ebs.old.volume_id"] == world.volumes["db2"]
    ec2 = world.aws.client("ec2")
    old = ec2.describe_volumes(VolumeIds=[world.volumes["db2"]])["Volumes"][0]
    assert old["State"] == "available" and old["Attachments"] == []
    assert captured["ebs.prewarm_seconds"] >= 0
    # swap: the new volume stays (it is the data volume); the snapshot goes
    left = tagged(world, journal["run_id"])
    assert left == {"volumes": [world.restore_volume_id], "snapshots": []}
    assert "tables equal" in verify_ok(tmp_path, runbook)

    # once verified, cleanup deletes the old data volume (and what went aside)
    resync(tmp_path, "cleanup", "--yes", str(journal_of(tmp_path)), check=True)
    assert ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": [world.volumes["db2"]]}])[
        "Volumes"] == []


def test_rollback_of_a_swap_puts_the_old_volume_and_fstab_back(tmp_path: Path,
                                                                swap_pair: EbsWorld) -> None:
    world, pair = swap_pair, swap_pair.sandbox
    load_app_data(pair)
    drift(pair, "db2")
    fstab = fstab_for(tmp_path, world, "db2")
    before = fstab.read_text()
    runbook = ebs_runbook(tmp_path, world, donor="db1", recipient="db2", primary_after="db1",
                          mode="swap", fstab=str(fstab))
    resync(tmp_path, "run", "--yes", str(runbook), check=True)

    resync(tmp_path, "rollback", "--yes", "--force", str(journal_of(tmp_path)), check=True)

    (mount,) = [m for m in _mounts() if str(m.target) == str(pair["db2"].datadir)]
    assert mount.source == pair["db2"].loop_device, "db2's own volume is its data volume again"
    assert fstab.read_text() == before
    assert sql(pair, "db2", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 8888") == [{"n": 1}]
    journal = json.loads(journal_of(tmp_path).read_text())
    assert tagged(world, journal["run_id"]) == {"volumes": [], "snapshots": []}
    ec2 = world.aws.client("ec2")
    old = ec2.describe_volumes(VolumeIds=[world.volumes["db2"]])["Volumes"][0]
    assert [a["InstanceId"] for a in old["Attachments"]] == [world.instances["db2"]]


def test_the_donor_instance_from_imds_and_the_figures_in_plan_detect(
        tmp_path: Path, ebs_pair: EbsWorld, imds: Any) -> None:
    world = ebs_pair
    stand_in: Imds = imds(instance_id=world.instances["db1"], address="127.0.0.1",
                          availability_zone="us-east-1a")
    runbook = ebs_runbook(tmp_path, world, donor="db1", recipient="db2", primary_after="db1",
                          donor_instance="auto")
    out = " ".join(resync(tmp_path, "plan", "--detect", str(runbook), check=True).stdout.split())
    assert "donor volume 1 GiB" in out and "first snapshot ~" in out and "write lock ~2s" in out
    assert "(the donor takes writes again once the snapshot has started)" in out
    token_reads = [r for r in stand_in.requests if r[0] == "PUT"]
    assert token_reads, "the instance id was read through IMDSv2 (a token first)"
    checked = " ".join(resync(tmp_path, "check", str(runbook), "--all", check=True).stdout.split())
    assert f"donor {world.instances['db1']} (IMDSv2 on the host) in us-east-1a" in checked
