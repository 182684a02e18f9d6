"""The benchmarks keep working end to end at a tiny size, one round (no timing is asserted):
their output has a number in every column and the checks they make (every acknowledged write on
both servers, the verify's tables equal) passed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_local_sandbox

from resync.testing.sandbox import LOOP_TOOLS

ROOT = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"\d+(\.\d+)?")


def require_loop_volumes(*tools: str) -> None:
    require_local_sandbox()
    if missing := [t for t in (*LOOP_TOOLS, *tools) if shutil.which(t) is None]:
        pytest.skip(f"the bench's loop-volume pair needs {', '.join(missing)}")


def bench(*argv: str) -> str:
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=600,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_copy_bench_runs_end_to_end(sandbox_root: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "copy_bench.py"), "--size-gb",
                           "0.01", "--runs", "1", "--reuse", str(sandbox_root / "bench")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for label in ("raw tar|nc", "resync stream", "raw tar|ssh", "resync ssh"):
        assert label in proc.stdout
    assert "resync stream / raw tar|nc throughput" in proc.stdout


def test_downtime_bench_hand_procedure_against_resync_stream() -> None:
    require_loop_volumes("nc", "tar", "ss")
    out = bench("bench/downtime.py", "--size-mb", "20", "--runs", "1", "--methods",
                "hand,stream", "--markdown")
    table = [line.strip("|").split("|") for line in out.splitlines()
             if line.startswith(("| hand procedure", "| resync stream"))]
    assert [row[0].strip() for row in table] == ["hand procedure (seed)", "resync stream"], out
    for row in table:
        cells = [c.strip() for c in row]
        # write-downtime, ratio, donor lock, copy MB/s, write_downtime and minus-copy figures
        assert all(NUMBER.fullmatch(c) for c in cells[1:7]), cells
        assert cells[7] == "1/1", f"acknowledged writes missing on a server: {cells}"
    assert table[0][2].strip() == "1.00"  # the baseline's own ratio
    assert "FAILURE" not in out


def test_verify_stall_bench_runs_end_to_end() -> None:
    require_loop_volumes()
    out = bench("bench/verify_stall.py", "--size-mb", "20", "--runs", "1")
    line = next(ln for ln in out.splitlines() if ln.startswith("round 1 verify"))
    figures = re.fullmatch(r"round 1 verify: longest stall InnoDB (\S+) s, MyISAM (\S+) s, "
                           r"longest lock (\S+) s, verify (\S+) s \((\S+) MB/s\), wall (\S+) s",
                           line.strip())
    assert figures is not None, line
    assert all(NUMBER.fullmatch(value) for value in figures.groups()), line
    assert "FAILURE" not in out
    assert re.search(r"longest stall of any writer in any verify run: \d+\.\d+ s", out), out
