"""The EBS test world itself (ebs_peer.py), against real peers: loop-volume sandboxes (real
mariadbd on ext4 over loop devices) and moto's EC2 in server mode on 127.0.0.1, whose snapshot,
volume, attach and detach calls the world's hooks turn into copies of images and loop devices.

Needs root, the MariaDB packages and losetup, mkfs.ext4, fsfreeze, findmnt, lsblk, mount;
skipped otherwise, naming what is missing.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
import pytest
from aws import Aws, aws_fixture, moto_endpoint_fixture  # noqa: F401  (fixtures by name)
from botocore.exceptions import ClientError
from ebs_peer import (  # noqa: F401  (fixtures by name)
    DATA_DEVICE,
    HARNESS_ERROR,
    NEW_DEVICE,
    EbsWorld,
    bound_to,
    ebs_pair_fixture,
    ebs_world_fixture,
    missing,
    mounts_of,
)

from resync.actions.types import Ref
from resync.model.ebs import EbsSettings
from resync.model.keys import Key
from resync.run.executor import Executor
from resync.run.journal import MemoryJournal
from resync.steps.copy.ebs import donor_volume_actions, recipient_device_actions
from resync.testing.sandbox import ADMIN_USER, Sandbox, SandboxError, loop_backing_file, mount_table
from resync.transport.local import LocalHost

pytestmark = pytest.mark.skipif(bool(missing()), reason=f"needs {', '.join(missing())}")


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def findmnt(path: Path) -> tuple[str, str, str]:
    source, target, fstype = sh("findmnt", "-n", "-o", "SOURCE,TARGET,FSTYPE", "-T", str(path)).split()
    return source, target, fstype


def lsblk_names() -> set[str]:
    tree = json.loads(sh("lsblk", "-J", "-o", "NAME,TYPE"))["blockdevices"]
    return {d["name"] for d in tree if d["type"] == "loop"}


def write_row(sandbox: Sandbox, token: str) -> None:
    """A row on db1, waited for on db2 (replication works)."""
    sandbox["db1"].sql("CREATE DATABASE IF NOT EXISTS world; CREATE TABLE IF NOT EXISTS world.t "
                       f"(v VARCHAR(64) PRIMARY KEY); INSERT INTO world.t VALUES ('{token}');")
    gtid = sandbox["db1"].query("SELECT @@gtid_binlog_pos AS p")[0]["p"]
    got = sandbox["db2"].query(f"SELECT MASTER_GTID_WAIT('{gtid}', 30) AS w")[0]["w"]
    assert got == "0", f"db2 did not reach {gtid}"
    assert sandbox["db2"].query(f"SELECT v FROM world.t WHERE v = '{token}'") == [{"v": token}]


@pytest.fixture(name="scratch")
def scratch_fixture(tmp_path: Path) -> Iterator[Path]:
    """A mount point for the test's own read-only mounts; unmounted whatever happens."""
    target = tmp_path / "mnt"
    target.mkdir()
    try:
        yield target
    finally:
        while any(m.target == target for m in mount_table()):
            subprocess.run(["umount", str(target)], check=False)


