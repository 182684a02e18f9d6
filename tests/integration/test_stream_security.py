"""Only the donor feeds the stream, and the recipient keeps its own keys: end to end on a sandbox
pair whose servers stand for two hosts (db1 at 127.0.0.2, db2 at 127.0.0.3; Linux routes all of
127/8 to lo). A stray client at 127.0.0.1 keeps connecting to the copy's port while the run goes:
it is turned away every time and the copy succeeds. The one-time tokens are read from their
files as they appear: none is ever in a command line, the journal or the plan."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aws import aws_fixture, moto_endpoint_fixture  # noqa: F401  (fixtures, by name)
from ebs_peer import EbsWorld, ebs_world_fixture  # noqa: F401
from helpers import (
    COPY_PORT,
    journal_of,
    load_app_data,
    resync,
    sql,
    verify_ok,
    write_runbook,
)
from test_run_ebs import ebs_runbook, fstab_for, swap_pair_fixture  # noqa: F401

from resync.steps.copy.relay import TOKEN_DIR
from resync.testing.sandbox import Sandbox

DONOR, RECIPIENT, STRAY = "127.0.0.2", "127.0.0.3", "127.0.0.1"
SITE_FILE = "site-cert.pem"  # the runbook's copy.keep_on_recipient


@pytest.fixture
def pair(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    sandbox = make_sandbox(address=[DONOR, RECIPIENT])
    sandbox.setup_replication("db1", "db2")
    return sandbox


class StrayClient:
    """Connects to the recipient's copy port from 127.0.0.1 again and again, offering a forged
    greeting and data; counts the connections the receiver took and how each ended."""

    def __init__(self) -> None:
        self.connected = self.turned_away = 0
        self.answered: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock = socket.create_connection((RECIPIENT, COPY_PORT), timeout=2,
                                                source_address=(STRAY, 0))
            except OSError:  # nothing listens (yet, or any more)
                time.sleep(0.01)
                continue
            self.connected += 1
            try:
                sock.sendall(b"resync-relay 2\n" + b"f" * 64 + b"\nforged datadir")
                answer = sock.recv(100)
            except OSError:  # reset: turned away
                answer = b""
            finally:
                sock.close()
            self.turned_away += answer == b""
            if answer:
                self.answered.append(answer)

    def __enter__(self) -> StrayClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class TokenWatch:
    """Reads every one-time token as its file appears (as root), and samples every process's
    command line meanwhile."""

    def __init__(self) -> None:
        self.tokens: set[bytes] = set()
        self.command_lines: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for path in Path(TOKEN_DIR).glob("*"):
                with contextlib.suppress(OSError):  # used up meanwhile
                    self.tokens.add(path.read_bytes())
            for proc in Path("/proc").iterdir():
                try:
                    self.command_lines.add((proc / "cmdline").read_bytes())
                except OSError:
                    continue
            time.sleep(0.002)

    def __enter__(self) -> TokenWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def own_file(datadir: Path, name: str, content: str, mode: int) -> None:
    path = datadir / name
    path.write_text(content)
    shutil.chown(path, "mysql", "mysql")
    path.chmod(mode)


@pytest.fixture
def keys(pair: Sandbox) -> Iterator[dict[str, str]]:
    """Each server's own key files; the recipient (db2) has no ca.pem, the donor has one."""
    marks = {name: f"{name} {os.urandom(8).hex()}" for name in ("db1", "db2")}
    for name, mark in marks.items():
        datadir = pair[name].datadir
        own_file(datadir, "server-key.pem", f"server key of {mark}", 0o600)
        own_file(datadir, SITE_FILE, f"site certificate of {mark}", 0o640)
    own_file(pair["db1"].datadir, "ca.pem", f"CA of {marks['db1']}", 0o644)
    yield marks


