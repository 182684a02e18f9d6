"""Shared fixtures of the integration suite: real servers, never mocks.

By default each test gets local mariadbd servers (resync.testing.sandbox; needs root and the Debian
packages, else the tests are skipped with what is missing). With RESYNC_TEST_TARGET=docker (or
RESYNC_TEST_DB1_PORT set) `sandbox_pair` describes an external pair instead, e.g. the one of
docker/compose.*.yaml: see docker/README.md for the variables.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sshd import sshd_server  # noqa: F401  (shared: the session's test sshd)

from resync.testing.sandbox import (
    ADMIN_USER,
    INSTALL_HINT,
    REPL_PASSWORD_ENV,
    SANDBOX_PASSWORD_ENV,
    Sandbox,
    missing_tools,
)

HERE = Path(__file__).parent
EXTERNAL_REQUIRED = (
    *(f"RESYNC_TEST_{n}_{k}" for n in ("DB1", "DB2") for k in ("PORT", "DATADIR", "START", "STOP")),
    "RESYNC_TEST_PASSWORD",
    "RESYNC_TEST_REPL_PASSWORD",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


@dataclass(frozen=True)
class ExternalPair:
    """db1 (primary) -> db2 (replica) already running elsewhere; same runbook_hosts() shape."""

    env: Mapping[str, str]
    names: tuple[str, ...] = ("db1", "db2")

    def runbook_hosts(self) -> dict[str, dict[str, Any]]:
        e, hosts = self.env, {}
        for name in self.names:
            p = f"RESYNC_TEST_{name.upper()}_"
            address = e.get(p + "HOST", "127.0.0.1")
            hosts[name] = {
                "address": address,
                "local": True,  # the datadirs are bind mounts on this machine
                "mysql": {"host": address, "port": int(e[p + "PORT"]),
                          "user": e.get("RESYNC_TEST_USER", ADMIN_USER),
                          "password_env": SANDBOX_PASSWORD_ENV},
                "datadir": e[p + "DATADIR"],
                "owner": e.get("RESYNC_TEST_OWNER", "999:999"),  # mysql in the official images
                "service": {"start": e[p + "START"], "stop": e[p + "STOP"]},
            }
        return hosts


def external_pair_from_env() -> ExternalPair | None:
    if os.environ.get("RESYNC_TEST_TARGET") != "docker" and "RESYNC_TEST_DB1_PORT" not in os.environ:
        return None
    missing = [v for v in EXTERNAL_REQUIRED if not os.environ.get(v)]
    if missing:
        pytest.fail(f"external test servers selected but not set: {' '.join(missing)} "
                    "(see docker/README.md)")
    return ExternalPair(dict(os.environ))


def require_local_sandbox() -> None:
    if missing := missing_tools():
        pytest.skip(f"{', '.join(missing)} not installed: {INSTALL_HINT}")
    if os.geteuid() != 0:
        pytest.skip("the mariadbd sandbox needs root (mariadbd runs as user mysql)")


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _new_root() -> Path:
    """A fresh sandbox root, deliberately NOT under tmp_path_factory: every pytest session that
    starts (another engineer's, a parallel CI job) resets /tmp/pytest-of-<user> to 0700, which
    locks user mysql out of the datadirs of a sandbox running in this session."""
    return Path(tempfile.mkdtemp(prefix="resync-sandbox-"))


@pytest.fixture
def sandbox_root() -> Iterator[Path]:
    """A new empty directory user mysql can reach, removed afterwards (skips if no sandbox)."""
    require_local_sandbox()
    root = _new_root()
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Sandbox]]:
    """A factory of created, running local sandboxes, all destroyed (by pid) after the test.

    Every sandbox of one test shares the passwords, exported in SANDBOX_PASSWORD_ENV and
    REPL_PASSWORD_ENV for the test's duration.
    """
    require_local_sandbox()
    made: list[Sandbox] = []
    passwords = {"admin_password": secrets.token_hex(12), "repl_password": secrets.token_hex(12)}

    def make(names: Sequence[str] = ("db1", "db2"), **kwargs: Any) -> Sandbox:
        sandbox = Sandbox(_new_root(), names, **{**passwords, **kwargs})
        made.append(sandbox)
        sandbox.create()
        for key, value in sandbox.env().items():
            monkeypatch.setenv(key, value)
        return sandbox

    # SIGTERM (a CI job cancelled or timed out) would kill pytest without teardown and leave the
    # servers running: make it an interruption like Ctrl-C while sandboxes exist.
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield make
    finally:
        try:
            errors = []
            for sandbox in reversed(made):
                try:
                    sandbox.destroy()
                except Exception as exc:  # destroy the others anyway
                    errors.append(exc)
            if errors:
                raise errors[0]
        finally:
            if previous == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, previous)


def _reset_external(pair: ExternalPair) -> None:
    """The external pair is shared by every test: drop the test schema on db1 (replicated) and
    wait until db2 has dropped it too, so that each test starts from the same state."""
    import time

    from helpers import sql

    sql(pair, "db1", "DROP DATABASE IF EXISTS app")
    deadline = time.monotonic() + 30
    while sql(pair, "db2", "SHOW DATABASES LIKE 'app'"):
        if time.monotonic() > deadline:
            pytest.fail("db2 did not replicate DROP DATABASE app within 30 s: is it replicating?")
        time.sleep(0.2)


@pytest.fixture
def sandbox_pair(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Sandbox | ExternalPair]:
    """db1 primary -> db2 replica (GTID), running; passwords exported for the test's duration."""
    external = external_pair_from_env()
    if external is not None:
        monkeypatch.setenv(SANDBOX_PASSWORD_ENV, external.env["RESYNC_TEST_PASSWORD"])
        monkeypatch.setenv(REPL_PASSWORD_ENV, external.env["RESYNC_TEST_REPL_PASSWORD"])
        _reset_external(external)
        yield external
        return
    make: Callable[..., Sandbox] = request.getfixturevalue("make_sandbox")
    sandbox = make()
    sandbox.setup_replication("db1", "db2")
    yield sandbox


@pytest.fixture(autouse=True)
def every_run_did_what_its_plan_said(tmp_path: Path) -> Iterator[None]:
    """After each test: every journal it left conforms to its plan (plan text == executed text,
    action for action, for every step that finished)."""
    yield
    from resync.run.conformance import mismatches
    from resync.run.journal import Journal

    journals = [p for p in tmp_path.rglob("*.json")
                if p.parent.name == "resync-journal" or p.name == "journal.json"]
    for path in journals:
        data = Journal.load(path).data
        done = [s.key for s in data.steps if s.state.value == "done"]
        assert mismatches(data) == [], f"{path}: the run did not do what its plan said"
        assert not done or data.plan is not None, f"{path}: a run without its plan"
