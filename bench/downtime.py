"""Write-downtime as the application sees it: the seed's hand procedure against `resync run --yes`
with each copy method, on a ~2 GB pair, in one run.

Scenario `seed` (default; seed 004, runbook `primary_after: <recipient>`): db1 was the primary,
db2 its replica; db1 failed, the application moved to db2 (replication stopped there, writes
since), db1 is fenced (read_only) with damage of its own. db1 (recipient) is rebuilt from db2
(donor) and becomes the primary again; db2 replicates from it. Scenario `replica`: db1 stays the
primary and its replica db2 (read_only) is rebuilt from it (`primary_after: <donor>`; no hand
procedure there: the first method listed is the baseline).

Methods: `hand` (hand_procedure.py: the seed's commands, timed), and `resync run --yes` with copy
method `stream`, `ssh` (an sshd of its own on 127.0.0.1), `ebs` (the EBS world of
tests/integration/ebs_peer.py: moto on 127.0.0.1, snapshots and volumes on loop devices) and
`mariabackup` (hot copy). Each run gets a fresh clone of a template pair loaded once
(pair_template.py: --size-mb MB of table data on each server, 90% InnoDB, 10% MyISAM; loop
volumes).

Through each run a writer does one INSERT every --interval seconds as the application
(harness.py): into the donor until it stops taking writes, then into the new primary; for the hand
procedure where its steps send the application (maintenance page on at step 2, the configuration
pointed at db1 at step 5, the page off at step 11). Per run: the application's write-downtime (the
longest interval between two acknowledged writes), the donor's lock (from its read lock until it
was stopped: stream, ssh, hand; the snapshot's lock: ebs; the backup tool's commit lock plus the
switch's read lock: mariabackup), the copy's rate (bytes sent / the copy's own seconds), and
resync's `figures.write_downtime_seconds` and `figures.downtime_minus_copy_seconds` (for the hand
procedure the same two from its own clock: maintenance page on -> off). After each run every
acknowledged write must be on both servers (a loud failure otherwise). Runs alternate the methods
within each round; medians per method and their ratio to the baseline. A failed run is left out
of the medians, its evidence kept in /tmp/resync-bench-kept-*/ (exit status 1).

Usage (root; mariadbd, mariabackup, sshd, moto[server], the tools ebs_peer.py lists):
    .venv/bin/python bench/downtime.py [--size-mb 2048] [--runs 3]
        [--methods hand,stream,ssh,ebs,mariabackup] [--scenario seed|replica]
        [--markdown] [--write-readme]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import downtime_report
import hand_procedure
import harness
import yaml
from ebs_glue import EbsRun, lacking, moto_server
from pair_template import PairTemplate

from resync.testing.sandbox import REPL_PASSWORD_ENV, Sandbox, missing_tools
from resync.testing.web import free_port

METHODS = ("hand", "stream", "ssh", "ebs", "mariabackup")
RUN_TIMEOUT = 1800  # seconds for one `resync run`
AFTER_RUN = 1.5  # seconds the writer goes on after the run (its last acknowledgements)
SCENARIOS = {  # donor, recipient, primary after, the server the application writes to first
    "seed": ("db2", "db1", "db1", "db2"),
    "replica": ("db1", "db2", "db1", "db1"),
}


def stage(pair: Sandbox, scenario: str) -> None:
    """The situation before the run, on a fresh clone of the template (db1 -> db2 replicating)."""
    db1, db2 = pair["db1"], pair["db2"]
    if scenario == "replica":
        db2.sql("SET GLOBAL read_only = ON;")
        return
    # the failover: db2 stops replicating and takes the application's writes
    db2.sql("STOP SLAVE; UPDATE app.bulk SET a = a + 1 WHERE id <= 100;")
    # db1's own damage, never binlogged (no errant transaction), and the fence
    db1.sql("SET SESSION sql_log_bin = 0; DELETE FROM app.bulk WHERE id % 10000 = 0; "
            "SET GLOBAL read_only = ON;")


class Context:
    """What the runs share: the arguments, the template, moto (ebs), the sshd (ssh)."""

    def __init__(self, args: argparse.Namespace, work: Path, template: PairTemplate) -> None:
        self.args, self.work, self.template = args, work, template
        self.aws: Any = None
        self.ssh_options: list[str] = []
        self.count = 0

    def copy_section(self, method: str, ebs: EbsRun | None) -> dict[str, Any]:
        donor, recipient, _, _ = SCENARIOS[self.args.scenario]
        if method == "ebs":
            assert ebs is not None
            return ebs.section(donor, recipient)
        section: dict[str, Any] = {"method": method, "port": free_port(), "stall_timeout": 60}
        if method == "ssh":
            section["ssh"] = {"target": "root@127.0.0.1", "options": self.ssh_options}
        return section

    def runbook(self, path: Path, method: str, pair: Sandbox, ebs: EbsRun | None) -> Path:
        donor, recipient, primary_after, _ = SCENARIOS[self.args.scenario]
        doc = {"version": 1, "name": f"downtime-{method}", "hosts": pair.runbook_hosts(),
               "donor": donor, "recipient": recipient, "primary_after": primary_after,
               "replication": {"user": "repl", "password_env": REPL_PASSWORD_ENV,
                               "healthy_timeout": 300},
               "copy": self.copy_section(method, ebs), "locks": {"lock_wait_timeout": 10}}
        path.write_text(yaml.safe_dump(doc))
        return path


def donor_lock(method: str, journal: dict[str, Any], donor: str) -> float | None:
    """Seconds the donor held a write-blocking lock while up (module docstring)."""
    captured = journal.get("captured", {})
    if method == "ebs":
        value = captured.get("ebs.write_lock_seconds")
        return None if value is None else float(value)
    if method == "mariabackup":
        tool = captured.get("hot.write_lock_seconds")
        switch = captured.get("hot.switch_lock_seconds")  # the seed scenario's freeze
        parts = [float(v) for v in (tool, switch) if v is not None]
        return sum(parts) if parts else None
    locked, _ = harness.step_times(journal, f"read-lock:{donor}")
    _, stopped = harness.step_times(journal, f"stop-service:{donor}")
    return None if locked is None or stopped is None else stopped - locked


def one_run(ctx: Context, method: str, say: Callable[[str], object]) -> downtime_report.Result:
    args = ctx.args
    donor, _, primary_after, writes_first = SCENARIOS[args.scenario]
    result = downtime_report.Result(method)
    ctx.count += 1
    run = ctx.work / f"run-{ctx.count}-{method}"
    run.mkdir(mode=0o755)
    pair: Sandbox | None = None
    writer: harness.Writer | None = None
    with contextlib.ExitStack() as stack:  # unwound last registered first
        try:
            say(f"{method}: a fresh clone of the {args.size_mb} MB pair")
            pair = ctx.template.clone()
            stack.callback(pair.destroy)
            stack.callback(remove_scratch, run)  # once the EBS world has unmounted it
            ebs = stack.enter_context(EbsRun(ctx.aws, pair)) if method == "ebs" else None
            stack.callback(stop_copy_ends, run, pair)
            stage(pair, args.scenario)
            book = None if method == "hand" else ctx.runbook(run / "runbook.yaml", method, pair, ebs)
            say(f"{method}: running, the writer on {writes_first}")
            writer = harness.Writer(pair, writes_first, follow=method != "hand",
                                    interval=args.interval, timeout=args.client_timeout)
            with writer:
                writer.wait_first_ack()
                time.sleep(0.5)
                started = time.monotonic()
                if book is None:
                    measure_hand(result, pair, writer, run)
                else:
                    code, _ = harness.run_resync(run, ["run", "--yes", str(book)], RUN_TIMEOUT)
                    if code != 0:
                        how = "timed out" if code is None else f"exited {code}"
                        result.run_error = (f"resync run {how} at "
                                            f"{harness.failed_step(harness.read_journal(run)) or '?'}"
                                            f": {harness.failure_line(run)}")
                result.wall = time.monotonic() - started
                time.sleep(AFTER_RUN)
            gather(result, writer, harness.read_journal(run), ebs, None if book is None else donor)
            if result.run_error is None:
                problems, result.notes = harness.check_writes(pair, writer, primary_after)
                result.problems += problems
            else:
                result.problems.append(result.run_error)
        except Exception as exc:
            result.run_error = result.run_error or f"{type(exc).__name__}: {exc}"
            result.problems.append(result.run_error)
        finally:
            if result.problems or args.keep:  # before the servers and their logs go
                result.kept = harness.keep(method, run, pair, writer)
    shutil.rmtree(run, ignore_errors=True)
    return result


def gather(result: downtime_report.Result, writer: harness.Writer, journal: dict[str, Any],
           ebs: EbsRun | None, donor: str | None) -> None:
    """The run's figures: the writer's record, resync's journal (donor: None for the hand
    procedure, which measured its own), the EBS world's copies."""
    if donor is not None:
        measure_resync(result, result.method, journal, donor)
    if ebs is not None:
        result.image_copies = ebs.image_copies
        if ebs.errors():
            result.problems.append(f"EBS world refusals: {ebs.errors()}")
    result.downtime = writer.longest_gap()
    result.stalls = [(g[0], harness.steps_between(journal, g[1], g[2]) if donor
                      else ["hand procedure"]) for g in writer.gaps() if g[0] > harness.STALL]
    result.acked = len(writer.acked())
    result.failed = len(writer.attempts) - result.acked


