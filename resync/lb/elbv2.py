"""ELBv2 target-group membership (instance or IP targets), deregistration delay.

The group's target type decides whether the target is the instance id or its address: read
once with describe_target_groups (prepare) and captured, with the group's port and its health
check. A deregistered target stays `draining` until the group's
`deregistration_delay.timeout_seconds` is over (AWS shows it so even when no request is left);
the wait ends then at the latest, read from the group's attributes when it starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from resync.actions.external import External, ExternalContext, Outcome
from resync.actions.types import Leaf, Ref, Template
from resync.lb.aws import AWS_HOST, AwsCall, AwsCallError, aws_call
from resync.lb.base import Member, Target
from resync.lb.params import (
    Param,
    Params,
    Text,
    call_template,
    captured_text,
    resolve_params,
    text_parts,
)
from resync.lb.waits import countdown, seconds_of
from resync.model.errors import ResyncError
from resync.model.keys import Key
from resync.model.lb import TargetGroupEntry

STATES = {"healthy": "in_service", "draining": "draining", "initial": "registering",
          "unhealthy": "out_of_service", "unavailable": "in_service"}  # unavailable: no checks


def tg_state(descriptions: list[Mapping[str, Any]]) -> tuple[str, str]:
    """(state, what AWS said) of the one target asked about."""
    if not descriptions:
        return "absent", "not registered"
    health = descriptions[0].get("TargetHealth", {})
    said = " ".join(str(health.get(k, "")) for k in ("State", "Reason")).strip()
    state = str(health.get("State", ""))
    if state == "unused":
        reason = str(health.get("Reason", ""))
        return ("absent" if reason == "Target.NotRegistered" else "unused"), said
    return STATES.get(state, state), said


@dataclass(frozen=True, kw_only=True)
class ResolveTarget(AwsCall):
    """The group's target type, port and health check: what the other actions need."""

    instance: Text | None
    address: Text | None
    port: int | None
    prefix: str
    service: str = "elbv2"
    operation: str = "describe_target_groups"
    note: str = "target type (instance id or address), port, health check"

    def interpret(self, answer: Mapping[str, Any], ctx: ExternalContext) -> Outcome:
        groups = answer.get("TargetGroups", [])
        if not groups:
            raise ResyncError(f"{self.render()}: no such target group")
        group = groups[0]
        kind = group.get("TargetType", "instance")
        if kind not in ("instance", "ip"):
            raise ResyncError(f"target group {group.get('TargetGroupName')}: target type {kind} "
                              "cannot hold an instance")
        value = self.instance if kind == "instance" else self.address
        if value is None:
            raise ResyncError(f"target group {group.get('TargetGroupName')} ({kind} targets) "
                              f"needs the instance's {'id' if kind == 'instance' else 'address'}"
                              f"{'' if kind == 'instance' else ' (give --address)'}")
        target = captured_text(value, ctx.captured)
        port = self.port or int(group.get("Port") or 0)
        seconds = (int(group.get("HealthCheckIntervalSeconds", 30))
                   * (int(group.get("HealthyThresholdCount", 5)) + 1)
                   + int(group.get("HealthCheckTimeoutSeconds", 5)))
        p = self.prefix
        return Outcome(detail=f"{kind} targets: {target} port {port}; healthy within {seconds}s",
                       values={Key(f"{p}.target_id"): target, Key(f"{p}.port"): port,
                               Key(f"{p}.healthy_timeout"): seconds})


@dataclass(frozen=True, kw_only=True)
class TgHealth(AwsCall):
    into: Key
    service: str = "elbv2"
    operation: str = "describe_target_health"
    accept: tuple[str, ...] = ("InvalidTarget",)

    def interpret(self, answer: Mapping[str, Any], ctx: ExternalContext) -> Outcome:
        state, said = tg_state(answer.get("TargetHealthDescriptions", []))
        return Outcome(detail=said, values={self.into: state})

    def interpret_error(self, code: str, message: str, ctx: ExternalContext) -> Outcome:
        return Outcome(detail=message, values={self.into: "absent"})


@dataclass(frozen=True, kw_only=True)
class TgDrainTimeout(AwsCall):
    into: Key
    service: str = "elbv2"
    operation: str = "describe_target_group_attributes"
    note: str = "deregistration_delay.timeout_seconds: the drain's timeout"

    def interpret(self, answer: Mapping[str, Any], ctx: ExternalContext) -> Outcome:
        attrs = {a["Key"]: a["Value"] for a in answer.get("Attributes", [])}
        delay = int(attrs.get("deregistration_delay.timeout_seconds", 300))
        return Outcome(detail=f"deregistration delay {delay}s", values={self.into: delay})


