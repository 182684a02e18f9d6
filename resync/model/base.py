"""What every schema of resync shares: strict models (no unknown keys, no literal passwords),
host names and addresses that are safe in shell commands and SQL."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")  # RFC 1123: 1-63 chars, no edge '-'


def _hostname_or_ip(value: str) -> str:
    """An IPv4/IPv6 address or an RFC 1123 hostname. Addresses end up in shell commands (nc, socat,
    ssh targets) and SQL (CHANGE MASTER TO), so anything else (spaces, `;`, `$(...)`) is refused here
    rather than quoted everywhere."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    name = value.removesuffix(".")  # a fully qualified name may end with the root's dot
    labels = name.split(".")
    # an all-digit last label is a mistyped IP address (10.0.0.256), never a real top-level domain
    if 1 <= len(name) <= 253 and all(_LABEL.fullmatch(label) for label in labels) \
            and not labels[-1].isdigit():
        return value
    raise ValueError(f"{value!r} is neither an IP address nor a hostname (letters, digits and '-' in "
                     "dot-separated labels of at most 63 characters, 253 in all)")


HostAddress = Annotated[str, AfterValidator(_hostname_or_ip)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _refuse_literal_password(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise ValueError(
                "a literal 'password' is not allowed in a runbook: name an environment "
                "variable with 'password_env' (or use a defaults_file)"
            )
        return data
