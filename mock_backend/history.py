"""The mock's history: the reference generator, in memory, computed lazily per symbol."""

from __future__ import annotations

import time
from datetime import date

from contract.ports import BaseInterval
from contract.types import DataInfo
from contract.universe import UNIVERSE, Listing
from market.bars import Bars
from market.feed import live_price
from market.history import daily_history, intraday_history


class GeneratedHistory:
    """A `HistoryPort` over `market.history`: the same seed and as-of date as production's load."""

    def __init__(self, seed: int, asof: date, feed: bool) -> None:
        self.seed = seed
        self.asof = asof
        self.feed = feed
        self._listings = sorted(UNIVERSE, key=lambda item: item.symbol)
        self._symbols = {item.symbol for item in self._listings}

    def listings(self) -> list[Listing]:
        return list(self._listings)

    def data_info(self) -> DataInfo:
        return DataInfo(source="synthetic", seed=self.seed, asof=self.asof.isoformat())

    def data_version(self) -> str:
        # The generator is a pure function of seed and as-of date: they are the whole version.
        return f"{self.seed}:{self.asof.isoformat()}"

    async def bars(self, symbol: str, base: BaseInterval) -> Bars:
        if symbol not in self._symbols:
            return Bars.empty()
        if base == "1d":
            return daily_history(self.seed, symbol, self.asof)
        return intraday_history(self.seed, symbol, self.asof)

    async def live_price(self, symbol: str) -> float | None:
        if not self.feed or symbol not in self._symbols:
            return None
        daily = daily_history(self.seed, symbol, self.asof)
        return live_price(self.seed, symbol, float(daily.close[-1]), time.time())
