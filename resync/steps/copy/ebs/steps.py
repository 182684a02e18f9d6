"""The EBS copy method's steps (ROADMAP "Copy method ebs"), in the order a run takes them:

1. `SnapshotDonor`: under the donor's read lock (taken by the step before), optionally with its
   datadir's filesystem frozen, `create_snapshot` of its data volume; thawed in a finally path;
   the lock goes as soon as the snapshot is *started* (crash-consistent at that moment). When
   the donor becomes the replica it is set read-only first: the copy must stay its state.
2. `BuildVolume`: wait for `completed` (Progress and ETA shown), a volume in the recipient's
   zone, attached to the recipient, its block device found by serial or attach name.
3. `CopyFromVolume` (mode copy): mounted read-only at a scratch mount point, the datadir copied
   into the recipient's fresh datadir with the copy's exclusions, unmounted.
4. `ReleaseVolume`: the end of the run: detached (naming the instance), deleted; the snapshot
   deleted unless the runbook keeps it.

The donor keeps running throughout: no stop, no start.
"""

from __future__ import annotations

from resync.actions.dialect import Dialect
from resync.actions.quoting import q
from resync.actions.types import Action, Composite, Leaf, Ref, ReleaseLock, Shell, Sql
from resync.model.ebs import EbsSettings
from resync.model.errors import ResyncError
from resync.model.keys import COPY_BYTES, COPY_SECONDS, RUN_ID, StepId, StepKind
from resync.run.executor import CompositeRun
from resync.steps.base import Step
from resync.steps.copy.commands import (
    TAR_READ,
    TAR_WRITTEN,
    CopySpec,
    clear_partial,
    copy_notes,
    restore_kept,
    stop_leftovers,
    tagged,
)
from resync.steps.copy.ebs import recipient_device_actions
from resync.steps.copy.ebs.aws import (
    SNAPSHOT,
    VOLUME,
    attach_volume,
    create_snapshot,
    create_volume,
    wait_attached,
    wait_snapshot_completed,
    wait_volume_available,
)
from resync.steps.copy.ebs.cleanup import RemoveTagged, delete_snapshot, teardown
from resync.steps.copy.ebs.keys import (
    DATADIR_IN_VOLUME,
    DONOR_FSTYPE,
    DONOR_MOUNT,
    DONOR_VOLUME,
    RECIPIENT_DEVICE,
    RECIPIENT_ZONE,
    WRITE_LOCK_SECONDS,
    EbsTargets,
)
from resync.steps.copy.ebs.swap import KEPT_ASIDE
from resync.steps.copy.pipeline import StreamEnds, run_ends
from resync.steps.services import require_stopped

# what a snapshot or a volume is called in the console and its Name tag
SNAPSHOT_NAME = "datadir of {donor} for {recipient}"


def freeze(host: str) -> Shell:
    return Shell.line(host, "fsfreeze -f ", Ref(DONOR_MOUNT), privileged=True)


def thaw(host: str) -> Shell:
    """Safe to repeat: a filesystem that is not frozen (EINVAL) is as good."""
    return Shell.line(host, "out=$(fsfreeze -u ", Ref(DONOR_MOUNT), " 2>&1) || case \"$out\" in "
                      "*'Invalid argument'*) ;; *) echo \"$out\" >&2; exit 1;; esac",
                      privileged=True)


class Frozen(Composite):
    """fsfreeze -f, the actions, fsfreeze -u in a finally path (the donor must never stay frozen:
    its server would hang on its next write)."""

    def __init__(self, host: str, inside: tuple[Leaf, ...]) -> None:
        self.host, self.inside = host, inside
        self.title = "the donor's datadir filesystem frozen while the snapshot starts"

    def parts(self) -> tuple[Leaf, ...]:
        return (freeze(self.host), *self.inside, thaw(self.host))

    def execute(self, run: CompositeRun) -> None:
        last = len(self.inside) + 1
        try:
            for i in range(last):  # the freeze too: half done, it is thawed as well
                run.do(i)
        finally:
            run.do(last)


