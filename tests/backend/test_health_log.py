"""The health probe says in the log why a check failed, once per change of state."""

from __future__ import annotations

import logging

import pytest

from backend.cache import RedisLink, create_redis
from backend.db.session import create_engine
from backend.health import HealthProbe

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_failed_check_is_logged_once_with_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none", timeout_seconds=1)
    link = RedisLink(create_redis("redis://127.0.0.1:9/0"))  # nothing listens on port 9
    fresh = [False]
    probe = HealthProbe(engine, link, lambda: fresh[0], deadline=2)
    try:
        with caplog.at_level(logging.INFO, logger="backend.health"):
            for _ in range(3):
                checks = await probe.checks()
                assert (checks.database, checks.cache, checks.feed) == ("down", "down", "down")
            fresh[0] = True
            assert (await probe.checks()).feed == "ok"
    finally:
        await link.close()
        await engine.dispose()
    records = [r for r in caplog.records if r.name == "backend.health"]
    down = [r for r in records if r.levelno == logging.WARNING]
    assert sorted(r.getMessage().split(" is down")[0] for r in down) == [
        "health: cache",
        "health: database",
        "health: feed",
    ], "one line per check that went down, not one per probe"
    by_check = {r.getMessage().split(" is down")[0]: r for r in down}
    assert by_check["health: database"].exc_info is not None, "the database's reason, traced"
    assert "Error" in by_check["health: cache"].getMessage(), "the reason Redis failed"
    assert any("feed is ok again" in r.getMessage() for r in records)
