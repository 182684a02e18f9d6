"""The binary log horizon: can the rebuilt replica still catch up from the donor's binary logs?

It matters only where the donor keeps taking writes after the coordinates the replica starts
from were taken: a hot copy (mariabackup / xtrabackup: the donor serves during the backup, the
replica applies what it took meanwhile, and in the old-primary scenario the recipient catches up
from the donor before the switch) and an EBS copy that rebuilds a replica (the donor serves on
once its snapshot has started). A cold copy (stream, ssh) takes the coordinates under the
donor's read lock and starts the replica before the donor takes writes again: nothing to catch
up, no horizon.

Kept simple, and said so: the coordinates are taken inside the window, at the earliest at its
start, and the replica has caught up at the latest when the run ends, which may be one run's
length after the window's end if it overruns. So the donor must keep its binary logs at least
the window's length plus the run's estimated length; a retention of 0 keeps them forever.
"""

from __future__ import annotations

from dataclasses import dataclass

from resync.model.runbook import Runbook
from resync.steps.copy.hot_commands import HOT_METHODS
from resync.window.zones import format_span


def catch_up_reason(rb: Runbook) -> str | None:
    """Why this runbook's replica catches up from the donor's binary logs (None: it does not)."""
    if rb.copy_.method in HOT_METHODS:
        return (f"the donor ({rb.donor}) serves during the {rb.copy_.method} copy: the rebuilt "
                "server applies what it took meanwhile from its binary logs")
    if rb.copy_.method == "ebs" and rb.primary_after == rb.donor:
        return (f"the donor ({rb.donor}) serves on once its snapshot has started: the replica "
                "applies what it took since from its binary logs")
    return None


@dataclass(frozen=True)
class Horizon:
    reason: str | None  # None: the runbook needs no catch-up (no horizon to check)
    retention_seconds: float | None  # the donor's; 0 = never purged; None: not read
    needed_seconds: float

    @property
    def ok(self) -> bool:
        if self.reason is None:
            return True
        if self.retention_seconds is None:
            return False
        return self.retention_seconds == 0 or self.retention_seconds >= self.needed_seconds

    def describe(self) -> str:
        if self.reason is None:
            return ("not needed: the replica starts from coordinates taken under the donor's "
                    "read lock, before the donor takes writes again")
        needed = (f"needs {format_span(self.needed_seconds)} (the window's length plus one run: "
                  "the coordinates are taken inside the window and the replica may catch up as "
                  "late as one run past its end)")
        if self.retention_seconds is None:
            return f"{self.reason}; the donor's binary log retention could not be read; {needed}"
        kept = ("never purged (retention 0)" if self.retention_seconds == 0 else
                f"kept {format_span(self.retention_seconds)}")
        verdict = "ok" if self.ok else ("TOO SHORT: raise binlog_expire_logs_seconds (or "
                                        "expire_logs_days) on the donor before the window")
        return f"{verdict}: {self.reason}; the donor's binary logs are {kept}; {needed}"

    def as_json(self) -> dict[str, object]:
        return {"needed": self.reason is not None, "reason": self.reason,
                "retention_seconds": self.retention_seconds,
                "needed_seconds": round(self.needed_seconds), "ok": self.ok}


def judge_horizon(rb: Runbook, retention_seconds: float | None, window_seconds: float,
                  run_seconds: float) -> Horizon:
    return Horizon(catch_up_reason(rb), retention_seconds, window_seconds + run_seconds)
