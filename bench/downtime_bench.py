"""Write-downtime as the application sees it: replica rebuild with copy method `stream` (baseline)
against copy method `ebs`.

Scenario: db1 is the primary and stays it; db2, its replica, is rebuilt from it with
`resync run --yes`. With `stream` the donor db1 is read-locked and stopped for the whole copy;
with `ebs` it is locked only while its EBS snapshot starts and keeps serving afterwards.

Each run gets a fresh pair: a `Sandbox(loop_volumes=True)` (each server's directory an ext4
filesystem on its own loop device), ~--size-mb of data loaded on db1, and for `ebs` the EBS world
of tests/integration/ebs_peer.py (moto's EC2 in this process, on 127.0.0.1, with hooks that give
snapshots and volumes a real block-level effect on loop devices). The bench borrows the
integration test harness (tests/integration is put on sys.path): that is where the simulated EBS
lives. Nothing contacts an address outside 127.0.0.0/8.

Through each run a writer thread on db1 (as the application user, one persistent connection,
reconnecting after a failure) does one autocommit single-row INSERT every --interval seconds with
--client-timeout for connect/read/write. Measured from the writer's record alone:
- write-downtime: the longest interval without an acknowledged write (between consecutive
  acknowledgements; the writer runs from before the run until after it);
- stalled: the sum of every such interval over STALL (0.25 s), each listed with the run's steps
  that ran during it (from the journal's step times): a run can stop writes more than once,
  and the step list shows which part of the run a stall belongs to;
- failed: the writes refused or timed out.
Also shown for comparison: resync's own `figures.write_downtime_seconds` (journal) and the run's
wall time. After each run every acknowledged write must be on db1 and on db2 (once db2 has caught
up): a loud failure otherwise; a write the client saw fail but the server committed is noted.
Runs alternate stream/ebs; medians per method, ratio ebs/stream. A run whose `resync run` fails
is reported loudly and left out of the medians; its journal, output, error logs and the writer's
attempts are kept in /tmp/resync-downtime-kept-*/ (the exit status is then 1).

The bulk data is written on db1 with sql_log_bin=0: the copy moves it, but no 300 MB of binary
and relay logs fill the loop volumes (db2's pre-run contents do not matter: it is rebuilt).
Note that the simulated `create_snapshot` copies the donor's image file (under fsfreeze) inside
the API call, which a real EBS snapshot start does not: that copy time is inside the ebs lock
(shown as "snap copy").

Usage (root; needs the tools ebs_peer.py lists, mariadbd, moto[server]):
    .venv/bin/python bench/downtime_bench.py [--runs 3] [--size-mb 300] [--methods stream,ebs]
"""

from __future__ import annotations

import argparse
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
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from resync.testing import sandbox as sandbox_module
from resync.testing.sandbox import (
    APP_PASSWORD_ENV,
    APP_USER,
    REPL_PASSWORD_ENV,
    Sandbox,
    missing_tools,
)
from resync.testing.web import free_port

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "tests" / "integration"
ROWS_PER_MB = 5_000  # copy_bench's generator: ~5M rows per GB on disk
CHUNK = 250_000
METHODS = ("stream", "ebs")
RUN_TIMEOUT = 900  # seconds for one `resync run`
CATCH_UP_TIMEOUT = 120  # seconds for db2 to have every write of db1 after the run
AFTER_RUN = 1.5  # seconds the writer goes on after the run (its last acknowledgements)
HARNESS_RETRIES = 2  # runs again after ebs_peer's restore-device race (not resync's failure)
STALL = 0.25  # seconds without an acknowledgement listed as a stall (the writer's normal: ~0.01)


def harness() -> Any:
    """The integration harness's modules (the simulated EBS lives there), as a namespace."""
    if str(HARNESS) not in sys.path:
        sys.path.insert(0, str(HARNESS))
    import types

    import aws  # type: ignore[import-not-found]
    import ebs_peer  # type: ignore[import-not-found]
    import helpers  # type: ignore[import-not-found]

    return types.SimpleNamespace(aws=aws, ebs_peer=ebs_peer, helpers=helpers)


def lacking() -> list[str]:
    """What this bench needs and the machine lacks (empty when all is there)."""
    out = list(missing_tools())
    try:
        import moto.server  # noqa: F401
        import pytest  # noqa: F401
    except ImportError as exc:
        out.append(f"python package {exc.name} (pip install -e '.[dev]')")
        return out
    return out + [m for m in harness().ebs_peer.missing() if m not in out]


