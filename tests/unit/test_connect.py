"""From a runbook host entry to the transport's plain values (ConnectionSpec, SSHTarget, Host)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from resync.model.errors import RunbookError
from resync.model.runbook import LoadedRunbook, SSHSettings, parse_runbook
from resync.run.connect import connection_spec, make_host, ssh_target
from resync.transport.local import LocalHost
from resync.transport.mysql import TLSOptions
from resync.transport.ssh import SSHHost
from resync.transport.ssh_config import SSHTarget

EXAMPLE = Path(__file__).resolve().parents[2] / "runbooks" / "rebuild-old-primary.yaml"


def runbook(tmp_path: Path, old: str = "", new: str = "") -> LoadedRunbook:
    text = EXAMPLE.read_text(encoding="utf-8")
    if old:
        assert text.count(old) == 1, f"expected exactly one {old!r} in the example runbook"
        text = text.replace(old, new)
    return parse_runbook(text, tmp_path / "rb.yaml")


def test_connection_spec_takes_the_mysql_settings_and_the_password_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB1_PASSWORD", "s3cret")
    spec = connection_spec(runbook(tmp_path), "db1")
    assert (spec.name, spec.host, spec.port, spec.user) == ("db1", "db1.example.internal", 3306, "resync")
    assert spec.password is not None and spec.password.reveal() == "s3cret"
    assert (spec.defaults_file, spec.socket, spec.connect_timeout) == (None, None, 10.0)
    assert spec.tls == TLSOptions(mode="preferred")  # no tls section: TLS if the server offers it


def test_connection_spec_with_mysql_host_socket_and_tls(tmp_path: Path) -> None:
    loaded = runbook(tmp_path, "      password_env: DB1_PASSWORD    #", (
        "      host: 192.0.2.11\n      socket: /run/mysqld/mysqld.sock\n      connect_timeout: 3\n"
        "      defaults_file: /etc/resync/db1.cnf\n"
        "      tls: {ca: /etc/ssl/ca.pem, verify_identity: true}\n      #"))
    spec = connection_spec(loaded, "db1")
    assert (spec.host, spec.socket, spec.connect_timeout) == ("192.0.2.11", "/run/mysqld/mysqld.sock", 3)
    assert spec.defaults_file == "/etc/resync/db1.cnf"
    assert spec.password is None  # no password_env: the defaults_file (or none) is used
    assert spec.tls == TLSOptions(ca="/etc/ssl/ca.pem", verify_identity=True)
    assert spec.describe() == "resync@/run/mysqld/mysqld.sock"


def test_connection_spec_with_an_unset_password_variable_names_the_runbook_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DB2_PASSWORD", raising=False)
    loaded = runbook(tmp_path)
    with pytest.raises(RunbookError) as info:
        connection_spec(loaded, "db2")
    line = loaded.line_of("hosts", "db2", "mysql", "password_env")
    assert f"{tmp_path / 'rb.yaml'}:{line}: hosts.db2.mysql.password_env" in str(info.value)
    assert "DB2_PASSWORD is not set" in str(info.value)


def test_ssh_target_carries_every_runbook_ssh_field_with_the_same_defaults() -> None:
    assert {f.name for f in dataclasses.fields(SSHTarget)} == set(SSHSettings.model_fields)
    assert ssh_target(None) == SSHTarget() == ssh_target(SSHSettings())
    settings = SSHSettings(host="db1", user="admin", port=2222, key_file="/k", known_hosts="/kh",
                           accept_unknown_host_key=True, sudo=False)
    assert dataclasses.asdict(ssh_target(settings)) == settings.model_dump()


def test_make_host_local(tmp_path: Path) -> None:
    loaded = runbook(tmp_path, "    ssh: {host: db1, user: admin}", "    local: true")
    host = make_host(loaded, "db1")
    assert isinstance(host, LocalHost) and host.name == "db1"


def test_make_host_remote_resolves_but_does_not_connect(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/config: only the runbook's settings
    host = make_host(runbook(tmp_path), "db2")
    assert isinstance(host, SSHHost) and host.name == "db2"
    assert host.settings == SSHTarget(host="db2", user="admin")
    assert (host.resolved.lookup, host.resolved.user) == ("db2", "admin")
    assert host._clients == []  # the connection opens with the first command
