"""The runbook's `maintenance:` section: how the maintenance page goes on and off, and the probe
that confirms it (ROADMAP "Maintenance page")."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from resync.model.base import Strict as _Strict

# -- the maintenance page (section `maintenance:`) ------------------------------------------------

CONTROLLER = "@controller"  # the machine resync runs on: no runbook host can be named so
MAINTENANCE_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # kind: (required fields, optional fields) besides kind, probe and sudo
    "haproxy_map": (("socket", "map", "key"), ("on",)),
    "haproxy_servers": (("socket", "backend"), ("on",)),
    "flag_file": (("hosts", "path"), ()),
    "command": (("on_cmd", "off_cmd"), ("on", "status_cmd")),
}
# the runbook's host names while its `maintenance:` section is validated (see Runbook.maintenance)
_runbook_hosts: ContextVar[frozenset[str] | None] = ContextVar("resync_runbook_hosts", default=None)


def _known_host(value: str) -> str:
    names = _runbook_hosts.get()
    if names is not None and value not in names:
        raise ValueError(f"'{value}' is not one of the hosts ({', '.join(sorted(names))})")
    return value


def _with_host_names(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    hosts = info.data.get("hosts")
    token = _runbook_hosts.set(frozenset(hosts) if isinstance(hosts, dict) else None)
    try:
        return handler(value)
    finally:
        _runbook_hosts.reset(token)


RunbookHost = Annotated[str, AfterValidator(_known_host)]
# these end up in shell commands and in HAProxy runtime API commands (where a space separates
# words and `;` commands): refused here rather than escaped there
SafePath = Annotated[str, Field(pattern=r"^/[A-Za-z0-9_./@+-]*[A-Za-z0-9_@+-]$")]
MapName = Annotated[str, Field(pattern=r"^(#[0-9]+|[A-Za-z0-9_./@+-]+)$")]
MapKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:@+/-]+$", max_length=255)]
BackendName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]+$", max_length=64)]
Url = Annotated[str, Field(pattern=r"^https?://[^\s'\"\\`$]+$")]


class MaintenanceProbe(_Strict):
    """The HTTP check after each switch: page on -> `url` answers expect_status (with expect_text)
    and health_url 200; page off -> `url` answers 2xx/3xx and is not the page."""

    url: Url
    expect_status: int = Field(default=503, ge=100, le=599)
    expect_text: str | None = Field(default=None, min_length=1)
    health_url: Url | None = None  # must keep answering 200 while the page is on
    from_: RunbookHost | None = Field(default=None, alias="from")  # default: this machine
    timeout: float = Field(default=5.0, gt=0)  # seconds to look until the page is seen (or gone)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _page_distinguishable(self) -> MaintenanceProbe:
        if self.expect_status < 400 and self.expect_text is None:
            raise ValueError(f"expect_status {self.expect_status} needs expect_text: the page "
                             "could not be told from the application")
        return self


class MaintenanceSettings(_Strict):
    """How the maintenance page goes on and off; `on` names the host whose access is used."""

    kind: Literal["haproxy_map", "haproxy_servers", "flag_file", "command"]
    on: RunbookHost | None = Field(default=None, validate_default=True)  # default: this machine
    socket: SafePath | None = Field(default=None, validate_default=True)  # HAProxy admin socket
    map: MapName | None = Field(default=None, validate_default=True)  # as the config names it
    key: MapKey | None = Field(default=None, validate_default=True)  # what the map ACL looks up
    backend: BackendName | None = Field(default=None, validate_default=True)
    hosts: tuple[RunbookHost, ...] | None = Field(default=None, min_length=1,
                                                  validate_default=True)
    path: SafePath | None = Field(default=None, validate_default=True)  # the flag file
    on_cmd: str | None = Field(default=None, min_length=1, validate_default=True)
    off_cmd: str | None = Field(default=None, min_length=1, validate_default=True)
    status_cmd: str | None = Field(default=None, min_length=1, validate_default=True)
    sudo: bool = True  # run the switch with root rights (sudo -n unless root; ssh.sudo applies)
    probe: MaintenanceProbe

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        # YAML 1.1 reads an unquoted `on:` key as the boolean true
        if isinstance(data, dict) and any(k is True for k in data):
            return {"on" if k is True else k: v for k, v in data.items()}
        return data

    @field_validator("on", "socket", "map", "key", "backend", "hosts", "path", "on_cmd",
                     "off_cmd", "status_cmd")
    @classmethod
    def _used_by_kind(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")
        if kind not in MAINTENANCE_FIELDS or info.field_name is None:
            return value  # the kind's own error says it
        required, optional = MAINTENANCE_FIELDS[kind]
        if value is None and info.field_name in required:
            raise ValueError(f"required for kind {kind}")
        if value is not None and info.field_name not in (*required, *optional):
            raise ValueError(f"not used by kind {kind} (it uses {', '.join(required + optional)})")
        if info.field_name == "hosts" and value is not None and len(set(value)) != len(value):
            raise ValueError("a host is listed twice")
        return value

    @property
    def switch_host(self) -> str:
        """Where the switch runs (haproxy, command): the `on` host or this machine."""
        return self.on or CONTROLLER

    @property
    def probe_host(self) -> str:
        return self.probe.from_ or CONTROLLER
