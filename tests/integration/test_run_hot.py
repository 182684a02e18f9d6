"""`copy.method: mariabackup` end to end on the sandbox pair: the donor serves throughout.

A writer inserts into the current primary every 10 ms as the application (DML rights only) for
the whole run; it moves to the other server when its own refuses a write as read-only (the seed
scenario swaps the roles). Afterwards every write it saw acknowledged is on both servers, none it
saw refused is on either, the donor was never stopped, the data verifies, and the journal holds
the tool's lock time. The numbers are printed (pytest -s) for the record.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pymysql
from helpers import (
    ProcessListWatch,
    journal_of,
    journal_tail,
    kill_when,
    load_app_data,
    resync,
    seed_incident,
    sql,
    start_run,
    step_states,
    stop_copy_ends,
    verify_ok,
    write_runbook,
)

from resync.testing.sandbox import (
    APP_PASSWORD_ENV,
    APP_USER,
    REPL_PASSWORD_ENV,
    SANDBOX_PASSWORD_ENV,
    Sandbox,
)

READ_ONLY = 1290  # ER_OPTION_PREVENTS_STATEMENT: --read-only
HOT = {"method": "mariabackup", "stall_timeout": 60}


class Writer:
    """INSERTs into app.ticks on the current primary every 10 ms; a read-only refusal moves it to
    the other server. `acked`: (n, host, time acknowledged); `refused`: n the server refused (not
    written); `unknown`: n whose outcome it could not see (a connection lost mid-statement)."""

    def __init__(self, pair: Sandbox, primary: str) -> None:
        self.pair, self.current = pair, primary
        self.acked: list[tuple[int, str, float]] = []
        self.refused: list[int] = []
        self.unknown: list[int] = []
        self._conns: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        for conn in self._conns.values():
            with contextlib.suppress(Exception):
                conn.close()

    def _conn(self, host: str) -> Any:
        if host not in self._conns:
            m = self.pair.runbook_hosts()[host]["mysql"]
            self._conns[host] = pymysql.connect(
                host=m["host"], port=m["port"], user=APP_USER,
                password=os.environ[APP_PASSWORD_ENV], autocommit=True, connect_timeout=3,
                read_timeout=30, write_timeout=30)
        return self._conns[host]

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            host = self.current
            try:
                with self._conn(host).cursor() as cur:
                    cur.execute("INSERT INTO app.ticks VALUES (%s, %s, %s)", (n, host, time.time()))
                self.acked.append((n, host, time.time()))
            except pymysql.err.OperationalError as exc:
                if exc.args and exc.args[0] == READ_ONLY:
                    self.refused.append(n)
                    self.current = next(h for h in ("db1", "db2") if h != host)
                else:  # the connection is gone (a server stopped): the write may or may not be in
                    self.unknown.append(n)
                    with contextlib.suppress(Exception):
                        self._conns.pop(host).close()
            except pymysql.MySQLError:
                self.unknown.append(n)
            time.sleep(0.01)

    def stalls(self, start: float = 0.0, end: float = float("inf")) -> float:
        """The longest time between two acknowledged writes, both within [start, end]."""
        times = [t for _, _, t in self.acked if start <= t <= end]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


class SecretWatch(ProcessListWatch):
    """ProcessListWatch that also watches for the backup account's one-time password: read from
    its defaults file on the donor as soon as that exists (its modes recorded), then looked for
    in every process's command line like the runbook's passwords."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__(secrets)
        self.one_time: list[str] = []
        self.modes: set[tuple[str, str]] = set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for cnf in Path("/run").glob("resync-backup-*/client.cnf"):
                with contextlib.suppress(OSError):
                    lines = cnf.read_text().splitlines()
                    self.modes.add((oct(cnf.parent.stat().st_mode & 0o777),
                                    oct(cnf.stat().st_mode & 0o777)))
                    for line in lines:
                        if line.startswith("password=") and line[9:] not in self.one_time:
                            self.one_time.append(line[9:])
                            self.secrets.append(line[9:])
            for proc in Path("/proc").iterdir():
                try:
                    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                        errors="replace")
                except OSError:
                    continue
                self.seen += [cmdline for s in self.secrets if s in cmdline]
            self.samples += 1
            time.sleep(0.005)


def ticks(pair: Sandbox, host: str) -> set[int]:
    return {int(r["n"]) for r in sql(pair, host, "SELECT n FROM app.ticks")}


