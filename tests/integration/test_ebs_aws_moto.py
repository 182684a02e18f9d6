"""The EBS copy's AWS calls against moto in server mode (reached through AWS_ENDPOINT_URL): the
leaves run by the real executor with boto3's own chain, their effect checked with boto3.

Where moto differs from AWS, the tests write around it, never the product:
- moto's snapshots are `completed` (100%) at once: create_snapshot answers `completed` and the
  wait ends at its first look; the countdown, the ETA, the timeout and the `error` state are
  tested with an injected clock in tests/unit/test_ebs_aws.py.
- moto attaches a volume to an instance of another availability zone (AWS refuses): the volume
  is made in us-east-1b and attached to an instance of us-east-1a only to show that the zone is
  the one asked for; the plan refuses a cross-AZ build in preflight, not here.
- moto fails detach_volume without InstanceId (HTTP 500): the product always names the
  instance, so nothing is written around.
"""

from __future__ import annotations

from typing import Any

from aws import (  # the fixtures are used by name
    Aws,
    aws_fixture,  # noqa: F401
    moto_endpoint_fixture,  # noqa: F401
)

from resync.actions.types import Ref
from resync.model.keys import RUN_ID
from resync.run.executor import Executor
from resync.run.journal import MemoryJournal
from resync.steps.copy.ebs.aws import (
    SNAPSHOT_ID,
    SNAPSHOT_STATE,
    VOLUME,
    VOLUME_ID,
    attach_volume,
    create_snapshot,
    create_volume,
    wait_attached,
    wait_snapshot_completed,
    wait_volume_available,
)
from resync.steps.copy.ebs.cleanup import delete_leftovers, find_leftovers, found, teardown, undo
from resync.testing.fakes import FakeClock
from resync.transport.local import LocalHost

RUN = "20261206-0200-ab12"
RUNBOOK = "rebuild-db1-from-db2"


def executor() -> Executor:
    exe = Executor(MemoryJournal("run"), hosts=LocalHost,
                   connect=lambda name: None,  # type: ignore[arg-type,return-value]
                   clock=FakeClock())
    exe.capture(RUN_ID, RUN)
    return exe


def tags_of(item: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags", [])}


def instance(aws: Aws, zone: str = "us-east-1a") -> str:
    ec2 = aws.client("ec2")
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    return str(ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                 Placement={"AvailabilityZone": zone})["Instances"][0]["InstanceId"])


def donor_volume(aws: Aws, *, encrypted: bool = False, zone: str = "us-east-1a") -> str:
    return str(aws.client("ec2").create_volume(AvailabilityZone=zone, Size=8, VolumeType="gp3",
                                               Encrypted=encrypted)["VolumeId"])


def build(donor: str, recipient: str) -> list[Any]:
    """The EBS copy's AWS half, in order: snapshot, volume in the recipient's zone, attach."""
    return [create_snapshot(donor, run_id=Ref(RUN_ID), runbook=RUNBOOK, name="resync db2 data"),
            wait_snapshot_completed(timeout=7200),
            create_volume(availability_zone="us-east-1b", volume_type="gp3", iops=3000,
                          throughput=125, run_id=Ref(RUN_ID), runbook=RUNBOOK,
                          name="resync db2 data"),
            wait_volume_available(timeout=300),
            attach_volume(VOLUME, recipient, "/dev/sdf"),
            wait_attached(VOLUME, recipient, timeout=300)]


def test_snapshot_volume_attach_detach_delete(aws: Aws) -> None:
    ec2 = aws.client("ec2")
    donor, recipient = donor_volume(aws), instance(aws)
    exe = executor()
    exe.run(build(donor, recipient))
    sid, vid = str(exe.captured[str(SNAPSHOT_ID)]), str(exe.captured[str(VOLUME_ID)])
    assert exe.captured[str(SNAPSHOT_STATE)] in ("pending", "completed")  # moto: completed
    snapshot = ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]
    assert snapshot["VolumeId"] == donor
    assert tags_of(snapshot) == {"resync:run-id": RUN, "resync:runbook": RUNBOOK,
                                 "Name": "resync db2 data"}
    made = ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]
    assert made["SnapshotId"] == sid and made["AvailabilityZone"] == "us-east-1b"
    assert made["VolumeType"] == "gp3" and made["Encrypted"] is False
    assert tags_of(made)["resync:run-id"] == RUN
    assert [(a["InstanceId"], a["Device"], a["State"]) for a in made["Attachments"]] == [
        (recipient, "/dev/sdf", "attached")]

    exe.run(teardown(recipient, keep_snapshot=False))
    assert ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": [vid]}])["Volumes"] == []
    assert ec2.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [sid]}])["Snapshots"] == []
    assert ec2.describe_volumes(VolumeIds=[donor])["Volumes"][0]["State"] == "available"

    records = exe.journal.data.commands
    assert all(r.ok for r in records) and all(r.host == "aws" for r in records)
    assert [(r.kind, r.text.split(" ")[:3]) for r in records] == [
        ("aws", ["ec2", "create_snapshot", f"VolumeId={donor}"]),
        ("wait", ["poll", "ec2", "describe_snapshots"]),
        ("aws", ["ec2", "create_volume", f"SnapshotId={sid}"]),
        ("wait", ["poll", "ec2", "describe_volumes"]),
        ("aws", ["ec2", "attach_volume", f"VolumeId={vid}"]),
        ("wait", ["poll", "ec2", "describe_volumes"]),
        ("aws", ["ec2", "detach_volume", f"VolumeId={vid}"]),
        ("wait", ["poll", "ec2", "describe_volumes"]),
        ("aws", ["ec2", "delete_volume", f"VolumeId={vid}"]),
        ("aws", ["ec2", "delete_snapshot", f"SnapshotId={sid}"])]
    assert f"InstanceId={recipient}" in records[6].text
    assert f"Value: {RUN}" in records[0].text and f"Value: {RUN}" in records[2].text
    assert records[0].result is not None and sid in records[0].result


