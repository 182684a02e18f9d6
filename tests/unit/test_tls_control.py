"""The controller's own connections (issue 14): pymysql's TLS from a host's mysql.tls, a CA
verified (and the name with verify_identity), TLS required refused with exit 3 when the server
offers none, does not verify, or a pymysql falls back to plaintext."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

import pymysql
import pytest
from pymysql.constants import CR

from resync.model.errors import ServerUnreachable
from resync.testing.tls import make_ca
from resync.transport import mysql
from resync.transport.mysql import ConnectionSpec, TLSOptions, TLSRefused, connect


class FakeConnection:
    def __init__(self, encrypted: bool) -> None:
        raw = socket.socket()
        self._sock: Any = raw
        if encrypted:  # an SSLSocket that was never connected: only its type matters here
            self._sock = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).wrap_socket(
                raw, do_handshake_on_connect=False, server_hostname="db1")
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self._sock.close()


def spec(**tls: Any) -> ConnectionSpec:
    return ConnectionSpec(name="db1", host="127.0.0.1", port=3306, user="resync",
                          tls=TLSOptions(**tls))


def connected(monkeypatch: pytest.MonkeyPatch, s: ConnectionSpec,
              encrypted: bool = True) -> tuple[dict[str, Any], Any]:
    seen: dict[str, Any] = {}

    def fake(**kwargs: Any) -> FakeConnection:
        seen.update(kwargs)
        return FakeConnection(encrypted)
    monkeypatch.setattr(mysql, "_Connection", fake)
    return seen, connect(s)


def failing(monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    def fake(**kwargs: Any) -> None:
        raise exc
    monkeypatch.setattr(mysql, "_Connection", fake)


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(make_ca(tmp_path_factory.mktemp("ca")).cert)


def test_preferred_leaves_it_to_pymysql_and_says_whether_it_got_tls(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen, session = connected(monkeypatch, spec(), encrypted=False)
    assert "ssl" not in seen and "ssl_disabled" not in seen  # pymysql: TLS when offered
    assert session.encrypted is False
    _, session = connected(monkeypatch, spec())
    assert session.encrypted is True


def test_off_disables_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    seen, _ = connected(monkeypatch, spec(mode="off"), encrypted=False)
    assert seen["ssl_disabled"] is True and "ssl" not in seen


@pytest.mark.parametrize("verify_identity", [False, True])
def test_a_ca_verifies_the_certificate_and_with_verify_identity_the_name(
        monkeypatch: pytest.MonkeyPatch, ca_file: str, verify_identity: bool) -> None:
    seen, _ = connected(monkeypatch, spec(ca=ca_file, verify_identity=verify_identity))
    ctx = seen["ssl"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname is verify_identity
    assert ctx.get_ca_certs()[0]["subject"] == ((("commonName", "resync sandbox CA"),),)
    assert TLSOptions(ca=ca_file).required  # a server without TLS cannot be verified


def test_required_without_a_ca_encrypts_unverified(monkeypatch: pytest.MonkeyPatch) -> None:
    seen, _ = connected(monkeypatch, spec(mode="required"))
    assert seen["ssl"].verify_mode == ssl.CERT_NONE and seen["ssl"].check_hostname is False


def test_required_refuses_a_connection_that_is_not_encrypted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TLSRefused, match=r"is not encrypted, but mysql\.tls requires TLS") as info:
        connected(monkeypatch, spec(mode="required"), encrypted=False)
    assert info.value.exit_code == 3


def test_a_server_without_tls_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    failing(monkeypatch, pymysql.err.OperationalError(
        CR.CR_SSL_CONNECTION_ERROR, "SSL is required but the server doesn't support it"))
    with pytest.raises(TLSRefused, match=r"TLS is required \(mysql\.tls\) but the server offers none"):
        connect(spec(mode="required"))


def test_a_certificate_that_does_not_verify_is_a_refusal_not_an_unreachable_server(
        monkeypatch: pytest.MonkeyPatch) -> None:
    error = pymysql.err.OperationalError(CR.CR_CONN_HOST_ERROR, "Can't connect to MySQL server")
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cause.verify_message = "self-signed certificate in certificate chain"
    error.original_exception = cause  # type: ignore[attr-defined]  # as pymysql sets it
    failing(monkeypatch, error)
    with pytest.raises(TLSRefused, match="failed: self-signed certificate in certificate chain "
                                         r"\(check mysql.tls.ca") as info:
        connect(spec(mode="required"))
    assert not isinstance(info.value, ServerUnreachable)


def test_an_unreachable_server_stays_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    failing(monkeypatch, pymysql.err.OperationalError(CR.CR_CONN_HOST_ERROR, "Connection refused"))
    with pytest.raises(ServerUnreachable):
        connect(spec())


def test_a_missing_ca_file_is_refused_before_connecting(tmp_path: Path) -> None:
    with pytest.raises(TLSRefused, match=r"cannot use the TLS files of mysql\.tls"):
        connect(spec(ca=str(tmp_path / "missing.pem")))


def test_preferred_mode_shares_one_unverified_context() -> None:
    """pymysql's preferred mode built a context per connection and loaded the system's CA store
    into it (~50 ms each; the polls around a restart connect many times in the write-downtime):
    one context now, as unverified as pymysql's own."""
    first = mysql._Connection._create_ssl_ctx(None, {})  # type: ignore[arg-type]
    assert first is mysql._Connection._create_ssl_ctx(None, {})  # type: ignore[arg-type]
    assert first.verify_mode is ssl.CERT_NONE and first.check_hostname is False
    assert first.cert_store_stats()["x509_ca"] == 0  # no CA store loaded
