"""`resync schedule` (systemd timer + service, crontab line, --install with file modes),
`resync window` and the go/no-go of `resync check --window` from given figures."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from resync.cli.commands import main
from resync.cli.window import go_no_go
from resync.model.keys import DONOR_BYTES, PROBE_RATE
from resync.model.runbook import LoadedRunbook, parse_runbook
from resync.model.window import WindowSettings
from resync.plan.build import assumed_facts, build_plan
from resync.plan.estimate import Estimate
from resync.steps.preflight.checks import CheckResult
from resync.window.horizon import judge_horizon
from resync.window.schedule import env_names, on_calendar, runtime_limit, schedule_files

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "runbooks" / "rebuild-replica-window.yaml"
CRON = 'cron: "0 2 * * SUN"'


def loaded(edit: tuple[str, str] | None = None, path: Path | None = None) -> LoadedRunbook:
    text = EXAMPLE.read_text()
    if edit is not None:
        assert text.count(edit[0]) == 1, edit
        text = text.replace(*edit)
    if path is not None:
        path.write_text(text)
    return parse_runbook(text, path or EXAMPLE)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def settings(**fields: Any) -> WindowSettings:
    return WindowSettings.model_validate({"duration": "1h", "timezone": "Europe/Berlin", **fields})


@pytest.mark.parametrize(("cron", "calendars"), [
    ("0 2 * * SUN", ["Sun *-*-* 02:00:00 Europe/Berlin"]),
    ("30 1 * * MON-FRI", ["Mon..Fri *-*-* 01:30:00 Europe/Berlin"]),
    ("0 22 * * SAT,SUN", ["Sat,Sun *-*-* 22:00:00 Europe/Berlin"]),
    ("*/15 3 * * *", ["*-*-* 03:00,15,30,45:00 Europe/Berlin"]),
    ("0 1-4 1 JAN,JUL *", ["*-01,07-01 01..04:00:00 Europe/Berlin"]),
    # cron fires on the 1st OR a Monday; systemd ANDs a weekday with a date: two values
    ("0 2 1 * MON", ["*-*-01 02:00:00 Europe/Berlin", "Mon *-*-* 02:00:00 Europe/Berlin"]),
])
def test_on_calendar_in_the_window_zone(cron: str, calendars: list[str]) -> None:
    assert on_calendar(settings(cron=cron)) == calendars


def test_a_one_off_window_fires_once() -> None:
    assert on_calendar(settings(start="2026-12-06T02:00")) == [
        "2026-12-06 02:00:00 Europe/Berlin"]


def test_the_timer_and_the_service(tmp_path: Path) -> None:
    files = schedule_files(loaded(), resync=["/opt/resync/bin/resync"], workdir=Path("/var/lib/r"),
                           env_file=Path("/etc/resync/db2.env"))
    name = "resync-rebuild-db2-from-db1-window"
    assert files.name == name
    timer = files.timer.splitlines()
    for line in ("OnCalendar=Sun *-*-* 02:00:00 Europe/Berlin", "Persistent=false",
                 "AccuracySec=1s", f"Unit={name}.service", "WantedBy=timers.target"):
        assert line in timer
    assert "a second instance of rebuild-replica-window.yaml" in files.timer  # the lock
    service = files.service.splitlines()
    runbook = EXAMPLE.resolve()
    for line in ("Type=oneshot", "WorkingDirectory=/var/lib/r",
                 "EnvironmentFile=/etc/resync/db2.env",
                 f"ExecStart=/opt/resync/bin/resync run {runbook} --yes --log-json "
                 f"/var/lib/r/resync-journal/rebuild-db2-from-db1-window.events.jsonl",
                 "RuntimeMaxSec=7200"):
        assert line in service
    assert "a second instance of rebuild-replica-window.yaml" in files.service
    assert files.env_names == ("DB1_PASSWORD", "DB2_PASSWORD", "REPL_PASSWORD")
    assert files.env_text().splitlines()[-3:] == ["DB1_PASSWORD=", "DB2_PASSWORD=",
                                                  "REPL_PASSWORD="]


def test_the_runtime_limit_is_a_backstop_past_the_window() -> None:
    assert runtime_limit(settings(cron="0 2 * * *", duration="30m")).total_seconds() == 5400
    assert runtime_limit(settings(cron="0 2 * * *", duration="3h")).total_seconds() == 21600


def test_paths_are_quoted_for_systemd_and_specifiers_escaped(tmp_path: Path) -> None:
    files = schedule_files(loaded(), resync=["/opt/my tools/resync"], workdir=Path("/srv/50%"),
                           env_file=Path("/etc/resync/x.env"))
    assert 'ExecStart="/opt/my tools/resync" run' in files.service
    assert "WorkingDirectory=/srv/50%%" in files.service


def test_the_crontab_line_sets_its_zone_and_says_why() -> None:
    files = schedule_files(loaded(), resync=["/usr/bin/resync"], workdir=Path("/var/lib/r"),
                           env_file=Path("/etc/resync/db2.env"))
    lines = files.crontab.splitlines()
    assert "CRON_TZ=Europe/Berlin" in lines
    assert any("cron has no time zone per line" in line for line in lines)
    (job,) = [line for line in lines if line.startswith("0 2 * * SUN ")]
    assert ". /etc/resync/db2.env" in job
    assert "exec /usr/bin/resync run" in job and "--yes --log-json" in job


def test_a_one_off_crontab_line_warns_it_repeats_yearly() -> None:
    files = schedule_files(loaded((CRON, 'start: "2026-12-06T02:30"')), resync=["resync"],
                           workdir=Path("/w"), env_file=Path("/e"))
    assert "\n30 2 6 12 * cd /w" in files.crontab and "cron has no year" in files.crontab


def test_env_names_include_every_env_field() -> None:
    page = ("window:\n", "maintenance: {kind: command, on_cmd: 'true', off_cmd: 'true', probe: "
                         "{url: 'http://db1.example.internal/', expect_status: 503}}\nwindow:\n")
    assert env_names(loaded(page)) == ("DB1_PASSWORD", "DB2_PASSWORD", "REPL_PASSWORD")


def test_schedule_prints_without_install(tmp_path: Path) -> None:
    result = invoke("schedule", str(EXAMPLE))
    assert result.exit_code == 0, result.output
    assert "OnCalendar=Sun *-*-* 02:00:00 Europe/Berlin" in result.output
    assert "CRON_TZ=Europe/Berlin" in result.output
    assert "--install" in result.output


def test_schedule_install_writes_units_and_a_0600_env_file(tmp_path: Path) -> None:
    units, env = tmp_path / "units", tmp_path / "etc" / "db2.env"
    units.mkdir()
    result = invoke("schedule", str(EXAMPLE), "--install", "--unit-dir", str(units),
                    "--env-file", str(env), "--workdir", str(tmp_path))
    assert result.exit_code == 0, result.output
    name = "resync-rebuild-db2-from-db1-window"
    timer, service = units / f"{name}.timer", units / f"{name}.service"
    assert stat.S_IMODE(timer.stat().st_mode) == 0o644
    assert stat.S_IMODE(service.stat().st_mode) == 0o644
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert "DB1_PASSWORD=\n" in env.read_text()
    assert [p.name for p in units.iterdir()] == sorted([timer.name, service.name]) or \
        sorted(p.name for p in units.iterdir()) == sorted([timer.name, service.name])
    assert f"systemctl daemon-reload && systemctl enable --now {name}.timer" in result.output
    # a filled-in env file is never overwritten, only its mode corrected
    env.write_text("DB1_PASSWORD=s3cret\n")
    env.chmod(0o644)
    again = invoke("schedule", str(EXAMPLE), "--install", "--unit-dir", str(units),
                   "--env-file", str(env), "--workdir", str(tmp_path))
    assert again.exit_code == 0, again.output
    assert env.read_text() == "DB1_PASSWORD=s3cret\n"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert "it lacks: DB2_PASSWORD, REPL_PASSWORD" in again.output


def test_schedule_needs_a_window(tmp_path: Path) -> None:
    result = invoke("schedule", str(ROOT / "runbooks" / "rebuild-replica.yaml"))
    assert result.exit_code == 2 and "has no window: section" in result.output


def test_window_lists_the_next_windows(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    loaded(("cron: \"0 2 * * SUN\"", 'cron: "30 2 * * SUN"'), path)
    result = CliRunner().invoke(main, ["window", str(path), "--count", "60"],
                                env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "every `30 2 * * SUN` (Europe/Berlin) for 1h00m, margin 20%" in result.output
    assert "UTC" in result.output
    # within 60 weeks one last Sunday of March: its 02:30 is skipped, not shifted
    assert "DOES NOT EXIST" in result.output
    assert "02:30 does not exist in Europe/Berlin on " in result.output
    assert "happens twice" in result.output  # and one last Sunday of October


def test_check_format_json_goes_with_window() -> None:
    result = invoke("check", str(EXAMPLE), "--format", "json")
    assert result.exit_code == 2 and "--format goes with --window" in result.output


# -- the go/no-go, from given figures ---------------------------------------------------------

PASSED = [CheckResult("db1: connect", True, "ok")]


def answer(rb: LoadedRunbook, values: dict[str, Any], results: list[CheckResult]) -> dict[str, Any]:
    plan = build_plan(rb, assumed_facts(rb, {}))
    return go_no_go(rb, plan, values, results, datetime(2026, 12, 1, 10, tzinfo=UTC))


def test_go_when_the_run_fits_the_next_window() -> None:
    doc = answer(loaded(), {str(DONOR_BYTES): 10_000_000_000, str(PROBE_RATE): 100_000_000},
                 PASSED)
    assert doc["go"] is True and doc["reasons"] == []
    assert doc["fit"]["fits"] and doc["fit"]["available_seconds"] == 3600
    copy = Estimate(10_000_000_000, 100_000_000, "probe").phases()["copy"]
    assert doc["estimate"]["phases"]["copy"] == round(copy, 1)
    assert doc["estimate"]["bandwidth_source"] == "probe"
    assert doc["next_window"]["start_utc"] == "2026-12-06T01:00:00+00:00"
    assert doc["binlog_horizon"]["needed"] is False


def test_no_go_when_it_does_not_fit_or_preflight_fails() -> None:
    slow = {str(DONOR_BYTES): 100_000_000_000, str(PROBE_RATE): 30_000_000}  # 100 GB at 30 MB/s
    doc = answer(loaded(), slow, [*PASSED, CheckResult("disk space", False, "needs 200 GiB")])
    assert doc["go"] is False and doc["fit"]["fits"] is False
    assert doc["reasons"][0] == "preflight: disk space: needs 200 GiB"
    assert doc["reasons"][1].startswith("DOES NOT FIT: the run needs")
    assert doc["preflight"] == {"ok": False, "failures": [{"check": "disk space",
                                                           "detail": "needs 200 GiB"}]}


def test_binlog_horizon_only_where_the_replica_catches_up() -> None:
    hot = loaded(("{method: stream, port: 7878, compress: none}", "{method: mariabackup}")).model
    cold = loaded().model
    assert judge_horizon(cold, None, 3600, 600).ok  # nothing to catch up: no horizon
    short = judge_horizon(hot, 3600.0, 3600, 600)
    assert not short.ok and "TOO SHORT" in short.describe() and short.needed_seconds == 4200
    assert judge_horizon(hot, 86400 * 7, 3600, 600).ok
    assert judge_horizon(hot, 0, 3600, 600).ok  # 0: never purged
    assert not judge_horizon(hot, None, 3600, 600).ok  # unknown is not ok
    ebs_replica = loaded(("{method: stream, port: 7878, compress: none}",
                          "{method: ebs}")).model
    assert judge_horizon(ebs_replica, 60, 3600, 600).reason is not None


def test_the_units_describe_the_runbook_by_its_title_with_specifiers_escaped() -> None:
    titled = loaded(("name: rebuild-db2-from-db1-window",
                     "title: Nightly rebuild of db2 at 50% load\nname: rebuild-db2-from-db1-window"))
    files = schedule_files(titled, resync=["/opt/resync/bin/resync"], workdir=Path("/var/lib/r"),
                           env_file=Path("/etc/resync/db2.env"))
    assert files.name == "resync-rebuild-db2-from-db1-window", "file names keep the slug"
    for unit in (files.timer, files.service):
        assert "Description=resync Nightly rebuild of db2 at 50%% load (rebuild-db2-from-db1-" \
               "window)" in unit
