"""The EBS copy method as a plan: which steps, in which order, what the lock and the freeze cover."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import runbook_error
from test_render import make_plan

from resync.actions.types import Composite, Leaf, ReleaseLock, Sql
from resync.lb.aws import AwsCall
from resync.model.runbook import parse_runbook
from resync.plan.build import Plan, assumed_facts, build_plan
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
    # the recipient stops and is checked again first: a refusal leaves the donor as it was
    assert keys(plan) == [
        "preflight", "stop-service:db2", "move-datadir-aside:db2", "read-lock:db1:source",
        "ebs-snapshot:db1", "ebs-volume:db2", "copy-datadir:db1->db2:ebs",
        "start-service:db2", "point-replica:db2", "wait-replica:db2", "make-writable:db1",
        "verify-data:db1=db2", "ebs-release:db2"]
    assert not any(s.key.endswith(":db1") and s.key.split(":")[0] in ("stop-service",
                                                                     "start-service")
                   for s in plan.steps)


def test_the_lock_is_released_once_the_snapshot_has_started() -> None:
    snap = make_plan("rebuild-replica-ebs").steps[4]
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
    lock = make_plan("rebuild-replica-ebs").steps[3]
    assert release.session == lock.holds_session and lock.released_by == snap.id


def test_seed_scenario_keeps_the_donor_read_only_and_frozen_only_around_the_snapshot() -> None:
    plan = old_primary_with_ebs()
    assert keys(plan)[:8] == [
        "preflight", "stop-service:db1", "move-datadir-aside:db1", "stop-replication:db2",
        "read-lock:db2:donor", "ebs-snapshot:db2", "ebs-volume:db1", "copy-datadir:db2->db1:ebs"]
    assert "stop-service:db2" not in keys(plan) and "start-service:db2" not in keys(plan)
    # a filesystem a killed attempt left frozen is thawed before the lock is taken again
    first = plan.steps[4].plan()[0]
    assert isinstance(first, Leaf) and first.render().startswith("out=$(fsfreeze -u ")
    snap = plan.steps[5]
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
    snap = old_primary_with_ebs().steps[5]
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
    assert f"rb.yaml:{bad.splitlines().index('copy:') + 1}: copy:" in str(err)


@pytest.mark.parametrize(("writable", "expected"), [(True, 2.0), (False, 2 + 100 + 60 + 20 + 0.15 + 0.15)])
def test_estimate_in_seconds(writable: bool, expected: float) -> None:
    e = EbsEstimate(volume_gib=100, used_bytes=10_000_000_000, datadir_bytes=1_000_000_000,
                    donor_writable_after=writable)
    assert e.snapshot_seconds == pytest.approx(100)
    assert e.copy_seconds == pytest.approx(20)
    assert e.write_downtime_seconds == pytest.approx(expected)
    text = e.describe()
    assert "first snapshot ~100s" in text and "write lock ~2s" in text and "assumed" in text
    assert e.as_values()["estimate.snapshot_rate_source"] == "assumed"



def replica_ebs(*edits: tuple[str, str]) -> Plan:
    """The example runbook with each (old, new) edit made (each old text found once)."""
    label = Path("runbooks") / "rebuild-replica-ebs.yaml"
    text = (Path(__file__).resolve().parents[2] / label).read_text()
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    loaded = parse_runbook(text, label)
    return build_plan(loaded, assumed_facts(loaded, {}))


SWAP = ("    mode: copy ", "    mode: swap ")
PREWARM = ("    prewarm: false", "    prewarm: true")


def test_swap_replaces_the_data_volume_and_keeps_the_new_one() -> None:
    plan = replica_ebs(SWAP)
    assert keys(plan) == [
        "preflight", "stop-service:db2", "errant-recheck:db2", "read-lock:db1:source",
        "ebs-snapshot:db1", "ebs-volume:db2", "ebs-swap:db2", "start-service:db2",
        "point-replica:db2", "wait-replica:db2", "make-writable:db1", "verify-data:db1=db2",
        "ebs-release:db2"]
    swap = plan.steps[6]
    texts = [a.render() for a in swap.plan() if isinstance(a, Leaf)]
    assert any(t.startswith("ec2 detach_volume VolumeId=<recipient.ebs.old.volume_id>")
               for t in texts)
    fstab = next(t for t in texts if "awk" in t and "/etc/fstab" in t)
    assert "cp -p /etc/fstab /etc/fstab.resync-<run_id>" in fstab
    assert "mv -f /etc/fstab.resync-tmp /etc/fstab" in fstab, "renamed over it: never half written"
    undo = " ".join(a.render() for a in swap.undo_plan() if isinstance(a, Leaf))
    assert "attach_volume VolumeId=<recipient.ebs.old.volume_id>" in undo
    assert "cp -p /etc/fstab.resync-<run_id> /etc/fstab.resync-tmp" in undo
    release = " ".join(a.render() for a in plan.steps[-1].plan() if isinstance(a, Leaf))
    assert "delete_snapshot" in release and "delete_volume" not in release, "the volume stays"


def test_prewarm_reads_the_new_volume_right_before_the_start_in_mode_swap() -> None:
    k = keys(replica_ebs(SWAP, PREWARM))
    assert k.index("ebs-prewarm:db2") + 1 == k.index("start-service:db2")
    assert "ebs-prewarm:db2" not in keys(replica_ebs(PREWARM)), "mode copy reads every block"
