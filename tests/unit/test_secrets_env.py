"""Secrets in their place (issue 14): commands resync starts do not inherit the password
variables they do not name; journals and their locks are 0600 in a 0700 directory; cleanup
refuses a journal started with another runbook."""

from __future__ import annotations

import io
import os
import shlex
import stat
from pathlib import Path

import pytest
from rich.console import Console

from resync.model.errors import GateRefused
from resync.model.runbook import load_runbook, parse_runbook
from resync.run.connect import make_host, secret_env_names
from resync.run.journal import Journal, JournalLock, atomic_write, private_dir
from resync.run.runner import cleanup
from resync.transport.local import LocalHost, child_environment, withheld
from resync.transport.ssh import SSHHost
from resync.transport.ssh_config import SSHTarget

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "runbooks" / "rebuild-old-primary.yaml"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the environment of child processes --------------------------------------------------------

def test_password_like_names_and_the_runbook_s_are_withheld() -> None:
    names = ["PATH", "HOME", "PWD", "DB1_PASSWORD", "MYSQL_PWD", "repl_password", "PASSWORD",
             "GPG_PASSPHRASE", "CHAT_WEBHOOK_URL", "PASSWORD_STORE_DIR", "SSH_AUTH_SOCK"]
    assert withheld(names, "systemctl start mariadb", {"CHAT_WEBHOOK_URL"}) == [
        "CHAT_WEBHOOK_URL", "DB1_PASSWORD", "GPG_PASSPHRASE", "MYSQL_PWD", "PASSWORD",
        "repl_password"]


def test_a_command_that_names_a_variable_gets_it() -> None:
    names = ["DB1_PASSWORD", "LB_PASSWORD", "HOOK_TOKEN"]
    assert withheld(names, 'curl -u "admin:$LB_PASSWORD" http://lb1/ -H "X: ${HOOK_TOKEN}"',
                    {"HOOK_TOKEN"}) == ["DB1_PASSWORD"]


def test_child_environment_keeps_everything_else() -> None:
    env = {"PATH": "/usr/bin", "LANG": "C.UTF-8", "REPL_PASSWORD": "x", "AWS_PROFILE": "ops"}
    assert child_environment("true", (), env) == {"PATH": "/usr/bin", "LANG": "C.UTF-8",
                                                  "AWS_PROFILE": "ops"}


def test_a_local_command_does_not_see_the_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB9_PASSWORD", "s3cret-9")
    monkeypatch.setenv("RUNBOOK_SECRET", "s3cret-r")
    monkeypatch.setenv("RESYNC_VISIBLE", "yes")
    host = LocalHost("db1", hidden_env={"RUNBOOK_SECRET"})
    out = host.run("env").stdout
    assert "RESYNC_VISIBLE=yes" in out
    assert "s3cret" not in out
    assert host.run('printf %s "$DB9_PASSWORD"').stdout == "s3cret-9"  # it names it: it needs it


def test_the_runbook_s_secret_variables_are_found_everywhere(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8") + (
        "notify:\n  webhooks: [{url_env: CHAT_WEBHOOK_URL}]\n")
    loaded = parse_runbook(text, tmp_path / "rb.yaml")
    assert secret_env_names(loaded) == {"DB1_PASSWORD", "DB2_PASSWORD", "REPL_PASSWORD",
                                        "CHAT_WEBHOOK_URL"}


def test_hosts_of_a_runbook_withhold_its_variables(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace("ssh: {host: db1, user: admin}",
                                                       "local: true")
    loaded = parse_runbook(text, tmp_path / "rb.yaml")
    local, remote = make_host(loaded, "db1"), make_host(loaded, "db2")
    assert isinstance(local, LocalHost) and isinstance(remote, SSHHost)
    assert local.hidden_env == remote.hidden_env == secret_env_names(loaded)


def test_a_proxy_command_runs_without_the_secrets(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("DB1_PASSWORD", "x")
    monkeypatch.setenv("HOOK", "y")
    host = SSHHost("db1", SSHTarget(), "127.0.0.1", ssh_config_path=tmp_path / "none",
                   hidden_env={"HOOK"})
    line = host._proxy_command("nc -x proxy:1080 %h %p")
    argv = shlex.split(line)
    assert argv[0] == "env" and {"DB1_PASSWORD", "HOOK"} <= {
        argv[i + 1] for i, a in enumerate(argv) if a == "-u"}
    assert argv[-3:] == ["/bin/sh", "-c", "exec nc -x proxy:1080 %h %p"]


# --- files: 0600 in 0700 -------------------------------------------------------------------------

def test_a_new_journal_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    previous = os.umask(0o022)  # the usual one: files 0644 unless made otherwise
    try:
        path = Path("resync-journal") / "verify-db1" / "journal.json"
        Journal.create(path, run_id="r", runbook_path="rb.yaml", runbook_sha256="0", steps=[])
    finally:
        os.umask(previous)
    assert mode(path) == 0o600
    assert mode(path.parent) == mode(path.parent.parent) == 0o700
    with JournalLock(path) as lock:
        assert mode(lock.path) == 0o600


def test_resync_s_own_directory_is_tightened_not_the_operator_s(tmp_path: Path) -> None:
    own, theirs = tmp_path / "resync-journal", tmp_path / "shared"
    own.mkdir(mode=0o755)
    theirs.mkdir(mode=0o755)
    own.chmod(0o755)
    theirs.chmod(0o755)
    private_dir(own)
    private_dir(theirs)
    assert (mode(own), mode(theirs)) == (0o700, 0o755)


def test_atomic_write_replaces_with_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text("old")
    path.chmod(0o644)
    atomic_write(path, "new")
    assert path.read_text() == "new" and mode(path) == 0o600


# --- cleanup ------------------------------------------------------------------------------------

def test_cleanup_refuses_a_journal_of_another_runbook(tmp_path: Path) -> None:
    runbook = tmp_path / "rb.yaml"
    runbook.write_text(EXAMPLE.read_text(encoding="utf-8"))
    path = tmp_path / "resync-journal" / "run.json"
    journal = Journal.create(path, run_id="r", runbook_path=str(runbook),
                             runbook_sha256=load_runbook(runbook).sha256, steps=[])
    journal.finish("done")
    runbook.write_text(runbook.read_text() + "# edited after the run\n")
    with pytest.raises(GateRefused, match=r"not the one this run was started with .* nothing was "
                                          r"deleted") as info:
        cleanup(path, None, Console(file=io.StringIO()), yes=True)
    assert info.value.exit_code == 3
