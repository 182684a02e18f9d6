"""Copy benchmark: resync's copy step (stream: the relay; ssh) against the hand procedure, raw
`tar c | nc` -> `nc | tar x` and raw `tar c | ssh 'tar x'`, on three links in ONE run:

  loopback   both ends on this machine, 127.0.0.1, unshaped (the two ends share the cores)
  4gbit      two network namespaces joined by a veth pair, the donor's side shaped by
  1gbit      `tc qdisc ... root tbf rate 4gbit|1gbit burst 4mb latency 50ms`

Each link runs the four kinds alternating, `--runs` times; medians and the ratios raw/resync
(throughput of resync over raw) are printed as a table. The datadir is built once with the
sandbox and a data generator (reused with --reuse). resync's figure is the copy's own time (its
ends, from the sender's start to both ends' exit: `copy.seconds`), the raw one the same span; the
step's whole time (leftover check, installs, polls) is shown beside it. The ends of the netns links
run inside their namespace (`ip netns exec`: a `Host` that wraps the step's very commands); the
namespaces, their addresses and their sshd are this run's own and go on exit, also on Ctrl-C.

Usage (root): .venv/bin/python bench/copy_bench.py [--size-gb 1.0] [--runs 3] [--reuse DIR]
              [--links loopback,4gbit,1gbit] [--methods stream,ssh] [--digest crc32|sha256]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from resync.run.waiting import wait_until
from resync.testing.sandbox import Sandbox
from resync.transport.local import LocalBackground, LocalHost

ROWS_PER_GB = 5_000_000
PORT = 17977
SSHD_PORT = 2222
LINKS = {"loopback": None, "4gbit": "4gbit", "1gbit": "1gbit"}
KINDS = {"stream": ("raw tar|nc", "resync stream"), "ssh": ("raw tar|ssh", "resync ssh")}
# a host's own tools, as on a database host (not a developer's pyenv shims)
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


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
    """Emptied, and every dirty page written: no writeback of the last copy slows this one."""
    shutil.rmtree(path)
    path.mkdir()
    os.sync()


def _excludes() -> str:
    from resync.steps.copy.commands import excludes_for

    return " ".join(f"--exclude='{p}'" for p in excludes_for("mariadb"))


# -- the links --------------------------------------------------------------------------------------

@dataclass
class Link:
    """Where the two ends run: this namespace (loopback) or two namespaces of a veth pair."""

    name: str
    donor_ns: str | None = None
    recipient_ns: str | None = None
    address: str = "127.0.0.1"  # the recipient's
    donor_address: str = "127.0.0.1"  # the donor's (the relay's receiver lets in only that peer)
    ssh_argv: list[str] = field(default_factory=list)  # the donor's ssh to the recipient
    digest: str = "crc32"  # resync stream's relay checksum


def wrap(ns: str | None, command: str) -> list[str]:
    """`command` through bash, in namespace ns (None: this one)."""
    argv = ["bash", "-o", "pipefail", "-c", command]
    return ["ip", "netns", "exec", ns, *argv] if ns else argv


class NetnsHost(LocalHost):
    """A local host whose commands run in a network namespace (same files, same processes)."""

    def __init__(self, name: str, ns: str | None) -> None:
        super().__init__(name)
        self.ns = ns

    def start(self, command: str, *, privileged: bool = False) -> LocalBackground:
        proc = subprocess.Popen(wrap(self.ns, command), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        return LocalBackground(self.name, command, proc)


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


class Namespaces:
    """Two namespaces `rsbench<pid>a|b` joined by a veth pair, 10.233.0.1/30 <-> .2; an sshd in
    the recipient's. Removed by close() (and namespaces of a killed earlier run by open())."""

    def __init__(self, keys: Path) -> None:
        tag = f"rsbench{os.getpid()}"
        self.a, self.b = f"{tag}a", f"{tag}b"
        self.keys = keys
        self.sshd: subprocess.Popen[bytes] | None = None

    def open(self) -> None:
        self._remove_stale()
        for ns in (self.a, self.b):
            sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", f"{self.a}v", "type", "veth", "peer", "name", f"{self.b}v")
        for ns, address in ((self.a, "10.233.0.1/30"), (self.b, "10.233.0.2/30")):
            sh("ip", "link", "set", f"{ns}v", "netns", ns)
            sh("ip", "-n", ns, "addr", "add", address, "dev", f"{ns}v")
            sh("ip", "-n", ns, "link", "set", f"{ns}v", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.sshd = start_sshd(self.keys, self.b, "10.233.0.2", SSHD_PORT)

    def shape(self, rate: str) -> None:
        """The donor's side (the data's direction) limited to `rate`."""
        sh("ip", "netns", "exec", self.a, "tc", "qdisc", "replace", "dev", f"{self.a}v", "root",
           "tbf", "rate", rate, "burst", "4mb", "latency", "50ms")

    def close(self) -> None:
        if self.sshd is not None and self.sshd.poll() is None:
            self.sshd.terminate()
            self.sshd.wait(timeout=10)
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    @staticmethod
    def _remove_stale() -> None:
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        for name in (line.split()[0] for line in listed.splitlines() if line.strip()):
            pid = name.removeprefix("rsbench")[:-1]
            if name.startswith("rsbench") and pid.isdigit() and not Path(f"/proc/{pid}").exists():
                subprocess.run(["ip", "netns", "del", name], capture_output=True)


def make_keys(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in ("host", "client"):
        if not (root / name).exists():
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name))
    (root / "authorized_keys").write_text((root / "client.pub").read_text())
    return root


