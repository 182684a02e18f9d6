"""The copy benchmark keeps working (a tiny datadir, one round; no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_copy_bench_runs_end_to_end(sandbox_root: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "copy_bench.py"), "--size-gb",
                           "0.01", "--runs", "1", "--reuse", str(sandbox_root / "bench")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for label in ("raw tar|nc", "resync stream", "raw tar|ssh", "resync ssh"):
        assert label in proc.stdout
    assert "resync stream / raw tar|nc throughput" in proc.stdout
