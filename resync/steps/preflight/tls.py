"""The preflight's check of replication over TLS (runbook `replication.tls`, `ca`, `cert`, `key`).

Whether the source offers TLS is asked of its server (have_ssl, or MySQL's TLS channel): with
`tls: required` a source without TLS refuses the run. A CA is tried where it will be used: on the
replica's host, with the file the replica will read, against the address it will connect to,
`openssl s_client -starttls mysql -verify_return_error` with the host name (or IP address)
checked as MASTER_SSL_VERIFY_SERVER_CERT=1 checks it. Asking the controller instead would test
another file (or none: the CA path is on the replica's host) over another route.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from resync.actions.dialect import DEFAULT_VERSION, ServerVersion, dialect_for
from resync.actions.quoting import q
from resync.actions.types import Capture, Captured, Leaf, Shell
from resync.model.errors import ResyncError
from resync.model.keys import preflight_value
from resync.model.runbook import LoadedRunbook, ReplicationSettings
from resync.steps.preflight.checks import Check
from resync.steps.preflight.verdicts import captured_value

NO_OPENSSL = "RESYNC-TLS-NO-OPENSSL"
UNREADABLE = "RESYNC-TLS-UNREADABLE"
EXIT = re.compile(r"RESYNC-TLS-RC=(\d+)")
VERIFY_ERROR = re.compile(r"verify error:num=\d+:(.+)")
PROBE_SECONDS = 20


def ca_probe(settings: ReplicationSettings, address: str, port: int) -> str:
    """The replica host's command that verifies the source's certificate with `settings.ca` as
    the replica will: the chain up to that CA, and the name it is reached by."""
    assert settings.ca is not None
    files = [settings.ca, *(f for f in (settings.cert, settings.key) if f)]
    try:
        ip = ipaddress.ip_address(address)
        target, name_check = (f"[{address}]" if ip.version == 6 else address), "-verify_ip"
    except ValueError:
        target, name_check = address, "-verify_hostname"
    client = f" -cert {q(settings.cert)} -key {q(settings.key)}" if settings.cert and settings.key \
        else ""
    return (f"command -v openssl >/dev/null || {{ echo {NO_OPENSSL}; exit 0; }}; "
            f"for f in {' '.join(q(f) for f in files)}; do [ -r \"$f\" ] || "
            f"echo \"{UNREADABLE} $f\"; done; "
            f"timeout {PROBE_SECONDS} openssl s_client -brief -starttls mysql "
            f"-connect {q(f'{target}:{port}')} -CAfile {q(settings.ca)}{client} "
            f"-verify_return_error {name_check} {q(address)} </dev/null 2>&1; "
            "echo \"RESYNC-TLS-RC=$?\"")


def ca_verdict(output: str, ca: str, replica: str, source: str, address: str) -> str:
    """The probe's output read: the detail when the CA verifies the source, else a refusal."""
    if NO_OPENSSL in output:
        raise ResyncError(f"openssl is not installed on {replica}: it is needed to check the "
                          f"CA {ca} before the run (apt-get install openssl)")
    unreadable = [line.split(" ", 1)[1] for line in output.splitlines()
                  if line.startswith(UNREADABLE)]
    if unreadable:
        raise ResyncError(f"{replica} cannot read {', '.join(unreadable)} (replication.ca / "
                          "cert / key are paths on the replica's host)")
    code = EXIT.search(output)
    if code and code.group(1) == "0" and "Verification: OK" in output:
        return f"{source}'s certificate verifies with {ca} on {replica} and names {address}"
    found = VERIFY_ERROR.search(output)
    reason = found.group(1).strip() if found else (
        "timed out" if code and code.group(1) == "124" else
        " | ".join(output.strip().splitlines()[-3:])[-300:] or "no answer")
    raise ResyncError(f"the CA {ca} on {replica} does not verify {source}'s certificate for "
                      f"{address} ({reason}): replication with "
                      "MASTER_SSL_VERIFY_SERVER_CERT=1 would be refused. Give the CA that signed "
                      f"{source}'s certificate, one that names {address}")


def tls_offered(captured: Captured, source: str) -> bool:
    return str(captured_value(captured, source, "tls")).upper() == "YES"


def replication_tls_check(loaded: LoadedRunbook, down: frozenset[str],
                          versions: Mapping[str, ServerVersion]) -> Check | None:
    """A check where preflight can refuse: `tls: required`, or a CA to try. (`preferred` without
    a CA was decided at detection and the plan says which.) A source that is down is asked again
    right before replication is pointed at it (PointReplica)."""
    rb = loaded.model
    settings, source, replica = rb.replication, rb.primary_after, rb.replica_after
    if settings.tls == "off" or (settings.tls == "preferred" and not settings.ca):
        return None
    criterion = (f"{source} offers TLS" if settings.tls == "required"
                 else f"TLS if {source} offers it") + (
        f"; the CA {settings.ca} on {replica} verifies its certificate" if settings.ca else "")
    name = f"replication TLS {replica} -> {source}"
    if source in down:
        note = (f"not checked now: {source} is down; whether it offers TLS is asked again right "
                "before replication is pointed at it")
        return Check(name, criterion, (), lambda c: note)
    host = rb.hosts[source]
    query = dialect_for(versions.get(source, DEFAULT_VERSION)).tls_offered()
    actions: list[Leaf] = [Capture(source, query.sql,
                                   columns=(("tls", preflight_value(source, "tls")),))]
    probe = preflight_value(replica, "tls_probe")
    if settings.ca:
        actions.append(Shell.line(replica, ca_probe(settings, host.address, host.mysql.port),
                                  privileged=True, check=False, into=probe))

    def judge(captured: Captured) -> str:
        if not tls_offered(captured, source):
            if settings.tls == "required":
                raise ResyncError(f"{source} offers no TLS (have_ssl / its TLS channel: "
                                  f"{captured_value(captured, source, 'tls')}) but "
                                  "replication.tls is required: start its server with ssl_cert "
                                  "and ssl_key, or set replication.tls: preferred")
            return f"not used: {source} offers no TLS, replication runs in PLAINTEXT"
        if not settings.ca:
            return f"{source} offers TLS; its certificate is not verified (no replication.ca)"
        return ca_verdict(str(captured.get(str(probe)) or ""), settings.ca, replica, source,
                          host.address)

    return Check(name, criterion, tuple(actions), judge)
