"""`resync run` before its window: wait for the start with a countdown, or refuse (exit 3).

The whole run holds the runbook's own lock (`resync.window.lock`): a second run of the same
runbook, by hand or started by a timer, is refused at once while one waits or runs.

Called before the plan is detected and before the journal exists: a refusal changes nothing,
and the facts are read when the window has begun, not an hour before it. Inside the window the
run goes on at once (the gate in the plan then checks the estimate against the time left); after
it, or before it with `--no-wait`, or more than a day before it, the run is refused. A countdown
on a terminal is one live line; without one (a timer, cron) a plain line every minute.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.live import Live
from rich.text import Text

from resync.model.runbook import LoadedRunbook
from resync.model.window import WindowSettings
from resync.window.clock import Now, system_now
from resync.window.fit import WindowRefused
from resync.window.lock import RunbookLock
from resync.window.occurrences import WindowState, state_at
from resync.window.zones import format_span

MAX_WAIT_SECONDS = 24 * 3600.0  # further ahead, a waiting process is a mistake: schedule it
PLAIN_EVERY_SECONDS = 60.0


@contextmanager
def run_in_window(loaded: LoadedRunbook, console: Console, *, no_wait: bool) -> Iterator[None]:
    """For the whole run: no other run of this runbook, and inside its window (waited for)."""
    with RunbookLock(loaded.path, loaded.model.name):
        wait_for_window(loaded.model.window, console, no_wait=no_wait)
        yield


def wait_for_window(settings: WindowSettings | None, console: Console, *, no_wait: bool,
                    now: Now = system_now, sleep: Callable[[float], None] = time.sleep) -> None:
    """Return once inside the window (at once when there is no `window:`); WindowRefused
    otherwise."""
    if settings is None:
        return
    state = state_at(settings, now())
    if state.phase == "after":
        raise WindowRefused(f"outside the maintenance window: {state.describe()}; nothing was "
                            "changed")
    if state.phase == "before":
        if no_wait:
            raise WindowRefused(f"{state.describe()}; --no-wait: not waiting (nothing was "
                                "changed)")
        if state.seconds_until_start > MAX_WAIT_SECONDS:
            raise WindowRefused(f"{state.describe()}: more than {format_span(MAX_WAIT_SECONDS)} "
                                "away, not waiting that long; start the run closer to it, or "
                                "let a timer start it (`resync schedule`). Nothing was changed")
        _count_down(settings, state, console, now, sleep)
        state = state_at(settings, now())
        if state.phase != "inside":
            raise WindowRefused(f"the wait ended outside the window: {state.describe()}")
    console.print(f"maintenance window: {state.describe()}", soft_wrap=True)


def _count_down(settings: WindowSettings, state: WindowState, console: Console, now: Now,
                sleep: Callable[[float], None]) -> None:
    window = state.window
    assert window is not None
    console.print(f"waiting for the maintenance window: {state.describe()} (Ctrl-C stops "
                  "waiting; nothing has changed)", soft_wrap=True)

    def left() -> float:
        return (window.start - now()).total_seconds()

    if not console.is_terminal:
        while (remaining := left()) > 0:
            sleep(min(PLAIN_EVERY_SECONDS, remaining))
            if (remaining := left()) > 0:
                console.print(f"waiting for the maintenance window: it starts in "
                              f"{format_span(remaining)}")
        return
    with Live(Text(""), console=console, transient=True, refresh_per_second=4) as live:
        while (remaining := left()) > 0:
            live.update(Text(f"window {settings.describe()} starts in {format_span(remaining)} "
                             f"({window.describe()})"))
            sleep(min(1.0, remaining))
