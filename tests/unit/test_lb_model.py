"""lb.yaml (v1): the contract's example parses; every mistake names file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from resync.model.lb import (
    ElbEntry,
    HaproxyEntry,
    LbConfigError,
    MemberEntry,
    Route53Entry,
    TargetGroupEntry,
    load_lb_config,
    member_loc,
    parse_lb_config,
)

ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"
ROADMAP = f"""version: 1
self: imds
aws: {{region: us-east-1}}
members:
  - {{kind: elb, name: web-elb}}
  - {{kind: target_group, arn: "{ARN}", port: 80}}
  - {{kind: route53, zone: example.internal., name: "{{instance_id}}.web.example.internal.", ttl: 60, routing: own_record}}
  - {{kind: route53, zone: example.internal., name: web.example.internal., ttl: 60, routing: round_robin}}
  - {{kind: haproxy, socket: /run/haproxy/admin.sock, host: lb1, backend: web, server: web1}}
"""  # noqa: E501


def problems(text: str) -> list[str]:
    with pytest.raises(LbConfigError) as caught:
        parse_lb_config(text, Path("lb.yaml"))
    assert caught.value.exit_code == 2
    return caught.value.problems


def test_the_roadmap_example_parses() -> None:
    cfg = parse_lb_config(ROADMAP, Path("lb.yaml")).model
    assert cfg.self_ is None  # imds
    assert cfg.aws.region == "us-east-1"
    assert [type(m) for m in cfg.members] == [ElbEntry, TargetGroupEntry, Route53Entry,
                                              Route53Entry, HaproxyEntry]
    own = cfg.members[2]
    assert isinstance(own, Route53Entry) and own.identifier is None and not own.zone_is_id


def test_defaults_and_explicit_self() -> None:
    cfg = parse_lb_config("version: 1\nself: {instance_id: i-0123456789abcdef0, address: "
                          "10.0.0.5}\nmembers: [{kind: route53, zone: Z0ABC, name: a.example.}]\n",
                          Path("lb.yaml")).model
    assert cfg.self_ is not None and cfg.self_.address == "10.0.0.5"
    (entry,) = cfg.members
    assert isinstance(entry, Route53Entry)
    assert (entry.ttl, entry.routing, entry.zone_is_id) == (60, "own_record", True)
    weighted = Route53Entry(kind="route53", zone="z.", name="w.z.", routing="weighted", weight=5)
    assert weighted.identifier == "{instance_id}"


@pytest.mark.parametrize(("line", "replacement", "expected"), [
    (5, "  - {kind: elb, name: web_elb}", "lb.yaml:5: members.0.name: String should match"),
    (5, "  - {kind: alb, name: web}", "lb.yaml:5: members.0: 'kind' must be one of: elb, "
                                      "target_group, route53, haproxy"),
    (5, "  - {name: web}", "lb.yaml:5: members.0: 'kind' must be one of"),
    (6, '  - {kind: target_group, arn: "arn:aws:nope", port: 80}', "lb.yaml:6: members.1.arn:"),
    (6, f'  - {{kind: target_group, arn: "{ARN}", port: 0}}', "lb.yaml:6: members.1.port: "
                                                             "Input should be greater than"),
    (7, "  - {kind: route53, zone: z., name: 'a b.', routing: own_record}",
     "lb.yaml:7: members.2.name: 'a b.' is not a DNS name"),
    (7, "  - {kind: route53, zone: z., name: '{host}.z.'}", "only {instance_id} can be filled in"),
    (7, "  - {kind: route53, zone: z., name: w.z., routing: weighted}",
     "lb.yaml:7: members.2: a weighted record needs its 'weight'"),
    (7, "  - {kind: route53, zone: z., name: w.z., weight: 3}",
     "'weight' is for routing: weighted, not own_record"),
    (7, "  - {kind: route53, zone: z., name: w.z., routing: round_robin, set_identifier: a}",
     "'set_identifier' is for weighted or multivalue records"),
    (7, "  - {kind: route53, zone: z., name: w.z., routing: geo}", "lb.yaml:7: members.2.routing"),
    (8, "  - {kind: route53, zone: z., name: w.z., ttl: 60, extra: 1}",
     "lb.yaml:8: members.3.extra: unknown field"),
    (9, "  - {kind: haproxy, socket: run/admin.sock, backend: web, server: web1}",
     "lb.yaml:9: members.4.socket"),
    (9, "  - {kind: haproxy, socket: /run/a.sock, backend: 'web; reboot', server: web1}",
     "lb.yaml:9: members.4.backend"),
    (9, "  - {kind: haproxy, socket: /run/a.sock, server: web1}",
     "lb.yaml:9: members.4.backend: required field is missing"),
    (2, "self: metadata", "lb.yaml:2: self: 'self' is 'imds' or {instance_id, address"),
    (2, "self: {instance_id: web1}", "lb.yaml:2: self.instance_id"),
    (2, "self: {instance_id: i-0123456789abcdef0, address: 10.0.0}", "lb.yaml:2: self.address"),
    (3, "aws: {region: Frankfurt}", "lb.yaml:3: aws.region"),
    (1, "version: 2", "lb.yaml:1: version: Input should be 1"),
])
def test_errors_name_file_line_and_field(line: int, replacement: str, expected: str) -> None:
    lines = ROADMAP.splitlines()
    lines[line - 1] = replacement
    found = problems("\n".join(lines) + "\n")
    assert any(expected in p for p in found), found


def test_file_level_errors() -> None:
    assert problems("version: 1\nmembers: []\n") == [
        "lb.yaml:2: members: Tuple should have at least 1 item after validation, not 0"]
    assert problems("- a\n") == ["lb.yaml: lb.yaml is a YAML mapping (version, self, aws, members)"]
    assert problems("version: 1\nversion: 1\nmembers: [{kind: elb, name: x}]\n") == [
        "lb.yaml:2: version: duplicate key"]
    assert "not valid YAML" in problems("version: [1\n")[0]
    with pytest.raises(LbConfigError, match="cannot read"):
        load_lb_config("/nonexistent/lb.yaml")


def test_member_entries_fit_into_another_schema() -> None:
    """A runbook host's `lb:` list holds the same entries; member_loc drops the union's tags."""

    class Host(BaseModel):
        lb: tuple[MemberEntry, ...] = ()

    host = Host.model_validate({"lb": [{"kind": "haproxy", "socket": "/run/a.sock",
                                        "backend": "ro", "server": "db2"}]})
    assert isinstance(host.lb[0], HaproxyEntry)
    with pytest.raises(ValidationError) as caught:
        Host.model_validate({"lb": [{"kind": "elb", "name": "a b"}]})
    (err,) = caught.value.errors()
    assert err["loc"] == ("lb", 0, "elb", "name")
    assert member_loc(err["loc"]) == ("lb", 0, "name")


def test_the_contrib_example_parses() -> None:
    example = Path(__file__).resolve().parents[2] / "contrib" / "lb.yaml.example"
    cfg = load_lb_config(example).model
    assert cfg.self_ is None and len(cfg.members) == 4
