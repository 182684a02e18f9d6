"""One retry/wait helper with an injectable clock, so waits are testable without sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from resync.model.errors import WaitTimeout

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)



def wait_until(
    probe: Callable[[], T | None],
    *,
    what: str,
    timeout: float,
    interval: float = 0.5,
    clock: Clock | None = None,
    describe_failure: Callable[[], str] | None = None,
) -> T:
    """Call probe() until it returns something other than None/False; raise WaitTimeout at the deadline.

    The timeout message names what was awaited and, if given, the last observed state.
    """
    clock = clock or SystemClock()
    deadline = clock.now() + timeout
    while True:
        result = probe()
        if result is not None and result is not False:
            return result
        if clock.now() >= deadline:
            detail = f": {describe_failure()}" if describe_failure else ""
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}{detail}")
        clock.sleep(interval)
