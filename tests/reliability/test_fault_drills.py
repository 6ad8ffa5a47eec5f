"""The fault drills of issue 7, each on a system of its own (embedded PostgreSQL and Redis, mock,
prod with 2 workers, worker and gateway on free ports): the test fails when a promise breaks.
Each takes 1-2 minutes; their thresholds are the promises' own (see each module's doc)."""

from __future__ import annotations

import pytest

from tests.reliability.drills import broken, drilled

pytestmark = [pytest.mark.timeout(420), pytest.mark.drill]


def test_prod_killed_during_a_canary_sends_its_share_back_with_no_failed_read() -> None:
    result = drilled("prod-sigkill-during-canary")
    assert result.passed, broken(result)
    assert result.figures["failed"] == 0
    assert result.figures["seconds_to_weight_0"] <= 5


def test_postgres_stopped_means_503_a_rollback_and_a_recovery_without_restart() -> None:
    result = drilled("postgres-stop")
    assert result.passed, broken(result)


def test_redis_stopped_degrades_prod_without_5xx_and_flushall_loses_no_backtest() -> None:
    result = drilled("redis-stop")
    assert result.passed, broken(result)


def test_prod_slowed_at_run_time_trips_the_latency_gate_within_two_intervals() -> None:
    result = drilled("prod-slow")
    assert result.passed, broken(result)


def test_a_killed_gateway_resumes_its_canary_step_and_drains_the_outbox_in_order() -> None:
    result = drilled("gateway-restart")
    assert result.passed, broken(result)
