"""Backtests in memory, run in the background on the shared engine, ids per user."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from contract.errors import Conflict, NotFound
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

log = logging.getLogger("mock_backend.backtests")


@dataclass(slots=True)
class BacktestRecord:
    id: str
    user_id: str
    status: BacktestStatus
    request: BacktestRequest
    created_at: float
    result: BacktestResult | None = None
    error: str | None = None

    def wire(self) -> Backtest:
        return Backtest(
            id=self.id,
            status=self.status,
            request=self.request,
            created_at=iso_ms(self.created_at),
            result=self.result,
            error=self.error,
        )


class MemoryBacktests:
    """The `BacktestPort` in memory: each backtest runs as a task of the mock's event loop."""

    def __init__(self, reads: HistoryReads, clock: Callable[[], float] = time.time) -> None:
        self._reads = reads
        self._clock = clock
        self.records: dict[tuple[str, str], BacktestRecord] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def submit(self, user_id: str, data: BacktestCreate) -> BacktestAccepted:
        request = await self._reads.prepare_backtest(data)
        backtest_id = data.id or uuid.uuid4().hex
        key = (user_id, backtest_id)
        existing = self.records.get(key)
        if existing is not None:
            if existing.request != request:
                raise Conflict(f"Backtest {backtest_id} exists with a different request")
            return BacktestAccepted(id=backtest_id, status=existing.status)
        self.records[key] = BacktestRecord(
            id=backtest_id,
            user_id=user_id,
            status="queued",
            request=request,
            created_at=self._clock(),
        )
        self._tasks[key] = asyncio.create_task(self._run(key))
        return BacktestAccepted(id=backtest_id, status="queued")

    async def _run(self, key: tuple[str, str]) -> None:
        record = self.records.get(key)
        if record is None or record.status != "queued":
            return
        record.status = "running"
        try:
            result = await self._reads.compute_backtest(record.request)
        except asyncio.CancelledError:
            record.status = "cancelled"
            raise
        except Exception as exc:  # a failed backtest is a status, not a crash
            log.exception("backtest %s failed", record.id)
            record.status, record.error = "failed", str(exc)
        else:
            if record.status == "running":
                record.status, record.result = "done", result
        finally:
            # Only this run's own entry: a rebuild may have started a new run under the key.
            if self._tasks.get(key) is asyncio.current_task():
                del self._tasks[key]

    async def of_user(self, user_id: str) -> BacktestList:
        mine = [rec for (owner, _), rec in self.records.items() if owner == user_id]
        mine.sort(key=lambda rec: (rec.created_at, rec.id), reverse=True)
        return BacktestList(
            backtests=[
                BacktestSummary(
                    id=rec.id,
                    status=rec.status,
                    request=rec.request,
                    created_at=iso_ms(rec.created_at),
                )
                for rec in mine
            ]
        )

    async def get(self, user_id: str, backtest_id: str) -> Backtest:
        record = self.records.get((user_id, backtest_id))
        if record is None:
            raise NotFound(f"No backtest {backtest_id}")
        return record.wire()

    async def cancel(self, user_id: str, backtest_id: str) -> None:
        key = (user_id, backtest_id)
        record = self.records.get(key)
        if record is None:
            raise NotFound(f"No backtest {backtest_id}")
        if record.status in ("queued", "running"):
            record.status = "cancelled"
            task = self._tasks.pop(key, None)
            if task is not None:
                task.cancel()

    def replace(self, records: list[BacktestRecord]) -> None:
        """Hold exactly these backtests (the rollback's rebuild); the ones prod had not finished
        run here, as if just submitted."""
        for task in self._tasks.values():
            task.cancel()
        self._tasks = {}
        self.records = {(record.user_id, record.id): record for record in records}
        for key, record in self.records.items():
            if record.status in ("queued", "running"):
                record.status = "queued"
                self._tasks[key] = asyncio.create_task(self._run(key))

    async def delete_user(self, user_id: str) -> None:
        for key in [key for key in self.records if key[0] == user_id]:
            task = self._tasks.pop(key, None)
            if task is not None:
                task.cancel()
            del self.records[key]
