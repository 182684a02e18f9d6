"""`resync demo`: a local MariaDB pair, broken and resynced before your eyes.

The story is the seed's: db1 is the primary, db2 its replica. db1 crashes and its tables are
damaged; the application fails over to db2 and keeps writing. resync rebuilds db1 from db2,
makes db1 the primary again and points db2 at it — with the same code path as `resync run`.

With `--with-web`, a real HAProxy serves a tiny web application on 127.0.0.1: the runbook gets a
`maintenance:` section (an HAProxy map entry toggled over the admin socket), and a thread GETs
the site once a second during the run, so that the page is seen going on and off around it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from resync.cli.render import render_text
from resync.model.keys import StepId, StepKind
from resync.model.runbook import load_runbook
from resync.run.journal import Journal
from resync.run.runner import detected_plan, start_run
from resync.run.waiting import wait_until
from resync.testing.sandbox import REPL_PASSWORD_ENV, REPL_USER, Sandbox
from resync.testing.web import (
    MARKER,
    HAProxy,
    WebTierError,
    get,
    install_hint,
    missing_tools,
    running_app,
    running_haproxy,
    web_root,
)

ROWS_PER_MB = 5000  # measured: 2.97M rows of shop.orders copied as 592 MB
COPY_PORT = 17878

_SCHEMA = """
CREATE DATABASE shop;
USE shop;
CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, email VARCHAR(128) NOT NULL,
  country CHAR(2) NOT NULL) ENGINE=InnoDB;
CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT NOT NULL, status VARCHAR(12) NOT NULL,
  amount DECIMAL(10,2) NOT NULL, created_at DATETIME NOT NULL, note VARCHAR(200),
  KEY (customer_id), KEY (created_at)) ENGINE=InnoDB;
CREATE TABLE audit_log (id INT PRIMARY KEY, event VARCHAR(200) NOT NULL) ENGINE=MyISAM;
INSERT INTO customers SELECT seq, CONCAT('customer ', seq), CONCAT('c', seq, '@example.com'),
  ELT(1 + seq % 5, 'DE', 'FR', 'US', 'JP', 'BR') FROM seq_1_to_50000 AS s;
INSERT INTO orders SELECT seq, 1 + seq % 50000, ELT(1 + seq % 4, 'new', 'paid', 'shipped', 'returned'),
  (seq % 10000) / 100, '2026-01-01' + INTERVAL seq MINUTE, REPEAT(MD5(seq), 2)
  FROM seq_1_to_{rows} AS s;
