"""The runbook's `window:` section: when the change is approved (ROADMAP "Window and
notifications").

    window:
      start: "2026-12-06T02:00"    # or cron: "0 2 * * SUN" (in the window's time zone)
      duration: 1h                 # 90m, 1h30m
      timezone: Europe/Berlin      # IANA
      margin: 20%                  # the estimate must fit the time left with this margin
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from resync.model.base import Strict as _Strict
from resync.window.cron import CronError, CronSchedule, parse_cron
from resync.window.zones import format_span, place, zone_named

_DURATION = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
_MARGIN = re.compile(r"^(?P<pct>\d+(?:\.\d+)?)\s*%$")
LONGEST = timedelta(days=7)


def parse_duration(value: Any) -> timedelta:
    """'1h', '90m', '1h30m' (also d and s) -> timedelta."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r}: give a unit, e.g. 1h, 90m or 1h30m")
    match = _DURATION.match(value.strip().lower())
    if match is None or not any(match.groupdict().values()):
        raise ValueError(f"{value!r} is not a duration such as 1h, 90m or 1h30m")
    parts = {k: int(v) for k, v in match.groupdict().items() if v}
    span = timedelta(days=parts.get("d", 0), hours=parts.get("h", 0),
                     minutes=parts.get("m", 0), seconds=parts.get("s", 0))
    if not timedelta(0) < span <= LONGEST:
        raise ValueError(f"{value!r}: a window lasts more than 0 and at most 7 days")
    return span


def parse_margin(value: Any) -> float:
    """'20%' -> 0.2; a bare number is refused (20 or 0.2: which did the author mean?)."""
    match = _MARGIN.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r}: write the margin as a percentage, e.g. 20%")
    fraction = float(match["pct"]) / 100
    if fraction > 10:
        raise ValueError(f"{value!r}: at most 1000%")
    return fraction


def parse_start(value: Any) -> datetime:
    """An ISO local date-time without an offset (the zone is `timezone:`)."""
    if isinstance(value, datetime):  # YAML reads an unquoted 2026-12-06T02:00:00 as one
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO local date-time such as "
                             "2026-12-06T02:00") from None
    else:
        raise ValueError(f"{value!r} is not an ISO local date-time such as 2026-12-06T02:00")
    if parsed.tzinfo is not None:
        raise ValueError(f"{value!r} carries a UTC offset: write the local time and name its "
                         "zone in timezone:")
    return parsed.replace(microsecond=0)


def _check_cron(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a cron expression such as '0 2 * * SUN'")
    try:
        return parse_cron(value).text
    except CronError as exc:
        raise ValueError(str(exc)) from None


def _check_zone(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an IANA time zone name such as Europe/Berlin")
    zone_named(value)
    return value


class WindowSettings(_Strict):
    """An approved maintenance window: one (`start`) or recurring (`cron`)."""

    # first: `start` is placed in it when validated
    timezone: Annotated[str, BeforeValidator(_check_zone)]
    start: Annotated[datetime | None, BeforeValidator(
        lambda v: None if v is None else parse_start(v))] = None
    cron: Annotated[str | None, BeforeValidator(
        lambda v: None if v is None else _check_cron(v))] = None
    duration: Annotated[timedelta, BeforeValidator(parse_duration)]
    margin: Annotated[float, BeforeValidator(parse_margin), Field(ge=0)] = 0.2

    @field_validator("start")
    @classmethod
    def _start_exists(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        zone = info.data.get("timezone")
        if value is not None and zone is not None:
            placed = place(value, zone_named(zone))
            if placed.nonexistent:  # reported, never shifted by the clocks' jump
                raise ValueError(f"{placed.note()}: choose a time outside the gap")
        return value

    @model_validator(mode="after")
    def _one_start(self) -> WindowSettings:
        if self.start is not None and self.cron is not None:
            raise ValueError("give either start (an ISO local date-time) or cron (five "
                             "fields), not both")
        if self.start is None and self.cron is None:
            raise ValueError("give start (an ISO local date-time, e.g. 2026-12-06T02:00) or "
                             "cron (five fields, e.g. '0 2 * * SUN')")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return zone_named(self.timezone)

    @property
    def schedule(self) -> CronSchedule | None:
        return parse_cron(self.cron) if self.cron is not None else None

    @property
    def seconds(self) -> float:
        return self.duration.total_seconds()

    def describe(self) -> str:
        """'every `0 2 * * SUN` (Europe/Berlin) for 1h00m, margin 20%'."""
        shown = "%Y-%m-%d %H:%M:%S" if self.start is not None and self.start.second else \
            "%Y-%m-%d %H:%M"
        when = (f"every `{self.cron}`" if self.cron is not None
                else self.start.strftime(shown) if self.start is not None else "?")
        return (f"{when} ({self.timezone}) for {format_span(self.seconds)}, margin "
                f"{self.margin * 100:g}%")
