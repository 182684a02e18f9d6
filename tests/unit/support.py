"""Helpers shared by the unit tests: a runbook that must not load, the line a text holds, and the
command line run in a fresh interpreter to see what it imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from resync.model.errors import RunbookError
from resync.model.runbook import load_runbook


def runbook_error(path: Path) -> RunbookError:
    """The error of loading the runbook at `path`: bad input (exit 2), naming that file."""
    with pytest.raises(RunbookError) as info:
        load_runbook(path)
    assert info.value.exit_code == 2
    assert info.value.path == str(path)
    return info.value


def line_no(text: str, needle: str) -> int:
    """The number of the one line of `text` that contains `needle`."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"expected exactly one line containing {needle!r}, got {hits}"
    return hits[0]


_IMPORT_PROBE = """
import sys
MODULES = {modules!r}
sys.argv = ["resync", *sys.argv[1:]]
from resync.cli.commands import main
try:
    main()
except SystemExit as exc:
    code = exc.code
print()
print("RESULT", code, *(m in sys.modules for m in MODULES))
"""


def import_probe(args: list[str], modules: tuple[str, ...], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`resync ARGS` in a fresh interpreter; its last line of output is `RESULT <exit code>`
    followed by True or False for each of `modules`: whether the command imported it."""
    return subprocess.run([sys.executable, "-c", _IMPORT_PROBE.format(modules=modules), *args],
                          capture_output=True, text=True, timeout=60, cwd=cwd)
