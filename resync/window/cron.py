"""Cron expressions of five fields: minute hour day-of-month month day-of-week.

Each field is `*`, a number, a range `a-b`, a step `*/n`, `a-b/n` or `a/n` (from a to the end),
or a comma-separated list of these; months take JAN..DEC and days of the week SUN..SAT (0 or 7
is Sunday). As in Vixie cron and cronie: when both day fields are restricted (neither starts
with `*`), a day matches if EITHER matches ("0 2 1 * MON": the 1st and every Monday); otherwise
both must. Macros (@daily) and the Quartz extensions (L, W, #, ?) are refused with a message.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# how far ahead a search for the next match goes: a 29 February on a Monday recurs within 28 years
SEARCH_DAYS = 366 * 29

_ITEM = re.compile(r"^(?P<range>\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(?P<step>\d+))?$")


class CronError(ValueError):
    """A cron expression that cannot be read (the runbook's validation turns it into its error)."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] is the value low + i
    example: str = ""


_FIELDS = (
    _Field("minute", 0, 59, example="0-59"),
    _Field("hour", 0, 23, example="0-23"),
    _Field("day of month", 1, 31, example="1-31"),
    _Field("month", 1, 12, MONTH_NAMES, "1-12 or JAN-DEC"),
    # 7 is Sunday too (folded into 0 once read)
    _Field("day of week", 0, 7, (*DAY_NAMES, "SUN"), "0-7 or SUN-SAT"),
)


def _value(text: str, field: _Field) -> int:
    if text.isdigit():
        number = int(text)
    elif text.upper() in field.names:
        number = field.low + field.names.index(text.upper())
    else:
        raise CronError(f"{field.name}: {text!r} is not a number ({field.example})")
    if not field.low <= number <= field.high:
        raise CronError(f"{field.name}: {number} is out of range ({field.example})")
    return number


def _parse_field(text: str, field: _Field) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        match = _ITEM.match(item)
        if match is None:
            raise CronError(f"{field.name}: {item!r} is not a value, a range a-b or a step */n "
                            f"({field.example})")
        step = int(match["step"]) if match["step"] else 1
        if step < 1:
            raise CronError(f"{field.name}: a step must be at least 1")
        part = match["range"]
        if part == "*":
            low, high = field.low, field.high
        elif "-" in part:
            first, last = part.split("-")
            low, high = _value(first, field), _value(last, field)
            if low > high:
                raise CronError(f"{field.name}: the range {item!r} goes backwards (cron ranges "
                                "do not wrap: write it as two ranges)")
        else:
            low = _value(part, field)
            high = field.high if match["step"] else low  # a/n: from a to the end, every n
        values.update(range(low, high + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed expression; `text` is what the runbook says."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]  # of the month, 1..31
    months: frozenset[int]  # 1..12
    weekdays: frozenset[int]  # 0 = Sunday .. 6 = Saturday
    days_restricted: bool  # the day-of-month field does not start with `*`
    weekdays_restricted: bool

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = day.isoweekday() % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_month or in_week
        return in_month and in_week  # an unrestricted field holds every day

    def times_of_day(self) -> list[time]:
        return [time(h, m) for h in sorted(self.hours) for m in sorted(self.minutes)]

    def starts_from(self, day: date) -> Iterator[datetime]:
        """Every matching wall-clock time (naive) on `day` and after, in order."""
        times = self.times_of_day()
        for offset in range(SEARCH_DAYS):
            current = day + timedelta(days=offset)
            if self.matches_day(current):
                for moment in times:
                    yield datetime.combine(current, moment)


def parse_cron(text: str) -> CronSchedule:
    """The schedule of `text`; CronError says what is wrong with it."""
    stripped = text.strip()
    if stripped.startswith("@"):
        raise CronError(f"{stripped.split()[0]}: macros are not supported; write the five fields "
                        "(e.g. '0 2 * * SUN')")
    parts = stripped.split()
    if len(parts) != 5:
        raise CronError(f"{len(parts)} fields: a cron expression has five (minute hour "
                        "day-of-month month day-of-week), e.g. '0 2 * * SUN'")
    minutes, hours, days, months, weekdays = (_parse_field(p, f)
                                              for p, f in zip(parts, _FIELDS, strict=True))
    schedule = CronSchedule(" ".join(parts), minutes, hours, days, months,
                            frozenset(d % 7 for d in weekdays),
                            days_restricted=not parts[2].startswith("*"),
                            weekdays_restricted=not parts[4].startswith("*"))
    if schedule.days_restricted and not schedule.weekdays_restricted and not any(
            d <= _longest_month(m) for m in months for d in days):
        raise CronError(f"'{schedule.text}' never matches: no month of it has such a day")
    return schedule


def _longest_month(month: int) -> int:
    return calendar.monthrange(2024, month)[1]  # a leap year: February has 29 days
