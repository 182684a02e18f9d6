"""The members' actions as the plan and the journal show them: the API operation with its exact
parameters; values captured at run time as <slots>, filled in once known."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from resync.actions.types import Leaf, Ref, views
from resync.lb.base import Target
from resync.lb.command import Who, build
from resync.lb.imds import ImdsIdentity
from resync.lb.instance import complete_lifecycle, instance_by_address
from resync.lb.members import drain_actions, member_for, members_for, restore_actions, status_actions
from resync.model.errors import BadInputError
from resync.model.keys import Key
from resync.model.lb import ElbEntry, HaproxyEntry, LbConfig, Route53Entry, TargetGroupEntry

IID = "i-0abc1234567890def"
ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"
ELB = ElbEntry(kind="elb", name="web-elb")
TG = TargetGroupEntry(kind="target_group", arn=ARN, port=80)
OWN = Route53Entry(kind="route53", zone="example.internal.",
                   name="{instance_id}.web.example.internal.", ttl=60)
HAPROXY = HaproxyEntry(kind="haproxy", socket="/run/haproxy/admin.sock", backend="web",
                       server="web1", host="lb1")
SELF = Target.captured()


def texts(actions: Sequence[Leaf]) -> list[str]:
    return [a.render() for a in actions]


def test_classic_elb_texts() -> None:
    m = member_for(ELB, Target(IID), "lb.0")
    assert texts(m.register()) == [
        f"elb register_instances_with_load_balancer LoadBalancerName=web-elb "
        f"Instances=[{{InstanceId: {IID}}}]"]
    assert texts(m.deregister()) == [
        f"elb deregister_instances_from_load_balancer LoadBalancerName=web-elb "
        f"Instances=[{{InstanceId: {IID}}}]"]
    read, wait = m.wait_drained()
    assert read.render() == ("elb describe_load_balancer_attributes LoadBalancerName=web-elb "
                             "(ConnectionDraining: the drain's timeout)")
    assert wait.render() == (
        f"poll elb describe_instance_health LoadBalancerName=web-elb Instances=[{{InstanceId: "
        f"{IID}}}] until deregistered (OutOfService, not registered), or draining at the "
        "deadline (every 5s, at most <lb.0.drain_timeout>s: the connection-draining timeout)")
    assert "at most 300s" in wait.render({"lb.0.drain_timeout": 300})


def test_target_group_texts_with_captured_values() -> None:
    m = member_for(TG, SELF, "lb.1")
    (resolve,) = m.prepare()
    assert resolve.render() == (f"elbv2 describe_target_groups TargetGroupArns=[{ARN}] "
                                "(target type (instance id or address), port, health check)")
    (dereg,) = m.deregister()
    assert dereg.render() == (f"elbv2 deregister_targets TargetGroupArn={ARN} "
                              "Targets=[{Id: <lb.1.target_id>, Port: 80}]")
    assert dereg.render({"lb.1.target_id": IID}) == (
        f"elbv2 deregister_targets TargetGroupArn={ARN} Targets=[{{Id: {IID}, Port: 80}}]")
    no_port = member_for(TargetGroupEntry(kind="target_group", arn=ARN), SELF, "lb.1")
    assert "Port: <lb.1.port>" in no_port.register()[0].render()


def test_route53_texts() -> None:
    m = member_for(OWN, SELF, "lb.2")
    (find,) = m.prepare()
    assert find.render() == ("route53 list_hosted_zones_by_name DNSName=example.internal. "
                             "MaxItems=10 (the hosted zone's id)")
    read, change = m.deregister()
    assert read.render() == (
        "route53 list_resource_record_sets HostedZoneId=<route53.zone_id.example.internal.> "
        "StartRecordName=<self.instance_id>.web.example.internal. StartRecordType=A "
        "-> lb.2.change: the change that deregisters (own_record)")
    assert change.render() == ("route53 change_resource_record_sets HostedZoneId="
                               "<route53.zone_id.example.internal.> ChangeBatch=<lb.2.change>")
    batch = '{"Changes": [{"Action": "DELETE", "ResourceRecordSet": {}}]}'
    assert change.render({"route53.zone_id.example.internal.": "Z1", "lb.2.change": batch}) == (
        f"route53 change_resource_record_sets HostedZoneId=Z1 ChangeBatch={batch}")
    (wait,) = m.wait_drained()
    assert wait.render() == (
        "poll route53 get_change Id=<lb.2.change_id> until INSYNC (every 5s, at most 300s), "
        "then wait out the record's TTL <lb.2.ttl>s + 5s (resolvers may hold the old answer "
        "that long)")
    by_id = member_for(Route53Entry(kind="route53", zone="Z0123ABC", name="a.example."), SELF, "x")
    assert by_id.prepare() == []
    assert "HostedZoneId=Z0123ABC " in by_id.status()[0].render()


def test_haproxy_texts() -> None:
    m = member_for(HAPROXY, Target(), "lb.3")
    sock = "UNIX-CONNECT:/run/haproxy/admin.sock"
    assert [(a.host, a.render()) for a in m.deregister()] == [
        ("lb1", f"echo 'set server web/web1 state drain' | socat stdio {sock}")]
    wait, maint = m.wait_drained()
    assert wait.render() == (f"poll echo 'show stat' | socat stdio {sock} until web/web1 has no "
                             "current session (scur 0) (every 1s, at most 300s)")
    assert maint.render() == f"echo 'set server web/web1 state maint' | socat stdio {sock}"
    assert texts(m.register()) == [f"echo 'set server web/web1 state ready' | socat stdio {sock}"]
    local = member_for(HAPROXY.model_copy(update={"host": None}), Target(), "lb.3",
                       default_host="db2")
    assert local.status()[0].host == "db2"


def test_identity_and_lifecycle_texts() -> None:
    imds = ImdsIdentity(base="http://169.254.169.254")
    assert imds.render() == (
        "IMDSv2 http://169.254.169.254: PUT /latest/api/token, GET /latest/meta-data/"
        "{instance-id, local-ipv4, placement/availability-zone} -> self.instance_id, "
        "self.address, self.availability_zone")
    assert texts(complete_lifecycle("drain", "web-asg", Ref(Key("self.instance_id")))) == [
        "autoscaling complete_lifecycle_action LifecycleHookName=drain AutoScalingGroupName="
        "web-asg InstanceId=<self.instance_id> LifecycleActionResult=CONTINUE"]
    assert instance_by_address("10.0.0.5", "db2").render() == (
        "ec2 describe_instances Filters=[{Name: private-ip-address, Values: [10.0.0.5]}, "
        "{Name: instance-state-name, Values: [pending, running, stopping, stopped]}] "
        "(the instance with this private address: its id and zone)")
    find, complete = complete_lifecycle("drain", None, IID)
    assert find.render() == (f"autoscaling describe_auto_scaling_instances InstanceIds=[{IID}] "
                             "(its Auto Scaling group)")
    assert "AutoScalingGroupName=<self.auto_scaling_group>" in complete.render()


def test_sequences_prepare_once_change_all_then_wait() -> None:
    rr = Route53Entry(kind="route53", zone="example.internal.", name="web.example.internal.",
                      routing="round_robin")
    members = members_for([ELB, TG, OWN, rr], Target(IID, "10.0.0.5"), "lb.db2")
    drain = [a.render() for a in drain_actions(members)]
    assert [t.split(" (")[0].split(" ")[:2] for t in drain] == [
        ["elbv2", "describe_target_groups"], ["route53", "list_hosted_zones_by_name"],  # once
        ["elb", "deregister_instances_from_load_balancer"], ["elbv2", "deregister_targets"],
        ["route53", "list_resource_record_sets"], ["route53", "change_resource_record_sets"],
        ["route53", "list_resource_record_sets"], ["route53", "change_resource_record_sets"],
        ["elb", "describe_load_balancer_attributes"], ["poll", "elb"],
        ["elbv2", "describe_target_group_attributes"], ["poll", "elbv2"],
        ["poll", "route53"], ["poll", "route53"]]
    assert "Id: <lb.db2.1.target_id>" in drain[3]
    restore = [a.render() for a in restore_actions(members)]
    assert "register_instances_with_load_balancer" in restore[2]
    assert [v.text for v in views(status_actions(members))][-1].endswith("how it stands")


def test_members_refuse_a_target_they_cannot_act_for() -> None:
    with pytest.raises(BadInputError, match="elb web-elb: needs the instance's instance id"):
        member_for(ELB, Target(address="10.0.0.5"), "lb.0").register()
    with pytest.raises(BadInputError, match="instance id"):
        member_for(OWN, Target(address="10.0.0.5"), "lb.0")


def config(*members: object, **extra: object) -> LbConfig:
    return LbConfig.model_validate({"version": 1, "members": list(members), **extra})


def test_build_picks_the_identity() -> None:
    cfg = config({"kind": "elb", "name": "web-elb"},
                 {"kind": "route53", "zone": "example.internal.", "name": "web.example.internal."})
    plan = build(cfg, "register", Who(use_self=True))
    assert plan.actions[0].kind == "imds" and plan.target == Target.captured()
    plan = build(cfg, "register", Who(instance=IID))  # records need the address: asked of EC2
    assert plan.actions[0].render().startswith(f"ec2 describe_instances InstanceIds=[{IID}]")
    plan = build(cfg, "register", Who(instance=IID, address="10.0.0.5"))
    assert plan.target == Target(IID, "10.0.0.5") and plan.actions[0].kind != "imds"
    elb_only = config({"kind": "elb", "name": "web-elb"},
                      self={"instance_id": IID, "address": "10.0.0.5"})
    plan = build(elb_only, "deregister", Who(use_self=True), hook="drain", group="web-asg")
    assert plan.target.instance_id == IID
    assert plan.actions[-1].render().startswith("autoscaling complete_lifecycle_action")


@pytest.mark.parametrize(("who", "kwargs", "message"), [
    (Who(), {}, "either --self or --instance"),
    (Who(use_self=True, instance=IID), {}, "either --self or --instance"),
    (Who(use_self=True, address="10.0.0.5"), {}, "--address goes with --instance"),
    (Who(instance=IID), {"group": "web-asg"}, "--asg goes with --complete-lifecycle"),
])
def test_build_refuses_bad_combinations(who: Who, kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        build(config({"kind": "elb", "name": "web-elb"}), "deregister", who, **kwargs)


def test_build_completes_lifecycle_only_after_a_deregister() -> None:
    with pytest.raises(BadInputError, match="goes with deregister"):
        build(config({"kind": "elb", "name": "web-elb"}), "register", Who(instance=IID),
              hook="drain")


def test_a_plan_renders_slots_for_unknown_values() -> None:
    plan = build(config({"kind": "elb", "name": "web-elb"}), "deregister", Who(use_self=True))
    text = [v.text for v in views(plan.actions)]
    assert "Instances=[{InstanceId: <self.instance_id>}]" in text[1]
