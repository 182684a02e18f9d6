"""The wall clock, passed in: a `Now` returns an aware UTC datetime.

The executor's own clock (`resync.run.waiting.Clock`) is monotonic: it measures waits, not the
time of day. A window check running inside the executor asks that clock for the time of day when
it has one (`utc_now`, as a test's fake does) and the system's otherwise, so tests inject one
clock for both.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

Now = Callable[[], datetime]


def system_now() -> datetime:
    return datetime.now(UTC)


@runtime_checkable
class WallClock(Protocol):
    def utc_now(self) -> datetime: ...


def now_of(clock: object) -> Now:
    """The time of day of an executor's clock: its own `utc_now` when it has one."""
    return clock.utc_now if isinstance(clock, WallClock) else system_now
