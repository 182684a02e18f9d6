"""Does a run fit the time left? The estimate, phase by phase, plus the margin, against the clock.

Two figures are checked, each with the window's margin added: the write-downtime (the phases in
which the application cannot write) and the whole run from here to its end (verify included:
the run ends inside the window or it overruns). The second holds the first, so it decides; both
are shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from resync.model.errors import GateRefused
from resync.window.zones import format_span


class WindowRefused(GateRefused):
    """Outside the window, or the estimate does not fit the time left: nothing was changed."""


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    downtime: bool  # the application cannot write during it


@dataclass(frozen=True)
class RunFigures:
    """The run ahead, phase by phase, and what the estimate was computed from."""

    phases: tuple[Phase, ...]
    datadir_bytes: int
    bandwidth: float | None  # bytes/s of the copy (None: the copy method's own assumed rates)
    bandwidth_source: str  # probe | runbook | assumed
    basis: str  # in words

    @property
    def write_downtime(self) -> float:
        return sum(p.seconds for p in self.phases if p.downtime)

    @property
    def total(self) -> float:
        return sum(p.seconds for p in self.phases)

    def describe(self) -> str:
        parts = ", ".join(f"{p.name.replace('_', ' ')} {format_span(p.seconds)}"
                          + (" (writes stopped)" if p.downtime else "") for p in self.phases)
        return f"{self.basis}; {parts}"

    def as_json(self) -> dict[str, object]:
        return {"datadir_bytes": self.datadir_bytes,
                "bandwidth_bytes_per_second": round(self.bandwidth) if self.bandwidth else None,
                "bandwidth_source": self.bandwidth_source, "basis": self.basis,
                "phases": {p.name: round(p.seconds, 1) for p in self.phases},
                "downtime_phases": [p.name for p in self.phases if p.downtime],
                "write_downtime_seconds": round(self.write_downtime, 1),
                "total_seconds": round(self.total, 1)}


@dataclass(frozen=True)
class Fit:
    figures: RunFigures
    margin: float  # 0.2 = 20%
    available: float  # seconds: the time left in the window (or its length, ahead of time)

    @property
    def needed_downtime(self) -> float:
        return self.figures.write_downtime * (1 + self.margin)

    @property
    def needed(self) -> float:
        """The whole run with the margin: what must fit."""
        return self.figures.total * (1 + self.margin)

    @property
    def fits(self) -> bool:
        return self.available > 0 and self.needed_downtime <= self.available \
            and self.needed <= self.available

    def describe(self) -> str:
        pct = f"{self.margin * 100:g}%"
        verdict = "fits" if self.fits else "DOES NOT FIT"
        return (f"{verdict}: the run needs {format_span(self.needed)} (estimate "
                f"{format_span(self.figures.total)} + {pct}; write-downtime "
                f"{format_span(self.figures.write_downtime)} + {pct} = "
                f"{format_span(self.needed_downtime)}) and {format_span(self.available)} "
                "are available")

    def as_json(self) -> dict[str, object]:
        return {"fits": self.fits, "margin": self.margin,
                "needed_seconds": round(self.needed, 1),
                "needed_write_downtime_seconds": round(self.needed_downtime, 1),
                "available_seconds": round(self.available, 1)}
