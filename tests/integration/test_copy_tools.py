"""The stream copy step for real on this machine: a directory through the relay on each end,
plain, compressed, rate-limited, checksummed with CRC-32 or SHA-256; both ends' reports agree."""

from __future__ import annotations

import filecmp
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from resync.model.keys import COPY_BYTES, OLD_DATADIR, RUN_ID
from resync.model.runbook import load_runbook
from resync.plan.build import assumed_facts, build_plan
from resync.run.executor import Executor
from resync.run.journal import Journal
from resync.run.runner import executor_for
from resync.steps.copy.pipeline import CopyDatadir

PORT = 17600 + os.getpid() % 90


def copy_step(tmp_path: Path) -> tuple[CopyDatadir, Executor, Path, Path]:
    src, dst = tmp_path / "donor", tmp_path / "recipient"
    (src / "db").mkdir(parents=True)
    dst.mkdir()
    (src / "ibdata1").write_bytes(os.urandom(3_000_000))
    (src / "db" / "t.ibd").write_bytes(os.urandom(1_000_000))
    (src / "mysql-bin.000001").write_bytes(b"binlog: never copied")
    host = {"address": "127.0.0.1", "local": True,
            "mysql": {"port": 1, "user": "nobody", "password_env": "COPY_TOOLS_UNUSED"},
            "owner": "root:root", "service": {"start": "true", "stop": "true"}}
    doc = {"version": 1, "name": "tools", "donor": "a", "recipient": "b", "primary_after": "b",
           "hosts": {"a": {**host, "datadir": str(src)},
                     "b": {**host, "datadir": str(dst), "mysql": {**host["mysql"], "port": 2}}},
           "replication": {"user": "repl", "password_env": "COPY_TOOLS_UNUSED"},
           "copy": {"port": PORT, "stall_timeout": 10}}
    (tmp_path / "rb.yaml").write_text(yaml.safe_dump(doc))
    loaded = load_runbook(tmp_path / "rb.yaml")
    step = next(s for s in build_plan(loaded, assumed_facts(loaded, {})).steps
                if isinstance(s, CopyDatadir))
    journal = Journal.create(tmp_path / "j.json", run_id="tools", runbook_path="rb.yaml",
                             runbook_sha256=loaded.sha256, steps=[(step.key, step.title)])
    (tmp_path / "kept").mkdir()
    journal.capture(str(OLD_DATADIR), str(tmp_path / "kept"))
    journal.capture(str(RUN_ID), "tools")
    return step, executor_for(loaded, journal), src, dst


@pytest.mark.parametrize("overrides", [
    {}, {"compress": "zstd"}, {"compress": "lz4"}, {"digest": "sha256"},
    {"rate_limit_mb_per_s": 20.0},
], ids=["plain", "zstd", "lz4", "sha256", "pv"])
def test_stream_copy_through_the_relay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       overrides: dict[str, object]) -> None:
    for tool in ("python3", "zstd", "lz4", "pv"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (apt-get install python3 zstd lz4 pv)")
    monkeypatch.setenv("COPY_TOOLS_UNUSED", "x")
    step, exe, src, dst = copy_step(tmp_path)
    step = CopyDatadir(replace(step.spec, **overrides),  # type: ignore[arg-type]
                       stall_timeout=10, listen_timeout=10)
    try:
        exe.begin(step.key)
        exe.run(step.plan())
    finally:
        exe.close()
    assert filecmp.cmp(src / "ibdata1", dst / "ibdata1", shallow=False)
    assert filecmp.cmp(src / "db" / "t.ibd", dst / "db" / "t.ibd", shallow=False)
    assert not (dst / "mysql-bin.000001").exists(), "binary logs are excluded"
    nbytes = int(str(exe.captured[str(COPY_BYTES)]))
    assert nbytes > 4_000_000
    sent, received = (str(exe.captured[k]) for k in ("copy.sent", "copy.received"))
    assert sent == received
    digest = str(overrides.get("digest", "crc32"))
    tar, wire, check = sent.split()
    assert tar == f"tar={nbytes}" and check.startswith(f"{digest}=")
    if "compress" not in overrides:
        assert wire == f"wire={nbytes}", "the relay carried tar's bytes as they were"
