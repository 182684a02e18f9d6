"""The transport package stands alone: plain values in, no runbook schema, paramiko only for SSH."""

from __future__ import annotations

import subprocess
import sys

import pytest


def imported_after(modules: str) -> set[str]:
    """The modules a fresh interpreter has loaded after importing `modules` (comma-separated)."""
    code = f"import sys, {modules}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("modules", [
    "resync.transport.mysql, resync.transport.local",
    "resync.transport.ssh_config",
])
def test_transport_imports_neither_the_runbook_nor_paramiko(modules: str) -> None:
    loaded = imported_after(modules)
    assert "resync.model.runbook" not in loaded
    assert not {m for m in loaded if m == "paramiko" or m.startswith("paramiko.")}


def test_ssh_transport_needs_paramiko_but_not_the_runbook() -> None:
    loaded = imported_after("resync.transport.ssh")
    assert "paramiko" in loaded
    assert "resync.model.runbook" not in loaded
