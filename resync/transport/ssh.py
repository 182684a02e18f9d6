"""Hosts reached over SSH (paramiko, for control only: bulk data never flows through it).

Same contract as LocalHost: `bash -o pipefail -c`, `sudo -n` for privileged commands of a non-root
user, HostError with host, command, exit code and output tail. The target is resolved from
~/.ssh/config as `ssh` would; host keys must be known (known_hosts), never silently added.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import socket
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, NoReturn

import paramiko

from resync.model.errors import BadInputError, HostError
from resync.transport.local import TAIL_CHARS, CommandResult, run_via_start, withheld
from resync.transport.ssh_config import ResolvedSSH, SSHTarget, parse_hop, read_ssh_config, resolve_ssh

log = logging.getLogger(__name__)

SSH_EXIT = 255
PGID_MARK = "resync-pgid:"
_SUDO_REFUSED = re.compile(r"^sudo: (a password is required|a terminal is required|.*no tty present)", re.M)


class _UnknownHostKey(paramiko.SSHException):
    def __init__(self, key: paramiko.PKey) -> None:
        super().__init__("unknown host key")
        self.key = key


class _Reject(paramiko.RejectPolicy):
    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> NoReturn:
        raise _UnknownHostKey(key)


class _WarnAndAccept(paramiko.MissingHostKeyPolicy):
    """accept_unknown_host_key: true. Nothing is written to known_hosts; a CHANGED key is still refused."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        log.warning("accepting the UNKNOWN host key of %s (%s %s) because accept_unknown_host_key is set",
                    hostname, key.get_name(), key.fingerprint)


def remote_command(command: str, sudo: bool) -> str:
    """The string sshd hands to the login shell: a new session whose id (= PGID, for kill) is printed
    on the first stderr line, then `[sudo -n --] bash -o pipefail -c COMMAND`."""
    elevate = "sudo -n -- " if sudo else ""
    script = f'printf "{PGID_MARK}%d\\n" "$$" >&2; exec {elevate}bash -o pipefail -c "$1"'
    # `; exit $?` keeps the login shell from exec'ing setsid, so setsid need not fork
    return f"setsid -w bash -c {shlex.quote(script)} resync {shlex.quote(command)}; exit $?"


def _text(chunks: list[bytes]) -> str:
    return b"".join(chunks).decode("utf-8", errors="replace")