def every_ack_on_both(pair: Sandbox, writer: Writer, timeout: float = 60) -> None:
    acked = {n for n, _, _ in writer.acked}
    deadline = time.monotonic() + timeout
    while True:
        missing = {h: acked - ticks(pair, h) for h in ("db1", "db2")}
        if not any(missing.values()):
            break
        assert time.monotonic() < deadline, {h: sorted(m)[:20] for h, m in missing.items()}
        time.sleep(0.2)
    for host in ("db1", "db2"):  # what was refused was not written anywhere
        assert not set(writer.refused) & ticks(pair, host), host


def step_window(journal: dict[str, Any], prefix: str) -> tuple[float, float]:
    (step,) = [s for s in journal["steps"] if s["key"].startswith(prefix)]
    return step["started_at"], step["finished_at"]


def mariadbd_pid(pair: Sandbox, name: str) -> int:
    return int(pair[name].pidfile.read_text().strip())


def no_backup_account_left(pair: Sandbox, journal: dict[str, Any]) -> None:
    for host in ("db1", "db2"):
        assert sql(pair, host, "SELECT COUNT(*) AS n FROM mysql.user WHERE User = "
                               "'resync_backup'") == [{"n": 0}], host
    assert not Path(f"/run/resync-backup-{journal['run_id']}").exists()


def report(name: str, journal: dict[str, Any], writer: Writer, copy_stall: float,
           seconds: float) -> None:
    c = journal["captured"]
    print(f"\n[{name}] run {seconds:.1f}s; donor commit lock (BLOCK_COMMIT) "
          f"{c['hot.write_lock_seconds']}s, non-transactional lock "
          f"{c['hot.nontransactional_lock_seconds']}s; writer: {len(writer.acked)} acked, "
          f"{len(writer.refused)} refused, {len(writer.unknown)} unknown; longest stall during "
          f"the copy {copy_stall:.3f}s, over the run {writer.stalls():.3f}s; write-downtime "
          f"{c.get('figures.write_downtime_seconds')} s; switch lock "
          f"{c.get('hot.switch_lock_seconds')} s; copy {c.get('copy.bytes')} bytes in "
          f"{c.get('copy.seconds')}s\n{c.get('hot.lock_log')}\nsteps: " + ", ".join(
              f"{s['key']} {s['finished_at'] - s['started_at']:.3f}s" for s in journal["steps"]))


