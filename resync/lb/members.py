"""Member entries (lb.yaml, or a runbook host's `lb:`) to members, and members to action lists.

    members = members_for(entries, Target(instance_id="i-0abc", address="10.0.0.5"), prefix="lb.db2")
    drain_actions(members)     # prepare, deregister every member, then wait until each is drained
    restore_actions(members)   # prepare, register every member, then wait until each is healthy

Deregistering every member before waiting lets the balancers drain in parallel: each wait then
ends at the latest at its own balancer's timeout, counted from the moment it starts.
"""

from __future__ import annotations

from collections.abc import Sequence

from resync.actions.types import Leaf
from resync.lb.base import LOCAL_HOST, Member, Target
from resync.lb.elb import ElbMember
from resync.lb.elbv2 import TargetGroupMember
from resync.lb.haproxy import HaproxyMember
from resync.lb.route53 import Route53Member
from resync.model.lb import ElbEntry, HaproxyEntry, MemberEntry, Route53Entry, TargetGroupEntry


def member_for(entry: MemberEntry, target: Target, prefix: str,
               default_host: str = LOCAL_HOST) -> Member:
    """One member; `prefix` names the values its actions capture (unique per member and run).
    `default_host`: where an HAProxy entry without `host:` runs socat (an executor host name)."""
    if isinstance(entry, ElbEntry):
        return ElbMember(entry, target, prefix)
    if isinstance(entry, TargetGroupEntry):
        return TargetGroupMember(entry, target, prefix)
    if isinstance(entry, Route53Entry):
        return Route53Member(entry, target, prefix)
    if isinstance(entry, HaproxyEntry):
        return HaproxyMember(entry, target, prefix, default_host)
    raise TypeError(entry)


def members_for(entries: Sequence[MemberEntry], target: Target, prefix: str = "lb",
                default_host: str = LOCAL_HOST) -> list[Member]:
    """Every entry's member, their values captured under `prefix.0`, `prefix.1`, ..."""
    return [member_for(e, target, f"{prefix}.{i}", default_host) for i, e in enumerate(entries)]


def _prepare(members: Sequence[Member]) -> list[Leaf]:
    """Every member's reads, each once (members in one hosted zone share its lookup)."""
    out: list[Leaf] = []
    for action in (a for m in members for a in m.prepare()):
        if action not in out:
            out.append(action)
    return out


def status_actions(members: Sequence[Member]) -> list[Leaf]:
    """Read each membership's state (captured under member.state_key); changes nothing."""
    return [*_prepare(members), *(a for m in members for a in m.status())]


def drain_actions(members: Sequence[Member]) -> list[Leaf]:
    """Take the target out of every member, then wait until each balancer let it go."""
    return [*_prepare(members), *(a for m in members for a in m.drain()),
            *(a for m in members for a in m.wait_drained())]


def restore_actions(members: Sequence[Member]) -> list[Leaf]:
    """Put the target back in every member, then wait until each sends it traffic."""
    return [*_prepare(members), *(a for m in members for a in m.restore()),
            *(a for m in members for a in m.wait_healthy())]


deregister_actions = drain_actions
register_actions = restore_actions
