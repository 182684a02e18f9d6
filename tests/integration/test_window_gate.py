"""The window gate on real servers: a run whose estimate does not fit a 1-minute window is
refused (exit 3) after its preflight, and nothing changes: both servers serve as before, the
recipient's datadir stays where it is, the maintenance page never goes on."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from helpers import dialect, journal_of, load_app_data, resync, sql, write_runbook

from resync.model.keys import WINDOW_ENDS_AT


def _state(pair: Any) -> dict[str, Any]:
    return {name: (sql(pair, name, "SELECT COUNT(*) AS n, SUM(qty) AS q FROM app.orders"),
                   sql(pair, name, "SELECT @@GLOBAL.gtid_binlog_state AS s, "
                                   "@@GLOBAL.read_only AS ro"))
            for name in ("db1", "db2")}


def test_a_run_that_does_not_fit_a_one_minute_window_is_refused_changing_nothing(
        tmp_path: Path, sandbox_pair: Any) -> None:
    pair = sandbox_pair
    load_app_data(pair)
    # the drifted replica db2 rebuilt from db1; a declared 1 MB/s link makes the copy of the
    # datadir alone take longer than the window lasts
    runbook = write_runbook(tmp_path, pair, donor="db1", recipient="db2", primary_after="db1",
                            copy={"bandwidth_mb_per_s": 1})
    flag = tmp_path / "maintenance.flag"
    doc = yaml.safe_load(runbook.read_text())
    start = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    doc["window"] = {"start": start.replace(tzinfo=None).isoformat(), "duration": "1m",
                     "timezone": "UTC", "margin": "20%"}
    doc["maintenance"] = {"kind": "flag_file", "hosts": ["db1"], "path": str(flag),
                          "sudo": False,
                          "probe": {"url": "http://127.0.0.1:9/", "expect_status": 503}}
    runbook.write_text(yaml.safe_dump(doc))
    before = _state(pair)
    datadirs = {n: h["datadir"] for n, h in pair.runbook_hosts().items()}

    proc = resync(tmp_path, "run", "--yes", str(runbook))

    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "waiting for the maintenance window" in proc.stdout, "it waited for the start"
    assert "window: the run cannot start" not in proc.stderr, "refused for its estimate"
    assert "DOES NOT FIT: the run needs" in proc.stderr
    # nothing changed: both servers answer with the same data, GTID state and read_only; db2
    # still replicates; the datadirs are in place; the page never went on
    assert _state(pair) == before
    status = sql(pair, "db2", dialect(pair, "db2").replica_status().sql)[0]
    fields = dialect(pair, "db2").status_fields
    assert (status[fields.io_running], status[fields.sql_running]) == ("Yes", "Yes")
    for datadir in datadirs.values():
        assert (Path(datadir) / "app").is_dir(), "the datadir is where it was"
        assert list(Path(datadir).parent.glob(f"{Path(datadir).name}.resync-*")) == []
    assert not flag.exists(), "the maintenance page never went on"
    journal = json.loads(journal_of(tmp_path).read_text())
    states = {s["key"]: s["state"] for s in journal["steps"]}
    assert states["preflight"] == "done"
    assert states["window-gate"] == "failed"
    assert {v for k, v in states.items() if k not in ("preflight", "window-gate")} == {"pending"}
    captured = journal["captured"]
    assert captured["window.gate.decision"] == "does not fit"
    assert 0 < captured["window.gate.seconds_left"] <= 60
    assert captured["window.gate.needed_seconds"] > captured["window.gate.seconds_left"]
    assert str(WINDOW_ENDS_AT) not in captured, "only a run that passes keeps the window's end"
    (record,) = [c for c in journal["commands"] if c["step"] == "window-gate"]
    assert record["ok"] is False and "DOES NOT FIT" in record["detail"]
