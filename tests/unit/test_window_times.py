"""The runbook's `window:` section and where a moment stands relative to its windows: before,
inside, after, and the daylight-saving edges (a start the clocks skip is reported, never shifted;
a start that happens twice takes the first)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support import line_no, runbook_error

from resync.model.runbook import load_runbook
from resync.model.window import WindowSettings
from resync.window.occurrences import state_at, windows

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "runbooks" / "rebuild-replica-window.yaml"
BASE = (ROOT / "runbooks" / "rebuild-replica.yaml").read_text()


def window(**fields: Any) -> WindowSettings:
    return WindowSettings.model_validate({"duration": "1h", "timezone": "Europe/Berlin", **fields})


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def with_window(tmp_path: Path, section: str) -> Path:
    path = tmp_path / "runbook.yaml"
    path.write_text(BASE + section)
    return path


# -- the runbook section ----------------------------------------------------------------------


def test_the_example_runbook_has_a_weekly_window() -> None:
    settings = load_runbook(EXAMPLE).model.window
    assert settings is not None
    assert (settings.cron, settings.duration, settings.timezone, settings.margin) == (
        "0 2 * * SUN", timedelta(hours=1), "Europe/Berlin", 0.2)
    assert settings.describe() == "every `0 2 * * SUN` (Europe/Berlin) for 1h00m, margin 20%"


@pytest.mark.parametrize(("text", "span"), [("1h", 3600), ("90m", 5400), ("1h30m", 5400),
                                            ("45s", 45), ("1d", 86400)])
def test_durations(text: str, span: int) -> None:
    assert window(cron="0 2 * * *", duration=text).seconds == span


def test_a_runbook_without_window_has_none() -> None:
    assert load_runbook(ROOT / "runbooks" / "rebuild-replica.yaml").model.window is None


def test_a_start_the_clocks_skip_is_refused_naming_file_line_and_field(tmp_path: Path) -> None:
    section = ("window:\n  start: \"2027-03-28T02:30\"\n  duration: 1h\n"
               "  timezone: Europe/Berlin\n")
    path = with_window(tmp_path, section)
    err = runbook_error(path)
    line = line_no(path.read_text(), "  start:")
    assert err.problems == [
        f"{path}:{line}: window.start: 02:30 does not exist in Europe/Berlin on 2027-03-28: the "
        "clocks jump forward by 1h (UTC+01:00 -> UTC+02:00) that night: choose a time outside "
        "the gap"]


@pytest.mark.parametrize(("field", "value", "says"), [
    ("duration", "1x", "window.duration: '1x' is not a duration such as 1h, 90m or 1h30m"),
    ("duration", "90", "window.duration: 90: give a unit, e.g. 1h, 90m or 1h30m"),
    ("duration", "8d", "a window lasts more than 0 and at most 7 days"),
    ("margin", "20", "window.margin: 20: write the margin as a percentage, e.g. 20%"),
    ("margin", "'twenty%'", "write the margin as a percentage"),
    ("timezone", "Mars/Olympus", "window.timezone: 'Mars/Olympus' is not a time zone known here"),
    ("cron", "'0 2 * *'", "window.cron: 4 fields: a cron expression has five"),
    ("start", "'2026-12-06T02:00+01:00'", "carries a UTC offset: write the local time"),
    ("start", "'next sunday'", "is not an ISO local date-time such as 2026-12-06T02:00"),
    ("colour", "blue", "window.colour: unknown field"),
])
def test_bad_input_names_the_field(tmp_path: Path, field: str, value: str, says: str) -> None:
    fields = {"cron": "'0 2 * * SUN'", "duration": "1h", "timezone": "Europe/Berlin",
              "margin": "20%"}
    if field == "start":
        del fields["cron"]
    fields[field] = value
    path = with_window(tmp_path, "window:\n" + "".join(f"  {k}: {v}\n" for k, v in fields.items()))
    err = runbook_error(path)
    line = line_no(path.read_text(), f"  {field}:")
    assert any(p.startswith(f"{path}:{line}: ") and says in p for p in err.problems), err.problems


@pytest.mark.parametrize(("section", "says"), [
    ("  duration: 1h\n  timezone: UTC\n", "give start (an ISO local date-time"),
    ("  start: '2026-12-06T02:00'\n  cron: '0 2 * * SUN'\n  duration: 1h\n  timezone: UTC\n",
     "give either start (an ISO local date-time) or cron (five fields), not both"),
])
def test_start_xor_cron(tmp_path: Path, section: str, says: str) -> None:
    path = with_window(tmp_path, "window:\n" + section)
    line = line_no(path.read_text(), "window:")
    assert runbook_error(path).problems == [f"{path}:{line}: window: {says}" + (
        ", e.g. 2026-12-06T02:00) or cron (five fields, e.g. '0 2 * * SUN')"
        if "either" not in says else "")]


def test_an_unquoted_yaml_timestamp_is_a_local_time(tmp_path: Path) -> None:
    path = with_window(tmp_path, "window: {start: 2026-12-06T02:00:00, duration: 1h, "
                                 "timezone: Europe/Berlin, margin: 35%}\n")
    settings = load_runbook(path).model.window
    assert settings is not None
    assert settings.start == datetime(2026, 12, 6, 2, 0) and settings.margin == 0.35


# -- before, inside, after --------------------------------------------------------------------


def test_one_window_before_inside_after() -> None:
    w = window(start="2026-12-06T02:00")  # 01:00-02:00 UTC (CET, UTC+1)
    before = state_at(w, utc(2026, 12, 6, 0, 30))
    assert (before.phase, before.seconds_until_start) == ("before", 1800)
    assert "it starts in 30m00s" in before.describe()
    inside = state_at(w, utc(2026, 12, 6, 1, 15))
    assert (inside.phase, inside.seconds_left) == ("inside", 2700)
    assert inside.describe() == ("inside the window Sun 2026-12-06 02:00 CET - 03:00 CET "
                                 "(01:00-02:00 UTC): 45m00s left")
    after = state_at(w, utc(2026, 12, 6, 2, 0))  # the end itself is outside
    assert after.phase == "after" and after.seconds_left == 0
    assert "it ended 0s ago" in after.describe()


def test_a_recurring_window_inside_then_before_the_next() -> None:
    w = window(cron="0 2 * * SUN")
    inside = state_at(w, utc(2026, 12, 6, 1, 59, 30))
    assert inside.phase == "inside" and inside.seconds_left == 30
    nxt = state_at(w, utc(2026, 12, 6, 2, 0))
    assert nxt.phase == "before" and nxt.window is not None
    assert nxt.window.start == utc(2026, 12, 13, 1, 0)


def test_windows_list_local_and_utc_across_the_summer_time_change() -> None:
    w = window(cron="0 2 * * SUN")
    found = windows(w, utc(2027, 3, 20), 3)
    # the clocks go from 01:59:59 CET to 03:00 CEST on 2027-03-28: that Sunday has no 02:00
    assert [o.exists for o in found] == [True, False, True]
    assert [found[0].start, found[2].start] == [utc(2027, 3, 21, 1), utc(2027, 4, 4, 0)]
    assert [found[0].local_start.strftime("%H:%M %Z"),
            found[2].local_start.strftime("%H:%M %Z")] == ["02:00 CET", "02:00 CEST"]


def test_dst_spring_gap_is_reported_and_skipped_never_shifted() -> None:
    w = window(cron="30 2 * * SUN")  # 2027-03-28: Berlin jumps from 02:00 to 03:00
    found = windows(w, utc(2027, 3, 25), 2)
    assert [o.exists for o in found] == [False, True]
    assert found[0].placed.note() == ("02:30 does not exist in Europe/Berlin on 2027-03-28: the "
                                      "clocks jump forward by 1h (UTC+01:00 -> UTC+02:00) that "
                                      "night")
    assert found[0].describe() == "Sun 2027-03-28 02:30 Europe/Berlin: DOES NOT EXIST"
    # at 03:45 CEST that night: not inside a shifted window, but before next week's
    state = state_at(w, utc(2027, 3, 28, 1, 45))
    assert state.phase == "before" and state.window is not None
    assert state.window.start == utc(2027, 4, 4, 0, 30)
    assert [s.placed.wall for s in state.skipped] == [datetime(2027, 3, 28, 2, 30)]
    assert "skipped: 02:30 does not exist" in state.describe()


def test_dst_fall_back_fold_takes_the_first_and_says_so() -> None:
    w = window(cron="30 2 * * SUN")  # 2027-10-31: 02:00-03:00 happens twice in Berlin
    (first,) = windows(w, utc(2027, 10, 30), 1)
    assert first.exists and first.placed.ambiguous
    assert first.start == utc(2027, 10, 31, 0, 30)  # 02:30 CEST (fold=0), not 02:30 CET
    assert first.placed.note() == ("02:30 happens twice in Europe/Berlin on 2027-10-31 (the "
                                   "clocks go back: UTC+02:00 -> UTC+01:00): the first one "
                                   "(UTC+02:00, fold=0) is used")
    # the window lasts its real hour: it ends at the second 02:30
    assert first.describe() == "Sun 2027-10-31 02:30 CEST - 02:30 CET (00:30-01:30 UTC)"
    one = window(start="2027-10-31T02:30")
    assert state_at(one, utc(2027, 10, 31, 1, 0)).seconds_left == 1800


def test_a_cron_window_in_progress_is_listed_first() -> None:
    w = window(cron="0 2 * * SUN", duration="2h")
    found = windows(w, utc(2026, 12, 6, 2, 30), 2)
    assert [o.start for o in found] == [utc(2026, 12, 6, 1), utc(2026, 12, 13, 1)]


def test_a_past_one_off_window_lists_nothing() -> None:
    w = window(start="2026-12-06T02:00")
    assert windows(w, utc(2026, 12, 7), 5) == []
    assert state_at(w, utc(2026, 12, 7)).phase == "after"
