"""The journal: step states, captured values and every command, written atomically after each change.

Write path: temp file in the same directory -> fsync -> rename over the journal -> fsync the
directory. A crash at any point leaves either the previous or the new journal, never a torn one.
A lock file holding the PID stops two runs from driving one journal.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from resync.model.errors import JournalError

FORMAT = 1
CapturedValue = str | int | float | None


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNDONE = "undone"


@dataclass
class StepRecord:
    key: str
    title: str
    state: StepState = StepState.PENDING
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    note: str | None = None


@dataclass
class CommandRecord:
    step: str
    host: str
    kind: str  # sql | shell | check
    text: str  # rendered with secrets masked
    ok: bool
    exit_code: int | None = None
    seconds: float = 0.0
    at: float = 0.0
    detail: str | None = None


@dataclass
class JournalData:
    run_id: str
    runbook_path: str
    runbook_sha256: str
    created_at: float
    steps: list[StepRecord]
    captured: dict[str, CapturedValue] = field(default_factory=dict)
    commands: list[CommandRecord] = field(default_factory=list)
    outcome: str | None = None
    format: int = FORMAT


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Journal:
    def __init__(self, path: Path, data: JournalData) -> None:
        self.path = path
        self.data = data

    @classmethod
    def create(cls, path: Path, *, run_id: str, runbook_path: str, runbook_sha256: str,
               steps: list[tuple[str, str]]) -> Journal:
        if path.exists():
            raise JournalError(f"journal {path} already exists: use `resync resume {path}`")
        path.parent.mkdir(parents=True, exist_ok=True)
        data = JournalData(run_id=run_id, runbook_path=runbook_path, runbook_sha256=runbook_sha256,
                           created_at=time.time(),
                           steps=[StepRecord(key, title) for key, title in steps])
        journal = cls(path, data)
        journal.save()
        return journal

    @classmethod
    def load(cls, path: Path) -> Journal:
        try:
            raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise JournalError(f"cannot read journal {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise JournalError(f"journal {path} is not valid JSON: {exc}") from None
        if raw.get("format") != FORMAT:
            raise JournalError(f"journal {path} has format {raw.get('format')!r}, expected {FORMAT}")
        try:
            data = JournalData(
                run_id=raw["run_id"], runbook_path=raw["runbook_path"],
                runbook_sha256=raw["runbook_sha256"], created_at=raw["created_at"],
                steps=[StepRecord(**{**s, "state": StepState(s["state"])}) for s in raw["steps"]],
                captured=dict(raw.get("captured", {})),
                commands=[CommandRecord(**c) for c in raw.get("commands", [])],
                outcome=raw.get("outcome"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise JournalError(f"journal {path} is damaged: {exc}") from None
        return cls(path, data)

    def save(self) -> None:
        atomic_write(self.path, json.dumps(asdict(self.data), indent=2, sort_keys=False) + "\n")

    def step(self, key: str) -> StepRecord:
        for record in self.data.steps:
            if record.key == key:
                return record
        raise JournalError(f"journal {self.path} has no step '{key}'")

    def transition(self, key: str, state: StepState, *, error: str | None = None,
                   note: str | None = None) -> None:
        record = self.step(key)
        record.state = state
        now = time.time()
        if state is StepState.RUNNING:
            record.started_at, record.finished_at, record.error = now, None, None
        else:
            record.finished_at = now
        if error is not None:
            record.error = error
        if note is not None:
            record.note = note
        self.save()

    def capture(self, key: str, value: CapturedValue) -> None:
        self.data.captured[key] = value
        self.save()

    def record(self, command: CommandRecord) -> None:
        self.data.commands.append(command)
        self.save()

    def finish(self, outcome: str) -> None:
        self.data.outcome = outcome
        self.save()


class JournalLock:
    """`<journal>.lock` holding the PID; a live PID refuses a second run, a dead one is taken over."""

    def __init__(self, journal_path: Path) -> None:
        self.path = journal_path.with_name(journal_path.name + ".lock")
        self._held = False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mine = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        atomic_write(mine, f"{os.getpid()}\n")
        try:
            self._take(mine)
        finally:
            with contextlib.suppress(OSError):
                mine.unlink()

    def _take(self, mine: Path) -> None:
        for _ in range(2):
            try:
                # link() fails if the lock exists: the PID is in the file the moment it appears
                os.link(mine, self.path)
            except FileExistsError:
                pid = self._owner()
                if pid is not None and _alive(pid):
                    raise JournalError(
                        f"journal is locked by running process {pid} ({self.path}); "
                        "if that process is gone, remove the lock file") from None
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                continue
            self._held = True
            return
        raise JournalError(f"could not take the journal lock {self.path}")

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self._held and self._owner() == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._held = False

    def __enter__(self) -> JournalLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True
