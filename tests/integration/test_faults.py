"""The fault matrix of issue 8, "Nothing acknowledged is ever lost", on real servers.

Generated from the plan, not hand-listed: at collection, `resync plan --format json` of the seed
scenario's runbook (no connection: the installed mariadbd's version is given) yields the steps;
each run checks that its journal has exactly these steps (the detected plan), so a new step in
the product is a new case here without editing this file.

For every step k (and once in the middle of the copy): `resync run --yes` of the seed scenario
(helpers.seed_incident) is SIGKILLed as soon as its journal shows k done: the controller process
alone, as a crash would (the servers and the copy ends it started live on). While it is dead the
application user (DML on `app` only, no admin rights) writes one row to each server. Then:
- resume: exit 0 with every acknowledged write on both servers and CHECKSUM TABLE equal
  (`resync verify`), or a non-zero exit with a clear message and every acknowledged write still
  on the server that acknowledged it (nothing lost). Each case prints which of the two it was.
- rollback (after each destructive step, each step that makes a server writable, and the last
  one): both servers back in the topology recorded before the run: db1 on its old datadir, db2
  on its data and not replicating (the failover stopped it), its source and read_only as they
  were; every acknowledged write still served, unless the CLI asked for --force (which says the
  new primary's writes are moved aside) - then db2's still are.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    app_write,
    copy_ends_of,
    dialect,
    journal_tail,
    kill_when,
    plan_json,
    process_lines,
    read_journal,
    resync,
    seed_incident,
    server_version_arg,
    start_run,
    step_states,
    stop_copy_ends,
    try_sql,
    write_runbook,
)

from resync.testing.sandbox import Sandbox

pytestmark = pytest.mark.integration

MID_COPY = "mid-copy"
SERVERS = ("db1", "db2")
ROW_BASE = 60000  # the rows written while the controller is dead: 60001 on db1, 60002 on db2
MID_COPY_RATE_MB_PER_S = 15  # slow enough that the copy is still under way when it is killed


# --- the matrix, from the plan --------------------------------------------------------------------
def _seed_plan_steps() -> tuple[list[dict[str, Any]], str | None]:
    """The seed scenario's plan steps (rebuild db1 from db2), built without connecting anywhere."""
    with tempfile.TemporaryDirectory(prefix="resync-faults-plan-") as tmp:
        root = Path(tmp)
        hosts = Sandbox(root / "sandbox", base_port=20000).runbook_hosts()  # nothing is created
        runbook = write_runbook(root, None, donor="db2", recipient="db1", hosts=hosts)
        versions = server_version_arg()
        try:
            doc = plan_json(root, runbook, *(["--server-version", versions] if versions else []))
        except Exception as exc:  # reported by every case of the matrix, not as a collection error
            return [], f"{type(exc).__name__}: {exc}"
    return doc["steps"], None


PLAN_STEPS, PLAN_ERROR = _seed_plan_steps()
STEP_KEYS = [s["key"] for s in PLAN_STEPS]
COPY_KEY = next((k for k in STEP_KEYS if k.startswith("copy-datadir")), None)
KILL_POINTS = [*STEP_KEYS, MID_COPY] if COPY_KEY else STEP_KEYS
WRITABLE = re.compile(r"read_only\s*=\s*(OFF|0)\b", re.IGNORECASE)