def remove_scratch(run: Path) -> None:
    """The EBS copy's scratch mount point (/mnt/resync-<run id>), once nothing is mounted there."""
    run_id = harness.read_journal(run).get("run_id")
    scratch = Path(f"/mnt/resync-{run_id}")
    if run_id and scratch.is_dir() and not scratch.is_mount():
        scratch.rmdir()


def stop_copy_ends(run: Path, pair: Sandbox) -> None:
    """Copy ends a failed or interrupted run left behind (they hold ports and datadirs)."""
    from ebs_glue import integration

    run_id = harness.read_journal(run).get("run_id")
    if run_id:
        integration().helpers.stop_copy_ends(run_id, [str(s.datadir) for s in pair])


def measure_hand(result: downtime_report.Result, pair: Sandbox, writer: harness.Writer,
                 run: Path) -> None:
    try:
        times = hand_procedure.run(pair, writer, free_port(), run / "hand.log")
    except Exception as exc:
        writer.resume()
        result.run_error = f"hand procedure: {exc}"
        return
    result.donor_lock = times.span("locked", "donor_down")
    result.copy_seconds = times.span("copy_start", "copy_end")
    result.copy_bytes = times.bytes
    result.figure = times.span("maintenance_on", "end")
    if result.figure is not None and result.copy_seconds is not None:
        result.minus_copy = result.figure - result.copy_seconds


