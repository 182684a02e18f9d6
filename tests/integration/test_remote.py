"""Across hosts: the database hosts are reached over SSH (a real sshd) at 127.0.0.2 and 127.0.0.3,
each MariaDB on its own address; the data flows donor -> recipient, never through the controller."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    fail_over_and_damage_db1,
    journal_of,
    load_app_data,
    resync,
    sql,
    start_run_until_copy,
    verify_ok,
    wait_rows,
    write_runbook,
)
from sshd import TestSSHD

from resync.testing.sandbox import Sandbox

ADDRESSES = {"db1": "127.0.0.2", "db2": "127.0.0.3"}


@pytest.fixture
def remote_pair(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    sandbox = make_sandbox(address=[ADDRESSES["db1"], ADDRESSES["db2"]])
    sandbox.setup_replication("db1", "db2")
    return sandbox


def ssh_hosts(pair: Sandbox, sshd: TestSSHD, **ssh_overrides: Any) -> dict[str, Any]:
    hosts = pair.runbook_hosts()
    for host in hosts.values():
        host["local"] = False
        host["ssh"] = {"host": host["address"], "user": "root", "port": sshd.port,
                       "key_file": str(sshd.client_key), "known_hosts": str(sshd.known_hosts),
                       **ssh_overrides}
    return hosts


def ssh_copy(sshd: TestSSHD, **extra: Any) -> dict[str, Any]:
    """The donor's own OpenSSH client reaches the recipient with the test key."""
    return {"method": "ssh", "ssh": {"options": ["-i", str(sshd.client_key), "-p", str(sshd.port),
                                                 "-o", f"UserKnownHostsFile={sshd.known_hosts}"]},
            **extra}


