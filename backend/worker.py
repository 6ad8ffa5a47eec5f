"""`python -m backend.worker`: the backtest worker, a SAQ worker process on Redis and PostgreSQL.

Run as many as needed, on as many machines: each takes jobs from the shared queue, computes over
the history stored in PostgreSQL (the same `HistoryReads` the API answers with) and writes the
results to the backtest rows. Each also runs the sweeper (a SAQ cron job, unique per queue, so one
worker runs it each time). SIGTERM or SIGINT: stop taking jobs, let running ones finish within
the grace period (`WORKER_SHUTDOWN_GRACE`), then hand the rest back to the queue and exit 0.

Settings come from the environment like the backend's: DATABASE_URL and REDIS_URL (required),
WORKER_CONCURRENCY, WORKER_SWEEP_SECONDS, WORKER_SHUTDOWN_GRACE, BACKTEST_QUEUE, MARKET_SEED,
CACHE_TTL_SECONDS, DATA_POLL_SECONDS, DB_TIMEOUT_SECONDS, LOG_LEVEL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import saq
from saq.types import PartialTimersDict
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.backtests.jobs import (
    SWEEP_GRACE_SECONDS,
    SWEEP_SECONDS,
    BacktestContext,
    run_backtest,
    sweeper,
)
from backend.backtests.queue import QUEUE_NAME, make_queue
from backend.settings import LOG_LEVELS, database_url, redis_url
from contract.environment import SettingsError, env_choice, env_int
from contract.reads import HistoryReads
from contract.types import HealthChecks

log = logging.getLogger("backend.worker")

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
Hook = Callable[[BacktestContext], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """What the worker reads from its environment, validated at start-up."""

    database_url: str
    redis_url: str
    concurrency: int = 4
    queue_name: str = QUEUE_NAME
    sweep_seconds: int = SWEEP_SECONDS
    shutdown_grace_seconds: int = 10
    market_seed: int = 42
    cache_ttl_seconds: int = 3600
    data_poll_seconds: float = 5.0
    db_timeout_seconds: int = 5
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        """Read and validate every variable; SettingsError names the first bad one."""
        env = os.environ if env is None else env
        queue_name = env.get("BACKTEST_QUEUE", "").strip() or QUEUE_NAME
        if not _QUEUE_NAME.match(queue_name):
            raise SettingsError(f"BACKTEST_QUEUE={queue_name!r}: 1-64 of A-Z a-z 0-9 _ -")
        return cls(
            database_url=database_url(env),
            redis_url=redis_url(env),
            concurrency=env_int(env, "WORKER_CONCURRENCY", 4, 1, 256),
            queue_name=queue_name,
            sweep_seconds=env_int(env, "WORKER_SWEEP_SECONDS", SWEEP_SECONDS, 1, 59),
            shutdown_grace_seconds=env_int(env, "WORKER_SHUTDOWN_GRACE", 10, 0, 3600),
            market_seed=env_int(env, "MARKET_SEED", 42, 0, 2**31 - 1),
            cache_ttl_seconds=env_int(env, "CACHE_TTL_SECONDS", 3600, 1, 30 * 24 * 3600),
            data_poll_seconds=float(env_int(env, "DATA_POLL_SECONDS", 5, 1, 3600)),
            db_timeout_seconds=env_int(env, "DB_TIMEOUT_SECONDS", 5, 1, 300),
            log_level=env_choice(env, "LOG_LEVEL", "INFO", LOG_LEVELS),
        )


class BacktestWorker(saq.Worker[BacktestContext]):
    """SAQ's worker, whose stop spends the grace period on running jobs only."""

    async def stop(self) -> None:
        # SAQ also waits for its upkeep loops, which sleep up to their timers (10 s): those hold
        # no work, so they end now and a stop takes as long as the running jobs, not the timers.
        self.event.set()
        for task in list(self.tasks):
            if task.get_name() != "process":
                task.cancel()
        await super().stop()


