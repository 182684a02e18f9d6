"""A loaded sandbox pair built ONCE and cloned per run: loading gigabytes per run is too slow.

The template is a `Sandbox(loop_volumes=True)` pair (each server's directory an ext4 filesystem
on its own loop device): db1 primary -> db2 replica (GTID), the same bulk data on both (loaded on
each with sql_log_bin=0, so no gigabytes of binary and relay logs), then the application's schema
`app` created on db1 and replicated. Both servers are shut down cleanly, their volumes unmounted
and the two image files kept. A clone copies the images back (`cp --sparse=always`), attaches and
mounts them at the very paths the template had (my.cnf, start.sh and stop.sh name absolute paths)
and starts the servers: one clone at a time, on the template's ports, with its passwords (held in
the environment, where `Sandbox` reads them).

The data, `size_mb` MB (10^6 bytes) of table files per server: `app.bulk` (InnoDB, 90%),
`app.notes` (MyISAM, 10%: a non-transactional table, which the verify locks chunk by chunk) and
`app.ticks` (InnoDB, empty: the writer's table); all in `app`, where the application user may
write. The datadir holds ~130 MB more (system tablespace, redo and undo logs, `mysql`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from resync.testing import sandbox as sandbox_module
from resync.testing.sandbox import (
    APP_PASSWORD_ENV,
    REPL_PASSWORD_ENV,
    SANDBOX_PASSWORD_ENV,
    Sandbox,
    SandboxServer,
    mount_table,
)

BULK_ROW_BYTES = 168  # app.bulk's .ibd per row (MariaDB 10.11, measured here)
NOTES_ROW_BYTES = 108  # app.notes's .MYD per row
NOTES_SHARE = 0.1  # of the size, in app.notes
CHUNK = 250_000  # rows per INSERT ... SELECT
NAMES = ("db1", "db2")


def sh(*argv: str, timeout: float = 600) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)}: exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def image_size_mb(size_mb: int) -> int:
    """Room on each volume: the data, the recipient's copy of it beside the kept old one, logs."""
    return max(1024, 3 * size_mb + 768)


def load_bulk(server: SandboxServer, size_mb: int) -> None:
    """The same rows on every server (generated from seq), never binlogged. Loaded with a large
    buffer pool and relaxed flushing (runtime settings only: a restart forgets them)."""
    rows = max(1000, int(size_mb * 1e6 * (1 - NOTES_SHARE) / BULK_ROW_BYTES))
    notes = max(100, int(size_mb * 1e6 * NOTES_SHARE / NOTES_ROW_BYTES))
    server.sql("SET GLOBAL innodb_buffer_pool_size = 1073741824; "
               "SET GLOBAL innodb_flush_log_at_trx_commit = 0;")
    server.sql("SET SESSION sql_log_bin=0; CREATE DATABASE IF NOT EXISTS app; "
               "CREATE TABLE app.bulk (id INT PRIMARY KEY, a INT, b VARCHAR(64), c VARCHAR(200), "
               "KEY (a)) ENGINE=InnoDB; CREATE TABLE app.notes (id INT PRIMARY KEY, note "
               "VARCHAR(200)) ENGINE=MyISAM;")
    for start in range(0, rows, CHUNK):
        server.sql(f"SET SESSION sql_log_bin=0; USE app; INSERT INTO app.bulk SELECT seq, seq % 1000, "
                   f"MD5(seq), REPEAT(MD5(seq + 1), 2) FROM seq_{start + 1}_to_"
                   f"{min(rows, start + CHUNK)};", timeout=3600)
    server.sql(f"SET SESSION sql_log_bin=0; USE app; INSERT INTO app.notes SELECT seq, REPEAT(MD5(seq), 3) "
               f"FROM seq_1_to_{notes};", timeout=3600)
    server.sql("SET GLOBAL innodb_flush_log_at_trx_commit = 1;")


def passwords_in_environment() -> None:
    """The sandbox reads its passwords from the environment: the same ones for every clone."""
    for name in (SANDBOX_PASSWORD_ENV, REPL_PASSWORD_ENV, APP_PASSWORD_ENV):
        os.environ.setdefault(name, secrets.token_hex(12))


class PairTemplate:
    """Build once (`build`), then `clone()` per run; `remove()` deletes the images."""

    def __init__(self, work: Path, size_mb: int) -> None:
        self.work, self.size_mb = work, size_mb
        self.root = work / "pair"  # where every clone lives (the paths in its my.cnf)
        self.images = work / "template"
        self.port: int | None = None

    def build(self, say: Callable[[str], object] = print) -> None:
        passwords_in_environment()
        sandbox_module.LOOP_IMAGE_SIZE = f"{image_size_mb(self.size_mb)}M"
        pair = Sandbox(self.root, NAMES, loop_volumes=True)
        self.port = pair["db1"].port
        try:
            say(f"template: a pair on loop volumes, {self.size_mb} MB loaded on each server")
            pair.create()
            started = time.monotonic()
            with ThreadPoolExecutor(len(NAMES)) as pool:  # one server per core
                for done in [pool.submit(load_bulk, s, self.size_mb) for s in pair]:
                    done.result()
            pair.setup_replication("db1", "db2")
            pair["db1"].sql("CREATE TABLE app.ticks (n INT PRIMARY KEY, "
                            "at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB;")
            wait_for_table(pair["db2"], "app.ticks")
            say(f"template: loaded in {time.monotonic() - started:.0f} s")
            pair.stop_all()
            self.images.mkdir(exist_ok=True)
            for server in pair:
                detach(server)
                assert server.image is not None
                server.image.rename(self.images / server.image.name)
        finally:
            pair.destroy()

    def clone(self) -> Sandbox:
        """A fresh copy of the template pair, mounted where the template was, servers running."""
        assert self.port is not None, "build() first"
        pair = Sandbox(self.root, NAMES, base_port=self.port, loop_volumes=True)
        self.root.mkdir(mode=0o755)
        servers = list(pair.servers)
        try:
            for i, server in enumerate(servers):
                assert server.image is not None
                sh("cp", "--sparse=always", str(self.images / server.image.name),
                   str(server.image))
                device = sh("losetup", "-f", "--show", str(server.image)).strip()
                servers[i] = replace(server, loop_device=device)
                pair.servers = tuple(servers)  # recorded at once: destroy() detaches it
                server.base.mkdir(mode=0o755)
                sh("mount", device, str(server.base))
            os.sync()  # the images' writeback is over before the run is timed
            pair.start_all()
        except BaseException:
            pair.destroy()
            raise
        return pair

    def remove(self) -> None:
        shutil.rmtree(self.images, ignore_errors=True)


def wait_for_table(server: SandboxServer, table: str, timeout: float = 60) -> None:
    schema, name = table.split(".")
    deadline = time.monotonic() + timeout
    while not server.sql(f"SELECT 1 FROM information_schema.tables WHERE table_schema='{schema}' "
                         f"AND table_name='{name}';").strip():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name}: {table} not replicated in {timeout} s")
        time.sleep(0.1)


def detach(server: SandboxServer) -> None:
    """Unmount the server's volume and detach its loop device (the server is stopped)."""
    for mount in reversed([m for m in mount_table() if m.target == server.base]):
        sh("umount", str(mount.target))
    if server.loop_device:
        sh("losetup", "-d", server.loop_device)
