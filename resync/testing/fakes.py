"""Fakes for tests: a clock whose sleep() advances time at once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FakeClock:
    """A clock for tests: sleep() advances time instantly."""

    t: float = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