def start_sshd(keys: Path, ns: str | None, address: str, port: int) -> subprocess.Popen[bytes]:
    """sshd on address:port (in namespace ns), root's key login only; known_hosts for it."""
    where = ns or "root"
    config = keys / f"sshd_config-{where}"
    config.write_text(
        f"Port {port}\nListenAddress {address}\nHostKey {keys / 'host'}\n"
        f"PidFile {keys / f'sshd-{where}.pid'}\nAuthorizedKeysFile {keys / 'authorized_keys'}\n"
        "StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nX11Forwarding no\nPrintMotd no\nMaxStartups 100\n")
    key = " ".join((keys / "host.pub").read_text().split()[:2])
    with (keys / "known_hosts").open("a") as known:
        known.write(f"[{address}]:{port} {key}\n")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    argv = ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)]
    proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv] if ns else argv,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=(keys / "sshd.log").open("ab"))
    wait_until(lambda: listening(ns, port), what=f"sshd on {address}:{port}", timeout=10,
               interval=0.05)
    return proc


def listening(ns: str | None, port: int) -> bool:
    return bool(subprocess.run(wrap(ns, f"ss -Hltn 'sport = :{port}'"),
                               capture_output=True, text=True).stdout.strip())


def ssh_argv(keys: Path, address: str, port: int) -> list[str]:
    return ["ssh", "-o", "BatchMode=yes", "-c", "aes128-gcm@openssh.com", "-i",
            str(keys / "client"), "-p", str(port), "-o", f"UserKnownHostsFile={keys / 'known_hosts'}",
            f"root@{address}"]


# -- the two copies ------------------------------------------------------------------------------------

def raw_copy(link: Link, src: Path, dst: Path, method: str) -> float:
    """The hand procedure: `tar c | nc` -> `nc | tar x` (or `tar c | ssh 'tar x'`), same files."""
    empty(dst)
    ends: list[subprocess.Popen[bytes]] = []
    try:
        if method == "stream":
            ends.append(subprocess.Popen(wrap(link.recipient_ns, f"nc -d -l {link.address} {PORT}"
                                              f" | tar -x -f - -C {dst}"), start_new_session=True))
            wait_until(lambda: listening(link.recipient_ns, PORT), what="raw listener",
                       timeout=10, interval=0.01)
            sink = f"nc -N {link.address} {PORT}"
        else:
            sink = " ".join(link.ssh_argv) + f" 'tar -x -f - -C {dst}'"
        start = time.perf_counter()
        ends.append(subprocess.Popen(wrap(link.donor_ns, f"tar -c -f - {_excludes()} -C {src} . | "
                                          f"{sink}"), start_new_session=True))
        if any(end.wait() for end in reversed(ends)):
            raise RuntimeError(f"a raw end failed: {[end.returncode for end in ends]}")
        return time.perf_counter() - start
    finally:  # interrupted: no end outlives the run (nor keeps a namespace alive)
        for end in ends:
            if end.poll() is None:
                os.killpg(end.pid, signal.SIGKILL)
                end.wait()


