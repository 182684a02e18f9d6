"""A real OpenSSH sshd for the integration tests (no mocks), listening on 127.0.0.1, .2 and .3.

`TestSSHD.start()` runs `/usr/sbin/sshd -D -e -f <config>` on a free port with its own ed25519 host
key and an authorized client key generated for the test, and writes the client side: a
known_hosts file (all three addresses) and an ssh_config with the aliases `sshd-1`, `sshd-2` and
`sshd-3`. Tests log in as root (sshd needs root anyway). The same sshd reached as 127.0.0.2 and
127.0.0.3 stands for two distinct database hosts.

Fixture: `sshd_server`, one per session (skips, naming what is missing, without sshd or root).
Import them into a conftest: `from sshd import sshd_server  # noqa: F401`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from resync.transport.ssh_config import SSHTarget

SSHD = "/usr/sbin/sshd"
ADDRESSES = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
ALIASES = {f"sshd-{i}": a for i, a in enumerate(ADDRESSES, 1)}
INSTALL_HINT = "apt-get install -y openssh-server openssh-client"


def missing_tools() -> list[str]:
    missing = [SSHD] if not os.access(SSHD, os.X_OK) else []
    missing += [t for t in ("ssh-keygen", "setsid", "pgrep") if shutil.which(t) is None]
    if os.geteuid() != 0:
        missing.append("root (the test sshd runs as root and the tests log in as root)")
    return missing


def keygen(path: Path, comment: str = "resync-test") -> Path:
    """A new passphrase-less ed25519 key pair at path (private) and path.pub."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL)
    return path


def free_port() -> int:
    """A port free on all three addresses (checked by binding each)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        try:
            for address in ADDRESSES:
                with socket.socket() as s:
                    s.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port on 127.0.0.1-3")


@dataclass
class TestSSHD:
    __test__ = False  # not a test class

    root: Path
    port: int
    host_key: Path
    client_key: Path
    known_hosts: Path
    ssh_config: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def start(cls, root: Path | None = None, extra_config: str = "") -> TestSSHD:
        """A running sshd (extra_config: more sshd_config lines, e.g. `SetEnv PATH=...`)."""
        if missing := missing_tools():
            pytest.skip(f"test sshd needs {', '.join(missing)} ({INSTALL_HINT})")
        root = root or Path(tempfile.mkdtemp(prefix="resync-sshd-"))
        host_key, client_key = keygen(root / "host_ed25519", "test-sshd"), keygen(root / "client_ed25519")
        (root / "authorized_keys").write_text(client_key.with_suffix(".pub").read_text())
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation directory
        last_error = ""
        for _ in range(5):  # the free port may be taken between the check and sshd's bind
            server = cls(root, free_port(), host_key, client_key, root / "known_hosts", root / "ssh_config")
            server._write_files(extra_config)
            try:
                server._launch()
                return server
            except RuntimeError as exc:
                last_error = str(exc)
        raise RuntimeError(f"test sshd did not start: {last_error}")

    def _write_files(self, extra_config: str) -> None:
        listen = "".join(f"ListenAddress {a}\n" for a in ADDRESSES)
        (self.root / "sshd_config").write_text(
            f"Port {self.port}\n{listen}HostKey {self.host_key}\nPidFile {self.root / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}\n"
            "StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPubkeyAuthentication yes\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nAllowTcpForwarding yes\n"
            "X11Forwarding no\nPrintMotd no\nMaxStartups 100\nMaxSessions 100\nLogLevel VERBOSE\n"
            + extra_config)
        self.known_hosts.write_text(self.known_hosts_text())
        self.ssh_config.write_text("".join(self.ssh_config_stanza(alias, a) for alias, a in ALIASES.items()))

    def ssh_config_stanza(self, alias: str, address: str, extra: str = "") -> str:
        """A `Host alias` block reaching this sshd at address as root (extra: more option lines)."""
        return (f"Host {alias}\n  HostName {address}\n  Port {self.port}\n  User root\n"
                f"  IdentityFile {self.client_key}\n  UserKnownHostsFile {self.known_hosts}\n{extra}")

    def known_hosts_text(self, host_key: Path | None = None) -> str:
        """known_hosts lines for the three addresses (of another key, to fake a changed host key)."""
        key = " ".join((host_key or self.host_key).with_suffix(".pub").read_text().split()[:2])
        return "".join(f"[{a}]:{self.port} {key}\n" for a in ADDRESSES)

    def _launch(self) -> None:
        log = (self.root / "sshd.log").open("ab")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 10
        pending = list(ADDRESSES)
        while pending and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited {self.proc.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection((pending[0], self.port), timeout=1) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        pending.pop(0)
            except OSError:
                time.sleep(0.05)
        if pending:
            self.stop(remove=False)
            raise RuntimeError(f"sshd not answering on {pending[0]}:{self.port}: {self.log_tail()}")

    def log_tail(self) -> str:
        path = self.root / "sshd.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def settings(self, address: str = "127.0.0.1", **overrides: Any) -> SSHTarget:
        """SSH settings reaching this sshd as root at address, without any ssh config."""
        values: dict[str, Any] = {"host": address, "user": "root", "port": self.port,
                                  "key_file": str(self.client_key), "known_hosts": str(self.known_hosts)}
        return SSHTarget(**{**values, **overrides})

    def empty_ssh_config(self) -> Path:
        """An empty ssh config, so that tests do not depend on the user's ~/.ssh/config."""
        path = self.root / "empty_ssh_config"
        path.touch()
        return path

    def stop(self, *, remove: bool = True) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # the listener only; sessions of finished tests are gone already
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[TestSSHD]:
    """One running test sshd for the session (skips, naming what is missing, without sshd or root)."""
    server = TestSSHD.start()
    try:
        yield server
    finally:
        server.stop()

