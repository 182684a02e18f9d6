"""The sandbox itself, against real mariadbd processes (no mocks)."""

from __future__ import annotations

import fnmatch
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pymysql
import pytest

from resync.testing.sandbox import Sandbox, SandboxError

COPY_EXCLUDE = ("mysql-bin.*", "relay-bin.*", "master*.info", "relay-log*.info",
                "multi-master.info", "*.pid", "ibtmp1")


def connect(host: dict[str, Any]) -> pymysql.Connection:
    m = host["mysql"]
    return pymysql.connect(host=m["host"], port=m["port"], user=m["user"],
                           password=os.environ[m["password_env"]], autocommit=True,
                           connect_timeout=5)


def scalar(host: dict[str, Any], sql: str, *args: Any) -> Any:
    with connect(host) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
        return None if row is None else row[0]


def execute(host: dict[str, Any], *statements: str) -> None:
    with connect(host) as conn, conn.cursor() as cur:
        for sql in statements:
            cur.execute(sql)


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.1)


def shell(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120)


def write_row(hosts: dict[str, dict[str, Any]]) -> str:
    """Insert a unique row on db1, wait until it is on db2; returns its value."""
    token = uuid.uuid4().hex
    execute(hosts["db1"], "CREATE DATABASE IF NOT EXISTS sandbox_test",
            "CREATE TABLE IF NOT EXISTS sandbox_test.t (v VARCHAR(64) PRIMARY KEY)",
            f"INSERT INTO sandbox_test.t VALUES ('{token}')")
    wait_for(lambda: has_row(hosts["db2"], token), what=f"row {token} on db2")
    return token


def has_row(host: dict[str, Any], token: str) -> bool:
    try:
        return bool(scalar(host, "SELECT COUNT(*) FROM sandbox_test.t WHERE v = %s", token))
    except pymysql.err.ProgrammingError:  # table not replicated yet
        return False


def can_connect(host: dict[str, Any]) -> bool:
    try:
        connect(host).close()
    except pymysql.err.OperationalError:
        return False
    return True


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() != b""
    except OSError:
        return False


def test_two_instances_start(sandbox_pair: Any) -> None:
    hosts = sandbox_pair.runbook_hosts()
    assert set(hosts) == {"db1", "db2"}
    ids = {name: scalar(h, "SELECT @@server_id") for name, h in hosts.items()}
    assert ids["db1"] != ids["db2"]
    assert all(scalar(h, "SELECT @@log_bin") == 1 for h in hosts.values())
    if isinstance(sandbox_pair, Sandbox):
        for server in sandbox_pair:
            assert server.is_running() and server.pidfile.exists()
            assert server.datadir.owner() == "mysql" and server.datadir.group() == "mysql"
            assert scalar(hosts[server.name], "SELECT @@port") == server.port


def test_row_written_on_db1_appears_on_db2(sandbox_pair: Any) -> None:
    write_row(sandbox_pair.runbook_hosts())


def test_stop_then_start_round_trip_keeps_data(sandbox_pair: Any) -> None:
    hosts = sandbox_pair.runbook_hosts()
    before = write_row(hosts)
    for name in ("db2", "db1"):
        for _ in range(2):  # stopping a stopped server succeeds
            done = shell(hosts[name]["service"]["stop"])
            assert done.returncode == 0, done.stderr
        with pytest.raises(pymysql.err.OperationalError):
            connect(hosts[name])
    if isinstance(sandbox_pair, Sandbox):
        assert not any(server.is_running() for server in sandbox_pair)
    for name in ("db1", "db2", "db2"):  # starting a running server succeeds too
        done = shell(hosts[name]["service"]["start"])
        assert done.returncode == 0, done.stderr
        wait_for(lambda n=name: can_connect(hosts[n]), what=f"{name} accepting connections")
    assert has_row(hosts["db1"], before) and has_row(hosts["db2"], before)
    write_row(hosts)  # replication resumed by itself after both restarts


def test_start_command_works_on_a_datadir_copied_from_the_other_server(
    make_sandbox: Any,
) -> None:
    """What resync does to the recipient: datadir moved aside, replaced by the donor's files."""
    sandbox = make_sandbox()
    sandbox.setup_replication("db1", "db2")
    hosts = sandbox.runbook_hosts()
    token = write_row(hosts)
    sandbox.stop_all()
    donor, recipient = sandbox["db1"], sandbox["db2"]
    recipient.datadir.rename(recipient.base / "data.old")
    shutil.copytree(donor.datadir, recipient.datadir, symlinks=True,
                    ignore=lambda _d, names: [n for n in names if
                                              any(fnmatch.fnmatch(n, p) for p in COPY_EXCLUDE)])
    subprocess.run(["chown", "-R", "mysql:mysql", str(recipient.datadir)], check=True)
    subprocess.run(recipient.start_command, shell=True, check=True, capture_output=True)
    assert has_row(hosts["db2"], token)
    assert scalar(hosts["db2"], "SELECT @@server_id") == recipient.server_id
    assert recipient.query("SHOW SLAVE STATUS") == []  # master.info was not copied
    recipient.stop()  # root on the socket works on the copy too
    assert not recipient.is_running()


def test_start_fails_fast_with_the_error_log_on_a_root_owned_datadir(make_sandbox: Any) -> None:
    sandbox = make_sandbox(("db1",))
    server = sandbox["db1"]
    server.stop()
    subprocess.run(["chown", "-R", "root:root", str(server.datadir)], check=True)
    started = time.monotonic()
    with pytest.raises(SandboxError, match="exited during startup") as failure:
        server.start()
    assert time.monotonic() - started < 20
    assert "Errcode: 13" in str(failure.value) or "Permission denied" in str(failure.value)
    assert not server.is_running()


def test_destroy_leaves_no_mariadbd_of_ours_running(make_sandbox: Any) -> None:
    sandbox = make_sandbox()
    pids = [pid for server in sandbox for pid in server.pids()]
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    os.kill(pids[1], signal.SIGSTOP)  #: a hung server cannot shut down until resumed
    sandbox.destroy(grace=5)
    assert not any(alive(pid) for pid in pids)
    assert not sandbox.root.exists()
    sandbox.destroy()  # idempotent


def test_context_manager_destroys_on_error(sandbox_root: Path) -> None:
    root = sandbox_root
    pids: list[int] = []
    with pytest.raises(RuntimeError), Sandbox(root, ("db1",)) as sandbox:
        pids = sandbox["db1"].pids()
        raise RuntimeError("test failure inside the with block")
    assert pids and not any(alive(pid) for pid in pids)
    assert not root.exists()
