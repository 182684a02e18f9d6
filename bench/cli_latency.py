"""Wall time of `resync --help` and `resync plan` (median of 10 runs each).

Usage: .venv/bin/python bench/cli_latency.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESYNC = [sys.executable, "-m", "resync"]
RUNS = 10


def median_seconds(argv: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    baseline = median_seconds([sys.executable, "-c", "pass"])
    for label, args in (("resync --help", ["--help"]),
                        ("resync plan (text)", ["plan", "runbooks/rebuild-old-primary.yaml"]),
                        ("resync plan (json)", ["plan", "runbooks/rebuild-old-primary.yaml",
                                                "--format", "json"])):
        t = median_seconds(RESYNC + args)
        print(f"{label:24s} median {t * 1000:7.1f} ms  ({t / baseline:4.1f}x bare python start "
              f"{baseline * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
