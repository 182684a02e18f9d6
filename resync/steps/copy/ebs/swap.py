"""`copy.ebs.mode: swap`: the volume made from the snapshot becomes the recipient's data volume.

The recipient's datadir must live on a volume of its own, at the same place inside it as the
donor's datadir inside the donor's volume (preflight). The swap, on the stopped recipient:
its logs kept outside the datadir go aside (as in mode copy); its data filesystem is unmounted
and its volume detached and KEPT (its old datadir, whole); the new volume is mounted where the
old one was, and the fstab line of that mount point is rewritten to the new filesystem's UUID
(from a backup taken once, written to a temporary file and renamed over fstab: never half
written); the donor's own files in the copied datadir (binary and relay logs, replication
state, identity: the copy's exclusions) are deleted, and the files given to the owner.
A rollback does it backwards: the new volume unmounted and detached, the old one attached and
mounted again, fstab restored from its backup.

`PrewarmData`: volumes made from snapshots fetch each block from S3 the first time it is read;
reading every data file once before the server starts moves that wait out of the server's first
queries. Off by default: it reads the whole datadir (its time is the copy's time in mode copy).
"""

from __future__ import annotations

from resync.actions.quoting import q
from resync.actions.types import Action, Leaf, Poll, Ref, Shell
from resync.model.ebs import EbsSettings
from resync.model.keys import RUN_ID, Key, StepId, StepKind
from resync.run.executor import CompositeRun
from resync.steps.base import Step
from resync.steps.copy.commands import CopySpec, copy_kept, kept_note, restore_kept, tagged
from resync.steps.copy.ebs import recipient_device_actions
from resync.steps.copy.ebs.aws import VOLUME, attach_volume, wait_attached, wait_volume_available
from resync.steps.copy.ebs.cleanup import detach_volume
from resync.steps.copy.ebs.keys import (
    NEW_UUID,
    OLD,
    OLD_ATTACH_DEVICE,
    OLD_DEVICE,
    OLD_MOUNT,
    OLD_VOLUME,
    RECIPIENT_DEVICE,
    EbsTargets,
)
from resync.steps.copy.pipeline import StreamEnds, Watching, run_ends
from resync.steps.datadir import logs_aside
from resync.steps.services import require_stopped


def fstab_backup(settings: EbsSettings) -> tuple[str | Ref, ...]:
    return (q(settings.fstab), ".resync-", Ref(RUN_ID))


def rewrite_fstab(host: str, settings: EbsSettings) -> Shell:
    """The line whose mount point is the data mount gets `UUID=<new>` as its device; every other
    line, and that line's options, stay as they were. From the backup: safe to repeat."""
    f, backup = q(settings.fstab), fstab_backup(settings)
    return Shell.line(host, "set -e; [ -e ", *backup, f" ] || cp -p {f} ", *backup, "; "
                      "awk -v t=", Ref(OLD_MOUNT), " -v u=", Ref(NEW_UUID), " 'BEGIN { OFS = \"\\t\" } "
                      "$1 !~ /^#/ && $2 == t { $1 = \"UUID=\" u; n++ } { print } "
                      "END { if (n != 1) exit 3 }' ", *backup, f" > {f}.resync-tmp; "
                      f"chmod --reference=", *backup, f" {f}.resync-tmp; sync {f}.resync-tmp; "
                      f"mv -f {f}.resync-tmp {f}", privileged=True)


def restore_fstab(host: str, settings: EbsSettings) -> Shell:
    f, backup = q(settings.fstab), fstab_backup(settings)
    return Shell.line(host, "if [ -e ", *backup, " ]; then cp -p ", *backup, f" {f}.resync-tmp; "
                      f"sync {f}.resync-tmp; mv -f {f}.resync-tmp {f}; fi", privileged=True)


# the recipient's own key files (and keep_on_recipient), copied beside the data mount before the
# swap takes its old filesystem away; put back into the new datadir after it; gone with the run
KEPT_ASIDE: tuple[str | Ref, ...] = (Ref(OLD_MOUNT), ".resync-kept-", Ref(RUN_ID))


def keep_aside(spec: CopySpec) -> Shell:
    """While the old filesystem is still mounted (a repeat after the swap finds the new one and
    leaves the copy it made alone): its files to keep copied aside, root's directory (0700)."""
    return Shell.line(spec.recipient, "src=$(findmnt -n -o SOURCE --mountpoint ", Ref(OLD_MOUNT),
                      " || true); if [ -n \"$src\" ] && [ \"$src\" != ", Ref(RECIPIENT_DEVICE),
                      " ]; then rm -rf -- ", *KEPT_ASIDE, " && mkdir -m 0700 -- ", *KEPT_ASIDE,
                      " && ( ", *copy_kept(spec, (q(spec.recipient_datadir),), KEPT_ASIDE),
                      " ); fi", privileged=True)


def remove_donor_files(spec: CopySpec) -> Shell:
    """The copy's exclusions, deleted from the copied datadir: the donor's logs, replication
    state and identity are not the recipient's (find -path: tar's --exclude patterns)."""
    match = " -o ".join(f"-path {q(p)}" for p in spec.excludes)
    d = q(spec.recipient_datadir)
    return Shell.line(spec.recipient, f"set -e; cd {d}; find . -mindepth 1 \\( {match} \\) -prune "
                      f"-exec rm -rf -- {{}} +; chown -R {q(spec.owner)} {d}", privileged=True)


