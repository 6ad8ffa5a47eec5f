"""The backtest job queue: SAQ on Redis. A job carries only the backtest's key; everything else
lives in the PostgreSQL row, so Redis may be flushed and the sweeper re-enqueues what was lost.
"""

from __future__ import annotations

import saq
from redis.asyncio import Redis
from redis.exceptions import RedisError
from saq.queue.redis import RedisQueue

QUEUE_NAME = "backtests"
JOB_FUNCTION = "run_backtest"
# SAQ's default is 10 s. A 20-year daily run computes in well under a second; the slack is for
# a slow database or a busy worker, never for a run that hangs (it fails after this).
JOB_TIMEOUT_SECONDS = 300
# A running job touches its record this often; SAQ's sweep retries a job untouched for
# HEARTBEAT_SECONDS (its worker died) on another worker.
HEARTBEAT_EVERY_SECONDS = 10
HEARTBEAT_SECONDS = 45
JOB_RETRIES = 3
# How long a finished job's record stays in Redis (the sweeper reads its final status).
JOB_TTL_SECONDS = 3600

REDIS_DOWN: tuple[type[Exception], ...] = (RedisError, OSError)


def make_queue(redis_url: str, name: str = QUEUE_NAME) -> saq.Queue:
    """The backtest queue on `redis_url`; call `connect()` before use, `disconnect()` after."""
    # No socket timeout: the worker blocks on BLMOVE while it waits for jobs.
    client = Redis.from_url(redis_url, socket_connect_timeout=5, health_check_interval=30)
    return RedisQueue(client, name=name)


def job_key(user_id: str, backtest_id: str) -> str:
    """The SAQ job key of a backtest: one job per (user, id), so duplicate enqueues collapse."""
    return f"backtest:{user_id}:{backtest_id}"


async def enqueue_backtest(queue: saq.Queue, user_id: str, backtest_id: str) -> bool:
    """Queue the job of a backtest; False when a job with its key is already queued or running."""
    job = await queue.enqueue(
        JOB_FUNCTION,
        key=job_key(user_id, backtest_id),
        timeout=JOB_TIMEOUT_SECONDS,
        heartbeat=HEARTBEAT_SECONDS,
        retries=JOB_RETRIES,
        retry_delay=2.0,
        retry_backoff=30.0,
        ttl=JOB_TTL_SECONDS,
        user_id=user_id,
        backtest_id=backtest_id,
    )
    return job is not None
