"""A database host's load-balancer memberships (the replica in a read pool, say): drained
before its server stops, restored once the data is verified. Timeouts are the balancers' own.
"""

from __future__ import annotations

from resync.actions.types import Action, Leaf
from resync.lb.base import Member, Target
from resync.lb.instance import instance_by_address
from resync.lb.members import drain_actions, members_for, restore_actions
from resync.model.keys import StepId, StepKind
from resync.model.runbook import HostSettings
from resync.steps.base import Step

AWS_KINDS = ("elb", "target_group", "route53")


def host_members(name: str, host: HostSettings) -> tuple[tuple[Leaf, ...], list[Member]]:
    """The host's members, and the action that finds its instance first when AWS needs its id."""
    prefix = f"lb.{name}"
    if any(entry.kind in AWS_KINDS for entry in host.lb):
        identity: tuple[Leaf, ...] = (instance_by_address(host.address, f"{prefix}.instance"),)
        target = Target.captured(f"{prefix}.instance")
    else:
        identity, target = (), Target(address=host.address)
    return identity, members_for(host.lb, target, prefix, default_host=name)


class DrainMemberships(Step):
    why = ("its clients move to the other members before its server stops; each wait is the "
           "balancer's own (draining timeout, deregistration delay, TTL, sessions)")

    def __init__(self, name: str, host: HostSettings) -> None:
        self.identity, self.members = host_members(name, host)
        self.id = StepId(StepKind.LB_DRAIN, name)
        self.title = f"Drain {name} from its load balancers ({len(self.members)})"
        self.hosts = (name,)

    def plan(self) -> tuple[Action, ...]:
        return (*self.identity, *drain_actions(self.members))

    def undo_plan(self) -> tuple[Action, ...]:
        return (*self.identity, *restore_actions(self.members))


class RestoreMemberships(Step):
    why = "its data is verified: it takes its share of the traffic again"

    def __init__(self, name: str, host: HostSettings) -> None:
        self.identity, self.members = host_members(name, host)
        self.id = StepId(StepKind.LB_RESTORE, name)
        self.title = f"Restore {name} in its load balancers ({len(self.members)})"
        self.hosts = (name,)

    def plan(self) -> tuple[Action, ...]:
        return (*self.identity, *restore_actions(self.members))

    def undo_plan(self) -> tuple[Action, ...]:
        return (*self.identity, *drain_actions(self.members))
