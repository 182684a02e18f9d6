"""Copy benchmark: resync's stream copy step against a raw `tar c | nc` -> `nc | tar x` baseline.

Both run in this process, alternating, on the same datadir (built once with the sandbox and a
data generator, reused with --reuse). Prints the median of each and the ratio resync/raw.

Usage (root): .venv/bin/python bench/copy_bench.py [--size-gb 1.0] [--runs 3] [--reuse DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from rich.console import Console

from resync.run.waiting import wait_until
from resync.testing.sandbox import Sandbox

ROWS_PER_GB = 5_000_000
PORT = 17977


def build_datadir(root: Path, size_gb: float) -> Sandbox:
    sandbox = Sandbox(root / "sandbox", names=("donor", "recipient"))
    sandbox.create()
    rows = int(size_gb * ROWS_PER_GB)
    chunk = 500_000
    sandbox["donor"].sql("CREATE DATABASE bench; CREATE TABLE bench.t (id INT PRIMARY KEY, a INT, "
                         "b VARCHAR(64), c VARCHAR(200), KEY (a)) ENGINE=InnoDB;")
    for start in range(0, rows, chunk):
        sandbox["donor"].sql(
            f"USE bench; INSERT INTO bench.t SELECT seq, seq % 1000, MD5(seq), REPEAT(MD5(seq + 1), 2) "
            f"FROM seq_{start + 1}_to_{min(rows, start + chunk)} AS s;", timeout=3600)
    sandbox.stop_all()
    return sandbox


def du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def empty(path: Path) -> None:
    shutil.rmtree(path)
    path.mkdir()


def _excludes() -> str:
    from resync.steps.copy.commands import excludes_for

    return " ".join(f"--exclude='{p}'" for p in excludes_for("mariadb"))


def raw_copy(src: Path, dst: Path, ssh: list[str] | None = None) -> float:
    """The hand procedure: `tar c | nc` -> `nc | tar x` (or `tar c | ssh 'tar x'`), same files."""
    empty(dst)
    receiver = None
    if ssh is None:
        receiver = subprocess.Popen(f"nc -d -l 127.0.0.1 {PORT} | tar -x -f - -C {dst}", shell=True)
        wait_until(lambda: subprocess.run(f"ss -Hltn 'sport = :{PORT}'", shell=True,
                                          capture_output=True, text=True).stdout.strip(),
                   what="raw listener", timeout=10, interval=0.01)
        sink = f"nc -N 127.0.0.1 {PORT}"
    else:
        sink = " ".join(ssh) + f" 'tar -x -f - -C {dst}'"
    start = time.perf_counter()
    subprocess.run(f"tar -c -f - {_excludes()} -C {src} . | {sink}", shell=True, check=True)
    if receiver:
        receiver.wait()
    return time.perf_counter() - start


def resync_copy(sandbox: Sandbox, work: Path, copy: dict[str, object]) -> tuple[float, int]:
    """The real copy step (CopyDatadir), run by the executor as `resync run` runs it."""
    import yaml

    from resync.model.keys import COPY_BYTES, OLD_DATADIR
    from resync.model.runbook import load_runbook
    from resync.plan.build import assumed_facts, build_plan
    from resync.run.journal import Journal
    from resync.run.runner import executor_for
    from resync.steps.copy.pipeline import CopyDatadir

    hosts = sandbox.runbook_hosts()
    doc = {"version": 1, "name": "bench", "hosts": hosts, "donor": "donor",
           "recipient": "recipient", "primary_after": "recipient",
           "replication": {"user": "repl", "password_env": "BENCH_UNUSED"},
           "copy": {"port": PORT, **copy}}
    runbook = work / "bench.yaml"
    runbook.write_text(yaml.safe_dump(doc))
    loaded = load_runbook(runbook)
    plan = build_plan(loaded, assumed_facts(loaded, {}))
    step = next(s for s in plan.steps if isinstance(s, CopyDatadir))
    journal_path = work / f"journal-{time.monotonic_ns()}.json"
    journal = Journal.create(journal_path, run_id="bench", runbook_path=str(runbook),
                             runbook_sha256=loaded.sha256, steps=[(step.key, step.title)])
    for key, value in plan.initial_values("bench").items():  # as `resync run` does
        journal.capture(key, value)
    Path(str(journal.data.captured[str(OLD_DATADIR)])).mkdir(exist_ok=True)  # "the kept old one"
    exe = executor_for(loaded, journal)
    empty(sandbox["recipient"].datadir)
    start = time.perf_counter()
    exe.begin(step.key)
    exe.run(step.plan())
    elapsed = time.perf_counter() - start
    exe.close()
    nbytes = int(str(journal.data.captured[str(COPY_BYTES)]))
    journal_path.unlink()
    return elapsed, nbytes


def start_sshd() -> tuple[object, list[str]]:
    """A throwaway sshd on loopback (the test suite's), and the ssh argv that reaches it."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
    from sshd import TestSSHD  # type: ignore[import-not-found]

    server = TestSSHD.start()
    argv = ["ssh", "-o", "BatchMode=yes", "-c", "aes128-gcm@openssh.com", "-i",
            str(server.client_key), "-p", str(server.port), "-o",
            f"UserKnownHostsFile={server.known_hosts}", "root@127.0.0.1"]
    return server, argv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reuse", type=Path, help="keep/reuse the generated datadir here")
    args = parser.parse_args()
    console = Console()
    work = args.reuse or Path(tempfile.mkdtemp(prefix="resync-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    os.environ.setdefault("BENCH_UNUSED", "x")
    existing = (work / "sandbox" / "donor" / "data").is_dir()
    sandbox = Sandbox(work / "sandbox", names=("donor", "recipient")) if existing else None
    if sandbox is None:
        with console.status(f"building a {args.size_gb} GB datadir"):
            sandbox = build_datadir(work, args.size_gb)
    os.environ.update(sandbox.env())
    src, dst = sandbox["donor"].datadir, sandbox["recipient"].datadir
    sshd, ssh_argv = start_sshd()
    ssh_copy: dict[str, object] = {"method": "ssh",
                                   "ssh": {"target": "root@127.0.0.1", "options": ssh_argv[5:-1]}}
    console.print(f"datadir {src}: {du(src) / 1e9:.2f} GB on disk; {args.runs} alternating runs")
    kinds = ("raw tar|nc", "resync stream", "raw tar|ssh", "resync ssh")
    times: dict[str, list[float]] = {k: [] for k in kinds}
    nbytes = 0
    try:
        for i in range(args.runs):
            times["raw tar|nc"].append(raw_copy(src, dst))
            t, nbytes = resync_copy(sandbox, work, {})
            times["resync stream"].append(t)
            times["raw tar|ssh"].append(raw_copy(src, dst, ssh_argv))
            times["resync ssh"].append(resync_copy(sandbox, work, ssh_copy)[0])
            console.print(f"run {i + 1}: " + "   ".join(
                f"{k} {nbytes / times[k][-1] / 1e6:6.0f} MB/s" for k in kinds))
    finally:
        sshd.stop()  # type: ignore[attr-defined]
    med = {k: statistics.median(v) for k, v in times.items()}
    console.print(f"stream of {nbytes / 1e9:.2f} GB; medians:")
    for k in kinds:
        console.print(f"  {k:14s} {med[k]:6.2f}s  {nbytes / med[k] / 1e6:6.0f} MB/s")
    console.print(f"resync stream / raw tar|nc throughput: {med['raw tar|nc'] / med['resync stream']:.2f}")
    console.print(f"resync ssh / raw tar|ssh throughput:   {med['raw tar|ssh'] / med['resync ssh']:.2f}")
    if args.reuse is None:
        sandbox.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
