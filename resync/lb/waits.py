"""Waits on a balancer, on the executor's clock, with a countdown through `ctx.progress`.

The deadline is always the balancer's own setting, read by an earlier action and captured
(Classic ELB connection-draining timeout, ELBv2 deregistration delay, the record's TTL, the
health check's interval x threshold): never a waiter's default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from resync.actions.external import ExternalContext
from resync.actions.types import Ref
from resync.model.errors import ResyncError


@dataclass(frozen=True)
class Waited:
    done: bool  # the awaited state was seen (False: the deadline came first)
    seen: str  # the last answer
    looks: int
    seconds: float

    def describe(self) -> str:
        return f"{self.looks} look(s) in {self.seconds:g}s; last: {self.seen}"


def seconds_of(value: float | Ref, ctx: ExternalContext) -> float:
    """A duration given in the plan or captured by an earlier action (a balancer's setting)."""
    if not isinstance(value, Ref):
        return float(value)
    raw = ctx.captured.get(str(value.key))
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ResyncError(f"value '{value.key}' ({raw!r}) is not a number of seconds: the action "
                          "that reads the balancer's setting has not run") from None


def countdown(ctx: ExternalContext, *, label: str, timeout: float, interval: float,
              look: Callable[[], tuple[bool, str]]) -> Waited:
    """Look until `look()` says done or `timeout` seconds have passed on ctx.clock."""
    clock = ctx.clock
    start = clock.now()
    looks = 0
    while True:
        done, seen = look()
        looks += 1
        elapsed = clock.now() - start
        left = max(0.0, timeout - elapsed)
        ctx.progress(int(min(elapsed, timeout)), int(timeout),
                     f"{label}: {seen} ({'done' if done else f'{left:.0f}s left'})")
        if done or elapsed >= timeout:
            return Waited(done, seen, looks, round(elapsed, 3))
        clock.sleep(min(interval, left))


def sleep_out(ctx: ExternalContext, *, label: str, seconds: float) -> None:
    """Wait `seconds` on ctx.clock, counting down once a second."""
    clock = ctx.clock
    end = clock.now() + seconds
    while True:
        left = end - clock.now()
        ctx.progress(int(seconds - max(left, 0.0)), int(seconds), f"{label}: {max(left, 0):.0f}s left")
        if left <= 0:
            return
        clock.sleep(min(1.0, left))