def test_a_loop_volume_sandbox_replicates_and_leaves_nothing(
        make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(loop_volumes=True)
    sandbox.setup_replication("db1", "db2")
    devices = set()
    for server in sandbox:
        assert server.loop_device is not None and server.image is not None
        assert bound_to(server.loop_device, server.image)
        assert findmnt(server.datadir) == (server.loop_device, str(server.base), "ext4")
        assert server.datadir.owner() == "mysql" and server.datadir.group() == "mysql"
        assert (server.datadir / "mysql").is_dir()  # db2's is the clone of db1's (cp -a)
        assert server.image.stat().st_blocks * 512 < server.image.stat().st_size // 2  # sparse
        devices.add(server.loop_device)
    assert len(devices) == 2
    write_row(sandbox, uuid.uuid4().hex)
    # the datadir can be renamed aside (it is not the mount point), as resync does
    db2 = sandbox["db2"]
    db2.stop()
    db2.datadir.rename(db2.base / "data.old")
    (db2.base / "data.old").rename(db2.datadir)
    db2.start()
    write_row(sandbox, uuid.uuid4().hex)
    sandbox.destroy()
    assert not any(m.target.is_relative_to(sandbox.root) for m in mount_table())
    for device in devices:
        assert not (loop_backing_file(device) or "").startswith(str(sandbox.root))
    assert not sandbox.root.exists()
    sandbox.destroy()  # idempotent


def test_destroy_releases_a_frozen_volume_with_a_mount_under_it(
        make_sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    """What a failed test may leave: a frozen filesystem and another mount inside it."""
    sandbox = make_sandbox(("db1",), loop_volumes=True)
    server = sandbox["db1"]
    inner = server.base / "inner"
    inner.mkdir()
    sh("mount", "-t", "tmpfs", "tmpfs", str(inner))
    sh("fsfreeze", "-f", str(server.base))
    sandbox.destroy(grace=5)
    assert not any(m.target.is_relative_to(sandbox.root) for m in mount_table())
    assert server.loop_device is not None and loop_backing_file(server.loop_device) is None
    assert not sandbox.root.exists()


def test_snapshot_volume_attach_detach_delete_on_loop_devices(
        ebs_pair: EbsWorld, scratch: Path) -> None:
    world, sandbox = ebs_pair, ebs_pair.sandbox
    ec2 = world.aws.client("ec2")
    donor, recipient = sandbox["db1"], "db2"
    before = uuid.uuid4().hex
    write_row(sandbox, before)
    (donor.base / "marker").write_text(before)

    snapshot = ec2.create_snapshot(VolumeId=world.volumes["db1"], Description="world")["SnapshotId"]
    (donor.base / "after-the-snapshot").write_text("not in the copy")
    [event] = world.of_kind("snapshot")
    assert (event.snapshot_id, event.volume_id) == (snapshot, world.volumes["db1"])
    assert event.detail["mountpoint"] == str(donor.base)
    assert event.detail["frozen"] == "by the hook"
    assert subprocess.run(["fsfreeze", "-f", str(donor.base)], capture_output=True).returncode == 0
    sh("fsfreeze", "-u", str(donor.base))  # the hook thawed what it froze

    volume = ec2.create_volume(SnapshotId=snapshot, AvailabilityZone=world.zone,
                               VolumeType="gp3")["VolumeId"]
    assert volume == world.restore_volume_id
    described = ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]
    assert (described["SnapshotId"], described["State"]) == (snapshot, "available")
    assert loop_backing_file(world.restore_device) is None
    assert world.restore_device.removeprefix("/dev/") not in lsblk_names()

    instance = world.instances[recipient]
    with pytest.raises(ClientError, match="Attachment point /dev/sdf is already in use"):
        ec2.attach_volume(VolumeId=volume, InstanceId=instance, Device=DATA_DEVICE)
    assert loop_backing_file(world.restore_device) is None
    ec2.attach_volume(VolumeId=volume, InstanceId=instance, Device=NEW_DEVICE)
    assert world.restore_device.removeprefix("/dev/") in lsblk_names()
    assert ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]["State"] == "in-use"

    sh("mount", "-o", "ro", world.restore_device, str(scratch))
    assert (scratch / "marker").read_text() == before
    assert not (scratch / "after-the-snapshot").exists()  # a point in time
    assert {p.name for p in (scratch / "data").iterdir()} >= {"mysql", "world", "ibdata1"}
    assert "server-id=1\n" in (scratch / "my.cnf").read_text()
    with pytest.raises(ClientError) as still_mounted:
        ec2.detach_volume(VolumeId=volume, InstanceId=instance)
    assert still_mounted.value.response["Error"]["Code"] == HARNESS_ERROR
    assert "still mounted" in str(still_mounted.value)
    assert ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]["State"] == "in-use"
    sh("umount", str(scratch))

    ec2.detach_volume(VolumeId=volume, InstanceId=instance)
    assert loop_backing_file(world.restore_device) is None
    assert world.restore_device.removeprefix("/dev/") not in lsblk_names()
    assert ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]["State"] == "available"
    image = world.blocks[volume].image
    ec2.delete_volume(VolumeId=volume)
    assert not image.exists()
    snapshot_image = world.snapshot_images[snapshot]
    ec2.delete_snapshot(SnapshotId=snapshot)
    assert not snapshot_image.exists()
    assert world.kinds() == ["snapshot", "volume", "error", "attach", "error", "detach",
                             "delete-volume", "delete-snapshot"]
    assert len(world.errors) == 2
    write_row(sandbox, uuid.uuid4().hex)  # the servers never noticed


