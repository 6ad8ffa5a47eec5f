"""Issue 7 item 4: concurrent writers through the gateway across shadow → canary → promote →
Redis FLUSHALL → rollback → mock restarted → promote; every acknowledged write readable."""

from __future__ import annotations

import pytest

from tests.reliability.drills import broken, drilled

pytestmark = [pytest.mark.timeout(480), pytest.mark.drill]


def test_no_acknowledged_write_is_lost_across_the_cutover_and_its_faults() -> None:
    result = drilled("no-data-lost")
    assert result.passed, broken(result)
    assert result.figures["missing"] == 0
    assert result.figures["mirrored"] > 0
