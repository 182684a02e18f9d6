"""EBS discovery on real block devices: a datadir on a loop-mounted ext4 filesystem, found through
the same findmnt/lsblk leaves and decision the product runs, and cross-checked against moto's EC2.

Loop devices have no serial: the tests give the discovery a test-only serial map (loop device ->
the moto volume's id without its dash, as a Nitro NVMe serial would read). Needs root and
losetup, mkfs.ext4, mount, findmnt, lsblk; skipped otherwise, naming what is missing. Nothing
leaves 127.0.0.0/8 (moto listens on 127.0.0.1).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aws import Aws, Imds, aws_fixture, imds_fixture, moto_endpoint_fixture  # noqa: F401  (fixtures by name)

from resync.actions.types import Ref
from resync.model.keys import Key
from resync.run.executor import Executor
from resync.run.journal import MemoryJournal
from resync.steps.copy.ebs import donor_volume_actions, host_identity, recipient_device_actions
from resync.steps.copy.ebs.discovery import DiscoveryError, read_block_devices, read_mount
from resync.transport.local import LocalHost

TOOLS = ("losetup", "mkfs.ext4", "mount", "umount", "findmnt", "lsblk", "truncate")


def _missing() -> list[str]:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if os.geteuid() != 0:
        missing.append("root")
    return missing


pytestmark = pytest.mark.skipif(bool(_missing()), reason=f"needs {', '.join(_missing())}")


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class Loop:
    device: str  # /dev/loopN
    mountpoint: Path
    datadir: Path

    @property
    def name(self) -> str:
        return self.device.removeprefix("/dev/")


@pytest.fixture(name="loop")
def loop_fixture(tmp_path: Path) -> Iterator[Loop]:
    """A 200 MB ext4 image on a loop device, mounted, with a datadir inside."""
    image, mountpoint = tmp_path / "donor.img", tmp_path / "mnt"
    sh("truncate", "-s", "200M", str(image))
    sh("mkfs.ext4", "-q", str(image))
    mountpoint.mkdir()
    device = sh("losetup", "-f", "--show", str(image))
    mounted = False
    try:
        sh("mount", device, str(mountpoint))
        mounted = True
        datadir = mountpoint / "mysql"
        datadir.mkdir()
        (datadir / "ibdata1").write_bytes(b"\0" * 4096)
        yield Loop(device, mountpoint, datadir)
    finally:
        if mounted:
            subprocess.run(["umount", str(mountpoint)], check=False)
        subprocess.run(["losetup", "-d", device], check=False)


def executor(aws: Aws | None = None) -> Executor:
    return Executor(MemoryJournal("ebs"), hosts=LocalHost, connect=lambda name: None,  # type: ignore[arg-type,return-value]
                    aws_factory=aws.client if aws else None)


def volume_on(aws: Aws, device: str = "/dev/sdf") -> tuple[str, str]:
    """An instance in moto with a volume attached as `device`: (instance id, volume id)."""
    ec2 = aws.client("ec2")
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]
    zone = instance["Placement"]["AvailabilityZone"]
    volume = ec2.create_volume(AvailabilityZone=zone, Size=1, VolumeType="gp3")["VolumeId"]
    ec2.attach_volume(VolumeId=volume, InstanceId=instance["InstanceId"], Device=device)
    return instance["InstanceId"], volume


def test_the_datadir_volume_is_found_on_a_loop_device(loop: Loop, aws: Aws) -> None:
    instance, volume = volume_on(aws)
    exe = executor(aws)
    exe.capture("donor.instance_id", instance)
    exe.run(donor_volume_actions("db1", str(loop.datadir), Ref(Key("donor.instance_id")),
                                 serial_overrides={loop.name: volume.replace("-", "")}))
    got = exe.captured
    assert got["donor.ebs.volume_id"] == volume
    assert (got["donor.ebs.disk"], got["donor.ebs.source"]) == (loop.name, loop.device)
    assert (got["donor.ebs.mount_target"], got["donor.ebs.fstype"]) == (str(loop.mountpoint), "ext4")
    assert (got["donor.ebs.root_disk"], got["donor.ebs.attach_device"]) == (0, "/dev/sdf")
    assert got["donor.ebs.size_gib"] == 1
    assert all(r.ok for r in exe.journal.data.commands)


def test_without_the_serial_map_a_loop_device_is_no_volume(loop: Loop) -> None:
    exe = executor()
    exe.run([read_mount("db1", str(loop.datadir), "donor.ebs"),
             read_block_devices("db1", "donor.ebs")])
    leaves = donor_volume_actions("db1", str(loop.datadir), "i-0123")
    with pytest.raises(DiscoveryError, match=f"disk {loop.name} .*no serial"):
        exe.run([leaves[2]])


def test_the_recipient_device_of_a_copy_of_the_image(loop: Loop, tmp_path: Path) -> None:
    """The "snapshot" volume: a loop device made from a copy of the donor's image."""
    copy = tmp_path / "restored.img"
    sh("cp", "--sparse=always", sh("losetup", "-n", "-O", "BACK-FILE", loop.device), str(copy))
    device = sh("losetup", "-f", "--show", str(copy))
    try:
        volume = "vol-0123456789abcdef0"
        exe = executor()
        exe.capture("ebs.new_volume", volume)
        exe.run(recipient_device_actions("db2", Ref(Key("ebs.new_volume")), "/dev/sdf",
                                         serial_overrides={device: volume.replace("-", "")}))
        assert exe.captured["recipient.ebs.device"] == device
    finally:
        subprocess.run(["losetup", "-d", device], check=False)


def test_the_donor_instance_from_imds_on_the_host(loop: Loop, aws: Aws,
                                                   imds: Callable[..., Imds]) -> None:
    """IMDSv2 read by curl on the host (a stand-in on 127.0.0.1), then the volume cross-check."""
    instance, volume = volume_on(aws)
    standin = imds(instance_id=instance, address="127.0.0.1", availability_zone="us-east-1a")
    exe = executor(aws)
    exe.run([*host_identity("db1", "donor", standin.url),
             *donor_volume_actions("db1", str(loop.datadir), Ref(Key("donor.instance_id")),
                                   serial_overrides={loop.device: volume.replace("-", "")})])
    assert exe.captured["donor.instance_id"] == instance
    assert exe.captured["donor.availability_zone"] == "us-east-1a"
    assert exe.captured["donor.ebs.volume_id"] == volume
