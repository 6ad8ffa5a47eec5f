"""The gateway's own measurements per upstream since the canary last read them: each answer's
status and time, and each connection that could not be made.

The canary controller judges prod's share from these each interval. Recording is off unless a
canary runs (a bounded deque append per request when on), so direct and shadow mode pay nothing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ops.gateway.routing import UPSTREAMS, Upstream

# About ten minutes of 150 requests/s per upstream; older answers are dropped, never blocking.
WINDOW_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class Drained:
    """One upstream's answers over an interval."""

    statuses: list[int]
    seconds: list[float]
    connect_failures: int


class AnswerWindow:
    """(status, seconds) per upstream, appended by the proxy and drained by the canary."""

    def __init__(self, limit: int = WINDOW_LIMIT) -> None:
        self.active = False
        self._answers: dict[Upstream, deque[tuple[int, float]]] = {
            name: deque(maxlen=limit) for name in UPSTREAMS
        }
        self._connect_failures: dict[Upstream, int] = dict.fromkeys(UPSTREAMS, 0)

    def record(self, upstream: Upstream, status: int, seconds: float) -> None:
        if self.active:
            self._answers[upstream].append((status, seconds))

    def connect_failure(self, upstream: Upstream) -> None:
        if self.active:
            self._connect_failures[upstream] += 1

    def connect_failures(self, upstream: Upstream) -> int:
        """Connection failures since the last drain (read without draining)."""
        return self._connect_failures[upstream]

    def drain(self, upstream: Upstream) -> Drained:
        """Everything recorded for `upstream` since the last drain; the window starts afresh."""
        answers = self._answers[upstream]
        taken = [answers.popleft() for _ in range(len(answers))]
        failures, self._connect_failures[upstream] = self._connect_failures[upstream], 0
        return Drained([s for s, _ in taken], [t for _, t in taken], failures)

    def clear(self) -> None:
        for name in UPSTREAMS:
            self.drain(name)