def _actions(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [x for a in actions
            for x in [a, *_actions([c for k in ("actions", "then", "else") for c in a.get(k, [])])]]


def _makes_writable(step: dict[str, Any]) -> bool:
    """The step lets a server take application writes again (SET GLOBAL read_only = OFF)."""
    return any(a["kind"] == "sql" and WRITABLE.search(a["text"]) for a in _actions(step["actions"]))


# rollback after each destructive step, after each step that makes a server writable (from then
# on a plain rollback would throw acknowledged writes away) and after the last one
ROLLBACK_POINTS = list(dict.fromkeys(
    [s["key"] for s in PLAN_STEPS if s["destructive"] or _makes_writable(s)] + STEP_KEYS[-1:]))
if PLAN_ERROR:
    KILL_POINTS = ROLLBACK_POINTS = ["plan-unavailable"]


# --- one crash ------------------------------------------------------------------------------------
@dataclass
class Crash:
    kill_point: str
    runbook: Path
    journal: Path
    run_id: str
    at_kill: dict[str, Any]  # the journal as the killed process left it
    before: dict[str, dict[str, Any]]  # each server's state before the run
    writes: dict[str, tuple[int, str | None]] = field(default_factory=dict)  # name -> (id, refusal)
    run_err: str = ""
    datadirs: list[str] = field(default_factory=list)  # of this test's servers

    def acknowledged(self) -> dict[str, int]:
        return {name: row for name, (row, refused) in self.writes.items() if refused is None}

    def landed(self) -> str:
        """Where the kill landed: the steps the killed process had started and not finished."""
        states = step_states(self.at_kill)
        running = [k for k, v in states.items() if v not in ("done", "pending")]
        return f"killed with {running or 'no step'} under way, outcome {self.at_kill.get('outcome')}"

    def story(self, *more: str) -> str:
        lines = [f"kill point: {self.kill_point}; {self.landed()}",
                 "writes while dead: " + ", ".join(
                     f"{n}: row {row} " + ("ACKNOWLEDGED" if why is None else f"refused ({why})")
                     for n, (row, why) in self.writes.items()),
                 "journal at the kill:", journal_tail(self.at_kill, commands=5),
                 *([f"the killed run's stderr: {self.run_err}"] if self.run_err.strip() else [])]
        return "\n".join([*lines, *more])


def _replica_state(pair: Any, name: str) -> dict[str, Any] | None:
    d = dialect(pair, name)
    rows = try_sql(pair, name, d.replica_status().sql)
    if isinstance(rows, str) or not rows:
        return None if not isinstance(rows, str) else {"error": rows}
    f, row = d.status_fields, rows[0]
    return {"io": row[f.io_running], "sql": row[f.sql_running], "host": row[f.source_host],
            "port": int(row[f.source_port]), "using_gtid": str(row[f.using_gtid])}


def _server_state(pair: Any, name: str) -> dict[str, Any]:
    ro = try_sql(pair, name, "SELECT @@GLOBAL.read_only AS ro")
    return {"read_only": ro if isinstance(ro, str) else int(ro[0]["ro"]),
            "replica": _replica_state(pair, name)}


def _kill_run(tmp_path: Path, pair: Any, kill_point: str) -> Crash:
    """Seed, start the run, SIGKILL it at the kill point, write as the application meanwhile."""
    if PLAN_ERROR:
        pytest.fail(f"the seed scenario's plan could not be built at collection: {PLAN_ERROR}")
    if not isinstance(pair, Sandbox):
        pytest.skip("the fault matrix needs the local sandbox (its application user, its service "
                    "scripts): RESYNC_TEST_TARGET is set")
    copy = {"rate_limit_mb_per_s": MID_COPY_RATE_MB_PER_S} if kill_point == MID_COPY else None
    runbook = seed_incident(tmp_path, pair, copy=copy)
    before = {name: _server_state(pair, name) for name in SERVERS}
    proc = start_run(tmp_path, runbook)
    try:
        if kill_point == MID_COPY:
            copy_key = str(COPY_KEY)

            def reached(j: dict[str, Any]) -> bool:  # the copy's ends started: bytes flowing
                return step_states(j).get(copy_key) == "running" and any(
                    c["step"] == copy_key and c["ok"] is None for c in j["commands"])
            at_kill = kill_when(tmp_path, proc, reached, then_wait=1.0)
        else:
            at_kill = kill_when(tmp_path, proc, lambda j: step_states(j).get(kill_point) == "done")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    journal = sorted((tmp_path / "resync-journal").glob("*.json"))[0]
    crash = Crash(kill_point, runbook, journal, at_kill["run_id"], at_kill, before,
                  run_err=(tmp_path / "run.err").read_text(errors="replace")[-2000:],
                  datadirs=[str(server.datadir) for server in pair])
    assert list(step_states(at_kill)) == STEP_KEYS, (
        "this run's plan (detected) has other steps than the matrix collected from "
        f"`resync plan`: {list(step_states(at_kill))} vs {STEP_KEYS}")
    if kill_point == MID_COPY:
        assert step_states(at_kill)[str(COPY_KEY)] == "running", crash.story("the copy ended")
    for i, name in enumerate(SERVERS, 1):
        row = ROW_BASE + i
        crash.writes[name] = (row, app_write(pair, name, row, f"while dead on {name}"))
    return crash


def _missing_rows(pair: Any, where: dict[tuple[str, str], int], timeout: float) -> dict[str, str]:
    """Of {(acknowledged by, looked for on): row}, those not there within timeout (replication
    has that long, all rows together; a row missing from the server that acknowledged it ends
    the wait at once), each with what the server answered."""
    deadline = time.monotonic() + timeout
    while True:
        missing, final = {}, False
        for (name, server), row in where.items():
            got = try_sql(pair, server, f"SELECT id FROM app.orders WHERE id = {int(row)}")
            if got != [{"id": row}]:
                missing[f"row {row} (acknowledged by {name}) on {server}"] = (
                    got if isinstance(got, str) else "absent")
                final = final or server == name
        if not missing or final or time.monotonic() > deadline:
            return missing
        time.sleep(0.2)


def _result(crash: Crash, text: str) -> None:
    writes = ", ".join(f"{n} {'ACK' if why is None else 'refused'}"
                       for n, (_, why) in crash.writes.items())
    print(f"FAULT-MATRIX {crash.kill_point}: {crash.landed()}; writes: {writes}; {text}")


# --- resume ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kill_point", KILL_POINTS)
def test_kill_then_resume_loses_no_acknowledged_write(tmp_path: Path, sandbox_pair: Any,
                                                      kill_point: str) -> None:
    pair = sandbox_pair
    crash = _kill_run(tmp_path, pair, kill_point)
    try:
        proc = resync(tmp_path, "resume", "--yes", str(crash.journal))
        after = read_journal(tmp_path)
        outcome = (after or {}).get("outcome")
        resumed = (f"resume exit {proc.returncode}; stderr:\n{proc.stderr[-2500:]}\n"
                   f"stdout tail:\n{proc.stdout[-1500:]}")
        story = crash.story(resumed, "journal after resume:", journal_tail(after))
        acknowledged = crash.acknowledged()

        assert "Traceback" not in proc.stderr, story
        if proc.returncode == 0 or outcome == "done":
            # the run finished (now, or before the kill): the pair is whole again
            assert outcome == "done", story
            missing = _missing_rows(pair, {(name, server): row for name, row in
                                           acknowledged.items() for server in SERVERS}, 15)
            assert not missing, f"acknowledged writes missing: {missing}\n{story}"
            verify = resync(tmp_path, "verify", str(crash.runbook))
            assert verify.returncode == 0, (f"resync verify -> {verify.returncode}\n"
                                            f"{verify.stdout[-2000:]}\n{verify.stderr}\n{story}")
            left = copy_ends_of(crash.run_id, crash.datadirs)
            assert left == [], (f"copy ends of the run left running: {process_lines(left)}"
                                f"\n{story}")
            _result(crash, f"resume exit {proc.returncode}, outcome done; acknowledged "
                           f"{sorted(acknowledged)}: on both servers; verify ok")
        else:
            # stopped: with a clear message, and nothing lost where it was acknowledged
            assert proc.returncode in (1, 3), story
            assert "resync:" in proc.stderr, f"no message on stderr\n{story}"
            for name in acknowledged:
                if not pair[name].is_running():
                    pair[name].start()  # to look: the row may be in its datadir, server down
            missing = _missing_rows(pair, {(name, name): row for name, row in
                                           acknowledged.items()}, 2)
            assert not missing, f"acknowledged writes gone: {missing}\n{story}"
            message = proc.stderr.strip().splitlines()[0] if proc.stderr.strip() else ""
            _result(crash, f"resume exit {proc.returncode} (outcome {outcome}): {message}; "
                           f"acknowledged {sorted(acknowledged)} still where written")
    finally:
        stop_copy_ends(crash.run_id, crash.datadirs)


# --- rollback -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kill_point", ROLLBACK_POINTS)
def test_kill_then_rollback_restores_recorded_topology(tmp_path: Path, sandbox_pair: Any,
                                                       kill_point: str) -> None:
    pair = sandbox_pair
    crash = _kill_run(tmp_path, pair, kill_point)
    try:
        finished = crash.at_kill.get("outcome") == "done" or all(
            v == "done" for v in step_states(crash.at_kill).values())
        proc = resync(tmp_path, "rollback", "--yes", str(crash.journal))
        forced = ""
        if proc.returncode == 3 and "--force" in proc.stderr:  # the CLI asks for it: give it
            forced = f"plain rollback refused (exit 3): {proc.stderr.strip()}; then --force\n"
            proc = resync(tmp_path, "rollback", "--yes", "--force", str(crash.journal))
        elif proc.returncode == 3 and finished:
            pytest.skip(f"the CLI refuses to roll back a finished run: {proc.stderr.strip()}")
        after = read_journal(tmp_path)
        story = crash.story(
            f"{forced}rollback exit {proc.returncode}; stderr:\n{proc.stderr[-2500:]}\n"
            f"stdout tail:\n{proc.stdout[-1500:]}", "journal after rollback:",
            journal_tail(after), f"before the run: {json.dumps(crash.before)}")

        assert proc.returncode == 0, story
        # db1 runs on its own old datadir again (its damage included), not on the copy
        assert try_sql(pair, "db1", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 9999") == [
            {"n": 1}], f"db1 is not back on its old datadir\n{story}"
        assert try_sql(pair, "db1", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 5001") == [
            {"n": 0}], f"db1 still has db2's data\n{story}"
        # db2 runs on its data and does not replicate (the failover had stopped it)
        assert try_sql(pair, "db2", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 5001") == [
            {"n": 1}], f"db2 lost its data\n{story}"
        now = {name: _server_state(pair, name) for name in SERVERS}
        story += f"\nafter rollback: {json.dumps(now)}"
        db2 = now["db2"]["replica"] or {}
        assert db2.get("sql") != "Yes", (
            f"db2 replicates from {db2.get('host')}:{db2.get('port')} after the rollback\n{story}")
        was = crash.before["db2"]["replica"] or {}
        assert db2.get("io") == was.get("io") and db2.get("sql") == was.get("sql"), (
            f"db2's replication threads are not as before the run\n{story}")
        # the writes acknowledged while the controller was dead are still served: a rollback
        # moves the new primary's writes aside only when told to (--force, asked for by the CLI)
        kept = {n: row for n, row in crash.acknowledged().items() if not forced or n == "db2"}
        missing = _missing_rows(pair, {(n, n): row for n, row in kept.items()}, 2)
        assert not missing, (f"a rollback {'with' if forced else 'without'} --force threw away "
                             f"acknowledged writes: {missing}\n{story}")
        # the rest of the recorded topology: db1's replication, db2's source, read_only
        assert (now["db1"]["replica"] or {}).get("sql") == (
            crash.before["db1"]["replica"] or {}).get("sql"), f"db1's replication changed\n{story}"
        assert (db2.get("host"), db2.get("port"), db2.get("using_gtid")) == (
            was.get("host"), was.get("port"), was.get("using_gtid")), (
            f"db2's replication source is not the one recorded before the run\n{story}")
        for name in SERVERS:
            assert now[name]["read_only"] == crash.before[name]["read_only"], (
                f"{name}: read_only {now[name]['read_only']}, before the run "
                f"{crash.before[name]['read_only']}\n{story}")
        assert (after or {}).get("outcome") == "rolled back", story
        _result(crash, f"{forced.strip() or 'rollback'} exit 0; topology as recorded; "
                       f"acknowledged {sorted(crash.acknowledged())}")
    finally:
        stop_copy_ends(crash.run_id, crash.datadirs)
