"""Route53 membership: the zone's id, the record as read, the change sent, INSYNC and the TTL.

Each change is two actions: a read (list_resource_record_sets) that captures the exact change
batch to send (see resync.lb.records), then change_resource_record_sets with that batch: the
journal shows the batch with its values. Deregistering waits until the change is INSYNC
(get_change), then the TTL the record had, plus a margin: resolvers may hold the old answer
that long (seed 001's "sleep out the TTL").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from resync.actions.external import External, ExternalContext, Outcome
from resync.actions.types import Leaf, Ref, Template
from resync.lb.aws import AWS_HOST, AwsCall, aws_call
from resync.lb.base import Member, Target
from resync.lb.params import JsonRef, Param, Text, captured_text, joined, resolve, text_parts
from resync.lb.records import find_set, fqdn, plan_record
from resync.lb.waits import countdown, seconds_of, sleep_out
from resync.model.errors import ResyncError
from resync.model.keys import Key
from resync.model.lb import Route53Entry

TTL_MARGIN = 5  # seconds after the TTL: resolvers count loosely
CHANGE_TIMEOUT = 300.0  # seconds for a change to reach every Route53 server (usually < 60)
CHANGE_INTERVAL = 5.0


@dataclass(frozen=True, kw_only=True)
class FindZone(AwsCall):
    zone: str
    into: Key
    service: str = "route53"
    operation: str = "list_hosted_zones_by_name"
    note: str = "the hosted zone's id"

    def interpret(self, answer: Mapping[str, Any], ctx: ExternalContext) -> Outcome:
        zones = [z for z in answer.get("HostedZones", []) if fqdn(z["Name"]) == fqdn(self.zone)]
        if not zones:
            raise ResyncError(f"route53: no hosted zone named {self.zone}")
        if len(zones) > 1:
            ids = ", ".join(str(z["Id"]).split("/")[-1] for z in zones)
            raise ResyncError(f"route53: {len(zones)} hosted zones are named {self.zone} (public "
                              f"and private?): give `zone:` the id of one: {ids}")
        zone_id = str(zones[0]["Id"]).split("/")[-1]
        return Outcome(detail=zone_id, values={self.into: zone_id})


@dataclass(frozen=True, kw_only=True)
class ReadRecord(AwsCall):
    """Read the record's sets; capture the change `op` needs (JSON, "" for none) and the TTL."""

    op: str  # status | register | deregister
    entry: Route53Entry
    name: Param
    address: Text | None
    identifier: Param
    prefix: str
    service: str = "route53"
    operation: str = "list_resource_record_sets"

    def template(self) -> Template:
        what = {"status": "how it stands",
                "register": f"the change that registers ({self.entry.routing})",
                "deregister": f"the change that deregisters ({self.entry.routing})"}[self.op]
        into = "" if self.op == "status" else f"{self.prefix}.change: "
        return (*super().template(), f" -> {into}{what}")

    def perform(self, ctx: ExternalContext) -> Outcome:
        args = self.arguments(ctx.captured)
        sets: list[dict[str, Any]] = []
        while True:
            answer = aws_call(ctx, self.service, self.operation, **args)
            sets += answer.get("ResourceRecordSets", [])
            if not answer.get("IsTruncated") or fqdn(answer.get("NextRecordName", "")) != \
                    fqdn(args["StartRecordName"]):
                break
            args = {**args, "StartRecordName": answer["NextRecordName"],
                    "StartRecordType": answer["NextRecordType"],
                    **({"StartRecordIdentifier": answer["NextRecordIdentifier"]}
                       if "NextRecordIdentifier" in answer else {})}
        name = str(resolve(self.name, ctx.captured))
        identifier = resolve(self.identifier, ctx.captured)
        address = captured_text(self.address, ctx.captured) if self.address is not None else None
        recorded = ctx.captured.get(f"{self.prefix}.weight")
        weight = int(recorded) if isinstance(recorded, int) and recorded > 0 else self.entry.weight
        found = find_set(sets, name, identifier)
        plan = plan_record(self.op, self.entry.routing, found, name=name, address=address,
                           ttl=self.entry.ttl, weight=weight, identifier=identifier)
        values: dict[Key, Any] = {Key(f"{self.prefix}.state"): plan.state}
        if self.op != "status":
            values[Key(f"{self.prefix}.change")] = json.dumps(plan.change) if plan.change else ""
            values[Key(f"{self.prefix}.ttl")] = plan.ttl
        if self.op == "deregister" and plan.weight:  # weighted: restored by a later register
            values[Key(f"{self.prefix}.weight")] = plan.weight
        shown = "" if self.op == "status" else (
            f"; to send: {json.dumps(plan.change)}" if plan.change else "; nothing to change")
        return Outcome(detail=f"{plan.said}{shown}", values=values)


