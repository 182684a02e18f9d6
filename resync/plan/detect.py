"""Detection: what the plan is rendered for (versions, GTID mode, copy tools, stopped servers).

Every query and command goes through an executor, so a run's journal holds the detection too.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Literal

from resync.actions.dialect import ServerVersion, dialect_for
from resync.actions.types import Capture, Shell
from resync.model.errors import DatabaseError, ServerUnreachable
from resync.model.keys import Key
from resync.model.runbook import LoadedRunbook
from resync.plan.build import PlanFacts
from resync.run.executor import Executor
from resync.steps.copy.commands import TOOL_PROBE
from resync.steps.services import datadir_users

VERSION_SQL = "SELECT @@GLOBAL.version AS version, @@GLOBAL.version_comment AS comment"
_BINARY_VERSION = ("for b in mariadbd mysqld /usr/sbin/mariadbd /usr/sbin/mysqld /usr/libexec/mysqld; "
                   "do command -v $b >/dev/null && exec $b --version; done; exit 127")
_VER = re.compile(r"\bVer\s+(\d+)\.(\d+)\.(\d+)(\S*)")


def _key(host: str, name: str) -> Key:
    return Key(f"detect.{host}.{name}")


def detect_facts(exe: Executor, loaded: LoadedRunbook, *, tools: bool = True) -> PlanFacts:
    """Versions and GTID mode of both servers (and the copy tools of both hosts).

    A recipient that is down (the seed's broken old primary, shut down by the DBA) is accepted
    when its host proves it: nothing holds its datadir open. Its version then comes from its
    server binary.
    """
    rb = loaded.model
    versions: dict[str, ServerVersion] = {}
    gtid: dict[str, bool] = {}
    down: set[str] = set()
    tls: dict[str, bool] = {}  # replication.tls preferred: TLS when the source offers it
    exe.begin("detect")
    for host in (rb.donor, rb.recipient):
        version, comment = _key(host, "version"), _key(host, "comment")
        try:
            exe.run_one(Capture(host, VERSION_SQL, columns=(("version", version),
                                                            ("comment", comment))), f"{host}.0")
        except ServerUnreachable:
            if host != rb.recipient:
                raise
            versions[host] = stopped_server_version(exe, loaded, host)
            down.add(host)
            continue
        try:
            versions[host] = ServerVersion.from_server(str(exe.captured[str(version)]),
                                                       str(exe.captured[str(comment)]))
        except ValueError as exc:
            raise DatabaseError(f"[{host}] {exc}") from None
        query = dialect_for(versions[host]).gtid_enabled_query()
        if query is None:
            gtid[host] = True  # MariaDB: GTIDs are always on
        else:
            exe.run_one(Capture(host, query.sql, columns=(("gtid_mode", _key(host, "gtid_mode")),)),
                        f"{host}.1")
            gtid[host] = str(exe.captured[str(_key(host, "gtid_mode"))]) == "ON"
        offered = _tls_offered(exe, host, versions[host])
        if offered is not None:
            tls[host] = offered
    for host in down:
        gtid[host] = gtid.get(rb.donor, True)  # a config setting, not data: assume the donor's
    facts = PlanFacts(versions, "detected", gtid, down=frozenset(down), tls=tls)
    if tools:
        facts = replace(facts, tools=detect_tools(exe, loaded))
    exe.begin("-")
    return facts


def _tls_offered(exe: Executor, host: str, version: ServerVersion) -> bool | None:
    """Whether the server accepts TLS connections (None: it cannot tell, e.g. MySQL 8.4 with
    performance_schema off)."""
    key = _key(host, "tls")
    exe.run_one(Capture(host, dialect_for(version).tls_offered().sql, columns=(("tls", key),)),
                f"{host}.tls")
    value = str(exe.captured[str(key)]).upper()
    return None if value == "UNKNOWN" else value == "YES"


def detect_tools(exe: Executor, loaded: LoadedRunbook) -> dict[str, frozenset[str]]:
    """Which copy tools each host has (nc flavour, socat, zstd, lz4, ssh)."""
    rb = loaded.model
    found: dict[str, frozenset[str]] = {}
    for name in (rb.donor, rb.recipient):
        key = _key(name, "tools")
        exe.run_one(Shell.line(name, TOOL_PROBE, check=False, into=key), f"{name}.tools")
        found[name] = frozenset(str(exe.captured[str(key)]).split())
    return found


def stopped_server_version(exe: Executor, loaded: LoadedRunbook, name: str) -> ServerVersion:
    """The version of a stopped server, from its binary; refuses if its datadir is in use."""
    settings = loaded.model.hosts[name]
    users = _key(name, "datadir_users")
    probe = datadir_users(name, settings.datadir)
    exe.run_one(replace(probe, into=users), f"{name}.datadir")
    if user := str(exe.captured[str(users)]):
        raise DatabaseError(
            f"[{name}] nothing answers at {settings.mysql_host}:{settings.mysql.port}, but a "
            f"running process holds {settings.datadir} open ({user}): check mysql.host/port "
            "in the runbook (refusing to touch a datadir in use)")
    out_key = _key(name, "binary_version")
    exe.run_one(Shell.line(name, _BINARY_VERSION, check=False, into=out_key), f"{name}.binary")
    out = str(exe.captured[str(out_key)])
    m = _VER.search(out)
    if not m:
        raise DatabaseError(f"[{name}] its server is down and its version could not be read from "
                            f"mariadbd/mysqld --version: {out.strip()[-200:]}")
    flavor: Literal["mysql", "mariadb"] = "mariadb" if "mariadb" in out.lower() else "mysql"
    return ServerVersion(flavor, int(m.group(1)), int(m.group(2)), int(m.group(3)))
