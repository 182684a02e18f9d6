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

# the suite runs in two xdist workers (README): each takes its own half of the range, and two
# suites on one machine are kept apart by their pids
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
COPY_PORT = 17900 + (_WORKER % 2) * 45 + os.getpid() % 45


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
        # LOCAL: not binlogged (a logged FLUSH would be a transaction db2 lacks: errant)
        sql(pair, "db1", "FLUSH LOCAL TABLES app.audit")
        myd = pair["db1"].datadir / "app" / "audit.MYD"
        os.truncate(myd, 1000)
        sql(pair, "db1", "FLUSH LOCAL TABLES app.audit")


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


# --- the fault matrix (tests/integration/test_faults.py) ------------------------------------------
def server_version_arg() -> str:
    """`--server-version` for the installed mariadbd (a plan without connecting anywhere), or ''."""
    import re
    import shutil

    binary = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except OSError:
        return ""
    found = re.search(r"Ver (\d+\.\d+\.\d+)-MariaDB", out)
    if not found:
        return ""
    version = f"mariadb-{found.group(1)}"
    return f"donor={version},recipient={version}"


def plan_json(cwd: Path, runbook: Path, *args: str) -> dict[str, Any]:
    """`resync plan --format json RUNBOOK [args]` as a document (asserts it succeeded)."""
    proc = subprocess.run([sys.executable, "-m", "resync", "plan", "--format", "json", *args,
                           str(runbook)], cwd=cwd, text=True, capture_output=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, f"resync plan -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def start_run(tmp_path: Path, runbook: Path) -> subprocess.Popen[bytes]:
    """`resync run --yes RUNBOOK` in the background, in its own session (its output in
    tmp_path/run.out and run.err). Kill it with os.kill(proc.pid, SIGKILL): the process alone,
    not what it started (servers, copy ends), as a crash of the controller would."""
    with (tmp_path / "run.out").open("wb") as out, (tmp_path / "run.err").open("wb") as err:
        return subprocess.Popen([sys.executable, "-m", "resync", "run", "--yes", str(runbook)],
                                cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env={**os.environ, "COLUMNS": "200"}, start_new_session=True)


def read_journal(tmp_path: Path) -> dict[str, Any] | None:
    """The run's journal under tmp_path/resync-journal, or None if there is none (yet) or it
    cannot be read right now (it is replaced atomically, but be tolerant)."""
    journals = sorted((tmp_path / "resync-journal").glob("*.json"))
    if not journals:
        return None
    try:
        data: dict[str, Any] = json.loads(journals[0].read_text())
    except (OSError, ValueError):
        return None
    return data


def step_states(journal: dict[str, Any] | None) -> dict[str, str]:
    return {s["key"]: s["state"] for s in (journal or {}).get("steps", [])}


def kill_when(tmp_path: Path, proc: subprocess.Popen[bytes], reached: Any,
              timeout: float = 120, then_wait: float = 0.0, sig: int | None = None) -> dict[str, Any]:
    """Watch the journal until reached(journal) is true, then SIGKILL the resync process (only
    it; `sig=signal.SIGINT`: the operator's Ctrl-C instead). Returns the journal as the process
    left it. Fails if the run ended first without reaching that point."""
    import contextlib
    import signal

    deadline = time.monotonic() + timeout
    last: tuple[int, int] | None = None
    journal: dict[str, Any] | None = None
    while True:
        paths = sorted((tmp_path / "resync-journal").glob("*.json"))
        try:
            st = paths[0].stat() if paths else None
        except OSError:
            st = None
        stamp = (st.st_ino, st.st_mtime_ns) if st else None
        if stamp is not None and stamp != last:
            last, fresh = stamp, read_journal(tmp_path)
            journal = fresh if fresh is not None else journal
            if journal is not None and reached(journal):
                break
        if proc.poll() is not None:  # one more look: it may have got there and ended at once
            journal = read_journal(tmp_path)
            if journal is not None and reached(journal):
                break
            err = (tmp_path / "run.err").read_text(errors="replace")[-3000:]
            raise AssertionError(f"the run ended (exit {proc.returncode}) before the kill point; "
                                 f"steps: {step_states(journal)}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"kill point not reached within {timeout}s; steps: "
                                 f"{step_states(journal)}")
        time.sleep(0.002)
    if then_wait:
        time.sleep(then_wait)
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL if sig is None else sig)
    proc.wait(timeout=120)
    left = read_journal(tmp_path)
    assert left is not None
    return left


