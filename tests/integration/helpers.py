"""Helpers shared by the end-to-end tests: runbooks for a pair, SQL on its servers, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors
import yaml

from resync.actions.dialect import ServerVersion, dialect_for
from resync.testing.sandbox import REPL_PASSWORD_ENV, SANDBOX_PASSWORD_ENV, Sandbox

COPY_PORT = 17900 + os.getpid() % 90


def write_runbook(tmp_path: Path, pair: Any, *, donor: str, recipient: str, mode: str = "auto",
                  lock_wait_timeout: int = 10, primary_after: str | None = None,
                  hosts: dict[str, Any] | None = None, copy: dict[str, Any] | None = None) -> Path:
    doc = {
        "version": 1, "name": f"test-{donor}-to-{recipient}", "hosts": hosts or pair.runbook_hosts(),
        "donor": donor, "recipient": recipient, "primary_after": primary_after or recipient,
        "replication": {"user": "repl", "password_env": REPL_PASSWORD_ENV, "mode": mode,
                        "healthy_timeout": 60},
        "copy": {"method": "stream", "port": COPY_PORT, "stall_timeout": 30, **(copy or {})},
        "locks": {"lock_wait_timeout": lock_wait_timeout},
    }
    path = tmp_path / "runbook.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def connect(pair: Any, name: str) -> Any:
    m = pair.runbook_hosts()[name]["mysql"]
    return pymysql.connect(host=m["host"], port=m["port"], user=m["user"],
                           password=os.environ[SANDBOX_PASSWORD_ENV], autocommit=True,
                           cursorclass=pymysql.cursors.DictCursor)


def sql(pair: Any, name: str, statement: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    conn = connect(pair, name)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params or None)
            return list(cur.fetchall()) if cur.description else []
    finally:
        conn.close()


def dialect(pair: Any, name: str) -> Any:
    row = sql(pair, name, "SELECT @@version AS v, @@version_comment AS c")[0]
    return dialect_for(ServerVersion.from_server(row["v"], row["c"]))


def resync(tmp_path: Path, *args: str, check: bool = False,
           stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "resync", *args], cwd=tmp_path, text=True,
                          capture_output=True, timeout=600, env={**os.environ, "COLUMNS": "200"},
                          input=stdin if stdin is not None else "")
    if check:
        assert proc.returncode == 0, (f"resync {' '.join(args)} -> {proc.returncode}\n"
                                      f"{proc.stdout}\n{proc.stderr}")
    return proc


def journal_of(tmp_path: Path) -> Path:
    journals = sorted((tmp_path / "resync-journal").glob("*.json"))
    assert len(journals) == 1, journals
    return journals[0]


def wait_rows(pair: Any, name: str, statement: str, expected: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = sql(pair, name, statement)
        if got == expected:
            return
        assert time.monotonic() < deadline, f"{name}: {statement} -> {got}, expected {expected}"
        time.sleep(0.2)


def load_app_data(pair: Any) -> None:
    """On db1 (the primary): an InnoDB table and a MyISAM table, replicated to db2."""
    sql(pair, "db1", "CREATE DATABASE app")
    sql(pair, "db1", "CREATE TABLE app.orders (id INT PRIMARY KEY, item VARCHAR(64), qty INT) ENGINE=InnoDB")
    sql(pair, "db1", "CREATE TABLE app.audit (id INT PRIMARY KEY, note TEXT) ENGINE=MyISAM")
    rows = ", ".join(f"({i}, 'item-{i}', {i % 7})" for i in range(1, 2001))
    sql(pair, "db1", f"INSERT INTO app.orders VALUES {rows}")
    notes = ", ".join(f"({i}, REPEAT('n{i}', 50))" for i in range(1, 501))
    sql(pair, "db1", f"INSERT INTO app.audit VALUES {notes}")
    wait_rows(pair, "db2", "SELECT COUNT(*) AS n FROM app.orders", [{"n": 2000}])
    wait_rows(pair, "db2", "SELECT COUNT(*) AS n FROM app.audit", [{"n": 500}])


def fail_over_and_damage_db1(pair: Any) -> None:
    """The seed's story: db1 breaks, the app moves to db2 (which stops replicating) and writes there."""
    d2 = dialect(pair, "db2")
    sql(pair, "db2", d2.stop_replica().sql)
    sql(pair, "db2", "INSERT INTO app.orders VALUES (5001, 'written on db2 after failover', 1)")
    sql(pair, "db2", "UPDATE app.orders SET qty = qty + 100 WHERE id <= 10")
    conn = connect(pair, "db1")
    with conn.cursor() as cur:  # damage that never reaches a binlog
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.execute("DELETE FROM app.orders WHERE id % 10 = 0")
        cur.execute("INSERT INTO app.orders VALUES (9999, 'only on the old db1', 0)")
    conn.close()
    if isinstance(pair, Sandbox):  # a truncated table file, as after the seed's crash
        sql(pair, "db1", "FLUSH TABLES app.audit")
        myd = pair["db1"].datadir / "app" / "audit.MYD"
        os.truncate(myd, 1000)
        sql(pair, "db1", "FLUSH TABLES app.audit")


def seed_incident(tmp_path: Path, pair: Any, **runbook: Any) -> Path:
    """The seed's story staged on the pair; returns the runbook that rebuilds db1 from db2."""
    load_app_data(pair)
    fail_over_and_damage_db1(pair)
    return write_runbook(tmp_path, pair, donor="db2", recipient="db1", **runbook)


def verify_ok(tmp_path: Path, runbook: Path) -> str:
    return resync(tmp_path, "verify", str(runbook), check=True).stdout


def start_run_until_copy(tmp_path: Path, runbook: Path, state: str) -> subprocess.Popen[bytes]:
    """Start `resync run --yes` in the background; return once its copy step is in `state`
    ("running": after 1.5 s more, so that bytes are on their way; or "done")."""
    proc = subprocess.Popen([sys.executable, "-m", "resync", "run", "--yes", str(runbook)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, f"resync ended before its copy step was {state}"
        assert time.monotonic() < deadline, f"the copy step was never {state}"
        journals = list((tmp_path / "resync-journal").glob("*.json"))
        if journals and any(s["key"].startswith("copy-datadir") and s["state"] == state
                            for s in json.loads(journals[0].read_text())["steps"]):
            if state == "running":
                time.sleep(1.5)
            return proc
        time.sleep(0.02)


class ProcessListWatch:
    """Samples every process's command line while a run goes: no secret may ever appear there."""

    def __init__(self, secrets: list[str]) -> None:
        import threading

        self.secrets = [s for s in secrets if s]
        self.seen: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for proc in Path("/proc").iterdir():
                try:
                    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                self.seen += [cmdline for s in self.secrets if s in cmdline]
            self.samples += 1
            time.sleep(0.01)

    def __enter__(self) -> ProcessListWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
