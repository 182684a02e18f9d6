"""The EBS copy's AWS calls as journaled leaves: snapshot, volume, attach (detach, delete and
leftovers: cleanup.py).

Each leaf is one API call (an `AwsCall`: its text is the call with its parameters) or a wait
that polls one describe call on the executor's clock with a countdown through `ctx.progress`
(never a boto3 waiter: `snapshot_completed` gives up after 10 minutes, large volumes take
hours). A snapshot is crash-consistent at the moment it starts, so `create_snapshot` succeeds
as soon as its state is `pending`: the donor's lock can go then. Volumes follow the snapshot's
encryption (no `Encrypted`, no `KmsKeyId` unless one is given). A leaf with a `region` uses a
client of that region (cleanup looks in every region the runbook names), else the executor's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from resync.actions.external import External, ExternalContext, Outcome
from resync.actions.types import Ref, Template, _merge, render
from resync.lb.aws import AWS_HOST, AwsCall, AwsCallError, aws_call, make_client_factory
from resync.lb.params import (
    Param,
    Params,
    Text,
    call_template,
    captured_text,
    joined,
    resolve_params,
    text_parts,
)
from resync.lb.waits import countdown
from resync.model.errors import ResyncError, WaitTimeout
from resync.model.keys import Key

SNAPSHOT_ID = Key("ebs.snapshot_id")
SNAPSHOT_STATE = Key("ebs.snapshot_state")  # pending or completed when create_snapshot returns
VOLUME_ID = Key("ebs.volume_id")
SNAPSHOT, VOLUME = Ref(SNAPSHOT_ID), Ref(VOLUME_ID)
RUN_TAG, RUNBOOK_TAG = "resync:run-id", "resync:runbook"
VOLUME_GONE = ("InvalidVolume.NotFound",)
SNAPSHOT_GONE = ("InvalidSnapshot.NotFound",)


def client_in(ctx: ExternalContext, service: str, region: str | None) -> Any:
    """The executor's client when it is of `region` (or none is asked for), else a new one."""
    own = ctx.aws(service)
    if region is None or getattr(getattr(own, "meta", None), "region_name", None) == region:
        return own
    return make_client_factory(region)(service)


