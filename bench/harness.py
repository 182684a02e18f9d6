"""What the downtime benches share: the application's writer, the check that every acknowledged
write is on both servers, `resync` as a subprocess and its journal, the evidence of a failed run,
medians.

The writer is the application: one persistent connection per server as the application user
(DML rights on `app` only, so `read_only` refuses it), one autocommit single-row INSERT every
`interval` seconds, `timeout` for connect/read/write, a reconnect after a failure. Where it writes:
- `follow=True`: after a failed write it tries the other server next, as an application with a
  list of database servers that moves on to the one taking writes. A server that is down refuses
  the connection, a read-only one refuses the write: neither takes it, so the writes land on
  whichever server is the writable primary (the runs keep every other server read-only).
- `follow=False`: only `target`, the server the application's configuration names (the hand
  procedure changes it, its step 5).
`pause()` (a maintenance page: the application sends no writes) waits for the write in flight.
Write-downtime as the application sees it is the longest interval between two acknowledgements.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pymysql

from resync.testing.sandbox import APP_PASSWORD_ENV, APP_USER, Sandbox, SandboxServer

ROOT = Path(__file__).resolve().parent.parent
STALL = 0.25  # seconds without an acknowledgement listed as a stall (the writer's normal: ~0.01)


@dataclass(frozen=True)
class Attempt:
    start: float  # time.monotonic()
    end: float
    ok: bool
    n: int  # the row's key
    server: str  # where it was sent
    end_wall: float  # time.time() at `end`: to place it among the journal's steps
    error: str = ""  # the client's error, if not acknowledged


class Writer:
    """Single-row autocommit INSERTs every `interval` s as the application (module docstring)."""

    def __init__(self, pair: Sandbox, target: str, *, follow: bool, interval: float = 0.01,
                 timeout: float = 2.0, statement: str = "INSERT INTO app.ticks (n) VALUES (%s)",
                 first_n: int = 1) -> None:
        self.servers = {s.name: s for s in pair}
        self.target, self.follow = target, follow
        self.interval, self.timeout, self.statement = interval, timeout, statement
        self.first_n = first_n
        self.attempts: list[Attempt] = []
        self.errors: dict[str, int] = {}  # first words of each error -> how many
        self._conns: dict[str, Any] = {}
        self._stop, self._paused = threading.Event(), threading.Event()
        self._busy = threading.Lock()  # held during an attempt: pause() waits for it
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.timeout * 3 + 5)
        for conn in self._conns.values():
            with contextlib.suppress(Exception):
                conn.close()

    def pause(self) -> None:
        with self._busy:
            self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def _connect(self, server: SandboxServer) -> Any:
        return pymysql.connect(host=server.address, port=server.port, user=APP_USER,
                               password=os.environ[APP_PASSWORD_ENV], autocommit=True,
                               connect_timeout=self.timeout, read_timeout=self.timeout,
                               write_timeout=self.timeout)

    def _attempt(self, n: int) -> None:
        name = self.target
        start, ok, error = time.monotonic(), False, ""
        try:
            if name not in self._conns:
                self._conns[name] = self._connect(self.servers[name])
            with self._conns[name].cursor() as cur:
                cur.execute(self.statement, (n,))
            ok = True
        except (pymysql.MySQLError, OSError) as exc:
            key = f"{type(exc).__name__} {exc.args[0] if exc.args else ''}"
            self.errors[key] = self.errors.get(key, 0) + 1
            error = f"{key} after {time.monotonic() - start:.2f} s"
            with contextlib.suppress(Exception):
                self._conns.pop(name).close()
            if self.follow:
                self.target = next(s for s in self.servers if s != name)
        self.attempts.append(Attempt(start, time.monotonic(), ok, n, name, time.time(), error))

    def _run(self) -> None:
        n = self.first_n - 1
        next_start = time.monotonic()
        while not self._stop.is_set():
            with self._busy:
                if not self._paused.is_set():
                    n += 1
                    self._attempt(n)
            next_start = max(next_start + self.interval, time.monotonic())
            self._stop.wait(next_start - time.monotonic())

    def acked(self) -> list[Attempt]:
        return [a for a in self.attempts if a.ok]

    def wait_first_ack(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.acked():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the writer got no write acknowledged in {timeout} s: "
                                   f"{self.errors}")
            time.sleep(0.02)

    def gaps(self) -> list[tuple[float, float, float]]:
        """The intervals between consecutive acknowledgements: (seconds, wall-clock time of the
        one before, of the one after). If the writes never came back (a failed run), the last
        interval ends with the writer's last attempt."""
        acked = self.acked()
        gaps = [(b.end - a.end, a.end_wall, b.end_wall) for a, b in itertools.pairwise(acked)]
        if acked and self.attempts and not self.attempts[-1].ok:
            last, end = acked[-1], self.attempts[-1]
            gaps.append((end.end - last.end, last.end_wall, end.end_wall))
        return gaps

    def longest_gap(self) -> float:
        return max((g[0] for g in self.gaps()), default=0.0)


def keys_on(server: SandboxServer, table: str, column: str, first: int) -> set[int]:
    out = server.sql(f"SELECT {column} FROM {table} WHERE {column} >= {first};", timeout=120)
    return {int(line) for line in out.split()}


