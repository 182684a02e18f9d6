"""Which EBS volume holds the donor's datadir, and which block device a volume is on the recipient.

Pure parsers over what two read-only commands print on a host (`findmnt` of the datadir, `lsblk`
as JSON), and the leaves that run them. The source is followed up to its disk(s): one disk is one
volume; LVM or md RAID over several disks is refused (multi-volume crash-consistent snapshots are
a later step). On Nitro the NVMe serial is the volume id without its dash (vol0123... ->
vol-0123...); on Xen there is no serial and the kernel name maps to the attach name (xvdf <->
/dev/sdf); `describe_volumes` cross-checks either. `serial_overrides` (device name -> serial)
exists ONLY for tests on loop devices, which have no serial: production never passes it.
The journaled leaves that decide from these outputs are in the package (resync.steps.copy.ebs).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from resync.actions.quoting import q
from resync.actions.types import Shell
from resync.model.ebs import attach_names
from resync.model.errors import ResyncError
from resync.model.keys import Key

FINDMNT = "findmnt -n -o SOURCE,TARGET,FSTYPE --target "
LSBLK = "lsblk -J -o NAME,KNAME,TYPE,SERIAL,PKNAME,MOUNTPOINT"
MULTI_VOLUME = "multi-volume crash-consistent snapshots are a later step"
_SERIAL = re.compile(r"vol-?([0-9a-f]{8}(?:[0-9a-f]{9})?)")
_XEN = re.compile(r"(?:xvd|sd)([f-p])")
_WHOLE = ("disk", "loop")  # the devices a volume can be


class DiscoveryError(ResyncError):
    """The volume or device could not be told for sure (nothing was changed)."""


class MultiVolumeRefused(DiscoveryError):
    """The datadir spans several volumes: refused in preflight."""


@dataclass(frozen=True)
class Mount:
    source: str  # /dev/nvme1n1, /dev/mapper/vg-data (a btrfs [/subvolume] suffix removed)
    target: str  # the mount point
    fstype: str


@dataclass(frozen=True)
class BlockDevice:
    name: str  # as lsblk names it (vg-data for a dm device)
    kname: str  # the kernel's name (dm-0)
    type: str  # disk, part, lvm, crypt, raid1, loop, ...
    serial: str | None
    mountpoint: str | None
    parents: frozenset[str] = field(default_factory=frozenset)  # knames


@dataclass(frozen=True)
class DonorVolume:
    """The one volume holding the datadir, as seen on the host."""

    mount: Mount
    disk: str  # the disk's kernel name: nvme1n1, xvdf, loop3
    volume_id: str | None  # from the serial (Nitro); None on Xen: find it by attach name
    attach_names: tuple[str, ...]  # on Xen: the names the attachment may carry (/dev/sdf, ...)
    root: bool  # the same disk holds the root filesystem

    def describe(self) -> str:
        how = self.volume_id or f"attached as {' or '.join(self.attach_names)}"
        return (f"{self.mount.target} ({self.mount.fstype} on {self.mount.source}) is on disk "
                f"{self.disk}{', the root disk' if self.root else ''}: {how}")


def _unescape(text: str) -> str:
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def parse_findmnt(output: str) -> Mount:
    """`findmnt -n -o SOURCE,TARGET,FSTYPE --target DIR`: one line (a target with spaces kept)."""
    lines = [line for line in output.splitlines() if line.strip()]
    if len(lines) != 1 or len(words := lines[0].split()) < 3:
        raise DiscoveryError(f"findmnt printed {output.strip()!r}: expected one line "
                             "'SOURCE TARGET FSTYPE'")
    source = words[0].split("[", 1)[0]
    return Mount(_unescape(source), _unescape(" ".join(words[1:-1])), words[-1])


def parse_lsblk(output: str) -> dict[str, BlockDevice]:
    """`lsblk -J -o NAME,KNAME,TYPE,SERIAL,PKNAME,MOUNTPOINT`, by kernel name. A device under
    several parents (LVM over two disks) is listed once per parent: the parents are merged."""
    try:
        tree = json.loads(output)["blockdevices"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DiscoveryError(f"lsblk did not print its JSON ({exc}): {output.strip()[:200]!r}"
                             ) from None
    found: dict[str, BlockDevice] = {}

    def visit(node: Mapping[str, object], parent: str | None) -> None:
        kname = str(node.get("kname") or node.get("name"))
        parents = {p for p in (parent, node.get("pkname")) if isinstance(p, str) and p}
        serial = str(node.get("serial") or "").strip() or None
        mountpoint = node.get("mountpoint")
        seen = found.get(kname)
        found[kname] = BlockDevice(
            str(node.get("name") or kname), kname, str(node.get("type") or ""), serial,
            str(mountpoint) if mountpoint else (seen.mountpoint if seen else None),
            frozenset(parents | (seen.parents if seen else set())))
        children = node.get("children") or []
        for child in children if isinstance(children, list) else []:
            visit(child, kname)

    for top in tree:
        visit(top, None)
    return found


def volume_id_of_serial(serial: str | None) -> str | None:
    """An NVMe serial on Nitro, vol0123456789abcdef0 -> vol-0123456789abcdef0; else None."""
    found = _SERIAL.fullmatch(serial or "")
    return f"vol-{found.group(1)}" if found else None


def _serial(device: BlockDevice, overrides: Mapping[str, str] | None) -> str | None:
    if overrides:
        for name in (device.kname, device.name):
            for spelled in (name, f"/dev/{name}"):
                if spelled in overrides:
                    return overrides[spelled]
    return device.serial


def _find_source(source: str, devices: Mapping[str, BlockDevice]) -> BlockDevice:
    if not source.startswith("/dev/"):
        raise DiscoveryError(f"the datadir's filesystem comes from {source!r}, not a block device "
                             "(tmpfs, overlay, a network share?): it is on no EBS volume")
    base = source.rsplit("/", 1)[-1]
    matches = [d for d in devices.values() if base in (d.kname, d.name)]
    if len(matches) != 1:
        what = "no block device" if not matches else f"{len(matches)} block devices"
        raise DiscoveryError(f"lsblk lists {what} named {base!r} (the datadir's source {source})")
    return matches[0]


def disks_under(device: BlockDevice, devices: Mapping[str, BlockDevice]) -> list[str]:
    """The whole disks a device lives on (itself, when it is one), in name order."""
    out: set[str] = set()
    pending, seen = [device.kname], set()
    while pending:
        current = devices.get(kname := pending.pop())
        if current is None or kname in seen:
            continue
        seen.add(kname)
        if current.type in _WHOLE or not current.parents:
            out.add(kname)
        else:
            pending += sorted(current.parents)
    return sorted(out)


def resolve_donor(mount: Mount, devices: Mapping[str, BlockDevice],
                  serial_overrides: Mapping[str, str] | None = None) -> DonorVolume:
    """The one volume under `mount`; several disks are refused (MultiVolumeRefused).

    `serial_overrides` (device name -> serial): ONLY for tests on loop devices (no serial)."""
    source = _find_source(mount.source, devices)
    disks = disks_under(source, devices)
    if len(disks) > 1:
        layers = sorted({d.type for d in devices.values() if d.kname not in disks
                         and set(disks_under(d, devices)) == set(disks)} - {"part"})
        through = f" through {'/'.join(layers)}" if layers else ""
        raise MultiVolumeRefused(
            f"the datadir's filesystem ({mount.source} on {mount.target}) spans {len(disks)} "
            f"disks{through} ({', '.join(disks)}): {MULTI_VOLUME}; use copy.method stream or ssh")
    disk = devices[disks[0]]
    root = any(d.mountpoint == "/" and disks[0] in disks_under(d, devices) for d in devices.values())
    serial = _serial(disk, serial_overrides)
    volume = volume_id_of_serial(serial)
    if volume:
        return DonorVolume(mount, disk.kname, volume, (), root)
    if serial:
        raise DiscoveryError(f"disk {disk.kname} (serial {serial!r}) holding {mount.target} is not "
                             "an EBS volume (instance store? not on EC2?)")
    xen = _XEN.fullmatch(disk.kname)
    if not xen:
        raise DiscoveryError(f"disk {disk.kname} holding {mount.target} has no serial and no Xen "
                             "name (xvdf, sdf): its volume cannot be told; give "
                             "copy.ebs.donor_volume: vol-...")
    return DonorVolume(mount, disk.kname, None, attach_names(f"/dev/sd{xen.group(1)}"), root)


def find_attached_device(volume_id: str, requested_device: str,
                         devices: Mapping[str, BlockDevice],
                         serial_overrides: Mapping[str, str] | None = None) -> str:
    """The block device (/dev/...) of a volume attached to this host as `requested_device`.

    By serial where disks carry EBS serials (Nitro); else (Xen: no serial) by the requested
    name or its xvd/sd twin. Never a guess: none or several matches are errors.
    `serial_overrides` (device name -> serial): ONLY for tests on loop devices (no serial)."""
    disks = [d for d in devices.values() if d.type in _WHOLE or not d.parents]
    serials = {d.kname: volume_id_of_serial(_serial(d, serial_overrides)) for d in disks}
    by_serial = sorted(k for k, v in serials.items() if v == volume_id)
    if len(by_serial) == 1:
        return f"/dev/{by_serial[0]}"
    if by_serial:
        raise DiscoveryError(f"{len(by_serial)} disks carry the serial of {volume_id} "
                             f"({', '.join(by_serial)}): refusing to pick one")
    if any(serials.values()):
        raise DiscoveryError(f"no disk carries the serial of {volume_id} (this host names its "
                             "volumes by serial, not by attach name): is it attached here yet?")
    names = {n.removeprefix("/dev/") for n in attach_names(requested_device)}
    by_name = sorted(d.kname for d in disks if d.kname in names)
    if len(by_name) != 1:
        what = "no disk" if not by_name else f"{len(by_name)} disks ({', '.join(by_name)})"
        raise DiscoveryError(f"{what} named {' or '.join(sorted(names))} for {volume_id} attached "
                             f"as {requested_device} (no serials on this host)")
    return f"/dev/{by_name[0]}"


# -- the read-only commands whose output the parsers read ----------------------------------------

def read_mount(host: str, datadir: str, prefix: str) -> Shell:
    """The filesystem holding the datadir, captured as `<prefix>.findmnt`."""
    return Shell.line(host, FINDMNT + q(datadir), into=Key(f"{prefix}.findmnt"))


def read_block_devices(host: str, prefix: str) -> Shell:
    """The host's block devices as JSON, captured as `<prefix>.lsblk`."""
    return Shell.line(host, LSBLK, into=Key(f"{prefix}.lsblk"))