class SnapshotDonor(Step):
    """Start the snapshot of the donor's volume under its read lock, then let the lock go."""

    def __init__(self, donor: str, recipient: str, dialect: Dialect, settings: EbsSettings,
                 targets: EbsTargets, runbook: str, lock_session: str, *,
                 donor_becomes_replica: bool) -> None:
        self.donor, self.recipient, self.dialect = donor, recipient, dialect
        self.settings, self.targets, self.runbook = settings, targets, runbook
        self.session, self.read_only = lock_session, donor_becomes_replica
        self.id = StepId(StepKind.EBS_SNAPSHOT, donor)
        self.title = (f"Snapshot {donor}'s data volume, then release its read lock "
                      "(the donor keeps running)")
        self.hosts = (donor,)
        self.why = ("an EBS snapshot is crash-consistent the moment it starts: the write lock "
                    "(and the freeze) need to cover only create_snapshot, not the copy" +
                    ("; the donor stays read-only: it becomes the replica of what is copied "
                     "from it" if donor_becomes_replica else
                     "; afterwards the donor takes writes again: the replica starts from the "
                     "coordinates captured under the lock"))

    def plan(self) -> tuple[Action, ...]:
        region = self.settings.region
        start: Leaf = create_snapshot(
            Ref(DONOR_VOLUME), run_id=Ref(RUN_ID), runbook=self.runbook, region=region,
            name=SNAPSHOT_NAME.format(donor=self.donor, recipient=self.recipient))
        snap: Action = Frozen(self.donor, (start,)) if self.settings.freeze else start
        flush = self.dialect.flush_engine_logs()
        stay_read_only = tuple(Sql(self.donor, s.sql) for s in self.dialect.set_read_only(True))
        return (
            # a snapshot an earlier attempt started is of coordinates that were captured again;
            # found by the run's tag: a killed attempt may never have recorded its id
            RemoveTagged(run_id=Ref(RUN_ID), what="snapshot", region=region),
            # every commit made durable in InnoDB's own log: the copy must recover without the
            # donor's binary logs (it does not get them)
            Sql(self.donor, flush.sql, session=self.session),
            snap,
            *(stay_read_only if self.read_only else ()),
            ReleaseLock(self.donor, self.session, into=WRITE_LOCK_SECONDS))

    def undo_plan(self) -> tuple[Action, ...]:
        out: list[Action] = []
        if self.settings.freeze:
            out.append(thaw(self.donor))
        out.append(ReleaseLock(self.donor, self.session))
        if self.read_only:  # the donor served the application before the run: it does again
            out += [Sql(self.donor, s.sql) for s in self.dialect.set_read_only(False)]
        if not self.settings.keep_snapshot:
            out.append(RemoveTagged(run_id=Ref(RUN_ID), what="snapshot",
                                    region=self.settings.region))
        return tuple(out)


def settle_and_list(host: str) -> Shell:
    """udev has created the device node by the time lsblk reads (a Nitro NVMe device appears a
    moment after the attachment says `attached`)."""
    return Shell.line(host, "udevadm settle --timeout=30 2>/dev/null; true", privileged=True)


class BuildVolume(Step):
    """Snapshot completed -> a volume in the recipient's zone -> attached -> its device found."""

    def __init__(self, recipient: str, settings: EbsSettings, targets: EbsTargets,
                 runbook: str, donor: str) -> None:
        self.recipient, self.settings, self.targets = recipient, settings, targets
        self.runbook, self.donor = runbook, donor
        self.id = StepId(StepKind.EBS_VOLUME, recipient)
        self.title = (f"Wait for the snapshot, make a {settings.volume.type} volume of it in "
                      f"{recipient}'s zone and attach it as {settings.device}")
        self.hosts = (recipient,)
        self.why = ("snapshots are regional, volumes zonal: the volume is made where the "
                    "recipient runs; its device is found by serial (Nitro) or attach name (Xen), "
                    "never guessed")

    def plan(self) -> tuple[Action, ...]:
        s, t = self.settings, self.targets
        vol = s.volume
        return (
            # a volume an earlier attempt made (maybe half attached, maybe never recorded) goes,
            # found by the run's tag; the snapshot stays
            RemoveTagged(run_id=Ref(RUN_ID), what="volume", region=s.region),
            wait_snapshot_completed(SNAPSHOT, timeout=s.timeout, region=s.region),
            create_volume(SNAPSHOT, availability_zone=Ref(RECIPIENT_ZONE), volume_type=vol.type,
                          iops=vol.iops, throughput=vol.throughput, run_id=Ref(RUN_ID),
                          runbook=self.runbook, region=s.region,
                          name=SNAPSHOT_NAME.format(donor=self.donor, recipient=self.recipient)),
            wait_volume_available(VOLUME, region=s.region),
            attach_volume(VOLUME, t.recipient_instance, s.device, region=s.region),
            wait_attached(VOLUME, t.recipient_instance, region=s.region),
            settle_and_list(self.recipient),
            *recipient_device_actions(self.recipient, VOLUME, s.device,
                                      serial_overrides=s.test_serials))

    def undo_plan(self) -> tuple[Action, ...]:
        return (RemoveTagged(run_id=Ref(RUN_ID), what="volume", region=self.settings.region),)


def scratch_mount() -> tuple[str | Ref, ...]:
    return ("/mnt/resync-", Ref(RUN_ID))


def unmount(host: str) -> Shell:
    """Safe to repeat: unmounted (if mounted) and its directory removed."""
    m = scratch_mount()
    return Shell.line(host, "if mountpoint -q ", *m, "; then umount ", *m, " || exit 1; fi; "
                      "rmdir ", *m, " 2>/dev/null; true", privileged=True)


def mount_read_only(host: str) -> Shell:
    """ext4 replays its journal on a writable device even for ro (the snapshot was taken live);
    XFS would refuse a second filesystem with the same UUID as one already mounted: nouuid."""
    m = scratch_mount()
    return Shell.line(host, "set -e; mkdir -p ", *m, "; o=ro; if [ ", Ref(DONOR_FSTYPE),
                      " = xfs ]; then o=ro,nouuid; fi; mount -o \"$o\" ", Ref(RECIPIENT_DEVICE),
                      " ", *m, privileged=True)


