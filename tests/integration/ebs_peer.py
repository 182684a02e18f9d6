"""An EC2 world for the EBS copy method on this machine: moto's EC2 with real block devices.

What is real and what is simulated:
- The servers are real: a `Sandbox(loop_volumes=True)` pair, each server's directory (my.cnf,
  data/, ...) an ext4 filesystem on its own loop device, as a data volume on EC2.
- The AWS API is moto's (ThreadedMotoServer, tests/integration/aws.py), on 127.0.0.1. moto keeps
  records only: it has no block storage, so a snapshot or a volume made from one holds no data
  there. The block-level effect is done by this module, on loop devices, from hooks on moto's
  `EBSBackend` (moto 5.2.5) installed with monkeypatch: the server runs in this process (in a
  thread), so the patched methods are what its HTTP API calls. Per call, for OUR volumes only:
  * create_snapshot: a copy of the volume's image file (cp --sparse=always) under fsfreeze of its
    mounted filesystem; a filesystem already frozen (the runbook's `freeze: true`) is left
    frozen, the hook thaws only what it froze itself. The copy is taken during the API call, as
    an EBS snapshot's point in time is the call. Unlike EBS's crash-consistent snapshot, the
    freeze leaves ext4's journal clean (no journal replay at mount); mariadbd is not shut down,
    so InnoDB's crash recovery still runs on the copy.
  * create_volume from such a snapshot: a copy of the snapshot's image, under a volume id chosen
    when the world is built (`restore_volume_id`): the product must know in advance, in its
    plan, which device the volume will be (its test-only serial map `copy.ebs.test_serials`).
  * attach_volume of that volume: `losetup <restore_device> <its image>`: the device appears on
    this machine as the volume would on the recipient instance. detach_volume: `losetup -d` (and
    a loud error, not a forced unmount, if it is still mounted: that is a product bug).
  * delete_volume / delete_snapshot: their image files go.
  AWS's own refusals that moto lacks are added for our instances and volumes: an attach point
  already in use, a volume already attached, a volume in another availability zone.
- Loop devices have no serial (on Nitro the NVMe serial is the volume id): the product finds the
  devices through its own discovery (findmnt, lsblk) with `test_serials` (kernel name -> volume
  id without its dash) for both servers' volumes and for the volume made from the snapshot.
- All devices are on this one machine, which plays both instances. Each server's data volume is
  attached to its instance as DATA_DEVICE (/dev/sdf); attaching or detaching THOSE in moto has no
  block-level effect (the sandbox owns their loop devices). The volume from the snapshot goes to
  a free attach name, NEW_DEVICE (/dev/sdg), which `ebs_section()` puts in the runbook: /dev/sdf
  is refused on the recipient, as AWS would.

`restore_device` is chosen free when the world is built: the highest-numbered free loop device,
as `losetup -f` (which the sandbox and other tests use) takes the lowest. Another process could
still take it before the attach (a small race): the attach then fails loudly. Build every sandbox
of a test before its world. One world per test.

Usage: import the fixtures by name (with aws.py's `aws_fixture, moto_endpoint_fixture`), then
`ebs_pair` (db1 primary -> db2 replica on loop volumes, world built) or
`ebs_world(make_sandbox(loop_volumes=True))`. Needs root and the tools in TOOLS.
"""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aws import Aws

from resync.testing.sandbox import MountEntry, Sandbox, loop_backing_file, mount_table

TOOLS = ("losetup", "mkfs.ext4", "fsfreeze", "findmnt", "lsblk", "mount", "umount", "truncate",
         "cp")
ZONE = "us-east-1a"  # both instances and every volume: an EBS volume attaches in its own zone
DATA_DEVICE = "/dev/sdf"  # the attach name of each server's data volume on its instance
NEW_DEVICE = "/dev/sdg"  # a free attach name on the recipient for the volume from the snapshot
HARNESS_ERROR = "TestHarness.Error"  # the error code of a hook's own failure (HTTP 400)


def missing() -> list[str]:
    """What the EBS world needs and this machine lacks (root, tools): empty when all is there."""
    lacking = [tool for tool in TOOLS if shutil.which(tool) is None]
    return lacking + ([] if os.geteuid() == 0 else ["root"])


def require_ebs_world() -> None:
    if lacking := missing():
        pytest.skip(f"the EBS world on loop devices needs {', '.join(lacking)}")


