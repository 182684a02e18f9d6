"""`resync lb` against real peers: moto in server mode (EC2, Classic ELB, ELBv2, Route53, Auto
Scaling), an IMDSv2 stand-in, a real haproxy. The commands run as `python -m resync lb ...`;
their effect is checked with boto3 (or haproxy's runtime API).

Where moto differs from AWS, the tests write around it, never the product:
- moto completes drains at once (ELBv2 targets go straight to `unused`, Classic instances to
  `Unknown`) and Route53 changes are INSYNC at once: the waits' deadlines (the balancers' own
  timeouts) are tested with an injected clock in tests/unit/test_lb_waits.py; here the drains
  end at the first look. Route53 TTLs are 1 s, so the TTL waits are short.
- moto's Classic `instance_deregistered` waiter never succeeds (moto answers `Unknown` where AWS
  answers OutOfService / InvalidInstance): resync uses no boto3 waiter.
- moto raises InvalidTarget when an unknown target is deregistered: each test deregisters only
  what it registered.
- moto refuses a CREATE equal to one in the zone's change history ("already exists") although the
  same batch DELETEd the record first (AWS applies a batch in order): the shared round-robin
  record is made with UPSERT in the setup, and each test runs one register/deregister cycle.
- moto's DELETE of a set with a SetIdentifier deletes every set with that identifier, whatever
  its name (AWS: only that name's): the weighted and the multivalue record of one instance get
  different identifiers.
- moto omits a Classic ELB's HealthCheck until one is configured: the setup configures it.
- moto has no CompleteLifecycleAction (HTTP 500): `lifecycle_standin` answers it (and records
  it), every other Auto Scaling call reaches moto.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aws import (  # the fixtures are used by name
    OTHER_IP,
    Aws,
    Imds,
    Lifecycle,
    aws_fixture,  # noqa: F401
    elb_instances,
    environ,
    fleet,
    imds_fixture,  # noqa: F401
    lifecycle_standin_fixture,  # noqa: F401
    moto_endpoint_fixture,  # noqa: F401
    record_sets,
    targets,
    values,
)
from haproxy_peer import Haproxy, haproxy_fixture  # noqa: F401

from resync.lb.base import Target
from resync.lb.instance import instance_by_address
from resync.lb.members import drain_actions, members_for, restore_actions
from resync.model.lb import HaproxyEntry, Route53Entry, TargetGroupEntry
from resync.run.executor import Executor
from resync.run.journal import MemoryJournal
from resync.testing.fakes import FakeClock
from resync.transport.local import LocalHost


def lb(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "resync", "lb", *args], capture_output=True,
                          text=True, timeout=120, env=environ(), cwd=tmp_path)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "lb.yaml"
    path.write_text(text)
    return str(path)


def test_register_status_deregister_an_instance(aws: Aws, tmp_path: Path) -> None:
    f = fleet(aws)
    iid, ip = f.instances[0]["InstanceId"], f.instances[0]["PrivateIpAddress"]
    config = write(tmp_path, f"""version: 1
members:
  - {{kind: elb, name: web-elb}}
  - {{kind: target_group, arn: "{f.tg}"}}
  - {{kind: target_group, arn: "{f.tg_ip}", port: 8080}}
  - {{kind: route53, zone: example.internal., name: "{{instance_id}}.web.example.internal.", ttl: 1}}
  - {{kind: route53, zone: example.internal., name: web.example.internal., ttl: 1, routing: round_robin}}
