"""scripts/setup.sh holds services back while apt-get installs packages and leaves the machine
as it was: the invoke-rc.d policy it writes is gone in every exit path, one it finds is kept."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOLD = ROOT / "scripts/hold-services.sh"
MARK = "written by resync's scripts/hold-services.sh"


def hold(policy: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RESYNC_POLICY_RC_D": str(policy)}
    return subprocess.run(["bash", str(HOLD), *command], env=env, capture_output=True,
                          text=True, timeout=30)


def test_the_policy_holds_during_the_command_and_is_gone_after(tmp_path: Path) -> None:
    policy = tmp_path / "policy-rc.d"
    done = hold(policy, "sh", "-c", f'"{policy}"; echo "policy answered $?"; cat "{policy}"')
    assert done.returncode == 0, done.stderr
    assert "policy answered 101" in done.stdout and MARK in done.stdout
    assert not policy.exists()


def test_a_failing_command_keeps_its_exit_code_and_removes_the_policy(tmp_path: Path) -> None:
    policy = tmp_path / "policy-rc.d"
    done = hold(policy, "sh", "-c", "exit 7")
    assert done.returncode == 7
    assert not policy.exists()


def test_an_interrupted_install_removes_the_policy(tmp_path: Path) -> None:
    policy = tmp_path / "policy-rc.d"
    env = {**os.environ, "RESYNC_POLICY_RC_D": str(policy)}
    proc = subprocess.Popen(["bash", str(HOLD), "sleep", "30"], env=env)
    deadline = time.monotonic() + 10
    while not policy.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert policy.exists(), "the policy is in place while the command runs"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 143
    assert not policy.exists()


def test_an_existing_policy_is_the_machines_own_and_stays(tmp_path: Path) -> None:
    policy = tmp_path / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 0\n")
    done = hold(policy, "true")
    assert done.returncode == 0
    assert policy.read_text() == "#!/bin/sh\nexit 0\n"


def test_setup_uses_the_wrapper_for_apt_get_install() -> None:
    setup = (ROOT / "scripts/setup.sh").read_text()
    assert "hold-services.sh" in setup and "policy-rc.d" not in setup.replace(
        "# services must not start on install", "")


@pytest.mark.skipif(not Path("/usr/sbin/invoke-rc.d").exists(), reason="not a Debian machine: "
                    "no invoke-rc.d, so no policy-rc.d to check")
def test_setup_left_no_policy_behind() -> None:
    """Run after `scripts/setup.sh` (README's test command runs it first): nothing of ours left."""
    policy = Path("/usr/sbin/policy-rc.d")
    assert not policy.exists() or MARK not in policy.read_text(errors="replace")
