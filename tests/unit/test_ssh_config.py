"""Resolving where and how to connect over SSH: ~/.ssh/config text + an SSHTarget (no network)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from resync.model.errors import BadInputError
from resync.transport.ssh import PGID_MARK, remote_command
from resync.transport.ssh_config import SSHTarget, parse_hop, read_ssh_config, resolve_ssh

CONFIG = """\
Host db1 db1.example.com
    HostName 10.0.0.11
    Port 2222
    User deploy
    IdentityFile ~/.ssh/db_key
    UserKnownHostsFile /etc/resync/known_hosts
    ConnectTimeout 7
    ServerAliveInterval 30

Host db2
    HostName 10.0.0.12
    ProxyJump bastion,admin@bastion2:2200
    HostKeyAlias db2-key

Host viaproxy
    HostName 10.0.0.13
    ProxyCommand nc -X connect -x proxy:3128 %h %p --user %r

Host *
    User fallback
    IdentityFile ~/.ssh/id_global
"""


def test_alias_maps_hostname_port_user_key_and_options() -> None:
    r = resolve_ssh(CONFIG, SSHTarget(host="db1"), "192.0.2.1")
    assert (r.lookup, r.hostname, r.port, r.user) == ("db1", "10.0.0.11", 2222, "deploy")
    # IdentityFile accumulates like ssh: the host's own first, then the one of Host *
    assert r.identity_files == (os.path.expanduser("~/.ssh/db_key"), os.path.expanduser("~/.ssh/id_global"))
    assert not r.look_for_keys
    assert r.connect_timeout == 7 and r.keepalive == 30
    assert r.known_hosts_files[:2] == (os.path.expanduser("~/.ssh/known_hosts"), "/etc/resync/known_hosts")
    assert "/etc/ssh/ssh_known_hosts" in r.known_hosts_files
    assert r.key_name == "[10.0.0.11]:2222"
    assert r.target == "deploy@10.0.0.11:2222"
    assert r.proxy_jump == () and r.proxy_command is None


def test_address_is_looked_up_when_ssh_host_is_not_set() -> None:
    r = resolve_ssh(CONFIG, SSHTarget(), "db1.example.com")
    assert (r.hostname, r.port) == ("10.0.0.11", 2222)


def test_runbook_fields_override_the_config() -> None:
    settings = SSHTarget(host="db1", user="root", port=22, key_file="/keys/resync", known_hosts="/kh")
    r = resolve_ssh(CONFIG, settings, "ignored")
    assert (r.hostname, r.port, r.user) == ("10.0.0.11", 22, "root")
    assert r.identity_files == ("/keys/resync",)
    assert "/kh" in r.known_hosts_files and "/etc/resync/known_hosts" not in r.known_hosts_files
    assert r.key_name == "10.0.0.11"


def test_no_config_means_the_address_port_22_local_user_and_default_keys() -> None:
    r = resolve_ssh("", SSHTarget(), "10.1.2.3", local_user="alice")
    assert (r.hostname, r.port, r.user) == ("10.1.2.3", 22, "alice")
    assert r.identity_files == () and r.look_for_keys
    assert r.connect_timeout == 15 and r.keepalive == 15
    assert not r.accept_unknown_host_key


def test_proxy_jump_and_host_key_alias() -> None:
    r = resolve_ssh(CONFIG, SSHTarget(host="db2"), "x")
    assert r.proxy_jump == ("bastion", "admin@bastion2:2200")
    assert r.key_name == "db2-key"
    assert r.user == "fallback"


def test_proxy_command_tokens_use_the_runbook_overrides() -> None:
    r = resolve_ssh(CONFIG, SSHTarget(host="viaproxy"), "x")
    assert r.proxy_command == "nc -X connect -x proxy:3128 10.0.0.13 22 --user fallback"
    r = resolve_ssh(CONFIG, SSHTarget(host="viaproxy", user="ops", port=2022), "x")
    assert r.proxy_command == "nc -X connect -x proxy:3128 10.0.0.13 2022 --user ops"


def test_none_disables_proxies() -> None:
    text = "Host a\n  ProxyJump none\n  ProxyCommand none\nHost *\n  ProxyJump j\n  ProxyCommand nc %h %p\n"
    r = resolve_ssh(text, SSHTarget(host="a"), "x")
    assert r.proxy_jump == () and r.proxy_command is None


def test_sudo_only_for_a_non_root_user_with_sudo_on() -> None:
    assert resolve_ssh("", SSHTarget(user="deploy"), "h").sudo
    assert not resolve_ssh("", SSHTarget(user="root"), "h").sudo
    assert not resolve_ssh("", SSHTarget(user="deploy", sudo=False), "h").sudo
    assert not resolve_ssh("Host h\n  User root\n", SSHTarget(), "h").sudo


def test_accept_unknown_host_key_is_carried() -> None:
    assert resolve_ssh("", SSHTarget(accept_unknown_host_key=True), "h").accept_unknown_host_key


def test_unparsable_config_is_bad_input() -> None:
    with pytest.raises(BadInputError, match="ssh config"):
        resolve_ssh("Host a\n  =broken\n", SSHTarget(), "a")
    with pytest.raises(BadInputError, match="port is not a number"):
        resolve_ssh("Host a\n  Port twenty\n", SSHTarget(), "a")


@pytest.mark.parametrize(("spec", "expected"), [
    ("bastion", (None, "bastion", None)),
    ("admin@bastion:2200", ("admin", "bastion", 2200)),
    ("ssh://admin@bastion:2200", ("admin", "bastion", 2200)),
    ("[2001:db8::1]:22", (None, "2001:db8::1", 22)),
    ("2001:db8::1", (None, "2001:db8::1", None)),
])
def test_parse_hop(spec: str, expected: tuple[str | None, str, int | None]) -> None:
    assert parse_hop(spec) == expected


def test_parse_hop_rejects_garbage() -> None:
    with pytest.raises(BadInputError):
        parse_hop("host:port")


def test_includes_are_inlined(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-db.conf").write_text("Host db9\n  HostName 10.9.9.9\n")
    main = tmp_path / "config"
    main.write_text("Include conf.d/*.conf\nHost *\n  User someone\n")
    r = resolve_ssh(read_ssh_config(main), SSHTarget(host="db9"), "x")
    assert (r.hostname, r.user) == ("10.9.9.9", "someone")
    assert read_ssh_config(tmp_path / "missing") == ""


def test_remote_command_reports_its_process_group_then_runs_bash_pipefail() -> None:
    wrapped = remote_command("echo out; echo 'it''s' >&2; false | true", sudo=False)
    proc = subprocess.run(["bash", "-c", wrapped], capture_output=True, text=True, start_new_session=True)
    first, _, rest = proc.stderr.partition("\n")
    assert first.startswith(PGID_MARK) and first[len(PGID_MARK):].isdigit()
    assert (proc.returncode, proc.stdout, rest) == (1, "out\n", "its\n")
    assert "sudo -n -- bash -o pipefail -c" in remote_command("x", sudo=True)


def test_paramiko_is_not_imported_by_the_cli_or_hosts() -> None:
    # resync.run.connect makes the hosts and builds an SSHTarget for every remote one: paramiko
    # (slow to import) waits until an SSHHost is actually made
    code = ("import sys, resync.cli.commands, resync.transport.local, resync.transport.ssh_config, "
            "resync.run.connect; sys.exit('paramiko' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
