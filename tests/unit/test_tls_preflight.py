"""The preflight's replication TLS check (issue 14): a source without TLS refused with tls
required, the CA tried on the replica's host with openssl as the replica will use it."""

from __future__ import annotations

from pathlib import Path

import pytest

from resync.actions.dialect import ServerVersion
from resync.actions.types import Capture, Shell
from resync.model.errors import ResyncError
from resync.model.keys import preflight_value
from resync.model.runbook import LoadedRunbook, ReplicationSettings, parse_runbook
from resync.steps.preflight.checks import Check
from resync.steps.preflight.tls import ca_probe, ca_verdict, replication_tls_check

ROOT = Path(__file__).resolve().parents[2]
REPLICATION = ("  tls: preferred                    # required | preferred | off (see "
               "rebuild-old-primary.yaml)\n")
VERSIONS = {h: ServerVersion("mariadb", 10, 11, 19) for h in ("db1", "db2")}
OK = ("CONNECTION ESTABLISHED\nProtocol version: TLSv1.3\nPeer certificate: CN = db1\n"
      "Verification: OK\nDONE\nRESYNC-TLS-RC=0\n")
WRONG_CA = ("depth=1 CN = resync sandbox CA\nverify error:num=19:self-signed certificate in "
            "certificate chain\n80EB:error:0A000086:SSL routines::certificate verify failed\n"
            "RESYNC-TLS-RC=1\n")


def runbook(tmp_path: Path, replication: str) -> LoadedRunbook:
    text = (ROOT / "runbooks" / "rebuild-replica.yaml").read_text(encoding="utf-8")
    return parse_runbook(text.replace(REPLICATION, replication), tmp_path / "rb.yaml")


def check(tmp_path: Path, replication: str, down: frozenset[str] = frozenset()) -> Check:
    found = replication_tls_check(runbook(tmp_path, replication), down, VERSIONS)
    assert found is not None
    return found


def captured(tls: str, probe: str | None = None) -> dict[str, object]:
    out: dict[str, object] = {str(preflight_value("db1", "tls")): tls}
    if probe is not None:
        out[str(preflight_value("db2", "tls_probe"))] = probe
    return out


@pytest.mark.parametrize("replication", ["  tls: off\n", "  tls: preferred\n"])
def test_no_check_where_preflight_cannot_refuse(tmp_path: Path, replication: str) -> None:
    assert replication_tls_check(runbook(tmp_path, replication), frozenset(), VERSIONS) is None


def test_required_asks_the_source_and_refuses_without_tls(tmp_path: Path) -> None:
    c = check(tmp_path, "  tls: required\n")
    (capture,) = c.actions
    assert isinstance(capture, Capture) and capture.host == "db1"  # db1: the source afterwards
    assert capture.sql == "SELECT @@GLOBAL.have_ssl AS tls"
    assert c.judge(captured("YES")).startswith("db1 offers TLS; its certificate is not verified")
    with pytest.raises(ResyncError, match=r"db1 offers no TLS \(have_ssl / its TLS channel: "
                                          r"DISABLED\) but replication.tls is required"):
        c.judge(captured("DISABLED"))


def test_a_ca_is_tried_on_the_replica_host_against_the_source(tmp_path: Path) -> None:
    c = check(tmp_path, "  tls: required\n  ca: /etc/mysql/ca.pem\n")
    probe = c.actions[1]
    assert isinstance(probe, Shell) and probe.host == "db2" and probe.privileged
    assert not probe.check  # its output is judged
    text = probe.render()
    assert "-starttls mysql" in text and "-CAfile /etc/mysql/ca.pem" in text
    assert "-connect db1.example.internal:3306" in text
    assert "-verify_return_error -verify_hostname db1.example.internal" in text
    assert c.judge(captured("YES", OK)) == ("db1's certificate verifies with /etc/mysql/ca.pem on "
                                            "db2 and names db1.example.internal")
    with pytest.raises(ResyncError, match=r"the CA /etc/mysql/ca.pem on db2 does not verify db1's "
                                          r"certificate for db1.example.internal \(self-signed"):
        c.judge(captured("YES", WRONG_CA))


def test_preferred_with_a_ca_is_not_refused_when_the_source_has_no_tls(tmp_path: Path) -> None:
    c = check(tmp_path, "  ca: /etc/mysql/ca.pem\n")
    assert "PLAINTEXT" in c.judge(captured("DISABLED", WRONG_CA))


def test_a_source_that_is_down_is_left_to_the_step(tmp_path: Path) -> None:
    c = check(tmp_path, "  tls: required\n", down=frozenset({"db1"}))
    assert c.actions == () and "asked again right before" in c.judge({})


def test_ca_probe_checks_an_ip_address_as_such_and_passes_a_client_certificate() -> None:
    settings = ReplicationSettings(user="r", password_env="P", ca="/c/ca.pem", cert="/c/c.pem",
                                   key="/c/k.pem")
    text = ca_probe(settings, "10.0.0.11", 3307)
    assert "-connect 10.0.0.11:3307" in text and "-verify_ip 10.0.0.11" in text
    assert "-cert /c/c.pem -key /c/k.pem" in text
    assert "for f in /c/ca.pem /c/c.pem /c/k.pem" in text
    assert "-connect '[fd00::11]:3306'" in ca_probe(settings, "fd00::11", 3306)


@pytest.mark.parametrize(("output", "expected"), [
    ("RESYNC-TLS-NO-OPENSSL\n", "openssl is not installed on db2"),
    ("RESYNC-TLS-UNREADABLE /c/ca.pem\nRESYNC-TLS-RC=1\n", "db2 cannot read /c/ca.pem"),
    ("RESYNC-TLS-RC=124\n", r"\(timed out\)"),
    ("verify error:num=62:hostname mismatch\nRESYNC-TLS-RC=1\n", r"\(hostname mismatch\)"),
    ("CONNECTION ESTABLISHED\nRESYNC-TLS-RC=0\n", "does not verify"),  # no "Verification: OK"
])
def test_ca_verdict_refusals(output: str, expected: str) -> None:
    with pytest.raises(ResyncError, match=expected):
        ca_verdict(output, "/c/ca.pem", "db2", "db1", "10.0.0.11")
