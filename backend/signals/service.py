"""The signal port of production: the shared reads of `contract.reads`, plus a record in
PostgreSQL of every signal generated on request (who asked, what came out), kept for audit and
replay. Recording is a write: when it fails, the request fails (503 when the database is down).
"""

from __future__ import annotations

import uuid

import msgspec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.db.models import GeneratedSignal
from backend.db.session import database_calls
from backend.users.service import current_user_id
from contract.errors import Unauthorized
from contract.reads import HistoryReads
from contract.types import (
    AgentList,
    Insights,
    Opportunities,
    OptionsSignals,
    Signal,
    SignalList,
    StrategyList,
    SymbolSignals,
)


class RecordingSignals:
    """The `SignalPort`: reads delegated to `HistoryReads`; `generate` also records the signal."""

    def __init__(self, reads: HistoryReads, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._reads = reads
        self._sessions = sessions

    async def signals(
        self, symbols: list[str] | None, timeframe: str, limit: int, min_confidence: float
    ) -> SignalList:
        return await self._reads.signals(symbols, timeframe, limit, min_confidence)

    async def symbol_signals(self, symbol: str, timeframe: str) -> SymbolSignals:
        return await self._reads.symbol_signals(symbol, timeframe)

    async def options(self, symbol: str, timeframe: str) -> OptionsSignals:
        return await self._reads.options(symbol, timeframe)

    async def insights(self, signal_id: str) -> Insights:
        return await self._reads.insights(signal_id)

    async def opportunities(self, limit: int) -> Opportunities:
        return await self._reads.opportunities(limit)

    async def agents(self) -> AgentList:
        return await self._reads.agents()

    async def strategies(self) -> StrategyList:
        return await self._reads.strategies()

    async def generate(self, symbol: str, timeframe: str) -> Signal:
        signal = await self._reads.generate(symbol, timeframe)
        caller = current_user_id.get()
        record = GeneratedSignal(
            signal_id=signal.id,
            user_id=None if caller is None else uuid.UUID(caller),
            symbol=signal.symbol,
            timeframe=signal.timeframe,
            type=signal.type,
            confidence=signal.confidence,
            payload=msgspec.to_builtins(signal),
        )
        with database_calls():
            async with self._sessions() as session:
                session.add(record)
                try:
                    await session.commit()
                except IntegrityError as exc:  # the caller was deleted meanwhile
                    raise Unauthorized("The token's user does not exist") from exc
        return signal
