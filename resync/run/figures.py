"""The run's figures, once it is done: the write-downtime as the journal's step times show it,
phase by phase, beside the estimate from what its preflight measured."""

from __future__ import annotations

from resync.model.keys import DOWNTIME_MINUS_COPY, WRITE_DOWNTIME, StepKind
from resync.plan.build import Plan
from resync.plan.estimate import Estimate, measured_estimate
from resync.run.journal import Journal
from resync.steps.copy.ebs.keys import WRITE_LOCK_SECONDS
from resync.steps.copy.hot_commands import HOT_METHODS
from resync.steps.copy.hot_commands import WRITE_LOCK_SECONDS as HOT_WRITE_LOCK_SECONDS


def record_downtime(journal: Journal, plan: Plan) -> None:
    """Write-downtime: from the read lock on the donor until the new primary takes writes again."""
    primary = plan.loaded.model.primary_after

    def timing(kind: StepKind, host: str | None = None) -> tuple[float | None, float | None]:
        step = next((s for s in plan.steps if s.id.kind is kind
                     and (host is None or s.id.subject == host)), None)
        if step is None:
            return None, None
        record = journal.step(step.key)
        return record.started_at, record.finished_at

    rb = plan.loaded.model
    if rb.copy_.method == "ebs" and primary == rb.donor:
        # the donor took writes again once its snapshot had started: that lock is the downtime
        held = journal.data.captured.get(str(WRITE_LOCK_SECONDS))
        if held is not None:
            journal.capture(str(WRITE_DOWNTIME), held)
        return
    if rb.copy_.method in HOT_METHODS and primary == rb.donor:
        # the donor served throughout: only the backup tool's commit lock stopped its writes
        held = journal.data.captured.get(str(HOT_WRITE_LOCK_SECONDS))
        if held is not None:
            journal.capture(str(WRITE_DOWNTIME), held)
        return
    lock_start, _ = timing(StepKind.READ_LOCK)  # hot, seed scenario: the donor's freeze
    _, end = timing(StepKind.MAKE_WRITABLE, primary)
    copy_start, copy_end = timing(StepKind.COPY)
    if lock_start is None or end is None:
        return
    downtime = end - lock_start
    journal.capture(str(WRITE_DOWNTIME), round(downtime, 3))
    if copy_start is not None and copy_end is not None and copy_start >= lock_start:
        journal.capture(str(DOWNTIME_MINUS_COPY), round(downtime - (copy_end - copy_start), 3))
    if rb.copy_.method in ("stream", "ssh"):
        record_phases(journal, plan, downtime)


def record_phases(journal: Journal, plan: Plan, downtime: float) -> None:
    """The write-downtime phase by phase, estimated (from what preflight measured) and actual
    (from the steps' wall times), side by side in the journal: `estimate.phase.*` and
    `figures.phase.*`. The estimate's constants are checked against these."""
    rb = plan.loaded.model

    def seconds(*keys: str) -> float:
        total = 0.0
        for key in keys:
            record = journal.step(key)
            if record.started_at is not None and record.finished_at is not None:
                total += record.finished_at - record.started_at
        return total

    def key(kind: StepKind, host: str) -> str:
        return next(s.key for s in plan.steps if s.id.kind is kind and s.id.subject == host)

    actual = {"lock": seconds(key(StepKind.READ_LOCK, rb.donor)),
              "donor_shutdown": seconds(key(StepKind.STOP_SERVICE, rb.donor)),
              "copy": seconds(next(s.key for s in plan.steps if s.id.kind is StepKind.COPY)),
              # the recipient and the donor, started together in one step
              "starts": seconds(*(s.key for s in plan.steps
                                  if s.id.kind is StepKind.START_SERVICE))}
    actual["repoint"] = max(0.0, downtime - sum(actual.values()))
    for name, value in actual.items():
        journal.capture(f"figures.phase.{name}", round(value, 3))
    estimate = downtime_estimate(journal, plan)
    if estimate is None:
        return
    for name, figure in estimate.as_values().items():
        journal.capture(name, figure)


def downtime_estimate(journal: Journal, plan: Plan) -> Estimate | None:
    """The cold copy's write-downtime estimate from what this run's preflight measured."""
    rb = plan.loaded.model
    if rb.copy_.method not in ("stream", "ssh"):
        return None
    return measured_estimate(journal.data.captured, rb.primary_after == rb.recipient,
                             rb.copy_.bandwidth_mb_per_s)
