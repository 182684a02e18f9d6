"""The journal: step states, captured values, the plan and every action, written atomically.

Write path: temp file in the same directory -> fsync -> rename over the journal -> fsync the
directory. A crash at any point leaves either the previous or the new journal, never a torn one.
`<journal>.lock`, held with flock(2), stops two processes from driving one journal; the kernel
releases it when the process dies, so a crashed run never leaves a stale lock behind.

A journal holds no secret, but it does hold the whole topology and every command: it and its lock
are 0600, in a directory resync makes 0700 (and tightens, if it is resync's own `resync-journal`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from resync.model.errors import JournalError

FORMAT = 2
CapturedValue = str | int | float | None
JOURNAL_DIR = "resync-journal"  # the default place of journals, under the working directory
PRIVATE_FILE, PRIVATE_DIR = 0o600, 0o700


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNDONE = "undone"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class StepRecord(_Model):
    key: str
    title: str
    state: StepState = StepState.PENDING
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    note: str | None = None
    attempts: int = 0  # how many times it was started (a resumed step starts again)


class CommandRecord(_Model):
    """One executed action: what was sent where, how it ended, how long it took."""

    step: str
    action: str  # its id in the step's plan: 3, 2.1 (in a lock), 4.then.0 (in a branch)
    host: str
    kind: str  # sql | capture | shell | poll | release | assert | when | diagnose
    text: str  # rendered with the values of the run, secrets masked
    ok: bool | None  # None: started in the background and not finished (yet)
    phase: str = "run"  # run | undo
    attempt: int = 1
    exit_code: int | None = None
    seconds: float = 0.0
    at: float = 0.0
    detail: str | None = None  # output tail or error; for a poll, the count and the last answer
    result: str | None = None  # captured values (JSON) or the branch a `when` took


class JournalData(_Model):
    run_id: str
    runbook_path: str
    runbook_sha256: str
    created_at: float
    steps: list[StepRecord]
    plan_sha256: str = ""
    plan: dict[str, Any] | None = None  # the plan this run executes, as `resync plan --format json`
    captured: dict[str, CapturedValue] = {}
    commands: list[CommandRecord] = []
    outcome: str | None = None
    format: int = FORMAT


def private_dir(path: Path) -> None:
    """Make `path` (and missing parents) 0700; an existing `resync-journal` directory of ours (or
    a directory in it) that others can read is tightened. Any other existing directory is the
    operator's choice and left as it is."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            directory.mkdir(mode=PRIVATE_DIR)
    ours = [d for d in (path, path.parent) if d.name == JOURNAL_DIR]
    if path.parent.name == JOURNAL_DIR:  # resync-journal/verify-<name>/ and the like
        ours.append(path)
    for directory in ours:
        st = directory.stat()
        if st.st_uid == os.geteuid() and st.st_mode & 0o077:
            directory.chmod(PRIVATE_DIR)


def atomic_write(path: Path, text: str, mode: int = PRIVATE_FILE) -> None:
    """`text` into `path` (mode 0600 by default: plans and journals name every host and command)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        os.fchmod(fd, mode)  # a leftover temp file of the same name kept its old mode
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
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
               steps: list[tuple[str, str]], plan: dict[str, Any] | None = None,
               plan_sha256: str = "") -> Journal:
        if path.exists():
            raise JournalError(f"journal {path} already exists: use `resync resume {path}`")
        private_dir(path.parent)
        data = JournalData(run_id=run_id, runbook_path=runbook_path, runbook_sha256=runbook_sha256,
                           created_at=time.time(), plan=plan, plan_sha256=plan_sha256,
                           steps=[StepRecord(key=key, title=title) for key, title in steps])
        journal = cls(path, data)
        journal.save()
        return journal

    @classmethod
    def load(cls, path: Path) -> Journal:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise JournalError(f"cannot read journal {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise JournalError(f"journal {path} is not valid JSON: {exc}") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            found = raw.get("format") if isinstance(raw, dict) else None
            raise JournalError(f"journal {path} has format {found!r}, this resync reads format "
                               f"{FORMAT}: finish or roll back that run with the resync version "
                               "that started it")
        try:
            data = JournalData.model_validate(raw)
        except ValidationError as exc:
            raise JournalError(f"journal {path} is damaged: {exc}") from None
        return cls(path, data)

    def save(self) -> None:
        atomic_write(self.path, self.data.model_dump_json(indent=2) + "\n")

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
            record.attempts += 1
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

    def record(self, command: CommandRecord) -> int:
        self.data.commands.append(command)
        self.save()
        return len(self.data.commands) - 1

    def update(self, index: int, **changes: Any) -> None:
        record = self.data.commands[index]
        for name, value in changes.items():
            setattr(record, name, value)
        self.save()

    def finish(self, outcome: str) -> None:
        self.data.outcome = outcome
        self.save()


class MemoryJournal(Journal):
    """For read-only commands (check, verify, status, detection): records stay in memory."""

    def __init__(self, name: str = "scratch") -> None:
        super().__init__(Path("/dev/null"), JournalData(
            run_id=name, runbook_path="", runbook_sha256="", created_at=time.time(), steps=[]))

    def save(self) -> None:
        pass


class JournalLock:
    """flock(2) on `<journal>.lock`; the file holds the owner's PID for the error message."""

    def __init__(self, journal_path: Path) -> None:
        self.path = journal_path.with_name(journal_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise JournalError(f"journal is in use by running process {owner} ({self.path}); "
                               "wait for it to end (the lock goes away with that process)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> JournalLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
