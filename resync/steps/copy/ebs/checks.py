"""The EBS copy's preflight checks: which instances, which volume, which zone, the figures.

All read-only: IMDSv2 on each host (when the runbook says `auto`), findmnt/lsblk/df on the
donor, describe_instances and describe_volumes. A datadir over several volumes, a volume not
attached to the donor, an instance that is not in the region: refused here, before any change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from resync.actions.external import ExternalContext, Outcome
from resync.actions.quoting import q
from resync.actions.types import Captured, Leaf, Ref, Shell, Value
from resync.lb.imds import endpoint
from resync.lb.params import Text, captured_text
from resync.model.ebs import AUTO, EbsSettings, attach_names
from resync.model.errors import ResyncError
from resync.model.keys import DONOR_BYTES, Key
from resync.model.runbook import LoadedRunbook
from resync.plan.estimate import EbsEstimate
from resync.steps.copy.ebs import donor_volume_actions, host_identity
from resync.steps.copy.ebs.aws import Ec2Call
from resync.steps.copy.ebs.keys import (
    DATADIR_IN_VOLUME,
    DONOR,
    DONOR_FSTYPE,
    DONOR_MOUNT,
    DONOR_ROOT_DISK,
    DONOR_SIZE_GIB,
    DONOR_USED_BYTES,
    DONOR_VOLUME,
    DONOR_VOLUME_ZONE,
    DONOR_ZONE,
    IMDS_PREFIX,
    OLD,
    OLD_DATADIR_IN_VOLUME,
    OLD_FSTAB_LINES,
    OLD_FSTYPE,
    OLD_MOUNT,
    OLD_ROOT_DISK,
    OLD_VOLUME,
    RECIPIENT,
    RECIPIENT_DEVICES,
    RECIPIENT_ZONE,
    EbsTargets,
)
from resync.steps.preflight.checks import Check


@dataclass(frozen=True, kw_only=True)
class DescribeInstanceZones(Ec2Call):
    """Both instances exist in the region; their zones captured (the volume is made in the
    recipient's)."""

    roles: tuple[tuple[str, Text], ...] = ()  # (role, instance)
    operation: str = "describe_instances"
    note: str = "both instances in this region; their availability zones"

    def outputs(self) -> tuple[Key, ...]:
        return (DONOR_ZONE, RECIPIENT_ZONE, RECIPIENT_DEVICES)

    def interpret(self, answer: Mapping[str, Any], ctx: ExternalContext) -> Outcome:
        instances = {i.get("InstanceId"): i for r in answer.get("Reservations", [])
                     for i in r.get("Instances", [])}
        zones = {k: (i.get("Placement") or {}).get("AvailabilityZone") for k, i in instances.items()}
        values: dict[Key, Value] = {}
        seen = []
        for role, instance in self.roles:
            wanted = captured_text(instance, ctx.captured)
            if not zones.get(wanted):
                raise ResyncError(f"the {role}'s instance {wanted} is not in this region"
                                  f"{f' ({self.region})' if self.region else ''}: a copy across "
                                  "regions is not supported")
            values[DONOR_ZONE if role == "donor" else RECIPIENT_ZONE] = zones[wanted]
            seen.append(f"{role} {wanted} in {zones[wanted]}")
            if role == "recipient":
                values[RECIPIENT_DEVICES] = " ".join(sorted(
                    str(m.get("DeviceName")) for m in instances[wanted].get("BlockDeviceMappings", [])))
        return Outcome(detail="; ".join(seen), values=values)

    def interpret_error(self, code: str, message: str, ctx: ExternalContext) -> Outcome:
        raise ResyncError(message)


def describe_zones(targets: EbsTargets, region: str | None) -> DescribeInstanceZones:
    ids: list[Text] = [targets.donor_instance, targets.recipient_instance]
    return DescribeInstanceZones(params=(("InstanceIds", ids),), region=region,
                                 accept=("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"),
                                 roles=(("donor", targets.donor_instance),
                                        ("recipient", targets.recipient_instance)))


def _instances(captured: Captured, settings: EbsSettings, targets: EbsTargets) -> str:
    donor = captured_text(targets.donor_instance, captured)
    recipient = captured_text(targets.recipient_instance, captured)
    if donor == recipient:
        raise ResyncError(f"donor and recipient are the same instance {donor}: the copy needs two")
    how = {role: "IMDSv2 on the host" if given == AUTO else "the runbook"
           for role, given in (("donor", settings.donor_instance),
                               ("recipient", settings.recipient_instance))}
    return (f"donor {donor} ({how['donor']}) in {captured_value_text(captured, DONOR_ZONE)}; "
            f"recipient {recipient} ({how['recipient']}) in "
            f"{captured_value_text(captured, RECIPIENT_ZONE)}")


def captured_value_text(captured: Captured, key: object) -> str:
    value = captured.get(str(key))
    if value in (None, ""):
        raise ResyncError(f"'{key}' was not captured")
    return str(value)


def _volume(captured: Captured, settings: EbsSettings, datadir: str) -> str:
    found = captured_value_text(captured, DONOR_VOLUME)
    if settings.donor_volume != AUTO and settings.donor_volume != found:
        raise ResyncError(f"the datadir {datadir} is on {found}, not on the runbook's "
                          f"donor_volume {settings.donor_volume}")
    root = " (the root volume: the snapshot includes the system)" if captured.get(
        str(DONOR_ROOT_DISK)) else ""
    inside = captured_value_text(captured, DATADIR_IN_VOLUME)
    return (f"{found}: {captured_value_text(captured, DONOR_SIZE_GIB)} GiB in "
            f"{captured_value_text(captured, DONOR_VOLUME_ZONE)}, "
            f"{captured_value_text(captured, DONOR_FSTYPE)} mounted at "
            f"{captured_value_text(captured, DONOR_MOUNT)}; the datadir is "
            f"{'its root' if inside == '.' else repr(inside) + ' in it'}{root}")


def _zones(captured: Captured) -> str:
    recipient, volume = (captured_value_text(captured, RECIPIENT_ZONE),
                         captured_value_text(captured, DONOR_VOLUME_ZONE))
    across = ("" if recipient == volume else
              f" (the donor's volume is in {volume}: snapshots are regional, so the new volume "
              "can be made in another zone of the region)")
    return f"the new volume is made in {recipient}, where the recipient runs{across}"


def _attach_name_free(captured: Captured, device: str) -> str:
    in_use = str(captured.get(str(RECIPIENT_DEVICES)) or "").split()
    taken = [n for n in attach_names(device) if n in in_use]
    if taken:
        raise ResyncError(f"{taken[0]} is taken on the recipient (its attach names: "
                          f"{', '.join(in_use)}): set copy.ebs.device to a free one")
    return f"{device} is free (in use: {', '.join(in_use) or 'none'})"


def ebs_estimate(captured: Captured, settings: EbsSettings, donor_writable_after: bool) -> EbsEstimate:
    return EbsEstimate(int(captured_value_text(captured, DONOR_SIZE_GIB)),
                       int(captured_value_text(captured, DONOR_USED_BYTES)),
                       int(captured_value_text(captured, DONOR_BYTES)),
                       donor_writable_after, settings.freeze)


def discovery_actions(loaded: LoadedRunbook) -> tuple[Leaf, ...]:
    """Every read the EBS checks make, in order (also what `plan --detect` runs for its figures)."""
    rb = loaded.model
    settings = rb.copy_.ebs
    targets = EbsTargets.of(settings)
    out: list[Leaf] = []
    for host, given in ((rb.donor, settings.donor_instance),
                        (rb.recipient, settings.recipient_instance)):
        if given == AUTO:
            prefix = f"{DONOR if host == rb.donor else RECIPIENT}.{IMDS_PREFIX}"
            out.append(host_identity(host, prefix, endpoint())[0])
    out.append(describe_zones(targets, settings.region))
    datadir = rb.hosts[rb.donor].datadir.rstrip("/")
    out += donor_volume_actions(rb.donor, datadir, targets.donor_instance,
                                serial_overrides=settings.test_serials)
    out += [Shell.line(rb.donor, f"d=$(realpath -e {q(datadir)}); t=$(findmnt -n -o TARGET -T "
                                 "\"$d\"); realpath -s --relative-to=\"$t\" \"$d\"",
                       into=DATADIR_IN_VOLUME),
            Shell.line(rb.donor, f"df -B1 --output=used {q(datadir)} | tail -1",
                       into=DONOR_USED_BYTES)]
    return tuple(out)


def swap_actions(loaded: LoadedRunbook) -> tuple[Leaf, ...]:
    """Mode swap: the recipient's own data volume, found as the donor's is, and its fstab line."""
    rb = loaded.model
    settings = rb.copy_.ebs
    datadir = rb.hosts[rb.recipient].datadir.rstrip("/")
    return (*donor_volume_actions(rb.recipient, datadir, EbsTargets.of(settings).recipient_instance,
                                  prefix=OLD, serial_overrides=settings.test_serials),
            Shell.line(rb.recipient, f"d=$(realpath -e {q(datadir)}); t=$(findmnt -n -o TARGET "
                                     "-T \"$d\"); realpath -s --relative-to=\"$t\" \"$d\"",
                       into=OLD_DATADIR_IN_VOLUME),
            Shell.line(rb.recipient, "awk -v t=", Ref(OLD_MOUNT), " '$1 !~ /^#/ && $2 == t' ",
                       q(settings.fstab), privileged=True, into=OLD_FSTAB_LINES))


def _swap(captured: Captured, settings: EbsSettings, datadir: str) -> str:
    if captured.get(str(OLD_ROOT_DISK)):
        raise ResyncError(f"{datadir} is on the root volume: mode swap needs the datadir on a "
                          "volume of its own (use mode copy)")
    mine, theirs = (captured_value_text(captured, OLD_DATADIR_IN_VOLUME),
                    captured_value_text(captured, DATADIR_IN_VOLUME))
    mount = captured_value_text(captured, OLD_MOUNT)
    if mine != theirs:
        raise ResyncError(f"the donor's datadir is {theirs!r} in its volume, the recipient's "
                          f"{mine!r} in its own: after a swap the datadir would not be at "
                          f"{datadir} (use mode copy)")
    lines = [line for line in str(captured.get(str(OLD_FSTAB_LINES)) or "").splitlines() if line]
    if len(lines) != 1:
        raise ResyncError(f"{settings.fstab} has {len(lines) or 'no'} line(s) for {mount}: the "
                          "swap rewrites exactly one (mount it through fstab, or use mode copy)")
    old = captured_value_text(captured, OLD_VOLUME)
    return (f"{old} ({captured_value_text(captured, OLD_FSTYPE)} at {mount}) is detached and kept; "
            f"the new volume takes its place and its line in {settings.fstab}: {lines[0]}")


def ebs_tools(loaded: LoadedRunbook) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(donor's, recipient's) commands the EBS copy runs."""
    s = loaded.model.copy_.ebs
    imds = ("curl",)
    donor = ("findmnt", "lsblk", "df", "du", "realpath", *(("fsfreeze",) if s.freeze else ()),
             *(imds if s.donor_instance == AUTO else ()))
    recipient = ("lsblk", "mount", "umount", "mountpoint", "tar", "du", "df", "find",
                 *(imds if s.recipient_instance == AUTO else ()),
                 *(("findmnt", "blkid", "awk", "realpath") if s.mode == "swap" else ()),
                 *(("dd",) if s.prewarm else ()))
    return donor, recipient


def ebs_checks(loaded: LoadedRunbook) -> list[Check]:
    rb = loaded.model
    settings = rb.copy_.ebs
    targets = EbsTargets.of(settings)
    reads = discovery_actions(loaded)
    split = next(i for i, a in enumerate(reads) if isinstance(a, DescribeInstanceZones)) + 1
    datadir = rb.hosts[rb.donor].datadir.rstrip("/")
    recipient_datadir = rb.hosts[rb.recipient].datadir.rstrip("/")
    donor_writable_after = rb.primary_after == rb.donor
    return [
        Check("ebs: instances", "both instances found in the region (ids from IMDSv2 on each "
              "host, or the runbook)", reads[:split],
              lambda c: _instances(c, settings, targets)),
        Check(f"ebs: {rb.donor}'s datadir volume", "one EBS volume holds the datadir (no "
              "LVM/RAID over several), attached to the donor instance", reads[split:],
              lambda c: _volume(c, settings, datadir)),
        Check("ebs: zone", "the new volume is made in the recipient's availability zone", (),
              _zones),
        Check("ebs: attach name", f"{settings.device} is not in use on the recipient instance",
              (), lambda c: _attach_name_free(c, settings.device)),
        *([Check(f"ebs: {rb.recipient}'s data volume (swap)", "on a volume of its own, the "
                 "datadir where the donor's is in its volume, one fstab line for its mount",
                 swap_actions(loaded), lambda c: _swap(c, settings, recipient_datadir))]
          if settings.mode == "swap" else []),
        Check("ebs: estimate", "snapshot time from the volume's used size, write-lock time, "
              "copy time", (), lambda c: ebs_estimate(c, settings, donor_writable_after).describe(),
              only_if_all_passed=True),
    ]
