"""A local wall-clock time placed in an IANA time zone, daylight-saving transitions included.

A wall time inside a spring-forward gap (02:30 in Europe/Berlin on the last Sunday of March)
does not exist: it is reported as such, never shifted to 03:30 behind the operator's back. A wall
time inside a fall-back fold (02:30 on the last Sunday of October happens twice) is read with
fold=0, the first of the two (still summer time), and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone_named(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError when the system's zone database has no such zone."""
    if not name or name != name.strip() or name.startswith("/") or ".." in name:
        raise ValueError(f"{name!r} is not an IANA time zone name such as Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone known here (IANA names such as "
                         "Europe/Berlin, America/New_York or UTC; Debian: apt-get install "
                         "tzdata)") from None


def hours(offset: timedelta | None) -> str:
    """UTC+02:00"""
    seconds = int((offset or timedelta()).total_seconds())
    sign = "+" if seconds >= 0 else "-"
    seconds = abs(seconds)
    return f"UTC{sign}{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


@dataclass(frozen=True)
class Placed:
    """`wall` (naive, as written) in `zone`: when it is in UTC, and what the transitions make of it."""

    wall: datetime
    zone: ZoneInfo
    utc: datetime  # aware UTC; for a non-existent wall time: where fold=0 would put it (unused)
    nonexistent: bool  # inside a spring-forward gap
    ambiguous: bool  # inside a fall-back fold: fold=0 (the first) is used

    @property
    def local(self) -> datetime:
        """Aware, in the zone, with the fold resync uses."""
        return self.utc.astimezone(self.zone)

    def note(self) -> str:
        """The transition in words ("" when there is none)."""
        first = self.wall.replace(tzinfo=self.zone, fold=0).utcoffset()
        second = self.wall.replace(tzinfo=self.zone, fold=1).utcoffset()
        day = f"{self.wall:%Y-%m-%d}"
        if self.nonexistent:
            jump = abs((second or timedelta()) - (first or timedelta()))
            return (f"{self.wall:%H:%M} does not exist in {self.zone.key} on {day}: the clocks "
                    f"jump forward by {_span(jump)} ({hours(first)} -> {hours(second)}) "
                    "that night")
        if self.ambiguous:
            return (f"{self.wall:%H:%M} happens twice in {self.zone.key} on {day} (the clocks go "
                    f"back: {hours(first)} -> {hours(second)}): the first one ({hours(first)}, "
                    "fold=0) is used")
        return ""


def place(wall: datetime, zone: ZoneInfo) -> Placed:
    """Place a naive wall-clock time in `zone`."""
    naive = wall.replace(tzinfo=None, fold=0)
    first = naive.replace(tzinfo=zone)
    utc = first.astimezone(UTC)
    nonexistent = utc.astimezone(zone).replace(tzinfo=None) != naive
    ambiguous = (not nonexistent
                 and first.utcoffset() != naive.replace(tzinfo=zone, fold=1).utcoffset())
    return Placed(naive, zone, utc, nonexistent, ambiguous)


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds()) // 60
    return f"{minutes // 60}h{minutes % 60:02d}" if minutes % 60 else f"{minutes // 60}h"


def format_span(seconds: float) -> str:
    """A duration for people: 45s, 12m05s, 1h30m, 3d04h."""
    total = max(0, round(seconds))
    days, rest = divmod(total, 86400)
    hrs, rest = divmod(rest, 3600)
    mins, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hrs:02d}h"
    if hrs:
        return f"{hrs}h{mins:02d}m"
    if mins:
        return f"{mins}m{secs:02d}s"
    return f"{secs}s"