def test_replica_rebuilt_hot_while_the_primary_takes_writes(tmp_path: Path,
                                                            sandbox_pair: Sandbox) -> None:
    pair = sandbox_pair
    load_app_data(pair)
    sql(pair, "db1", "CREATE TABLE app.ticks (n INT PRIMARY KEY, host VARCHAR(8), at DOUBLE)")
    conn = pymysql.connect(**_admin(pair, "db2"))
    with conn.cursor() as cur:  # a drift the rebuild repairs (never binlogged)
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.execute("INSERT INTO app.orders VALUES (8888, 'drift only on the replica', 0)")
    conn.close()
    runbook = write_runbook(tmp_path, pair, donor="db1", recipient="db2", primary_after="db1",
                            copy=HOT)
    donor_pid = mariadbd_pid(pair, "db1")

    started = time.monotonic()
    with SecretWatch([os.environ[SANDBOX_PASSWORD_ENV], os.environ[REPL_PASSWORD_ENV],
                      os.environ[APP_PASSWORD_ENV]]) as ps, Writer(pair, "db1") as writer:
        resync(tmp_path, "run", "--yes", str(runbook), check=True)
        seconds = time.monotonic() - started
        time.sleep(0.5)
    assert ps.samples > 10 and ps.seen == [], "no password in any process's command line"
    # the backup account's password was made on the donor, kept in a root-only file, never
    # shown: not in a command line (above), not in the journal
    assert ps.one_time and ps.modes == {("0o700", "0o600")}
    assert not any(pw in journal_of(tmp_path).read_text() for pw in ps.one_time)

    journal = json.loads(journal_of(tmp_path).read_text())
    captured = journal["captured"]
    assert journal["outcome"] == "done"
    assert mariadbd_pid(pair, "db1") == donor_pid, "the donor was never stopped"
    assert not writer.refused and not writer.unknown, "the primary took every write"
    copy_start, copy_end = step_window(journal, "copy-datadir:db1->db2:mariabackup")
    during = [n for n, _, t in writer.acked if copy_start <= t <= copy_end]
    assert len(during) >= 20, "the donor served writes during its copy"
    copy_stall = writer.stalls(copy_start, copy_end)
    report("replica rebuild", journal, writer, copy_stall, seconds)
    assert 0 < captured["hot.write_lock_seconds"] <= 1.0, "the donor's commit lock"
    assert copy_stall < 1.5, "no write waited long on the donor during the copy"
    assert captured["source.gtid"] == captured["hot.binlog_gtid_pos"]
    every_ack_on_both(pair, writer)
    assert sql(pair, "db2", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 8888") == [{"n": 0}]
    assert sql(pair, "db2", "SELECT @@read_only AS ro") == [{"ro": 1}]
    no_backup_account_left(pair, journal)
    assert "tables equal" in verify_ok(tmp_path, runbook)


def test_seed_scenario_hot_loses_no_acknowledged_write(tmp_path: Path,
                                                       sandbox_pair: Sandbox) -> None:
    """The old primary db1 is rebuilt from db2, which serves the application throughout the
    copy; db1 catches up from db2, db2 is frozen, the roles swap; the writer follows."""
    pair = sandbox_pair
    runbook = seed_incident(tmp_path, pair, copy=HOT)
    sql(pair, "db2", "CREATE TABLE app.ticks (n INT PRIMARY KEY, host VARCHAR(8), at DOUBLE)")
    donor_pid = mariadbd_pid(pair, "db2")

    started = time.monotonic()
    with Writer(pair, "db2") as writer:
        resync(tmp_path, "run", "--yes", str(runbook), check=True)
        seconds = time.monotonic() - started
        time.sleep(1.0)  # the application goes on, on the new primary

    journal = json.loads(journal_of(tmp_path).read_text())
    captured = journal["captured"]
    assert journal["outcome"] == "done"
    assert mariadbd_pid(pair, "db2") == donor_pid, "the donor was never stopped"
    copy_start, copy_end = step_window(journal, "copy-datadir:db2->db1:mariabackup")
    copy_stall = writer.stalls(copy_start, copy_end)
    report("seed scenario", journal, writer, copy_stall, seconds)
    on = {h: [n for n, host, t in writer.acked if host == h] for h in ("db1", "db2")}
    assert len([n for n, h, t in writer.acked if h == "db2" and copy_start <= t <= copy_end]) >= 20
    assert on["db1"], "the writer moved to the new primary"
    assert max(on["db2"]) < min(on["db1"]), "db2 took no write once db1 did"
    assert 0 < captured["hot.write_lock_seconds"] <= 1.0
    assert copy_stall < 1.5
    # the write-downtime is the switch (freeze -> new primary writable), not the copy
    freeze_start, _ = step_window(journal, "read-lock:db2:donor")
    _, writable = step_window(journal, "make-writable:db1")
    assert writer.stalls() <= writable - freeze_start + 1.0
    assert writable - freeze_start < 15
    every_ack_on_both(pair, writer)
    # db1 has db2's data (the failover write, not its own damage) and is the primary
    assert sql(pair, "db1", "SELECT item FROM app.orders WHERE id = 5001") == [
        {"item": "written on db2 after failover"}]
    assert sql(pair, "db1", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 9999") == [{"n": 0}]
    assert sql(pair, "db1", "SELECT COUNT(*) AS n FROM app.audit") == [{"n": 500}]
    assert sql(pair, "db2", "SELECT @@read_only AS ro") == [{"ro": 1}]
    assert sql(pair, "db1", "SELECT @@read_only AS ro") == [{"ro": 0}]
    no_backup_account_left(pair, journal)
    assert "tables equal" in verify_ok(tmp_path, runbook)


def _streaming(journal: dict[str, Any]) -> bool:
    """The backup's sending end has been started (the stream is under way)."""
    return any(c["step"].startswith("copy-datadir") and "--backup" in c["text"]
               for c in journal["commands"])


def _frozen(journal: dict[str, Any]) -> bool:
    """The donor's freeze is done: its read lock lives in the run's process only."""
    return any(st["key"] == "read-lock:db2:donor" and st["state"] == "done"
               for st in journal["steps"])


def test_a_run_killed_while_it_streams_resumes(tmp_path: Path, sandbox_pair: Sandbox) -> None:
    """kill -9 of resync while the backup streams (the ends go on, orphaned; the one-time
    account exists): the resume stops the ends, copies again, loses no acknowledged write and
    leaves no backup account."""
    pair = sandbox_pair
    runbook = seed_incident(tmp_path, pair, copy=HOT)
    sql(pair, "db2", "CREATE TABLE app.ticks (n INT PRIMARY KEY, host VARCHAR(8), at DOUBLE)")
    datadirs = [str(pair["db1"].datadir), str(pair["db2"].datadir)]
    with Writer(pair, "db2") as writer:
        left = kill_when(tmp_path, start_run(tmp_path, runbook), _streaming)
        try:
            proc = resync(tmp_path, "resume", "--yes", str(journal_of(tmp_path)))
        finally:
            stop_copy_ends(left["run_id"], datadirs)
        after = json.loads(journal_of(tmp_path).read_text())
        assert proc.returncode == 0, f"{proc.stderr[-2000:]}\n{journal_tail(after)}"
        time.sleep(0.5)
    copy = next(st for st in after["steps"] if st["key"].startswith("copy-datadir"))
    assert copy["attempts"] == 2
    every_ack_on_both(pair, writer)
    no_backup_account_left(pair, after)
    assert "tables equal" in verify_ok(tmp_path, runbook)


def test_seed_scenario_killed_after_the_freeze_takes_it_again(tmp_path: Path,
                                                               sandbox_pair: Sandbox) -> None:
    """kill -9 right after the donor's freeze: its read lock died with the process, the donor
    stays read-only (nothing acknowledged meanwhile); the resume freezes it again (new
    coordinates), and the switch and the rest follow."""
    pair = sandbox_pair
    runbook = seed_incident(tmp_path, pair, copy=HOT)
    sql(pair, "db2", "CREATE TABLE app.ticks (n INT PRIMARY KEY, host VARCHAR(8), at DOUBLE)")
    with Writer(pair, "db2") as writer:
        kill_when(tmp_path, start_run(tmp_path, runbook), _frozen)
        time.sleep(0.5)  # resync is dead: the donor stays read-only, the writer is refused
        assert sql(pair, "db2", "SELECT @@read_only AS ro") == [{"ro": 1}]
        proc = resync(tmp_path, "resume", "--yes", str(journal_of(tmp_path)))
        after = json.loads(journal_of(tmp_path).read_text())
        assert proc.returncode == 0, f"{proc.stderr[-2000:]}\n{journal_tail(after)}"
        time.sleep(1.0)
    freeze = next(st for st in after["steps"] if st["key"] == "read-lock:db2:donor")
    assert freeze["attempts"] == 2, "the lost lock was taken again"
    assert [n for n, h, _ in writer.acked if h == "db1"], "the writer moved to the new primary"
    every_ack_on_both(pair, writer)
    assert "tables equal" in verify_ok(tmp_path, runbook)


def test_rollback_after_the_switch_gives_the_donor_back(tmp_path: Path,
                                                        sandbox_pair: Sandbox) -> None:
    """Interrupted (Ctrl-C) once the switch is done — inside the locked phase, where no
    question is asked — then rolled back: db1's old datadir is back, db2 serves writes again,
    no backup account is left."""
    pair = sandbox_pair
    runbook = seed_incident(tmp_path, pair, copy=HOT)
    proc = start_run(tmp_path, runbook)
    left = kill_when(tmp_path, proc, lambda j: step_states(j).get(
        "stop-replication:db1:caught-up") == "done", sig=signal.SIGINT)
    assert proc.returncode == 130, (tmp_path / "run.err").read_text()[-2000:]
    assert left["outcome"] == "aborted", "the operator's abort is in the journal"
    assert sql(pair, "db2", "SELECT @@read_only AS ro") == [{"ro": 1}], "frozen at the switch"

    resync(tmp_path, "rollback", "--yes", str(journal_of(tmp_path)), check=True)

    assert sql(pair, "db1", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 9999") == [{"n": 1}]
    assert sql(pair, "db2", "SELECT @@read_only AS ro") == [{"ro": 0}]
    sql(pair, "db2", "INSERT INTO app.orders VALUES (7002, 'db2 serves again', 1)")
    no_backup_account_left(pair, json.loads(journal_of(tmp_path).read_text()))


def test_check_refuses_a_backup_tool_that_is_not_installed(tmp_path: Path,
                                                           sandbox_pair: Sandbox) -> None:
    """xtrabackup (MySQL's) is not installed here, and these servers are MariaDB: refused by
    preflight (exit 3), saying which and what to use."""
    pair = sandbox_pair
    runbook = write_runbook(tmp_path, pair, donor="db1", recipient="db2", primary_after="db1",
                            copy={**HOT, "method": "xtrabackup"})
    proc = resync(tmp_path, "check", str(runbook))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    out = " ".join(proc.stdout.split())
    assert "xtrabackup backs up mysql servers; db1 runs mariadb-" in out
    assert "set copy.method: mariabackup" in out
    assert "not installed on db2: xtrabackup, xbstream" in out
    good = write_runbook(tmp_path, pair, donor="db1", recipient="db2", primary_after="db1",
                         copy=HOT)
    out = " ".join(resync(tmp_path, "check", str(good), "--all", check=True).stdout.split())
    assert "mariabackup 10." in out and "grants RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR" in out


def _admin(pair: Sandbox, host: str) -> dict[str, Any]:
    m = pair.runbook_hosts()[host]["mysql"]
    return {"host": m["host"], "port": m["port"], "user": m["user"],
            "password": os.environ[SANDBOX_PASSWORD_ENV], "autocommit": True}
