"""LocalHost, and run_via_start: the one Host.run shared by local and SSH hosts."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from resync.model.errors import HostError
from resync.transport.local import CommandResult, Host, LocalHost, run_via_start


def test_local_run_returns_output_and_exit_code() -> None:
    host: Host = LocalHost("db1")
    result = host.run("echo out; echo err >&2; cat")
    assert (result.host, result.exit_code, result.stdout, result.stderr) == ("db1", 0, "out\n", "err\n")
    assert host.run("exit 4", check=False).exit_code == 4
    assert host.run("false | true", check=False).exit_code == 1  # pipefail


def test_local_run_failure_raises_with_exit_code_and_tail() -> None:
    with pytest.raises(HostError) as info:
        LocalHost("db1").run("echo 'the real reason' >&2; exit 3")
    assert (info.value.host, info.value.returncode) == ("db1", 3)
    assert "the real reason" in info.value.output_tail


def test_local_run_timeout_raises_without_exit_code() -> None:
    with pytest.raises(HostError, match="timed out") as info:
        LocalHost("db1").run("sleep 30", timeout=0.2)
    assert info.value.returncode is None


@dataclass
class _Started:
    result: CommandResult
    waited: list[float | None] = field(default_factory=list)

    def poll(self) -> int | None:
        return self.result.exit_code

    def wait(self, timeout: float | None = None) -> CommandResult:
        self.waited.append(timeout)
        return self.result

    def kill(self) -> None:
        pass


@dataclass
class _FakeHost:
    """Any Host (an SSHHost, say) gets the same run through its start()."""

    exit_code: int
    name: str = "db9"
    started: list[tuple[str, bool]] = field(default_factory=list)
    background: _Started | None = None

    def run(self, command: str, *, privileged: bool = False, timeout: float | None = None,
            check: bool = True) -> CommandResult:
        return run_via_start(self, command, privileged=privileged, timeout=timeout, check=check)

    def start(self, command: str, *, privileged: bool = False) -> _Started:
        self.started.append((command, privileged))
        self.background = _Started(CommandResult(self.name, command, self.exit_code, "", "boom"))
        return self.background

    def close(self) -> None:
        pass


def test_run_via_start_passes_privileged_and_timeout_through() -> None:
    host = _FakeHost(0)
    assert run_via_start(host, "true", privileged=True, timeout=7.0, check=True).ok
    assert host.started == [("true", True)]
    assert host.background is not None and host.background.waited == [7.0]


def test_run_via_start_checks_the_exit_code_only_when_asked() -> None:
    assert run_via_start(_FakeHost(2), "x", privileged=False, timeout=None, check=False).exit_code == 2
    with pytest.raises(HostError) as info:
        _FakeHost(2).run("x")
    assert (info.value.host, info.value.command, info.value.returncode) == ("db9", "x", 2)
    assert "boom" in info.value.output_tail
