"""SSHHost against a real OpenSSH sshd on this machine (no mocks)."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshd import TestSSHD, free_port, keygen

from resync.model.errors import HostError
from resync.transport.local import Host
from resync.transport.ssh import SSHHost
from resync.transport.ssh_config import SSHTarget


@pytest.fixture(autouse=True)
def _no_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)  # only the keys the test names


@pytest.fixture
def hosts() -> Iterator[list[SSHHost]]:
    made: list[SSHHost] = []
    yield made
    for host in made:
        host.close()


@pytest.fixture
def host(sshd_server: TestSSHD, hosts: list[SSHHost]) -> SSHHost:
    hosts.append(SSHHost("db1", sshd_server.settings(), "127.0.0.1",
                         ssh_config_path=sshd_server.empty_ssh_config()))
    return hosts[-1]


def marker() -> str:
    """A unique sleep duration, to find exactly our remote process with pgrep."""
    return f"3{uuid.uuid4().int % 10**6}.5"


def remote_processes(pattern: str, gone_within: float = 5.0) -> str:
    """pgrep -af pattern (sshd runs on this machine), waiting up to gone_within for none."""
    deadline = time.monotonic() + gone_within
    while True:
        found = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True).stdout
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def server_address(host: SSHHost) -> str:
    """The address of the sshd the host is connected to (from SSH_CONNECTION)."""
    address: str = host.run("echo $SSH_CONNECTION").stdout.split()[2]
    return address


def test_run_returns_stdout_stderr_and_exit_code(host: SSHHost) -> None:
    conforms: Host = host
    result = conforms.run("echo out; echo err >&2; cat")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "out\n", "err\n")  # stdin is at EOF
    assert host.run("exit 4", check=False).exit_code == 4
    assert host.run("false | true", check=False).exit_code == 1  # pipefail


def test_failing_command_raises_with_exit_code_and_stderr_tail(host: SSHHost) -> None:
    with pytest.raises(HostError) as info:
        host.run("echo first >&2; echo 'the real reason' >&2; exit 3")
    assert info.value.returncode == 3
    assert info.value.host == "db1"
    assert "the real reason" in info.value.output_tail
    assert "exited 3" in str(info.value)


def test_privileged_as_root_runs_without_sudo(host: SSHHost) -> None:
    assert not host.resolved.sudo  # logged in as root: no sudo even with ssh.sudo true
    assert host.run("id -u", privileged=True).stdout.strip() == "0"


def test_ssh_config_alias_gives_hostname_port_user_and_key(
        sshd_server: TestSSHD, hosts: list[SSHHost]) -> None:
    config = sshd_server.ssh_config
    hosts.append(SSHHost("db2", SSHTarget(host="sshd-2"), "db2.invalid", ssh_config_path=config))
    hosts.append(SSHHost("db3", SSHTarget(), "sshd-3", ssh_config_path=config))
    db2, db3 = hosts
    r = db2.resolved
    assert (r.hostname, r.port, r.user) == ("127.0.0.2", sshd_server.port, "root")
    assert db2.resolved.identity_files == (str(sshd_server.client_key),)
    assert server_address(db2) == "127.0.0.2"
    assert server_address(db3) == "127.0.0.3"  # the address itself looked up in the config


def test_unknown_host_key_is_refused_with_the_fix(sshd_server: TestSSHD, hosts: list[SSHHost]) -> None:
    empty = sshd_server.root / "known_hosts.empty"
    empty.write_text("")
    hosts.append(SSHHost("db1", sshd_server.settings(known_hosts=str(empty)), "127.0.0.1",
                         ssh_config_path=sshd_server.empty_ssh_config()))
    with pytest.raises(HostError) as info:
        hosts[0].run("true")
    message = str(info.value)
    assert info.value.returncode == 255
    assert "not known" in message and "SHA256:" in message
    assert f"ssh-keyscan -p {sshd_server.port} 127.0.0.1 >> {empty}" in message
    assert empty.read_text() == ""


def test_changed_host_key_is_refused_even_when_accepting_unknown_keys(
        sshd_server: TestSSHD, hosts: list[SSHHost]) -> None:
    other = keygen(sshd_server.root / f"other_{uuid.uuid4().hex}")
    changed = sshd_server.root / "known_hosts.changed"
    changed.write_text(sshd_server.known_hosts_text(other))
    for accept in (False, True):
        settings = sshd_server.settings(known_hosts=str(changed), accept_unknown_host_key=accept)
        hosts.append(SSHHost("db1", settings, "127.0.0.1", ssh_config_path=sshd_server.empty_ssh_config()))
        with pytest.raises(HostError, match="CHANGED") as info:
            hosts[-1].run("true")
        assert "ssh-keygen -R" in str(info.value) and "ssh-keyscan" in str(info.value)


def test_accept_unknown_host_key_accepts_and_warns(
        sshd_server: TestSSHD, hosts: list[SSHHost], caplog: pytest.LogCaptureFixture) -> None:
    empty = sshd_server.root / "known_hosts.accept"
    empty.write_text("")
    hosts.append(SSHHost("db1", sshd_server.settings(known_hosts=str(empty), accept_unknown_host_key=True),
                         "127.0.0.1", ssh_config_path=sshd_server.empty_ssh_config()))
    with caplog.at_level(logging.WARNING, logger="resync.transport.ssh"):
        assert hosts[0].run("echo ok").stdout == "ok\n"
    assert "UNKNOWN host key" in caplog.text
    assert empty.read_text() == ""  # never written


def test_wrong_key_gives_a_clear_authentication_error(sshd_server: TestSSHD) -> None:
    wrong = keygen(sshd_server.root / f"wrong_{uuid.uuid4().hex}")
    with pytest.raises(HostError) as info:
        SSHHost("db1", sshd_server.settings(key_file=str(wrong)), "127.0.0.1",
                ssh_config_path=sshd_server.empty_ssh_config(), connect=True)
    message = str(info.value)
    assert f"authentication failed for root@127.0.0.1:{sshd_server.port} with keys {wrong}" in message
    assert "key_file" in message


def test_unreachable_host_gives_a_clear_error(sshd_server: TestSSHD, hosts: list[SSHHost]) -> None:
    port = free_port()
    hosts.append(SSHHost("db1", sshd_server.settings(port=port), "127.0.0.1",
                         ssh_config_path=sshd_server.empty_ssh_config()))
    with pytest.raises(HostError, match=f"cannot reach 127.0.0.1:{port}"):
        hosts[0].run("true")


def test_kill_stops_the_whole_remote_pipeline(host: SSHHost) -> None:
    mark = marker()
    background = host.start(f"sleep {mark} | cat")
    deadline = time.monotonic() + 5
    while "sleep" not in remote_processes(f"sleep {mark}", 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert background.poll() is None
    background.kill()
    assert remote_processes(f"sleep {mark}") == ""
    assert background.poll() not in (None, 0)
    assert background.wait(timeout=5).exit_code != 0


def test_close_kills_what_still_runs(sshd_server: TestSSHD) -> None:
    host = SSHHost("db1", sshd_server.settings(), "127.0.0.1", ssh_config_path=sshd_server.empty_ssh_config())
    mark = marker()
    host.start(f"sleep {mark}")
    time.sleep(0.5)
    host.close()
    assert remote_processes(f"sleep {mark}") == ""


def test_chatty_background_command_does_not_deadlock(host: SSHHost) -> None:
    background = host.start("head -c 6000000 /dev/zero | base64; head -c 3000000 /dev/zero | base64 >&2")
    result = background.wait(timeout=120)
    assert result.exit_code == 0
    assert len(result.stdout) > 8_000_000 and len(result.stderr) > 4_000_000


def test_timeout_raises_and_kills_the_remote_command(host: SSHHost) -> None:
    mark = marker()
    started = time.monotonic()
    with pytest.raises(HostError) as info:
        host.run(f"echo started; sleep {mark}", timeout=1)
    assert info.value.returncode is None
    assert "timed out" in str(info.value)
    assert time.monotonic() - started < 15
    assert remote_processes(f"sleep {mark}") == ""
    assert host.run("echo still usable").ok


def test_two_addresses_are_two_hosts(sshd_server: TestSSHD, hosts: list[SSHHost]) -> None:
    for name, address in (("db2", "127.0.0.2"), ("db3", "127.0.0.3")):
        hosts.append(SSHHost(name, sshd_server.settings(address), address,
                             ssh_config_path=sshd_server.empty_ssh_config()))
    assert [server_address(h) for h in hosts] == ["127.0.0.2", "127.0.0.3"]


def _config_with(sshd_server: TestSSHD, name: str, address: str, extra: str) -> Path:
    path = sshd_server.root / f"ssh_config.{name}.{uuid.uuid4().hex}"
    path.write_text(sshd_server.ssh_config.read_text() + sshd_server.ssh_config_stanza(name, address, extra))
    return path


def test_proxy_jump_through_two_hops(sshd_server: TestSSHD, hosts: list[SSHHost]) -> None:
    config = _config_with(sshd_server, "behind", "127.0.0.3", "  ProxyJump sshd-1,sshd-2\n")
    hosts.append(SSHHost("db3", SSHTarget(host="behind"), "ignored", ssh_config_path=config))
    assert hosts[0].resolved.proxy_jump == ("sshd-1", "sshd-2")
    assert server_address(hosts[0]) == "127.0.0.3"
    assert len(hosts[0]._clients) == 3  # sshd-1, sshd-2 (through sshd-1), then the target
    _, out, _ = hosts[0]._clients[1].exec_command("echo $SSH_CONNECTION")
    assert out.read().split()[2] == b"127.0.0.2"  # the second hop is sshd-2


def test_proxy_command(sshd_server: TestSSHD, hosts: list[SSHHost]) -> None:
    config = _config_with(sshd_server, "viaproxy", "127.0.0.2", (
        f"  ProxyCommand ssh -F {sshd_server.ssh_config} -o BatchMode=yes -W %h:%p sshd-1 2>/dev/null\n"))
    hosts.append(SSHHost("db2", SSHTarget(host="viaproxy"), "ignored", ssh_config_path=config))
    assert server_address(hosts[0]) == "127.0.0.2"


def test_lost_connection_is_an_error_and_the_host_reconnects(host: SSHHost) -> None:
    mark = marker()
    background = host.start(f"sleep {mark}")
    assert background._pgid_seen.wait(5) and background.pgid
    host._clients[-1].close()  # the connection drops
    with pytest.raises(HostError, match="connection was lost"):
        background.wait(timeout=10)
    assert "sleep" in remote_processes(f"sleep {mark}", 0)  # sshd leaves it running (no pty, no SIGHUP)
    host.run(f"kill -- -{background.pgid}")  # a new connection
    assert remote_processes(f"sleep {mark}") == ""


@pytest.mark.skipif(shutil.which("sudo") is not None, reason="sudo is installed here")
def test_missing_sudo_is_explained(host: SSHHost) -> None:
    host.resolved = dataclasses.replace(host.resolved, sudo=True)  # as if logged in as a non-root user
    with pytest.raises(HostError, match="sudo is not installed"):
        host.run("true", privileged=True)
    assert host.run("true").ok  # unprivileged commands do not use sudo


FAKE_SUDO = """#!/bin/sh
# sudo -n as configured by the test: refuse (a password would be needed) or run the command
if [ -e "$(dirname "$0")/deny" ]; then echo "sudo: a password is required" >&2; exit 1; fi
[ "$1" = -n ] && shift; [ "$1" = -- ] && shift
exec "$@"
"""


@pytest.fixture
def fake_sudo_host() -> Iterator[tuple[SSHHost, Path]]:
    """A host on an sshd whose PATH starts with a fake `sudo`, used as if the user were not root."""
    root = Path(tempfile.mkdtemp(prefix="resync-sshd-sudo-"))
    (root / "bin").mkdir()
    (root / "bin" / "sudo").write_text(FAKE_SUDO)
    (root / "bin" / "sudo").chmod(0o755)
    server = TestSSHD.start(root, extra_config=f"SetEnv PATH={root / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin\n")
    host = SSHHost("db1", server.settings(), "127.0.0.1", ssh_config_path=server.empty_ssh_config())
    host.resolved = dataclasses.replace(host.resolved, sudo=True)
    try:
        yield host, root / "bin"
    finally:
        host.close()
        server.stop()


def test_sudo_needing_a_password_is_explained(fake_sudo_host: tuple[SSHHost, Path]) -> None:
    host, fake = fake_sudo_host
    assert host.run("echo $(id -u)", privileged=True).stdout == "0\n"  # through sudo -n --
    (fake / "deny").touch()
    with pytest.raises(HostError, match="passwordless sudo is needed for this command") as info:
        host.run("systemctl stop mariadb", privileged=True, check=False)
    assert info.value.command == "systemctl stop mariadb"
    assert "NOPASSWD" in str(info.value)


def test_kill_of_a_privileged_background_goes_through_sudo(fake_sudo_host: tuple[SSHHost, Path]) -> None:
    host, _ = fake_sudo_host
    mark = marker()
    background = host.start(f"sleep {mark} | cat", privileged=True)
    assert background._pgid_seen.wait(5)
    background.kill()
    assert remote_processes(f"sleep {mark}") == ""
