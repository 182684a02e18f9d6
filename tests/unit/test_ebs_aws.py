"""The EBS copy's AWS leaves: their texts (every call with its parameters), and the waits on an
injected clock (countdown, Progress and ETA, timeout, `error` state), against a boto3 stand-in
that fails on anything not scripted (a boto3 waiter would)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from resync.actions.types import Ref
from resync.model.errors import ResyncError, WaitTimeout
from resync.model.keys import RUN_ID
from resync.run.executor import Executor
from resync.run.journal import CommandRecord, MemoryJournal
from resync.steps.copy.ebs import aws as ebs
from resync.steps.copy.ebs.aws import (
    SNAPSHOT_ID,
    SNAPSHOT_STATE,
    VOLUME,
    VOLUME_ID,
    attach_volume,
    create_snapshot,
    create_volume,
    eta,
    percent,
    wait_attached,
    wait_snapshot_completed,
    wait_volume_available,
)
from resync.steps.copy.ebs.cleanup import (
    delete_leftovers,
    detach_volume,
    find_leftovers,
    found,
    teardown,
    undo,
)
from resync.testing.fakes import FakeClock

SNAP, VOL, IID = "snap-0123456789abcdef0", "vol-0123456789abcdef0", "i-0abc1234567890def"
TAGS = ("TagSpecifications=[{ResourceType: %s, Tags: [{Key: resync:run-id, Value: <run_id>}, "
        "{Key: resync:runbook, Value: rebuild-db1}, {Key: Name, Value: resync db2 data}]}]")


class Fake:
    """A boto3 client stand-in: each operation answers from a function; calls are recorded."""

    def __init__(self, region: str = "us-east-1", **answers: Callable[..., Any]) -> None:
        self.answers, self.calls = answers, []  # type: ignore[var-annotated]
        self.meta = type("Meta", (), {"region_name": region})()

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        if operation not in self.answers:
            raise AttributeError(operation)  # a waiter or anything unexpected fails loudly

        def call(**params: Any) -> Any:
            self.calls.append((operation, params))
            return self.answers[operation](**params)

        return call


def error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} from the fake"}}, "op")


def raises(exc: BaseException) -> Callable[..., Any]:
    def answer(**params: Any) -> Any:
        raise exc

    return answer


def answers(*items: dict[str, Any]) -> Callable[..., Any]:
    """One answer per look; the last one repeats."""
    left = list(items)

    def answer(**params: Any) -> Any:
        return left.pop(0) if len(left) > 1 else left[0]

    return answer


class Run:
    def __init__(self, client: Fake) -> None:
        self.clock = FakeClock()
        self.progress: list[tuple[int, int | None, str]] = []
        self.exe = Executor(MemoryJournal("t"), hosts=lambda name: None,  # type: ignore[arg-type,return-value]
                            connect=lambda name: None,  # type: ignore[arg-type,return-value]
                            clock=self.clock, aws_factory=lambda s: client,
                            progress=lambda d, t, label: self.progress.append((d, t, label)))
        self.exe.capture(RUN_ID, "20261206-0200-ab12")

    def records(self) -> list[CommandRecord]:
        return list(self.exe.journal.data.commands)


def snap(state: str, progress: str) -> dict[str, Any]:
    return {"Snapshots": [{"SnapshotId": SNAP, "State": state, "Progress": progress}]}


def test_texts_show_every_call_with_its_parameters() -> None:
    start = create_snapshot("vol-donor", run_id=Ref(RUN_ID), runbook="rebuild-db1",
                            name="resync db2 data")
    assert start.render() == (
        "ec2 create_snapshot VolumeId=vol-donor Description=resync run <run_id> of rebuild-db1: "
        "resync db2 data " + TAGS % "snapshot"
        + " (started (pending) is enough: the lock can be released then)")
    assert start.outputs() == (SNAPSHOT_ID, SNAPSHOT_STATE)
    plain = create_volume(availability_zone="us-east-1b", run_id=Ref(RUN_ID),
                          runbook="rebuild-db1", name="resync db2 data")
    assert plain.render() == (
        "ec2 create_volume SnapshotId=<ebs.snapshot_id> AvailabilityZone=us-east-1b "
        "VolumeType=gp3 " + TAGS % "volume" + " (encryption as the snapshot's)")
    assert "Encrypted" not in plain.render() and "KmsKeyId" not in plain.render()
    sized = create_volume(availability_zone="us-east-1b", volume_type="io2", iops=6000,
                          throughput=250, kms_key_id="alias/db", run_id="r1", runbook="rb", name="n")
    assert " VolumeType=io2 Iops=6000 Throughput=250 KmsKeyId=alias/db " in sized.render()
    assert sized.outputs() == (VOLUME_ID,)
    assert attach_volume(VOLUME, IID, "/dev/sdf").render() == (
        f"ec2 attach_volume VolumeId=<ebs.volume_id> InstanceId={IID} Device=/dev/sdf")
    assert detach_volume(VOLUME, IID).render() == (
        f"ec2 detach_volume VolumeId=<ebs.volume_id> InstanceId={IID}")
    assert wait_snapshot_completed(timeout=7200).render() == (
        "poll ec2 describe_snapshots SnapshotIds=[<ebs.snapshot_id>] until State=completed "
        "(every 15s, at most 7200s)")
    assert wait_attached(VOLUME, IID, timeout=300).render() == (
        "poll ec2 describe_volumes VolumeIds=[<ebs.volume_id>] until its attachment to "
        f"{IID} is attached (every 5s, at most 300s)")
    assert [a.render() for a in teardown(IID, keep_snapshot=False)] == [
        f"ec2 detach_volume VolumeId=<ebs.volume_id> InstanceId={IID}",
        "poll ec2 describe_volumes VolumeIds=[<ebs.volume_id>] until State=available "
        "(every 5s, at most 600s)",
        "ec2 delete_volume VolumeId=<ebs.volume_id>",
        "ec2 delete_snapshot SnapshotId=<ebs.snapshot_id>"]
    assert len(teardown(IID, keep_snapshot=True)) == 3


def test_snapshot_started_is_enough_and_captured() -> None:
    client = Fake(create_snapshot=lambda **p: {"SnapshotId": SNAP, "State": "pending"})
    run = Run(client)
    run.exe.run([create_snapshot("vol-donor", run_id=Ref(RUN_ID), runbook="rb", name="n")])
    assert run.exe.captured[str(SNAPSHOT_ID)] == SNAP
    assert run.exe.captured[str(SNAPSHOT_STATE)] == "pending"
    params = client.calls[0][1]
    assert params["TagSpecifications"][0]["Tags"][0] == {"Key": "resync:run-id",
                                                         "Value": "20261206-0200-ab12"}
    assert "Value: 20261206-0200-ab12" in run.records()[0].text


def test_snapshot_in_error_at_start_fails() -> None:
    client = Fake(create_snapshot=lambda **p: {"SnapshotId": SNAP, "State": "error"})
    with pytest.raises(ResyncError, match=f"snapshot {SNAP} is error"):
        Run(client).exe.run([create_snapshot("vol-d", run_id="r", runbook="rb", name="n")])


def test_snapshot_wait_shows_progress_and_eta() -> None:
    client = Fake(describe_snapshots=answers(snap("pending", ""), snap("pending", "10%"),
                                             snap("pending", "40%"), snap("completed", "100%")))
    run = Run(client)
    run.exe.capture(SNAPSHOT_ID, SNAP)
    run.exe.run([wait_snapshot_completed(timeout=7200, interval=15)])
    labels = [label for _, _, label in run.progress]
    assert labels[0] == f"{SNAP}: pending 0%, ETA unknown (7200s left)"
    assert labels[1] == f"{SNAP}: pending 10%, ETA 135s (7185s left)"
    assert labels[2] == f"{SNAP}: pending 40%, ETA 45s (7170s left)"
    assert labels[3].startswith(f"{SNAP}: completed 100%") and labels[3].endswith("(done)")
    assert [t for _, t, _ in run.progress] == [7200] * 4
    assert run.clock.t == 45
    assert all(op == "describe_snapshots" for op, _ in client.calls)
    assert run.records()[0].ok and run.records()[0].detail == "4 look(s) in 45s; last: completed 100%, ETA 0s"


def test_snapshot_wait_times_out_naming_the_snapshot_and_its_state() -> None:
    client = Fake(describe_snapshots=answers(snap("pending", "3%")))
    run = Run(client)
    run.exe.capture(SNAPSHOT_ID, SNAP)
    with pytest.raises(WaitTimeout, match=f"{SNAP}: not State=completed after 60s; last state: "
                                          "pending 3%, ETA unknown \\(5 look"):
        run.exe.run([wait_snapshot_completed(timeout=60, interval=15)])
    assert run.clock.t == 60
    assert run.records()[0].ok is False


def test_snapshot_in_error_state_fails_at_once() -> None:
    failed = {"Snapshots": [{"SnapshotId": SNAP, "State": "error", "Progress": "37%",
                             "StateMessage": "internal error"}]}
    client = Fake(describe_snapshots=answers(snap("pending", "20%"), failed))
    run = Run(client)
    run.exe.capture(SNAPSHOT_ID, SNAP)
    with pytest.raises(ResyncError, match=f"snapshot {SNAP} failed: state error at 37% "
                                          "\\(internal error\\)"):
        run.exe.run([wait_snapshot_completed(timeout=7200)])
    assert len(client.calls) == 2 and run.clock.t == 15


def test_a_snapshot_not_visible_yet_is_waited_for() -> None:
    seen = [raises(error("InvalidSnapshot.NotFound")), answers(snap("completed", "100%"))]

    def answer(**p: Any) -> Any:
        return seen.pop(0)(**p) if len(seen) > 1 else seen[0](**p)

    run = Run(Fake(describe_snapshots=answer))
    run.exe.capture(SNAPSHOT_ID, SNAP)
    run.exe.run([wait_snapshot_completed(timeout=100, interval=15)])
    assert "not visible yet (InvalidSnapshot.NotFound)" in run.progress[0][2]


def volume(state: str, *attachments: tuple[str, str]) -> dict[str, Any]:
    return {"Volumes": [{"VolumeId": VOL, "State": state, "Attachments": [
        {"InstanceId": i, "State": s} for i, s in attachments]}]}


def test_volume_waits_available_then_attached() -> None:
    client = Fake(describe_volumes=answers(volume("creating"), volume("available")))
    run = Run(client)
    run.exe.capture(VOLUME_ID, VOL)
    run.exe.run([wait_volume_available(timeout=60)])
    attach = Fake(describe_volumes=answers(volume("in-use", (IID, "attaching")),
                                           volume("in-use", (IID, "attached"))))
    run2 = Run(attach)
    run2.exe.capture(VOLUME_ID, VOL)
    run2.exe.run([wait_attached(VOLUME, IID, timeout=60)])
    assert run2.progress[0][2] == f"{VOL}: in-use, attaching to {IID} (60s left)"
    assert run2.clock.t == 5


def test_attach_wait_times_out_when_attached_elsewhere() -> None:
    run = Run(Fake(describe_volumes=answers(volume("in-use", ("i-other", "attached")))))
    run.exe.capture(VOLUME_ID, VOL)
    with pytest.raises(WaitTimeout, match=f"{VOL}: not its attachment to {IID} is attached after "
                                          f"20s; last state: in-use, not attached to {IID}"):
        run.exe.run([wait_attached(VOLUME, IID, timeout=20)])


def test_undo_runs_only_for_what_was_created() -> None:
    client = Fake(detach_volume=raises(error("IncorrectState")),
                  describe_volumes=answers(volume("available")),
                  delete_volume=lambda **p: {}, delete_snapshot=lambda **p: {})
    run = Run(client)
    run.exe.run(undo(IID, keep_snapshot=False))
    assert client.calls == []
    run.exe.capture(VOLUME_ID, VOL)
    run.exe.capture(SNAPSHOT_ID, SNAP)
    run.exe.run(undo(IID, keep_snapshot=False))
    assert [op for op, _ in client.calls] == ["detach_volume", "describe_volumes", "delete_volume",
                                              "delete_snapshot"]
    assert client.calls[0][1] == {"VolumeId": VOL, "InstanceId": IID}
    detach = next(r for r in run.records() if r.text.startswith("ec2 detach_volume"))
    assert detach.ok and detach.detail == "nothing to do: IncorrectState"


def test_leftovers_found_per_region_then_deleted() -> None:
    east = Fake(describe_volumes=lambda **p: volume("in-use", (IID, "attached")),
                describe_snapshots=lambda **p: snap("completed", "100%"))
    west = Fake("us-west-2", describe_volumes=lambda **p: {"Volumes": []},
                describe_snapshots=lambda **p: {"Snapshots": []})
    run = Run(east)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ebs, "make_client_factory", lambda region: lambda service: west)
        run.exe.run(find_leftovers(Ref(RUN_ID), ["us-east-1", "us-west-2"]))
    texts = [r.text for r in run.records()]
    assert texts[0] == ("ec2 describe_volumes Filters=[{Name: tag:resync:run-id, Values: "
                        "[20261206-0200-ab12]}] (volumes this run left) (region us-east-1)")
    assert texts[1].startswith("ec2 describe_snapshots OwnerIds=[self] Filters=")
    assert texts[3].endswith("(region us-west-2)")
    assert east.calls[1][1]["Filters"] == [{"Name": "tag:resync:run-id",
                                            "Values": ["20261206-0200-ab12"]}]
    assert len(west.calls) == 2
    assert json.loads(str(run.exe.captured["ebs.leftovers.us-east-1.volumes"]))[0]["id"] == VOL
    left = found(run.exe.captured, ["us-east-1", "us-west-2"])
    assert [str(x) for x in left] == [f"volume {VOL} (in-use attached to {IID}) in us-east-1",
                                      f"snapshot {SNAP} (completed) in us-east-1"]
    assert [a.render() for a in delete_leftovers(left)] == [
        f"ec2 detach_volume VolumeId={VOL} InstanceId={IID} (region us-east-1)",
        f"poll ec2 describe_volumes VolumeIds=[{VOL}] until State=available (every 5s, at most "
        "600s) (region us-east-1)",
        f"ec2 delete_volume VolumeId={VOL} (region us-east-1)",
        f"ec2 delete_snapshot SnapshotId={SNAP} (region us-east-1)"]


def test_percent_and_eta() -> None:
    assert percent("42%") == 42 and percent("") == 0 and percent(None) == 0
    assert eta(None, 10, 5) == "ETA unknown"
    assert eta((0, 0), 60, 25) == "ETA 180s"
