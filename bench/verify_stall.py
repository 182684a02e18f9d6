"""The longest write stall on the primary during `resync verify` (the chunked verify), on a ~2 GB
pair in replication: issue 11's target is <= 1 s at any data size.

Each run gets a fresh clone of a template pair loaded once (pair_template.py: db1 -> db2 in GTID
replication, --size-mb MB of table data: 90% in `app.bulk`, InnoDB, 10% in the MyISAM table
`app.notes`; loop volumes). Two writers insert every --interval seconds into the primary db1 as
the application (harness.py), each with its own connection: one into `app.ticks` (InnoDB), one
into `app.notes` (MyISAM: the verify locks a non-transactional table per chunk, and a writer to it
waits for that lock). Alternating within each round:
- `verify`: `resync verify RUNBOOK` (primary db1, replica db2) with both writers running;
- `idle`: the writers alone for as long as the round's verify took: the stalls this machine
  (2 cores shared with other sessions) gives a writer anyway, the baseline.
Per run: the longest interval between two acknowledged writes of each writer, the verify's
longest lock on the primary (journal `verify.longest_lock_seconds`), its duration (the verify
step's own time, from its journal) and rate (the tables' data files / duration). The verify must
find the tables equal, and every acknowledged write must be on both servers. Medians of --runs.

Usage (root): .venv/bin/python bench/verify_stall.py [--size-mb 2048] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import harness
import yaml
from harness import fmt, median
from pair_template import PairTemplate
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from resync.testing.sandbox import REPL_PASSWORD_ENV, Sandbox, missing_tools

TARGET = 1.0  # seconds: issue 11's longest write stall on the primary during verify
VERIFY_TIMEOUT = 3600
NOTES_FIRST = 2_000_000_000  # the MyISAM writer's keys: above the bulk rows
KINDS = ("verify", "idle")


@dataclass
class Run:
    kind: str
    stall_innodb: float = 0.0
    stall_myisam: float = 0.0
    longest_lock: float | None = None
    seconds: float | None = None  # the verify step's own time
    wall: float = 0.0  # `resync verify` (or the idle wait) from start to end
    rate: float | None = None  # MB/s of the tables' data
    problems: list[str] = field(default_factory=list)
    kept: Path | None = None


def data_bytes(pair: Sandbox) -> int:
    """The size of the tables' data files on the primary (.ibd, .MYD; the statistics'
    data_length of a fresh clone may be stale)."""
    app = pair["db1"].datadir / "app"
    return sum(p.stat().st_size for pattern in ("*.ibd", "*.MYD") for p in app.glob(pattern))


def runbook(path: Path, pair: Sandbox) -> Path:
    doc = {"version": 1, "name": "verify-stall", "hosts": pair.runbook_hosts(), "donor": "db1",
           "recipient": "db2", "primary_after": "db1",
           "replication": {"user": "repl", "password_env": REPL_PASSWORD_ENV},
           "locks": {"lock_wait_timeout": 10}}
    path.write_text(yaml.safe_dump(doc))
    return path


def one_run(kind: str, template: PairTemplate, work: Path, args: argparse.Namespace,
            idle_seconds: float, count: int) -> Run:
    result = Run(kind)
    run = work / f"run-{count}-{kind}"
    run.mkdir(mode=0o755)
    pair = template.clone()
    writers: list[harness.Writer] = []
    try:
        book = runbook(run / "runbook.yaml", pair)
        size = data_bytes(pair)
        writers = [harness.Writer(pair, "db1", follow=False, interval=args.interval,
                                  timeout=args.client_timeout),
                   harness.Writer(pair, "db1", follow=False, interval=args.interval,
                                  timeout=args.client_timeout, first_n=NOTES_FIRST,
                                  statement="INSERT INTO app.notes (id, note) VALUES (%s, 'w')")]
        with contextlib.ExitStack() as stack:
            for writer in writers:
                stack.enter_context(writer)
                writer.wait_first_ack()
            time.sleep(0.5)
            started = time.monotonic()
            if kind == "verify":
                code, _ = harness.run_resync(run, ["verify", str(book)], VERIFY_TIMEOUT)
                if code != 0:
                    how = "timed out" if code is None else f"exited {code}"
                    result.problems.append(f"resync verify {how}: {harness.failure_line(run)}")
            else:
                time.sleep(idle_seconds)
            result.wall = time.monotonic() - started
            time.sleep(0.5)
        result.stall_innodb, result.stall_myisam = (w.longest_gap() for w in writers)
        if kind == "verify":
            journal = harness.read_journal(run)
            captured = journal.get("captured", {})
            lock = captured.get("verify.longest_lock_seconds")
            result.longest_lock = None if lock is None else float(lock)
            begun, ended = harness.step_times(journal, "verify-data")
            if begun is not None and ended is not None:
                result.seconds = ended - begun
                result.rate = size / result.seconds / 1e6
            if not result.problems and captured.get("verify.report", "[]") not in ("[]", None):
                result.problems.append(f"verify found differences: {captured['verify.report']}")
        for writer, table, column in ((writers[0], "app.ticks", "n"),
                                      (writers[1], "app.notes", "id")):
            problems, _ = harness.check_writes(pair, writer, "db1", table, column)
            result.problems += problems
    except Exception as exc:
        result.problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        if result.problems or args.keep:
            result.kept = harness.keep(kind, run, pair, writers[0] if writers else None)
        pair.destroy()
        shutil.rmtree(run, ignore_errors=True)
    return result


def report(out: Console, results: list[Run], args: argparse.Namespace, measured: str) -> None:
    table = Table(title=f"write stalls on the primary during `resync verify`, {args.size_mb} MB, "
                        f"medians of {args.runs} runs")
    for col in ("kind", "longest stall InnoDB writer s", "longest stall MyISAM writer s",
                "longest lock s", "verify s", "verify MB/s", "runs ok"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for kind in KINDS:
        ok = [r for r in results if r.kind == kind and not r.problems]
        table.add_row(kind, fmt(median([r.stall_innodb for r in ok])),
                      fmt(median([r.stall_myisam for r in ok])),
                      fmt(median([r.longest_lock for r in ok]), 3),
                      fmt(median([r.seconds for r in ok]), 1),
                      fmt(median([r.rate for r in ok]), 0),
                      f"{len(ok)}/{sum(r.kind == kind for r in results)}")
    out.print(table)
    verify = [r for r in results if r.kind == "verify" and not r.problems]
    worst = max((max(r.stall_innodb, r.stall_myisam) for r in verify), default=None)
    if worst is not None:
        out.print(f"longest stall of any writer in any verify run: {worst:.2f} s (target "
                  f"<= {TARGET:.0f} s: {'met' if worst <= TARGET else 'MISSED'})")
    out.print(measured)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs of each kind (default 3)")
    parser.add_argument("--size-mb", type=int, default=2048, help="data per server (default 2048)")
    parser.add_argument("--interval", type=float, default=0.01,
                        help="seconds between each writer's INSERTs (default 0.01)")
    parser.add_argument("--client-timeout", type=float, default=5.0,
                        help="the writers' connect/read/write timeout (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep every run's journal and logs")
    args = parser.parse_args()
    out = Console(width=None if sys.stdout.isatty() else 160)
    if missing := missing_tools():
        out.print(f"[red]verify_stall.py needs {', '.join(missing)}[/] (as root)")
        return 2
    signal.signal(signal.SIGTERM, harness.interrupt)
    work = Path(tempfile.mkdtemp(prefix="resync-verify-stall-"))
    work.chmod(0o755)
    template = PairTemplate(work, args.size_mb)
    results: list[Run] = []
    measured = f"commit {harness.commit()}, {time.strftime('%Y-%m-%d %H:%M %Z')}"
    try:
        template.build(out.print)
        idle = 5.0
        for i in range(args.runs):
            for kind in KINDS:
                with out.status(f"round {i + 1}/{args.runs} {kind}"):
                    r = one_run(kind, template, work, args, idle, len(results) + 1)
                results.append(r)
                if kind == "verify" and r.seconds:
                    idle = r.wall
                out.print(escape(f"round {i + 1} {kind:6s}: longest stall InnoDB "
                                 f"{r.stall_innodb:.2f} s, MyISAM {r.stall_myisam:.2f} s, longest "
                                 f"lock {fmt(r.longest_lock, 3)} s, verify {fmt(r.seconds, 1)} s "
                                 f"({fmt(r.rate, 0)} MB/s), wall {r.wall:.1f} s"), highlight=False)
                for problem in r.problems:
                    out.print(f"[bold red]!!! FAILURE ({kind}): {escape(problem)}[/]")
                if r.kept is not None:
                    out.print(f"  evidence kept in {r.kept}")
    except KeyboardInterrupt:
        out.print("[red]interrupted: cleaned up[/]")
        return 130
    finally:
        template.remove()
        shutil.rmtree(work, ignore_errors=True)
    report(out, results, args, measured)
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
