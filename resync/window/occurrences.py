"""A runbook's windows in time, and where a given moment stands relative to them.

A window starts at its wall-clock time in its zone and lasts its duration in real time (a
window that spans a daylight-saving change still lasts exactly `duration`). A cron start that
falls in a spring-forward gap does not happen: it is listed, flagged, and never used (no run
starts in it; the next one is the next that exists). A `start:` in a gap is refused when the
runbook is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from resync.model.window import WindowSettings
from resync.window.zones import Placed, format_span, place

Phase = Literal["before", "inside", "after"]
# a cron window is looked for among this many occurrences (a gap skips at most one a night)
LOOK_AHEAD = 64


@dataclass(frozen=True)
class Occurrence:
    placed: Placed
    duration: timedelta

    @property
    def start(self) -> datetime:
        """Aware UTC."""
        return self.placed.utc

    @property
    def end(self) -> datetime:
        return self.placed.utc + self.duration

    @property
    def exists(self) -> bool:
        return not self.placed.nonexistent

    @property
    def local_start(self) -> datetime:
        return self.placed.local

    @property
    def local_end(self) -> datetime:
        return self.end.astimezone(self.placed.zone)

    def describe(self) -> str:
        """'Sun 2026-12-06 02:00 CET - 03:00 CET (01:00-02:00 UTC)'."""
        if not self.exists:
            return f"{self.placed.wall:%a %Y-%m-%d %H:%M} {self.placed.zone.key}: DOES NOT EXIST"
        start, end = self.local_start, self.local_end
        day = "" if end.date() == start.date() else f"{end:%a %Y-%m-%d} "
        # each end with its own abbreviation: a window across a transition changes it
        return (f"{start:%a %Y-%m-%d %H:%M %Z} - {day}{end:%H:%M %Z} "
                f"({self.start:%H:%M}-{self.end:%H:%M} UTC)")

    def as_json(self) -> dict[str, object]:
        return {"start_local": self.local_start.isoformat(), "end_local": self.local_end.isoformat(),
                "start_utc": self.start.isoformat(), "end_utc": self.end.isoformat(),
                "exists": self.exists, "ambiguous": self.placed.ambiguous,
                "note": self.placed.note(), "describe": self.describe()}


def windows(settings: WindowSettings, since: datetime, count: int) -> list[Occurrence]:
    """Up to `count` windows that have not ended at `since` (aware), in order: one in progress
    first. A cron's non-existent starts are among them, flagged (`exists` False)."""
    zone, duration = settings.zone, settings.duration
    if settings.start is not None:
        only = Occurrence(place(settings.start, zone), duration)
        return [only] if only.end > since and count > 0 else []
    schedule = settings.schedule
    assert schedule is not None  # the model holds start or cron
    # from the day before the earliest start whose window could still be going on
    first_day = (since - duration).astimezone(zone).date() - timedelta(days=1)
    out: list[Occurrence] = []
    for wall in schedule.starts_from(first_day):
        if len(out) >= count:
            break
        occurrence = Occurrence(place(wall, zone), duration)
        if occurrence.end > since:
            out.append(occurrence)
    return out


@dataclass(frozen=True)
class WindowState:
    """Where `now` stands: inside a window, before the next one, or after the only one."""

    now: datetime
    phase: Phase
    window: Occurrence | None  # inside: the current one; before: the next; after: the last
    skipped: tuple[Occurrence, ...] = field(default=())  # non-existent starts passed over

    @property
    def seconds_left(self) -> float:
        """Inside: until the window ends (0 otherwise)."""
        if self.phase != "inside" or self.window is None:
            return 0.0
        return (self.window.end - self.now).total_seconds()

    @property
    def seconds_until_start(self) -> float:
        if self.phase != "before" or self.window is None:
            return 0.0
        return (self.window.start - self.now).total_seconds()

    def describe(self) -> str:
        w = self.window
        skipped = "".join(f"; skipped: {s.placed.note()}" for s in self.skipped)
        if w is None:
            return "no window ahead" + skipped
        if self.phase == "inside":
            return (f"inside the window {w.describe()}: {format_span(self.seconds_left)} left"
                    + skipped)
        if self.phase == "before":
            return (f"before the window {w.describe()}: it starts in "
                    f"{format_span(self.seconds_until_start)}" + skipped)
        return (f"after the window {w.describe()}: it ended "
                f"{format_span((self.now - w.end).total_seconds())} ago" + skipped)


def state_at(settings: WindowSettings, now: datetime) -> WindowState:
    """Where `now` (aware) stands relative to the runbook's windows."""
    found = windows(settings, now, LOOK_AHEAD)
    skipped = tuple(o for o in found if not o.exists)
    usable = [o for o in found if o.exists]
    if not usable:
        if settings.start is not None:  # the only window is over
            only = Occurrence(place(settings.start, settings.zone), settings.duration)
            return WindowState(now, "after", only, skipped)
        return WindowState(now, "after", None, skipped)
    first = usable[0]
    passed = tuple(o for o in skipped if o.start < first.start)
    return WindowState(now, "inside" if first.start <= now else "before", first, passed)