@dataclass(frozen=True)
class Event:
    """What a hook did. kind: snapshot, volume, attach, detach, delete-volume, delete-snapshot,
    teardown (what teardown had to clean up) or error (a hook refused; also in `errors`)."""

    kind: str
    volume_id: str | None = None
    snapshot_id: str | None = None
    device: str | None = None  # the loop device concerned, if any
    detail: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)


@dataclass
class Block:
    """A moto volume's block-level twin: its image, and its loop device (while attached)."""

    volume_id: str
    image: Path
    device: str
    server: str | None  # the sandbox server whose data volume it is; None: made from a snapshot


@dataclass
class EbsWorld:
    """One instance and one data volume per sandbox server in moto, and the hooks' record."""

    sandbox: Sandbox
    aws: Aws
    zone: str
    instances: dict[str, str]  # server name -> instance id
    volumes: dict[str, str]  # server name -> its data volume's id (attached as DATA_DEVICE)
    devices: dict[str, str]  # server name -> its loop device (/dev/loopN)
    restore_volume_id: str  # the id the volume made from one of our snapshots gets
    restore_device: str  # /dev/loopM: where that volume appears once attached
    workdir: Path  # snapshot and volume images
    events: list[Event] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # every refusal of a hook, as sent to AWS
    snapshot_images: dict[str, Path] = field(default_factory=dict)  # snapshot id -> image
    # called with the server name (or volume id) at create_snapshot, before the copy, in moto's
    # thread; its result (or the repr of its exception) goes into the event's detail["probe"]
    probe: Callable[[str], object] | None = None
    blocks: dict[str, Block] = field(default_factory=dict)  # volume id -> its twin
    restored: str | None = None  # the volume made from a snapshot, while it exists
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def test_serials(self) -> dict[str, str]:
        """`copy.ebs.test_serials`: kernel name -> volume id without its dash, for both servers'
        devices and the one the volume made from a snapshot will be."""
        pairs = [*((self.devices[n], v) for n, v in self.volumes.items()),
                 (self.restore_device, self.restore_volume_id)]
        return {device.removeprefix("/dev/"): volume.replace("-", "") for device, volume in pairs}

    def ebs_section(self, donor: str, recipient: str, **settings: Any) -> dict[str, Any]:
        """A runbook's `copy.ebs` for a copy from `donor` to `recipient` (server names)."""
        return {"donor_instance": self.instances[donor],
                "recipient_instance": self.instances[recipient],
                "device": NEW_DEVICE, "test_serials": self.test_serials, **settings}

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def of_kind(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    # -- helpers of the hooks ----------------------------------------------------------------

    def record(self, kind: str, **values: Any) -> Event:
        event = Event(kind, **values)
        self.events.append(event)
        return event

    def refuse(self, code: str, message: str, **values: Any) -> Exception:
        """An AWS error answer (HTTP 400, not retried by boto3), recorded."""
        from moto.ec2.exceptions import EC2ClientError

        self.errors.append(f"{code}: {message}")
        self.record("error", detail={"code": code, "message": message}, **values)
        return EC2ClientError(code, message)

    def snapshot_copy(self, block: Block, target: Path) -> dict[str, Any]:
        """A point-in-time copy of block's image: under fsfreeze when it is mounted."""
        detail: dict[str, Any] = {"server": block.server, "image": str(block.image)}
        if self.probe is not None:
            try:
                detail["probe"] = self.probe(block.server or block.volume_id)
            except Exception as exc:  # a failing probe is the test's to judge
                detail["probe"] = repr(exc)
        mounts = mounts_of(block.device) if bound_to(block.device, block.image) else []
        mountpoint = next((str(m.target) for m in mounts if m.root == "/"),
                          str(mounts[0].target) if mounts else None)
        froze = False
        if mountpoint is not None:
            done = sh("fsfreeze", "-f", mountpoint, check=False)
            if done.returncode == 0:
                froze = True
            elif "busy" not in done.stderr.lower():  # EBUSY: frozen already (freeze: true)
                raise RuntimeError(f"fsfreeze -f {mountpoint}: {done.stderr.strip()}")
        detail.update(mountpoint=mountpoint,
                      frozen="by the hook" if froze else "already" if mountpoint else "not mounted")
        try:
            sh("cp", "--sparse=always", str(block.image), str(target))
        finally:
            if froze:
                sh("fsfreeze", "-u", mountpoint or "", check=False)
        return detail

    def release(self) -> None:
        """Teardown: unmount and detach what the hooks attached, delete the images."""
        problems = []
        for device in sorted(self.our_bound_devices()):
            for m in reversed(mounts_of(device)):
                sh("fsfreeze", "-u", str(m.target), check=False)
                if sh("umount", str(m.target), check=False).returncode:
                    time.sleep(0.5)
                    if sh("umount", str(m.target), check=False).returncode:
                        sh("umount", "-l", str(m.target), check=False)
                self.record("teardown", device=device, detail={"unmounted": str(m.target)})
            if sh("losetup", "-d", device, check=False).returncode == 0:
                self.record("teardown", device=device, detail={"detached": device})
            else:
                problems.append(device)
            if mounts_of(device):
                problems.append(f"{device} still mounted")
        shutil.rmtree(self.workdir, ignore_errors=True)
        if problems:
            raise RuntimeError(f"EBS world teardown left {problems} (see losetup -a, findmnt)")

    def our_bound_devices(self) -> set[str]:
        """Loop devices backed by an image of ours (deleted or not)."""
        found = set()
        for entry in Path("/sys/block").glob("loop*"):
            backing = loop_backing_file(entry.name) or ""
            if Path(backing.removesuffix(" (deleted)")).parent == self.workdir.resolve():
                found.add(f"/dev/{entry.name}")
        return found


def sh(*argv: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    if check and done.returncode:
        raise RuntimeError(f"{' '.join(argv)}: exited {done.returncode}: {done.stderr.strip()}")
    return done


def bound_to(device: str, image: Path) -> bool:
    """Whether the loop device is attached to that image file."""
    backing = loop_backing_file(device)
    return backing is not None and Path(backing) == image.resolve()


def mounts_of(device: str) -> list[MountEntry]:
    """The mounts (bind mounts too) of a block device's filesystem, in mountinfo order."""
    try:
        rdev = os.stat(device).st_rdev
    except OSError:
        return []
    number = (os.major(rdev), os.minor(rdev))
    return [m for m in mount_table() if m.device == number]


def free_loop_device() -> str:
    """The highest-numbered unbound loop device with a /dev node (`losetup -f` takes the
    lowest, so others are unlikely to take it); `losetup -f` when none is found."""
    numbers = sorted((int(p.name[4:]) for p in Path("/sys/block").glob("loop*")
                      if p.name[4:].isdigit()), reverse=True)
    for n in numbers:
        if loop_backing_file(f"loop{n}") is None and Path(f"/dev/loop{n}").exists():
            return f"/dev/loop{n}"
    return sh("losetup", "-f").stdout.strip()


def new_volume_id() -> str:
    import secrets

    return "vol-0" + secrets.token_hex(8)  # vol- and 17 hex digits, as AWS's and moto's


# -- the hooks on moto's EBSBackend -------------------------------------------------------------

Body = Callable[[Any, dict[str, Any], Callable[[], Any]], Any]


def install_hooks(world: EbsWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """Patch moto's EBSBackend (the class: every account and region) for this test."""
    from moto.ec2.models.elastic_block_store import EBSBackend

    def hook(name: str) -> Callable[[Body], Body]:
        """Patch EBSBackend.<name> with body(backend, bound arguments, call the original):
        under the world's lock; a failure of the hook's own becomes an AWS error answer."""
        original = getattr(EBSBackend, name)
        signature = inspect.signature(original)

        def install(body: Body) -> Body:
            def patched(backend: Any, *args: Any, **kwargs: Any) -> Any:
                arguments = signature.bind(backend, *args, **kwargs).arguments
                with world.lock:
                    try:
                        return body(backend, arguments,
                                    lambda: original(backend, *args, **kwargs))
                    except Exception as exc:
                        from moto.core.exceptions import ServiceException

                        if isinstance(exc, ServiceException):
                            raise
                        raise world.refuse(HARNESS_ERROR, f"{name}: {exc}") from exc

            patched.__name__ = name
            monkeypatch.setattr(EBSBackend, name, patched)
            return body

        return install

    @hook("create_snapshot")
    def create_snapshot(backend: Any, a: dict[str, Any], call: Callable[[], Any]) -> Any:
        block = world.blocks.get(a["volume_id"])
        snapshot = call()
        if block is None:
            return snapshot
        image = world.workdir / f"{snapshot.id}.img"
        try:
            detail = world.snapshot_copy(block, image)
        except BaseException:
            backend.snapshots.pop(snapshot.id, None)
            image.unlink(missing_ok=True)
            raise
        world.snapshot_images[snapshot.id] = image
        world.record("snapshot", volume_id=block.volume_id, snapshot_id=snapshot.id,
                     device=block.device, detail=detail)
        return snapshot

    @hook("create_volume")
    def create_volume(backend: Any, a: dict[str, Any], call: Callable[[], Any]) -> Any:
        snapshot_id = a.get("snapshot_id")
        volume = call()
        if snapshot_id not in world.snapshot_images:
            return volume
        if world.restored is not None:
            backend.volumes.pop(volume.id, None)
            raise world.refuse(HARNESS_ERROR, f"a second volume from a snapshot while "
                               f"{world.restored} (on {world.restore_device}) exists: the test "
                               "world has one restore device", snapshot_id=snapshot_id)
        image = world.workdir / f"{world.restore_volume_id}.img"
        try:
            sh("cp", "--sparse=always", str(world.snapshot_images[snapshot_id]), str(image))
        except BaseException:
            backend.volumes.pop(volume.id, None)
            raise
        backend.volumes.pop(volume.id)  # re-keyed before the tags are added (by the caller)
        volume.id = world.restore_volume_id
        backend.volumes[volume.id] = volume
        world.blocks[volume.id] = Block(volume.id, image, world.restore_device, None)
        world.restored = volume.id
        world.record("volume", volume_id=volume.id, snapshot_id=snapshot_id,
                     device=world.restore_device, detail={"zone": a.get("zone_name")})
        return volume

    def aws_refusals(backend: Any, volume_id: str, instance_id: str, device_path: str) -> None:
        """What AWS refuses and moto accepts, for our instances and volumes."""
        if volume_id not in world.blocks and instance_id not in world.instances.values():
            return
        volume, instance = backend.get_volume(volume_id), backend.get_instance(instance_id)
        if volume.attachment is not None:
            raise world.refuse("VolumeInUse", f"{volume_id} is already attached to an instance",
                               volume_id=volume_id)
        if volume.zone is not None and volume.zone.name != instance.availability_zone:
            raise world.refuse("InvalidVolume.ZoneMismatch",
                               f"The volume '{volume_id}' is not in the same availability zone "
                               f"as instance '{instance_id}'", volume_id=volume_id)
        if device_path in instance.block_device_mapping:
            raise world.refuse("InvalidParameterValue",
                               f"Invalid value '{device_path}' for unixDevice. Attachment point "
                               f"{device_path} is already in use", volume_id=volume_id)

    @hook("attach_volume")
    def attach_volume(backend: Any, a: dict[str, Any], call: Callable[[], Any]) -> Any:
        volume_id, instance_id, device_path = a["volume_id"], a["instance_id"], a["device_path"]
        aws_refusals(backend, volume_id, instance_id, device_path)
        block = world.blocks.get(volume_id)
        if volume_id != world.restored or block is None:
            attachment = call()
            world.record("attach", volume_id=volume_id, device=block.device if block else None,
                         detail={"instance": instance_id, "attach_name": device_path})
            return attachment
        sh("losetup", block.device, str(block.image))
        try:
            attachment = call()
        except BaseException:
            sh("losetup", "-d", block.device, check=False)
            raise
        world.record("attach", volume_id=volume_id, device=block.device,
                     detail={"instance": instance_id, "attach_name": device_path,
                             "losetup": f"{block.device} {block.image}"})
        return attachment

    @hook("detach_volume")
    def detach_volume(backend: Any, a: dict[str, Any], call: Callable[[], Any]) -> Any:
        volume_id = a["volume_id"]
        block = world.blocks.get(volume_id)
        bound = (volume_id == world.restored and block is not None
                 and bound_to(block.device, block.image))
        if bound and block is not None and (mounts := mounts_of(block.device)):
            raise world.refuse(HARNESS_ERROR, f"{volume_id} is still mounted on this machine "
                               f"({block.device} on {', '.join(str(m.target) for m in mounts)}):"
                               " detaching a mounted volume is a bug of its user",
                               volume_id=volume_id, device=block.device)
        attachment = call()
        detail: dict[str, Any] = {"instance": a.get("instance_id")}
        if bound and block is not None:
            sh("losetup", "-d", block.device)
            deadline = time.monotonic() + 10
            while loop_backing_file(block.device) is not None:  # a deferred (autoclear) detach
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{block.device} still bound 10 s after losetup -d")
                time.sleep(0.05)
            detail["losetup"] = f"-d {block.device}"
        world.record("detach", volume_id=volume_id, device=block.device if block else None,
                     detail=detail)
        return attachment

    @hook("delete_volume")
    def delete_volume(backend: Any, a: dict[str, Any], call: Callable[[], Any]) -> Any:
        volume_id = a["volume_id"]
        volume = call()
        if volume_id == world.restored:
            block = world.blocks.pop(volume_id)
            world.restored = None
            removed = not bound_to(block.device, block.image)  # never an image in use
            if removed:
                block.image.unlink(missing_ok=True)
            world.record("delete-volume", volume_id=volume_id,
                         detail={"image": str(block.image), "removed": removed})
        elif volume_id in world.blocks:
            world.record("delete-volume", volume_id=volume_id, detail={"server": True})
        return volume

    @hook("delete_snapshot")
    def delete_snapshot(backend: Any, a: dict[str, Any], call: Callable[[], Any]) -> Any:
        snapshot = call()
        image = world.snapshot_images.pop(a["snapshot_id"], None)
        if image is not None:
            image.unlink(missing_ok=True)
            world.record("delete-snapshot", snapshot_id=a["snapshot_id"],
                         detail={"removed": str(image)})
        return snapshot


# -- building the world -------------------------------------------------------------------------


def build_world(aws: Aws, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch,
                zone: str = ZONE) -> EbsWorld:
    """In moto: an instance per server and its data volume attached as DATA_DEVICE, all in
    `zone`; then the hooks. Release it with `world.release()` (the fixtures do)."""
    if not sandbox.loop_volumes:
        raise ValueError("the EBS world needs a Sandbox(loop_volumes=True)")
    ec2 = aws.client("ec2")
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    instances, volumes, devices = {}, {}, {}
    for server in sandbox:
        assert server.loop_device is not None
        tags = [{"Key": "Name", "Value": f"sandbox {server.name}"}]
        instances[server.name] = ec2.run_instances(
            ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro",
            Placement={"AvailabilityZone": zone},
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )["Instances"][0]["InstanceId"]
        volumes[server.name] = ec2.create_volume(
            AvailabilityZone=zone, Size=1, VolumeType="gp3",
            TagSpecifications=[{"ResourceType": "volume", "Tags": tags}])["VolumeId"]
        ec2.attach_volume(VolumeId=volumes[server.name], InstanceId=instances[server.name],
                          Device=DATA_DEVICE)
        devices[server.name] = server.loop_device
    world = EbsWorld(sandbox, aws, zone, instances, volumes, devices, new_volume_id(),
                     free_loop_device(), Path(tempfile.mkdtemp(prefix="resync-ebs-")))
    for server in sandbox:
        assert server.image is not None
        world.blocks[volumes[server.name]] = Block(volumes[server.name], server.image,
                                                   devices[server.name], server.name)
    install_hooks(world, monkeypatch)
    return world


@pytest.fixture(name="ebs_world")
def ebs_world_fixture(aws: Aws, monkeypatch: pytest.MonkeyPatch,
                      make_sandbox: Callable[..., Sandbox]) -> Iterator[Callable[[Sandbox], EbsWorld]]:
    """ebs_world(sandbox) -> EbsWorld, for a sandbox made with make_sandbox(loop_volumes=True).
    Released before the sandboxes are destroyed (this fixture depends on make_sandbox)."""
    require_ebs_world()
    worlds: list[EbsWorld] = []

    def make(sandbox: Sandbox) -> EbsWorld:
        if worlds:
            raise RuntimeError("one EBS world per test")
        worlds.append(build_world(aws, sandbox, monkeypatch))
        return worlds[0]

    try:
        yield make
    finally:
        for world in worlds:
            world.release()


@pytest.fixture(name="ebs_pair")
def ebs_pair_fixture(make_sandbox: Callable[..., Sandbox],
                     ebs_world: Callable[[Sandbox], EbsWorld]) -> EbsWorld:
    """db1 primary -> db2 replica (GTID) on loop volumes, each with its instance in moto."""
    sandbox = make_sandbox(loop_volumes=True)
    sandbox.setup_replication("db1", "db2")
    return ebs_world(sandbox)
