"""From a runbook's host entry to the transport's plain values: a ConnectionSpec for MySQL, a Host
for commands. The only place that knows both the runbook schema and the transport classes, so that
resync.transport stays usable (and testable) without a runbook.
"""

from __future__ import annotations

from typing import Any

from resync.model.maintenance import CONTROLLER
from resync.model.runbook import HostSettings, LoadedRunbook, SSHSettings
from resync.transport.local import Host, LocalHost
from resync.transport.mysql import ConnectionSpec
from resync.transport.ssh_config import SSHTarget


def connection_spec(loaded: LoadedRunbook, name: str) -> ConnectionSpec:
    """How to log in to host `name`'s server; the password is read from its password_env now (an
    unset variable is a RunbookError naming the runbook line)."""
    h: HostSettings = loaded.model.hosts[name]
    m = h.mysql
    password = (loaded.secret(m.password_env, "hosts", name, "mysql", "password_env")
                if m.password_env else None)
    ssl: dict[str, Any] | None = None
    if m.tls:
        ssl = {k: v for k, v in (("ca", m.tls.ca), ("cert", m.tls.cert), ("key", m.tls.key)) if v}
        ssl["check_hostname"] = m.tls.verify_identity
    return ConnectionSpec(name=name, host=h.mysql_host, port=m.port, user=m.user, password=password,
                          defaults_file=m.defaults_file, socket=m.socket,
                          connect_timeout=m.connect_timeout, ssl=ssl)


def ssh_target(settings: SSHSettings | None) -> SSHTarget:
    """The runbook's `ssh:` section as the transport's SSHTarget (no section: all defaults)."""
    s = settings or SSHSettings()
    return SSHTarget(host=s.host, user=s.user, port=s.port, key_file=s.key_file,
                     known_hosts=s.known_hosts, accept_unknown_host_key=s.accept_unknown_host_key,
                     sudo=s.sudo)


def make_host(loaded: LoadedRunbook, name: str) -> Host:
    """Host `name` of the runbook: this machine for `local: true`, else over SSH (not yet connected:
    the connection opens with the first command). CONTROLLER is this machine too."""
    if name == CONTROLLER:
        return LocalHost(name)
    settings = loaded.model.hosts[name]
    if settings.local:
        return LocalHost(name)
    from resync.transport.ssh import SSHHost  # paramiko only when a host is remote: it is slow to import

    return SSHHost(name, ssh_target(settings.ssh), settings.address)
