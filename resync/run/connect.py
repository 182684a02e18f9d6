"""From a runbook's host entry to the transport's plain values: a ConnectionSpec for MySQL, a Host
for commands. The only place that knows both the runbook schema and the transport classes, so that
resync.transport stays usable (and testable) without a runbook.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel

from resync.model.maintenance import CONTROLLER
from resync.model.runbook import HostSettings, LoadedRunbook, SSHSettings
from resync.transport.local import Host, LocalHost
from resync.transport.mysql import ConnectionSpec, TLSOptions
from resync.transport.ssh_config import SSHTarget


def connection_spec(loaded: LoadedRunbook, name: str) -> ConnectionSpec:
    """How to log in to host `name`'s server; the password is read from its password_env now (an
    unset variable is a RunbookError naming the runbook line)."""
    h: HostSettings = loaded.model.hosts[name]
    m = h.mysql
    password = (loaded.secret(m.password_env, "hosts", name, "mysql", "password_env")
                if m.password_env else None)
    return ConnectionSpec(name=name, host=h.mysql_host, port=m.port, user=m.user, password=password,
                          defaults_file=m.defaults_file, socket=m.socket,
                          connect_timeout=m.connect_timeout, tls=tls_options(h))


def tls_options(h: HostSettings) -> TLSOptions:
    t = h.mysql.tls
    return TLSOptions(mode=t.mode, ca=t.ca, cert=t.cert, key=t.key,
                      verify_identity=t.verify_identity)


def describe_control_connections(loaded: LoadedRunbook, offered: Mapping[str, bool]) -> str:
    """For the plan's header, per database host: whether resync's own connection is encrypted
    (`offered`: the servers' TLS as detected; a host not in it was not asked)."""
    rb = loaded.model
    parts = []
    for name in (rb.donor, rb.recipient):
        h = rb.hosts[name]
        tls = tls_options(h)
        if h.mysql.socket:
            parts.append(f"{name} local socket {h.mysql.socket}")
        elif tls.mode == "preferred" and not tls.required and name in offered:
            parts.append(f"{name} " + ("TLS (unverified)" if offered[name]
                                       else "PLAINTEXT (the server offers no TLS)"))
        else:
            parts.append(f"{name} {tls.describe()}")
    return ", ".join(parts)


def secret_env_names(loaded: LoadedRunbook) -> frozenset[str]:
    """Every environment variable the runbook names for a secret (`*_env` settings): kept out of
    the commands resync starts (resync.transport.local.child_environment)."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                item = getattr(value, name)
                if name.endswith("_env") and isinstance(item, str):
                    found.add(item)
                else:
                    walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
    walk(loaded.model)
    return frozenset(found)


def ssh_target(settings: SSHSettings | None) -> SSHTarget:
    """The runbook's `ssh:` section as the transport's SSHTarget (no section: all defaults)."""
    s = settings or SSHSettings()
    return SSHTarget(host=s.host, user=s.user, port=s.port, key_file=s.key_file,
                     known_hosts=s.known_hosts, accept_unknown_host_key=s.accept_unknown_host_key,
                     sudo=s.sudo)


def make_host(loaded: LoadedRunbook, name: str) -> Host:
    """Host `name` of the runbook: this machine for `local: true`, else over SSH (not yet connected:
    the connection opens with the first command). CONTROLLER is this machine too."""
    hidden = secret_env_names(loaded)
    if name == CONTROLLER:
        return LocalHost(name, hidden_env=hidden)
    settings = loaded.model.hosts[name]
    if settings.local:
        return LocalHost(name, hidden_env=hidden)
    from resync.transport.ssh import SSHHost  # paramiko only when a host is remote: it is slow to import

    return SSHHost(name, ssh_target(settings.ssh), settings.address, hidden_env=hidden)