@pytest.mark.parametrize("method", ["stream", "mariabackup"])
def test_a_stray_client_is_turned_away_and_the_recipient_keeps_its_keys(
        tmp_path: Path, pair: Sandbox, keys: dict[str, str], method: str) -> None:
    if method == "mariabackup" and shutil.which("mariabackup") is None:
        pytest.skip("mariabackup not installed (apt-get install mariadb-backup)")
    load_app_data(pair)
    recipient = pair["db2"].datadir
    before = (recipient / "server-key.pem").stat()
    runbook = write_runbook(tmp_path, pair, donor="db1", recipient="db2", primary_after="db1",
                            copy={"method": method, "keep_on_recipient": [SITE_FILE]})

    with TokenWatch() as watch, StrayClient() as stray:
        resync(tmp_path, "run", "--yes", str(runbook), check=True)

    # (a) the stray client got in nowhere, and the copy went through
    assert stray.connected > 0, "the stray client reached the listening relay"
    assert stray.answered == [] and stray.turned_away == stray.connected
    journal_path = journal_of(tmp_path)
    journal = json.loads(journal_path.read_text())
    rejected = str(journal["captured"]["copy.rejected_peers"])
    assert f"{STRAY}: not the donor's address ({DONOR})" in rejected
    assert sql(pair, "db2", "SELECT COUNT(*) AS n FROM app.orders") == [{"n": 2000}]
    verify_ok(tmp_path, runbook)

    # (b) the recipient's own files are there as they were; the donor's are not
    key = recipient / "server-key.pem"
    assert key.read_text() == f"server key of {keys['db2']}"
    after = key.stat()
    assert (stat.S_IMODE(after.st_mode), after.st_uid, after.st_gid) == (
        0o600, before.st_uid, before.st_gid)
    assert (recipient / SITE_FILE).read_text() == f"site certificate of {keys['db2']}"
    assert stat.S_IMODE((recipient / SITE_FILE).stat().st_mode) == 0o640
    assert not (recipient / "ca.pem").exists(), "it had none; the donor's was not copied"
    for path in recipient.rglob("*.pem"):
        assert keys["db1"] not in path.read_text(errors="replace"), path
    kept = str(journal["captured"]["copy.kept_on_recipient"]).split()
    assert sorted(kept) == ["server-key.pem", SITE_FILE]
    plan_text = resync(tmp_path, "plan", str(runbook)).stdout
    assert "kept on db2: its own ca.pem" in plan_text and SITE_FILE in plan_text

    # the tokens: seen on disk, in no command line, journal or plan; the journal has the hash
    digest = str(journal["captured"]["copy.token_sha256"])
    assert any(hashlib.sha256(t).hexdigest() == digest for t in watch.tokens), \
        "the copy's token was read from its file while the run went"
    text = journal_path.read_text() + plan_text
    for token in watch.tokens:
        assert not any(token in line for line in watch.command_lines)
        assert token.decode() not in text
    assert len(watch.command_lines) > 50


def test_ebs_swap_keeps_the_recipients_keys_from_its_old_volume(tmp_path: Path,
                                                               swap_pair: EbsWorld) -> None:
    """Mode swap: the new volume is the donor's filesystem. The donor's key files are deleted
    from it and the recipient's own, copied aside before its old volume went, put back."""
    world, pair = swap_pair, swap_pair.sandbox
    marks = {name: f"{name} {os.urandom(8).hex()}" for name in ("db1", "db2")}
    for name, mark in marks.items():
        own_file(pair[name].datadir, "server-key.pem", f"server key of {mark}", 0o600)
    own_file(pair["db1"].datadir, "ca-key.pem", f"CA key of {marks['db1']}", 0o600)
    load_app_data(pair)
    runbook = ebs_runbook(tmp_path, world, donor="db1", recipient="db2", primary_after="db1",
                          mode="swap", fstab=str(fstab_for(tmp_path, world, "db2")))

    resync(tmp_path, "run", "--yes", str(runbook), check=True)

    datadir = pair["db2"].datadir
    key = datadir / "server-key.pem"
    assert key.read_text() == f"server key of {marks['db2']}"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not (datadir / "ca-key.pem").exists(), "the donor's key went with the swap"
    journal = json.loads(journal_of(tmp_path).read_text())
    assert journal["captured"]["copy.kept_on_recipient"].split() == ["server-key.pem"]
    aside = Path(f"{journal['captured']['recipient.ebs.old.mount_target']}.resync-kept-"
                 f"{journal['run_id']}")
    assert not aside.exists(), "the copy aside is gone with the run's end"
