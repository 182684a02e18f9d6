"""The EBS copy method: the journaled leaves that find the volumes.

The donor side: `donor_volume_actions` runs findmnt and lsblk on the donor (read-only), decides
which one volume holds the datadir (ResolveDonorVolume: several volumes are refused) and
cross-checks it with `describe_volumes` (DescribeDonorVolume). The recipient side:
`recipient_device_actions` finds the block device of an attached volume, by NVMe serial (Nitro)
or by the requested attach name (Xen), never by guessing. The parsing and the decisions
themselves are pure functions in `discovery`. `serial_overrides` (device name -> serial) exists
ONLY for tests on loop devices, which have no serial: production never passes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from resync.actions.external import External, ExternalContext, Outcome
from resync.actions.quoting import q
from resync.actions.types import Fmt, Leaf, Ref, Shell, Slot, Template, Value
from resync.lb.aws import AwsCall
from resync.lb.imds import DEFAULT_ENDPOINT, TOKEN_TTL
from resync.lb.params import Text, captured_text
from resync.model.keys import Key
from resync.steps.copy.ebs.discovery import (
    DiscoveryError,
    find_attached_device,
    parse_findmnt,
    parse_lsblk,
    read_block_devices,
    read_mount,
    resolve_donor,
)

Overrides = tuple[tuple[str, str], ...]


def _overrides_note(overrides: Overrides) -> str:
    return (" (test-only serial map: " + ", ".join(f"{d}={s}" for d, s in overrides) + ")"
            if overrides else "")


def _captured(ctx: ExternalContext, prefix: str, name: str) -> str:
    value = ctx.captured.get(f"{prefix}.{name}")
    if value is None:
        raise DiscoveryError(f"'{prefix}.{name}' has not been captured (run the {name} leaf first)")
    return str(value)


@dataclass(frozen=True, kw_only=True)
class ResolveDonorVolume(External):
    """From the captured findmnt and lsblk: the one volume holding the datadir. Captures
    `<prefix>.volume_id` (None on Xen), `.disk`, `.attach_names`, `.source`, `.mount_target`,
    `.fstype`, `.root_disk` (1/0). `serial_overrides`: ONLY for tests on loop devices."""

    host: str
    prefix: str
    serial_overrides: Overrides = ()
    kind = "ebs-discover"

    def template(self) -> Template:
        return (f"the volume under {self.prefix}.findmnt's source in {self.prefix}.lsblk: one disk, "
                f"its NVMe serial (Nitro) or Xen name{_overrides_note(self.serial_overrides)}",)

    def perform(self, ctx: ExternalContext) -> Outcome:
        found = resolve_donor(parse_findmnt(_captured(ctx, self.prefix, "findmnt")),
                              parse_lsblk(_captured(ctx, self.prefix, "lsblk")),
                              dict(self.serial_overrides))
        values: dict[str, Value] = {
            "volume_id": found.volume_id, "disk": found.disk,
            "attach_names": " ".join(found.attach_names) or None, "source": found.mount.source,
            "mount_target": found.mount.target, "fstype": found.mount.fstype,
            "root_disk": int(found.root)}
        return Outcome(detail=found.describe(),
                       values={Key(f"{self.prefix}.{k}"): v for k, v in values.items()})


@dataclass(frozen=True, kw_only=True)
class DescribeDonorVolume(AwsCall):
    """`describe_volumes` of the donor instance: the discovered volume must be attached to it
    (by id on Nitro, by attach name on Xen). Captures `<prefix>.volume_id`, `.availability_zone`,
    `.size_gib`, `.volume_type`, `.encrypted` (1/0), `.attach_device`."""

    prefix: str
    service: str = "ec2"
    operation: str = "describe_volumes"
    note: str = "the discovered volume is attached to the donor instance"

    def interpret(self, answer: Mapping[str, Any], ctx: ExternalContext) -> Outcome:
        instance = str(self.arguments(ctx.captured)["Filters"][0]["Values"][0])
        wanted = ctx.captured.get(f"{self.prefix}.volume_id")
        names = str(ctx.captured.get(f"{self.prefix}.attach_names") or "").split()
        hits = []
        for volume in answer.get("Volumes", []):
            for att in volume.get("Attachments", []):
                if att.get("InstanceId") != instance:
                    continue
                if volume.get("VolumeId") == wanted if wanted else att.get("Device") in names:
                    hits.append((volume, att))
        how = f"volume {wanted}" if wanted else f"a volume attached as {' or '.join(names)}"
        if len(hits) != 1:
            seen = ", ".join(f"{v.get('VolumeId')}@{a.get('Device')}" for v in answer.get(
                "Volumes", []) for a in v.get("Attachments", [])) or "none"
            raise DiscoveryError(f"instance {instance} has {len(hits) or 'no'} {how} (attached: "
                                 f"{seen}); give copy.ebs.donor_volume / donor_instance")
        volume, att = hits[0]
        if att.get("State") != "attached":
            raise DiscoveryError(f"{volume.get('VolumeId')} on {instance} is {att.get('State')}, "
                                 "not attached")
        values: dict[str, Value] = {
            "volume_id": volume.get("VolumeId"), "availability_zone": volume.get("AvailabilityZone"),
            "size_gib": volume.get("Size"), "volume_type": volume.get("VolumeType"),
            "encrypted": int(bool(volume.get("Encrypted"))), "attach_device": att.get("Device")}
        return Outcome(detail=f"{values['volume_id']} ({values['size_gib']} GiB "
                              f"{values['volume_type']}) on {instance} as {values['attach_device']}"
                              f" in {values['availability_zone']}",
                       values={Key(f"{self.prefix}.{k}"): v for k, v in values.items()})


def describe_donor_volume(instance: Text, prefix: str) -> DescribeDonorVolume:
    """The cross-check of ResolveDonorVolume's answer against EC2 (instance: id or captured)."""
    return DescribeDonorVolume(prefix=prefix, params=(("Filters", [
        {"Name": "attachment.instance-id", "Values": [instance]}]),))