def test_a_snapshot_under_the_donors_lock_and_freeze(ebs_pair: EbsWorld) -> None:
    """The runbook's `freeze: true`: the donor froze its filesystem itself, under FLUSH TABLES
    WITH READ LOCK; the hook leaves it frozen. The probe sees the lock at the snapshot."""
    world, sandbox = ebs_pair, ebs_pair.sandbox
    donor = sandbox["db1"]
    donor.sql("CREATE DATABASE IF NOT EXISTS probe; CREATE TABLE IF NOT EXISTS probe.t (v INT);")

    def writes_blocked(name: str) -> bool:
        try:
            sandbox[name].sql("SET SESSION lock_wait_timeout = 1; INSERT INTO probe.t VALUES (1);")
        except SandboxError as exc:
            return "Lock wait timeout" in str(exc)
        return False

    world.probe = writes_blocked
    ec2 = world.aws.client("ec2")
    lock = pymysql.connect(host=donor.address, port=donor.port, user=ADMIN_USER,
                           password=sandbox.admin_password, autocommit=True)
    try:
        with lock.cursor() as cur:
            cur.execute("FLUSH TABLES WITH READ LOCK")
        sh("fsfreeze", "-f", str(donor.base))
        try:
            ec2.create_snapshot(VolumeId=world.volumes["db1"])
            still = subprocess.run(["fsfreeze", "-f", str(donor.base)], capture_output=True,
                                   text=True)
            assert still.returncode != 0 and "busy" in still.stderr.lower()  # still frozen
        finally:
            sh("fsfreeze", "-u", str(donor.base))
        with lock.cursor() as cur:
            cur.execute("UNLOCK TABLES")
    finally:
        lock.close()
    ec2.create_snapshot(VolumeId=world.volumes["db1"])
    first, second = world.of_kind("snapshot")
    assert (first.detail["frozen"], first.detail["probe"]) == ("already", True)
    assert (second.detail["frozen"], second.detail["probe"]) == ("by the hook", False)
    assert first.device == world.devices["db1"] and first.at < second.at


def test_the_products_discovery_finds_both_ends_through_test_serials(
        ebs_pair: EbsWorld, aws: Aws) -> None:
    """The runbook section the world builds is valid, and with its serial map the product's own
    discovery (findmnt, lsblk, describe_volumes) finds the donor's volume and, once attached,
    the recipient's device of the volume made from the snapshot."""
    world, sandbox = ebs_pair, ebs_pair.sandbox
    section = EbsSettings.model_validate(world.ebs_section("db2", "db1", freeze=True))
    assert section.recipient_instance == world.instances["db1"] and section.device == NEW_DEVICE
    exe = Executor(MemoryJournal("ebs"), hosts=LocalHost,
                   connect=lambda name: None,  # type: ignore[arg-type,return-value]
                   aws_factory=aws.client)
    exe.capture("donor.instance_id", world.instances["db2"])
    exe.run(donor_volume_actions("db2", str(sandbox["db2"].datadir), Ref(Key("donor.instance_id")),
                                 serial_overrides=section.test_serials))
    assert exe.captured["donor.ebs.volume_id"] == world.volumes["db2"]
    assert exe.captured["donor.ebs.mount_target"] == str(sandbox["db2"].base)
    assert exe.captured["donor.ebs.attach_device"] == DATA_DEVICE

    ec2 = aws.client("ec2")
    snapshot = ec2.create_snapshot(VolumeId=world.volumes["db2"])["SnapshotId"]
    volume = ec2.create_volume(SnapshotId=snapshot, AvailabilityZone=world.zone)["VolumeId"]
    ec2.attach_volume(VolumeId=volume, InstanceId=world.instances["db1"], Device=NEW_DEVICE)
    exe.capture("ebs.new_volume", volume)
    exe.run(recipient_device_actions("db1", Ref(Key("ebs.new_volume")), NEW_DEVICE,
                                     serial_overrides=section.test_serials))
    assert exe.captured["recipient.ebs.device"] == world.restore_device
    # left attached: the teardown detaches it (as after a failed test)


def test_release_cleans_up_what_a_failed_test_left(ebs_pair: EbsWorld, scratch: Path) -> None:
    world = ebs_pair
    ec2 = world.aws.client("ec2")
    snapshot = ec2.create_snapshot(VolumeId=world.volumes["db1"])["SnapshotId"]
    volume = ec2.create_volume(SnapshotId=snapshot, AvailabilityZone=world.zone)["VolumeId"]
    with pytest.raises(ClientError, match="a second volume from a snapshot"):
        ec2.create_volume(SnapshotId=snapshot, AvailabilityZone=world.zone)
    ec2.attach_volume(VolumeId=volume, InstanceId=world.instances["db2"], Device=NEW_DEVICE)
    sh("mount", world.restore_device, str(scratch))
    sh("fsfreeze", "-f", str(scratch))
    world.release()
    assert not mounts_of(world.restore_device)
    assert loop_backing_file(world.restore_device) is None
    assert not world.workdir.exists()
    assert [e.detail for e in world.of_kind("teardown")] == [
        {"unmounted": str(scratch)}, {"detached": world.restore_device}]
    world.release()  # again at teardown: nothing left to do
