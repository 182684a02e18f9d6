"""IMDSv2: this instance's id, private address and availability zone.

A session token first (PUT /latest/api/token), then GETs carrying it. The endpoint is
http://169.254.169.254 unless RESYNC_IMDS_ENDPOINT (or boto's AWS_EC2_METADATA_SERVICE_ENDPOINT)
says otherwise: tests point it at a stand-in on 127.0.0.1. Timeouts are short, so that off EC2
(or with IMDS disabled, or a hop limit of 1 inside a container) the answer is a clear error at
once, not a hang.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass

from resync.actions.external import External, ExternalContext, Outcome
from resync.actions.types import Template
from resync.lb.base import LOCAL_HOST, Target
from resync.model.errors import BadInputError
from resync.model.keys import Key

ENDPOINT_ENV = "RESYNC_IMDS_ENDPOINT"
DEFAULT_ENDPOINT = "http://169.254.169.254"
TOKEN_TTL = 300
PATHS = {"instance_id": "instance-id", "address": "local-ipv4",
         "availability_zone": "placement/availability-zone"}


class ImdsError(BadInputError):
    """IMDS did not give the identity (exit 2: nothing was changed)."""

    hint = ("Off EC2, give the instance with --instance ID [--address IP] or `self:` in lb.yaml; "
            "in a container, the instance's metadata hop limit must be 2 or more")


@dataclass(frozen=True)
class Identity:
    instance_id: str
    address: str
    availability_zone: str


def endpoint() -> str:
    chosen = (os.environ.get(ENDPOINT_ENV) or os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
              or DEFAULT_ENDPOINT)
    return chosen.rstrip("/")


def _request(req: urllib.request.Request, timeout: float, base: str) -> str:
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            return str(answer.read(4096).decode().strip())
    except urllib.error.HTTPError as exc:
        raise ImdsError(f"IMDS at {base}: {req.get_method()} {req.full_url} answered "
                        f"{exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ImdsError(f"IMDS at {base} did not answer ({reason}): not on EC2, or IMDS "
                        "disabled") from None


def read_identity(base: str | None = None, timeout: float = 2.0) -> Identity:
    """The instance's identity from IMDSv2 (token, then one GET per value)."""
    base = (base or endpoint()).rstrip("/")
    put = urllib.request.Request(f"{base}/latest/api/token", method="PUT",
                                 headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL)})
    token = _request(put, timeout, base)
    values = {}
    for name, path in PATHS.items():
        get = urllib.request.Request(f"{base}/latest/meta-data/{path}",
                                     headers={"X-aws-ec2-metadata-token": token})
        values[name] = _request(get, timeout, base)
        if not values[name]:
            raise ImdsError(f"IMDS at {base}: {path} is empty")
    return Identity(**values)


@dataclass(frozen=True, kw_only=True)
class ImdsIdentity(External):
    """Read this instance's identity; captured as `<prefix>.instance_id`, `.address`, ..."""

    base: str
    prefix: str = "self"
    timeout: float = 2.0
    host: str = LOCAL_HOST
    kind = "imds"

    def template(self) -> Template:
        gets = ", ".join(PATHS.values())
        keys = ", ".join(f"{self.prefix}.{n}" for n in PATHS)
        return (f"IMDSv2 {self.base}: PUT /latest/api/token, GET /latest/meta-data/{{{gets}}} "
                f"-> {keys}",)

    def perform(self, ctx: ExternalContext) -> Outcome:
        found = read_identity(self.base, self.timeout)
        values = {Key(f"{self.prefix}.{n}"): getattr(found, n) for n in PATHS}
        return Outcome(detail=f"{found.instance_id} {found.address} {found.availability_zone}",
                       values=values)

    @property
    def target(self) -> Target:
        return Target.captured(self.prefix)
