"""Drain and health waits on an injected clock: each ends at the balancer's own setting (read by
an action and captured), never at a default, and counts down through the executor's progress."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from resync.lb.base import Target
from resync.lb.members import drain_actions, members_for, restore_actions
from resync.model.errors import ResyncError
from resync.model.lb import ElbEntry, HaproxyEntry, MemberEntry, Route53Entry, TargetGroupEntry
from resync.run.executor import Executor
from resync.run.journal import CommandRecord, MemoryJournal
from resync.testing.fakes import FakeClock
from resync.transport.local import CommandResult

IID, IP = "i-0abc1234567890def", "10.0.0.5"
ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"
DRAINING = {"InstanceId": IID, "State": "InService", "ReasonCode": "N/A",
            "Description": "Instance deregistration currently in progress."}
GONE = {"InstanceId": IID, "State": "OutOfService", "ReasonCode": "ELB",
        "Description": "Instance is not currently registered with the LoadBalancer."}


class Fake:
    """A boto3 client stand-in: each operation answers from a function; calls are recorded."""

    def __init__(self, **answers: Callable[..., Any]) -> None:
        self.answers, self.calls = answers, []  # type: ignore[var-annotated]

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        if operation not in self.answers:
            raise AttributeError(operation)  # a waiter or anything unexpected fails loudly

        def call(**params: Any) -> Any:
            self.calls.append((operation, params))
            return self.answers[operation](**params)

        return call


def error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} from the fake"}}, operation)


class Run:
    def __init__(self, clients: dict[str, Fake], host: Any = None) -> None:
        self.clock = FakeClock()
        self.progress: list[tuple[int, int | None, str]] = []
        self.exe = Executor(MemoryJournal("t"), hosts=lambda name: host,
                            connect=lambda name: None,  # type: ignore[arg-type,return-value]
                            clock=self.clock, aws_factory=lambda s: clients[s],
                            progress=lambda d, t, label: self.progress.append((d, t, label)))

    def drain(self, entry: MemberEntry) -> None:
        self.exe.run(drain_actions(members_for([entry], Target(IID, IP), "lb")))

    def restore(self, entry: MemberEntry) -> None:
        self.exe.run(restore_actions(members_for([entry], Target(IID, IP), "lb")))

    def record(self, kind: str) -> CommandRecord:
        return next(r for r in self.exe.journal.data.commands if r.kind == kind)


def classic(health: Callable[..., Any], *, enabled: bool = True, timeout: int = 42) -> Fake:
    return Fake(
        deregister_instances_from_load_balancer=lambda **p: {"Instances": []},
        register_instances_with_load_balancer=lambda **p: {"Instances": [{"InstanceId": IID}]},
        describe_load_balancer_attributes=lambda **p: {"LoadBalancerAttributes": {
            "ConnectionDraining": {"Enabled": enabled, "Timeout": timeout}}},
        describe_load_balancers=lambda **p: {"LoadBalancerDescriptions": [{"HealthCheck": {
            "Interval": 10, "HealthyThreshold": 3, "Timeout": 5, "Target": "HTTP:80/"}}]},
        describe_instance_health=health)


def test_classic_drain_ends_at_the_connection_draining_timeout() -> None:
    run = Run({"elb": classic(lambda **p: {"InstanceStates": [DRAINING]})})
    run.drain(ElbEntry(kind="elb", name="web-elb"))
    assert run.clock.t == 42  # the balancer's timeout, not boto3's 15 s x 40 nor 300
    assert run.progress[0][1] == 42 and run.progress[-1][:2] == (42, 42)
    assert "s left" in run.progress[0][2]
    wait = run.record("wait")
    assert wait.ok and "42s draining timeout is over" in (wait.detail or "")
    assert "at most <lb.0.drain_timeout>s" not in wait.text and "at most 42s" in wait.text


def test_classic_drain_ends_when_the_balancer_reports_it_deregistered() -> None:
    answers = iter([DRAINING, DRAINING, GONE])
    run = Run({"elb": classic(lambda **p: {"InstanceStates": [next(answers)]})})
    run.drain(ElbEntry(kind="elb", name="web-elb"))
    assert run.clock.t == 10  # looks at 0, 5 and 10 s
    assert "3 look(s)" in (run.record("wait").detail or "")


def test_classic_drain_without_connection_draining_looks_once() -> None:
    run = Run({"elb": classic(lambda **p: (_ for _ in ()).throw(error("InvalidInstance", "x")),
                              enabled=False)})
    run.drain(ElbEntry(kind="elb", name="web-elb"))
    assert run.clock.t == 0
    assert "connection draining disabled" in (run.exe.journal.data.commands[1].detail or "")


def test_classic_drain_fails_when_the_instance_stays_in_service() -> None:
    still = {"InstanceId": IID, "State": "InService", "Description": "N/A"}
    run = Run({"elb": classic(lambda **p: {"InstanceStates": [still]}, timeout=20)})
    with pytest.raises(ResyncError, match="not drained after 20s"):
        run.drain(ElbEntry(kind="elb", name="web-elb"))
    assert run.clock.t == 20


def test_classic_health_wait_ends_at_the_health_check_settings() -> None:
    run = Run({"elb": classic(lambda **p: {"InstanceStates": [GONE]})})
    with pytest.raises(ResyncError, match=r"not in service after 45s"):
        run.restore(ElbEntry(kind="elb", name="web-elb"))
    assert run.clock.t == 45  # interval 10 x (threshold 3 + 1) + timeout 5


def target_group(states: Callable[..., Any], delay: str = "17") -> Fake:
    return Fake(
        describe_target_groups=lambda **p: {"TargetGroups": [{
            "TargetGroupName": "web", "TargetType": "instance", "Port": 80,
            "HealthCheckIntervalSeconds": 5, "HealthyThresholdCount": 2,
            "HealthCheckTimeoutSeconds": 3}]},
        deregister_targets=lambda **p: {}, register_targets=lambda **p: {},
        describe_target_group_attributes=lambda **p: {"Attributes": [
            {"Key": "stickiness.enabled", "Value": "false"},
            {"Key": "deregistration_delay.timeout_seconds", "Value": delay}]},
        describe_target_health=states)


def health(state: str, reason: str = "") -> dict[str, Any]:
    h = {"State": state, **({"Reason": reason} if reason else {})}
    return {"TargetHealthDescriptions": [{"Target": {"Id": IID, "Port": 80}, "TargetHealth": h}]}


def test_target_group_drain_ends_at_the_deregistration_delay() -> None:
    fake = target_group(lambda **p: health("draining", "Target.DeregistrationInProgress"))
    run = Run({"elbv2": fake})
    run.drain(TargetGroupEntry(kind="target_group", arn=ARN))
    assert run.clock.t == 17
    assert run.progress[-1][:2] == (17, 17)
    assert ("deregister_targets", {"TargetGroupArn": ARN,
                                   "Targets": [{"Id": IID, "Port": 80}]}) in fake.calls
    assert "deregistration delay is over" in (run.record("wait").detail or "")


def test_target_group_drain_ends_when_the_target_is_unused_or_unknown() -> None:
    answers = iter([health("draining"), health("unused", "Target.NotRegistered")])
    run = Run({"elbv2": target_group(lambda **p: next(answers))})
    run.drain(TargetGroupEntry(kind="target_group", arn=ARN))
    assert run.clock.t == 5

    run = Run({"elbv2": target_group(lambda **p: (_ for _ in ()).throw(
        error("InvalidTarget", "DescribeTargetHealth")))})
    run.drain(TargetGroupEntry(kind="target_group", arn=ARN))
    assert run.clock.t == 0


def test_target_group_health_wait_uses_the_groups_health_check() -> None:
    run = Run({"elbv2": target_group(lambda **p: health("initial"))})
    with pytest.raises(ResyncError, match="not healthy after 18s"):
        run.restore(TargetGroupEntry(kind="target_group", arn=ARN))
    assert run.clock.t == 18  # 5 x (2 + 1) + 3


def route53(statuses: list[str], ttl: int = 60) -> Fake:
    found = {"Name": "web.example.internal.", "Type": "A", "TTL": ttl,
             "ResourceRecords": [{"Value": IP}, {"Value": "10.0.0.6"}]}
    answers = iter(statuses)
    return Fake(
        list_hosted_zones_by_name=lambda **p: {"HostedZones": [
            {"Id": "/hostedzone/Z123", "Name": "example.internal."}]},
        list_resource_record_sets=lambda **p: {"ResourceRecordSets": [found],
                                               "IsTruncated": False},
        change_resource_record_sets=lambda **p: {"ChangeInfo": {"Id": "/change/C1",
                                                                "Status": "PENDING"}},
        get_change=lambda **p: {"ChangeInfo": {"Id": "/change/C1", "Status": next(answers)}})


def test_route53_drain_waits_insync_then_the_records_ttl() -> None:
    fake = route53(["PENDING", "PENDING", "INSYNC"], ttl=60)
    run = Run({"route53": fake})
    run.drain(Route53Entry(kind="route53", zone="example.internal.", name="web.example.internal.",
                           ttl=30, routing="round_robin"))
    # two 5 s polls until INSYNC, then the TTL the record HAD (60, not the configured 30) + 5
    assert run.clock.t == 10 + 60 + 5
    sent = next(p for op, p in fake.calls if op == "change_resource_record_sets")
    assert sent["HostedZoneId"] == "Z123"
    assert [c["Action"] for c in sent["ChangeBatch"]["Changes"]] == ["DELETE", "CREATE"]
    assert sent["ChangeBatch"]["Changes"][1]["ResourceRecordSet"]["ResourceRecords"] == [
        {"Value": "10.0.0.6"}]
    assert "TTL + 5s" in (run.record("wait").detail or "")


def test_route53_register_waits_insync_only() -> None:
    run = Run({"route53": route53(["INSYNC"])})
    run.restore(Route53Entry(kind="route53", zone="example.internal.", name="web.example.internal.",
                             routing="round_robin"))
    assert run.clock.t == 0  # the address is already a value: nothing to change, nothing to wait


class FakeHaproxyHost:
    """`show stat` answers with `scur` current sessions; `set` commands answer nothing."""

    name = "local"

    def __init__(self, sessions: list[int]) -> None:
        self.sessions, self.commands = iter(sessions), []  # type: ignore[var-annotated]
        self.last = 0

    def run(self, command: str, **kwargs: Any) -> CommandResult:
        self.commands.append(command)
        if "show stat" in command:
            self.last = next(self.sessions, self.last)
            out = f"# pxname,svname,qcur,qmax,scur,smax\nweb,web1,0,0,{self.last},3\n"
            return CommandResult(self.name, command, 0, out, "")
        return CommandResult(self.name, command, 0, "\n", "")

    def close(self) -> None:
        pass


def test_haproxy_drain_ends_at_zero_sessions_or_its_timeout() -> None:
    entry = HaproxyEntry(kind="haproxy", socket="/run/haproxy/admin.sock", backend="web",
                         server="web1", timeout=12)
    host = FakeHaproxyHost([3, 2, 0])
    run = Run({}, host)
    run.drain(entry)
    assert run.clock.t == 2
    assert host.commands[-1].startswith("echo 'set server web/web1 state maint'")

    host = FakeHaproxyHost([3])
    run = Run({}, host)
    run.drain(entry)
    assert run.clock.t == 12  # the member's timeout
    assert "3 session(s) still open" in (run.record("wait").detail or "")
