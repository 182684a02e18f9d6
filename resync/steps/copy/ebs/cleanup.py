"""Detach and delete what the EBS copy made: after the copy, in a rollback, or later by tag.

- `teardown`: the normal end (detach naming the instance, wait `available`, delete the volume,
  delete the snapshot unless the runbook keeps it).
- `undo`: the same for a rollback, for whatever the run got as far as creating (each part runs
  only when its id was captured; a volume or snapshot already gone is not an error).
- `find_leftovers`: describe_volumes and describe_snapshots filtered by the tag resync:run-id in
  every region the runbook names, one call each, the list captured as JSON; `found` reads the
  captured lists back and `delete_leftovers` turns them into calls, each shown with its
  parameters before it runs (`resync cleanup --run-id ID`).

detach_volume always carries InstanceId: AWS allows leaving it out, but naming the instance is
what makes sure the volume leaves that instance and no other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from resync.actions.conditions import IsSet
from resync.actions.external import External, ExternalContext, Outcome
from resync.actions.types import Action, Captured, Leaf, Template, When
from resync.lb.aws import AWS_HOST, AwsCallError, aws_call
from resync.lb.params import Text, captured_text, text_parts
from resync.lb.waits import countdown
from resync.model.errors import ResyncError, WaitTimeout
from resync.model.keys import Key
from resync.steps.copy.ebs.aws import (
    RUN_TAG,
    SNAPSHOT,
    SNAPSHOT_GONE,
    SNAPSHOT_ID,
    VOLUME,
    VOLUME_GONE,
    VOLUME_ID,
    Ec2Call,
    InRegion,
    wait_volume_available,
)

NOT_ATTACHED = ("InvalidAttachment.NotFound", "IncorrectState", *VOLUME_GONE)
KINDS = {"volume": ("describe_volumes", "Volumes", "VolumeId"),
         "snapshot": ("describe_snapshots", "Snapshots", "SnapshotId")}


def detach_volume(volume: Text, instance: Text, *, region: str | None = None,
                  missing_ok: bool = False) -> Ec2Call:
    """Always with InstanceId: the volume leaves that instance, no other."""
    return Ec2Call(operation="detach_volume", region=region,
                   params=(("VolumeId", volume), ("InstanceId", instance)),
                   accept=NOT_ATTACHED if missing_ok else ())


def delete_volume(volume: Text, *, region: str | None = None, missing_ok: bool = False) -> Ec2Call:
    return Ec2Call(operation="delete_volume", region=region, params=(("VolumeId", volume),),
                   accept=VOLUME_GONE if missing_ok else ())


def delete_snapshot(snapshot: Text, *, region: str | None = None,
                    missing_ok: bool = False) -> Ec2Call:
    return Ec2Call(operation="delete_snapshot", region=region, params=(("SnapshotId", snapshot),),
                   accept=SNAPSHOT_GONE if missing_ok else ())


def teardown(instance: Text, *, keep_snapshot: bool, volume: Text = VOLUME,
             snapshot: Text = SNAPSHOT, timeout: float = 600.0, region: str | None = None,
             missing_ok: bool = False) -> list[Leaf]:
    """Detach from `instance`, wait until available, delete the volume (and the snapshot)."""
    out: list[Leaf] = [
        detach_volume(volume, instance, region=region, missing_ok=missing_ok),
        wait_volume_available(volume, timeout=timeout, region=region, missing_ok=missing_ok),
        delete_volume(volume, region=region, missing_ok=missing_ok)]
    if not keep_snapshot:
        out.append(delete_snapshot(snapshot, region=region, missing_ok=missing_ok))
    return out


def undo(instance: Text, *, keep_snapshot: bool, timeout: float = 600.0,
         region: str | None = None) -> list[Action]:
    """Rollback: what the run created goes (only what it captured; gone already is fine)."""
    volume = teardown(instance, keep_snapshot=True, timeout=timeout, region=region,
                      missing_ok=True)
    out: list[Action] = [When(IsSet(VOLUME_ID), tuple(volume),
                              otherwise_note="no volume was created: nothing to detach")]
    if not keep_snapshot:
        out.append(When(IsSet(SNAPSHOT_ID), (delete_snapshot(SNAPSHOT, region=region,
                                                             missing_ok=True),),
                        otherwise_note="no snapshot was started: nothing to delete"))
    return out


# -- leftovers by tag ----------------------------------------------------------------------------


def leftovers_key(region: str, kind: str) -> Key:
    return Key(f"ebs.leftovers.{region}.{kind}s")


@dataclass(frozen=True, kw_only=True)
class FindTagged(Ec2Call):
    """The volumes or snapshots tagged with the run id, captured as a JSON list."""

    what: str = "volume"  # or "snapshot"

    def interpret(self, answer: Mapping[str, Any], ctx: ExternalContext) -> Outcome:
        _, items, id_field = KINDS[self.what]
        found = [{"id": item.get(id_field), "state": item.get("State"),
                  "attached_to": [a.get("InstanceId") for a in item.get("Attachments", [])
                                  if a.get("State") in ("attaching", "attached")]}
                 for item in answer.get(items, [])]
        ids = ", ".join(str(f["id"]) for f in found) or "none"
        assert self.into is not None
        return Outcome(detail=f"{len(found)} {self.what}(s): {ids}",
                       values={self.into: json.dumps(found)})


def find_leftovers(run_id: Text, regions: Sequence[str]) -> list[Ec2Call]:
    """One describe call per kind and region, filtered by the tag resync:run-id."""
    tagged = [{"Name": f"tag:{RUN_TAG}", "Values": [run_id]}]
    out: list[Ec2Call] = []
    for region in regions:
        for what, (operation, _, _) in KINDS.items():
            params = (("OwnerIds", ["self"]),) if what == "snapshot" else ()
            out.append(FindTagged(operation=operation, params=(*params, ("Filters", tagged)),
                                  region=region, what=what, into=leftovers_key(region, what),
                                  note=f"{what}s this run left"))
    return out


@dataclass(frozen=True)
class Leftover:
    region: str
    kind: str  # volume | snapshot
    id: str
    state: str
    attached_to: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        on = f" attached to {', '.join(self.attached_to)}" if self.attached_to else ""
        return f"{self.kind} {self.id} ({self.state}{on}) in {self.region}"


def found(captured: Captured, regions: Sequence[str]) -> list[Leftover]:
    """The leftovers `find_leftovers` captured, volumes first."""
    out: list[Leftover] = []
    for kind in KINDS:
        for region in regions:
            raw = captured.get(str(leftovers_key(region, kind)))
            if raw is None:
                raise ResyncError(f"the {kind}s of {region} have not been looked for")
            out += [Leftover(region, kind, str(i["id"]), str(i.get("state")),
                             tuple(str(a) for a in i.get("attached_to") or ()))
                    for i in json.loads(str(raw))]
    return out


def delete_leftovers(leftovers: Sequence[Leftover], *, timeout: float = 600.0) -> list[Leaf]:
    """Each volume detached from every instance that holds it, awaited, deleted; then each
    snapshot deleted. Something gone in the meantime is not an error."""
    out: list[Leaf] = []
    for item in leftovers:
        if item.kind == "snapshot":
            out.append(delete_snapshot(item.id, region=item.region, missing_ok=True))
            continue
        for instance in item.attached_to:
            out.append(detach_volume(item.id, instance, region=item.region, missing_ok=True))
        if item.attached_to:
            out.append(wait_volume_available(item.id, timeout=timeout, region=item.region,
                                             missing_ok=True))
        out.append(delete_volume(item.id, region=item.region, missing_ok=True))
    return out


@dataclass(frozen=True, kw_only=True)
class RemoveTagged(External):
    """Every volume or snapshot tagged resync:run-id=<run id>, deleted: a volume is detached
    first from each instance holding it (always naming it) and awaited until available. What a
    killed attempt made but never recorded (its id was not captured) is found this way: a retry
    and a rollback leave nothing behind. One journal record listing what went."""

    run_id: Text
    what: str  # volume | snapshot
    region: str | None = None
    timeout: float = 600.0
    interval: float = 5.0
    host: str = AWS_HOST
    kind = "aws"

    def template(self) -> Template:
        how = ("detached from every instance holding it (named), awaited until available, "
               "deleted" if self.what == "volume" else "deleted")
        return (f"every {self.what} tagged {RUN_TAG}=", *text_parts(self.run_id), f": {how}",
                *((f" (region {self.region})",) if self.region else ()))

    def perform(self, ctx: ExternalContext) -> Outcome:
        where = InRegion(ctx, self.region)
        operation, items, id_field = KINDS[self.what]
        params: dict[str, Any] = {"Filters": [{"Name": f"tag:{RUN_TAG}",
                                               "Values": [captured_text(self.run_id, ctx.captured)]}]}
        if self.what == "snapshot":
            params["OwnerIds"] = ["self"]
        gone: list[str] = []
        for item in aws_call(where, "ec2", operation, **params).get(items, []):
            ident = str(item.get(id_field))
            if self.what == "volume":
                self._detach(where, ctx, item)
            try:
                aws_call(where, "ec2", f"delete_{self.what}",
                         **{"VolumeId" if self.what == "volume" else "SnapshotId": ident})
            except AwsCallError as exc:
                if exc.code not in VOLUME_GONE + SNAPSHOT_GONE:
                    raise
            gone.append(ident)
        return Outcome(detail=f"deleted: {', '.join(gone) or 'none (nothing tagged)'}")

    def _detach(self, where: Any, ctx: ExternalContext, volume: Mapping[str, Any]) -> None:
        ident = str(volume.get("VolumeId"))
        for att in volume.get("Attachments", []):
            if att.get("State") in ("attaching", "attached"):
                try:
                    aws_call(where, "ec2", "detach_volume", VolumeId=ident,
                             InstanceId=att.get("InstanceId"))
                except AwsCallError as exc:
                    if exc.code not in NOT_ATTACHED:
                        raise

        def look() -> tuple[bool, str]:
            try:
                found = aws_call(where, "ec2", "describe_volumes", VolumeIds=[ident])["Volumes"]
            except AwsCallError as exc:
                if exc.code in VOLUME_GONE:
                    return True, "gone"
                raise
            state = str(found[0].get("State")) if found else "gone"
            return state in ("available", "gone"), state

        waited = countdown(ctx, label=ident, timeout=self.timeout, interval=self.interval, look=look)
        if not waited.done:
            raise WaitTimeout(f"{ident}: not detached after {self.timeout:g}s (last: {waited.seen})")
