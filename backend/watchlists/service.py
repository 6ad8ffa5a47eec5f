"""Watchlists in PostgreSQL, keyed by (user, name), as the mock keeps them in memory.

A PUT is one upsert: the row changes (and `updated_at` moves) only when the symbols differ, so a
repeated PUT is idempotent. Lists are sorted by name in code-point order, as the mock sorts them
(the database's collation may order names differently).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.db.models import Watchlist as WatchlistRow
from backend.db.session import database_calls
from contract.errors import NotFound, Unauthorized
from contract.reads import clean_symbols
from contract.types import Watchlist, WatchlistList
from market.calendar import iso_ms


def _wire(row: WatchlistRow) -> Watchlist:
    return Watchlist(
        name=row.name, symbols=list(row.symbols), updated_at=iso_ms(row.updated_at.timestamp())
    )


class PgWatchlists:
    """The `WatchlistPort` on PostgreSQL; `served` says which symbols a list may hold."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        served: Callable[[], set[str]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self._served = served
        self._clock = clock

    async def of_user(self, user_id: str) -> WatchlistList:
        with database_calls():
            async with self._sessions() as session:
                rows = (
                    await session.scalars(
                        select(WatchlistRow).where(WatchlistRow.user_id == uuid.UUID(user_id))
                    )
                ).all()
        return WatchlistList(watchlists=[_wire(row) for row in sorted(rows, key=lambda r: r.name)])

    async def get(self, user_id: str, name: str) -> Watchlist:
        with database_calls():
            async with self._sessions() as session:
                row = await session.get(WatchlistRow, (uuid.UUID(user_id), name))
        if row is None:
            raise NotFound(f"No watchlist named {name!r}")
        return _wire(row)

    async def put(self, user_id: str, name: str, symbols: list[str]) -> Watchlist:
        cleaned = clean_symbols(symbols, self._served())
        owner = uuid.UUID(user_id)
        now = datetime.fromtimestamp(round(self._clock(), 3), UTC)
        values = insert(WatchlistRow).values(
            user_id=owner, name=name, symbols=cleaned, updated_at=now
        )
        statement = values.on_conflict_do_update(
            index_elements=[WatchlistRow.user_id, WatchlistRow.name],
            set_={"symbols": values.excluded.symbols, "updated_at": values.excluded.updated_at},
            where=WatchlistRow.symbols.is_distinct_from(values.excluded.symbols),
        ).returning(WatchlistRow)
        with database_calls():
            async with self._sessions() as session:
                try:
                    row = (await session.execute(statement)).scalar_one_or_none()
                    if row is None:  # the same symbols again: the stored list stands
                        row = await session.get(WatchlistRow, (owner, name))
                    await session.commit()
                except IntegrityError as exc:  # the user was deleted meanwhile
                    raise Unauthorized("The token's user does not exist") from exc
        if row is None:
            raise NotFound(f"No watchlist named {name!r}")
        return _wire(row)

    async def delete(self, user_id: str, name: str) -> None:
        with database_calls():
            async with self._sessions() as session:
                gone = await session.execute(
                    delete(WatchlistRow)
                    .where(WatchlistRow.user_id == uuid.UUID(user_id), WatchlistRow.name == name)
                    .returning(WatchlistRow.name)
                )
                found = gone.first() is not None
                await session.commit()
        if not found:
            raise NotFound(f"No watchlist named {name!r}")
