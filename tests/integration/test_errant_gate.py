"""Direction and errant transactions on real MariaDB: a rebuild never throws away what only the
recipient has, unless asked to. The seed's story read the wrong way round (donor db1, the
damaged old primary; recipient db2, which the application wrote to after the failover) is
refused with nothing changed; read the right way round it passes."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import connect, load_app_data, resync, seed_incident_unlogged, sql, write_runbook

from resync.model.errors import PreflightFailed
from resync.model.keys import StepKind
from resync.model.runbook import load_runbook
from resync.run.journal import MemoryJournal
from resync.run.runner import detected_plan, executor_for
from resync.steps.direction import ErrantTransactions, errant_recheck
from resync.testing.sandbox import Sandbox


def _seed_story(tmp_path: Path, pair: Any) -> None:
    """The seed's story, db1's damage outside its binary log (helpers.seed_incident logs two
    FLUSH TABLES on db1: transactions db2 lacks, which the gate rightly refuses to drop)."""
    seed_incident_unlogged(tmp_path, pair)


def _snapshot(pair: Any) -> dict[str, Any]:
    return {name: (sql(pair, name, "SELECT COUNT(*) AS n, SUM(qty) AS q FROM app.orders"),
                   sql(pair, name, "SELECT @@GLOBAL.gtid_binlog_state AS s"))
            for name in ("db1", "db2")}


def _moved_aside(pair: Any) -> list[Path]:
    if not isinstance(pair, Sandbox):
        return []
    return [p for s in pair for p in s.datadir.parent.glob(f"{s.datadir.name}.resync-*")]


def test_swapped_donor_and_recipient_are_refused_and_nothing_changes(tmp_path: Path,
                                                                     sandbox_pair: Any) -> None:
    pair = sandbox_pair
    _seed_story(tmp_path, pair)
    before = _snapshot(pair)
    # the wrong way round: db2 has the failover writes (GTIDs 0-2-...) that db1 never saw
    runbook = write_runbook(tmp_path, pair, donor="db1", recipient="db2")

    proc = resync(tmp_path, "run", "--yes", str(runbook))

    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "no errant transactions on db2" in proc.stderr
    assert "db2 has transactions db1 lacks: 0-2-" in proc.stderr
    assert "swapped" in proc.stderr and "--discard-errant" in proc.stderr
    # nothing changed: both servers answer with their data, no datadir was moved
    assert _snapshot(pair) == before
    assert sql(pair, "db2", "SELECT item FROM app.orders WHERE id = 5001") == [
        {"item": "written on db2 after failover"}]
    assert _moved_aside(pair) == []
    journal = json.loads(next((tmp_path / "resync-journal").glob("*.json")).read_text())
    states = {s["key"]: s["state"] for s in journal["steps"]}
    assert states["preflight"] == "failed"
    assert {v for k, v in states.items() if k != "preflight"} == {"pending"}
    results = json.loads(journal["captured"]["preflight.results"])
    (errant,) = [r for r in results if r[0] == "no errant transactions on db2"]
    assert errant[1] is False and "0-2-" in errant[2]


def test_the_seed_scenario_passes_the_preflight(tmp_path: Path, sandbox_pair: Any) -> None:
    pair = sandbox_pair
    _seed_story(tmp_path, pair)
    runbook = write_runbook(tmp_path, pair, donor="db2", recipient="db1")

    proc = resync(tmp_path, "check", str(runbook), "--all")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAIL" not in proc.stdout
    for name in ("no errant transactions on db1", "replica not older than its primary",
                 "db1: table files in the datadir", "db2: no encryption keys needed",
                 "db1: binary and relay logs"):
        assert name in proc.stdout
    assert "every transaction of db1 is on db2" in proc.stdout


def test_a_stopped_recipient_is_judged_by_its_last_binary_log(tmp_path: Path,
                                                               sandbox_pair: Any) -> None:
    pair = sandbox_pair
    if not isinstance(pair, Sandbox):
        pytest.skip("stopping a server needs the local sandbox (RESYNC_TEST_TARGET is set)")
    _seed_story(tmp_path, pair)
    pair["db1"].stop()
    runbook = write_runbook(tmp_path, pair, donor="db2", recipient="db1")
    ok = resync(tmp_path, "check", str(runbook), "--all")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "every transaction of db1 is on db2" in ok.stdout

    # the wrong way round: db2 stopped as the recipient, read from its binary log
    pair["db1"].start()
    pair["db2"].stop()
    swapped = write_runbook(tmp_path, pair, donor="db1", recipient="db2")
    refused = resync(tmp_path, "check", str(swapped))
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "0-2-" in refused.stdout and "db1 lacks" in refused.stdout
    assert _moved_aside(pair) == []


def _preflight_then_stop(tmp_path: Path, pair: Sandbox, donor: str, recipient: str,
                         ) -> tuple[Any, Any, Any]:
    """The preflight run in this process (its values kept), then the recipient stopped."""
    loaded = load_runbook(write_runbook(tmp_path, pair, donor=donor, recipient=recipient))
    plan = detected_plan(loaded)
    step = plan.step(StepKind.PREFLIGHT)
    assert step is not None
    exe = executor_for(loaded, MemoryJournal("direction"))
    exe.journal.data.captured.update(plan.initial_values("direction"))  # the old datadir's path
    exe.begin(step.key)
    with contextlib.suppress(PreflightFailed):  # the swapped roles fail it: its values remain
        exe.run(step.plan())
    pair[recipient].stop()
    return loaded, plan, exe


def test_the_recheck_at_the_point_of_no_return(tmp_path: Path, sandbox_pair: Any) -> None:
    pair = sandbox_pair
    if not isinstance(pair, Sandbox):
        pytest.skip("stopping a server needs the local sandbox (RESYNC_TEST_TARGET is set)")
    _seed_story(tmp_path, pair)
    loaded, plan, exe = _preflight_then_stop(tmp_path, pair, "db2", "db1")
    try:
        exe.begin("move-datadir-aside:db1")
        exe.run(errant_recheck(loaded, plan.facts.versions, donor_up=True))
        summary = str(exe.captured["recheck.db1.errant"])
        assert summary.startswith("none: every transaction of db1 is on db2"), summary
        # the donor already stopped: the preflight's values of the donor serve
        exe.begin("move-datadir-aside:db1", attempt=2)
        exe.run(errant_recheck(loaded, plan.facts.versions, donor_up=False))
    finally:
        exe.close()
    records = [c for c in exe.journal.data.commands if c.step == "move-datadir-aside:db1"]
    assert [c.kind for c in records] == ["capture", "shell", "assert", "shell", "assert"]
    assert all(c.ok for c in records)
    pair["db1"].start()

    # the wrong way round, with db1 now writing on: db2 (stopped) has GTIDs db1 lacks
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    loaded, plan, exe = _preflight_then_stop(swapped, pair, "db1", "db2")
    try:
        exe.begin("move-datadir-aside:db2")
        with pytest.raises(ErrantTransactions, match="refusing to move db2's datadir aside: db2 "
                                                     "has transactions db1 lacks: 0-2-"):
            exe.run(errant_recheck(loaded, plan.facts.versions, donor_up=True))
        exe.begin("move-datadir-aside:db2", attempt=2)
        exe.run(errant_recheck(loaded, plan.facts.versions, True, donor_up=True))
        assert "DISCARDED" in str(exe.captured["recheck.db2.errant"])
    finally:
        exe.close()
    assert _moved_aside(pair) == []


def test_a_table_outside_the_datadir_is_refused(tmp_path: Path, sandbox_pair: Any) -> None:
    pair = sandbox_pair
    if not isinstance(pair, Sandbox):
        pytest.skip("a directory for DATA DIRECTORY needs the local sandbox")
    load_app_data(pair)
    elsewhere = pair.root / "elsewhere"
    elsewhere.mkdir()
    shutil.chown(elsewhere, "mysql", "mysql")
    conn = connect(pair, "db1")
    with conn.cursor() as cur:  # on db1 alone: db2 would put its file at the same path
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.execute(f"CREATE TABLE app.far (id INT PRIMARY KEY) ENGINE=InnoDB "
                    f"DATA DIRECTORY = '{elsewhere}'")
    conn.close()
    runbook = write_runbook(tmp_path, pair, donor="db2", recipient="db1")

    proc = resync(tmp_path, "check", str(runbook), "--all")

    assert proc.returncode == 3, proc.stdout + proc.stderr
    flat = " ".join(proc.stdout.split())
    assert "db1: table files in the datadir │ FAIL" in flat
    assert "elsewhere" in flat and "a copy of the datadir would miss them" in flat
    assert "db2: table files in the datadir │ pass" in flat