def volume_copy(spec: CopySpec) -> Shell:
    """tar from the mounted volume into the fresh datadir, sparse files kept, the copy's
    exclusions applied, owned by the recipient's datadir owner; both tars report their totals."""
    excludes = " ".join(f"--exclude={q(p)}" for p in spec.excludes)
    d = q(spec.recipient_datadir)
    script: list[str | Ref] = [
        "set -euo pipefail; tar -c -S -f - --totals ", excludes, " -C ", *scratch_mount(), "/",
        Ref(DATADIR_IN_VOLUME), " . | tar -x -f - --totals --no-same-owner -C ", d,
        f"; chown -R {q(spec.owner)} {d}"]
    return tagged(spec.recipient, *script)


class VolumeCopyEnds(StreamEnds):
    """One end, on the recipient: watched for progress and stalls as the streamed copy is."""

    def __init__(self, spec: CopySpec, stall_timeout: float) -> None:
        super().__init__(spec, None, volume_copy(spec), listen_timeout=0,
                         stall_timeout=stall_timeout, title=f"copy from the volume into "
                                                        f"{spec.recipient}:{spec.recipient_datadir}")
        self.host = spec.recipient

    def execute(self, run: CompositeRun) -> None:
        ends = run_ends(run, self)
        out = ends.sent.stdout + ends.sent.stderr
        written, read = TAR_WRITTEN.search(out), TAR_READ.search(out)
        if not (written and read) or written.group(1) != read.group(1):
            raise ResyncError(f"the copy from the volume is incomplete: tar wrote "
                              f"{written.group(1) if written else '?'} bytes, the other tar read "
                              f"{read.group(1) if read else '?'}; the old datadir is kept")
        nbytes = int(written.group(1))
        run.progress(nbytes, nbytes, "copy")
        run.capture(COPY_BYTES, nbytes)
        run.capture(COPY_SECONDS, round(ends.seconds, 3))


class CopyFromVolume(Step):
    destructive = True

    def __init__(self, spec: CopySpec, stall_timeout: float) -> None:
        self.spec, self.stall_timeout = spec, stall_timeout
        self.id = StepId(StepKind.COPY, f"{spec.donor}->{spec.recipient}", "ebs")
        self.title = (f"Copy the datadir from the new volume, mounted read-only on "
                      f"{spec.recipient}, into its fresh datadir")
        self.hosts = (spec.recipient,)
        self.why = ("the volume holds the donor's filesystem as the snapshot saw it; only the "
                    "datadir is copied, without the donor's logs and replication state")
        self.summary = (f"ebs: the new volume (the donor's snapshot), read-only on {spec.recipient} "
                        f"→ {spec.recipient}:{spec.recipient_datadir} with tar on "
                        f"{spec.recipient}; tar's byte counts compared")
        self.notes = copy_notes(spec)

    def plan(self) -> tuple[Action, ...]:
        s = self.spec
        return (stop_leftovers(s.recipient),  # of a killed attempt
                *require_stopped(s.recipient, s.recipient_datadir, "the copy needs it stopped"),
                unmount(s.recipient), clear_partial(s), mount_read_only(s.recipient),
                VolumeCopyEnds(s, self.stall_timeout), unmount(s.recipient), restore_kept(s))

    def undo_plan(self) -> tuple[Action, ...]:
        # a copy a killed run left reading the volume would keep it busy
        return (stop_leftovers(self.spec.recipient), unmount(self.spec.recipient))


class ReleaseVolume(Step):
    """The temporary volume goes (and the snapshot, unless kept): the run's last step."""

    def __init__(self, recipient: str, settings: EbsSettings, targets: EbsTargets) -> None:
        self.recipient, self.settings, self.targets = recipient, settings, targets
        self.swap = settings.mode == "swap"
        self.id = StepId(StepKind.EBS_RELEASE, recipient)
        self.title = ("Delete the snapshot (the new volume is the data volume now)" if self.swap
                      else "Detach and delete the temporary volume" +
                      ("" if settings.keep_snapshot else " and the snapshot"))
        self.hosts = (recipient,)
        self.why = ("nothing the run made is left behind (and billed); everything carries the "
                    "tag resync:run-id, so `resync cleanup --run-id` finds what a failure left" +
                    ("; the snapshot is kept (copy.ebs.keep_snapshot)" if settings.keep_snapshot
                     else ""))
        self.no_undo = "deleted volumes and snapshots cannot be brought back; nothing needs them"

    def plan(self) -> tuple[Action, ...]:
        s = self.settings
        if self.swap:  # and the copy of the recipient's own keys made before the swap
            return ((() if s.keep_snapshot else
                     (delete_snapshot(SNAPSHOT, region=s.region, missing_ok=True),)) +
                    (Shell.line(self.recipient, "rm -rf -- ", *KEPT_ASIDE, privileged=True),))
        return (unmount(self.recipient),
                *teardown(self.targets.recipient_instance, keep_snapshot=s.keep_snapshot,
                          region=s.region, missing_ok=True))


