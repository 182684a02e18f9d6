"""Real peers for the load-balancer tests, all on 127.0.0.1.

- `aws`: moto in server mode (ThreadedMotoServer, one per module, reset before each test),
  reached by boto3 through AWS_ENDPOINT_URL, with dummy credentials and a region in the
  environment (set with monkeypatch, so that `python -m resync` subprocesses inherit them).
  IMDS is switched off for boto3 (AWS_EC2_METADATA_DISABLED) and no profile or config file of
  the machine is read: nothing leaves 127.0.0.0/8.
- `imds`: an IMDSv2 stand-in (PUT /latest/api/token, then GETs of instance-id, local-ipv4 and
  placement/availability-zone, answered only with the token); RESYNC_IMDS_ENDPOINT points at it.
- `lifecycle_standin`: moto 5.2.5 has no CompleteLifecycleAction (it answers HTTP 500
  NotImplementedError): a stand-in for the Auto Scaling endpoint (AWS_ENDPOINT_URL_AUTO_SCALING)
  records that call and answers it as AWS does; every other Auto Scaling call goes on to moto.
- `fleet(aws)`: instances, a Classic ELB, two target groups (instance and IP targets) and a
  hosted zone with a shared round-robin record, made with boto3 in moto.
(The real haproxy is in haproxy_peer.py.)
"""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from resync.testing.web import free_port

REGION = "us-east-1"


# -- moto -------------------------------------------------------------------------------------


@dataclass
class Aws:
    endpoint: str

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,  # type: ignore[call-overload]
                            aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module", name="moto_endpoint")
def moto_endpoint_fixture() -> Iterator[str]:
    pytest.importorskip("moto.server")
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(name="aws")
def aws_fixture(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Aws:
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset",
                                                  method="POST"), timeout=10).close()
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("RESYNC_IMDS_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing there
    return Aws(moto_endpoint)


# -- small HTTP stand-ins ---------------------------------------------------------------------


@dataclass
class StandIn:
    url: str
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)


def serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@dataclass
class Imds(StandIn):
    token: str = "stand-in-token-1"
    values: dict[str, str] = field(default_factory=dict)


@pytest.fixture(name="imds")
def imds_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Imds]]:
    """imds(instance_id=..., address=..., availability_zone=...) starts the stand-in."""
    servers: list[ThreadingHTTPServer] = []

    def start(instance_id: str, address: str, availability_zone: str) -> Imds:
        state = Imds(url="", values={"instance-id": instance_id, "local-ipv4": address,
                                     "placement/availability-zone": availability_zone})

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, code: int, body: str) -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                state.requests.append(("PUT", self.path, {k.lower(): v for k, v in self.headers.items()}))
                if self.path == "/latest/api/token" and \
                        self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    self._answer(200, state.token)
                else:
                    self._answer(400, "missing token TTL")

            def do_GET(self) -> None:
                state.requests.append(("GET", self.path, {k.lower(): v for k, v in self.headers.items()}))
                if self.headers.get("X-aws-ec2-metadata-token") != state.token:
                    self._answer(401, "")
                    return
                path = self.path.removeprefix("/latest/meta-data/")
                if path in state.values:
                    self._answer(200, state.values[path])
                else:
                    self._answer(404, "")

        server, state.url = serve(Handler)
        servers.append(server)
        monkeypatch.setenv("RESYNC_IMDS_ENDPOINT", state.url)
        return state

    yield start
    for server in servers:
        server.shutdown()


@dataclass
class Lifecycle(StandIn):
    # each completed action: its parameters, and whether the instance was still a target of
    # `watch_target_group` when the call came (it must be drained by then)
    completed: list[dict[str, str]] = field(default_factory=list)
    watch: Callable[[dict[str, str]], str] | None = None


COMPLETE_ANSWER = ('<CompleteLifecycleActionResponse xmlns="http://autoscaling.amazonaws.com/'
                   'doc/2011-01-01/"><CompleteLifecycleActionResult/><ResponseMetadata>'
                   '<RequestId>stand-in</RequestId></ResponseMetadata>'
                   '</CompleteLifecycleActionResponse>')


