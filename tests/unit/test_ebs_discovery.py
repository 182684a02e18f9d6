"""EBS discovery over captured findmnt/lsblk outputs: the donor's volume (Nitro serial, Xen
name, refused multi-volume layouts) and the recipient's device of an attached volume."""

from __future__ import annotations

import json
from typing import Any

import pytest

from resync.actions.types import Ref
from resync.model.keys import Key
from resync.run.executor import Executor
from resync.run.journal import MemoryJournal
from resync.steps.copy.ebs import donor_volume_actions, host_identity, recipient_device_actions
from resync.steps.copy.ebs.discovery import (
    DiscoveryError,
    MultiVolumeRefused,
    find_attached_device,
    parse_findmnt,
    parse_lsblk,
    resolve_donor,
    volume_id_of_serial,
)
from resync.testing.fakes import FakeWorld
from resync.transport.local import CommandResult

VOL = "vol-0123456789abcdef0"
VOL2 = "vol-0fedcba9876543210"


def dev(name: str, type_: str = "disk", serial: str | None = None, mount: str | None = None,
        pk: str | None = None, kname: str | None = None, children: list[Any] | None = None,
        ) -> dict[str, Any]:
    node: dict[str, Any] = {"name": name, "kname": kname or name, "type": type_, "serial": serial,
                            "pkname": pk, "mountpoint": mount}
    if children:
        node["children"] = children
    return node


def lsblk(*tops: dict[str, Any]) -> str:
    return json.dumps({"blockdevices": list(tops)})


NITRO = lsblk(
    dev("nvme0n1", serial="vol0aaaaaaaaaaaaaaaa", children=[
        dev("nvme0n1p1", "part", mount="/", pk="nvme0n1"),
        dev("nvme0n1p128", "part", pk="nvme0n1")]),
    dev("nvme1n1", serial="vol0123456789abcdef0 ", mount="/data"))
XEN = lsblk(dev("xvda", children=[dev("xvda1", "part", mount="/", pk="xvda")]),
            dev("xvdf", mount="/var/lib/mysql"))
LVM = lsblk(
    dev("nvme0n1", serial="vol0aaaaaaaaaaaaaaaa", children=[
        dev("nvme0n1p1", "part", mount="/", pk="nvme0n1")]),
    dev("nvme1n1", serial="vol0123456789abcdef0", children=[
        dev("vg-data", "lvm", kname="dm-0", mount="/data", pk="nvme1n1")]),
    dev("nvme2n1", serial="vol0fedcba9876543210", children=[
        dev("vg-data", "lvm", kname="dm-0", mount="/data", pk="nvme2n1")]))
RAID = lsblk(
    dev("xvdf", children=[dev("md0", "raid1", mount="/data", pk="xvdf")]),
    dev("xvdg", children=[dev("md0", "raid1", mount="/data", pk="xvdg")]))
ROOT = lsblk(dev("nvme0n1", serial="vol0123456789abcdef0", children=[
    dev("nvme0n1p1", "part", mount="/", pk="nvme0n1")]))
LVM_ONE = lsblk(dev("nvme1n1", serial="vol0123456789abcdef0", children=[
    dev("nvme1n1p1", "part", pk="nvme1n1", children=[
        dev("data-mysql", "lvm", kname="dm-1", mount="/srv", pk="nvme1n1p1")])]))


def donor(findmnt: str, devices: str, overrides: dict[str, str] | None = None) -> Any:
    return resolve_donor(parse_findmnt(findmnt), parse_lsblk(devices), overrides)


def test_nitro_nvme_serial_is_the_volume_id() -> None:
    found = donor("/dev/nvme1n1 /data ext4\n", NITRO)
    assert (found.volume_id, found.disk, found.root) == (VOL, "nvme1n1", False)
    assert found.mount.target == "/data" and found.mount.fstype == "ext4"
    assert VOL in found.describe()


