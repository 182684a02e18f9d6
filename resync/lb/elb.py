"""Classic ELB membership (seed 000): register/deregister an instance, connection draining.

While an instance drains, DescribeInstanceHealth reports it `InService` with "Instance
deregistration currently in progress"; once done, `OutOfService` "not currently registered"
(AWS's documentation of connection draining). The wait lasts at most the balancer's
ConnectionDraining.Timeout (0 when draining is off), read from its attributes when the wait
starts: at that timeout the balancer closes the remaining connections itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from resync.actions.external import External, ExternalContext, Outcome
from resync.actions.types import Leaf, Ref, Template
from resync.lb.aws import AWS_HOST, AwsCall, AwsCallError, aws_call
from resync.lb.base import Member, Target
from resync.lb.params import Params, Text, call_template, resolve_params, text_parts
from resync.lb.waits import countdown, seconds_of
from resync.model.errors import ResyncError
from resync.model.keys import Key
from resync.model.lb import ElbEntry

DRAINING = "deregistration currently in progress"
# AWS's defaults, for an answer without a HealthCheck (AWS always sends one)
DEFAULT_HEALTH = {"Interval": 30, "HealthyThreshold": 10, "Timeout": 5}


def elb_state(states: list[Mapping[str, Any]]) -> tuple[str, str]:
    """(state, what AWS said) of the one instance asked about."""
    if not states:
        return "absent", "not registered"
    s = states[0]
    said = f"{s.get('State')}: {s.get('Description', '')}".rstrip(": ")
    state, description = str(s.get("State")), str(s.get("Description", ""))
    if DRAINING in description.lower():
        return "draining", said
    if state == "InService":
        return "in_service", said
    if "not currently registered" in description.lower():
        return "absent", said
    return ("out_of_service" if state == "OutOfService" else state.lower()), said


def _health_params(name: str, instance: Text) -> Params:
    return (("LoadBalancerName", name), ("Instances", [{"InstanceId": instance}]))


@dataclass(frozen=True, kw_only=True)
class ElbHealth(AwsCall):
    into: Key
    service: str = "elb"
    operation: str = "describe_instance_health"
    accept: tuple[str, ...] = ("InvalidInstance",)

    def interpret(self, answer: Mapping[str, Any], ctx: ExternalContext) -> Outcome:
        state, said = elb_state(answer.get("InstanceStates", []))
        return Outcome(detail=said, values={self.into: state})

    def interpret_error(self, code: str, message: str, ctx: ExternalContext) -> Outcome:
        return Outcome(detail=message, values={self.into: "absent"})


@dataclass(frozen=True, kw_only=True)
class ElbDrainTimeout(AwsCall):
    into: Key
    service: str = "elb"
    operation: str = "describe_load_balancer_attributes"
    note: str = "ConnectionDraining: the drain's timeout"

    def interpret(self, answer: Mapping[str, Any], ctx: ExternalContext) -> Outcome:
        draining = answer.get("LoadBalancerAttributes", {}).get("ConnectionDraining", {})
        timeout = int(draining.get("Timeout", 0)) if draining.get("Enabled") else 0
        shown = f"enabled, timeout {timeout}s" if draining.get("Enabled") else "disabled"
        return Outcome(detail=f"connection draining {shown}", values={self.into: timeout})


@dataclass(frozen=True, kw_only=True)
class ElbHealthTimeout(AwsCall):
    into: Key
    service: str = "elb"
    operation: str = "describe_load_balancers"
    note: str = "HealthCheck: interval x (healthy threshold + 1) + timeout"

    def interpret(self, answer: Mapping[str, Any], ctx: ExternalContext) -> Outcome:
        found = answer.get("LoadBalancerDescriptions", [])
        if not found:
            raise ResyncError(f"{self.render()}: no such load balancer")
        check = found[0].get("HealthCheck") or DEFAULT_HEALTH
        seconds = (int(check["Interval"]) * (int(check["HealthyThreshold"]) + 1)
                   + int(check["Timeout"]))
        return Outcome(detail=f"health check every {check['Interval']}s, healthy after "
                              f"{check['HealthyThreshold']}: wait at most {seconds}s",
                       values={self.into: seconds})


@dataclass(frozen=True, kw_only=True)
class ElbWait(External):
    """Poll describe_instance_health until drained (or in service), on the captured deadline."""

    name: str
    instance: Text
    timeout: Ref
    healthy: bool  # wait until InService (else: until no longer served)
    interval: float = 5.0
    host: str = AWS_HOST
    kind = "wait"

    def template(self) -> Template:
        call = call_template("elb", "describe_instance_health", _health_params(self.name,
                                                                              self.instance))
        until = ("InService" if self.healthy else
                 "deregistered (OutOfService, not registered), or draining at the deadline")
        why = "the health check's" if self.healthy else "the connection-draining timeout"
        return ("poll ", *call, f" until {until} (every {self.interval:g}s, at most ",
                *text_parts(self.timeout), f"s: {why})")

    def perform(self, ctx: ExternalContext) -> Outcome:
        params = resolve_params(_health_params(self.name, self.instance), ctx.captured)
        last = ["", ""]

        def look() -> tuple[bool, str]:
            try:
                answer = aws_call(ctx, "elb", "describe_instance_health", **params)
                last[:] = elb_state(answer.get("InstanceStates", []))
            except AwsCallError as exc:
                if exc.code != "InvalidInstance":
                    raise
                last[:] = ["absent", "not registered"]
            if self.healthy:
                return last[0] == "in_service", last[1]
            return last[0] not in ("in_service", "draining"), last[1]

        timeout = seconds_of(self.timeout, ctx)
        what = "in service" if self.healthy else "drained"
        waited = countdown(ctx, label=f"elb {self.name}: {what}", timeout=timeout,
                           interval=self.interval, look=look)
        if waited.done:
            return Outcome(detail=waited.describe())
        if not self.healthy and last[0] == "draining":
            return Outcome(detail=f"{waited.describe()}; the {timeout:g}s draining timeout is "
                                  "over: the balancer closes what is left")
        return Outcome(ok=False, detail=waited.describe(),
                       error=f"elb {self.name}: not {what} after {timeout:g}s ({last[1]})")


class ElbMember(Member):
    kind = "elb"

    def __init__(self, entry: ElbEntry, target: Target, prefix: str) -> None:
        super().__init__(target, prefix)
        self.entry = entry

    @property
    def label(self) -> str:
        return f"elb {self.entry.name}"

    @property
    def _instances(self) -> list[dict[str, Text]]:
        return [{"InstanceId": self.need(self.target.instance_id, "instance id")}]

    def status(self) -> list[Leaf]:
        return [ElbHealth(params=_health_params(self.entry.name, self._instances[0]["InstanceId"]),
                          into=self.state_key)]

    def register(self) -> list[Leaf]:
        return [AwsCall(service="elb", operation="register_instances_with_load_balancer",
                        params=(("LoadBalancerName", self.entry.name),
                                ("Instances", self._instances)))]

    def deregister(self) -> list[Leaf]:
        return [AwsCall(service="elb", operation="deregister_instances_from_load_balancer",
                        params=(("LoadBalancerName", self.entry.name),
                                ("Instances", self._instances)))]

    def wait_drained(self) -> list[Leaf]:
        timeout = self.key("drain_timeout")
        return [ElbDrainTimeout(params=(("LoadBalancerName", self.entry.name),), into=timeout),
                ElbWait(name=self.entry.name, instance=self._instances[0]["InstanceId"],
                        timeout=Ref(timeout), healthy=False)]

    def wait_healthy(self) -> list[Leaf]:
        timeout = self.key("healthy_timeout")
        return [ElbHealthTimeout(params=(("LoadBalancerNames", [self.entry.name]),), into=timeout),
                ElbWait(name=self.entry.name, instance=self._instances[0]["InstanceId"],
                        timeout=Ref(timeout), healthy=True)]
