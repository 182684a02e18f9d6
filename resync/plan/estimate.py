"""Downtime estimate, phase by phase: the copy from the datadir size over the measured (or
declared) bandwidth, the rest from constants measured here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from resync.model.keys import DONOR_BYTES, PROBE_RATE

PROBE_BYTES = 128 * 1024 * 1024

# The write-downtime of a cold copy, phase by phase, from the lock on the donor until the new
# primary is writable. Measured here (sandbox pair, 2 cores, 370 MB datadir, the donor's dirty
# pages flushed before the lock, service scripts that return once the server is ready or gone,
# as systemctl does): lock 0.04-0.17 s, donor shutdown 0.21-0.36 s, copy step = transfer +
# 0.3-0.8 s (the relay written and started on both ends, the listener awaited, the ends'
# reports compared), starts 0.30-0.43 s for both (started together), re-pointing 0.15-0.18 s
# (the engine logs flushed first make RESET MASTER immediate). Rounded up where they vary; the
# copy is the one that scales.
PHASE_SECONDS = {
    "lock": 0.1,  # FLUSH TABLES WITH READ LOCK, coordinates
    "donor_shutdown": 0.2,  # a clean shutdown after the pre-flush (few dirty pages left)
    "copy_setup": 0.5,  # the copy step's own work around the transfer
    "starts": 0.3,  # both servers started read-only, together
}
REPOINT_SECONDS = {True: 0.15, False: 0.1}  # old primary rebuilt (binlogs reset, lock) : replica
# dirty pages a shutdown may still flush (the pre-flush waits until at most this many remain)
SHUTDOWN_DIRTY_BYTES = 1000 * 16384
SHUTDOWN_FLUSH_BYTES_PER_SECOND = 100e6


def measured_estimate(captured: Mapping[str, object], rebuild_primary: bool,
                      bandwidth_mb_per_s: float | None) -> Estimate | None:
    """The cold copy's estimate from what preflight measured (the donor's datadir size and the
    probe's rate, or the runbook's declared bandwidth); None before they are known."""
    size, probe = captured.get(str(DONOR_BYTES)), captured.get(str(PROBE_RATE))
    if size is None or (not bandwidth_mb_per_s and probe is None):
        return None
    return Estimate(int(str(size)), bandwidth_mb_per_s * 1e6 if bandwidth_mb_per_s
                    else float(str(probe)), "runbook" if bandwidth_mb_per_s else "probe",
                    rebuild_primary)


@dataclass(frozen=True)
class Estimate:
    datadir_bytes: int
    bandwidth: float  # bytes/s of the copy transport
    bandwidth_source: str  # "probe" or "runbook"
    rebuild_primary: bool = False  # the seed scenario: the recipient becomes the primary

    @property
    def copy_seconds(self) -> float:
        return self.datadir_bytes / self.bandwidth

    def phases(self) -> dict[str, float]:
        """Seconds per phase of the write-downtime (the same names as the run's actuals)."""
        return {"lock": PHASE_SECONDS["lock"],
                "donor_shutdown": PHASE_SECONDS["donor_shutdown"]
                + SHUTDOWN_DIRTY_BYTES / SHUTDOWN_FLUSH_BYTES_PER_SECOND,
                "copy": self.copy_seconds + PHASE_SECONDS["copy_setup"],
                "starts": PHASE_SECONDS["starts"],
                "repoint": REPOINT_SECONDS[self.rebuild_primary]}

    @property
    def write_downtime_seconds(self) -> float:
        return sum(self.phases().values())

    def describe(self) -> str:
        parts = ", ".join(f"{name.replace('_', ' ')} {seconds:.1f}s"
                          for name, seconds in self.phases().items())
        return (f"datadir {self.datadir_bytes / 1e9:.2f} GB at {self.bandwidth / 1e6:.0f} MB/s "
                f"({self.bandwidth_source}): copy ~{self.copy_seconds:.0f}s, write-downtime "
                f"~{self.write_downtime_seconds:.1f}s ({parts}; disk speed can make the copy "
                "slower than the link)")

    def as_values(self) -> dict[str, float | int | str]:
        return {"estimate.datadir_bytes": self.datadir_bytes,
                "estimate.bandwidth_bytes_per_second": round(self.bandwidth),
                "estimate.bandwidth_source": self.bandwidth_source,
                "estimate.copy_seconds": round(self.copy_seconds, 1),
                "estimate.write_downtime_seconds": round(self.write_downtime_seconds, 1),
                **{f"estimate.phase.{k}": round(v, 2) for k, v in self.phases().items()}}


# The EBS copy's figures. AWS publishes no snapshot or lazy-load rate: these are assumptions,
# named as such wherever they are shown. A first snapshot stores every used block (later ones of
# the same volume only the changed blocks: faster); a volume made from a snapshot loads each
# block from S3 the first time it is read.
SNAPSHOT_BYTES_PER_SECOND = 100e6
RESTORED_READ_BYTES_PER_SECOND = 50e6
# FLUSH TABLES WITH READ LOCK on an idle server, then one create_snapshot call (well under a
# second on AWS), then UNLOCK TABLES: the lock's usual span, with room for a slow API answer
EBS_LOCK_SECONDS = 2.0
# create_volume -> available -> attached -> device found, and at the end detach -> delete
EBS_VOLUME_SECONDS = 60.0


@dataclass(frozen=True)
class EbsEstimate:
    volume_gib: int
    used_bytes: int  # of the donor's volume's filesystem (df): what a first snapshot stores
    datadir_bytes: int  # what the copy from the new volume reads
    donor_writable_after: bool  # the donor is the primary afterwards: it takes writes again
    freeze: bool = False

    @property
    def snapshot_seconds(self) -> float:
        return self.used_bytes / SNAPSHOT_BYTES_PER_SECOND

    @property
    def copy_seconds(self) -> float:
        return self.datadir_bytes / RESTORED_READ_BYTES_PER_SECOND

    @property
    def lock_seconds(self) -> float:
        return EBS_LOCK_SECONDS + (1.0 if self.freeze else 0.0)

    @property
    def write_downtime_seconds(self) -> float:
        """The donor takes writes again right after the lock when it stays the primary; else
        nothing takes writes until the rebuilt recipient does."""
        if self.donor_writable_after:
            return self.lock_seconds
        return (self.lock_seconds + self.snapshot_seconds + EBS_VOLUME_SECONDS + self.copy_seconds
                + PHASE_SECONDS["starts"] / 2 + REPOINT_SECONDS[True])

    def describe(self) -> str:
        return (f"donor volume {self.volume_gib} GiB, {self.used_bytes / 1e9:.2f} GB used (df): "
                f"first snapshot ~{self.snapshot_seconds:.0f}s (assumed "
                f"{SNAPSHOT_BYTES_PER_SECOND / 1e6:.0f} MB/s: AWS publishes no rate; later "
                f"snapshots of the volume store only changed blocks); write lock "
                f"~{self.lock_seconds:.0f}s (FLUSH TABLES WITH READ LOCK + create_snapshot"
                f"{' + fsfreeze' if self.freeze else ''}); copy of {self.datadir_bytes / 1e9:.2f} "
                f"GB from the new volume ~{self.copy_seconds:.0f}s (assumed "
                f"{RESTORED_READ_BYTES_PER_SECOND / 1e6:.0f} MB/s: its blocks load from S3 on first "
                f"read); write-downtime ~{self.write_downtime_seconds:.0f}s" +
                (" (the donor takes writes again once the snapshot has started)"
                 if self.donor_writable_after else
                 f" (lock, snapshot, {EBS_VOLUME_SECONDS:g}s for the volume, copy, "
                 f"{PHASE_SECONDS['starts'] / 2 + REPOINT_SECONDS[True]:g}s for starting and "
                 "re-pointing)"))

    def as_values(self) -> dict[str, float | int | str]:
        return {"estimate.volume_gib": self.volume_gib,
                "estimate.volume_used_bytes": self.used_bytes,
                "estimate.datadir_bytes": self.datadir_bytes,
                "estimate.snapshot_seconds": round(self.snapshot_seconds, 1),
                "estimate.snapshot_rate_source": "assumed",
                "estimate.write_lock_seconds": round(self.lock_seconds, 1),
                "estimate.copy_seconds": round(self.copy_seconds, 1),
                "estimate.write_downtime_seconds": round(self.write_downtime_seconds, 1)}