def test_the_volume_keeps_the_snapshots_encryption_and_the_snapshot_can_be_kept(aws: Aws) -> None:
    ec2 = aws.client("ec2")
    donor, recipient = donor_volume(aws, encrypted=True), instance(aws)
    exe = executor()
    exe.run(build(donor, recipient))
    vid, sid = str(exe.captured[str(VOLUME_ID)]), str(exe.captured[str(SNAPSHOT_ID)])
    assert ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]["Encrypted"] is True
    exe.run(teardown(recipient, keep_snapshot=True))
    assert ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]["SnapshotId"] == sid


def test_rollback_deletes_what_the_run_created(aws: Aws) -> None:
    """A run that failed after create_volume (never attached): undo detaches nothing, deletes
    the volume and the snapshot; a second undo finds them gone and is still fine."""
    ec2 = aws.client("ec2")
    donor, recipient = donor_volume(aws), instance(aws)
    exe = executor()
    exe.run(build(donor, recipient)[:4])
    vid, sid = str(exe.captured[str(VOLUME_ID)]), str(exe.captured[str(SNAPSHOT_ID)])
    exe.run(undo(recipient, keep_snapshot=False))
    assert ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": [vid]}])["Volumes"] == []
    assert ec2.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [sid]}])["Snapshots"] == []
    exe.run(undo(recipient, keep_snapshot=False))
    assert all(r.ok for r in exe.journal.data.commands)


def test_find_leftovers_by_tag_in_every_region(aws: Aws) -> None:
    ec2 = aws.client("ec2")
    donor, recipient = donor_volume(aws), instance(aws)
    exe = executor()
    exe.run(build(donor, recipient))
    vid, sid = str(exe.captured[str(VOLUME_ID)]), str(exe.captured[str(SNAPSHOT_ID)])
    other = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1, TagSpecifications=[{
        "ResourceType": "volume", "Tags": [{"Key": "resync:run-id", "Value": "another-run"}]}])
    regions = ["us-east-1", "us-west-2"]
    cleanup = executor()
    cleanup.run(find_leftovers(Ref(RUN_ID), regions))
    left = found(cleanup.captured, regions)
    assert [(x.region, x.kind, x.id, x.attached_to) for x in left] == [
        ("us-east-1", "volume", vid, (recipient,)), ("us-east-1", "snapshot", sid, ())]
    assert other["VolumeId"] not in {x.id for x in left}
    cleanup.run(delete_leftovers(left, timeout=300))
    assert ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": [vid]}])["Volumes"] == []
    assert ec2.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [sid]}])["Snapshots"] == []
    again = executor()
    again.run(find_leftovers(Ref(RUN_ID), regions))
    assert found(again.captured, regions) == []


def test_find_leftovers_in_another_region(aws: Aws) -> None:
    """A client of the region asked for: a tagged snapshot in us-west-2 is found from a run whose
    own region is us-east-1 (AWS_DEFAULT_REGION)."""
    import boto3

    region = "us-west-2"
    ec2 = boto3.client("ec2", region_name=region, endpoint_url=aws.endpoint)
    vol = ec2.create_volume(AvailabilityZone=f"{region}a", Size=1)["VolumeId"]
    exe = executor()
    exe.run([create_snapshot(vol, run_id=Ref(RUN_ID), runbook=RUNBOOK, name="n", region=region)])
    sid = str(exe.captured[str(SNAPSHOT_ID)])
    assert exe.journal.data.commands[0].text.endswith(f"(region {region})")
    cleanup = executor()
    cleanup.run(find_leftovers(Ref(RUN_ID), ["us-east-1", region]))
    assert [(x.region, x.kind, x.id) for x in found(cleanup.captured, ["us-east-1", region])] == [
        (region, "snapshot", sid)]