# -- the writer ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    start: float  # time.monotonic()
    end: float
    ok: bool
    n: int  # the row's key
    end_wall: float  # time.time() at `end`: to place it among the journal's steps
    error: str = ""  # the client's error, if not acknowledged


class Writer:
    """Single-row autocommit INSERTs into app.ticks every `interval` s, as the application."""

    def __init__(self, host: str, port: int, password: str, interval: float,
                 timeout: float) -> None:
        self.host, self.port, self.password = host, port, password
        self.interval, self.timeout = interval, timeout
        self.attempts: list[Attempt] = []
        self.errors: dict[str, int] = {}  # first words of each error -> how many
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.timeout * 3 + 5)

    def _connect(self) -> Any:
        return pymysql.connect(host=self.host, port=self.port, user=APP_USER,
                               password=self.password, autocommit=True,
                               connect_timeout=self.timeout, read_timeout=self.timeout,
                               write_timeout=self.timeout)

    def _run(self) -> None:
        conn, n = None, 0
        next_start = time.monotonic()
        while not self._stop.is_set():
            n += 1
            start, ok, error = time.monotonic(), False, ""
            try:
                if conn is None:
                    conn = self._connect()
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO app.ticks (n) VALUES (%s)", (n,))
                ok = True
            except (pymysql.MySQLError, OSError) as exc:
                key = f"{type(exc).__name__} {exc.args[0] if exc.args else ''}"
                self.errors[key] = self.errors.get(key, 0) + 1
                error = f"{key} after {time.monotonic() - start:.2f} s"
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
            self.attempts.append(Attempt(start, time.monotonic(), ok, n, time.time(), error))
            next_start = max(next_start + self.interval, time.monotonic())
            self._stop.wait(next_start - time.monotonic())
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

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
        """The intervals between consecutive acknowledgements: (seconds, wall-clock time of
        the acknowledgement before and of the one after). If the writes never came back (a
        failed run), the last interval ends with the writer's last attempt."""
        acked = self.acked()
        gaps = [(b.end - a.end, a.end_wall, b.end_wall) for a, b in itertools.pairwise(acked)]
        if acked and self.attempts and not self.attempts[-1].ok:
            last, end = acked[-1], self.attempts[-1]
            gaps.append((end.end - last.end, last.end_wall, end.end_wall))
        return gaps


# -- one run -------------------------------------------------------------------------------------


@dataclass
class Result:
    method: str
    downtime: float = 0.0  # the writer's longest interval without an acknowledgement
    # every interval without an acknowledgement longer than STALL: (seconds, the run's steps
    # that ran during it), in time order; the longest is `downtime`
    stalls: list[tuple[float, list[str]]] = field(default_factory=list)
    failed: int = 0
    acked: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # the writer's, by kind
    resync_figure: float | None = None  # figures.write_downtime_seconds
    wall: float = 0.0  # `resync run`
    snapshot_copy: float | None = None  # ebs: the harness's image copy inside create_snapshot
    copy_bytes: int | None = None
    consistent: bool = False
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    run_error: str | None = None  # resync run failed: its error (the run is left out of medians)
    harness_race: bool = False  # the world's restore device was taken by another process
    kept: Path | None = None  # the evidence of a failed run

    @property
    def stalled(self) -> float:
        return sum(seconds for seconds, _ in self.stalls)


def load(pair: Sandbox, size_mb: int) -> None:
    """~size_mb of InnoDB data on db1 (not binlogged), and the writer's table (replicated)."""
    db1 = pair["db1"]
    db1.sql("SET SESSION sql_log_bin=0; CREATE DATABASE bulk; CREATE TABLE bulk.t (id INT PRIMARY "
            "KEY, a INT, b VARCHAR(64), c VARCHAR(200), KEY (a)) ENGINE=InnoDB;")
    rows = size_mb * ROWS_PER_MB
    for start in range(0, rows, CHUNK):
        db1.sql(f"SET SESSION sql_log_bin=0; USE bulk; INSERT INTO bulk.t SELECT seq, seq % 1000, MD5(seq), "
                f"REPEAT(MD5(seq + 1), 2) FROM seq_{start + 1}_to_{min(rows, start + CHUNK)};",
                timeout=3600)
    db1.sql("CREATE DATABASE app; CREATE TABLE app.ticks (n INT PRIMARY KEY, "
            "at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB;")