def check_writes(pair: Sandbox, writer: Writer, primary: str, table: str = "app.ticks",
                 column: str = "n", catch_up: float = 120) -> tuple[list[str], list[str]]:
    """Every acknowledged write on the primary and, once it has caught up, on the replica; both
    with the same rows. -> (problems, notes: writes committed though the client saw an error)."""
    replica = next(s for s in pair if s.name != primary)
    acked = {a.n for a in writer.acked()}
    on_primary = keys_on(pair[primary], table, column, writer.first_n)
    deadline = time.monotonic() + catch_up
    while (on_replica := keys_on(replica, table, column, writer.first_n)) != on_primary:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    problems = []
    for name, present in ((primary, on_primary), (replica.name, on_replica)):
        if missing := acked - present:
            problems.append(f"{len(missing)} acknowledged write(s) not on {name}, e.g. "
                            f"{sorted(missing)[:5]}")
    if on_replica != on_primary:
        problems.append(f"{primary} has {len(on_primary)} rows of the writer's, {replica.name} "
                        f"{len(on_replica)} ({len(on_primary - on_replica)} missing, "
                        f"{len(on_replica - on_primary)} extra)")
    by_n = {a.n: a for a in writer.attempts}
    notes = [f"write {n} committed though the client got {by_n[n].error or 'no answer'}"
             for n in sorted(on_primary - acked) if n in by_n]
    return problems, notes


# -- resync as a subprocess, its journal -------------------------------------------------------

def run_resync(cwd: Path, args: list[str], timeout: float) -> tuple[int | None, float]:
    """`python -m resync ARGS` in cwd (output in cwd/resync.out) -> (exit code or None when it
    timed out and was stopped, wall seconds)."""
    with (cwd / "resync.out").open("ab") as out:
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "resync", *args], cwd=cwd,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "COLUMNS": "200"}, start_new_session=True)
        try:
            code: int | None = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            stop_process_group(proc)
        return code, time.monotonic() - start


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """The process (its own session) and whatever it left in its process group (a copy end)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


def failure_line(cwd: Path) -> str:
    lines = (cwd / "resync.out").read_text(errors="replace").splitlines()
    return next((ln for ln in reversed(lines) if ln.startswith("resync:")),
                lines[-1] if lines else "no output")[:400]


def read_journal(cwd: Path) -> dict[str, Any]:
    """The newest journal under cwd/resync-journal ({} when there is none)."""
    journals = sorted((cwd / "resync-journal").glob("**/*.json"), key=lambda p: p.stat().st_mtime)
    with contextlib.suppress(OSError, ValueError, IndexError):
        data: dict[str, Any] = json.loads(journals[-1].read_text())
        return data
    return {}


def step_times(journal: dict[str, Any], prefix: str) -> tuple[float | None, float | None]:
    """(started_at, finished_at) of the first journal step whose key starts with prefix."""
    step: dict[str, Any] = next((s for s in journal.get("steps", []) if s["key"].startswith(prefix)), {})
    return step.get("started_at"), step.get("finished_at")


def failed_step(journal: dict[str, Any]) -> str:
    step = next((s for s in journal.get("steps", []) if s.get("state") == "failed"), None)
    return f"{step['key']}: {step.get('error')}" if step else ""


def steps_between(journal: dict[str, Any], start: float, end: float) -> list[str]:
    """The keys of the journal's steps that ran at some point between start and end (epoch)."""
    return [s["key"] for s in journal.get("steps", [])
            if s.get("started_at") is not None and s["started_at"] < end
            and (s.get("finished_at") or end) > start]


# -- evidence, figures --------------------------------------------------------------------------

KEPT: list[Path] = []  # where the evidence of failed runs goes (one directory per bench)


def keep(label: str, run: Path, pair: Sandbox | None, writer: Writer | None) -> Path:
    """The evidence of a failed run, outside the work tree that goes: resync's output and
    journal, the runbook, the hand procedure's log, each server's error log, the writer's record."""
    if not KEPT:
        KEPT.append(Path(tempfile.mkdtemp(prefix="resync-bench-kept-")))
    target = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=KEPT[0]))
    found = [*run.glob("*.out"), *run.glob("*.log"), *run.glob("*.yaml"),
             *run.glob("resync-journal/**/*.json")]
    found += [s.errorlog for s in pair] if pair is not None else []
    for path in found:
        with contextlib.suppress(OSError):
            name = f"{path.parent.name}-{path.name}" if path.name == "error.log" else path.name
            shutil.copy(path, target / name)
    if writer is not None:
        (target / "writer-attempts.json").write_text(json.dumps([asdict(a) for a in
                                                                 writer.attempts]))
    return target


def median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def commit() -> str:
    """The checkout measured: its commit, '+ changes' when the work tree differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" + uncommitted changes" if git("status", "--porcelain", "--", "resync")
                   else "")


def interrupt(signum: int, _frame: object) -> None:
    """SIGTERM as Ctrl-C: the finally paths clean up either way."""
    raise KeyboardInterrupt(f"signal {signum}")