""")
    own = f"{iid}.web.example.internal."

    # --instance without --address: the records need it, so EC2 is asked
    done = lb(tmp_path, "register", "--config", config, "--instance", iid)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ec2 describe_instances InstanceIds=[{iid}]" in done.stdout
    assert (f"elb register_instances_with_load_balancer LoadBalancerName=web-elb "
            f"Instances=[{{InstanceId: {iid}}}]") in done.stdout
    assert f"elbv2 register_targets TargetGroupArn={f.tg} Targets=[{{Id: {iid}, Port: 80}}]" \
        in done.stdout
    assert elb_instances(aws) == [iid]
    assert targets(aws, f.tg) == [(iid, 80)]
    assert targets(aws, f.tg_ip) == [(ip, 8080)]  # an IP target group: the address, its port
    assert values(record_sets(aws, f.zone_id, own)) == [ip]
    assert values(record_sets(aws, f.zone_id, "web.example.internal.")) == sorted([OTHER_IP, ip])

    status = lb(tmp_path, "status", "--config", config, "--instance", iid, "--address", ip)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "describe_instances" not in status.stdout  # the address was given
    assert status.stdout.count("in_service") == 5, status.stdout

    done = lb(tmp_path, "deregister", "--config", config, "--instance", iid)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (f"elbv2 deregister_targets TargetGroupArn={f.tg} Targets=[{{Id: {iid}, Port: 80}}]"
            in done.stdout)
    assert "ConnectionDraining: the drain's timeout" in done.stdout
    assert "connection draining enabled, timeout 7s" in done.stdout
    assert "deregistration delay 9s" in done.stdout
    assert "then wait out the record's TTL 1s + 5s" in done.stdout
    assert "deregistered and drained from every member" in done.stdout
    assert elb_instances(aws) == []
    assert targets(aws, f.tg) == [] and targets(aws, f.tg_ip) == []
    assert record_sets(aws, f.zone_id, own) == []
    assert values(record_sets(aws, f.zone_id, "web.example.internal.")) == [OTHER_IP]


def test_self_reads_imds_and_derives_the_region(aws: Aws, imds: Any, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """No region anywhere but the zone IMDS gives (us-east-1a): the AWS calls go to us-east-1."""
    f = fleet(aws)
    inst = f.instances[1]
    iid, ip = inst["InstanceId"], inst["PrivateIpAddress"]
    stand_in: Imds = imds(iid, ip, "us-east-1a")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    config = write(tmp_path, """version: 1
self: imds
members:
  - {kind: elb, name: web-elb}
  - {kind: route53, zone: example.internal., name: w.example.internal., ttl: 1, routing: weighted, weight: 10}
  - {kind: route53, zone: example.internal., name: m.example.internal., ttl: 1, routing: multivalue,
     set_identifier: "m-{instance_id}"}