def runbook(path: Path, pair: Sandbox, copy: dict[str, Any]) -> Path:
    """The replica rebuild db1 -> db2 (db1 stays the primary); `copy` is the method's section."""
    doc = {"version": 1, "name": f"downtime-bench-{copy['method']}",
           "hosts": pair.runbook_hosts(), "donor": "db1", "recipient": "db2",
           "primary_after": "db1",
           "replication": {"user": "repl", "password_env": REPL_PASSWORD_ENV,
                           "healthy_timeout": 60},
           "copy": copy, "locks": {"lock_wait_timeout": 10}}
    path.write_text(yaml.safe_dump(doc))
    return path


def read_journal(cwd: Path) -> dict[str, Any] | None:
    journals = sorted((cwd / "resync-journal").glob("*.json"))
    if not journals:
        return None
    with contextlib.suppress(OSError, ValueError):
        data: dict[str, Any] = json.loads(journals[0].read_text())
        return data
    return None


def steps_between(journal: dict[str, Any], start: float, end: float) -> list[str]:
    """The keys of the journal's steps that ran at some point between start and end (epoch)."""
    return [s["key"] for s in journal.get("steps", [])
            if s.get("started_at") is not None and s["started_at"] < end
            and (s.get("finished_at") or end) > start]


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """The resync run (its own session) and what it started in its process group."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)


def check_writes(h: Any, pair: Sandbox, writer: Writer, journal: dict[str, Any],
                 result: Result) -> None:
    """Every acknowledged write on db1 and, once it has caught up, on db2."""
    sql = h.helpers.sql
    acked = {a.n for a in writer.acked()}
    on_db1 = {r["n"] for r in sql(pair, "db1", "SELECT n FROM app.ticks")}
    deadline = time.monotonic() + CATCH_UP_TIMEOUT
    while True:
        on_db2 = {r["n"] for r in sql(pair, "db2", "SELECT n FROM app.ticks")}
        if on_db2 == on_db1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if missing := acked - on_db1:
        result.problems.append(f"{len(missing)} acknowledged write(s) not on db1, e.g. "
                               f"{sorted(missing)[:5]}")
    if missing := acked - on_db2:
        result.problems.append(f"{len(missing)} acknowledged write(s) not on db2 after "
                               f"{CATCH_UP_TIMEOUT} s, e.g. {sorted(missing)[:5]}")
    if on_db2 != on_db1:
        result.problems.append(f"db1 has {len(on_db1)} ticks, db2 {len(on_db2)} "
                               f"({len(on_db1 - on_db2)} missing, {len(on_db2 - on_db1)} extra)")
    by_n = {a.n: a for a in writer.attempts}
    for n in sorted(on_db1 - acked):  # the client got an error, the server committed anyway
        a = by_n[n]
        during = steps_between(journal, a.end_wall - (a.end - a.start), a.end_wall)
        result.notes.append(f"write {n} committed though the client got {a.error or 'no answer'}"
                            f" (during {', '.join(during) or 'no step'})")
    result.consistent = not result.problems


@contextlib.contextmanager
def moto_server(h: Any) -> Iterator[Any]:
    """moto's server in this process (its EC2 is what the hooks patch), on 127.0.0.1."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield h.aws.Aws(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


