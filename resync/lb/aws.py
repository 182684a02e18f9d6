"""One AWS API call as a journaled leaf, and the boto3 client factory of the lb commands.

boto3 and botocore are imported only inside the functions that call AWS: `resync --help` and
`resync plan` never pay for them. Credentials, endpoints (AWS_ENDPOINT_URL, per-service
variables) and the region come from boto3's own chain; throttling is retried by botocore's
standard retry mode. Errors become ResyncErrors naming the call, so the executor journals them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from resync.actions.external import External, ExternalContext, Outcome
from resync.actions.types import Captured, Template
from resync.lb.params import Params, call_template, resolve_params
from resync.model.errors import ResyncError

AWS_HOST = "aws"  # the `host` of AWS leaves in the journal
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d+")


class AwsCallError(ResyncError):
    """An AWS API call failed; `code` is AWS's error code (None: no answer, no credentials)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


def region_of_zone(zone: str) -> str | None:
    """us-east-1a -> us-east-1 (also Local Zones: us-west-2-lax-1a -> us-west-2)."""
    found = _REGION.match(zone)
    return found.group(0) if found else None


def aws_call(ctx: ExternalContext, service: str, operation: str, **params: Any) -> Any:
    """Call one operation; botocore's errors become AwsCallError naming the call."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    what = f"{service} {operation}"
    try:
        return getattr(ctx.aws(service), operation)(**params)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "")) or None
        raise AwsCallError(f"{what}: {code}: {err.get('Message', exc)}", code) from None
    except NoRegionError:
        raise AwsCallError(f"{what}: no AWS region: set aws.region in lb.yaml, AWS_REGION or "
                           "AWS_DEFAULT_REGION, or a profile's region") from None
    except NoCredentialsError:
        raise AwsCallError(f"{what}: no AWS credentials found (instance role, AWS_PROFILE, "
                           "environment, ~/.aws/credentials)") from None
    except BotoCoreError as exc:
        raise AwsCallError(f"{what}: {exc}") from None


def make_client_factory(region: str | None,
                        fallback_region: Callable[[], str | None] | None = None,
                        ) -> Callable[[str], Any]:
    """boto3 clients with standard retries; the region: lb.yaml's, else boto3's own resolution
    (AWS_REGION, profile), else `fallback_region()` (the instance's zone read from IMDS)."""

    def factory(service: str) -> Any:
        import boto3
        from botocore.config import Config

        session = boto3.session.Session()
        chosen = region or session.region_name or (fallback_region() if fallback_region else None)
        config = Config(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=10,
                        read_timeout=30)
        return session.client(service, region_name=chosen, config=config)  # type: ignore[call-overload]

    return factory


@dataclass(frozen=True, kw_only=True)
class AwsCall(External):
    """One API call: its text is `service operation Param=value ...`, exactly what is sent.

    Subclasses read the answer in `interpret` (what to capture, what it saw) and may accept
    some error codes as answers (`accept`)."""

    service: str
    operation: str
    params: Params = ()
    accept: tuple[str, ...] = ()  # error codes that are an answer, not a failure
    note: str = ""  # appended to the text: what the answer is used for
    host: str = AWS_HOST
    kind = "aws"

    def template(self) -> Template:
        base = call_template(self.service, self.operation, self.params)
        return (*base, f" ({self.note})") if self.note else base

    def arguments(self, captured: Captured) -> dict[str, Any]:
        return resolve_params(self.params, captured)

    def perform(self, ctx: ExternalContext) -> Outcome:
        try:
            answer = aws_call(ctx, self.service, self.operation, **self.arguments(ctx.captured))
        except AwsCallError as exc:
            if exc.code in self.accept:
                return self.interpret_error(exc.code or "", str(exc), ctx)
            raise
        return self.interpret(answer, ctx)

    def interpret(self, answer: Mapping[str, Any], ctx: ExternalContext) -> Outcome:
        return Outcome(detail="done")

    def interpret_error(self, code: str, message: str, ctx: ExternalContext) -> Outcome:
        return Outcome(detail=message)
