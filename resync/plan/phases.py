"""Where the application cannot write: the span of steps from the one that takes the donor's
write lock to the one after which the new primary (or the donor again) takes writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from resync.model.keys import StepKind
from resync.steps.base import Step


@dataclass(frozen=True)
class LockWindow:
    opens: str  # the key of the step that takes the donor's write lock
    closes: str  # the key of the step after which writes are accepted again

    def keys(self, steps: Sequence[Step]) -> list[str]:
        """Every step key of the window, in plan order."""
        order = [s.key for s in steps]
        return order[order.index(self.opens):order.index(self.closes) + 1]


def lock_window(steps: Sequence[Step], donor: str, primary_after: str) -> LockWindow | None:
    """None when the donor is never write-locked for long (a hot copy of a replica: it serves
    throughout)."""
    lock = next((s for s in steps if s.id.kind is StepKind.READ_LOCK and s.id.subject == donor),
                None)
    writable = next((s.key for s in steps if s.id.kind is StepKind.MAKE_WRITABLE), None)
    if lock is None or writable is None:
        return None
    # a donor that stays the primary and keeps running (ebs: locked only while its snapshot
    # starts) takes writes again once the step that releases its lock is done
    keeps_serving = (primary_after == donor and lock.released_by is not None
                     and lock.released_by.kind is not StepKind.STOP_SERVICE)
    return LockWindow(lock.key, str(lock.released_by) if keeps_serving else writable)