def test_xen_has_no_serial_the_attach_name_is_used() -> None:
    found = donor("/dev/xvdf /var/lib/mysql xfs", XEN)
    assert found.volume_id is None and found.disk == "xvdf"
    assert found.attach_names == ("/dev/sdf", "/dev/xvdf")


def test_lvm_over_two_disks_is_refused() -> None:
    with pytest.raises(MultiVolumeRefused, match=r"spans 2 disks through lvm \(nvme1n1, nvme2n1\)"
                       r".*multi-volume crash-consistent snapshots are a later step"):
        donor("/dev/mapper/vg-data /data xfs", LVM)


def test_md_raid_is_refused() -> None:
    with pytest.raises(MultiVolumeRefused, match=r"through raid1 \(xvdf, xvdg\)"):
        donor("/dev/md0 /data ext4", RAID)


def test_lvm_on_one_disk_is_one_volume() -> None:
    found = donor("/dev/mapper/data-mysql /srv ext4", LVM_ONE)
    assert (found.volume_id, found.disk) == (VOL, "nvme1n1")


def test_datadir_on_the_root_disk() -> None:
    found = donor("/dev/nvme0n1p1 / ext4", ROOT)
    assert (found.volume_id, found.disk, found.root) == (VOL, "nvme0n1", True)
    assert "the root disk" in found.describe()


@pytest.mark.parametrize(("findmnt", "devices", "message"), [
    ("/dev/nvme9n1 /data ext4", NITRO, "no block device named 'nvme9n1'"),
    ("tmpfs /tmp tmpfs", NITRO, "not a block device"),
    ("overlay / overlay", NITRO, "not a block device"),
    ("/dev/sda1 /data ext4", lsblk(dev("sda", serial="QM00001", children=[
        dev("sda1", "part", mount="/data", pk="sda")])), "not an EBS volume"),
    ("/dev/vda1 /data ext4", lsblk(dev("vda", children=[dev("vda1", "part", pk="vda")])),
     "no serial and no Xen name"),
])
def test_no_volume(findmnt: str, devices: str, message: str) -> None:
    with pytest.raises(DiscoveryError, match=message):
        donor(findmnt, devices)


def test_findmnt_parsing() -> None:
    mount = parse_findmnt("/dev/nvme1n1[/@mysql] /srv/my\\x20data btrfs\n")
    assert (mount.source, mount.target, mount.fstype) == ("/dev/nvme1n1", "/srv/my data", "btrfs")
    assert parse_findmnt("/dev/xvdf /a b ext4").target == "/a b"
    for bad in ("", "/dev/xvdf ext4", "a b c\nd e f"):
        with pytest.raises(DiscoveryError, match="findmnt printed"):
            parse_findmnt(bad)


def test_lsblk_parsing() -> None:
    devices = parse_lsblk(LVM)
    assert devices["dm-0"].parents == {"nvme1n1", "nvme2n1"}
    assert devices["nvme1n1"].serial == "vol0123456789abcdef0"
    with pytest.raises(DiscoveryError, match="JSON"):
        parse_lsblk("lsblk: unknown column")


def test_serials() -> None:
    assert volume_id_of_serial("vol0123456789abcdef0") == VOL
    assert volume_id_of_serial("vol-0123456789abcdef0") == VOL
    assert volume_id_of_serial("vol01234567") == "vol-01234567"
    assert volume_id_of_serial("AWS1234") is None and volume_id_of_serial(None) is None


def test_loop_device_with_a_test_only_serial() -> None:
    devices = lsblk(dev("loop3", "loop", mount="/tmp/x"))
    with pytest.raises(DiscoveryError, match="no serial"):
        donor("/dev/loop3 /tmp/x ext4", devices)
    for key in ("loop3", "/dev/loop3"):
        assert donor("/dev/loop3 /tmp/x ext4", devices, {key: "vol0123456789abcdef0"}
                     ).volume_id == VOL


# -- the recipient ------------------------------------------------------------------------------

RECIPIENT_NITRO = lsblk(dev("nvme0n1", serial="vol0aaaaaaaaaaaaaaaa"),
                        dev("nvme1n1", serial="vol0fedcba9876543210"),
                        dev("nvme2n1", serial="vol0123456789abcdef0"))


