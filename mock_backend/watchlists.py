"""Watchlists in memory, keyed by (user, name)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from contract.errors import NotFound
from contract.reads import clean_symbols
from contract.types import Watchlist, WatchlistList
from market.calendar import iso_ms


@dataclass(slots=True)
class WatchlistRecord:
    symbols: list[str]
    updated_at: float


class MemoryWatchlists:
    def __init__(self, served: set[str], clock: Callable[[], float] = time.time) -> None:
        self._served = served
        self._clock = clock
        self.records: dict[tuple[str, str], WatchlistRecord] = {}

    @staticmethod
    def _wire(name: str, record: WatchlistRecord) -> Watchlist:
        return Watchlist(
            name=name, symbols=list(record.symbols), updated_at=iso_ms(record.updated_at)
        )

    async def of_user(self, user_id: str) -> WatchlistList:
        mine = sorted(
            (name, rec) for (owner, name), rec in self.records.items() if owner == user_id
        )
        return WatchlistList(watchlists=[self._wire(name, rec) for name, rec in mine])

    async def get(self, user_id: str, name: str) -> Watchlist:
        record = self.records.get((user_id, name))
        if record is None:
            raise NotFound(f"No watchlist named {name!r}")
        return self._wire(name, record)

    async def put(self, user_id: str, name: str, symbols: list[str]) -> Watchlist:
        cleaned = clean_symbols(symbols, self._served)
        record = self.records.get((user_id, name))
        if record is None or record.symbols != cleaned:
            record = WatchlistRecord(symbols=cleaned, updated_at=self._clock())
            self.records[(user_id, name)] = record
        return self._wire(name, record)

    async def delete(self, user_id: str, name: str) -> None:
        if self.records.pop((user_id, name), None) is None:
            raise NotFound(f"No watchlist named {name!r}")

    def replace(self, records: dict[tuple[str, str], WatchlistRecord]) -> None:
        """Hold exactly these watchlists ((user id, name) -> record): the rollback's rebuild."""
        self.records = dict(records)

    async def delete_user(self, user_id: str) -> None:
        for key in [key for key in self.records if key[0] == user_id]:
            del self.records[key]
