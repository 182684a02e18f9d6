"""The runbook (v1): a YAML file validated into typed models, with errors naming file, line and field."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    WrapValidator,
    model_validator,
)
from pydantic_core import ErrorDetails

from resync.model.base import HostAddress, Identifier
from resync.model.base import Strict as _Strict
from resync.model.ebs import EbsSettings
from resync.model.errors import RunbookError
from resync.model.lb import MemberEntry, error_message, member_loc
from resync.model.maintenance import MaintenanceSettings, _with_host_names
from resync.model.notify import NotifySettings
from resync.model.secrets import Secret, secret_from_env
from resync.model.window import WindowSettings
from resync.model.yamlfile import Lines, Loc, Located, parse_yaml_model, read_text, where


class SSHSettings(_Strict):
    host: str | None = None  # looked up in ~/.ssh/config; defaults to the host's address
    user: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    key_file: str | None = None
    known_hosts: str | None = None
    accept_unknown_host_key: bool = False  # explicit opt-out of host key verification
    sudo: bool = True  # run privileged commands (service, datadir moves) through sudo -n


class TLSSettings(_Strict):
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify_identity: bool = False


class MySQLSettings(_Strict):
    host: HostAddress | None = None  # defaults to the host's address
    port: int = Field(default=3306, ge=1, le=65535)
    user: str = "root"
    password_env: str | None = None
    defaults_file: str | None = None
    socket: str | None = None
    connect_timeout: float = Field(default=10.0, gt=0)
    tls: TLSSettings | None = None


class ServiceSettings(_Strict):
    start: str
    stop: str
    timeout: float = Field(default=600.0, gt=0)  # seconds a stop (buffer pool flush) or start may take
    # an option file the server reads at start (in an included conf.d, read last): resync writes
    # read_only and skip-slave-start there for the starts it makes, so no client can write before
    # replication is configured; without it, read_only is set right after the server answers
    config_dropin: str | None = None

    @model_validator(mode="after")
    def _absolute_dropin(self) -> ServiceSettings:
        if self.config_dropin is not None and not self.config_dropin.startswith("/"):
            raise ValueError("config_dropin must be an absolute path")
        return self


class HostSettings(_Strict):
    address: HostAddress
    local: bool = False
    ssh: SSHSettings | None = None
    mysql: MySQLSettings = MySQLSettings()
    datadir: str = "/var/lib/mysql"
    owner: str = "mysql:mysql"  # user:group the datadir must belong to
    # required for the donor and the recipient; a web or load-balancer host has none
    service: ServiceSettings | None = None
    # load-balancer memberships (lb.yaml member entries): drained before its server stops,
    # restored once the data is verified
    lb: tuple[MemberEntry, ...] = ()

    @model_validator(mode="after")
    def _local_or_ssh(self) -> HostSettings:
        if self.local and self.ssh is not None:
            raise ValueError("a host is either 'local: true' or reached by 'ssh', not both")
        if not self.datadir.startswith("/") or self.datadir.rstrip("/") in ("", "/"):
            raise ValueError("datadir must be an absolute path below /")
        return self

    @property
    def mysql_host(self) -> str:
        return self.mysql.host or self.address

    @property
    def db_service(self) -> ServiceSettings:
        """The service commands of a database host (the cross-checks made sure it has them)."""
        if self.service is None:
            raise RunbookError("", [f"host {self.address} has no service: section"])
        return self.service


class ReplicationSettings(_Strict):
    user: str
    password_env: str
    mode: Literal["auto", "gtid", "file_pos"] = "auto"
    healthy_timeout: float = Field(default=120.0, gt=0)  # seconds to wait for threads running, lag 0
    ssl: bool = False


class CopySSHSettings(_Strict):
    """How the donor's OpenSSH client reaches the recipient (copy method `ssh`)."""

    target: str | None = None  # user@host; default: the recipient's ssh user @ its address
    options: tuple[str, ...] = ()  # extra ssh arguments, e.g. ["-i", "/root/.ssh/resync", "-p", "22"]
    cipher: str | None = "aes128-gcm@openssh.com"  # ~430 MB/s here vs ~300 MB/s for the default
    sudo: bool = False  # run the receiving tar through sudo -n on the recipient


