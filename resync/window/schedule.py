"""What starts a run in each window: a systemd timer + service pair, and the crontab line.

The timer fires at the window's start in the window's own zone (`OnCalendar=... Europe/Berlin`,
systemd 235+), never catches up a missed window (`Persistent=false`), and fires on the second
(`AccuracySec=1s`). The service runs `resync run RUNBOOK --yes --log-json ...` from the journal's
directory with the runbook's `*_env` variables from an environment file (names only: resync
never writes a secret; the operator fills the values in). A run the timer starts early or late
is still judged by the window gate, so the timer is a convenience, not the guard.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from resync.model.runbook import LoadedRunbook
from resync.model.window import WindowSettings
from resync.window.cron import CronSchedule
from resync.window.zones import format_span

JOURNAL_DIR = "resync-journal"  # under the working directory, as `resync run` writes it
MIN_GRACE = timedelta(hours=1)


def env_names(loaded: LoadedRunbook) -> tuple[str, ...]:
    """Every `*_env` name of the runbook (passwords, webhook URLs), in order, once each."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and key.endswith("_env") and isinstance(item, str):
                    found.append(item)
                else:
                    walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(loaded.model.model_dump(by_alias=True))
    return tuple(dict.fromkeys(found))


def _spans(values: Iterable[int]) -> list[tuple[int, int]]:
    """1,2,3,5 -> (1, 3), (5, 5)"""
    out: list[tuple[int, int]] = []
    for value in sorted(values):
        if out and out[-1][1] + 1 == value:
            out[-1] = (out[-1][0], value)
        else:
            out.append((value, value))
    return out


def _join(spans: list[tuple[int, int]], word: Callable[[int], str]) -> str:
    """systemd's lists: 01..03,05 (two neighbours stay a list: 01,02)."""
    return ",".join(word(a) if a == b else f"{word(a)},{word(b)}" if b == a + 1
                    else f"{word(a)}..{word(b)}" for a, b in spans)


def _field(values: frozenset[int], full: range) -> str:
    return "*" if values == frozenset(full) else _join(_spans(values), lambda v: f"{v:02d}")


SYSTEMD_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # systemd's week starts Monday


def _weekdays(values: frozenset[int]) -> str:
    """cron's 0 = Sunday .. 6 = Saturday -> Mon..Fri,Sun"""
    return _join(_spans((d - 1) % 7 for d in values), lambda i: SYSTEMD_DAYS[i])


def on_calendar(settings: WindowSettings) -> list[str]:
    """The timer's OnCalendar= values (a cron with both day fields restricted fires on either:
    two values, as systemd ANDs a weekday with a date)."""
    zone = settings.timezone
    if settings.start is not None:
        return [f"{settings.start:%Y-%m-%d %H:%M:%S} {zone}"]
    schedule = settings.schedule
    assert schedule is not None
    return [f"{day} {_clock(schedule)} {zone}".lstrip() for day in _days(schedule)]


def _clock(s: CronSchedule) -> str:
    return f"{_field(s.hours, range(24))}:{_field(s.minutes, range(60))}:00"


def _days(s: CronSchedule) -> list[str]:
    months = _field(s.months, range(1, 13))
    days = _field(s.days, range(1, 32))
    weekdays = _weekdays(s.weekdays) if s.weekdays != frozenset(range(7)) else ""
    if s.days_restricted and s.weekdays_restricted:
        return [f"*-{months}-{days}", f"{weekdays} *-{months}-*"]
    return [f"{weekdays} *-{months}-{days}".strip()]