def measure_resync(result: downtime_report.Result, method: str, journal: dict[str, Any],
                   donor: str) -> None:
    captured = journal.get("captured", {})
    result.figure = captured.get("figures.write_downtime_seconds")
    result.minus_copy = captured.get("figures.downtime_minus_copy_seconds")
    result.donor_lock = donor_lock(method, journal, donor)
    if captured.get("copy.bytes") is not None and captured.get("copy.seconds"):
        result.copy_bytes = int(captured["copy.bytes"])
        result.copy_seconds = float(captured["copy.seconds"])


def lacking_for(methods: list[str]) -> list[str]:
    missing = list(missing_tools())
    if "mariabackup" in methods:
        missing += [t for t in ("mariabackup", "mbstream") if shutil.which(t) is None]
    if "ssh" in methods:
        missing += [t for t in ("/usr/sbin/sshd", "ssh", "ssh-keygen") if shutil.which(t) is None]
    if "hand" in methods:
        missing += [t for t in ("nc", "tar", "ss") if shutil.which(t) is None]
    if "ebs" in methods:
        missing += lacking()
    return missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per method (default 3)")
    parser.add_argument("--size-mb", type=int, default=2048, help="data per server (default 2048)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"in this order per round (default {','.join(METHODS)})")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="seed")
    parser.add_argument("--interval", type=float, default=0.01,
                        help="seconds between the writer's INSERTs (default 0.01)")
    parser.add_argument("--client-timeout", type=float, default=2.0,
                        help="the writer's connect/read/write timeout (default 2)")
    parser.add_argument("--keep", action="store_true",
                        help="keep every run's journal, logs and writer record (not only failed ones)")
    parser.add_argument("--markdown", action="store_true", help="print README's table")
    parser.add_argument("--write-readme", action="store_true",
                        help="replace README's table (between its downtime-table markers)")
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    if not methods or set(methods) - set(METHODS):
        parser.error(f"--methods: a comma-separated list of {', '.join(METHODS)}")
    if args.scenario == "replica" and "hand" in methods:
        parser.error("the hand procedure is the seed scenario's: not with --scenario replica")
    console = downtime_report.console()
    if missing := lacking_for(methods):
        console.print(f"[red]downtime.py needs {', '.join(missing)}[/] (as root)")
        return 2
    signal.signal(signal.SIGTERM, harness.interrupt)
    work = Path(tempfile.mkdtemp(prefix="resync-downtime-"))
    work.chmod(0o755)  # user mysql goes through it
    template = PairTemplate(work, args.size_mb)
    ctx = Context(args, work, template)
    results: list[downtime_report.Result] = []
    started = time.monotonic()
    measured = f"commit {harness.commit()}, {time.strftime('%Y-%m-%d %H:%M %Z')}"
    try:
        with contextlib.ExitStack() as stack:
            template.build(console.print)
            if "ebs" in methods:
                ctx.aws = stack.enter_context(moto_server(work))
            if "ssh" in methods:
                ctx.ssh_options = start_sshd(stack, work)
            for i in range(args.runs):
                for method in methods:
                    with console.status(f"round {i + 1}/{args.runs} {method}") as status:
                        r = one_run(ctx, method, status.update)
                    results.append(r)
                    downtime_report.print_run(console, i + 1, r)
    except KeyboardInterrupt:
        console.print("[red]interrupted: cleaned up[/]")
        return 130
    finally:
        template.remove()
        shutil.rmtree(work, ignore_errors=True)
    return downtime_report.finish(console, results, methods, args, measured,
                                  time.monotonic() - started)


def start_sshd(stack: contextlib.ExitStack, work: Path) -> list[str]:
    """An sshd of this bench's own on 127.0.0.1 (root's key only); the ssh options to reach it."""
    from copy_bench import make_keys, ssh_argv
    from copy_bench import start_sshd as launch

    keys = make_keys(work / "keys")
    (keys / "known_hosts").write_text("")
    port = free_port()
    sshd = launch(keys, None, "127.0.0.1", port)
    stack.callback(sshd.wait, 10)
    stack.callback(sshd.terminate)
    return ssh_argv(keys, "127.0.0.1", port)[5:-1]  # -i KEY -p PORT -o UserKnownHostsFile=...


if __name__ == "__main__":
    sys.exit(main())
