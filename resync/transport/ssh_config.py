"""Where and how to reach a host over SSH: ~/.ssh/config resolved as `ssh` would, plus explicit
overrides (an SSHTarget). Pure functions (the config text in, a ResolvedSSH out) so they test without
a network.

The transport layer knows nothing of the runbook: resync.run.connect turns the runbook's ssh settings
into an SSHTarget, so that this package can be used (and tested) with plain values.
"""

from __future__ import annotations

import getpass
import glob
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resync.model.errors import BadInputError

DEFAULT_CONNECT_TIMEOUT = 15.0
DEFAULT_KEEPALIVE = 15


@dataclass(frozen=True)
class SSHTarget:
    """The explicit part of how to reach a host; every None falls back to ~/.ssh/config, then to
    what `ssh` itself would use."""

    host: str | None = None  # the name looked up in the ssh config; None: the host's address
    user: str | None = None
    port: int | None = None
    key_file: str | None = None
    known_hosts: str | None = None
    accept_unknown_host_key: bool = False  # explicit opt-out of host key verification
    sudo: bool = True  # privileged commands of a non-root user go through `sudo -n --`


@dataclass(frozen=True)
class ResolvedSSH:
    """Where and how to connect, after ~/.ssh/config and the SSHTarget's overrides."""

    lookup: str  # the name looked up in the config (SSHTarget.host, else the host's address)
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...] = ()
    known_hosts_files: tuple[str, ...] = ()
    host_key_alias: str | None = None
    proxy_command: str | None = None
    proxy_jump: tuple[str, ...] = ()  # hops as written: [ssh://][user@]host[:port]
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    keepalive: int = DEFAULT_KEEPALIVE
    accept_unknown_host_key: bool = False
    sudo: bool = False  # privileged commands go through `sudo -n --`

    @property
    def look_for_keys(self) -> bool:
        return not self.identity_files  # as ssh: ~/.ssh/id_* only when no IdentityFile is given

    @property
    def key_name(self) -> str:  # the server's name in known_hosts
        return self.host_key_alias or (self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}")

    @property
    def target(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


def _expand(path: str) -> str:
    return os.path.expanduser(path.replace("%d", "~").replace("%u", getpass.getuser()))


def resolve_ssh(config_text: str, settings: SSHTarget, address: str, *,
                local_user: str | None = None) -> ResolvedSSH:
    """Pure resolution: config text + explicit settings -> ResolvedSSH (no network, no file reads)."""
    import paramiko  # here, not at the top: SSHTarget is built for every run, paramiko only for remote hosts

    name = settings.host or address
    override = "".join(f"  {k} {v}\n" for k, v in (("User", settings.user), ("Port", settings.port)) if v)
    if override and re.fullmatch(r"[\w.:%-]+", name):
        # explicit settings win over the config like `ssh -l/-p` do, and %r/%p tokens expand to its values
        config_text = f"Host {name}\n{override}Host *\n{config_text}"
    try:
        opts: dict[str, Any] = dict(paramiko.SSHConfig.from_text(config_text).lookup(name))
    except (paramiko.ssh_exception.ConfigParseError, ValueError) as exc:
        raise BadInputError(f"cannot parse the ssh config: {exc}") from None

    def number(key: str, default: float) -> float:
        try:
            return float(opts.get(key) or default)
        except ValueError:
            raise BadInputError(f"ssh config for {name}: {key} is not a number: {opts[key]}") from None

    user = settings.user or opts.get("user") or local_user or getpass.getuser()
    port = settings.port or int(number("port", 22))
    idents = [settings.key_file] if settings.key_file else list(opts.get("identityfile") or [])
    user_files = [settings.known_hosts] if settings.known_hosts else \
        str(opts.get("userknownhostsfile") or "~/.ssh/known_hosts ~/.ssh/known_hosts2").split()
    global_files = str(opts.get("globalknownhostsfile") or "/etc/ssh/ssh_known_hosts").split()
    known = dict.fromkeys(_expand(f) for f in ["~/.ssh/known_hosts", *user_files, *global_files])
    jump = str(opts.get("proxyjump") or "none")
    return ResolvedSSH(
        lookup=name, hostname=str(opts["hostname"]), port=port, user=str(user),
        identity_files=tuple(_expand(str(f)) for f in idents),
        known_hosts_files=tuple(known), host_key_alias=opts.get("hostkeyalias"),
        proxy_command=opts.get("proxycommand") or None,
        proxy_jump=() if jump.lower() == "none" else tuple(h.strip() for h in jump.split(",") if h.strip()),
        connect_timeout=number("connecttimeout", DEFAULT_CONNECT_TIMEOUT),
        keepalive=int(number("serveraliveinterval", DEFAULT_KEEPALIVE)) or DEFAULT_KEEPALIVE,
        accept_unknown_host_key=settings.accept_unknown_host_key,
        sudo=settings.sudo and str(user) != "root")


def parse_hop(spec: str) -> tuple[str | None, str, int | None]:
    """One ProxyJump hop, `[ssh://][user@]host[:port]` -> (user, host, port)."""
    user, _, hostport = spec.removeprefix("ssh://").rpartition("@")
    host, port = hostport, ""
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = rest.removeprefix(":")
    elif hostport.count(":") == 1:
        host, port = hostport.split(":")
    if not host or not (port.isdigit() or not port):
        raise BadInputError(f"cannot parse the ProxyJump hop '{spec}'")
    return user or None, host, int(port) if port else None


def read_ssh_config(path: Path | None = None) -> str:
    """The config text `ssh` would read (user file then system file), Include directives inlined."""
    if path is not None:
        return _inline_includes(path, path.parent, 0)
    user = Path("~/.ssh/config").expanduser()
    return _inline_includes(user, user.parent, 0) + "\nHost *\n" + \
        _inline_includes(Path("/etc/ssh/ssh_config"), Path("/etc/ssh"), 0)


def _inline_includes(path: Path, base: Path, depth: int) -> str:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise BadInputError(f"cannot read the ssh config {path}: {exc}") from None
    out = []
    for line in text.splitlines():
        m = re.match(r"\s*include(?:\s*=\s*|\s+)(.+)", line, re.I)
        if m is None or depth > 8:
            out.append(line)
            continue
        for pattern in shlex.split(m.group(1)):
            full = os.path.join(base, os.path.expanduser(pattern))
            out += [_inline_includes(Path(p), base, depth + 1) for p in sorted(glob.glob(full))]
    return "\n".join(out) + "\n"
