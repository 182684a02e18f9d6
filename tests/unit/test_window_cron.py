"""Cron expressions: fields, names, steps, the day-of-month / day-of-week rule, refusals."""

from __future__ import annotations

from datetime import date, datetime
from itertools import islice

import pytest

from resync.window.cron import CronError, parse_cron


def starts(expression: str, day: date, n: int) -> list[datetime]:
    return list(islice(parse_cron(expression).starts_from(day), n))


def test_weekly_by_name_and_by_number_alike() -> None:
    by_name, by_number, seven = (parse_cron(e) for e in ("0 2 * * SUN", "0 2 * * 0", "0 2 * * 7"))
    assert by_name.weekdays == by_number.weekdays == seven.weekdays == frozenset({0})
    # 2026-12-06 is a Sunday
    assert starts("0 2 * * sun", date(2026, 12, 1), 2) == [datetime(2026, 12, 6, 2, 0),
                                                             datetime(2026, 12, 13, 2, 0)]


def test_lists_ranges_and_steps() -> None:
    s = parse_cron("*/15 1-3,22 * JAN-MAR,DEC MON-FRI")
    assert s.minutes == frozenset({0, 15, 30, 45})
    assert s.hours == frozenset({1, 2, 3, 22})
    assert s.months == frozenset({1, 2, 3, 12})
    assert s.weekdays == frozenset({1, 2, 3, 4, 5})
    assert parse_cron("0 0-12/4 * * *").hours == frozenset({0, 4, 8, 12})
    assert parse_cron("5/20 * * * *").minutes == frozenset({5, 25, 45})  # a/n: from a to the end


def test_both_day_fields_restricted_match_either() -> None:
    # the 1st of the month OR any Monday (Vixie cron, cronie)
    got = starts("0 2 1 * MON", date(2026, 11, 28), 4)
    assert got == [datetime(2026, 11, 30, 2), datetime(2026, 12, 1, 2), datetime(2026, 12, 7, 2),
                   datetime(2026, 12, 14, 2)]


def test_a_star_day_field_leaves_the_other_alone() -> None:
    # day of week `*/2` starts with `*`: both fields must match (the 1st AND an even weekday)
    s = parse_cron("0 2 1 * */2")
    assert not s.weekdays_restricted
    # the 1sts of April to July 2026 fall on odd weekdays (Wed, Fri, Mon, Wed): passed over
    assert starts("0 2 1 * */2", date(2026, 3, 2), 2) == [datetime(2026, 8, 1, 2),  # a Saturday
                                                           datetime(2026, 9, 1, 2)]  # a Tuesday


def test_several_times_a_day_in_order() -> None:
    assert starts("30 1,13 * * *", date(2026, 6, 1), 3) == [
        datetime(2026, 6, 1, 1, 30), datetime(2026, 6, 1, 13, 30), datetime(2026, 6, 2, 1, 30)]


def test_february_29th_is_found_years_ahead() -> None:
    assert starts("0 3 29 2 *", date(2026, 3, 1), 1) == [datetime(2028, 2, 29, 3, 0)]


@pytest.mark.parametrize(("expression", "says"), [
    ("0 2 * *", "4 fields: a cron expression has five"),
    ("@weekly", "macros are not supported"),
    ("60 2 * * *", "minute: 60 is out of range"),
    ("0 24 * * *", "hour: 24 is out of range"),
    ("0 2 * * FUNDAY", "day of week: 'FUNDAY' is not a number"),
    ("0 2 * FOO *", "month: 'FOO' is not a number"),
    ("0 2 5-1 * *", "goes backwards"),
    ("0 2 L * *", "day of month: 'L' is not a number"),
    ("0 2 * * 1#2", "is not a value, a range"),
    ("*/0 * * * *", "a step must be at least 1"),
    ("0 2 30 2 *", "never matches"),
    ("0 2 31 4,6 *", "never matches"),
])
def test_refused_with_what_is_wrong(expression: str, says: str) -> None:
    with pytest.raises(CronError, match=says.replace("(", r"\(")):
        parse_cron(expression)


def test_the_text_is_kept_normalised() -> None:
    assert parse_cron("  0   2 * *  SUN ").text == "0 2 * * SUN"