def resync_copy(sandbox: Sandbox, work: Path, link: Link, method: str) -> tuple[float, float, int]:
    """The real copy step (CopyDatadir), run by the executor as `resync run` runs it; its ends
    in the link's namespaces. -> (the ends' seconds, the step's seconds, tar bytes)."""
    import yaml

    from resync.model.keys import COPY_BYTES, COPY_SECONDS, OLD_DATADIR
    from resync.model.runbook import load_runbook
    from resync.plan.build import assumed_facts, build_plan
    from resync.run.journal import Journal
    from resync.run.runner import executor_for
    from resync.steps.copy.pipeline import CopyDatadir

    hosts = sandbox.runbook_hosts()
    hosts["recipient"]["address"] = link.address  # where the relay listens (MySQL: mysql.host)
    hosts["donor"]["address"] = link.donor_address  # the sender's source, the receiver's peer
    copy: dict[str, Any] = {"port": PORT}
    if method == "ssh":
        copy.update(method="ssh", ssh={"target": link.ssh_argv[-1], "options": link.ssh_argv[5:-1]})
    doc = {"version": 1, "name": "bench", "hosts": hosts, "donor": "donor",
           "recipient": "recipient", "primary_after": "recipient",
           "replication": {"user": "repl", "password_env": "BENCH_UNUSED"}, "copy": copy}
    runbook = work / "bench.yaml"
    runbook.write_text(yaml.safe_dump(doc))
    loaded = load_runbook(runbook)
    plan = build_plan(loaded, assumed_facts(loaded, {}))
    step = next(s for s in plan.steps if isinstance(s, CopyDatadir))
    step = CopyDatadir(replace(step.spec, digest=link.digest), stall_timeout=step.stall_timeout,
                       listen_timeout=step.listen_timeout)
    journal_path = work / f"journal-{time.monotonic_ns()}.json"
    journal = Journal.create(journal_path, run_id=f"bench-{os.getpid()}",
                             runbook_path=str(runbook),
                             runbook_sha256=loaded.sha256, steps=[(step.key, step.title)])
    for key, value in plan.initial_values(f"bench-{os.getpid()}").items():  # as `resync run` does
        journal.capture(key, value)
    Path(str(journal.data.captured[str(OLD_DATADIR)])).mkdir(exist_ok=True)  # "the kept old one"
    exe = executor_for(loaded, journal)
    namespaces = {"donor": link.donor_ns, "recipient": link.recipient_ns}
    exe.hosts = lambda name: NetnsHost(name, namespaces[name])
    empty(sandbox["recipient"].datadir)
    start = time.perf_counter()
    try:
        exe.begin(step.key)
        exe.run(step.plan())
    finally:
        exe.close()
    elapsed = time.perf_counter() - start
    captured = journal.data.captured
    journal_path.unlink()
    return float(str(captured[str(COPY_SECONDS)])), elapsed, int(str(captured[str(COPY_BYTES)]))


# -- the run ---------------------------------------------------------------------------------------------

def interrupt(signum: int, frame: object) -> None:
    """SIGTERM as Ctrl-C: the finally paths clean up either way."""
    raise KeyboardInterrupt


@dataclass
class Figures:
    seconds: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    step_seconds: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    nbytes: int = 0

    def add(self, link: str, kind: str, seconds: float, step: float | None = None) -> None:
        self.seconds.setdefault((link, kind), []).append(seconds)
        if step is not None:
            self.step_seconds.setdefault((link, kind), []).append(step)

    def median(self, link: str, kind: str) -> float:
        return statistics.median(self.seconds[(link, kind)])

    def table(self, links: list[str], methods: list[str]) -> Table:
        table = Table(title=f"copy of a {self.nbytes / 1e9:.2f} GB tar stream: medians "
                            f"of {min(len(v) for v in self.seconds.values())} runs")
        for column in ("link", "method", "raw s", "raw MB/s", "resync s", "resync MB/s",
                       "step s", "resync/raw"):
            table.add_column(column, justify="left" if column in ("link", "method") else "right")
        for link in links:
            for method in methods:
                raw, ours = (self.median(link, kind) for kind in KINDS[method])
                steps = self.step_seconds.get((link, KINDS[method][1]))
                table.add_row(link, method, f"{raw:.2f}", f"{self.nbytes / raw / 1e6:.0f}",
                              f"{ours:.2f}", f"{self.nbytes / ours / 1e6:.0f}",
                              f"{statistics.median(steps):.2f}" if steps else "-",
                              f"{raw / ours:.2f}")
        return table