INSERT INTO audit_log SELECT seq, CONCAT('event ', seq) FROM seq_1_to_20000 AS s;
"""

_FAILOVER = """
STOP SLAVE;
INSERT INTO shop.orders VALUES (2000000001, 42, 'new', 19.99, NOW(), 'written on db2 after the failover');
UPDATE shop.customers SET email = 'moved@example.com' WHERE id = 7;
"""

_DAMAGE = """
SET SESSION sql_log_bin = 0;
DELETE FROM shop.orders WHERE id % 97 = 0;
FLUSH TABLES shop.audit_log;
"""


def _counts(sandbox: Sandbox) -> Table:
    table = Table(title="row counts")
    table.add_column("table")
    for s in sandbox:
        table.add_column(s.name, justify="right")
    for name in ("shop.customers", "shop.orders", "shop.audit_log"):
        cells = []
        for s in sandbox:
            try:
                cells.append(s.query(f"SELECT COUNT(*) AS n FROM {name}")[0]["n"])
            except Exception as exc:  # a damaged table is part of the story
                cells.append(f"[red]{str(exc).splitlines()[-1][:40]}[/red]")
        table.add_row(name, *cells)
    return table


def _write_runbook(sandbox: Sandbox, where: Path, lb: HAProxy | None = None) -> Path:
    doc: dict[str, Any] = {
        "version": 1, "name": "demo-rebuild-db1-from-db2", "hosts": sandbox.runbook_hosts(),
        "donor": "db2", "recipient": "db1", "primary_after": "db1",
        "replication": {"user": REPL_USER, "password_env": REPL_PASSWORD_ENV, "mode": "auto"},
        "copy": {"method": "stream", "port": COPY_PORT},
    }
    if lb is not None:  # on this machine (no `on:`): the map entry over HAProxy's admin socket
        page = lb.url(lb.page_port)
        doc["maintenance"] = {
            "kind": "haproxy_map", "socket": str(lb.socket), "map": str(lb.map), "key": "maint",
            "probe": {"url": page, "expect_status": 503, "expect_text": MARKER,
                      "health_url": lb.url(lb.page_port, "/health")}}
    path = where / "runbook.yaml"
    path.write_text("# written by `resync demo`: the sandbox pair it started\n" + yaml.safe_dump(doc))
    return path


def run_demo(console: Console, *, yes: bool, size_mb: int, workdir: Path | None,
             with_web: bool = False) -> None:
    if with_web and (missing := missing_tools("haproxy", "socat")):
        raise WebTierError(f"--with-web needs HAProxy: {install_hint(missing)}")
    with ExitStack() as stack:
        lb = stack.enter_context(_web_tier(console)) if with_web else None
        _run_demo(console, yes=yes, size_mb=size_mb, workdir=workdir, lb=lb)


def _run_demo(console: Console, *, yes: bool, size_mb: int, workdir: Path | None,
              lb: HAProxy | None) -> None:
    started = time.monotonic()
    keep = Path(f"resync-demo-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}").absolute()
    keep.mkdir(parents=True)
    root = workdir or Path(tempfile.mkdtemp(prefix="resync-demo-"))
    root.mkdir(parents=True, exist_ok=True)  # --dir may name a directory yet to be made
    root.chmod(0o755)  # mariadbd runs as user mysql and must reach its datadir
    sandbox = Sandbox(root / "sandbox")
    try:
        with console.status("starting two mariadbd servers (db1 primary, db2 replica)"):
            sandbox.create()
            os.environ.update(sandbox.env())
            sandbox.setup_replication("db1", "db2")
        console.print(f"[green]✓[/green] db1 on 127.0.0.1:{sandbox['db1'].port}, "
                      f"db2 on 127.0.0.1:{sandbox['db2'].port}, replicating")

        rows = max(1000, size_mb * ROWS_PER_MB)
        with console.status(f"loading ~{size_mb} MB into db1 ({rows:,} orders) and replicating it"):
            sandbox["db1"].sql(_SCHEMA.format(rows=rows), timeout=900)
            wait_until(lambda: sandbox["db2"].query("SHOW SLAVE STATUS")[0]["Seconds_Behind_Master"]
                       == "0" and _caught_up(sandbox), what="db2 to catch up", timeout=900,
                       interval=0.5)
        console.print(_counts(sandbox))

        console.print(Panel("db1 crashes: rows lost, a MyISAM table file truncated.\n"
                            "The application fails over to db2, which stops replicating and "
                            "takes writes.", title="the incident", border_style="red"))
        sandbox["db2"].sql(_FAILOVER)
        sandbox["db1"].sql(_DAMAGE)
        os.truncate(sandbox["db1"].datadir / "shop" / "audit_log.MYD", 4096)
        sandbox["db1"].sql("FLUSH LOCAL TABLES shop.audit_log;")  # LOCAL: not an errant GTID
        console.print(_counts(sandbox))

        runbook = _write_runbook(sandbox, keep, lb)
        loaded = load_runbook(runbook)
        console.print(Panel(f"runbook: {runbook}\nthe plan (what `resync plan` prints):",
                            title="resync", border_style="blue"))
        plan = detected_plan(loaded)
        render_text(plan, console)

        watch = SiteWatch(console, lb.url(lb.page_port), every_second=yes) if lb else None
        with watch or nullcontext():
            journal = start_run(loaded, console, yes=yes, journal_path=keep / "journal.json",
                                plan=plan)
        if watch is not None:
            watch.report(journal)

        sandbox["db1"].sql("INSERT INTO shop.orders VALUES (2000000002, 7, 'new', 5.00, NOW(), "
                           "'written on db1 after the resync');")
        wait_until(lambda: sandbox["db2"].query(
            "SELECT COUNT(*) AS n FROM shop.orders WHERE id = 2000000002")[0]["n"] == "1",
            what="db1's new write to reach db2", timeout=30)
        console.print(_counts(sandbox))
        console.print(f"[green]✓[/green] db1 is the primary again and db2 replicates from it; "
                      f"a row written on db1 arrived on db2.\n"
                      f"journal: {journal.path}\nold db1 datadir was kept at "
                      f"{journal.data.captured.get('recipient.old_datadir')} (removed with the "
                      f"sandbox)\ndemo took {time.monotonic() - started:.1f}s")
    finally:
        with console.status("stopping the servers"):
            sandbox.destroy()
            if workdir is None:
                shutil.rmtree(root, ignore_errors=True)


def _caught_up(sandbox: Sandbox) -> bool:
    primary = sandbox["db1"].query("SELECT @@GLOBAL.gtid_binlog_pos AS p")[0]["p"]
    replica = sandbox["db2"].query("SELECT @@GLOBAL.gtid_slave_pos AS p")[0]["p"]
    return bool(primary == replica)


@contextmanager
def _web_tier(console: Console) -> Iterator[HAProxy]:
    """The tiny application behind HAProxy's `page` frontend, both stopped on the way out."""
    with ExitStack() as stack:
        with console.status("starting a tiny web application behind HAProxy"):
            root = stack.enter_context(web_root())
            app = stack.enter_context(running_app())
            lb = stack.enter_context(running_haproxy(root, app))
        console.print(f"[green]✓[/green] web: HAProxy on {lb.url(lb.page_port)} in front of the "
                      f"application on {app.url}; the maintenance page is on while the map "
                      f"{lb.map} holds the key maint (admin socket {lb.socket})")
        yield lb