class InRegion:
    """An ExternalContext whose AWS clients are of one region (the rest: the executor's)."""

    def __init__(self, ctx: ExternalContext, region: str | None) -> None:
        self.ctx, self.region = ctx, region
        self._clients: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ctx, name)

    def aws(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = client_in(self.ctx, service, self.region)
        return self._clients[service]


def _where(region: str | None) -> Template:
    return (f" (region {region})",) if region else ()


@dataclass(frozen=True, kw_only=True)
class Ec2Call(AwsCall):
    """One EC2 call, in `region` when one is given; `into` captures what `pick` reads."""

    service: str = "ec2"
    region: str | None = None
    into: Key | None = None
    pick: str = ""  # the answer's field captured under `into`

    def template(self) -> Template:
        return (*super().template(), *_where(self.region))

    def outputs(self) -> tuple[Key, ...]:
        return (self.into,) if self.into else ()

    def perform(self, ctx: ExternalContext) -> Outcome:
        return super().perform(InRegion(ctx, self.region))

    def interpret(self, answer: Mapping[str, Any], ctx: ExternalContext) -> Outcome:
        if self.into is None:
            return Outcome(detail="done")
        value = answer.get(self.pick)
        if not value:
            raise ResyncError(f"{self.operation}: the answer has no {self.pick}")
        return Outcome(detail=f"{self.pick} {value}", values={self.into: str(value)})

    def interpret_error(self, code: str, message: str, ctx: ExternalContext) -> Outcome:
        return Outcome(detail=f"nothing to do: {code}")


@dataclass(frozen=True, kw_only=True)
class CreateSnapshot(Ec2Call):
    """Started is enough: `pending` (or already `completed`) captures the id and the state."""

    operation: str = "create_snapshot"
    into: Key | None = SNAPSHOT_ID
    note: str = "started (pending) is enough: the lock can be released then"

    def outputs(self) -> tuple[Key, ...]:
        return (SNAPSHOT_ID, SNAPSHOT_STATE)

    def interpret(self, answer: Mapping[str, Any], ctx: ExternalContext) -> Outcome:
        sid, state = str(answer.get("SnapshotId") or ""), str(answer.get("State") or "")
        if not sid or state not in ("pending", "completed"):
            raise ResyncError(f"create_snapshot: snapshot {sid or '?'} is {state or 'in no state'} "
                              f"({answer.get('StateMessage', 'no message')})")
        return Outcome(detail=f"{sid} {state}", values={SNAPSHOT_ID: sid, SNAPSHOT_STATE: state})


def tag_spec(resource: str, run_id: Text, runbook: str, name: str) -> Param:
    tags: list[Param] = [{"Key": RUN_TAG, "Value": run_id}, {"Key": RUNBOOK_TAG, "Value": runbook},
                         {"Key": "Name", "Value": name}]
    return [{"ResourceType": resource, "Tags": tags}]


# -- waits ---------------------------------------------------------------------------------------


def percent(progress: object) -> float:
    """`Progress` as AWS gives it ("42%", "" while it starts)."""
    try:
        return float(str(progress).strip().rstrip("%"))
    except ValueError:
        return 0.0


def eta(first: tuple[float, float] | None, now: float, pct: float) -> str:
    """The time left from the progress made since the first look (time, percent)."""
    if first is None or pct <= first[1] or now <= first[0]:
        return "ETA unknown"
    left = (100.0 - pct) * (now - first[0]) / (pct - first[1])
    return f"ETA {left:.0f}s"


@dataclass(frozen=True, kw_only=True)
class Ec2Wait(External):
    """Poll one describe call until the awaited state, at most `timeout` seconds."""

    target: Text  # the snapshot's or volume's id
    timeout: float
    interval: float = 5.0
    region: str | None = None
    missing_ok: bool = False  # a volume that is gone is as good (undo, cleanup)
    host: str = AWS_HOST
    kind = "wait"
    operation = ""
    until = ""

    def params(self) -> Params:
        ids = "SnapshotIds" if self.operation == "describe_snapshots" else "VolumeIds"
        return ((ids, [self.target]),)

    def awaited(self) -> Template:
        return (self.until,)

    def template(self) -> Template:
        return _merge(["poll ", *call_template("ec2", self.operation, self.params()), " until ",
                       *self.awaited(), f" (every {self.interval:g}s, at most {self.timeout:g}s)",
                       *_where(self.region)])

    def state(self, found: Mapping[str, Any], first: list[tuple[float, float]],
              ctx: ExternalContext) -> tuple[bool, str]:
        raise NotImplementedError  # (done, what was seen) of the snapshot or volume found

    def perform(self, ctx: ExternalContext) -> Outcome:
        what = captured_text(self.target, ctx.captured)
        where = InRegion(ctx, self.region)
        first: list[tuple[float, float]] = []
        seen = ["not looked at"]
        gone = VOLUME_GONE + SNAPSHOT_GONE
        params = resolve_params(self.params(), ctx.captured)

        def look() -> tuple[bool, str]:
            try:
                answer = aws_call(where, "ec2", self.operation, **params)
            except AwsCallError as exc:
                if exc.code not in gone:
                    raise
                seen[0] = "gone" if self.missing_ok else f"not visible yet ({exc.code})"
                return self.missing_ok, seen[0]
            found = (answer.get("Snapshots") or answer.get("Volumes") or [{}])[0]
            done, seen[0] = self.state(found, first, ctx)
            return done, seen[0]

        waited = countdown(ctx, label=what, timeout=self.timeout, interval=self.interval, look=look)
        if not waited.done:
            until = render(self.awaited(), ctx.captured)
            raise WaitTimeout(f"{what}: not {until} after {self.timeout:g}s; last state: "
                              f"{seen[0]} ({waited.looks} look(s))")
        return Outcome(detail=waited.describe())


@dataclass(frozen=True, kw_only=True)
class WaitSnapshot(Ec2Wait):
    """`completed`, with the snapshot's Progress and an ETA in the countdown's label."""

    operation = "describe_snapshots"
    until = "State=completed"

    def state(self, found: Mapping[str, Any], first: list[tuple[float, float]],
              ctx: ExternalContext) -> tuple[bool, str]:
        state, pct = str(found.get("State", "?")), percent(found.get("Progress", ""))
        sid = found.get("SnapshotId", "?")
        if state == "error":
            raise ResyncError(f"snapshot {sid} failed: state error at {pct:g}% "
                              f"({found.get('StateMessage', 'no message')})")
        now = ctx.clock.now()
        text = f"{state} {pct:g}%, {eta(first[0] if first else None, now, pct)}"
        if not first:
            first.append((now, pct))
        return state == "completed", text


@dataclass(frozen=True, kw_only=True)
class WaitVolume(Ec2Wait):
    """`available`, or (with `instance`) its attachment to that instance `attached`."""

    instance: Text | None = None
    operation = "describe_volumes"

    def awaited(self) -> Template:
        if self.instance is None:
            return ("State=available",)
        return ("its attachment to ", *text_parts(self.instance), " is attached")

    def state(self, found: Mapping[str, Any], first: list[tuple[float, float]],
              ctx: ExternalContext) -> tuple[bool, str]:
        state = str(found.get("State", "?"))
        if state in ("error", "deleting", "deleted"):
            if self.missing_ok and state != "error":
                return True, state
            raise ResyncError(f"volume {found.get('VolumeId', '?')} is {state}")
        if self.instance is None:
            return state == "available", state
        instance = captured_text(self.instance, ctx.captured)
        mine = [a for a in found.get("Attachments", []) if a.get("InstanceId") == instance]
        attach = str(mine[0].get("State", "?")) if mine else "not attached"
        return attach == "attached", f"{state}, {attach} to {instance}"


# -- builders ------------------------------------------------------------------------------------


def create_snapshot(volume: Text, *, run_id: Text, runbook: str, name: str,
                    region: str | None = None) -> CreateSnapshot:
    description = joined("resync run {run} of {runbook}: {name}", run=run_id, runbook=runbook, name=name)
    return CreateSnapshot(params=(("VolumeId", volume), ("Description", description),
                                  ("TagSpecifications", tag_spec("snapshot", run_id, runbook, name))),
                          region=region)


def wait_snapshot_completed(snapshot: Text = SNAPSHOT, *, timeout: float,
                            interval: float = 15.0, region: str | None = None) -> WaitSnapshot:
    return WaitSnapshot(target=snapshot, timeout=timeout, interval=interval, region=region)


def create_volume(snapshot: Text = SNAPSHOT, *, availability_zone: Text,
                  volume_type: str = "gp3", iops: int | None = None, throughput: int | None = None,
                  kms_key_id: str | None = None, run_id: Text, runbook: str, name: str,
                  region: str | None = None) -> Ec2Call:
    """Encryption follows the snapshot: no Encrypted, no KmsKeyId unless one is given."""
    params: list[tuple[str, Param]] = [("SnapshotId", snapshot), ("AvailabilityZone", availability_zone),
                                       ("VolumeType", volume_type)]
    params += [(k, v) for k, v in (("Iops", iops), ("Throughput", throughput), ("KmsKeyId", kms_key_id))
               if v is not None]
    params.append(("TagSpecifications", tag_spec("volume", run_id, runbook, name)))
    return Ec2Call(operation="create_volume", params=tuple(params), into=VOLUME_ID,
                   pick="VolumeId", note="encryption as the snapshot's", region=region)


def wait_volume_available(volume: Text = VOLUME, *, timeout: float = 600.0,
                          interval: float = 5.0, region: str | None = None,
                          missing_ok: bool = False) -> WaitVolume:
    return WaitVolume(target=volume, timeout=timeout, interval=interval, region=region,
                      missing_ok=missing_ok)


def attach_volume(volume: Text, instance: Text, device: Text, *, region: str | None = None,
                  already_ok: bool = False) -> Ec2Call:
    """`already_ok`: a volume in use already (a repeated rollback) is fine: the wait for its
    attachment to `instance` that follows decides."""
    return Ec2Call(operation="attach_volume", region=region, params=(
        ("VolumeId", volume), ("InstanceId", instance), ("Device", device)),
        accept=("VolumeInUse",) if already_ok else ())


def wait_attached(volume: Text, instance: Text, *, timeout: float = 600.0, interval: float = 5.0,
                  region: str | None = None) -> WaitVolume:
    return WaitVolume(target=volume, instance=instance, timeout=timeout, interval=interval,
                      region=region)