def run_link(link: Link, methods: list[str], runs: int, sandbox: Sandbox, work: Path,
             figures: Figures, console: Console) -> None:
    src, dst = sandbox["donor"].datadir, sandbox["recipient"].datadir
    for i in range(runs):
        for method in methods:
            raw, ours = KINDS[method]
            figures.add(link.name, raw, raw_copy(link, src, dst, method))
            ends, step, figures.nbytes = resync_copy(sandbox, work, link, method)
            figures.add(link.name, ours, ends, step)
        console.print(f"{link.name} run {i + 1}: " + "  ".join(
            f"{kind} {figures.nbytes / figures.seconds[(link.name, kind)][-1] / 1e6:.0f}"
            for method in methods for kind in KINDS[method]) + " MB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reuse", type=Path, help="keep/reuse the generated datadir here")
    parser.add_argument("--links", default="loopback,4gbit,1gbit")
    parser.add_argument("--methods", default="stream,ssh")
    parser.add_argument("--digest", default="crc32", help="resync stream's checksum: crc32|sha256")
    args = parser.parse_args()
    links, methods = args.links.split(","), args.methods.split(",")
    if os.geteuid() != 0:
        sys.exit("copy_bench needs root (mariadbd runs as mysql; network namespaces)")
    console = Console(width=max(100, shutil.get_terminal_size().columns))
    os.environ["PATH"] = HOST_PATH
    os.environ.setdefault("BENCH_UNUSED", "x")
    work = args.reuse or Path(tempfile.mkdtemp(prefix="resync-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    existing = (work / "sandbox" / "donor" / "data").is_dir()
    sandbox = Sandbox(work / "sandbox", names=("donor", "recipient")) if existing else None
    if sandbox is None:
        with console.status(f"building a {args.size_gb} GB datadir"):
            sandbox = build_datadir(work, args.size_gb)
    os.environ.update(sandbox.env())
    keys = make_keys(work / "keys")
    (keys / "known_hosts").write_text("")
    kinds = [k for m in methods for k in KINDS[m]]
    figures = Figures()
    netns = Namespaces(keys)
    loop_sshd: subprocess.Popen[bytes] | None = None
    console.print(f"datadir {sandbox['donor'].datadir}: {du(sandbox['donor'].datadir) / 1e9:.2f} GB"
                  f" on disk; {args.runs} alternating runs of {', '.join(kinds)} per link")
    signal.signal(signal.SIGTERM, interrupt)
    try:
        loop_port = free_port()
        if "loopback" in links and "ssh" in methods:
            loop_sshd = start_sshd(keys, None, "127.0.0.1", loop_port)
        if any(LINKS[name] for name in links):
            netns.open()
        for name in links:
            if rate := LINKS[name]:
                netns.shape(rate)
                link = Link(name, netns.a, netns.b, "10.233.0.2", "10.233.0.1",
                            ssh_argv(keys, "10.233.0.2", SSHD_PORT), args.digest)
            else:
                link = Link(name, ssh_argv=ssh_argv(keys, "127.0.0.1", loop_port),
                            digest=args.digest)
            run_link(link, methods, args.runs, sandbox, work, figures, console)
    finally:
        if loop_sshd is not None:
            loop_sshd.terminate()
        netns.close()
        if args.reuse is None:
            sandbox.destroy()
            shutil.rmtree(work, ignore_errors=True)
    console.print(figures.table(links, methods))
    targets: dict[tuple[str, str], float] = {("loopback", "stream"): 0.85}
    for name in links:
        for method in methods:
            target = targets.get((name, method), 0.95 if LINKS[name] else 0.0)
            raw, ours = KINDS[method]
            ratio = figures.median(name, raw) / figures.median(name, ours)
            verdict = ("no target" if not target else
                       f"target {target:.2f}: {'met' if ratio >= target else 'MISSED'}")
            console.print(f"{name:8s} {ours} / {raw} throughput: {ratio:.2f} ({verdict})")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port

if __name__ == "__main__":
    main()
