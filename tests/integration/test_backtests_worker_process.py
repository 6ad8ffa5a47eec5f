"""`python -m backend.worker` as a real process: it computes over the history stored in
PostgreSQL exactly as the shared engine does, picks up what was queued while it was down, and
stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import anyio
import pytest
import saq
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from backend.backtests.queue import make_queue
from backend.backtests.service import QueuedBacktests
from backend.db.models import Bar
from backend.market.repositories import MarketRepository
from contract.reads import HistoryReads, to_struct
from contract.types import Backtest, BacktestCreate, BacktestResult, HealthChecks
from market.backtest import run_backtest
from market.calendar import DEFAULT_ASOF
from market.history import daily_history
from mock_backend.history import GeneratedHistory
from ops.settings import PROJECT_ROOT

pytestmark = pytest.mark.anyio

SEED = 42
SYMBOL = "SPY"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def checks() -> HealthChecks:
    return HealthChecks(database="ok", cache="ok", feed="n/a")


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    created = create_async_engine(database_url)
    try:
        yield created
    finally:
        await created.dispose()


async def store_daily_bars(engine: AsyncEngine) -> None:
    """The generated daily history of SYMBOL in the bars table (kept if already loaded)."""
    bars = daily_history(SEED, SYMBOL, DEFAULT_ASOF)
    rows = [
        {
            "symbol": SYMBOL,
            "interval": "1d",
            "time": datetime.fromtimestamp(moment, UTC),
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "volume": v,
        }
        for moment, o, h, lo, c, v in zip(
            bars.time.tolist(),
            bars.open.tolist(),
            bars.high.tolist(),
            bars.low.tolist(),
            bars.close.tolist(),
            bars.volume.tolist(),
            strict=True,
        )
    ]
    async with engine.begin() as connection:
        for start in range(0, len(rows), 2000):
            await connection.execute(
                insert(Bar).values(rows[start : start + 2000]).on_conflict_do_nothing()
            )


class WorkerProcess:
    """`python -m backend.worker` started and stopped by pid, its log under tmp_path."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "backend.worker"],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    def terminate(self, timeout: float) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def worker_env(database_url: str, redis_url: str) -> dict[str, str]:
    dropped = ("DATABASE_URL", "REDIS_URL", "BACKTEST_QUEUE")
    return {key: value for key, value in os.environ.items() if key not in dropped} | {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "BACKTEST_QUEUE": f"bt-process-{uuid.uuid4().hex[:8]}",
        "WORKER_CONCURRENCY": "2",
        "WORKER_SWEEP_SECONDS": "2",
        "PYTHONPATH": str(PROJECT_ROOT),
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture
def worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(worker_env, tmp_path / "worker.log")
    try:
        yield process
    finally:
        process.kill()


@pytest.fixture
async def queue(worker_env: dict[str, str], redis_url: str) -> AsyncIterator[saq.Queue]:
    made = make_queue(redis_url, worker_env["BACKTEST_QUEUE"])
    await made.connect()
    try:
        yield made
    finally:
        await made.disconnect()


@pytest.fixture
async def user(engine: AsyncEngine) -> AsyncIterator[str]:
    user_id = uuid.uuid4()
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO users (id, email, name, password_hash) "
                "VALUES (:id, :email, 'Worker', 'x')"
            ),
            {"id": user_id, "email": f"{user_id.hex}@example.com"},
        )
    yield str(user_id)
    async with engine.begin() as connection:
        await connection.execute(text("DELETE FROM users WHERE id = :id"), {"id": user_id})


async def wait_final(service: QueuedBacktests, user: str, backtest_id: str) -> Backtest:
    with anyio.fail_after(30):
        while True:
            current = await service.get(user, backtest_id)
            if current.status in ("done", "failed", "cancelled"):
                return current
            await asyncio.sleep(0.1)


def epoch(day: str) -> int:
    return int(datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC).timestamp())


async def test_the_worker_process_computes_from_postgresql_as_the_engine_does(
    engine: AsyncEngine, queue: saq.Queue, worker: WorkerProcess, user: str
) -> None:
    await store_daily_bars(engine)
    reads = HistoryReads(GeneratedHistory(SEED, DEFAULT_ASOF, feed=False), "production", checks)
    service = QueuedBacktests(async_sessionmaker(engine, expire_on_commit=False), queue, reads)
    twenty_years = BacktestCreate(
        symbol=SYMBOL,
        strategy="sma_crossover",
        start="2006-01-03",
        end="2025-12-31",
        params={"fast": 20, "slow": 50},
        id="twenty-years",
    )
    # Queued while no worker runs: the worker takes it when it starts.
    await service.submit(user, twenty_years)
    worker.start()
    try:
        final = await wait_final(service, user, "twenty-years")
        assert final.status == "done", (final.error, worker.log.read_text()[-3000:])
        stored = await MarketRepository(engine).bars(SYMBOL, "1d")
        expected = run_backtest(
            stored,
            "sma_crossover",
            dict(final.request.params),
            final.request.initial_capital,
            epoch(final.request.start),
            epoch(final.request.end),
        )
        assert final.result == to_struct(expected, BacktestResult)
        assert final.result is not None
        assert final.result.equity_curve[0].time >= epoch("2006-01-03")

        short = BacktestCreate(
            symbol=SYMBOL, strategy="sma_crossover", start="2024-01-02", end="2025-06-30"
        )
        accepted = await service.submit(user, short)
        assert (await wait_final(service, user, accepted.id)).status == "done"
    finally:
        started = time.perf_counter()
        code = worker.terminate(timeout=30)
        stopped = time.perf_counter() - started
    print(f"worker stopped {stopped:.2f} s after SIGTERM")
    assert code == 0, worker.log.read_text()[-3000:]
    assert stopped < 10


def test_the_worker_refuses_to_start_without_its_settings(worker_env: dict[str, str]) -> None:
    env = {key: value for key, value in worker_env.items() if key != "DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "backend.worker"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "DATABASE_URL" in done.stderr