def aws_environment(mp: Any, endpoint: str, work: Path) -> None:
    """As the test suite's `aws` fixture: inherited by the `python -m resync` subprocess."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        mp.delenv(name, raising=False)
    for name, value in (("AWS_ENDPOINT_URL", endpoint), ("AWS_ACCESS_KEY_ID", "testing"),
                        ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", "us-east-1"),
                        ("AWS_EC2_METADATA_DISABLED", "true"),
                        ("AWS_CONFIG_FILE", str(work / "no-aws-config")),
                        ("AWS_SHARED_CREDENTIALS_FILE", str(work / "no-aws-credentials")),
                        ("RESYNC_IMDS_ENDPOINT", f"http://127.0.0.1:{free_port()}")):  # nothing
        mp.setenv(name, value)


def reset_moto(endpoint: str) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()


def one_run(h: Any, aws: Any, method: str, work: Path, args: argparse.Namespace,
            say: Callable[[str], object]) -> Result:
    import pytest

    result = Result(method)
    root = Path(tempfile.mkdtemp(prefix=f"{method}-", dir=work))
    root.chmod(0o755)
    cwd = root / "run"
    cwd.mkdir()
    pair = Sandbox(root / "pair", loop_volumes=True)
    hooks = pytest.MonkeyPatch()  # the world's hooks on moto's EBSBackend: undone after the run
    world: Any = None
    proc: subprocess.Popen[bytes] | None = None
    writer: Writer | None = None
    try:
        for key, value in pair.env().items():
            hooks.setenv(key, value)
        say(f"{method}: a fresh pair on loop volumes, {args.size_mb} MB on db1")
        pair.create()
        pair.setup_replication("db1", "db2")
        load(pair, args.size_mb)
        if method == "ebs":
            reset_moto(aws.endpoint)
            world = h.ebs_peer.build_world(aws, pair, hooks)
            copying = world.snapshot_copy

            def timed(block: Any, target: Path) -> Any:
                start = time.monotonic()
                try:
                    return copying(block, target)
                finally:
                    result.snapshot_copy = (result.snapshot_copy or 0) + time.monotonic() - start

            hooks.setattr(world, "snapshot_copy", timed)
            copy: dict[str, Any] = {"method": "ebs", "stall_timeout": 60,
                                    "ebs": world.ebs_section("db1", "db2", timeout=300)}
        else:
            copy = {"method": "stream", "port": free_port(), "stall_timeout": 60}
        book = runbook(cwd / "runbook.yaml", pair, copy)
        db1 = pair["db1"]
        say(f"{method}: resync run --yes, the writer on db1 throughout")
        with Writer(db1.address, db1.port, os.environ[APP_PASSWORD_ENV], args.interval,
                    args.client_timeout) as writer:
            writer.wait_first_ack()
            time.sleep(0.5)
            with (cwd / "run.out").open("wb") as out:
                start = time.monotonic()
                proc = subprocess.Popen(
                    [sys.executable, "-m", "resync", "run", "--yes", str(book)], cwd=cwd,
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    env={**os.environ, "COLUMNS": "200"}, start_new_session=True)
                try:
                    code = proc.wait(RUN_TIMEOUT)
                except subprocess.TimeoutExpired:
                    code = None
                result.wall = time.monotonic() - start
            time.sleep(AFTER_RUN)
        journal = read_journal(cwd) or {}
        captured = journal.get("captured", {})
        result.resync_figure = captured.get("figures.write_downtime_seconds")
        result.copy_bytes = captured.get("copy.bytes")
        gaps = writer.gaps()
        result.downtime = max((g[0] for g in gaps), default=0.0)
        result.stalls = [(g[0], steps_between(journal, g[1], g[2])) for g in gaps if g[0] > STALL]
        result.acked = len(writer.acked())
        result.failed = len(writer.attempts) - result.acked
        result.errors = dict(writer.errors)
        if code != 0:
            lines = (cwd / "run.out").read_text(errors="replace").splitlines()
            why = next((ln for ln in reversed(lines) if ln.startswith("resync:")),
                       lines[-1] if lines else "no output")
            result.run_error = (f"resync run {'timed out' if code is None else f'exited {code}'}:"
                                f" {why[:400]}")
            result.problems.append(result.run_error)
        else:
            check_writes(h, pair, writer, journal, result)
        if world is not None and world.errors:
            result.problems.append(f"EBS world refusals: {world.errors}")
            result.consistent = False
            # ebs_peer's documented race: another process (a test session) took the loop device
            # chosen for the restored volume before the attach; the harness's, not resync's
            result.harness_race = any("failed to set up loop device" in e for e in world.errors)
    finally:
        try:
            if result.problems:  # a run that went wrong (not one interrupted)
                result.kept = keep(root, writer, method)
            teardown(h, pair, world, proc, cwd)
        finally:
            hooks.undo()
            shutil.rmtree(root, ignore_errors=True)
    return result


KEPT: list[Path] = []  # where the evidence of failed runs goes (one directory per bench)


def keep(root: Path, writer: Writer | None, method: str) -> Path:
    """The evidence of a failed run, outside the work tree that goes: the journal, resync's
    output, the runbook, each server's error log, the writer's attempts."""
    if not KEPT:
        KEPT.append(Path(tempfile.mkdtemp(prefix="resync-downtime-kept-")))
    target = Path(tempfile.mkdtemp(prefix=f"{method}-", dir=KEPT[0]))
    run = root / "run"
    for path in [*run.glob("*.out"), *run.glob("*.yaml"), *run.glob("resync-journal/*.json"),
                 *(root / "pair").glob("*/error.log")]:
        with contextlib.suppress(OSError):
            name = f"{path.parent.name}-{path.name}" if path.name == "error.log" else path.name
            shutil.copy(path, target / name)
    if writer is not None:
        (target / "writer-attempts.json").write_text(json.dumps(
            [a.__dict__ for a in writer.attempts]))
    return target


def teardown(h: Any, pair: Sandbox, world: Any, proc: subprocess.Popen[bytes] | None,
             cwd: Path) -> None:
    """Whatever happened (Ctrl-C too): the run stopped, its copy ends, the world's devices and
    mounts, the servers, their loop volumes."""
    errors: list[BaseException] = []

    def attempt(what: Callable[[], object]) -> None:
        try:
            what()
        except BaseException as exc:  # every other part of the teardown still runs
            errors.append(exc)

    if proc is not None:
        attempt(lambda: stop_process_group(proc))
    journal = read_journal(cwd)
    run_id = journal.get("run_id") if journal is not None else None
    if proc is not None and run_id:
        datadirs = [str(s.datadir) for s in pair]
        attempt(lambda: h.helpers.stop_copy_ends(run_id, datadirs))
    if world is not None:
        attempt(world.release)
    if run_id:  # the ebs copy's scratch mount point, once nothing is mounted there
        scratch = Path(f"/mnt/resync-{run_id}")
        if scratch.is_dir() and not os.path.ismount(scratch):
            attempt(lambda: scratch.rmdir())
    attempt(pair.destroy)
    if errors:
        raise errors[0]


# -- the report ------------------------------------------------------------------------------


def describe_stalls(r: Result) -> str:
    def steps(keys: list[str]) -> str:
        return (", ".join(keys) if len(keys) <= 2 else f"{keys[0]} .. {keys[-1]}") or "-"

    return ", ".join(f"{sec:.2f} s during ({steps(keys)})" for sec, keys in r.stalls) or "none"


def fmt(value: float | None, unit: str = "s") -> str:
    return "-" if value is None else f"{value:.2f} {unit}".rstrip()


def median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def report(console: Console, results: list[Result], size_mb: int) -> None:
    table = Table(title="write-downtime as the application sees it (replica rebuild, db1 stays "
                        "primary)")
    columns = ("run", "method", "app write-downtime", f"stalled (> {STALL} s)", "failed writes",
               "acked", "resync figure", "run wall time", "snap copy", "copy MB",
               "all acked on both")
    for col in columns:
        table.add_column(col, justify="left" if col in ("method", "all acked on both") else "right")
    for i, r in enumerate(results, 1):
        table.add_row(str(i), r.method, fmt(r.downtime), f"{fmt(r.stalled)} ({len(r.stalls)}x)",
                      str(r.failed), str(r.acked), fmt(r.resync_figure), fmt(r.wall),
                      fmt(r.snapshot_copy),
                      "-" if r.copy_bytes is None else f"{r.copy_bytes / 1e6:.0f}",
                      "yes" if r.consistent else "[bold red]RUN FAILED[/]" if r.run_error
                      else "[bold red]NO[/]")
    console.print(table)
    med: dict[str, dict[str, float | None]] = {}
    for method in METHODS:
        rs = [r for r in results if r.method == method and r.run_error is None]
        if not rs:
            continue
        m = med[method] = {"downtime": median([r.downtime for r in rs]),
                           "stalled": median([r.stalled for r in rs]),
                           "failed": median([float(r.failed) for r in rs]),
                           "figure": median([r.resync_figure for r in rs]),
                           "wall": median([r.wall for r in rs]),
                           "snap": median([r.snapshot_copy for r in rs])}
        console.print(f"  {method:6s} median of {len(rs)}: app write-downtime "
                      f"{fmt(m['downtime'])}, stalled {fmt(m['stalled'])} in all, failed writes "
                      f"{m['failed']:.0f}, resync's figure {fmt(m['figure'])}, run wall time "
                      f"{fmt(m['wall'])}" + (f", snapshot copy (harness) {fmt(m['snap'])}"
                                             if m["snap"] is not None else ""), soft_wrap=True)
    for i, r in enumerate(results, 1):
        console.print(escape(f"  run {i} ({r.method}) stalls: {describe_stalls(r)}"
                             + ("; writer errors: " + "; ".join(f"{k} x{v}" for k, v in
                                                                sorted(r.errors.items()))
                                if r.errors else "")
                             + (f"; LEFT OUT of the medians: {r.run_error}" if r.run_error
                                else "")), soft_wrap=True, highlight=False)
    if "stream" in med and "ebs" in med:
        s, e = med["stream"]["downtime"] or 0.0, med["ebs"]["downtime"] or 0.0
        s_all, e_all = med["stream"]["stalled"] or 0.0, med["ebs"]["stalled"] or 0.0
        runs = min(sum(r.method == m and r.run_error is None for r in results) for m in METHODS)
        console.print(f"ebs/stream stalled-in-all ratio: "
                      f"{f'{e_all / s_all:.2f}' if s_all else 'n/a'} (median {e_all:.2f} s vs "
                      f"{s_all:.2f} s)", soft_wrap=True)
        console.print(f"ebs/stream write-downtime ratio: {f'{e / s:.2f}' if s else 'n/a'} "
                      f"(median {e:.2f} s vs {s:.2f} s), {size_mb} MB, {runs} runs each",
                      soft_wrap=True)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per method (default 3)")
    parser.add_argument("--size-mb", type=int, default=300, help="data on db1 (default 300)")
    parser.add_argument("--interval", type=float, default=0.01,
                        help="seconds between the writer's INSERTs (default 0.01)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="the methods to run, in this order per round (default stream,ebs)")
    parser.add_argument("--client-timeout", type=float, default=2.0,
                        help="the writer's connect/read/write timeout (default 2)")
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    if not methods or set(methods) - set(METHODS):
        parser.error(f"--methods: a comma-separated list of {', '.join(METHODS)}")
    console = Console(width=None if sys.stdout.isatty() else 150)
    if missing := lacking():
        console.print(f"[red]downtime_bench needs {', '.join(missing)}[/] (root, the MariaDB "
                      f"packages: {sandbox_module.INSTALL_HINT}; util-linux, e2fsprogs)")
        return 2
    h = harness()
    signal.signal(signal.SIGTERM, _interrupt)  # a teardown like Ctrl-C's
    import pytest

    mp = pytest.MonkeyPatch()
    work = Path(tempfile.mkdtemp(prefix="resync-downtime-"))
    work.chmod(0o755)  # user mysql goes through it
    # room on the loop volumes: the data, a copy of it on the recipient, logs
    mp.setattr(sandbox_module, "LOOP_IMAGE_SIZE", f"{max(1024, 3 * args.size_mb + 512)}M")
    results: list[Result] = []
    started = time.monotonic()
    try:
        with moto_server(h) as aws:
            aws_environment(mp, aws.endpoint, work)
            for i in range(args.runs):
                for method in methods:
                    for attempt in range(1 + HARNESS_RETRIES):
                        with console.status(f"run {i + 1}/{args.runs} {method}") as status:
                            r = one_run(h, aws, method, work, args, status.update)
                        if not r.harness_race or attempt == HARNESS_RETRIES:
                            break
                        if r.kept is not None:
                            shutil.rmtree(r.kept, ignore_errors=True)
                        console.print(f"run {i + 1} {method}: the harness's restore loop device "
                                      "was taken by another process before the attach "
                                      "(ebs_peer's known race): run again")
                    results.append(r)
                    console.print(f"run {i + 1} {method:6s}: app write-downtime "
                                  f"{r.downtime:6.2f} s, {r.failed} failed writes, resync's "
                                  f"figure {fmt(r.resync_figure)}, wall {r.wall:.1f} s" +
                                  (f", snapshot copy {r.snapshot_copy:.2f} s"
                                   if r.snapshot_copy is not None else "") +
                                  f"; stalls > {STALL} s: {describe_stalls(r)}",
                                  soft_wrap=True)
                    for note in r.notes:
                        console.print(f"  note: {escape(note)}", soft_wrap=True)
                    for problem in r.problems:
                        console.print(f"[bold red]!!! FAILURE run {i + 1} ({method}): "
                                      f"{escape(problem)}[/]", soft_wrap=True)
                    if r.kept is not None:
                        console.print(f"  evidence kept in {r.kept}")
    except KeyboardInterrupt:
        console.print("[red]interrupted: cleaned up[/]")
        return 130
    except Exception as exc:
        console.print(f"[bold red]!!! the bench failed (cleaned up):[/] {exc}", markup=True,
                      highlight=False)
        return 1
    finally:
        mp.undo()
        shutil.rmtree(work, ignore_errors=True)
    report(console, results, args.size_mb)
    console.print(f"bench time {time.monotonic() - started:.0f} s")
    if bad := [i + 1 for i, r in enumerate(results) if not r.consistent]:
        console.print(f"[bold red]!!! FAILURE in run(s) {bad}: a failed resync run or "
                      f"acknowledged writes missing (above; evidence in {KEPT[0]})[/]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
