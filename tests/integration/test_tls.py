"""Secure by default (issue 14), on real servers: a sandbox pair with TLS from certificates this
test makes (openssl). After a resync the replica replicates over TLS with the source's certificate
verified; a wrong CA, or `tls: required` against a server without TLS, is refused in preflight
with nothing changed; the controller's connection with a CA is encrypted; no process a run
starts carries a password variable it does not need."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import journal_of, load_app_data, sql, write_runbook

from resync.model.runbook import load_runbook
from resync.run.connect import connection_spec
from resync.testing.sandbox import REPL_PASSWORD_ENV, SANDBOX_PASSWORD_ENV, Sandbox
from resync.testing.tls import make_ca, sandbox_ca
from resync.transport.mysql import connect

MARK = "RESYNC_TLS_TEST_CHILD"  # every process the run starts inherits it: the watch counts them


class EnvironWatch:
    """Samples /proc/*/environ while a run goes: processes that carry MARK descend from the run;
    apart from the run's own process, none may carry a secret's value. A copy of the run's
    process between fork and exec (the same command line: the run's memory, no command of its
    own yet) is the run itself; a process that execs while it is read is read next time."""

    def __init__(self, mark: str, secrets: list[str], allowed: set[int], run: list[str]) -> None:
        self.mark = f"{MARK}={mark}".encode()
        self.secrets = [s.encode() for s in secrets]
        self.allowed = allowed
        self.run_cmdline = "".join(f"{a}\0" for a in run).encode()
        self.children: set[int] = set()
        self.leaks: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit() or int(proc.name) in self.allowed:
                    continue
                try:  # a command line read on both sides: no exec between them
                    cmdline = (proc / "cmdline").read_bytes()
                    environ = (proc / "environ").read_bytes()
                    if (proc / "cmdline").read_bytes() != cmdline:
                        continue
                except OSError:
                    continue
                if self.mark in environ.split(b"\0") and cmdline != self.run_cmdline:
                    self.children.add(int(proc.name))
                    if any(s in environ for s in self.secrets):
                        self.leaks.append(cmdline.replace(b"\0", b" ").decode(
                            errors="replace")[:200])
            self.samples += 1
            time.sleep(0.01)

    def __enter__(self) -> EnvironWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def resync(tmp_path: Path, *args: str, watch_secrets: list[str] | None = None
           ) -> tuple[subprocess.CompletedProcess[str], EnvironWatch | None]:
    env = {**os.environ, "COLUMNS": "200", MARK: str(os.getpid())}
    argv = [sys.executable, "-m", "resync", *args]
    proc = subprocess.Popen(argv, cwd=tmp_path, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    watch = None
    if watch_secrets is not None:
        with EnvironWatch(str(os.getpid()), watch_secrets, {os.getpid(), proc.pid},
                          argv) as watch:
            out, err = proc.communicate(timeout=600)
    else:
        out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), watch


def tls_runbook(tmp_path: Path, pair: Sandbox, replication: dict[str, Any],
                host_tls: dict[str, Any] | None = None) -> Path:
    """db2 (the replica) rebuilt from db1; replication (and each host's mysql.tls) as given."""
    hosts = pair.runbook_hosts()
    for h in hosts.values():
        if host_tls is not None:
            h["mysql"]["tls"] = host_tls
    path = write_runbook(tmp_path, pair, donor="db1", recipient="db2", primary_after="db1",
                         hosts=hosts)
    doc = yaml.safe_load(path.read_text())
    doc["replication"].update(replication)
    path.write_text(yaml.safe_dump(doc))
    return path


def replica_status(pair: Sandbox) -> dict[str, str]:
    return pair["db2"].query("SHOW SLAVE STATUS")[0]


def nothing_changed(tmp_path: Path, pair: Sandbox, before: dict[str, str]) -> None:
    """The replica replicates from where it did; the journal shows no step past preflight; no
    datadir was moved aside."""
    after = replica_status(pair)
    for field in ("Master_Host", "Master_Port", "Slave_IO_Running", "Slave_SQL_Running",
                  "Master_SSL_Allowed"):
        assert after[field] == before[field], field
    journal = json.loads(journal_of(tmp_path).read_text())
    assert [s["state"] for s in journal["steps"][1:]] == ["pending"] * (len(journal["steps"]) - 1)
    assert not list(pair["db2"].base.glob("data.resync-*")), "no datadir was moved aside"


@pytest.fixture
def tls_pair(make_sandbox: Any) -> Sandbox:
    pair: Sandbox = make_sandbox(tls=True)
    pair.setup_replication("db1", "db2")  # plaintext at first: resync sets TLS up
    load_app_data(pair)
    return pair


def test_after_a_resync_replication_runs_over_verified_tls(tmp_path: Path,
                                                           tls_pair: Sandbox) -> None:
    pair, ca = tls_pair, str(sandbox_ca(tls_pair.root))
    assert replica_status(pair)["Master_SSL_Allowed"] == "No"
    runbook = tls_runbook(tmp_path, pair, {"tls": "required", "ca": ca},
                          {"mode": "required", "ca": ca, "verify_identity": True})
    secrets = [os.environ[SANDBOX_PASSWORD_ENV], os.environ[REPL_PASSWORD_ENV]]

    done, watch = resync(tmp_path, "run", "--yes", str(runbook), watch_secrets=secrets)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    shown = " ".join(done.stdout.split())
    assert f"replication TLS TLS, the source's certificate and host name verified with the CA " \
           f"{ca} — replication.tls: required" in shown
    assert "control connections db1 TLS (CA verified, host name checked), db2 TLS (CA verified, " \
           "host name checked)" in shown

    status = replica_status(pair)
    assert (status["Slave_IO_Running"], status["Slave_SQL_Running"]) == ("Yes", "Yes")
    assert status["Master_SSL_Allowed"] == "Yes"
    assert status["Master_SSL_Verify_Server_Cert"] == "Yes"
    assert status["Master_SSL_CA_File"] == ca
    # on the source, the replica's binlog dump connection is a TLS one, with a cipher
    dump = pair["db1"].query(
        "SELECT t.CONNECTION_TYPE AS kind, s.VARIABLE_VALUE AS cipher "
        "FROM performance_schema.threads t JOIN performance_schema.status_by_thread s "
        "USING (THREAD_ID) WHERE t.PROCESSLIST_COMMAND LIKE 'Binlog Dump%' "
        "AND t.PROCESSLIST_USER = 'repl' AND s.VARIABLE_NAME = 'Ssl_cipher'")
    assert len(dump) == 1 and dump[0]["kind"] == "SSL/TLS" and dump[0]["cipher"], dump
    sql(pair, "db1", "INSERT INTO app.orders VALUES (8001, 'over tls', 1)")
    deadline = time.monotonic() + 30
    while not pair["db2"].query("SELECT id FROM app.orders WHERE id = 8001"):
        assert time.monotonic() < deadline, "the write did not replicate over TLS"
        time.sleep(0.2)

    # no process the run started carried a password in its environment
    assert watch is not None and watch.samples > 10
    assert len(watch.children) >= 5, "the watch saw the run's processes"
    assert watch.leaks == [], watch.leaks
    # the journal and its directory are private
    journal = journal_of(tmp_path)
    assert (journal.stat().st_mode & 0o777, journal.parent.stat().st_mode & 0o777) == (0o600,
                                                                                       0o700)


def test_the_controller_connection_with_a_ca_is_encrypted(tmp_path: Path,
                                                          tls_pair: Sandbox) -> None:
    # the defaults (replication.tls preferred, no CA anywhere): detection finds TLS offered
    done, _ = resync(tmp_path, "plan", "--detect", str(tls_runbook(tmp_path, tls_pair, {})))
    assert done.returncode == 0, done.stdout + done.stderr
    shown = " ".join(done.stdout.split())
    assert "replication TLS TLS, the source's certificate NOT verified (give replication.ca to " \
           "verify it) — tls: preferred, and the source offers TLS (detected)" in shown
    assert "control connections db1 TLS (unverified), db2 TLS (unverified)" in shown
    ca = str(sandbox_ca(tls_pair.root))
    runbook = tls_runbook(tmp_path, tls_pair, {}, {"ca": ca, "verify_identity": True})
    session = connect(connection_spec(load_runbook(runbook), "db1"))
    try:
        assert session.encrypted
        cipher = session.one("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert cipher is not None and cipher["Value"], cipher
    finally:
        session.close()
    # with a CA that did not sign the server's certificate: refused (exit 3), nothing asked
    wrong = str(make_ca(tmp_path / "wrong", "another CA").cert)
    runbook = tls_runbook(tmp_path, tls_pair, {}, {"ca": wrong})
    done, _ = resync(tmp_path, "plan", "--detect", str(runbook))
    assert done.returncode == 3, done.stdout + done.stderr
    assert "[db1] TLS with resync@127.0.0.1" in done.stderr
    assert "certificate" in done.stderr and "check mysql.tls.ca" in done.stderr


def test_a_wrong_replication_ca_fails_in_preflight_and_nothing_changes(
        tmp_path: Path, tls_pair: Sandbox) -> None:
    pair = tls_pair
    wrong = str(make_ca(tmp_path / "wrong", "another CA").cert)
    runbook = tls_runbook(tmp_path, pair, {"ca": wrong})
    before = replica_status(pair)
    done, _ = resync(tmp_path, "run", "--yes", str(runbook))
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    message = " ".join((done.stdout + done.stderr).split())
    assert f"the CA {wrong} on db2 does not verify db1's certificate for 127.0.0.1" in message
    nothing_changed(tmp_path, pair, before)


def test_tls_required_against_a_server_without_tls_is_refused(tmp_path: Path,
                                                              sandbox_pair: Any) -> None:
    if not isinstance(sandbox_pair, Sandbox):
        pytest.skip("needs the local sandbox (its journal and datadirs are read here)")
    pair = sandbox_pair
    load_app_data(pair)
    before = replica_status(pair)
    runbook = tls_runbook(tmp_path, pair, {"tls": "required"})
    done, _ = resync(tmp_path, "run", "--yes", str(runbook))
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    message = " ".join((done.stdout + done.stderr).split())
    assert "db1 offers no TLS (have_ssl / its TLS channel: DISABLED) but replication.tls is " \
           "required" in message
    nothing_changed(tmp_path, pair, before)
    # the controller's own connection, required: refused before anything is asked
    (tmp_path / "resync-journal").rename(tmp_path / "first-journal")
    runbook = tls_runbook(tmp_path, pair, {}, {"mode": "required"})
    done, _ = resync(tmp_path, "plan", "--detect", str(runbook))
    assert done.returncode == 3, done.stdout + done.stderr
    assert "TLS is required (mysql.tls) but the server offers none" in done.stderr
