"""What the backtest worker runs: the job that computes one backtest, and the sweeper.

The job reads everything from the row, marks it running, computes with the shared engine
(`HistoryReads.compute_backtest`) and stores the result, never over a row cancelled meanwhile.
The sweeper (a SAQ cron job) makes the row the truth: a queued or running row whose job is gone
from Redis (flushed, expired) is enqueued again; one whose job SAQ gave up on is marked failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar.exceptions import HTTPException
from saq import CronJob, Job, Status
from saq.types import Context
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.backtests.queue import (
    HEARTBEAT_EVERY_SECONDS,
    REDIS_DOWN,
    enqueue_backtest,
    job_key,
)
from backend.backtests.service import ACTIVE, stored_request
from backend.db.models import Backtest as BacktestRow
from backend.db.session import is_database_down
from contract.errors import DependencyDown
from contract.reads import HistoryReads

log = logging.getLogger("backend.backtests.jobs")

SWEEP_SECONDS = 15
# A row younger than this may be between its commit and its enqueue: leave it to the submitter.
SWEEP_GRACE_SECONDS = 10.0
SWEEP_BATCH = 500


class BacktestContext(Context, total=False):
    """SAQ's job context plus what the worker's start-up puts in it."""

    sessions: async_sessionmaker[AsyncSession]
    reads: HistoryReads


def _now() -> datetime:
    return datetime.now(UTC)


_RETRYABLE: tuple[type[BaseException], ...] = (DependencyDown, *REDIS_DOWN)


def _infrastructure(error: BaseException) -> bool:
    """A failure of the database or Redis, worth a retry (unlike a failure of the backtest)."""
    if isinstance(error, _RETRYABLE):
        return True
    return is_database_down(error)


def _message(error: BaseException) -> str:
    if isinstance(error, HTTPException):
        return str(error.detail)
    return f"{type(error).__name__}: {error}"[:2000]


async def _heartbeat(job: Job) -> None:
    # Touching the record keeps SAQ's sweep from taking this job for dead; after a FLUSHDB it
    # also writes the record back, so the sweeper does not start the run a second time.
    while True:
        await asyncio.sleep(HEARTBEAT_EVERY_SECONDS)
        with contextlib.suppress(*REDIS_DOWN):
            await job.update()


async def run_backtest(ctx: BacktestContext, *, user_id: str, backtest_id: str) -> str:
    """Compute one backtest; returns what became of it (done, failed, discarded, skipped)."""
    sessions, reads = ctx["sessions"], ctx["reads"]
    owner = uuid.UUID(user_id)
    mine = (BacktestRow.user_id == owner, BacktestRow.id == backtest_id)
    claim = (
        update(BacktestRow)
        .where(*mine, BacktestRow.status.in_(ACTIVE))
        .values(status="running", started_at=_now(), error=None)
        .returning(BacktestRow.request)
    )
    async with sessions() as session:
        raw: dict[str, Any] | None = (await session.execute(claim)).scalar_one_or_none()
        await session.commit()
    if raw is None:
        return "skipped"  # cancelled, finished by an earlier run, or the user was deleted
    request = stored_request(raw)
    job = ctx.get("job")
    beat = asyncio.create_task(_heartbeat(job)) if job is not None else None
    started = time.perf_counter()
    try:
        result = await reads.compute_backtest(request)
    except Exception as exc:
        if _infrastructure(exc):
            raise  # SAQ retries the job; the row stays running
        log.warning("backtest %s of %s failed: %s", backtest_id, user_id, _message(exc))
        final = {"status": "failed", "error": _message(exc), "finished_at": _now()}
    else:
        final = {"status": "done", "result": msgspec.to_builtins(result), "finished_at": _now()}
    finally:
        if beat is not None:
            # Not awaited: awaiting here could swallow a cancel (an abort) aimed at this job.
            beat.cancel()
    # Only over our own running row: a cancel that came meanwhile wins.
    store = update(BacktestRow).where(*mine, BacktestRow.status == "running").values(**final)
    async with sessions() as session:
        stored = (await session.execute(store.returning(BacktestRow.id))).scalar_one_or_none()
        await session.commit()
    # Not stored: cancelled meanwhile, or another run (re-enqueued after a flush) stored first.
    outcome = str(final["status"]) if stored is not None else "discarded"
    log.info(
        "backtest %s of %s: %s in %.3f s",
        backtest_id,
        user_id,
        outcome,
        time.perf_counter() - started,
    )
    return outcome


async def sweep_backtests(
    ctx: BacktestContext, *, grace_seconds: float = SWEEP_GRACE_SECONDS
) -> dict[str, int]:
    """Re-enqueue queued or running rows whose job is gone; fail those SAQ gave up on."""
    try:
        return await _sweep(ctx, grace_seconds)
    except Exception as exc:
        if not _infrastructure(exc):
            raise
        # The next round tries again; a traceback every few seconds would hide the real news.
        log.warning("backtest sweeper: skipped this round (%s)", _message(exc))
        return {"requeued": 0, "failed": 0}


async def _sweep(ctx: BacktestContext, grace_seconds: float) -> dict[str, int]:
    sessions = ctx["sessions"]
    queue = ctx["worker"].queue
    cutoff = _now() - timedelta(seconds=grace_seconds)
    query = (
        select(BacktestRow.user_id, BacktestRow.id)
        .where(BacktestRow.status.in_(ACTIVE), BacktestRow.created_at < cutoff)
        .order_by(BacktestRow.created_at)
    )
    async with sessions() as session:
        rows = [(str(user), backtest) for user, backtest in (await session.execute(query)).all()]
    requeued = failed = 0
    for start in range(0, len(rows), SWEEP_BATCH):
        batch = rows[start : start + SWEEP_BATCH]
        jobs = await queue.jobs(job_key(user, backtest) for user, backtest in batch)
        for (user, backtest), job in zip(batch, jobs, strict=True):
            if job is None or job.status == Status.COMPLETE:
                if await enqueue_backtest(queue, user, backtest):
                    requeued += 1
            elif job.status in (Status.FAILED, Status.ABORTED) and not job.retryable:
                # (A retryable one is between SAQ's own abort and retry: it comes back.)
                failed += await _give_up(sessions, user, backtest, job)
    if requeued or failed:
        log.warning("backtest sweeper: %d re-enqueued, %d marked failed", requeued, failed)
    return {"requeued": requeued, "failed": failed}


async def _give_up(
    sessions: async_sessionmaker[AsyncSession], user_id: str, backtest_id: str, job: Job
) -> int:
    # SAQ retried the job and gave up (its worker kept dying or the database kept failing):
    # re-enqueueing it would loop forever, so the backtest fails with the reason.
    last = (job.error or "no error recorded").strip().splitlines()[-1:] or [""]
    error = f"the backtest could not be run after {job.attempts} attempts: {last[0][:500]}"
    mark = (
        update(BacktestRow)
        .where(
            BacktestRow.user_id == uuid.UUID(user_id),
            BacktestRow.id == backtest_id,
            BacktestRow.status.in_(ACTIVE),
        )
        .values(status="failed", error=error, finished_at=_now())
        .returning(BacktestRow.id)
    )
    async with sessions() as session:
        marked = (await session.execute(mark)).scalar_one_or_none()
        await session.commit()
    return 0 if marked is None else 1


def sweeper(
    every_seconds: int = SWEEP_SECONDS, grace_seconds: float = SWEEP_GRACE_SECONDS
) -> CronJob[BacktestContext]:
    """The sweeper as a SAQ cron job, every `every_seconds` (1-59) seconds."""
    if not 1 <= every_seconds <= 59:
        raise ValueError("the sweeper runs every 1-59 seconds")
    return CronJob(
        sweep_backtests,
        cron=f"* * * * * */{every_seconds}",
        timeout=60,
        kwargs={"grace_seconds": grace_seconds},
    )