def test_recipient_by_serial() -> None:
    assert find_attached_device(VOL, "/dev/sdf", parse_lsblk(RECIPIENT_NITRO)) == "/dev/nvme2n1"


def test_recipient_nitro_never_falls_back_to_the_name() -> None:
    devices = parse_lsblk(lsblk(dev("nvme0n1", serial="vol0aaaaaaaaaaaaaaaa"), dev("sdf")))
    with pytest.raises(DiscoveryError, match="no disk carries the serial"):
        find_attached_device(VOL, "/dev/sdf", devices)


def test_recipient_two_disks_with_the_serial() -> None:
    devices = parse_lsblk(lsblk(dev("nvme1n1", serial="vol0123456789abcdef0"),
                                dev("nvme2n1", serial="vol0123456789abcdef0")))
    with pytest.raises(DiscoveryError, match="2 disks carry"):
        find_attached_device(VOL, "/dev/sdf", devices)


def test_recipient_xen_by_name() -> None:
    devices = parse_lsblk(lsblk(dev("xvda"), dev("xvdg")))
    assert find_attached_device(VOL, "/dev/sdg", devices) == "/dev/xvdg"
    assert find_attached_device(VOL, "/dev/xvdg", devices) == "/dev/xvdg"
    with pytest.raises(DiscoveryError, match="no disk named"):
        find_attached_device(VOL, "/dev/sdf", devices)
    both = parse_lsblk(lsblk(dev("sdg"), dev("xvdg")))
    with pytest.raises(DiscoveryError, match="2 disks"):
        find_attached_device(VOL, "/dev/sdg", both)


def test_recipient_loop_with_test_only_serial() -> None:
    devices = parse_lsblk(lsblk(dev("loop0", "loop"), dev("loop1", "loop")))
    assert find_attached_device(VOL, "/dev/sdf", devices, {"loop1": VOL}) == "/dev/loop1"


# -- the leaves, through an executor -----------------------------------------------------------

def executor(world: FakeWorld, aws: Any = None) -> Executor:
    return Executor(MemoryJournal("ebs"), hosts=world.host, connect=world.connect,
                    aws_factory=lambda service: aws)


class FakeEc2:
    def __init__(self, volumes: list[dict[str, Any]]) -> None:
        self.volumes, self.calls = volumes, []  # type: list[dict[str, Any]]

    def describe_volumes(self, **params: Any) -> dict[str, Any]:
        self.calls.append(params)
        return {"Volumes": self.volumes}


def attached(volume: str, instance: str, device: str, state: str = "attached") -> dict[str, Any]:
    return {"VolumeId": volume, "AvailabilityZone": "us-east-1a", "Size": 100,
            "VolumeType": "gp3", "Encrypted": True,
            "Attachments": [{"InstanceId": instance, "Device": device, "State": state}]}


def donor_world(findmnt: str, devices: str) -> FakeWorld:
    return FakeWorld(outputs={
        "findmnt -n -o SOURCE,TARGET,FSTYPE --target /var/lib/mysql": CommandResult(
            "db1", "", 0, findmnt, ""),
        "lsblk -J -o NAME,KNAME,TYPE,SERIAL,PKNAME,MOUNTPOINT": CommandResult(
            "db1", "", 0, devices, "")})