class SwapVolume(Step):
    destructive = True

    def __init__(self, spec: CopySpec, settings: EbsSettings, targets: EbsTargets,
                 gate: tuple[Action, ...] = ()) -> None:
        self.spec, self.settings, self.targets, self.gate = spec, settings, targets, gate
        self.id = StepId(StepKind.EBS_SWAP, spec.recipient)
        self.title = (f"Make the new volume {spec.recipient}'s data volume (the old one is "
                      "detached and kept)")
        self.hosts = (spec.recipient,)
        self.why = (f"its data mount and the {settings.fstab} line change to the new volume; the "
                    "old volume, with the old datadir whole, is kept detached until cleanup")
        self.notes = (kept_note(spec, "its old volume (copied aside beside the data mount "
                                      "before the swap)"),)

    def plan(self) -> tuple[Action, ...]:
        s, host = self.settings, self.spec.recipient
        m = Ref(OLD_MOUNT)
        return (
            *require_stopped(host, self.spec.recipient_datadir, "refusing to swap its volume"),
            *self.gate,
            *logs_aside(host, self.spec.recipient_datadir, undo=False),
            keep_aside(self.spec),
            # the old filesystem off (unless a repeat finds the new one there already)
            Shell.line(host, "src=$(findmnt -n -o SOURCE --mountpoint ", m, " || true); if [ -n "
                       "\"$src\" ] && [ \"$src\" != ", Ref(RECIPIENT_DEVICE), " ]; then umount ",
                       m, "; fi", privileged=True),
            detach_volume(Ref(OLD_VOLUME), self.targets.recipient_instance, region=s.region,
                          missing_ok=True),
            wait_detached(Ref(OLD_VOLUME), s.region),
            Shell.line(host, "mountpoint -q ", m, " || mount ", Ref(RECIPIENT_DEVICE), " ", m,
                       privileged=True),
            Shell.line(host, "blkid -s UUID -o value ", Ref(RECIPIENT_DEVICE), privileged=True,
                       into=NEW_UUID),
            rewrite_fstab(host, s),
            remove_donor_files(self.spec),
            restore_kept(self.spec, KEPT_ASIDE))

    def undo_plan(self) -> tuple[Action, ...]:
        s, host = self.settings, self.spec.recipient
        m = Ref(OLD_MOUNT)
        instance = self.targets.recipient_instance
        return (
            *require_stopped(host, self.spec.recipient_datadir, "stop it before its old volume "
                                                                "comes back"),
            Shell.line(host, "src=$(findmnt -n -o SOURCE --mountpoint ", m, " || true); if [ \"$src\""
                       " = ", Ref(RECIPIENT_DEVICE), " ]; then umount ", m, "; fi", privileged=True),
            restore_fstab(host, s),
            detach_volume(VOLUME, instance, region=s.region, missing_ok=True),
            wait_detached(VOLUME, s.region),
            attach_volume(Ref(OLD_VOLUME), instance, Ref(OLD_ATTACH_DEVICE), region=s.region,
                          already_ok=True),
            wait_attached(Ref(OLD_VOLUME), instance, region=s.region),
            *recipient_device_actions(host, Ref(OLD_VOLUME), Ref(OLD_ATTACH_DEVICE), prefix=OLD,
                                      serial_overrides=s.test_serials),
            Shell.line(host, "mountpoint -q ", m, " || mount ", Ref(OLD_DEVICE), " ", m,
                       privileged=True),
            *logs_aside(host, self.spec.recipient_datadir, undo=True),
            Shell.line(host, "rm -rf -- ", *KEPT_ASIDE, privileged=True))


def wait_detached(volume: Ref, region: str | None) -> Leaf:
    """`available` again (detached from every instance), or gone: as good."""
    return wait_volume_available(volume, region=region, missing_ok=True)


PREWARM_LOG = ("/tmp/resync-prewarm-", Ref(RUN_ID), ".log")


class PrewarmEnds(StreamEnds):
    """tar reads every file of the datadir (into dd, which reports the bytes as it goes: tar
    alone would skip the reads when its archive is /dev/null)."""

    def __init__(self, spec: CopySpec, stall_timeout: float) -> None:
        read = tagged(spec.recipient, "set -euo pipefail; tar -c -f - -C ",
                      q(spec.recipient_datadir), " . | dd of=/dev/null bs=1M status=progress 2> ",
                      *PREWARM_LOG, "; rm -f ", *PREWARM_LOG)
        super().__init__(spec, None, read, listen_timeout=0, stall_timeout=stall_timeout,
                         title=f"read every file of {spec.recipient}:{spec.recipient_datadir} once")
        self.host = spec.recipient

    def parts(self) -> tuple[Leaf, ...]:
        progress = Poll(Shell.line(self.spec.recipient, "tr '\\r' '\\n' < ", *PREWARM_LOG,
                                   " 2>/dev/null | grep -o '^[0-9]*' | tail -1", check=False),
                        Watching(f"the read has ended; nothing read for {self.stall_timeout:g}s "
                                 "stops it"), self.stall_timeout or 0, 1.0)
        return (self.send, progress)

    def execute(self, run: CompositeRun) -> None:
        ends = run_ends(run, self)
        run.capture(PREWARM_SECONDS, round(ends.seconds, 3))


PREWARM_SECONDS = Key("ebs.prewarm_seconds")


class PrewarmData(Step):
    def __init__(self, spec: CopySpec, stall_timeout: float) -> None:
        self.spec, self.stall_timeout = spec, stall_timeout
        self.id = StepId(StepKind.EBS_PREWARM, spec.recipient)
        self.title = f"Read every data file on {spec.recipient} once (pre-warm the new volume)"
        self.hosts = (spec.recipient,)
        self.why = ("a volume made from a snapshot fetches each block from S3 on its first read: "
                    "read now, not by the server's first queries (copy.ebs.prewarm)")

    def plan(self) -> tuple[Action, ...]:
        return (PrewarmEnds(self.spec, self.stall_timeout),)

