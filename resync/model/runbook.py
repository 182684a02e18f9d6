"""The runbook (v1): a YAML file validated into typed models, with errors naming file, line and field."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
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


TLSMode = Literal["required", "preferred", "off"]


def _yaml_tls_mode(value: Any) -> Any:
    """YAML reads a bare `off` (and `no`) as false, `on`/`yes` as true."""
    return {False: "off", True: "required"}.get(value, value) if isinstance(value, bool) else value


TLSModeSetting = Annotated[TLSMode, BeforeValidator(_yaml_tls_mode)]


def _tls_files_checked(mode: TLSMode, ca: str | None, cert: str | None, key: str | None) -> None:
    if mode == "off" and (ca or cert or key):
        raise ValueError("ca, cert and key are for TLS: remove them, or do not set tls off")
    if bool(cert) != bool(key):
        raise ValueError("a client certificate needs its key: give both cert and key, or neither")
    for path in (ca, cert, key):
        if path is not None and not path.startswith("/"):
            raise ValueError(f"TLS file paths must be absolute: {path}")


class TLSSettings(_Strict):
    """The controller's connection to a host's server. A CA makes it verified (and TLS required:
    a server without TLS cannot be verified); verify_identity also checks the name in it."""

    mode: TLSModeSetting = "preferred"  # required: a plaintext connection is refused
    ca: str | None = None  # paths on the machine resync runs on
    cert: str | None = None
    key: str | None = None
    verify_identity: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> TLSSettings:
        _tls_files_checked(self.mode, self.ca, self.cert, self.key)
        if self.verify_identity and not self.ca:
            raise ValueError("verify_identity checks the name in a certificate the CA verified: "
                             "give ca")
        return self


class MySQLSettings(_Strict):
    host: HostAddress | None = None  # defaults to the host's address
    port: int = Field(default=3306, ge=1, le=65535)
    user: str = "root"
    password_env: str | None = None
    defaults_file: str | None = None
    socket: str | None = None
    connect_timeout: float = Field(default=10.0, gt=0)
    tls: TLSSettings = TLSSettings()


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
    # the replica's connection to its source: required (preflight refuses a source without TLS),
    # preferred (TLS when the source offers it, as detected), off
    tls: TLSModeSetting = "preferred"
    ca: str | None = None  # paths on the replica's host; a CA: the source's certificate verified
    cert: str | None = None
    key: str | None = None
    # TLS not used, MySQL 8: GET_SOURCE_PUBLIC_KEY=1 (the source's RSA key taken unauthenticated)
    allow_rsa_key_exchange: bool = False

    @model_validator(mode="before")
    @classmethod
    def _ssl_alias(cls, data: Any) -> Any:
        """`ssl:` (before issue 14) is the deprecated name of `tls:`: true -> required."""
        if not isinstance(data, dict) or "ssl" not in data:
            return data
        if "tls" in data:
            raise ValueError("replication.ssl is the deprecated name of replication.tls: give "
                             "only tls (required | preferred | off)")
        if not isinstance(data["ssl"], bool):
            raise ValueError("replication.ssl (deprecated: use tls) is true or false")
        rest = {k: v for k, v in data.items() if k != "ssl"}
        return {**rest, "tls": "required" if data["ssl"] else "off"}

    @model_validator(mode="after")
    def _consistent(self) -> ReplicationSettings:
        _tls_files_checked(self.tls, self.ca, self.cert, self.key)
        if self.allow_rsa_key_exchange and self.tls == "required":
            raise ValueError("allow_rsa_key_exchange applies only when TLS is not used (tls: off "
                             "or preferred): with tls required it has no effect, remove it")
        return self


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
    # the recipient's own files (paths relative to its datadir) the copy leaves out and puts back
    # from its old datadir, as it always does with the key files (ca.pem, server-key.pem, ...)
    keep_on_recipient: tuple[str, ...] = ()
    ebs: EbsSettings = EbsSettings()  # method ebs: snapshot the donor's volume (ROADMAP)
    hot: HotCopySettings = HotCopySettings()  # methods mariabackup, xtrabackup: a hot copy

    @model_validator(mode="after")
    def _kept_paths_are_relative(self) -> CopySettings:
        for path in self.keep_on_recipient:
            if path.startswith("/") or any(p in ("", ".", "..") for p in path.split("/")) or any(
                    c in path for c in "*?[]\\\n"):
                raise ValueError(f"keep_on_recipient: '{path}' is not a file path relative to the "
                                 "datadir, such as ssl/server-key.pem (no leading /, no '.', '..' "
                                 "or empty part, no wildcard)")
        return self

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
    title: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[^\r\n]+$")
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
