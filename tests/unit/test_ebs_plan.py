"""The EBS copy method as a plan: which steps, in which order, what the lock and the freeze cover."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import line_no, runbook_error
from test_render import make_plan

from resync.actions.types import Composite, Leaf, ReleaseLock, Sql
from resync.lb.aws import AwsCall
from resync.plan.build import Plan
from resync.plan.estimate import EbsEstimate
from resync.steps.copy.ebs.keys import WRITE_LOCK_SECONDS
from resync.steps.copy.ebs.steps import Frozen, SnapshotDonor


def keys(plan: Plan) -> list[str]:
    return [s.key for s in plan.steps]


def old_primary_with_ebs() -> Plan:
    text = (Path(__file__).resolve().parents[2] / "runbooks/rebuild-old-primary.yaml").read_text()
    assert "copy:" in text
    return make_plan("rebuild-old-primary", edit=(_copy_section(text), "copy:\n  method: ebs\n  "
                                                  "ebs: {freeze: true, keep_snapshot: true}\n"))


def _copy_section(text: str) -> str:
    """The `copy:` block of the example (up to the next top-level key)."""
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("copy:"))
    end = next((i for i in range(start + 1, len(lines))
                if lines[i][:1] not in (" ", "\n")), len(lines))
    return "".join(lines[start:end])


def test_replica_rebuild_never_stops_the_donor() -> None:
    plan = make_plan("rebuild-replica-ebs")
    assert keys(plan) == [
        "preflight", "read-lock:db1:source", "ebs-snapshot:db1", "stop-service:db2",
        "move-datadir-aside:db2", "ebs-volume:db2", "copy-datadir:db1->db2:ebs",
        "start-service:db2", "point-replica:db2", "wait-replica:db2", "make-writable:db1",
        "verify-data:db1=db2", "ebs-release:db2"]
    assert not any(s.key.endswith(":db1") and s.key.split(":")[0] in ("stop-service",
                                                                     "start-service")
                   for s in plan.steps)


def test_the_lock_is_released_once_the_snapshot_has_started() -> None:
    snap = make_plan("rebuild-replica-ebs").steps[2]
    assert isinstance(snap, SnapshotDonor)
    actions = snap.plan()
    create = next(i for i, a in enumerate(actions)
                  if isinstance(a, AwsCall) and a.operation == "create_snapshot")
    release = actions[-1]
    assert isinstance(release, ReleaseLock) and release.into == WRITE_LOCK_SECONDS
    assert create == len(actions) - 2, "nothing between the snapshot's start and the unlock"
    # InnoDB's commits made durable in its own log right before (the copy gets no binlogs)
    flush = actions[create - 1]
    assert isinstance(flush, Sql) and flush.sql == "FLUSH NO_WRITE_TO_BINLOG ENGINE LOGS"
    assert flush.session == release.session, "under the lock"
    # the replica rebuild: the donor (the primary) takes writes again at once
    assert not any(isinstance(a, Sql) and "read_only" in a.sql for a in actions)
    # and the lock is the one the step before took
    lock = make_plan("rebuild-replica-ebs").steps[1]
    assert release.session == lock.holds_session and lock.released_by == snap.id


def test_seed_scenario_keeps_the_donor_read_only_and_frozen_only_around_the_snapshot() -> None:
    plan = old_primary_with_ebs()
    assert keys(plan)[:8] == [
        "preflight", "stop-replication:db2", "read-lock:db2:donor", "ebs-snapshot:db2",
        "stop-service:db1", "move-datadir-aside:db1", "ebs-volume:db1",
        "copy-datadir:db2->db1:ebs"]
    assert "stop-service:db2" not in keys(plan) and "start-service:db2" not in keys(plan)
    snap = plan.steps[3]
    assert isinstance(snap, SnapshotDonor)
    actions = snap.plan()
    frozen = next(a for a in actions if isinstance(a, Frozen))
    parts = [p.render() for p in frozen.parts()]
    assert parts[0].startswith("fsfreeze -f ") and "fsfreeze -u" in parts[-1]
    assert next(p for p in frozen.parts() if isinstance(p, AwsCall)).operation == "create_snapshot"
    # the donor becomes the replica of its own copy: read-only before the lock goes
    statements = [a.sql for a in actions if isinstance(a, Sql)]
    assert statements == ["FLUSH NO_WRITE_TO_BINLOG ENGINE LOGS", "SET GLOBAL read_only = ON"]
    assert isinstance(actions[-1], ReleaseLock)
    undo = [a.render() if isinstance(a, Leaf) else "" for a in snap.undo_plan()]
    assert any("fsfreeze -u" in u for u in undo), "a rollback thaws"
    assert "SET GLOBAL read_only = OFF" in undo, "a rollback gives the application its server back"
    # keep_snapshot: the end does not delete it
    assert "delete_snapshot" not in " ".join(a.render() for a in plan.steps[-1].plan()
                                             if isinstance(a, Leaf))


class Recorder:
    """A CompositeRun stand-in: records which parts ran; `fail_at` raises there."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.ran: list[int] = []
        self.fail_at = fail_at

    def do(self, index: int) -> Any:
        self.ran.append(index)
        if index == self.fail_at:
            raise RuntimeError("create_snapshot failed")


def test_a_failed_snapshot_is_thawed_in_a_finally_path() -> None:
    snap = old_primary_with_ebs().steps[3]
    frozen = next(a for a in snap.plan() if isinstance(a, Frozen))
    run = Recorder(fail_at=1)
    with pytest.raises(RuntimeError):
        frozen.execute(run)  # type: ignore[arg-type]
    assert run.ran == [0, 1, 2], "freeze, the snapshot (failed), thaw"
    assert isinstance(frozen, Composite)


def test_every_aws_call_of_the_run_carries_the_run_tag() -> None:
    plan = make_plan("rebuild-replica-ebs")
    creates = [a for s in plan.steps for a in s.plan()
               if isinstance(a, AwsCall) and a.operation.startswith("create_")]
    creates += [p for s in plan.steps for a in s.plan() if isinstance(a, Composite)
                for p in a.parts() if isinstance(p, AwsCall) and p.operation.startswith("create_")]
    assert {c.operation for c in creates} == {"create_snapshot", "create_volume"}
    for call in creates:
        assert "resync:run-id, Value: <run_id>" in call.render()


def test_ebs_section_without_the_method_names_the_line(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[2] / "runbooks/rebuild-replica-ebs.yaml").read_text()
    bad = text.replace("  method: ebs\n", "  method: stream\n")
    path = tmp_path / "rb.yaml"
    path.write_text(bad)
    err = runbook_error(path)
    assert "copy.ebs is set but copy.method is not ebs" in str(err)
    assert f"rb.yaml:{line_no(bad, 'copy:')}: copy:" in str(err)


@pytest.mark.parametrize(("writable", "expected"), [(True, 2.0), (False, 2 + 100 + 60 + 20 + 20)])
def test_estimate_in_seconds(writable: bool, expected: float) -> None:
    e = EbsEstimate(volume_gib=100, used_bytes=10_000_000_000, datadir_bytes=1_000_000_000,
                    donor_writable_after=writable)
    assert e.snapshot_seconds == pytest.approx(100)
    assert e.copy_seconds == pytest.approx(20)
    assert e.write_downtime_seconds == pytest.approx(expected)
    text = e.describe()
    assert "first snapshot ~100s" in text and "write lock ~2s" in text and "assumed" in text
    assert e.as_values()["estimate.snapshot_rate_source"] == "assumed"