""")
    done = lb(tmp_path, "register", "--config", config, "--self")
    assert done.returncode == 0, done.stdout + done.stderr
    methods = [(m, p) for m, p, _ in stand_in.requests]
    assert methods[0] == ("PUT", "/latest/api/token")
    assert {p for m, p in methods[1:]} == {"/latest/meta-data/instance-id",
                                           "/latest/meta-data/local-ipv4",
                                           "/latest/meta-data/placement/availability-zone"}
    tokens = [h.get("x-aws-ec2-metadata-token") for m, _, h in stand_in.requests if m == "GET"]
    assert tokens == [stand_in.token] * 3, stand_in.requests
    assert elb_instances(aws) == [iid]
    (weighted,) = record_sets(aws, f.zone_id, "w.example.internal.")
    assert (weighted["SetIdentifier"], weighted["Weight"], values([weighted])) == (iid, 10, [ip])
    (multi,) = record_sets(aws, f.zone_id, "m.example.internal.")
    assert (multi["SetIdentifier"], multi["MultiValueAnswer"], values([multi])) == \
        (f"m-{iid}", True, [ip])

    done = lb(tmp_path, "deregister", "--config", config, "--self")
    assert done.returncode == 0, done.stdout + done.stderr
    (weighted,) = record_sets(aws, f.zone_id, "w.example.internal.")
    assert weighted["Weight"] == 0  # drained, kept
    assert record_sets(aws, f.zone_id, "m.example.internal.") == []
    assert elb_instances(aws) == []

    done = lb(tmp_path, "register", "--config", config, "--self")
    assert done.returncode == 0, done.stdout + done.stderr
    (weighted,) = record_sets(aws, f.zone_id, "w.example.internal.")
    assert weighted["Weight"] == 10


def test_self_without_imds_is_a_clear_error(aws: Aws, tmp_path: Path) -> None:
    """The `aws` fixture points RESYNC_IMDS_ENDPOINT at a closed port on 127.0.0.1."""
    config = write(tmp_path, "version: 1\nmembers: [{kind: elb, name: web-elb}]\n")
    started = time.monotonic()
    done = lb(tmp_path, "status", "--config", config, "--self")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "IMDS at http://127.0.0.1:" in done.stderr and "did not answer" in done.stderr
    assert "--instance ID" in done.stderr  # the hint
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("group", [None, "web-asg"])
def test_deregister_then_complete_the_lifecycle_action(aws: Aws, lifecycle_standin: Lifecycle,
                                                      tmp_path: Path, group: str | None) -> None:
    ec2, asg, elbv2 = aws.client("ec2"), aws.client("autoscaling"), aws.client("elbv2")
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    ec2.create_launch_template(LaunchTemplateName="web", LaunchTemplateData={
        "ImageId": ami, "InstanceType": "t3.micro"})
    asg.create_auto_scaling_group(AutoScalingGroupName="web-asg", MinSize=1, MaxSize=1,
                                  DesiredCapacity=1, AvailabilityZones=["us-east-1a"],
                                  LaunchTemplate={"LaunchTemplateName": "web"})
    asg.put_lifecycle_hook(AutoScalingGroupName="web-asg", LifecycleHookName="drain",
                           LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
                           HeartbeatTimeout=900, DefaultResult="CONTINUE")
    iid = asg.describe_auto_scaling_groups(
        AutoScalingGroupNames=["web-asg"])["AutoScalingGroups"][0]["Instances"][0]["InstanceId"]
    tg = elbv2.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId=vpc,
                                   TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    config = write(tmp_path, f'version: 1\nmembers: [{{kind: target_group, arn: "{tg}"}}]\n')
    assert lb(tmp_path, "register", "--config", config, "--instance", iid).returncode == 0
    lifecycle_standin.watch = lambda form: ",".join(t for t, _ in targets(aws, tg)) or "none"

    extra = ["--asg", group] if group else []
    done = lb(tmp_path, "deregister", "--config", config, "--instance", iid,
              "--complete-lifecycle", "drain", *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    (call,) = lifecycle_standin.completed
    assert {k: call[k] for k in ("LifecycleHookName", "AutoScalingGroupName", "InstanceId",
                                 "LifecycleActionResult")} == {
        "LifecycleHookName": "drain", "AutoScalingGroupName": "web-asg", "InstanceId": iid,
        "LifecycleActionResult": "CONTINUE"}
    assert call["seen_at_call"] == "none"  # completed only once the target was drained
    assert (f"autoscaling complete_lifecycle_action LifecycleHookName=drain "
            f"AutoScalingGroupName=web-asg InstanceId={iid} LifecycleActionResult=CONTINUE"
            in done.stdout)
    assert ("describe_auto_scaling_instances" in done.stdout) is (group is None)


def test_a_runbook_hosts_members_drained_and_restored_in_process(aws: Aws) -> None:
    """What a run plan does for a database host known by its address: find the instance, then
    drain (before its server stops) and restore (after it is verified), journaled."""
    f = fleet(aws)
    iid, ip = f.instances[0]["InstanceId"], f.instances[0]["PrivateIpAddress"]
    entries = [TargetGroupEntry(kind="target_group", arn=f.tg),
               Route53Entry(kind="route53", zone="example.internal.", name="db.example.internal.",
                            ttl=1, routing="round_robin")]
    members = members_for(entries, Target.captured("db2"), "lb.db2", default_host="db2")
    exe = Executor(MemoryJournal("run"), hosts=LocalHost, connect=lambda name: None,  # type: ignore[arg-type,return-value]
                   clock=FakeClock())
    exe.run([instance_by_address(ip, "db2"), *restore_actions(members)])
    assert exe.captured["db2.instance_id"] == iid
    assert targets(aws, f.tg) == [(iid, 80)]
    assert values(record_sets(aws, f.zone_id, "db.example.internal.")) == [ip]
    exe.run(drain_actions(members), prefix="d.")
    assert targets(aws, f.tg) == []
    assert record_sets(aws, f.zone_id, "db.example.internal.") == []
    texts = [r.text for r in exe.journal.data.commands]
    assert f"elbv2 deregister_targets TargetGroupArn={f.tg} Targets=[{{Id: {iid}, Port: 80}}]" \
        in texts


# -- HAProxy -----------------------------------------------------------------------------------


def haproxy_state(h: Haproxy, server: str) -> tuple[int, int]:
    """(srv_op_state, srv_admin_state) from `show servers state web`."""
    for line in h.command("show servers state web").splitlines():
        fields = line.split()
        if len(fields) > 6 and fields[1] == "web" and fields[3] == server:
            return int(fields[5]), int(fields[6])
    raise AssertionError(f"no {server} in backend web")


def test_haproxy_member_by_cli(haproxy: Haproxy, tmp_path: Path) -> None:
    config = write(tmp_path, f"""version: 1