@pytest.mark.parametrize("method", ["stream", "ssh"])
def test_seed_scenario_over_ssh(tmp_path: Path, remote_pair: Sandbox, sshd_server: TestSSHD,
                                method: str) -> None:
    pair = remote_pair
    load_app_data(pair)
    fail_over_and_damage_db1(pair)
    copy = ssh_copy(sshd_server) if method == "ssh" else {}
    runbook = write_runbook(tmp_path, pair, donor="db2", recipient="db1",
                            hosts=ssh_hosts(pair, sshd_server), copy=copy)

    resync(tmp_path, "run", "--yes", str(runbook), check=True)

    assert sql(pair, "db1", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 5001") == [{"n": 1}]
    sql(pair, "db1", "INSERT INTO app.orders VALUES (7001, 'after resync', 2)")
    wait_rows(pair, "db2", "SELECT item FROM app.orders WHERE id = 7001", [{"item": "after resync"}])
    verify_ok(tmp_path, runbook)
    journal = json.loads(journal_of(tmp_path).read_text())
    shells = [c for c in journal["commands"] if c["kind"] == "shell"]
    assert any(("ssh -o BatchMode=yes" in c["text"]) == (method == "ssh") and "tar -c" in c["text"]
               for c in shells), "the copy went the chosen way"


@pytest.mark.parametrize("method", ["stream", "ssh"])
def test_replica_rebuild_over_ssh_compressed(tmp_path: Path, remote_pair: Sandbox,
                                            sshd_server: TestSSHD, method: str) -> None:
    pair = remote_pair
    load_app_data(pair)
    conn_drift = "UPDATE app.orders SET qty = -1 WHERE id < 50"
    sql(pair, "db2", "SET GLOBAL read_only = 0")
    from helpers import connect

    conn = connect(pair, "db2")
    with conn.cursor() as cur:
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.execute(conn_drift)
    conn.close()
    copy = {"compress": "zstd"} if method == "stream" else ssh_copy(sshd_server, compress="lz4")
    runbook = write_runbook(tmp_path, pair, donor="db1", recipient="db2", primary_after="db1",
                            hosts=ssh_hosts(pair, sshd_server), copy=copy)

    resync(tmp_path, "run", "--yes", str(runbook), check=True)

    assert sql(pair, "db2", "SELECT COUNT(*) AS n FROM app.orders WHERE qty = -1") == [{"n": 0}]
    verify_ok(tmp_path, runbook)


def test_unknown_host_key_is_refused(tmp_path: Path, remote_pair: Sandbox, sshd_server: TestSSHD) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.touch()
    hosts = ssh_hosts(remote_pair, sshd_server, known_hosts=str(empty))
    runbook = write_runbook(tmp_path, remote_pair, donor="db2", recipient="db1", hosts=hosts)
    proc = resync(tmp_path, "run", "--yes", str(runbook))
    assert proc.returncode == 3, proc.stderr
    assert "ssh-keyscan" in proc.stderr
    assert not (tmp_path / "resync-journal").exists()


def test_wrong_key_is_a_clear_authentication_error(tmp_path: Path, remote_pair: Sandbox,
                                                   sshd_server: TestSSHD) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    hosts = ssh_hosts(remote_pair, sshd_server, key_file=str(other))
    runbook = write_runbook(tmp_path, remote_pair, donor="db2", recipient="db1", hosts=hosts)
    proc = resync(tmp_path, "run", "--yes", str(runbook))
    assert proc.returncode == 3, proc.stderr
    assert "authentication failed" in proc.stderr


def test_receiver_port_taken_is_refused(tmp_path: Path, remote_pair: Sandbox,
                                        sshd_server: TestSSHD) -> None:
    runbook = write_runbook(tmp_path, remote_pair, donor="db2", recipient="db1",
                            hosts=ssh_hosts(remote_pair, sshd_server))
    port = json.loads(json.dumps(__import__("yaml").safe_load(runbook.read_text())))["copy"]["port"]
    squatter = subprocess.Popen(["nc", "-l", ADDRESSES["db1"], str(port)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        proc = resync(tmp_path, "run", "--yes", str(runbook))
    finally:
        squatter.kill()
    assert proc.returncode == 3, proc.stderr
    assert f"something already listens on port {port}" in proc.stderr


def signal_donor_tar(datadir: Path, sig: signal.Signals, timeout: float = 15.0) -> None:
    """Signal only the sending `tar` process itself (not the shells around it), once it runs:
    the copy step starts it after its own preparations (leftovers, relay, token)."""
    deadline = time.monotonic() + timeout
    while True:
        senders = []
        for proc in Path("/proc").iterdir():
            try:
                if (proc / "comm").read_text().strip() != "tar":
                    continue
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"-c" in argv and str(datadir).encode() in argv:
                senders.append(int(proc.name))
        if senders or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert len(senders) == 1, f"expected one sending tar, found {len(senders)}"
    os.kill(senders[0], sig)


def test_sender_killed_mid_copy_then_resume_redoes_the_copy(
        tmp_path: Path, remote_pair: Sandbox, sshd_server: TestSSHD) -> None:
    pair = remote_pair
    load_app_data(pair)
    fail_over_and_damage_db1(pair)
    runbook = write_runbook(tmp_path, pair, donor="db2", recipient="db1",
                            hosts=ssh_hosts(pair, sshd_server), copy={"rate_limit_mb_per_s": 5})
    proc = start_run_until_copy(tmp_path, runbook, "running")
    signal_donor_tar(pair["db2"].datadir, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    assert b"copy sender" in stderr or b"copy receiver" in stderr
    assert b"fix the cause, then `resync resume " in stderr, "the operator is told what next"
    journal = journal_of(tmp_path)
    data = json.loads(journal.read_text())
    old = Path(data["captured"]["recipient.old_datadir"])
    assert (old / "app" / "orders.ibd").exists(), "the old datadir is intact"
    assert next(s for s in data["steps"] if s["key"].startswith("copy-"))["state"] == "failed"

    resync(tmp_path, "resume", "--yes", str(journal), check=True)

    assert json.loads(journal.read_text())["outcome"] == "done"
    verify_ok(tmp_path, runbook)


def test_stalled_copy_is_stopped_and_keeps_the_old_datadir(
        tmp_path: Path, remote_pair: Sandbox, sshd_server: TestSSHD) -> None:
    pair = remote_pair
    load_app_data(pair)
    runbook = write_runbook(tmp_path, pair, donor="db2", recipient="db1",
                            hosts=ssh_hosts(pair, sshd_server),
                            copy={"rate_limit_mb_per_s": 5, "stall_timeout": 3})
    proc = start_run_until_copy(tmp_path, runbook, "running")
    signal_donor_tar(pair["db2"].datadir, signal.SIGSTOP)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    assert b"copy stalled: no progress for 3s" in stderr
    time.sleep(1)
    leftovers = subprocess.run(["pgrep", "-f", f"resync-relay-.* receive {ADDRESSES['db1']}"],
                               capture_output=True)
    assert leftovers.returncode == 1, "both ends are stopped"
    data = json.loads(journal_of(tmp_path).read_text())
    assert Path(data["captured"]["recipient.old_datadir"], "app", "orders.ibd").exists()


def test_plan_detect_shows_versions_tools_and_estimate(tmp_path: Path, remote_pair: Sandbox,
                                                       sshd_server: TestSSHD) -> None:
    runbook = write_runbook(tmp_path, remote_pair, donor="db2", recipient="db1",
                            hosts=ssh_hosts(remote_pair, sshd_server))
    out = resync(tmp_path, "plan", "--detect", "--format", "markdown", str(runbook), check=True).stdout
    assert "detected from the servers" in out
    assert "/tmp/resync-relay-" in out  # the copy's relay, installed on both ends, is shown
    assert "MB/s (probe): copy ~" in out and "write-downtime ~" in out
    assert "PLAINTEXT on the wire" in out


def test_ssh_method_preflight_explains_an_unreachable_recipient(
        tmp_path: Path, remote_pair: Sandbox, sshd_server: TestSSHD) -> None:
    copy = {"method": "ssh", "ssh": {"options": ["-p", str(sshd_server.port), "-o",
                                                 "IdentitiesOnly=yes", "-i", "/nonexistent"]}}
    runbook = write_runbook(tmp_path, remote_pair, donor="db2", recipient="db1",
                            hosts=ssh_hosts(remote_pair, sshd_server), copy=copy)
    proc = resync(tmp_path, "check", str(runbook))
    assert proc.returncode == 3
    assert "db2: ssh to db1" in proc.stdout and "FAIL" in proc.stdout
    assert "cannot ssh to" in proc.stdout and "forward" in proc.stdout


def test_check_with_ssh_method_measures_the_link(tmp_path: Path, remote_pair: Sandbox,
                                                 sshd_server: TestSSHD) -> None:
    runbook = write_runbook(tmp_path, remote_pair, donor="db2", recipient="db1",
                            hosts=ssh_hosts(remote_pair, sshd_server), copy=ssh_copy(sshd_server))
    out = resync(tmp_path, "check", str(runbook), "--all", check=True).stdout
    assert "db2: ssh to db1" in out and "FAIL" not in out
    assert "downtime estimate" in out and "MB/s (probe)" in out
    assert not list(Path(remote_pair["db1"].datadir).parent.glob(".resync-probe.*"))