def _unit_word(text: str) -> str:
    """One word of an ExecStart= line: systemd's own quoting, its % specifiers and $ escaped."""
    text = text.replace("%", "%%").replace("$", "$$")
    if text and not any(c.isspace() or c in "\"'\\;" for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def runtime_limit(settings: WindowSettings) -> timedelta:
    """RuntimeMaxSec=: a backstop for a hung run, not the window's end. Past its point of no
    return a run never stops for time (an overrun is reported): the window's length plus as
    much again, at least an hour more; a run killed by it is resumable from its journal."""
    return settings.duration + max(settings.duration, MIN_GRACE)


@dataclass(frozen=True)
class ScheduleFiles:
    name: str  # the units' base name
    timer: str
    service: str
    crontab: str
    env_file: Path
    env_names: tuple[str, ...]

    def env_text(self) -> str:
        head = ("# resync: the environment of the scheduled runs (mode 0600). Fill in each value;\n"
                "# resync never writes secrets, only their names.\n")
        return head + "".join(f"{n}=\n" for n in self.env_names)


def schedule_files(loaded: LoadedRunbook, *, resync: list[str], workdir: Path,
                   env_file: Path) -> ScheduleFiles:
    """The units and the crontab line for a runbook with a `window:` (absolute paths)."""
    rb = loaded.model
    settings = rb.window
    if settings is None:
        raise ValueError("the runbook has no window")
    name = f"resync-{rb.name}"
    runbook = loaded.path.resolve()
    log = workdir / JOURNAL_DIR / f"{rb.name}.events.jsonl"
    command = [*resync, "run", str(runbook), "--yes", "--log-json", str(log)]
    one_at_a_time = (
        "# One run at a time: systemd does not start this service again while it is active, and\n"
        "# `resync run` holds a lock (flock, like its journal's lock) on the runbook for the\n"
        f"# whole run: a second instance of {runbook.name}, by hand or from cron, exits\n"
        "# at once (exit 2) and changes nothing.\n")
    calendars = "".join(f"OnCalendar={c}\n" for c in on_calendar(settings))
    timer = (
        "[Unit]\n"
        f"Description=resync {_unit_text(rb.label)}: maintenance window {settings.describe()}\n"
        + one_at_a_time +
        "\n[Timer]\n"
        "# the window's start in its own zone (systemd 235+); a run outside the window or whose\n"
        "# estimate does not fit the time left is refused by resync itself (exit 3)\n"
        + calendars +
        "# a window missed while the machine was off is not caught up later\n"
        "Persistent=false\n"
        "AccuracySec=1s\n"
        f"Unit={name}.service\n"
        "\n[Install]\n"
        "WantedBy=timers.target\n")
    limit = runtime_limit(settings)
    service = (
        "[Unit]\n"
        f"Description=resync {_unit_text(rb.label)}: rebuild {rb.recipient} from {rb.donor} in its "
        "maintenance window\n"
        f"Documentation=file://{_unit_word(str(runbook))}\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        + one_at_a_time +
        "\n[Service]\n"
        "Type=oneshot\n"
        "# the journal directory: journals land in ./resync-journal/, as for a run by hand there\n"
        f"WorkingDirectory={_unit_word(str(workdir))}\n"
        f"# the runbook's *_env variables ({', '.join(env_names(loaded)) or 'none'}); mode 0600\n"
        f"EnvironmentFile={_unit_word(str(env_file))}\n"
        f"ExecStart={' '.join(_unit_word(w) for w in command)}\n"
        "# exit 0 done, 1 a step failed (the journal says where), 2 bad input, 3 refused by a\n"
        "# gate (outside the window, the estimate does not fit): nothing changed\n"
        f"# a backstop for a hung run, not the window's end ({format_span(settings.seconds)} "
        "long):\n"
        "# past its point of no return a run is never stopped for time (an overrun is\n"
        "# reported); killed by this, it is resumable: resync resume <journal>\n"
        f"RuntimeMaxSec={int(limit.total_seconds())}\n")
    return ScheduleFiles(name, timer, service, crontab_lines(loaded, command, workdir, env_file),
                         env_file, env_names(loaded))


def crontab_lines(loaded: LoadedRunbook, command: list[str], workdir: Path, env_file: Path) -> str:
    rb = loaded.model
    settings = rb.window
    assert settings is not None
    if settings.cron is not None:
        when = settings.cron
        once = ""
    else:
        start = settings.start
        assert start is not None
        when = f"{start.minute} {start.hour} {start.day} {start.month} *"
        once = ("# cron has no year: this line fires on that day every year; remove it after the\n"
                "# window (a run after the window is refused, exit 3)\n")
    out = workdir / JOURNAL_DIR / f"{rb.name}.cron.log"
    line = (f"cd {shlex.quote(str(workdir))} && set -a && . {shlex.quote(str(env_file))} && "
            f"set +a && mkdir -p {JOURNAL_DIR} && exec {shlex.join(command)} "
            f">> {shlex.quote(str(out))} 2>&1")
    return (f"# resync {rb.label}: maintenance window {settings.describe()}\n"
            "# cron has no time zone per line: CRON_TZ= sets it for every line after it (cronie:\n"
            "# RHEL, Fedora, Arch; Debian's cron ignores CRON_TZ and uses the system's zone: there,\n"
            "# use the systemd timer). One run at a time: resync's own lock per runbook.\n"
            + once +
            f"CRON_TZ={settings.timezone}\n"
            f"{when} {line.replace('%', chr(92) + '%')}\n")


def _unit_text(text: str) -> str:
    """Free text in a unit file: `%` starts a systemd specifier, so it is doubled."""
    return text.replace("%", "%%")