class HotCopySettings(_Strict):
    """Methods mariabackup / xtrabackup: the donor's backup tool streams its datadir, serving."""

    parallel: int = Field(default=1, ge=1, le=64)  # --parallel: files read and written at once
    prepare_memory_mb: int = Field(default=256, ge=16)  # --prepare --use-memory on the recipient


class CopySettings(_Strict):
    method: Literal["stream", "ssh", "ebs", "mariabackup", "xtrabackup"] = "stream"
    port: int = Field(default=7878, ge=1, le=65535)
    compress: Literal["none", "zstd", "lz4"] = "none"  # off by default: slower on a fast link
    compress_level: int = Field(default=1, ge=1, le=19)
    compress_threads: int = Field(default=0, ge=0)  # zstd -T: 0 = all cores
    # what the stream's two ends compare besides the byte count: CRC-32 catches a corrupted or
    # truncated stream at 2-3 GB/s a core; sha256 also stands against deliberate tampering
    checksum: Literal["crc32", "sha256"] = "crc32"
    ssh: CopySSHSettings = CopySSHSettings()
    bandwidth_mb_per_s: float | None = Field(default=None, gt=0)  # skip the probe: use this figure
    rate_limit_mb_per_s: float | None = Field(default=None, gt=0)  # cap the copy (pv -L on the donor)
    exclude: tuple[str, ...] = ()  # extra patterns, on top of the per-flavor exclusions
    stall_timeout: float = Field(default=60.0, gt=0)  # seconds without progress before the copy fails
    listen_timeout: float = Field(default=30.0, gt=0)  # seconds the receiver waits for the sender
    ebs: EbsSettings = EbsSettings()  # method ebs: snapshot the donor's volume (ROADMAP)
    hot: HotCopySettings = HotCopySettings()  # methods mariabackup, xtrabackup: a hot copy

    @model_validator(mode="before")
    @classmethod
    def _refuse_partial_copy(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("keep_system_schema"):
            raise ValueError(
                "keep_system_schema is refused: the whole datadir is copied because a partial "
                "copy breaks the server (MariaDB keeps InnoDB system tables such as "
                "mysql.gtid_slave_pos in ibdata1; MySQL 8 keeps its data dictionary in mysql.ibd)")
        if isinstance(data, dict) and "ebs" in data and data.get("method") != "ebs":
            raise ValueError("copy.ebs is set but copy.method is not ebs: set method: ebs, or "
                             "remove the ebs section")
        if isinstance(data, dict) and "hot" in data and data.get("method") not in (
                "mariabackup", "xtrabackup"):
            raise ValueError("copy.hot is set but copy.method is not mariabackup or xtrabackup")
        if isinstance(data, dict) and "keep_system_schema" in data:
            data = {k: v for k, v in data.items() if k != "keep_system_schema"}
        return data


class LockSettings(_Strict):
    lock_wait_timeout: int = Field(default=10, ge=1)  # seconds FLUSH TABLES WITH READ LOCK may wait


def slug(title: str) -> str:
    """A name for files and ids from a title: `Nightly rebuild of db1` -> nightly-rebuild-of-db1."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:64].rstrip("-")


class Runbook(_Strict):
    version: Literal[1]
    # `title` is for people (every output leads with it); `name` is the slug in file names, unit
    # names and ids: given, or derived from the title
    title: str | None = Field(default=None, min_length=1, max_length=200)
    name: Identifier
    hosts: dict[Identifier, HostSettings] = Field(min_length=2)
    donor: str
    recipient: str
    primary_after: str
    replication: ReplicationSettings
    copy_: CopySettings = Field(default=CopySettings(), alias="copy")
    locks: LockSettings = LockSettings()
    # validated knowing the host names above (`on`, `hosts`, `probe.from` must be among them)
    maintenance: Annotated[MaintenanceSettings | None, WrapValidator(_with_host_names)] = None
    window: WindowSettings | None = None  # the approved maintenance window (resync.window)
    notify: NotifySettings | None = None  # who is told how the run goes (resync.notify)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _name_from_title(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("name") is None and isinstance(data.get("title"), str):
            derived = slug(data["title"])
            if derived:
                return {**data, "name": derived}
        return data

    @property
    def label(self) -> str:
        """How outputs name the runbook: its title, with the slug when they differ."""
        return self.name if not self.title else f"{self.title} ({self.name})"

    @property
    def replica_after(self) -> str:
        return self.recipient if self.primary_after == self.donor else self.donor

    def host(self, name: str) -> HostSettings:
        return self.hosts[name]


@dataclass(frozen=True)
class LoadedRunbook(Located):
    """A validated runbook with where it came from (for errors, hashing and resume checks)."""

    path: Path
    model: Runbook
    sha256: str
    lines: Lines

    def secret(self, env_var: str, *loc: str | int) -> Secret:
        """Resolve a password_env at run time; a missing variable is a runbook error (exit 2)."""
        value = secret_from_env(env_var)
        if value is None:
            raise RunbookError(
                str(self.path),
                [f"{self.where(*loc)}: environment variable {env_var} is not set"],
            )
        return value


def _cross_checks(rb: Runbook) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    names = sorted(rb.hosts)
    for role in ("donor", "recipient", "primary_after"):
        value = getattr(rb, role)
        if value not in rb.hosts:
            problems.append(((role,), f"'{value}' is not one of the hosts ({', '.join(names)})"))
    for role in ("donor", "recipient"):
        name = getattr(rb, role)
        if name in rb.hosts and rb.hosts[name].service is None:
            problems.append((("hosts", name, "service"), f"the {role} needs service: "
                             "{start: ..., stop: ...} (the commands that start and stop MySQL)"))
    if rb.donor == rb.recipient:
        problems.append((("recipient",), "donor and recipient are the same host"))
    elif rb.primary_after not in (rb.donor, rb.recipient):
        problems.append((("primary_after",), f"must be the donor ({rb.donor}) or the recipient "
                         f"({rb.recipient})"))
    if rb.donor in rb.hosts and rb.recipient in rb.hosts and rb.donor != rb.recipient:
        d, r = rb.hosts[rb.donor], rb.hosts[rb.recipient]
        if (d.address, d.mysql_host, d.mysql.port) == (r.address, r.mysql_host, r.mysql.port):
            problems.append((("recipient",), "donor and recipient point at the same server "
                             f"({d.mysql_host}:{d.mysql.port})"))
        if d.local and r.local and d.datadir == r.datadir:
            problems.append((("hosts", rb.recipient, "datadir"),
                             "donor and recipient share one datadir on this machine"))
    return problems


def _problem(err: ErrorDetails, errors: list[ErrorDetails]) -> tuple[Loc, str]:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    loc = tuple("copy" if p == "copy_" else p for p in member_loc(loc))
    msg = err["msg"].removeprefix("Value error, ")
    if "literal 'password'" in msg:
        return (*loc, "password"), msg
    if loc == ("name",) and err["type"] in ("string_pattern_mismatch", "string_too_long"):
        return loc, ("a name is a slug for files and ids (letters, digits, '-', '_', '.'; at most "
                     "64): put free text in `title:` (the name is derived from it when left out)")
    if loc == ("name",) and err["type"] == "missing":
        return loc, "a runbook needs a `title:` (free text) or a `name:` (a slug), or both"
    return loc, error_message(err)


def parse_runbook(text: str, path: Path) -> LoadedRunbook:
    model, lines = parse_yaml_model(
        text, path, Runbook, error=RunbookError, problem=_problem,
        not_a_mapping="a runbook is a YAML mapping (version, name, hosts, donor, recipient, ...)")
    problems = [f"{where(path, lines, loc)}: {msg}" for loc, msg in _cross_checks(model)]
    if problems:
        raise RunbookError(str(path), problems)
    return LoadedRunbook(path, model, hashlib.sha256(text.encode()).hexdigest(), lines)


def load_runbook(path: str | Path) -> LoadedRunbook:
    p = Path(path)
    return parse_runbook(read_text(p, RunbookError), p)
