"""AWS calls about the instance itself: its address (for `--instance` without `--address`), its
Auto Scaling group, and completing the terminating lifecycle action after the drain."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from resync.actions.external import ExternalContext, Outcome
from resync.actions.types import Leaf, Ref
from resync.lb.aws import AwsCall
from resync.lb.params import Text
from resync.model.errors import ResyncError
from resync.model.keys import Key

TERMINATING_HOOK_RESULT = "CONTINUE"


@dataclass(frozen=True, kw_only=True)
class DescribeInstance(AwsCall):
    """The instance's id, private address and zone, captured as `<prefix>.instance_id`, ..."""

    prefix: str = "self"
    service: str = "ec2"
    operation: str = "describe_instances"
    note: str = "its private address and zone"

    def interpret(self, answer: Mapping[str, Any], ctx: ExternalContext) -> Outcome:
        found = [i for r in answer.get("Reservations", []) for i in r.get("Instances", [])]
        if not found:
            raise ResyncError(f"{self.render(ctx.captured)}: no such instance")
        inst = found[0]
        address = inst.get("PrivateIpAddress")
        if not address:
            raise ResyncError(f"instance {inst.get('InstanceId')} has no private address "
                              f"(state {inst.get('State', {}).get('Name')})")
        if len(found) > 1:
            raise ResyncError(f"{self.render(ctx.captured)}: {len(found)} instances match")
        zone = str(inst.get("Placement", {}).get("AvailabilityZone", ""))
        return Outcome(detail=f"{inst.get('InstanceId')} {address} in {zone}",
                       values={Key(f"{self.prefix}.instance_id"): inst.get("InstanceId"),
                               Key(f"{self.prefix}.address"): address,
                               Key(f"{self.prefix}.availability_zone"): zone})


def describe_instance(instance_id: str, prefix: str = "self") -> DescribeInstance:
    """By id: its address and zone (`--instance` without `--address`)."""
    return DescribeInstance(params=(("InstanceIds", [instance_id]),), prefix=prefix)


def instance_by_address(address: Text, prefix: str) -> DescribeInstance:
    """By private address: the instance id (a runbook host known by its address); then
    `Target.captured(prefix)` acts for it."""
    return DescribeInstance(params=(("Filters", [
        {"Name": "private-ip-address", "Values": [address]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]),),
        prefix=prefix, note="the instance with this private address: its id and zone")


@dataclass(frozen=True, kw_only=True)
class FindGroup(AwsCall):
    """The Auto Scaling group the instance belongs to."""

    into: Key
    service: str = "autoscaling"
    operation: str = "describe_auto_scaling_instances"
    note: str = "its Auto Scaling group"

    def interpret(self, answer: Mapping[str, Any], ctx: ExternalContext) -> Outcome:
        found = answer.get("AutoScalingInstances", [])
        if not found:
            raise ResyncError(f"{self.render(ctx.captured)}: the instance is in no Auto Scaling "
                              "group (give --asg NAME)")
        group = str(found[0]["AutoScalingGroupName"])
        state = found[0].get("LifecycleState")
        return Outcome(detail=f"{group} (lifecycle state {state})", values={self.into: group})


def complete_lifecycle(hook: str, group: str | None, instance_id: Text,
                       prefix: str = "self") -> list[Leaf]:
    """`autoscaling complete_lifecycle_action ... LifecycleActionResult=CONTINUE`: the instance may
    terminate now (run after the drain). Without `group`, it is looked up first."""
    actions: list[Leaf] = []
    asg: Text
    if group is None:
        asg = Ref(Key(f"{prefix}.auto_scaling_group"))
        actions.append(FindGroup(params=(("InstanceIds", [instance_id]),), into=asg.key))
    else:
        asg = group
    actions.append(AwsCall(service="autoscaling", operation="complete_lifecycle_action",
                           params=(("LifecycleHookName", hook), ("AutoScalingGroupName", asg),
                                   ("InstanceId", instance_id),
                                   ("LifecycleActionResult", TERMINATING_HOOK_RESULT))))
    return actions