def app_write(pair: Any, name: str, row_id: int, note: str, timeout: int = 3) -> str | None:
    """INSERT one row into app.orders on `name` as the application user (autocommit, short
    timeouts). Returns None if the server acknowledged it, else why not."""
    import contextlib

    from resync.testing.sandbox import APP_PASSWORD_ENV, APP_USER

    m = pair.runbook_hosts()[name]["mysql"]
    try:
        conn = pymysql.connect(host=m["host"], port=m["port"], user=APP_USER,
                               password=os.environ[APP_PASSWORD_ENV], autocommit=True,
                               connect_timeout=timeout, read_timeout=timeout,
                               write_timeout=timeout)
    except pymysql.MySQLError as exc:
        return f"connect: {exc}"
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO app.orders VALUES (%s, %s, 0)", (row_id, note))
        return None
    except pymysql.MySQLError as exc:
        return f"insert: {exc}"
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def try_sql(pair: Any, name: str, statement: str) -> list[dict[str, Any]] | str:
    """sql(), or the error as text (a server may be down)."""
    try:
        return sql(pair, name, statement)
    except pymysql.MySQLError as exc:
        return f"error: {exc}"


def copy_ends_of(run_id: str, datadirs: list[str]) -> list[int]:
    """Pids of the copy ends of a run still running: tagged `resync-copy-run <run_id>` AND naming
    one of these datadirs (a run id is a timestamp to the second: another session's run, on
    other servers, can carry the same one)."""
    tag = f"resync-copy-run {run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if tag in cmdline and any(d.encode() in cmdline for d in datadirs):
            found.append(int(entry.name))
    return found


def stop_copy_ends(run_id: str, datadirs: list[str]) -> list[int]:
    """Teardown: SIGKILL the process groups of the copy ends a test's run left behind (found by
    run id and datadirs, killed by pid); returns the pids found. They would hold the session's
    copy port for the next test."""
    import contextlib
    import signal

    pids = copy_ends_of(run_id, datadirs)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
    return pids


def journal_tail(journal: dict[str, Any] | None, commands: int = 8) -> str:
    """Steps (key: state, error) and the last commands of a journal, for failure messages."""
    if journal is None:
        return "(no journal)"
    lines = [f"outcome: {journal.get('outcome')}"]
    for s in journal["steps"]:
        extra = f"  error: {s['error']}" if s.get("error") else ""
        extra += f"  note: {s['note']}" if s.get("note") else ""
        lines.append(f"  {s['key']}: {s['state']} (attempts {s.get('attempts')}){extra}")
    lines.append("last commands:")
    for c in journal.get("commands", [])[-commands:]:
        detail = (c.get("detail") or "").strip().replace("\n", " | ")[:300]
        lines.append(f"  [{c['phase']} {c['step']} {c['action']} {c['host']} {c['kind']} "
                     f"ok={c['ok']}] {c['text'][:160]}" + (f"  -> {detail}" if detail else ""))
    return "\n".join(lines)



def seed_incident_unlogged(tmp_path: Path, pair: Any, **runbook: Any) -> Path:
    """seed_incident with db1's damage outside its binary log (no errant GTID on db1). Now the
    same as seed_incident, whose flushes are FLUSH LOCAL TABLES; kept for its callers."""
    return seed_incident(tmp_path, pair, **runbook)

def process_lines(pids: list[int]) -> list[str]:
    """`pid (ppid, state): command line` of each pid still there (for failure messages)."""
    lines = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace").strip()
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        lines.append(f"{pid} (ppid {stat[1]}, {stat[0]}): {cmdline[:300]}")
    return lines
