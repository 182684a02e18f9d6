"""Downtime estimate: datadir size over the measured (or declared) donor -> recipient bandwidth."""

from __future__ import annotations

from dataclasses import dataclass

# stop both servers, start both, point the replica: measured 7 s around a 592 MB copy here;
# a server with many dirty pages takes longer to shut down, so the allowance is generous
OVERHEAD_SECONDS = 20.0
PROBE_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True)
class Estimate:
    datadir_bytes: int
    bandwidth: float  # bytes/s of the copy transport
    bandwidth_source: str  # "probe" or "runbook"

    @property
    def copy_seconds(self) -> float:
        return self.datadir_bytes / self.bandwidth

    @property
    def write_downtime_seconds(self) -> float:
        return self.copy_seconds + OVERHEAD_SECONDS

    def describe(self) -> str:
        return (f"datadir {self.datadir_bytes / 1e9:.2f} GB at {self.bandwidth / 1e6:.0f} MB/s "
                f"({self.bandwidth_source}): copy ~{self.copy_seconds:.0f}s, write-downtime "
                f"~{self.write_downtime_seconds:.0f}s (copy + {OVERHEAD_SECONDS:g}s for stopping, "
                "starting and re-pointing; disk speed can make the copy slower than the link)")

    def as_values(self) -> dict[str, float | int | str]:
        return {"estimate.datadir_bytes": self.datadir_bytes,
                "estimate.bandwidth_bytes_per_second": round(self.bandwidth),
                "estimate.bandwidth_source": self.bandwidth_source,
                "estimate.copy_seconds": round(self.copy_seconds, 1),
                "estimate.write_downtime_seconds": round(self.write_downtime_seconds, 1)}