@dataclass(frozen=True, kw_only=True)
class ChangeRecords(AwsCall):
    """Send the captured batch (nothing when the read found nothing to change)."""

    change: Ref
    into: Key
    service: str = "route53"
    operation: str = "change_resource_record_sets"

    def perform(self, ctx: ExternalContext) -> Outcome:
        if not ctx.captured.get(str(self.change.key)):
            return Outcome(detail="nothing to change", values={self.into: ""})
        return super().perform(ctx)

    def interpret(self, answer: Mapping[str, Any], ctx: ExternalContext) -> Outcome:
        info = answer.get("ChangeInfo", {})
        change_id = str(info.get("Id", "")).split("/")[-1]
        return Outcome(detail=f"change {change_id} {info.get('Status')}",
                       values={self.into: change_id})


@dataclass(frozen=True, kw_only=True)
class WaitChange(External):
    """get_change until INSYNC; when draining, then the old TTL + a margin."""

    change_id: Ref
    ttl: Ref | None  # None: no TTL wait (registering)
    label: str
    host: str = AWS_HOST
    kind = "wait"

    def template(self) -> Template:
        head = ("poll route53 get_change Id=", *text_parts(self.change_id),
                f" until INSYNC (every {CHANGE_INTERVAL:g}s, at most {CHANGE_TIMEOUT:g}s)")
        if self.ttl is None:
            return head
        return (*head, ", then wait out the record's TTL ", *text_parts(self.ttl),
                f"s + {TTL_MARGIN}s (resolvers may hold the old answer that long)")

    def perform(self, ctx: ExternalContext) -> Outcome:
        change_id = ctx.captured.get(str(self.change_id.key))
        if not change_id:
            return Outcome(detail="nothing was changed: nothing to wait for")

        def look() -> tuple[bool, str]:
            info = aws_call(ctx, "route53", "get_change", Id=change_id).get("ChangeInfo", {})
            return info.get("Status") == "INSYNC", str(info.get("Status"))

        waited = countdown(ctx, label=f"{self.label}: change {change_id}", timeout=CHANGE_TIMEOUT,
                           interval=CHANGE_INTERVAL, look=look)
        if not waited.done:
            return Outcome(ok=False, detail=waited.describe(),
                           error=f"route53 change {change_id} not INSYNC after {CHANGE_TIMEOUT:g}s")
        if self.ttl is None:
            return Outcome(detail=waited.describe())
        seconds = seconds_of(self.ttl, ctx) + TTL_MARGIN
        sleep_out(ctx, label=f"{self.label}: TTL", seconds=seconds)
        return Outcome(detail=f"{waited.describe()}; then {seconds:g}s (TTL + {TTL_MARGIN}s)")


class Route53Member(Member):
    kind = "route53"

    def __init__(self, entry: Route53Entry, target: Target, prefix: str) -> None:
        super().__init__(target, prefix)
        self.entry = entry
        needs_id = "{instance_id}" in entry.name + (entry.identifier or "")
        self.name = joined(entry.name, instance_id=self.need(target.instance_id, "instance id")
                           if needs_id else target.instance_id)
        self.identifier = (joined(entry.identifier, instance_id=target.instance_id)
                           if entry.identifier else None)
        # one key per zone name: members in one zone share the lookup (prepare() is deduplicated)
        self.zone_key = Key(f"route53.zone_id.{fqdn(entry.zone)}")
        self.zone: Text = entry.zone.split("/")[-1] if entry.zone_is_id else Ref(self.zone_key)

    @property
    def label(self) -> str:
        return f"route53 {self.entry.name} ({self.entry.routing})"

    def prepare(self) -> list[Leaf]:
        if self.entry.zone_is_id:
            return []
        return [FindZone(params=(("DNSName", self.entry.zone), ("MaxItems", "10")),
                         zone=self.entry.zone, into=self.zone_key)]

    def _read(self, op: str) -> ReadRecord:
        params: tuple[tuple[str, Param], ...] = (
            ("HostedZoneId", self.zone), ("StartRecordName", self.name), ("StartRecordType", "A"))
        return ReadRecord(params=params, op=op, entry=self.entry, name=self.name,
                          address=self.target.address, identifier=self.identifier,
                          prefix=self.prefix)

    def _change(self, op: str) -> list[Leaf]:
        change = self.key("change")
        return [self._read(op),
                ChangeRecords(params=(("HostedZoneId", self.zone), ("ChangeBatch", JsonRef(Ref(change)))),
                              change=Ref(change), into=self.key("change_id"))]

    def status(self) -> list[Leaf]:
        return [self._read("status")]

    def register(self) -> list[Leaf]:
        return self._change("register")

    def deregister(self) -> list[Leaf]:
        return self._change("deregister")

    def wait_drained(self) -> list[Leaf]:
        return [WaitChange(change_id=Ref(self.key("change_id")), ttl=Ref(self.key("ttl")),
                           label=self.label)]

    def wait_healthy(self) -> list[Leaf]:
        return [WaitChange(change_id=Ref(self.key("change_id")), ttl=None, label=self.label)]