class SiteWatch:
    """GETs the site once a second from a thread and prints what it answers, one line a second
    (with `every_second` false, only when the answer changes: the operator is being asked)."""

    def __init__(self, console: Console, url: str, *, every_second: bool) -> None:
        self.console, self.url, self.every_second = console, url, every_second
        self.samples: list[tuple[float, int | None, bool]] = []  # (when, status, page seen)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="resync-demo-web", daemon=True)

    def __enter__(self) -> SiteWatch:
        if not self.every_second:
            self.console.print(f"web: {self.url} is watched; a line when its answer changes")
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:  # one more answer, asked after the run: the site as the run left it
            ended, deadline = time.monotonic(), time.monotonic() + 5
            while (self._thread.is_alive() and time.monotonic() < deadline
                   and not any(when >= ended for when, _, _ in self.samples)):
                time.sleep(0.05)
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        due, last = time.monotonic(), ""
        while not self._stop.is_set():
            when = time.monotonic()
            status, body = get(self.url, timeout=0.9)
            page = status == 503 and MARKER in body
            self.samples.append((when, status, page))
            line = f"web: {status or 'no answer'}{' maintenance' if page else ''}"
            if self.every_second or line != last:
                style = "green" if status == 200 else "yellow" if page else "red"
                self.console.print(Text(line, style=style))
            last, due = line, due + 1.0
            self._stop.wait(max(0.0, due - time.monotonic()))

    def report(self, journal: Journal) -> None:
        """Seconds the page was on (from the journal, and as seen), and the site's answer now."""
        seen = sum(1 for _, _, page in self.samples if page)
        on, off = journal.step(str(StepId(StepKind.MAINTENANCE_ON))), journal.step(
            str(StepId(StepKind.MAINTENANCE_OFF)))
        took = (f"{off.finished_at - on.finished_at:.1f} s" if on.finished_at and off.finished_at
                else "?")
        self.console.print(f"web: the maintenance page was on for {took} (from the end of step "
                           f"maintenance-on to the end of maintenance-off), seen in {seen} of "
                           f"{len(self.samples)} GETs (one a second)")
        status, body = get(self.url)
        if status == 200:
            self.console.print(f"[green]✓[/green] web: {self.url} answers 200 again: "
                               f"{body.strip()!r}")
        else:
            self.console.print(f"[bold red]web: {self.url} answers {status or 'nothing'}[/]")