def test_donor_actions_nitro() -> None:
    world = donor_world("/dev/nvme1n1 /var/lib/mysql ext4", NITRO)
    ec2 = FakeEc2([attached("vol-0aaaaaaaaaaaaaaaa", "i-0123", "/dev/xvda"),
                   attached(VOL, "i-0123", "/dev/sdf")])
    exe = executor(world, ec2)
    exe.capture("donor.instance_id", "i-0123")
    actions = donor_volume_actions("db1", "/var/lib/mysql", Ref(Key("donor.instance_id")))
    exe.run(actions)
    got = exe.captured
    assert got["donor.ebs.volume_id"] == VOL and got["donor.ebs.disk"] == "nvme1n1"
    assert (got["donor.ebs.availability_zone"], got["donor.ebs.size_gib"]) == ("us-east-1a", 100)
    assert (got["donor.ebs.encrypted"], got["donor.ebs.attach_device"]) == (1, "/dev/sdf")
    assert ec2.calls == [{"Filters": [{"Name": "attachment.instance-id", "Values": ["i-0123"]}]}]
    texts = [r.text for r in exe.journal.data.commands]
    assert texts[3] == ("ec2 describe_volumes Filters=[{Name: attachment.instance-id, Values: "
                        "[i-0123]}] (the discovered volume is attached to the donor instance)")


def test_donor_actions_xen_match_the_attach_name() -> None:
    world = donor_world("/dev/xvdf /var/lib/mysql xfs", XEN)
    ec2 = FakeEc2([attached(VOL2, "i-0123", "/dev/sda1"), attached(VOL, "i-0123", "/dev/sdf")])
    exe = executor(world, ec2)
    exe.run(donor_volume_actions("db1", "/var/lib/mysql", "i-0123"))
    assert exe.captured["donor.ebs.volume_id"] == VOL


@pytest.mark.parametrize(("volumes", "message"), [
    ([attached(VOL2, "i-0123", "/dev/sdf")], "has no volume vol-0123"),
    ([attached(VOL, "i-0123", "/dev/sdf", "detaching")], "is detaching, not attached"),
])
def test_donor_cross_check_fails(volumes: list[dict[str, Any]], message: str) -> None:
    exe = executor(donor_world("/dev/nvme1n1 /var/lib/mysql ext4", NITRO), FakeEc2(volumes))
    with pytest.raises(DiscoveryError, match=message):
        exe.run(donor_volume_actions("db1", "/var/lib/mysql", "i-0123"))
    assert exe.journal.data.commands[-1].ok is False


def test_donor_actions_refuse_lvm_and_journal_why() -> None:
    exe = executor(donor_world("/dev/mapper/vg-data /var/lib/mysql xfs", LVM), FakeEc2([]))
    with pytest.raises(MultiVolumeRefused):
        exe.run(donor_volume_actions("db1", "/var/lib/mysql", "i-0123"))
    last = exe.journal.data.commands[-1]
    assert last.kind == "ebs-discover" and "later step" in (last.detail or "")


def test_recipient_actions() -> None:
    world = FakeWorld(outputs={"lsblk -J -o NAME,KNAME,TYPE,SERIAL,PKNAME,MOUNTPOINT":
                               CommandResult("db2", "", 0, RECIPIENT_NITRO, "")})
    exe = executor(world)
    exe.capture("ebs.new_volume", VOL)
    actions = recipient_device_actions("db2", Ref(Key("ebs.new_volume")), "/dev/sdf")
    assert "the block device of <ebs.new_volume> attached as /dev/sdf" in actions[1].render()
    exe.run(actions)
    assert exe.captured["recipient.ebs.device"] == "/dev/nvme2n1"


def test_serial_overrides_are_shown_in_the_plan() -> None:
    actions = donor_volume_actions("db1", "/data dir", "i-0123", serial_overrides={"loop3": "volX"})
    assert actions[0].render() == "findmnt -n -o SOURCE,TARGET,FSTYPE --target '/data dir'"
    assert "test-only serial map: loop3=volX" in actions[2].render()


def test_host_identity_reads_imds_on_the_host() -> None:
    ids, zone = host_identity("db1", "donor", "http://127.0.0.1:9")
    assert ids.host == "db1" and ids.outputs() == (Key("donor.instance_id"),)
    assert zone.outputs() == (Key("donor.availability_zone"),)
    text = ids.render()
    assert text.startswith("t=$(curl -sSf -m 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300'"
                           " http://127.0.0.1:9/latest/api/token) && curl")
    assert text.endswith("http://127.0.0.1:9/latest/meta-data/instance-id")
