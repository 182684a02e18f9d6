"""The runbook's TLS settings (issue 14): replication.tls and its deprecated alias ssl, the paths
on the replica's host, allow_rsa_key_exchange; a host's mysql.tls (mode, CA, verify_identity)."""

from __future__ import annotations

from pathlib import Path

import pytest

from resync.model.errors import RunbookError
from resync.model.runbook import LoadedRunbook, TLSSettings, parse_runbook

EXAMPLE = Path(__file__).resolve().parents[2] / "runbooks" / "rebuild-replica.yaml"
REPLICATION = ("  tls: preferred                    # required | preferred | off (see "
               "rebuild-old-primary.yaml)\n")
DB1_MYSQL = "    mysql: {port: 3306, user: resync, password_env: DB1_PASSWORD}"


def runbook(tmp_path: Path, old: str = "", new: str = "") -> LoadedRunbook:
    text = EXAMPLE.read_text(encoding="utf-8")
    if old:
        assert text.count(old) == 1, f"expected exactly one {old!r} in the example runbook"
        text = text.replace(old, new)
    return parse_runbook(text, tmp_path / "rb.yaml")


def replication(tmp_path: Path, lines: str) -> LoadedRunbook:
    return runbook(tmp_path, REPLICATION, lines)


def refused(tmp_path: Path, old: str, new: str) -> str:
    with pytest.raises(RunbookError) as info:
        runbook(tmp_path, old, new)
    assert info.value.exit_code == 2
    return str(info.value)


def test_defaults_are_preferred_without_files(tmp_path: Path) -> None:
    loaded = runbook(tmp_path, REPLICATION, "")
    r = loaded.model.replication
    assert (r.tls, r.ca, r.cert, r.key, r.allow_rsa_key_exchange) == (
        "preferred", None, None, None, False)
    assert loaded.model.hosts["db1"].mysql.tls == TLSSettings(mode="preferred")


def test_the_example_shows_preferred(tmp_path: Path) -> None:
    assert runbook(tmp_path).model.replication.tls == "preferred"


def test_ca_cert_and_key_are_kept(tmp_path: Path) -> None:
    r = replication(tmp_path, "  tls: required\n  ca: /etc/mysql/ca.pem\n"
                              "  cert: /etc/mysql/c.pem\n  key: /etc/mysql/k.pem\n").model.replication
    assert (r.tls, r.ca, r.cert, r.key) == ("required", "/etc/mysql/ca.pem", "/etc/mysql/c.pem",
                                           "/etc/mysql/k.pem")


@pytest.mark.parametrize(("ssl", "tls"), [("true", "required"), ("false", "off")])
def test_ssl_is_the_deprecated_alias_of_tls(tmp_path: Path, ssl: str, tls: str) -> None:
    assert replication(tmp_path, f"  ssl: {ssl}\n").model.replication.tls == tls


def test_ssl_and_tls_together_are_refused_with_the_line(tmp_path: Path) -> None:
    message = refused(tmp_path, REPLICATION, REPLICATION + "  ssl: true\n")
    assert "replication.ssl is the deprecated name of replication.tls: give only tls" in message
    assert "rb.yaml:" in message


def test_ssl_must_be_a_boolean(tmp_path: Path) -> None:
    assert "is true or false" in refused(tmp_path, REPLICATION, "  ssl: yes-please\n")


@pytest.mark.parametrize(("lines", "expected"), [
    ("  tls: off\n  ca: /etc/ca.pem\n", "ca, cert and key are for TLS"),
    ("  cert: /etc/c.pem\n", "a client certificate needs its key"),
    ("  key: /etc/k.pem\n", "a client certificate needs its key"),
    ("  ca: etc/ca.pem\n", "TLS file paths must be absolute: etc/ca.pem"),
    ("  tls: required\n  allow_rsa_key_exchange: true\n", "allow_rsa_key_exchange applies only"),
    ("  tls: maybe\n", "replication.tls"),
])
def test_inconsistent_replication_tls_is_refused(tmp_path: Path, lines: str, expected: str) -> None:
    assert expected in refused(tmp_path, REPLICATION, lines)


@pytest.mark.parametrize("tls", ["off", "preferred"])
def test_rsa_key_exchange_is_allowed_where_tls_may_be_off(tmp_path: Path, tls: str) -> None:
    loaded = replication(tmp_path, f"  tls: {tls}\n  allow_rsa_key_exchange: true\n")
    assert loaded.model.replication.allow_rsa_key_exchange


def test_host_tls_mode_and_ca(tmp_path: Path) -> None:
    loaded = runbook(tmp_path, DB1_MYSQL, DB1_MYSQL[:-1] + (
        ", tls: {mode: required, ca: /etc/ssl/ca.pem, verify_identity: true}}"))
    assert loaded.model.hosts["db1"].mysql.tls == TLSSettings(
        mode="required", ca="/etc/ssl/ca.pem", verify_identity=True)


@pytest.mark.parametrize(("tls", "expected"), [
    ("{mode: off, ca: /etc/ssl/ca.pem}", "ca, cert and key are for TLS"),
    ("{verify_identity: true}", "verify_identity checks the name in a certificate the CA verified"),
    ("{mode: sometimes}", "mode"),
    ("{cert: /etc/c.pem}", "a client certificate needs its key"),
])
def test_inconsistent_host_tls_is_refused(tmp_path: Path, tls: str, expected: str) -> None:
    assert expected in refused(tmp_path, DB1_MYSQL, DB1_MYSQL[:-1] + f", tls: {tls}}}")
