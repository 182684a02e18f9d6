"""lb.yaml (v1): who this instance is and which load balancers it belongs to.

The member entries are the same under a runbook host's `lb:` list (`MemberEntry`). Errors name
file, line and field, like the runbook's (both are read by `resync.model.yamlfile`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from resync.model.errors import BadInputError
from resync.model.yamlfile import Lines, Loc, Located, parse_yaml_model, read_text

INSTANCE_ID = "{instance_id}"
MEMBER_KINDS = ("elb", "target_group", "route53", "haproxy")
_LABEL = re.compile(r"(\*|[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)")


class LbConfigError(BadInputError):
    """lb.yaml is malformed (exit 2): nothing was touched."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path, self.problems = path, problems
        super().__init__("invalid load-balancer file:\n  " + "\n  ".join(problems))


def _dns_name(value: str) -> str:
    """A DNS name (a final '.' allowed); `{instance_id}` may stand for a part of a label."""
    if "{" in value.replace(INSTANCE_ID, ""):
        raise ValueError(f"{value!r}: only {INSTANCE_ID} can be filled in")
    labels = value.replace(INSTANCE_ID, "i-0").removesuffix(".").split(".")
    if len(value) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{value!r} is not a DNS name")
    return value


def _ip(value: str) -> str:
    ipaddress.IPv4Address(value)  # A records: IPv4
    return value


DnsName = Annotated[str, AfterValidator(_dns_name)]
IPv4 = Annotated[str, AfterValidator(_ip)]
Word = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]+$", max_length=128)]  # goes into commands
InstanceId = Annotated[str, Field(pattern=r"^i-[0-9a-f]{8,17}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ElbEntry(_Strict):
    """A Classic ELB (register/deregister instances; connection draining)."""

    kind: Literal["elb"]
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,32}$")]


class TargetGroupEntry(_Strict):
    """An ELBv2 target group (instance or IP targets; deregistration delay)."""

    kind: Literal["target_group"]
    arn: Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:"
                                      r"targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]+$")]
    port: int | None = Field(default=None, ge=1, le=65535)  # default: the group's port


class Route53Entry(_Strict):
    """An A record: the instance's own, one value of a shared one, a weighted or a multivalue set."""

    kind: Literal["route53"]
    zone: Annotated[str, Field(min_length=1, max_length=255)]  # zone name (with a dot) or zone id
    name: DnsName
    ttl: int = Field(default=60, ge=0, le=2147483647)
    routing: Literal["own_record", "round_robin", "weighted", "multivalue"] = "own_record"
    weight: int | None = Field(default=None, ge=0, le=255)
    set_identifier: Annotated[str, Field(min_length=1, max_length=128)] | None = None

    @model_validator(mode="after")
    def _routing_fields(self) -> Route53Entry:
        if self.routing == "weighted" and self.weight is None:
            raise ValueError("a weighted record needs its 'weight' (restored on register)")
        if self.routing != "weighted" and self.weight is not None:
            raise ValueError(f"'weight' is for routing: weighted, not {self.routing}")
        if self.routing in ("own_record", "round_robin") and self.set_identifier is not None:
            raise ValueError(f"'set_identifier' is for weighted or multivalue records, not "
                             f"{self.routing}")
        if "{" in (self.set_identifier or "").replace(INSTANCE_ID, ""):
            raise ValueError(f"set_identifier: only {INSTANCE_ID} can be filled in")
        return self

    @property
    def zone_is_id(self) -> bool:
        return "." not in self.zone

    @property
    def identifier(self) -> str | None:
        """The record set's SetIdentifier (weighted/multivalue: the instance id by default)."""
        if self.routing in ("weighted", "multivalue"):
            return self.set_identifier or INSTANCE_ID
        return None


class HaproxyEntry(_Strict):
    """A server of an HAProxy backend, through the runtime API on its admin socket."""

    kind: Literal["haproxy"]
    socket: Annotated[str, Field(pattern=r"^/[^\s'\"]*$")]
    host: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)] | None = None
    backend: Word
    server: Word
    timeout: float = Field(default=300.0, gt=0)  # seconds for its sessions to end, or to come up


MemberEntry = Annotated[ElbEntry | TargetGroupEntry | Route53Entry | HaproxyEntry,
                        Field(discriminator="kind")]


class SelfSettings(_Strict):
    """This instance, given instead of read from IMDS."""

    instance_id: InstanceId
    address: IPv4 | None = None  # else asked of EC2 when a record needs it
    availability_zone: str | None = None


class AwsSettings(_Strict):
    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")] | None = None


class LbConfig(_Strict):
    version: Literal[1]
    self_: SelfSettings | None = Field(default=None, alias="self")  # None: read from IMDS
    aws: AwsSettings = AwsSettings()
    members: tuple[MemberEntry, ...] = Field(min_length=1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("self_", mode="before")
    @classmethod
    def _imds(cls, value: Any) -> Any:
        if value == "imds":
            return None
        if not isinstance(value, dict):
            raise ValueError("'self' is 'imds' or {instance_id, address, availability_zone}")
        return value


def member_loc(loc: Sequence[str | int]) -> tuple[str | int, ...]:
    """A pydantic error location without the union's tags (`members.0.elb.name` ->
    `members.0.name`), so that it maps to a line of the file."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, str) and (part in MEMBER_KINDS or part.startswith("function-")) \
                and out and isinstance(out[-1], int):
            continue
        out.append(part)
    return tuple(out)


def error_message(err: Any) -> str:
    """A pydantic error in the words of the runbook's errors."""
    kind, msg = err["type"], str(err["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return f"'kind' must be one of: {', '.join(MEMBER_KINDS)}"
    return msg


@dataclass(frozen=True)
class LoadedLbConfig(Located):
    path: Path
    model: LbConfig
    lines: Lines


def _problem(err: ErrorDetails, errors: list[ErrorDetails]) -> tuple[Loc, str] | None:
    loc = tuple("self" if p == "self_" else p for p in member_loc(err["loc"]))
    if err["type"] == "too_short" and loc == ("members",) and any(
            len(e["loc"]) > 1 and e["loc"][0] == "members" for e in errors):
        return None  # the members' own errors say why none was valid
    return loc, error_message(err)


def parse_lb_config(text: str, path: Path) -> LoadedLbConfig:
    model, lines = parse_yaml_model(
        text, path, LbConfig, error=LbConfigError, problem=_problem,
        not_a_mapping="lb.yaml is a YAML mapping (version, self, aws, members)")
    return LoadedLbConfig(path, model, lines)


def load_lb_config(path: str | Path) -> LoadedLbConfig:
    p = Path(path)
    return parse_lb_config(read_text(p, LbConfigError), p)
