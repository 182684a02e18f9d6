"""The runbook's `copy.ebs` section: snapshot the donor's data volume, build a volume from it in
the recipient's zone, attach it there (see ROADMAP "Copy method ebs").

```yaml
ebs:
  donor_volume: auto         # or vol-...
  donor_instance: auto       # or i-...: auto = IMDSv2 on that host
  recipient_instance: auto
  device: /dev/sdf           # the attach name
  mode: copy                 # copy | swap
  volume: {type: gp3, iops: 3000, throughput: 125}
  freeze: false
  keep_snapshot: false
  prewarm: false
  timeout: 7200
  region: us-east-1          # default: boto3's own (AWS_DEFAULT_REGION, the profile)
  fstab: /etc/fstab          # mode swap: the line of the data mount point gets the new UUID
```

`test_serials` (block device name -> serial) exists ONLY for tests on loop devices, which carry
no serial: on EC2 it stays empty and devices are found by their NVMe serial or attach name.

Ids and device names end up in AWS calls and shell commands: they are checked here, strictly,
rather than quoted everywhere.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from resync.model.base import Strict

AUTO = "auto"
VOLUME_ID = re.compile(r"vol-[0-9a-f]{8}(?:[0-9a-f]{9})?")
INSTANCE_ID = re.compile(r"i-[0-9a-f]{8}(?:[0-9a-f]{9})?")
# the attach names AWS recommends for data volumes; on Xen the kernel calls /dev/sdf xvdf
DEVICE = re.compile(r"/dev/(?:sd|xvd)[f-p]")

# EBS limits (AWS documentation, 2025): gp3 baseline 3000 IOPS / 125 MiB/s, at most 80000 IOPS,
# 2000 MiB/s, and 0.25 MiB/s per provisioned IOPS
GP3_IOPS = (3000, 80000)
GP3_THROUGHPUT = (125, 2000)
GP3_MIBS_PER_IOPS = 0.25
PROVISIONED_IOPS = {"io1": (100, 64000), "io2": (100, 256000)}


def _matching(pattern: re.Pattern[str], what: str, example: str) -> AfterValidator:
    def check(value: str) -> str:
        if value != AUTO and not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}: `auto` or like {example}")
        return value

    return AfterValidator(check)


VolumeRef = Annotated[str, _matching(VOLUME_ID, "a volume id", "vol-0123456789abcdef0")]
InstanceRef = Annotated[str, _matching(INSTANCE_ID, "an instance id", "i-0123456789abcdef0")]


def _device(value: str) -> str:
    if not DEVICE.fullmatch(value):
        raise ValueError(f"{value!r} is not a data volume's attach name: /dev/sdf ... /dev/sdp "
                         "or /dev/xvdf ... /dev/xvdp")
    return value


DeviceName = Annotated[str, AfterValidator(_device)]
REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d")
KERNEL_NAME = re.compile(r"[a-z][a-z0-9]{1,31}")
SERIAL = re.compile(r"vol[0-9a-f]{8}(?:[0-9a-f]{9})?")


def _region(value: str | None) -> str | None:
    if value is not None and not REGION.fullmatch(value):
        raise ValueError(f"{value!r} is not an AWS region like us-east-1")
    return value


def _serials(value: dict[str, str]) -> dict[str, str]:
    for name, serial in value.items():
        if not KERNEL_NAME.fullmatch(name) or not SERIAL.fullmatch(serial):
            raise ValueError(f"test_serials: {name}: {serial} is not a kernel device name "
                             "(loop5) mapped to a volume id without its dash")
    return value


class EbsVolumeSettings(Strict):
    """The volume made from the snapshot. IOPS and throughput unset: the type's baseline."""

    type: Literal["gp3", "gp2", "io1", "io2", "st1", "sc1", "standard"] = "gp3"
    iops: int | None = Field(default=None, gt=0)
    throughput: int | None = Field(default=None, gt=0)  # MiB/s, gp3 only

    @model_validator(mode="after")
    def _limits(self) -> EbsVolumeSettings:
        kind, iops, mibs = self.type, self.iops, self.throughput
        if mibs is not None and kind != "gp3":
            raise ValueError(f"throughput is set only on gp3 volumes, not {kind}")
        if kind == "gp3":
            if iops is not None and not GP3_IOPS[0] <= iops <= GP3_IOPS[1]:
                raise ValueError(f"gp3 iops must be {GP3_IOPS[0]}..{GP3_IOPS[1]}, not {iops}")
            if mibs is not None and not GP3_THROUGHPUT[0] <= mibs <= GP3_THROUGHPUT[1]:
                raise ValueError(f"gp3 throughput must be {GP3_THROUGHPUT[0]}..{GP3_THROUGHPUT[1]}"
                                 f" MiB/s, not {mibs}")
            if mibs is not None and mibs > (iops or GP3_IOPS[0]) * GP3_MIBS_PER_IOPS:
                raise ValueError(f"gp3 throughput {mibs} MiB/s needs at least "
                                 f"{int(mibs / GP3_MIBS_PER_IOPS)} iops (0.25 MiB/s per IOPS), "
                                 f"not {iops or GP3_IOPS[0]}")
        elif kind in PROVISIONED_IOPS:
            low, high = PROVISIONED_IOPS[kind]
            if iops is None:
                raise ValueError(f"{kind} volumes need iops ({low}..{high})")
            if not low <= iops <= high:
                raise ValueError(f"{kind} iops must be {low}..{high}, not {iops}")
        elif iops is not None:
            raise ValueError(f"iops is set only on gp3, io1 and io2 volumes, not {kind}")
        return self


class EbsSettings(Strict):
    """`copy.ebs`: which volume, which instances, and what to do with the new volume."""

    donor_volume: VolumeRef = AUTO  # auto: the volume holding the donor's datadir
    donor_instance: InstanceRef = AUTO  # auto: IMDSv2 on the donor host
    recipient_instance: InstanceRef = AUTO  # auto: IMDSv2 on the recipient host
    device: DeviceName = "/dev/sdf"
    mode: Literal["copy", "swap"] = "copy"
    volume: EbsVolumeSettings = Field(default_factory=EbsVolumeSettings)
    freeze: bool = False  # fsfreeze the datadir's filesystem while the snapshot starts
    keep_snapshot: bool = False
    prewarm: bool = False  # read every data file once before the server starts
    timeout: int = Field(default=7200, ge=60, le=7 * 24 * 3600)  # seconds for the snapshot
    region: Annotated[str | None, AfterValidator(_region)] = None  # default: boto3's own
    fstab: str = Field(default="/etc/fstab", pattern=r"^/[^\s'\"]*$")  # mode swap rewrites a line
    # ONLY for tests on loop devices (no serial): kernel name -> serial; empty on EC2
    test_serials: Annotated[dict[str, str], AfterValidator(_serials)] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _distinct(self) -> EbsSettings:
        if self.donor_instance != AUTO and self.donor_instance == self.recipient_instance:
            raise ValueError(f"donor_instance and recipient_instance are both "
                             f"{self.donor_instance}: the copy needs two instances")
        return self

    @property
    def attach_names(self) -> tuple[str, str]:
        """The two names one attach name goes by: /dev/sdf and /dev/xvdf."""
        return attach_names(self.device)


def attach_names(device: str) -> tuple[str, str]:
    """/dev/sdf or /dev/xvdf -> (/dev/sdf, /dev/xvdf): AWS and Xen kernels use either."""
    letter = device.removeprefix("/dev/").removeprefix("xvd").removeprefix("sd")
    return f"/dev/sd{letter}", f"/dev/xvd{letter}"
