"""`QueuedBacktests`: the `BacktestPort` on PostgreSQL rows and SAQ jobs.

A submission is validated, stored as a `queued` row and committed before its job is enqueued:
the row is the truth, the job only carries work. If the enqueue fails (Redis away), the row
stays queued and the worker's sweeper enqueues it later; a 202 is never a lost backtest.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import saq
from saq.job import TERMINAL_STATUSES
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.backtests.queue import REDIS_DOWN, enqueue_backtest, job_key
from backend.db.models import Backtest as BacktestRow
from backend.db.session import database_calls
from contract.errors import Conflict, NotFound, Unauthorized
from contract.reads import HistoryReads
from contract.types import (
    Backtest,
    BacktestAccepted,
    BacktestCreate,
    BacktestList,
    BacktestRequest,
    BacktestResult,
    BacktestStatus,
    BacktestSummary,
)
from market.calendar import iso_ms

log = logging.getLogger("backend.backtests")

ACTIVE: tuple[BacktestStatus, ...] = ("queued", "running")


def _owner(user_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(user_id)
    except ValueError:
        return None


def stored_request(raw: dict[str, Any]) -> BacktestRequest:
    """A row's request column as the contract's type."""
    return msgspec.convert(raw, BacktestRequest)


class QueuedBacktests:
    """Backtests per user: rows in PostgreSQL, computed by `python -m backend.worker`."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        queue: saq.Queue,
        reads: HistoryReads,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self._queue = queue
        self._reads = reads
        self._clock = clock

    async def submit(self, user_id: str, data: BacktestCreate) -> BacktestAccepted:
        request = await self._reads.prepare_backtest(data)
        owner = _owner(user_id)
        if owner is None:
            raise Unauthorized("the token's user does not exist")
        backtest_id = data.id or uuid.uuid4().hex
        status = await self._store(owner, backtest_id, request)
        if status == "queued":
            await self._enqueue(user_id, backtest_id)
        return BacktestAccepted(id=backtest_id, status=status)

    async def _store(
        self, owner: uuid.UUID, backtest_id: str, request: BacktestRequest
    ) -> BacktestStatus:
        """Insert the row, or find the one with this id (same request) -- race-safe in SQL."""
        insert_row = (
            insert(BacktestRow)
            .values(
                user_id=owner,
                id=backtest_id,
                status="queued",
                request=msgspec.to_builtins(request),
                created_at=datetime.fromtimestamp(self._clock(), UTC),
                job_key=job_key(str(owner), backtest_id),
            )
            .on_conflict_do_nothing(index_elements=[BacktestRow.user_id, BacktestRow.id])
            .returning(BacktestRow.status)
        )
        existing = select(BacktestRow.status, BacktestRow.request).where(
            BacktestRow.user_id == owner, BacktestRow.id == backtest_id
        )
        with database_calls():
            async with self._sessions() as session:
                try:
                    inserted = (await session.execute(insert_row)).scalar_one_or_none()
                except IntegrityError as exc:  # the user was deleted a moment ago
                    raise Unauthorized("the token's user does not exist") from exc
                if inserted is not None:
                    await session.commit()
                    return "queued"
                found = (await session.execute(existing)).one_or_none()
                await session.commit()
        if found is None:  # deleted between the two statements: a fresh row is a new request
            return await self._store(owner, backtest_id, request)
        if stored_request(found.request) != request:
            raise Conflict(f"Backtest {backtest_id} exists with a different request")
        status: BacktestStatus = found.status
        return status

    async def _enqueue(self, user_id: str, backtest_id: str) -> None:
        try:
            await enqueue_backtest(self._queue, user_id, backtest_id)
        except REDIS_DOWN as exc:
            log.warning(
                "backtest %s stays queued in PostgreSQL; the sweeper enqueues it (%s)",
                backtest_id,
                exc,
            )

    async def of_user(self, user_id: str) -> BacktestList:
        owner = _owner(user_id)
        if owner is None:
            return BacktestList(backtests=[])
        query = (
            select(BacktestRow.id, BacktestRow.status, BacktestRow.request, BacktestRow.created_at)
            .where(BacktestRow.user_id == owner)
            .order_by(BacktestRow.created_at.desc(), BacktestRow.id.desc())
        )
        with database_calls():
            async with self._sessions() as session:
                rows = (await session.execute(query)).all()
        return BacktestList(
            backtests=[
                BacktestSummary(
                    id=row.id,
                    status=row.status,
                    request=stored_request(row.request),
                    created_at=iso_ms(row.created_at.timestamp()),
                )
                for row in rows
            ]
        )

    async def get(self, user_id: str, backtest_id: str) -> Backtest:
        owner = _owner(user_id)
        row: BacktestRow | None = None
        if owner is not None:
            with database_calls():
                async with self._sessions() as session:
                    row = await session.get(BacktestRow, (owner, backtest_id))
        if row is None:
            raise NotFound(f"No backtest {backtest_id}")
        return Backtest(
            id=row.id,
            status=row.status,  # type: ignore[arg-type]
            request=stored_request(row.request),
            created_at=iso_ms(row.created_at.timestamp()),
            result=None if row.result is None else msgspec.convert(row.result, BacktestResult),
            error=row.error,
        )

    async def cancel(self, user_id: str, backtest_id: str) -> None:
        """Queued or running: cancelled now (a running job is aborted); finished: unchanged."""
        owner = _owner(user_id)
        if owner is None:
            raise NotFound(f"No backtest {backtest_id}")
        stop = (
            update(BacktestRow)
            .where(
                BacktestRow.user_id == owner,
                BacktestRow.id == backtest_id,
                BacktestRow.status.in_(ACTIVE),
            )
            .values(status="cancelled", finished_at=datetime.fromtimestamp(self._clock(), UTC))
            .returning(BacktestRow.id)
        )
        exists = select(BacktestRow.id).where(
            BacktestRow.user_id == owner, BacktestRow.id == backtest_id
        )
        with database_calls():
            async with self._sessions() as session:
                cancelled = (await session.execute(stop)).scalar_one_or_none()
                found = cancelled or (await session.execute(exists)).scalar_one_or_none()
                await session.commit()
        if found is None:
            raise NotFound(f"No backtest {backtest_id}")
        if cancelled is not None:
            await self._abort(job_key(str(owner), backtest_id))

    async def _abort(self, key: str) -> None:
        # The row already says cancelled, and the job never overwrites a cancelled row: the
        # abort only saves the work. Redis away: the job finds the row cancelled and stops.
        try:
            job = await self._queue.job(key)
            if job is not None and job.status not in TERMINAL_STATUSES:
                await self._queue.abort(job, "cancelled")
        except REDIS_DOWN as exc:
            log.warning("could not abort job %s (%s); the row says cancelled", key, exc)
