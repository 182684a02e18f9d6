"""HAProxy backends from the live instances (seed 004's cron job), as journaled AWS reads.

`--from` names where the instances come from: an Auto Scaling group (members InService), a
Classic ELB (instances InService), an ELBv2 target group (targets healthy) or an EC2 tag (running
instances). Each read is an External leaf: the journal (and `--verbose`) show every AWS call with
its parameters. The backend section is rendered in a stable order, so an unchanged fleet gives
a byte-identical file and cron does nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from resync.actions.external import External, ExternalContext, Outcome
from resync.actions.types import Template
from resync.model.errors import BadInputError, ResyncError
from resync.model.keys import Key

INSTANCES = Key("backends.instances")  # JSON [[name, address], ...]


@dataclass(frozen=True)
class Source:
    kind: str  # asg | elb | target-group | tag
    value: str

    @classmethod
    def parse(cls, text: str) -> Source:
        kind, sep, value = text.partition(":")
        if not sep or not value or kind not in ("asg", "elb", "target-group", "tag"):
            raise BadInputError(f"--from {text!r}: expected asg:NAME, elb:NAME, target-group:ARN "
                                "or tag:KEY=VALUE")
        if kind == "tag" and "=" not in value:
            raise BadInputError(f"--from {text!r}: a tag source is tag:KEY=VALUE")
        return cls(kind, value)


def _instances(ec2: Any, ids: list[str] | None, filters: list[dict[str, Any]]) -> list[list[str]]:
    """[name, private ip] of running instances (by id, or by filters), sorted by name."""
    if ids is not None and not ids:
        return []
    kwargs: dict[str, Any] = {"Filters": [{"Name": "instance-state-name", "Values": ["running"]},
                                          *filters]}
    if ids is not None:
        kwargs["InstanceIds"] = ids
    found: list[list[str]] = []
    for page in ec2.get_paginator("describe_instances").paginate(**kwargs):
        for reservation in page["Reservations"]:
            for inst in reservation["Instances"]:
                if inst.get("PrivateIpAddress"):
                    found.append([inst["InstanceId"], inst["PrivateIpAddress"]])
    return sorted(found)


@dataclass(frozen=True)
class DiscoverInstances(External):
    """Read the in-service instances of a source (several AWS calls, one journal record)."""

    source: Source
    host: str = "aws"
    kind = "aws"

    def template(self) -> Template:
        s = self.source
        if s.kind == "asg":
            return (f"autoscaling describe_auto_scaling_groups AutoScalingGroupNames=[{s.value}] "
                    "(members InService); ec2 describe_instances InstanceIds=[...] (running)",)
        if s.kind == "elb":
            return (f"elb describe_instance_health LoadBalancerName={s.value} (InService); "
                    "ec2 describe_instances InstanceIds=[...] (running)",)
        if s.kind == "target-group":
            return (f"elbv2 describe_target_health TargetGroupArn={s.value} (healthy); "
                    "ec2 describe_instances InstanceIds=[...] for instance targets",)
        key, value = s.value.split("=", 1)
        return (f"ec2 describe_instances Filters=[tag:{key}={value}, "
                "instance-state-name=running]",)

    def perform(self, ctx: ExternalContext) -> Outcome:
        s, ec2 = self.source, ctx.aws("ec2")
        if s.kind == "asg":
            groups = ctx.aws("autoscaling").describe_auto_scaling_groups(
                AutoScalingGroupNames=[s.value])["AutoScalingGroups"]
            if not groups:
                raise ResyncError(f"no Auto Scaling group named {s.value}")
            ids = [i["InstanceId"] for i in groups[0]["Instances"]
                   if i.get("LifecycleState") == "InService"]
            found = _instances(ec2, ids, [])
        elif s.kind == "elb":
            states = ctx.aws("elb").describe_instance_health(
                LoadBalancerName=s.value)["InstanceStates"]
            found = _instances(ec2, [i["InstanceId"] for i in states
                                     if i.get("State") == "InService"], [])
        elif s.kind == "target-group":
            found = self._targets(ctx, ec2)
        else:
            key, value = s.value.split("=", 1)
            found = _instances(ec2, None, [{"Name": f"tag:{key}", "Values": [value]}])
        return Outcome(detail=f"{len(found)} instance(s): "
                              + ", ".join(f"{n} {a}" for n, a in found),
                       values={INSTANCES: json.dumps(found)})

    def _targets(self, ctx: ExternalContext, ec2: Any) -> list[list[str]]:
        health = ctx.aws("elbv2").describe_target_health(
            TargetGroupArn=self.source.value)["TargetHealthDescriptions"]
        healthy = [d["Target"] for d in health if d["TargetHealth"]["State"] == "healthy"]
        instance_ids = [t["Id"] for t in healthy if t["Id"].startswith("i-")]
        by_ip = [[t["Id"], t["Id"]] for t in healthy if not t["Id"].startswith("i-")]
        return sorted(_instances(ec2, instance_ids, []) + by_ip)


@dataclass(frozen=True)
class BackendStyle:
    port: int = 80
    maxconn: int = 100
    check_path: str | None = "/health"
    errorfile: str | None = "/etc/haproxy/errors/503.http"
    balance: str = "roundrobin"


def render_backend(name: str, instances: list[list[str]], style: BackendStyle,
                   source: Source) -> str:
    """One `backend` section; a server line per instance with check and maxconn."""
    lines = [f"# generated by resync lb haproxy-config --from {source.kind}:{source.value}",
             "# do not edit: the next run replaces this file when the fleet changes",
             f"backend {name}", f"    balance {style.balance}"]
    if style.check_path:
        lines.append(f"    option httpchk GET {style.check_path}")
    if style.errorfile:
        lines.append(f"    errorfile 503 {style.errorfile}")
    if not instances:
        lines.append("    # no instance in service: every request gets the 503 page")
    lines += [f"    server {server} {address}:{style.port} check maxconn {style.maxconn}"
              for server, address in instances]
    return "\n".join(lines) + "\n"