@pytest.fixture(name="lifecycle_standin")
def lifecycle_standin_fixture(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lifecycle]:
    state = Lifecycle(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            form = dict(urllib.parse.parse_qsl(body.decode()))
            if form.get("Action") == "CompleteLifecycleAction":
                if state.watch is not None:
                    form["seen_at_call"] = state.watch(form)
                state.completed.append(form)
                code, data, kind = 200, COMPLETE_ANSWER.encode(), "text/xml"
            else:  # everything else: moto
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length")}
                request = urllib.request.Request(aws.endpoint + self.path, data=body,
                                                 headers=headers, method="POST")
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        code, data = answer.status, answer.read()
                        kind = answer.headers.get("Content-Type", "text/xml")
                except urllib.error.HTTPError as exc:  # moto's error answers, passed on
                    code, data = exc.code, exc.read()
                    kind = exc.headers.get("Content-Type", "text/xml")
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server, state.url = serve(Handler)
    monkeypatch.setenv("AWS_ENDPOINT_URL_AUTO_SCALING", state.url)
    yield state
    server.shutdown()


# -- a web fleet in moto -------------------------------------------------------------------

OTHER_IP = "10.0.0.99"  # another web server's value in the shared round-robin record


@dataclass
class Fleet:
    instances: list[dict[str, Any]]
    tg: str
    tg_ip: str
    zone_id: str


def fleet(aws: Aws) -> Fleet:
    ec2, elb, elbv2, r53 = (aws.client(s) for s in ("ec2", "elb", "elbv2", "route53"))
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    instances = ec2.run_instances(ImageId=ami, MinCount=2, MaxCount=2,
                                  InstanceType="t3.micro")["Instances"]
    elb.create_load_balancer(LoadBalancerName="web-elb", AvailabilityZones=["us-east-1a"],
                             Listeners=[{"Protocol": "HTTP", "LoadBalancerPort": 80,
                                         "InstancePort": 80}])
    elb.configure_health_check(LoadBalancerName="web-elb", HealthCheck={
        "Target": "HTTP:80/health", "Interval": 5, "Timeout": 2, "UnhealthyThreshold": 2,
        "HealthyThreshold": 2})
    elb.modify_load_balancer_attributes(LoadBalancerName="web-elb", LoadBalancerAttributes={
        "ConnectionDraining": {"Enabled": True, "Timeout": 7}})
    tgs = [elbv2.create_target_group(Name=n, Protocol="HTTP", Port=80, VpcId=vpc,
                                     TargetType=t)["TargetGroups"][0]["TargetGroupArn"]
           for n, t in (("web", "instance"), ("web-ip", "ip"))]
    for arn in tgs:
        elbv2.modify_target_group_attributes(TargetGroupArn=arn, Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "9"}])
    zone_id = r53.create_hosted_zone(Name="example.internal.",
                                     CallerReference=str(time.time()))["HostedZone"]["Id"]
    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{
        "Action": "UPSERT", "ResourceRecordSet": {
            "Name": "web.example.internal.", "Type": "A", "TTL": 1,
            "ResourceRecords": [{"Value": OTHER_IP}]}}]})
    return Fleet(instances, tgs[0], tgs[1], zone_id)


def record_sets(aws: Aws, zone_id: str, name: str) -> list[dict[str, Any]]:
    sets = aws.client("route53").list_resource_record_sets(HostedZoneId=zone_id)
    return [s for s in sets["ResourceRecordSets"] if s["Name"] == name and s["Type"] == "A"]


def values(sets: list[dict[str, Any]]) -> list[str]:
    return sorted(r["Value"] for s in sets for r in s["ResourceRecords"])


def elb_instances(aws: Aws) -> list[str]:
    found = aws.client("elb").describe_load_balancers(LoadBalancerNames=["web-elb"])
    return [i["InstanceId"] for i in found["LoadBalancerDescriptions"][0]["Instances"]]


def targets(aws: Aws, arn: str) -> list[tuple[str, int]]:
    health = aws.client("elbv2").describe_target_health(TargetGroupArn=arn)
    return [(d["Target"]["Id"], d["Target"]["Port"]) for d in health["TargetHealthDescriptions"]]


def environ() -> dict[str, str]:
    """The environment for `python -m resync` subprocesses (with the fixtures' variables)."""
    return {**os.environ, "COLUMNS": "2000"}
