"""`resync lb haproxy-config` against moto (EC2 instances tagged, an ELBv2 target group) and a
real `haproxy -c`: the backend lists the running instances, the file is replaced only when it
changed and haproxy accepts it, then the reload command runs; cron gets exit 0 either way."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from aws import Aws, aws_fixture, moto_endpoint_fixture  # noqa: F401  (fixtures by name)

MAIN_CFG = """global
    log stdout local0
defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend web
    bind 127.0.0.1:8
    default_backend web
"""


def resync(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "resync", "lb", "haproxy-config", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def tagged_fleet(aws: Aws, count: int) -> list[dict[str, str]]:
    ec2 = aws.client("ec2")
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    made = ec2.run_instances(ImageId=ami, MinCount=count, MaxCount=count, InstanceType="t3.micro",
                             TagSpecifications=[{"ResourceType": "instance",
                                                 "Tags": [{"Key": "role", "Value": "web"}]}])
    return made["Instances"]  # type: ignore[no-any-return]


def test_backend_from_tagged_instances_written_only_when_changed(aws: Aws, tmp_path: Path) -> None:
    if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists():
        pytest.skip("haproxy not installed (apt-get install haproxy)")
    instances = tagged_fleet(aws, 2)
    main = tmp_path / "haproxy.cfg"
    main.write_text(MAIN_CFG)
    target, marker = tmp_path / "web-backend.cfg", tmp_path / "reloaded"
    args = ("--from", "tag:role=web", "--backend", "web", "--port", "8080", "--errorfile", "",
            "--write", str(target), "--check-with", str(main), "--reload", f"touch {marker}")

    first = resync(tmp_path, *args)
    assert first.returncode == 0, first.stderr
    text = target.read_text()
    for inst in instances:
        assert f"server {inst['InstanceId']} {inst['PrivateIpAddress']}:8080 check maxconn 100" in text
    assert marker.exists(), "reloaded after the change"

    marker.unlink()
    again = resync(tmp_path, *args)
    assert again.returncode == 0 and "unchanged" in again.stdout
    assert not marker.exists(), "no reload when nothing changed"

    aws.client("ec2").terminate_instances(InstanceIds=[instances[0]["InstanceId"]])
    third = resync(tmp_path, *args)
    assert third.returncode == 0, third.stderr
    assert instances[0]["InstanceId"] not in target.read_text() and marker.exists()


def test_a_backend_haproxy_refuses_is_not_written(aws: Aws, tmp_path: Path) -> None:
    if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists():
        pytest.skip("haproxy not installed (apt-get install haproxy)")
    tagged_fleet(aws, 1)
    target = tmp_path / "web-backend.cfg"
    target.write_text("# the running config\n")
    broken = tmp_path / "broken.cfg"
    broken.write_text("this is not haproxy configuration\n")
    out = resync(tmp_path, "--from", "tag:role=web", "--backend", "web", "--write", str(target),
                 "--check-with", str(broken), "--reload", "false")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "haproxy -c" in out.stderr
    assert target.read_text() == "# the running config\n", "left as it was"
    assert not list(tmp_path.glob(".web-backend.cfg.*")), "no temporary file left"


def test_target_group_members_printed(aws: Aws, tmp_path: Path) -> None:
    instances = tagged_fleet(aws, 2)
    ec2, elbv2 = aws.client("ec2"), aws.client("elbv2")
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    arn = elbv2.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId=vpc,
                                    TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": i["InstanceId"]}
                                                        for i in instances])
    out = resync(tmp_path, "--from", f"target-group:{arn}", "--backend", "web")
    assert out.returncode == 0, out.stderr
    # moto reports registered targets as healthy at once (AWS would run its health checks first)
    for inst in instances:
        assert f"server {inst['InstanceId']} {inst['PrivateIpAddress']}:80" in out.stdout
