"""One run of a runbook at a time: `resync run` holds an flock(2) on the runbook file itself from
before it waits for its window until it ends.

Each run has a journal of its own (its name carries the run id), so the journal's lock alone does
not stop a second run of the same runbook: a timer firing while a run started by hand still goes,
or two crontab lines. The lock is taken on the runbook (opened read-only: nothing is written, no
file is made) and the kernel drops it with the process, so a killed run leaves none behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from resync.model.errors import JournalError


class RunbookLock:
    def __init__(self, runbook: Path, name: str) -> None:
        self.runbook, self.name = runbook, name
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.runbook, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise JournalError(f"cannot open the runbook {self.runbook} to lock it: "
                               f"{exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise JournalError(f"another run of runbook {self.name} is in progress (it holds the "
                               f"lock on {self.runbook}): one run at a time; the lock goes with "
                               "that process. Nothing was changed") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> RunbookLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
