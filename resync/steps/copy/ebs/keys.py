"""The names the EBS copy captures its findings under, and the instances it works on."""

from __future__ import annotations

from dataclasses import dataclass

from resync.actions.types import Ref
from resync.lb.params import Text
from resync.model.ebs import AUTO, EbsSettings
from resync.model.keys import Key

DONOR, RECIPIENT = "donor.ebs", "recipient.ebs"  # the prefixes of the discovery's captures
IMDS_PREFIX = "imds"
DONOR_INSTANCE = Key(f"{DONOR}.{IMDS_PREFIX}.instance_id")  # read from IMDS on the host: `auto`
RECIPIENT_INSTANCE = Key(f"{RECIPIENT}.{IMDS_PREFIX}.instance_id")
DONOR_ZONE = Key(f"{DONOR}.instance_zone")  # describe_instances: where each instance runs
RECIPIENT_ZONE = Key(f"{RECIPIENT}.instance_zone")
DONOR_VOLUME = Key(f"{DONOR}.volume_id")
DONOR_VOLUME_ZONE = Key(f"{DONOR}.availability_zone")
DONOR_SIZE_GIB = Key(f"{DONOR}.size_gib")
DONOR_MOUNT = Key(f"{DONOR}.mount_target")
DONOR_FSTYPE = Key(f"{DONOR}.fstype")
DONOR_ROOT_DISK = Key(f"{DONOR}.root_disk")
DONOR_USED_BYTES = Key(f"{DONOR}.used_bytes")  # df: what a first snapshot has to store
DATADIR_IN_VOLUME = Key(f"{DONOR}.datadir_in_volume")  # the datadir's path inside the volume
RECIPIENT_DEVICE = Key(f"{RECIPIENT}.device")
RECIPIENT_DEVICES = Key(f"{RECIPIENT}.attach_names_in_use")  # describe_instances
WRITE_LOCK_SECONDS = Key("ebs.write_lock_seconds")
# mode swap: the recipient's own data volume, found as the donor's is (same discovery)
OLD = f"{RECIPIENT}.old"
OLD_VOLUME = Key(f"{OLD}.volume_id")
OLD_MOUNT = Key(f"{OLD}.mount_target")
OLD_FSTYPE = Key(f"{OLD}.fstype")
OLD_ROOT_DISK = Key(f"{OLD}.root_disk")
OLD_ATTACH_DEVICE = Key(f"{OLD}.attach_device")  # describe_volumes: where it was attached
OLD_DATADIR_IN_VOLUME = Key(f"{OLD}.datadir_in_volume")
OLD_FSTAB_LINES = Key(f"{OLD}.fstab_lines")  # the fstab lines of its mount point
OLD_DEVICE = Key(f"{OLD}.device")  # found again when a rollback attaches it back
NEW_UUID = Key(f"{RECIPIENT}.new_uuid")  # the new volume's filesystem UUID (blkid)


@dataclass(frozen=True)
class EbsTargets:
    """The instances: given in the runbook, or read from IMDS on each host (then captured)."""

    donor_instance: Text
    recipient_instance: Text

    @classmethod
    def of(cls, settings: EbsSettings) -> EbsTargets:
        def pick(given: str, key: Key) -> Text:
            return Ref(key) if given == AUTO else given

        return cls(pick(settings.donor_instance, DONOR_INSTANCE),
                   pick(settings.recipient_instance, RECIPIENT_INSTANCE))
