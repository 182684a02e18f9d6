"""One Host interface for running commands, with one contract: on this machine (LocalHost) or over
SSH (resync.transport.ssh.SSHHost).

Errors carry the host, the command, the exit code and the tail of the output.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from resync.model.errors import HostError

TAIL_CHARS = 2000
# names of variables that hold a password by convention (DB1_PASSWORD, MYSQL_PWD, ...): no
# command resync starts gets them, unless its text names the variable itself
PASSWORD_NAME = re.compile(r"(^|_)(PASSWORD|PASSWD|PASSPHRASE)$|^MYSQL_PWD$", re.IGNORECASE)


def withheld(names: Collection[str], command: str, hidden: Collection[str] = ()) -> list[str]:
    """Which of the environment's `names` a command must not see: the `hidden` ones (a runbook's
    `*_env` secrets) and any password-like name, except those the command names ($NAME, ${NAME})
    because it needs them."""
    named = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", command))
    return sorted(n for n in names
                  if (n in hidden or PASSWORD_NAME.search(n)) and n not in named)


def child_environment(command: str, hidden: Collection[str] = (),
                      environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a command on this machine runs with: this process's, without the secrets
    it has no use for (a child's environment is readable in /proc/<pid>/environ, and passed on
    to everything it starts: a server, a relay, a hook)."""
    env = dict(os.environ if environ is None else environ)
    for name in withheld(env, command, hidden):
        del env[name]
    return env


@dataclass(frozen=True)
class CommandResult:
    host: str
    command: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self) -> str:
        return (self.stdout + self.stderr)[-TAIL_CHARS:]


class Background(Protocol):
    """A command running in the background (the two ends of a stream copy)."""

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> CommandResult: ...
    def kill(self) -> None: ...


class Host(Protocol):
    name: str

    def run(self, command: str, *, privileged: bool = False, timeout: float | None = None,
            check: bool = True) -> CommandResult: ...
    def start(self, command: str, *, privileged: bool = False) -> Background: ...
    def close(self) -> None: ...


def _elevate(command: str, privileged: bool) -> list[str]:
    argv = ["bash", "-o", "pipefail", "-c", command]
    if privileged and os.geteuid() != 0:
        # -n: never prompt; a password prompt would hang an unattended run
        argv = ["sudo", "-n", "--", *argv]
    return argv


def run_via_start(host: Host, command: str, *, privileged: bool, timeout: float | None,
                  check: bool) -> CommandResult:
    """Host.run for every kind of host: start the command, wait for it, and (check) turn a non-zero
    exit into a HostError. One implementation, so that local and SSH hosts cannot drift apart in
    what a failure looks like."""
    result = host.start(command, privileged=privileged).wait(timeout=timeout)
    if check and not result.ok:
        raise HostError(host.name, command, result.exit_code, result.tail())
    return result


class LocalBackground:
    def __init__(self, host: str, command: str, proc: subprocess.Popen[str]) -> None:
        self.host, self.command, self.proc = host, command, proc

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float | None = None) -> CommandResult:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.proc.communicate()
            raise HostError(self.host, self.command, None, (out + err)[-TAIL_CHARS:]) from None
        return CommandResult(self.host, self.command, self.proc.returncode, out, err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            # the command runs in its own process group: kill the whole pipeline
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


class LocalHost:
    """Commands on this machine, through bash with pipefail, without the secrets of the
    environment they do not name (`hidden_env`: the runbook's `*_env` variables)."""

    def __init__(self, name: str, *, hidden_env: Collection[str] = ()) -> None:
        self.name = name
        self.hidden_env = frozenset(hidden_env)

    def run(self, command: str, *, privileged: bool = False, timeout: float | None = None,
            check: bool = True) -> CommandResult:
        return run_via_start(self, command, privileged=privileged, timeout=timeout, check=check)

    def start(self, command: str, *, privileged: bool = False) -> LocalBackground:
        proc = subprocess.Popen(
            _elevate(command, privileged), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
            env=child_environment(command, self.hidden_env))
        return LocalBackground(self.name, command, proc)

    def close(self) -> None:
        pass
