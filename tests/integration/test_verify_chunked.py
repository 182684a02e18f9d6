"""`resync verify` on real servers: chunked checksums at shared positions while the primary
takes writes, drift narrowed to its key range, tables without a key, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pymysql
from helpers import connect, load_app_data, resync, sql, wait_rows, write_runbook

from resync.run.conformance import mismatches
from resync.run.journal import Journal

DIGITS = "(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL " \
         "SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL " \
         "SELECT 8 UNION ALL SELECT 9)"


def numbers(count: int) -> str:
    """A derived table n = 1..count (any server: no sequence engine, no recursion limit)."""
    width = len(str(count - 1))
    joins = ", ".join(f"{DIGITS} d{i}" for i in range(width))
    value = " + ".join(f"d{i}.d * {10 ** i}" for i in range(width))
    return f"(SELECT {value} + 1 AS n FROM {joins} HAVING n <= {count}) AS numbers"


def load_big(pair: Any, innodb_rows: int = 200_000, myisam_rows: int = 40_000) -> None:
    """More rows than fit in one chunk, in both kinds of table (besides load_app_data's)."""
    sql(pair, "db1", "CREATE TABLE app.big (id INT PRIMARY KEY, a VARCHAR(40), b INT NULL, "
                     "c DATETIME) ENGINE=InnoDB")
    sql(pair, "db1", f"INSERT INTO app.big SELECT n, MD5(n), IF(n % 5 = 0, NULL, n), "
                     f"'2024-01-01' + INTERVAL n MINUTE FROM {numbers(innodb_rows)}")
    sql(pair, "db1", "CREATE TABLE app.big_m (id INT PRIMARY KEY, note VARCHAR(64)) ENGINE=MyISAM")
    sql(pair, "db1", f"INSERT INTO app.big_m SELECT n, REPEAT(MD5(n), 2) FROM {numbers(myisam_rows)}")
    wait_rows(pair, "db2", "SELECT COUNT(*) AS n FROM app.big", [{"n": innodb_rows}], timeout=120)
    wait_rows(pair, "db2", "SELECT COUNT(*) AS n FROM app.big_m", [{"n": myisam_rows}], timeout=120)


def runbook_for(tmp_path: Path, pair: Any, **kw: Any) -> Path:
    return write_runbook(tmp_path, pair, donor="db1", recipient="db2", primary_after="db1", **kw)


def verify_journal(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "resync-journal" / "verify-test-db1-to-db2" / "journal.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def on_replica_only(pair: Any, *statements: str) -> None:
    conn = connect(pair, "db2")
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin = 0")
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


class Writer:
    """Inserts a row every 10 ms into one table of the primary; the longest wait is kept."""

    def __init__(self, pair: Any, table: str, first_id: int) -> None:
        self.conn = connect(pair, "db1")
        self.table, self.next_id = table, first_id
        self.longest, self.count, self.errors = 0.0, 0, []  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with self.conn.cursor() as cur:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    cur.execute(f"INSERT INTO {self.table} (id) VALUES (%s)", (self.next_id,))
                except pymysql.MySQLError as exc:
                    self.errors.append(str(exc))
                took = time.monotonic() - started
                self.longest = max(self.longest, took)
                self.next_id += 1
                self.count += 1
                time.sleep(max(0.0, 0.01 - took))

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.conn.close()


def test_verify_equal_while_the_primary_takes_writes(tmp_path: Path, sandbox_pair: Any) -> None:
    pair = sandbox_pair
    load_app_data(pair)
    load_big(pair)
    runbook = runbook_for(tmp_path, pair)
    altered: list[float] = []

    def alter() -> None:
        """DDL while the verify's snapshot reads the table (it holds its metadata lock): the
        ALTER, and the writes queued behind it, must not wait for the snapshot's end."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not sql(
                pair, "db1", "SELECT ID FROM information_schema.PROCESSLIST "
                             "WHERE INFO LIKE 'SELECT COUNT(*) AS n%FROM `app`.`big` FORCE%'"):
            time.sleep(0.001)
        started = time.monotonic()
        sql(pair, "db1", "ALTER TABLE app.big ADD COLUMN extra INT NULL")
        altered.append(time.monotonic() - started)

    ddl = threading.Thread(target=alter)
    with Writer(pair, "app.big", 10_000_000) as innodb, Writer(pair, "app.big_m", 10_000_000) as myisam:
        time.sleep(0.2)
        started = time.monotonic()
        ddl.start()
        out = resync(tmp_path, "verify", str(runbook), check=True).stdout
        seconds = time.monotonic() - started
        ddl.join()
    print(f"\nverify took {seconds:.1f}s; longest write: InnoDB {innodb.longest * 1000:.0f} ms "
          f"({innodb.count} writes), MyISAM {myisam.longest * 1000:.0f} ms ({myisam.count} writes); "
          f"ALTER TABLE during it: {altered[0] * 1000:.0f} ms")
    assert altered and altered[0] < 1.0, f"the ALTER TABLE waited {altered}"
    assert innodb.errors == [] and myisam.errors == []
    assert innodb.count > 50 and myisam.count > 50, "the writers wrote throughout"
    assert innodb.longest < 1.0, f"an InnoDB write waited {innodb.longest:.3f}s"
    assert myisam.longest < 1.0, f"a MyISAM write waited {myisam.longest:.3f}s"
    assert "db1 vs db2: 4 of 4 tables equal\n" in out, out
    journal = verify_journal(tmp_path)
    captured = journal["captured"]
    compared = {str(row[0]) for row in json.loads(str(captured["verify.primary_checksums"]))}
    assert compared == {"app.big", "app.big_m", "app.orders", "app.audit"}, compared
    print(f"chunks {captured['verify.chunks_read']}, longest lock "
          f"{captured['verify.longest_lock_seconds']}s")
    assert captured["verify.longest_lock_seconds"] < 1.0
    assert captured["verify.chunks_read"] > 4, "the big tables took several chunks"
    progress = json.loads(captured["verify.progress"])
    assert progress["syncs"] > 2, "the replica was brought to several positions"
    assert journal["outcome"] == "done"
    # the writers' rows reached both servers, and replication runs again
    status = sql(pair, "db2", "SHOW SLAVE STATUS")[0]
    assert status["Slave_SQL_Running"] == "Yes" and status["Slave_IO_Running"] == "Yes"


def test_drift_is_narrowed_to_its_key_range(tmp_path: Path, sandbox_pair: Any) -> None:
    pair = sandbox_pair
    load_app_data(pair)
    load_big(pair, innodb_rows=100_000, myisam_rows=20_000)
    on_replica_only(pair, "UPDATE app.big SET a = 'drift' WHERE id = 76543",
                    "DELETE FROM app.big_m WHERE id = 12345",
                    "CREATE TABLE app.extra (id INT PRIMARY KEY) ENGINE=InnoDB",
                    "CREATE TABLE app.extra_m (id INT PRIMARY KEY) ENGINE=MyISAM")
    runbook = runbook_for(tmp_path, pair)
    drift = resync(tmp_path, "verify", str(runbook))
    assert drift.returncode == 1, drift.stdout + drift.stderr
    assert "checksums differ for: app.big, app.big_m, app.extra, app.extra_m" in drift.stderr
    for table in ("app.extra", "app.extra_m"):  # on the replica only
        assert f"differs: {table} the table: primary 0 row(s)" in drift.stdout, drift.stdout
    assert "(the table does not exist on the primary)" in drift.stdout
    assert "differs: app.big row id=76543: primary 1 row(s)" in drift.stdout
    # MyISAM: one half per lock, down to the deleted row's range (it has no row on the replica)
    assert "differs: app.big_m id > 12344 and id <= 12345: primary 1 row(s)" in drift.stdout, \
        drift.stdout
    assert "replica 0 row(s)" in drift.stdout
    report = json.loads(verify_journal(tmp_path)["captured"]["verify.report"])
    assert [r["table"] for r in report] == ["app.big", "app.big_m", "app.extra", "app.extra_m"]

    on_replica_only(pair, "UPDATE app.big SET a = MD5(76543) WHERE id = 76543",
                    "INSERT INTO app.big_m VALUES (12345, REPEAT(MD5(12345), 2))",
                    "DROP TABLE app.extra, app.extra_m")
    again = resync(tmp_path, "verify", str(runbook), check=True)
    assert "a new verify (it compared every table to its end" in again.stdout


def test_tables_without_a_key_are_compared_whole(tmp_path: Path, sandbox_pair: Any) -> None:
    pair = sandbox_pair
    load_app_data(pair)
    sql(pair, "db1", "CREATE TABLE app.log_i (at INT, msg VARCHAR(20)) ENGINE=InnoDB")
    sql(pair, "db1", "CREATE TABLE app.log_m (at INT, msg VARCHAR(20)) ENGINE=MyISAM")
    for table in ("app.log_i", "app.log_m"):  # duplicates too: XOR alone would cancel them
        sql(pair, "db1", f"INSERT INTO {table} SELECT n % 100, 'same' FROM {numbers(3000)}")
    wait_rows(pair, "db2", "SELECT COUNT(*) AS n FROM app.log_m", [{"n": 3000}])
    runbook = runbook_for(tmp_path, pair)
    ok = resync(tmp_path, "verify", str(runbook), check=True).stdout
    assert "tables equal" in ok and "differ" not in ok, ok
    every = json.loads(resync(tmp_path, "verify", str(runbook), "--format", "json",
                              check=True).stdout)  # stdout: the document alone
    equal = {t["table"]: t["equal"] for t in every["tables"]}
    assert equal["app.log_i"] is True and equal["app.log_m"] is True, equal
    assert every["equal"] is True and every["differences"] == []

    on_replica_only(pair, "UPDATE app.log_i SET at = 5 WHERE at = 7 LIMIT 2",
                    "UPDATE app.log_m SET at = 5 WHERE at = 7 LIMIT 2")
    drift = resync(tmp_path, "verify", str(runbook))
    assert drift.returncode == 1
    assert "checksums differ for: app.log_i, app.log_m" in drift.stderr
    assert "app.log_i the whole table (no primary or unique key)" in drift.stdout
    assert "app.log_m the whole table (no primary or unique key)" in drift.stdout


def test_killed_verify_continues_from_its_saved_chunks(tmp_path: Path, sandbox_pair: Any) -> None:
    pair = sandbox_pair
    load_app_data(pair)
    load_big(pair, innodb_rows=100_000, myisam_rows=5_000)
    runbook = runbook_for(tmp_path, pair, lock_wait_timeout=60)
    # a writer holds the MyISAM table: the verify does every InnoDB table, then waits for it
    blocker = connect(pair, "db1")
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLES app.audit WRITE")
    proc = subprocess.Popen([sys.executable, "-m", "resync", "verify", str(runbook)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "COLUMNS": "200"})
    path = tmp_path / "resync-journal" / "verify-test-db1-to-db2" / "journal.json"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the verify never saved its InnoDB chunks"
        try:
            progress = json.loads(json.loads(path.read_text())["captured"]["verify.progress"])
        except (OSError, ValueError, KeyError):
            progress = None
        states = {t["table"]: t["status"] for t in (progress or {}).get("tables", [])}
        if states.get("big") == "done" and states.get("orders") == "done":
            break
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with blocker.cursor() as cur:
        cur.execute("UNLOCK TABLES")
    blocker.close()
    first = json.loads(path.read_text())
    done_before = sum(t["chunks"] for t in json.loads(first["captured"]["verify.progress"])["tables"])
    assert done_before >= 3 and first["outcome"] is None
    # as if the kill came while the replica's applier waited at a position (between its STOP and
    # START): the next verify must start it again
    sql(pair, "db2", "STOP SLAVE SQL_THREAD")
    first["captured"]["verify.applier_paused"] = 1
    path.write_text(json.dumps(first))

    out = resync(tmp_path, "verify", str(runbook), check=True).stdout
    assert "continuing the verify started" in out
    journal = verify_journal(tmp_path)
    captured = journal["captured"]
    assert captured["verify.resumed_chunks"] == done_before
    progress = json.loads(captured["verify.progress"])
    chunks = {t["table"]: t["chunks"] for t in progress["tables"]}
    # this attempt read only the MyISAM tables' chunks: the InnoDB ones were kept
    assert captured["verify.chunks_read"] == chunks["audit"] + chunks["big_m"], (captured, chunks)
    assert captured["verify.chunks_read"] < sum(chunks.values())
    assert journal["outcome"] == "done"
    assert [s["attempts"] for s in journal["steps"]] == [2]
    assert mismatches(Journal.load(path).data) == []
    # the replica's applier runs again: the second verify started it before anything else
    status = sql(pair, "db2", "SHOW SLAVE STATUS")[0]
    assert status["Slave_SQL_Running"] == "Yes"
    resumed = [r["detail"] for r in journal["commands"] if r["attempt"] == 2
               and r["text"].startswith("each position (and at the start")]
    assert resumed and "started again after a verify that was killed" in resumed[0]