@dataclass(frozen=True, kw_only=True)
class TgWait(External):
    """Poll describe_target_health until drained (or healthy), on the captured deadline."""

    arn: str
    targets: Param
    timeout: Ref
    healthy: bool
    interval: float = 5.0
    host: str = AWS_HOST
    kind = "wait"

    def _params(self) -> Params:
        return (("TargetGroupArn", self.arn), ("Targets", self.targets))

    def template(self) -> Template:
        call = call_template("elbv2", "describe_target_health", self._params())
        until = ("healthy" if self.healthy else
                 "no longer registered (draining at the deadline: the delay is over)")
        why = "the health check's" if self.healthy else "the deregistration delay"
        return ("poll ", *call, f" until {until} (every {self.interval:g}s, at most ",
                *text_parts(self.timeout), f"s: {why})")

    def perform(self, ctx: ExternalContext) -> Outcome:
        params = resolve_params(self._params(), ctx.captured)
        last = ["", ""]

        def look() -> tuple[bool, str]:
            try:
                answer = aws_call(ctx, "elbv2", "describe_target_health", **params)
                last[:] = tg_state(answer.get("TargetHealthDescriptions", []))
            except AwsCallError as exc:
                if exc.code != "InvalidTarget":
                    raise
                last[:] = ["absent", str(exc)]
            if self.healthy:
                return last[0] in ("in_service", "unused"), last[1]
            return last[0] in ("absent", "unused"), last[1]

        timeout = seconds_of(self.timeout, ctx)
        what = "healthy" if self.healthy else "drained"
        name = self.arn.split(":")[-1]
        waited = countdown(ctx, label=f"{name}: {what}", timeout=timeout, interval=self.interval,
                           look=look)
        if waited.done:
            note = "; not used by any load balancer" if last[0] == "unused" else ""
            return Outcome(detail=waited.describe() + note)
        if not self.healthy and last[0] == "draining":
            return Outcome(detail=f"{waited.describe()}; the {timeout:g}s deregistration delay "
                                  "is over: the balancer completes it")
        return Outcome(ok=False, detail=waited.describe(),
                       error=f"{name}: not {what} after {timeout:g}s ({last[1]})")


class TargetGroupMember(Member):
    kind = "target_group"

    def __init__(self, entry: TargetGroupEntry, target: Target, prefix: str) -> None:
        super().__init__(target, prefix)
        self.entry = entry
        if target.instance_id is None and target.address is None:
            self.need(None, "id or address")

    @property
    def label(self) -> str:
        return f"target_group {self.entry.arn.split(':')[-1]}"

    @property
    def _targets(self) -> list[dict[str, Param]]:
        port: Param = self.entry.port if self.entry.port else Ref(self.key("port"))
        return [{"Id": Ref(self.key("target_id")), "Port": port}]

    def _call(self, operation: str) -> AwsCall:
        return AwsCall(service="elbv2", operation=operation,
                       params=(("TargetGroupArn", self.entry.arn), ("Targets", self._targets)))

    def prepare(self) -> list[Leaf]:
        return [ResolveTarget(params=(("TargetGroupArns", [self.entry.arn]),),
                              instance=self.target.instance_id, address=self.target.address,
                              port=self.entry.port, prefix=self.prefix)]

    def status(self) -> list[Leaf]:
        return [TgHealth(params=(("TargetGroupArn", self.entry.arn), ("Targets", self._targets)),
                         into=self.state_key)]

    def register(self) -> list[Leaf]:
        return [self._call("register_targets")]

    def deregister(self) -> list[Leaf]:
        return [self._call("deregister_targets")]

    def wait_drained(self) -> list[Leaf]:
        timeout = self.key("drain_timeout")
        return [TgDrainTimeout(params=(("TargetGroupArn", self.entry.arn),), into=timeout),
                TgWait(arn=self.entry.arn, targets=self._targets, timeout=Ref(timeout),
                       healthy=False)]

    def wait_healthy(self) -> list[Leaf]:
        return [TgWait(arn=self.entry.arn, targets=self._targets,
                       timeout=Ref(self.key("healthy_timeout")), healthy=True)]
