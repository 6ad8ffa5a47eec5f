"""What a drill returns: what it injected, what it observed, each promise checked, the figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Check:
    """One promise of the drill and whether it held, with what was measured."""

    promise: str
    held: bool
    measured: str


@dataclass(frozen=True, slots=True)
class DrillOptions:
    """What the operator may set: the soak's length and rate (None = 80% of the knee)."""

    minutes: float = 10.0
    rate: float | None = None


@dataclass
class DrillResult:
    name: str
    injected: str = ""
    observed: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""

    @property
    def passed(self) -> bool:
        return not self.error and bool(self.checks) and all(c.held for c in self.checks)

    def check(self, promise: str, held: bool, measured: str) -> bool:
        self.checks.append(Check(promise, held, measured))
        return held

    def document(self) -> dict[str, Any]:
        return {
            "drill": self.name,
            "passed": self.passed,
            "injected": self.injected,
            "observed": self.observed,
            "checks": [
                {"promise": c.promise, "held": c.held, "measured": c.measured} for c in self.checks
            ],
            "figures": self.figures,
            "seconds": round(self.seconds, 1),
            "error": self.error,
        }