self: {{instance_id: i-0123456789abcdef0}}
members:
  - {{kind: haproxy, socket: {haproxy.socket}, backend: web, server: web1, timeout: 5}}
""")
    done = lb(tmp_path, "deregister", "--config", config, "--self")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"echo 'set server web/web1 state drain' | socat stdio UNIX-CONNECT:{haproxy.socket}" \
        in done.stdout
    assert haproxy_state(haproxy, "web1")[1] & 0x01  # maint after the drain
    status = lb(tmp_path, "status", "--config", config, "--self")
    assert status.returncode == 0 and " maint " in status.stdout, status.stdout

    done = lb(tmp_path, "register", "--config", config, "--self")
    assert done.returncode == 0, done.stdout + done.stderr
    assert haproxy_state(haproxy, "web1") == (2, 0)
    with urllib.request.urlopen(haproxy.frontend, timeout=10) as answer:
        assert answer.status == 200

    bad = write(tmp_path, config_text := Path(config).read_text().replace("web1", "web9"))
    assert "web9" in config_text
    done = lb(tmp_path, "deregister", "--config", bad, "--self")
    assert done.returncode == 1
    assert "No such server." in done.stderr


def test_haproxy_drain_waits_for_current_sessions_up_to_its_timeout(haproxy: Haproxy) -> None:
    """In process, with an injected clock: a held request keeps web1's scur at 1, so the drain
    waits out the member's 30 s timeout (and no longer); without a session it ends at once."""
    haproxy.command("set server web/web2 state maint")  # every request goes to web1
    haproxy.backends["web1"].hold()
    client = threading.Thread(target=lambda: urllib.request.urlopen(haproxy.frontend, timeout=30)
                              .read())
    client.start()
    deadline = time.monotonic() + 10
    while "web,web1,0,0,1," not in haproxy.command("show stat"):
        assert time.monotonic() < deadline, "the held request did not reach web1"
        time.sleep(0.05)

    entry = HaproxyEntry(kind="haproxy", socket=str(haproxy.socket), backend="web", server="web1",
                         timeout=30)
    members = members_for([entry], Target(), "lb")
    clock, seen = FakeClock(), []
    exe = Executor(MemoryJournal("lb"), hosts=LocalHost, connect=lambda name: None,  # type: ignore[arg-type,return-value]
                   clock=clock, progress=lambda d, t, label: seen.append((d, t, label)))
    exe.run(drain_actions(members))
    waited = next(r for r in exe.journal.data.commands if r.kind == "wait")
    assert 30 <= clock.t < 31
    assert "1 session(s)" in (waited.detail or "") and "timeout (30s)" in (waited.detail or "")
    assert seen[-1][:2] == (30, 30)
    assert haproxy_state(haproxy, "web1")[1] & 0x01  # then maint

    haproxy.backends["web1"].release()
    client.join(10)
    exe.run(restore_actions(members), prefix="r.")
    assert haproxy_state(haproxy, "web1") == (2, 0)
    before = clock.t
    exe.run(drain_actions(members), prefix="d.")
    assert clock.t == before  # no session: drained at the first look