class SSHBackground:
    """A command running on the remote host; its output is drained continuously by two threads."""

    def __init__(self, host: SSHHost, command: str, channel: paramiko.Channel, sudo: bool) -> None:
        self.host, self.command, self._chan, self._sudo = host, command, channel, sudo
        self._out: list[bytes] = []
        self._err: list[bytes] = []  # without the PGID line
        self.pgid: int | None = None
        self._killed = False
        self._pgid_seen = threading.Event()
        self._readers = [threading.Thread(target=self._pump, args=a, daemon=True) for a in (
            (channel.recv, self._out, False), (channel.recv_stderr, self._err, True))]
        for t in self._readers:
            t.start()

    def _pump(self, recv: Callable[[int], bytes], sink: list[bytes], first_line_is_pgid: bool) -> None:
        head = b""
        while data := recv(65536):
            if first_line_is_pgid and not self._pgid_seen.is_set():
                head += data
                if b"\n" not in head:
                    continue
                line, _, data = head.partition(b"\n")
                text = line.decode(errors="replace")
                if text.startswith(PGID_MARK) and text[len(PGID_MARK):].isdigit():
                    self.pgid = int(text[len(PGID_MARK):])
                else:
                    data = head
                self._pgid_seen.set()
            sink.append(data)
        if head and not self._pgid_seen.is_set():
            sink.append(head)
        self._pgid_seen.set()

    def poll(self) -> int | None:
        if any(t.is_alive() for t in self._readers) or not self._chan.exit_status_ready():
            return None
        return self._chan.recv_exit_status()  # -1: no status (killed by a signal, connection lost)

    def _finish(self, timeout: float | None) -> bool:
        """Wait until both streams are at EOF and the exit status is in (or the channel closed)."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())
        for t in self._readers:
            t.join(left())
        return self._chan.status_event.wait(left()) and not any(t.is_alive() for t in self._readers)

    def wait(self, timeout: float | None = None) -> CommandResult:
        if not self._finish(timeout) or self.poll() is None:
            self.kill()
            tail = (_text(self._out) + _text(self._err))[-TAIL_CHARS:]
            raise HostError(self.host.name, self.command, None, tail)
        self._chan.close()
        self.host._forget(self)
        result = CommandResult(self.host.name, self.command, self._chan.recv_exit_status(),
                               _text(self._out), _text(self._err))
        if result.exit_code == -1 and not self._killed:  # no exit status: the connection was lost
            raise HostError(self.host.name, self.command, SSH_EXIT, result.tail() + (
                "\nthe SSH connection was lost before the command finished (it may still be running)"))
        user = self.host.resolved.user
        if self._sudo and result.exit_code != 0 and _SUDO_REFUSED.search(result.stderr):
            raise HostError(self.host.name, self.command, result.exit_code, result.tail() + (
                f"\npasswordless sudo is needed for this command: sudo -n refused to run it as {user}. "
                f"Allow it with a NOPASSWD sudoers rule for {user}, or log in as root"))
        if self._sudo and result.exit_code == 127 and "sudo: not found" in result.stderr:
            raise HostError(self.host.name, self.command, 127, result.tail() + (
                f"\nsudo is not installed on {self.host.name}: install it, or log in as root"))
        return result

    def kill(self) -> None:
        """TERM (then KILL) the whole remote process group through a second channel, then close."""
        self._killed = True
        try:
            if self.poll() is None and self._pgid_seen.wait(10) and self.pgid:
                for sig, grace in (("TERM", 5.0), ("KILL", 2.0)):
                    self.host._signal(self.pgid, sig, self._sudo)
                    if self._finish(grace):
                        break
        finally:
            self._chan.close()  # unblocks the readers
            for t in self._readers:
                t.join(5)
            self.host._forget(self)


class SSHHost:
    """Commands on a remote host over one lazily opened SSH connection."""

    def __init__(self, name: str, settings: SSHTarget, address: str, *,
                 ssh_config_path: Path | None = None, connect: bool = False,
                 hidden_env: Collection[str] = ()) -> None:
        self.name, self.settings, self.address = name, settings, address
        # kept from a ProxyCommand (the one process it starts here); remote commands get no
        # variable of ours: paramiko sends none
        self.hidden_env = frozenset(hidden_env)
        self._config_text = read_ssh_config(ssh_config_path)
        self.resolved = resolve_ssh(self._config_text, settings, address)
        self._lock = threading.RLock()
        self._clients: list[paramiko.SSHClient] = []  # jump hosts first, the target last
        self._live: set[SSHBackground] = set()
        if connect:
            self._transport()

    # -- the Host protocol ---------------------------------------------------------------------
    def run(self, command: str, *, privileged: bool = False, timeout: float | None = None,
            check: bool = True) -> CommandResult:
        return run_via_start(self, command, privileged=privileged, timeout=timeout, check=check)

    def start(self, command: str, *, privileged: bool = False) -> SSHBackground:
        sudo = privileged and self.resolved.sudo
        channel = None
        try:
            channel = self._transport().open_session(timeout=self.resolved.connect_timeout)
            channel.exec_command(remote_command(command, sudo))
            channel.shutdown_write()  # stdin at EOF, like LocalHost's /dev/null
        except (paramiko.SSHException, OSError) as exc:
            if channel is not None:
                channel.close()
            raise HostError(self.name, command, SSH_EXIT, f"cannot start it over SSH: {exc}") from None
        background = SSHBackground(self, command, channel, sudo)
        with self._lock:
            self._live.add(background)
        return background

    def close(self) -> None:
        """Kill what still runs in the background (sshd would leave it running), then disconnect."""
        with self._lock:
            live = list(self._live)
        for background in live:
            background.kill()
        self._disconnect()

    # -- internals -----------------------------------------------------------------------------
    def _disconnect(self) -> None:
        with self._lock:
            for client in reversed(self._clients):
                client.close()
            self._clients.clear()

    def _forget(self, background: SSHBackground) -> None:
        with self._lock:
            self._live.discard(background)

    def _signal(self, pgid: int, sig: str, sudo: bool) -> None:
        try:
            chan = self._transport().open_session(timeout=10)
            chan.exec_command(f"{'sudo -n -- ' if sudo else ''}kill -{sig} -- -{pgid}")
            chan.status_event.wait(10)
            chan.close()
        except (HostError, paramiko.SSHException, OSError) as exc:
            log.warning("[%s] could not send SIG%s to remote process group %d: %s", self.name, sig, pgid, exc)

    def _transport(self) -> paramiko.Transport:
        with self._lock:
            transport = self._clients[-1].get_transport() if self._clients else None
            if transport is not None and transport.is_active():
                return transport
            self._disconnect()  # a dead connection: its channels (and backgrounds) are gone
            try:
                self._clients = self._connect(self.resolved, None, 0)
            except BadInputError as exc:
                raise self._fail(self.resolved, str(exc)) from None
            transport = self._clients[-1].get_transport()
            assert transport is not None
            return transport

    def _hop(self, spec: str) -> ResolvedSSH:
        user, host, port = parse_hop(spec)
        return resolve_ssh(self._config_text, SSHTarget(
            host=host, user=user, port=port, known_hosts=self.settings.known_hosts), host)

    def _connect(self, r: ResolvedSSH, sock: Any, depth: int) -> list[paramiko.SSHClient]:
        """Clients for r, preceded by those of its jump hosts (all open, or all closed on error)."""
        if depth > 8:
            raise BadInputError(f"ProxyJump loop reaching {r.lookup}")
        chain: list[paramiko.SSHClient] = []
        try:
            if sock is None and r.proxy_jump:
                chain = self._connect(self._hop(r.proxy_jump[0]), None, depth + 1)
                for spec in [*r.proxy_jump[1:], None]:
                    hop = r if spec is None else self._hop(spec)
                    sock = self._tunnel(chain[-1], hop)
                    if spec is not None:
                        chain += self._connect(hop, sock, depth + 1)
            elif sock is None and r.proxy_command:
                sock = paramiko.ProxyCommand(self._proxy_command(r.proxy_command))
            elif sock is None:
                sock = self._socket(r)
            return [*chain, self._handshake(r, sock)]
        except BaseException:
            for client in reversed(chain):
                client.close()
            raise

    def _proxy_command(self, command: str) -> str:
        """The ProxyCommand line, through `env -u` without the secrets it does not name
        (paramiko runs it with this process's environment)."""
        drop = withheld(os.environ, command, self.hidden_env)
        unset = "".join(f"-u {shlex.quote(n)} " for n in drop)
        return (f"env {unset}" if drop else "") + "/bin/sh -c " + shlex.quote("exec " + command)

    def _fail(self, r: ResolvedSSH, message: str) -> HostError:  # `ssh` exits 255 when it cannot connect
        return HostError(self.name, f"ssh {r.target}", SSH_EXIT, message)

    def _socket(self, r: ResolvedSSH) -> socket.socket:
        try:
            return socket.create_connection((r.hostname, r.port), timeout=r.connect_timeout)
        except OSError as exc:
            raise self._fail(r, f"cannot reach {r.hostname}:{r.port} ({exc or 'timed out'}, ConnectTimeout "
                                f"{r.connect_timeout:g} s): is the host up and sshd listening?") from None

    def _tunnel(self, jump: paramiko.SSHClient, r: ResolvedSSH) -> paramiko.Channel:
        transport = jump.get_transport()
        try:
            assert transport is not None
            return transport.open_channel("direct-tcpip", (r.hostname, r.port), ("127.0.0.1", 0),
                                          timeout=r.connect_timeout)
        except (paramiko.SSHException, OSError, AssertionError) as exc:
            raise self._fail(r, f"the jump host could not reach {r.hostname}:{r.port}: {exc} "
                                "(AllowTcpForwarding on the jump host?)") from None

    def _handshake(self, r: ResolvedSSH, sock: Any) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_WarnAndAccept() if r.accept_unknown_host_key else _Reject())
        keys = [f for f in r.identity_files if os.path.isfile(f)]
        name, port = (r.host_key_alias, 22) if r.host_key_alias else (r.hostname, r.port)
        try:
            for f in (f for f in r.known_hosts_files if os.path.isfile(f)):
                client.load_system_host_keys(f)  # all merged; the "system" set is never written back
            if r.identity_files and not keys:
                raise BadInputError(f"no such key file: {', '.join(r.identity_files)} (check ssh.key_file)")
            client.connect(name, port, username=r.user, allow_agent=True, look_for_keys=r.look_for_keys,
                           key_filename=keys or None,  # type: ignore[arg-type]  # a list is fine
                           timeout=r.connect_timeout, sock=sock, banner_timeout=r.connect_timeout,
                           auth_timeout=max(30.0, r.connect_timeout), channel_timeout=r.connect_timeout)
        except Exception as exc:
            client.close()
            sock.close()  # a socket, a jump channel or a proxy command
            raise self._fail(r, self._explain(r, exc, keys)) from None
        client.get_transport().set_keepalive(r.keepalive)  # type: ignore[union-attr]  # connected
        return client

    def _explain(self, r: ResolvedSSH, exc: Exception, keys: list[str]) -> str:
        if isinstance(exc, BadInputError):
            return str(exc)
        file = self.settings.known_hosts or "~/.ssh/known_hosts"
        keyscan = (f"after verifying the fingerprint out of band (on the server: ssh-keygen -lf "
                   f"/etc/ssh/ssh_host_ed25519_key.pub), run: ssh-keyscan -p {r.port} {r.hostname} >> {file}")
        if isinstance(exc, _UnknownHostKey):
            return (f"host key of {r.key_name} is not known ({exc.key.get_name()} {exc.key.fingerprint}; "
                    f"looked in {', '.join(r.known_hosts_files)}). Refusing to connect; {keyscan}")
        if isinstance(exc, paramiko.BadHostKeyException):
            return (f"host key of {r.key_name} has CHANGED: the server offers {exc.key.get_name()} "
                    f"{exc.key.fingerprint}, known_hosts expects {exc.expected_key.fingerprint}. This may "
                    f"be an attack, or a reinstalled server. Refusing to connect; if the new key is "
                    f"legitimate, remove the old one (ssh-keygen -R '{r.key_name}') and, {keyscan}")
        if isinstance(exc, paramiko.PasswordRequiredException):
            return (f"authentication failed for {r.target}: a key is passphrase-protected and resync never "
                    "asks for passphrases: load it into ssh-agent")
        if isinstance(exc, paramiko.AuthenticationException):
            tried = ", ".join(keys) or "~/.ssh/id_* (no IdentityFile)"
            agent = "the ssh agent" if os.environ.get("SSH_AUTH_SOCK") else "no agent (SSH_AUTH_SOCK unset)"
            return (f"authentication failed for {r.target} with keys {tried} and {agent} ({exc}); check "
                    "ssh.key_file / the agent / the server's authorized_keys")
        return (f"SSH handshake with {r.target} failed: {exc or type(exc).__name__} (is it an SSH server? "
                "proxy / jump host reachable?)")