def donor_volume_actions(host: str, datadir: str, instance: Text, prefix: str = "donor.ebs",
                         serial_overrides: Mapping[str, str] | None = None) -> tuple[Leaf, ...]:
    """findmnt, lsblk, the decision, the describe_volumes cross-check: all read-only.
    `serial_overrides`: ONLY for tests on loop devices."""
    overrides = tuple(sorted((serial_overrides or {}).items()))
    return (read_mount(host, datadir, prefix), read_block_devices(host, prefix),
            ResolveDonorVolume(host=host, prefix=prefix, serial_overrides=overrides),
            describe_donor_volume(instance, prefix))


@dataclass(frozen=True, kw_only=True)
class FindAttachedDevice(External):
    """From the captured lsblk of the recipient: the device of `volume` attached as
    `requested_device`; captured as `<prefix>.device`. `serial_overrides`: ONLY for tests."""

    host: str
    prefix: str
    volume: Text
    requested_device: Text
    serial_overrides: Overrides = ()
    kind = "ebs-discover"

    def template(self) -> Template:
        def word(value: Text) -> str | Slot:
            return Slot(value.key, Fmt.TEXT) if isinstance(value, Ref) else value

        return ("the block device of ", word(self.volume), " attached as ",
                word(self.requested_device), ": by serial (Nitro) or by that name (Xen), in "
                f"{self.prefix}.lsblk{_overrides_note(self.serial_overrides)}")

    def perform(self, ctx: ExternalContext) -> Outcome:
        volume = captured_text(self.volume, ctx.captured)
        device = find_attached_device(volume, captured_text(self.requested_device, ctx.captured),
                                      parse_lsblk(_captured(ctx, self.prefix, "lsblk")),
                                      dict(self.serial_overrides))
        return Outcome(detail=f"{volume} is {device}", values={Key(f"{self.prefix}.device"): device})


def recipient_device_actions(host: str, volume: Text, requested_device: Text,
                             prefix: str = "recipient.ebs",
                             serial_overrides: Mapping[str, str] | None = None) -> tuple[Leaf, ...]:
    """lsblk on the recipient, then the device of the attached volume (never guessed)."""
    overrides = tuple(sorted((serial_overrides or {}).items()))
    return (read_block_devices(host, prefix),
            FindAttachedDevice(host=host, prefix=prefix, volume=volume,
                               requested_device=requested_device, serial_overrides=overrides))


def host_identity(host: str, prefix: str, base: str = DEFAULT_ENDPOINT) -> tuple[Shell, Shell]:
    """IMDSv2 read on the host itself (not the controller): its instance id and zone, captured
    as `<prefix>.instance_id` and `<prefix>.availability_zone`. `base`: tests point it at a
    stand-in on 127.0.0.1. curl fails fast (-f, short timeouts) off EC2."""
    def get(path: str, name: str) -> Shell:
        token = (f"t=$(curl -sSf -m 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: {TOKEN_TTL}'"
                 f" {q(base + '/latest/api/token')})")
        read = (f"curl -sSf -m 2 -H \"X-aws-ec2-metadata-token: $t\" "
                f"{q(base + '/latest/meta-data/' + path)}")
        return Shell.line(host, f"{token} && {read}", into=Key(f"{prefix}.{name}"))

    return (get("instance-id", "instance_id"), get("placement/availability-zone", "availability_zone"))
