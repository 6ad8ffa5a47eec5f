"""The mock rebuilt from PostgreSQL: every user, live refresh token, deletion, watchlist and
backtest read in one transaction and PUT to the mock's admin app (PUT /admin/records).

A rollback calls this: PostgreSQL is only read, never written, and the mock ends up serving
exactly what prod held, even when it was restarted empty in between.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import msgspec
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from backend.db.models import Backtest, RefreshToken, User, UserTombstone, Watchlist
from contract.records import (
    BacktestSnapshot,
    RebuildCounts,
    RecordsSnapshot,
    RefreshTokenSnapshot,
    TombstoneSnapshot,
    UserSnapshot,
    WatchlistSnapshot,
)
from contract.types import BacktestRequest, BacktestResult
from ops.databases import asyncpg_url, mask_url

# A snapshot of many backtests with their results takes a while to PUT and to decode.
PUT_TIMEOUT = 120.0


class RecordsError(Exception):
    """The snapshot could not be read or the mock refused it; the message says which."""


def _epoch(moment: datetime) -> float:
    return round(moment.timestamp(), 3)


async def _snapshot(connection: AsyncConnection) -> RecordsSnapshot:
    now = datetime.now(UTC)
    users = [
        UserSnapshot(
            id=str(row.id),
            email=row.email,
            name=row.name,
            password_hash=row.password_hash,
            created_at=_epoch(row.created_at),
        )
        for row in await connection.execute(select(User.__table__).order_by(User.id))
    ]
    refresh = [
        RefreshTokenSnapshot(jti=row.jti, user_id=str(row.user_id))
        for row in await connection.execute(
            select(RefreshToken.__table__).where(RefreshToken.expires_at > now)
        )
    ]
    tombstones = [
        TombstoneSnapshot(user_id=str(row.user_id), deleted_at=_epoch(row.deleted_at))
        for row in await connection.execute(select(UserTombstone.__table__))
    ]
    watchlists = [
        WatchlistSnapshot(
            user_id=str(row.user_id),
            name=row.name,
            symbols=list(row.symbols),
            updated_at=_epoch(row.updated_at),
        )
        for row in await connection.execute(select(Watchlist.__table__))
    ]
    backtests = [
        BacktestSnapshot(
            user_id=str(row.user_id),
            id=row.id,
            status=row.status,
            request=msgspec.convert(row.request, BacktestRequest),
            created_at=_epoch(row.created_at),
            result=None if row.result is None else msgspec.convert(row.result, BacktestResult),
            error=row.error,
        )
        for row in await connection.execute(select(Backtest.__table__))
    ]
    return RecordsSnapshot(
        users=users,
        watchlists=watchlists,
        backtests=backtests,
        refresh_tokens=refresh,
        tombstones=tombstones,
    )


async def read_snapshot(database_url: str) -> RecordsSnapshot:
    """Every user record in PostgreSQL, read in one repeatable-read transaction."""
    engine = create_async_engine(
        asyncpg_url(database_url), poolclass=NullPool, isolation_level="REPEATABLE READ"
    )
    try:
        async with engine.connect() as connection:
            return await _snapshot(connection)
    except (SQLAlchemyError, OSError) as exc:
        raise RecordsError(f"cannot read {mask_url(database_url)}: {exc}") from exc
    except (msgspec.ValidationError, ValueError) as exc:
        raise RecordsError(f"a stored record does not fit the contract: {exc}") from exc
    finally:
        await engine.dispose()


async def rebuild_mock(database_url: str, mock_admin_url: str, admin_token: str) -> RebuildCounts:
    """Replace the mock's users, watchlists and backtests with PostgreSQL's."""
    snapshot = await read_snapshot(database_url)
    target = mock_admin_url.rstrip("/") + "/admin/records"
    try:
        async with httpx.AsyncClient(timeout=PUT_TIMEOUT) as client:
            answer = await client.put(
                target,
                content=msgspec.json.encode(snapshot),
                headers={
                    "Authorization": f"Bearer {admin_token}",
                    "Content-Type": "application/json",
                },
            )
    except httpx.HTTPError as exc:
        raise RecordsError(f"the mock's admin at {mock_admin_url} does not answer: {exc}") from exc
    if answer.status_code != 200:
        raise RecordsError(
            f"the mock refused the rebuild: HTTP {answer.status_code} {answer.text[:300]}"
        )
    try:
        return msgspec.json.decode(answer.content, type=RebuildCounts)
    except msgspec.DecodeError as exc:
        raise RecordsError(f"the mock's answer is not a rebuild count: {exc}") from exc


__all__ = ["RecordsError", "read_snapshot", "rebuild_mock"]
