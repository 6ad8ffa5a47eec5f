"""OHLCV bars as parallel numpy arrays: the one shape every market function reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Bars:
    """Bars in ascending time order; `time` is epoch seconds (UTC) of each bar's start."""

    time: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: IntArray

    def __len__(self) -> int:
        return int(self.time.shape[0])

    def take(self, index: slice | IntArray) -> Bars:
        """The bars at `index` (a slice or an index array), as a new Bars."""
        return Bars(
            time=self.time[index],
            open=self.open[index],
            high=self.high[index],
            low=self.low[index],
            close=self.close[index],
            volume=self.volume[index],
        )

    @staticmethod
    def empty() -> Bars:
        f = np.empty(0, dtype=np.float64)
        i = np.empty(0, dtype=np.int64)
        return Bars(time=i, open=f, high=f, low=f, close=f, volume=i)

    @staticmethod
    def concat(parts: list[Bars]) -> Bars:
        if not parts:
            return Bars.empty()
        return Bars(
            time=np.concatenate([p.time for p in parts]),
            open=np.concatenate([p.open for p in parts]),
            high=np.concatenate([p.high for p in parts]),
            low=np.concatenate([p.low for p in parts]),
            close=np.concatenate([p.close for p in parts]),
            volume=np.concatenate([p.volume for p in parts]),
        )
