"""The run ahead, phase by phase, from what the preflight measured (the journal's values).

The write-downtime phases are the estimate's own (`resync.plan.estimate`: `Estimate.phases()`
for a stream or ssh copy, `EbsEstimate` for ebs, the hot copy's lock or switch); around them are
the phases outside the downtime, from constants measured here (sandbox pair, 2 cores, 370 MB
datadir, `resync demo`): the recipient's stop 0.25-1.5 s and its datadir moved aside 0.06-0.74 s,
the donor's pre-flush 0.01-5 s (it waits at most 300 s), verify 4.3 s for 370 MB (87 MB/s).
Each is rounded up: a real server with a large buffer pool takes longer to stop, and the check
again at the point of no return sees what the steps before it really took. Load-balancer drains
and DNS TTL waits are the balancer's own settings, read when they run: not in the estimate, the
recheck sees their time.
"""

from __future__ import annotations

from resync.actions.types import Captured
from resync.model.errors import ResyncError
from resync.model.keys import DONOR_BYTES, PROBE_RATE
from resync.model.runbook import Runbook
from resync.plan.estimate import (
    EBS_VOLUME_SECONDS,
    PHASE_SECONDS,
    REPOINT_SECONDS,
    EbsEstimate,
    Estimate,
)
from resync.steps.copy.ebs.checks import ebs_estimate
from resync.steps.copy.hot_commands import HOT_METHODS
from resync.steps.preflight.verdicts import HOT_LOCK_SECONDS, HOT_SWITCH_SECONDS
from resync.window.fit import Phase, RunFigures

RECIPIENT_STOP_SECONDS = 10.0  # stop and move aside (0.3-2.2 s measured here)
PREFLUSH_SECONDS = 30.0  # the donor's dirty pages flushed while it serves (0.01-5 s here)
VERIFY_BYTES_PER_SECOND = 40e6  # of the donor's datadir (87 MB/s measured here, halved)
VERIFY_SETUP_SECONDS = 5.0
PREPARE_BYTES_PER_SECOND = 200e6  # a hot copy's --prepare (assumed: it replays the redo log)
# the phase already behind a run at its point of no return (the recipient stopped)
BEFORE_POINT_OF_NO_RETURN = frozenset({"recipient_stop"})


class NotEstimable(ResyncError):
    """A figure the estimate needs was not captured (the preflight did not measure it)."""


def _size(captured: Captured) -> int:
    value = captured.get(str(DONOR_BYTES))
    if value in (None, ""):
        raise NotEstimable("the donor's datadir size was not measured (the preflight's disk "
                           "space check did not run)")
    return int(str(value))


def _rate(captured: Captured, rb: Runbook) -> tuple[float, str]:
    declared = rb.copy_.bandwidth_mb_per_s
    if declared:
        return declared * 1e6, "runbook"
    value = captured.get(str(PROBE_RATE))
    if value in (None, ""):
        raise NotEstimable("the copy bandwidth was not measured (the preflight's probe did not "
                           "run: an earlier check failed)")
    return float(str(value)), "probe"


def _verify(size: int) -> Phase:
    return Phase("verify", VERIFY_SETUP_SECONDS + size / VERIFY_BYTES_PER_SECOND, False)


def run_figures(captured: Captured, rb: Runbook, *, at_point_of_no_return: bool = False) -> RunFigures:
    """The run from the window gate to its end (or, at the point of no return, what is left of
    it), from the values the preflight captured. NotEstimable when one is missing."""
    if rb.copy_.method == "ebs":
        figures = _ebs(captured, rb)
    elif rb.copy_.method in HOT_METHODS:
        figures = _hot(captured, rb)
    else:
        figures = _cold(captured, rb)
    if not at_point_of_no_return:
        return figures
    ahead = tuple(p for p in figures.phases if p.name not in BEFORE_POINT_OF_NO_RETURN)
    return RunFigures(ahead, figures.datadir_bytes, figures.bandwidth, figures.bandwidth_source,
                      figures.basis)


def _cold(captured: Captured, rb: Runbook) -> RunFigures:
    size = _size(captured)
    rate, source = _rate(captured, rb)
    estimate = Estimate(size, rate, source, rb.primary_after == rb.recipient)
    downtime = tuple(Phase(n, s, True) for n, s in estimate.phases().items())
    return RunFigures(
        (Phase("recipient_stop", RECIPIENT_STOP_SECONDS, False),
         Phase("preflush", PREFLUSH_SECONDS, False), *downtime, _verify(size)),
        size, rate, source, f"datadir {size / 1e9:.2f} GB at {rate / 1e6:.0f} MB/s ({source})")


def _hot(captured: Captured, rb: Runbook) -> RunFigures:
    """The donor serves while its backup streams; the writes stop only for the tool's commit
    lock (replica rebuilt) or the switch (the old primary rebuilt)."""
    size = _size(captured)
    rate, source = _rate(captured, rb)
    rebuild_primary = rb.primary_after == rb.recipient
    return RunFigures(
        (Phase("recipient_stop", RECIPIENT_STOP_SECONDS, False),
         Phase("copy", size / rate + PHASE_SECONDS["copy_setup"], False),
         Phase("prepare", size / PREPARE_BYTES_PER_SECOND, False),
         Phase("start", PHASE_SECONDS["starts"] / 2, False),
         Phase("switch" if rebuild_primary else "backup_lock",
               HOT_SWITCH_SECONDS if rebuild_primary else HOT_LOCK_SECONDS, True),
         Phase("repoint", REPOINT_SECONDS[rebuild_primary], rebuild_primary),
         _verify(size)),
        size, rate, source,
        f"datadir {size / 1e9:.2f} GB at {rate / 1e6:.0f} MB/s ({source}), the donor serving; "
        f"prepare assumed at {PREPARE_BYTES_PER_SECOND / 1e6:.0f} MB/s")


def _ebs(captured: Captured, rb: Runbook) -> RunFigures:
    try:
        e: EbsEstimate = ebs_estimate(captured, rb.copy_.ebs, rb.primary_after == rb.donor)
    except (ResyncError, ValueError) as exc:
        raise NotEstimable(f"the EBS figures were not measured: {exc}") from None
    stopped = not e.donor_writable_after  # nothing takes writes until the recipient does
    settings = rb.copy_.ebs
    reads: tuple[Phase, ...] = ()
    if settings.mode == "copy":
        reads = (Phase("copy", e.copy_seconds, stopped),)
    elif settings.prewarm:
        reads = (Phase("prewarm", e.copy_seconds, stopped),)
    return RunFigures(
        (Phase("recipient_stop", RECIPIENT_STOP_SECONDS, False),
         Phase("lock", e.lock_seconds, True),
         Phase("snapshot", e.snapshot_seconds, stopped),
         Phase("volume", EBS_VOLUME_SECONDS, stopped),
         *reads,
         Phase("starts", PHASE_SECONDS["starts"] / 2, stopped),
         Phase("repoint", REPOINT_SECONDS[True], stopped),
         _verify(e.datadir_bytes)),
        e.datadir_bytes, None, "assumed",
        f"EBS: {e.used_bytes / 1e9:.2f} GB used on the donor's volume, datadir "
        f"{e.datadir_bytes / 1e9:.2f} GB; snapshot and first-read rates assumed (AWS publishes "
        "none)")