def build_worker(
    queue: saq.Queue,
    sessions: async_sessionmaker[AsyncSession],
    reads: HistoryReads,
    *,
    concurrency: int = 4,
    sweep_seconds: int = SWEEP_SECONDS,
    sweep_grace_seconds: float = SWEEP_GRACE_SECONDS,
    shutdown_grace_seconds: int = 10,
    on_start: Hook | None = None,
    on_stop: Hook | None = None,
) -> saq.Worker[BacktestContext]:
    """A SAQ worker running backtests and the sweeper with `reads` over `sessions`' database."""

    async def startup(ctx: BacktestContext) -> None:
        ctx["sessions"] = sessions
        ctx["reads"] = reads
        if on_start is not None:
            await on_start(ctx)

    async def shutdown(ctx: BacktestContext) -> None:
        if on_stop is not None:
            await on_stop(ctx)

    return BacktestWorker(
        queue,
        functions=[run_backtest],
        concurrency=concurrency,
        cron_jobs=[sweeper(sweep_seconds, sweep_grace_seconds)],
        startup=startup,
        shutdown=shutdown,
        # SAQ's own sweep (jobs whose worker died) and the abort check (cancelled jobs).
        timers=PartialTimersDict(schedule=1, worker_info=10, sweep=10, abort=1),
        # Idle workers come back from the queue each second, so a stop is never stuck there.
        dequeue_timeout=1.0,
        shutdown_grace_period_s=shutdown_grace_seconds,
    )


async def serve(settings: WorkerSettings) -> None:
    """Run the worker until SIGTERM/SIGINT; connections open here and close on the way out."""
    # Imported here: the app's modules (metrics, caches) are for a running worker only.
    from backend.cache import RedisLink, create_redis
    from backend.db.session import create_engine, create_sessions
    from backend.market.history import PgHistory
    from backend.market.repositories import MarketRepository
    from contract.errors import DependencyDown

    engine = create_engine(
        settings.database_url,
        pool_size=settings.concurrency + 2,
        timeout_seconds=settings.db_timeout_seconds,
        application="worker",
    )
    link = RedisLink(create_redis(settings.redis_url))
    history = PgHistory(
        MarketRepository(engine),
        link,
        ttl_seconds=settings.cache_ttl_seconds,
        seed=settings.market_seed,
    )

    async def checks() -> HealthChecks:
        # The worker computes backtests only; it never answers a health request.
        return HealthChecks(database="n/a", cache="n/a", feed="n/a")

    reads = HistoryReads(history, "production", checks)
    queue = make_queue(settings.redis_url, settings.queue_name)
    watching: list[asyncio.Task[None]] = []

    async def on_start(ctx: BacktestContext) -> None:
        try:
            await history.refresh()
        except DependencyDown:
            # Jobs meanwhile fail as "database down" and SAQ retries them; the watch recovers.
            log.warning("the database does not answer at start-up; retrying in the background")
        watching.append(asyncio.create_task(history.watch(settings.data_poll_seconds)))
        log.info(
            "backtest worker up: queue %r, concurrency %d, sweeper every %d s",
            settings.queue_name,
            settings.concurrency,
            settings.sweep_seconds,
        )

    async def on_stop(ctx: BacktestContext) -> None:
        for task in watching:
            task.cancel()
        await asyncio.gather(*watching, return_exceptions=True)

    worker = build_worker(
        queue,
        create_sessions(engine),
        reads,
        concurrency=settings.concurrency,
        sweep_seconds=settings.sweep_seconds,
        shutdown_grace_seconds=settings.shutdown_grace_seconds,
        on_start=on_start,
        on_stop=on_stop,
    )
    try:
        await queue.connect()
        await worker.start()  # returns after SIGTERM/SIGINT, once jobs are finished or handed back
    finally:
        with contextlib.suppress(Exception):
            await queue.disconnect()
        await link.close()
        await engine.dispose()
        log.info("backtest worker stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.worker", description=__doc__)
    parser.add_argument(
        "--concurrency", type=int, default=None, help="jobs at once (default WORKER_CONCURRENCY)"
    )
    parser.add_argument("--log-file", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        settings = WorkerSettings.from_env()
        if args.concurrency is not None:
            if not 1 <= args.concurrency <= 256:
                raise SettingsError("--concurrency must be 1-256")
            settings = dataclasses.replace(settings, concurrency=args.concurrency)
    except SettingsError as exc:
        print(f"backend.worker: bad setting: {exc}", file=sys.stderr)
        return 2
    from contract.logs import configure_logging

    configure_logging(settings.log_level, args.log_file)
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
