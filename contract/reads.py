"""Reads that are pure functions of the stored history, implemented once for both backends.

`HistoryReads` implements the market and signal ports over a `HistoryPort`: the mock gives it the
generator's history, production gives it PostgreSQL's. Whatever the two hold alike, they answer
alike, by construction. Backtest validation and computation live here for the same reason.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import msgspec

from contract import CONTRACT_VERSION
from contract.errors import FieldError, NotFound
from contract.ports import BaseInterval, HistoryPort
from contract.types import (
    SYMBOL_PATTERN,
    Agent,
    AgentList,
    BacktestCreate,
    BacktestRequest,
    BacktestResult,
    Candle,
    Health,
    HealthChecks,
    Historical,
    IndicatorPoint,
    IndicatorSeries,
    Insights,
    Opportunities,
    Opportunity,
    OptionsSignal,
    OptionsSignals,
    Quote,
    QuoteBatch,
    Signal,
    SignalList,
    Strategy,
    StrategyList,
    StrategyParam,
    SymbolInfo,
    SymbolList,
    SymbolSignals,
)
from market import accuracy, calendar, insights, opportunities, options, signals, strategies
from market.backtest import run_backtest
from market.bars import Bars
from market.indicators import INDICATOR_NAMES, IndicatorFrame, compute_indicators
from market.quotes import build_quote

T = TypeVar("T")
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
_CACHE_SIZE = 512


def normalise_symbol(raw: str, key: str = "symbol", source: str = "path") -> str:
    """Upper-case a symbol; a malformed one is a 422 naming `key`."""
    if not _SYMBOL_RE.match(raw):
        raise FieldError(key, f"{raw!r} is not a symbol: 1-12 characters of A-Z 0-9 . - ^", source)
    return raw.upper()


def clean_symbols(raw: list[str], served: set[str]) -> list[str]:
    """A watchlist's symbols: upper-cased, served, duplicates dropped with order kept; a 422
    naming the bad item otherwise."""
    symbols: list[str] = []
    for index, item in enumerate(raw):
        symbol = normalise_symbol(item, f"symbols[{index}]", "body")
        if symbol not in served:
            raise FieldError(
                f"symbols[{index}]", f"{symbol} is not served; see /api/v1/symbols", "body"
            )
        if symbol not in symbols:
            symbols.append(symbol)
    return symbols


def to_struct(value: object, kind: type[T]) -> T:
    """A market/ result (dataclasses with wire names) as its contract Struct."""
    return msgspec.convert(value, kind, from_attributes=True)


def _round(value: float, digits: int = 4) -> float | None:
    return None if value != value else round(float(value), digits)  # NaN -> None


class HistoryReads:
    """The market and signal ports, computed with market/ over a history port."""

    def __init__(
        self,
        history: HistoryPort,
        backend: str,
        checks: Callable[[], Awaitable[HealthChecks]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._history = history
        self._backend = backend
        self._checks = checks
        self._clock = clock
        self._cache: OrderedDict[tuple[object, ...], object] = OrderedDict()
        self._pending: dict[tuple[object, ...], anyio.Event] = {}

    # -- plumbing ---------------------------------------------------------------------------

    def _served(self) -> dict[str, Any]:
        return {listing.symbol: listing for listing in self._history.listings()}

    def _check_served(self, symbol: str) -> None:
        if symbol not in self._served():
            raise NotFound(f"Symbol {symbol} is not served; GET /api/v1/symbols lists them")

    async def _memo(self, key: tuple[object, ...], make: Callable[[], T]) -> T:
        """Compute `make` in a worker thread once per key.

        Every caller puts the history's data version (read before the bars it computes on) in
        the key, so a reload is computed afresh even when its last bar equals the old one.

        Concurrent callers of a key being computed wait for the one computation.
        """
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]  # type: ignore[return-value]
        pending = self._pending.get(key)
        if pending is not None:
            await pending.wait()
            if key in self._cache:
                return self._cache[key]  # type: ignore[return-value]
        done = self._pending[key] = anyio.Event()
        try:
            value = await anyio.to_thread.run_sync(make)
            self._cache[key] = value
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        finally:
            del self._pending[key]
            done.set()
        return value

    async def series(self, symbol: str, interval: str) -> tuple[Bars, IndicatorFrame]:
        """Bars of `symbol` aggregated to `interval`, with indicators over the whole history."""
        base: BaseInterval = "5m" if calendar.base_interval(interval) == "5m" else "1d"
        data_version = self._history.data_version()
        raw = await self._history.bars(symbol, base)
        if len(raw) == 0:
            raise NotFound(f"No {base} history is stored for {symbol}")
        version = (data_version, symbol, interval, len(raw), int(raw.time[-1]))

        def make() -> tuple[Bars, IndicatorFrame]:
            bars = calendar.aggregate(raw, interval)
            return bars, compute_indicators(bars)

        return await self._memo(("series", *version), make)

    def _window(self, period_text: str, interval: str) -> calendar.Period:
        try:
            calendar.check_interval(interval)
            period = calendar.parse_period(period_text)
            calendar.check_combination(period, interval)
        except calendar.CalendarError as exc:
            raise FieldError(exc.field, f"{exc}", "query") from exc
        return period

    async def _windowed(
        self, symbol: str, period_text: str, interval: str
    ) -> tuple[Bars, IndicatorFrame, int]:
        symbol_ok = normalise_symbol(symbol)
        period = self._window(period_text, interval)
        self._check_served(symbol_ok)
        bars, ind = await self.series(symbol_ok, interval)
        start = calendar.window_start(int(bars.time[-1]), period)
        first = 0 if start is None else int((bars.time <= start).sum())
        count = len(bars) - first
        if count > calendar.MAX_CANDLES:
            raise FieldError(
                "period",
                f"{period_text} at {interval} is {count} candles; at most "
                f"{calendar.MAX_CANDLES} are served: choose a shorter period or a larger interval",
            )
        return bars, ind, first

    async def _versioned(self, symbol: str, interval: str) -> tuple[str, Bars, IndicatorFrame]:
        """`series` with the data version it was read under, for keys of results built on it."""
        data_version = self._history.data_version()
        bars, ind = await self.series(symbol, interval)
        return data_version, bars, ind

    async def _with_history(self, interval: str) -> list[str]:
        """The served symbols that have the history `interval` needs: a list answer skips the
        others (a symbol loaded at one base interval only) rather than failing as a whole."""
        found = []
        for listing in sorted(self._history.listings(), key=lambda item: item.symbol):
            try:
                await self.series(listing.symbol, interval)
            except NotFound:
                continue
            found.append(listing.symbol)
        return found

    async def warm(self) -> None:
        """Compute what every symbol's first read needs, so first requests answer fast."""
        await self._with_history("1d")
        await self.opportunities(1)
        await self.agents()

    # -- market -----------------------------------------------------------------------------

    async def health(self) -> Health:
        checks = await self._checks()
        status = "ok"
        if checks.database == "down":
            status = "down"
        elif checks.cache == "down" or checks.feed == "down":
            status = "degraded"
        return Health(
            status=status,  # type: ignore[arg-type]
            backend=self._backend,  # type: ignore[arg-type]
            version=CONTRACT_VERSION,
            checks=checks,
            data=self._history.data_info(),
            timestamp=calendar.iso_ms(self._clock()),
        )

    async def symbols(self) -> SymbolList:
        listings = sorted(self._history.listings(), key=lambda item: item.symbol)
        return SymbolList(
            symbols=[SymbolInfo(*listing) for listing in listings], count=len(listings)
        )

    async def _quote(self, symbol: str) -> Quote:
        daily = await self._history.bars(symbol, "1d")
        if len(daily) < 2:
            raise NotFound(f"No daily history is stored for {symbol}")
        price = await self._history.live_price(symbol)
        return to_struct(build_quote(symbol, daily, price, self._clock()), Quote)

    async def quote(self, symbol: str) -> Quote:
        symbol = normalise_symbol(symbol)
        self._check_served(symbol)
        return await self._quote(symbol)

    async def quotes(self, symbols: list[str]) -> QuoteBatch:
        served = self._served()
        found: list[Quote] = []
        missing: list[str] = []
        for index, raw in enumerate(symbols):
            symbol = normalise_symbol(raw, f"symbols[{index}]", "body")
            if symbol in served:
                if all(quote.symbol != symbol for quote in found):
                    found.append(await self._quote(symbol))
            elif symbol not in missing:
                missing.append(symbol)
        return QuoteBatch(quotes=found, missing=missing)

    async def historical(self, symbol: str, period: str, interval: str) -> Historical:
        bars, _, first = await self._windowed(symbol, period, interval)
        window = bars.take(slice(first, None))
        candles = [
            Candle(time=t, open=o, high=h, low=lo, close=c, volume=v)
            for t, o, h, lo, c, v in zip(
                window.time.tolist(),
                window.open.tolist(),
                window.high.tolist(),
                window.low.tolist(),
                window.close.tolist(),
                window.volume.tolist(),
                strict=True,
            )
        ]
        return Historical(
            symbol=symbol.upper(),
            period=period,
            interval=interval,  # type: ignore[arg-type]
            data=candles,
        )

    async def indicators(self, symbol: str, period: str, interval: str) -> IndicatorSeries:
        bars, ind, first = await self._windowed(symbol, period, interval)
        columns = [getattr(ind, name)[first:].tolist() for name in INDICATOR_NAMES]
        points = []
        for offset, moment in enumerate(bars.time[first:].tolist()):
            values = {
                name: _round(col[offset])
                for name, col in zip(INDICATOR_NAMES, columns, strict=True)
            }
            points.append(IndicatorPoint(time=moment, **values))
        return IndicatorSeries(
            symbol=symbol.upper(),
            period=period,
            interval=interval,  # type: ignore[arg-type]
            data=points,
        )

    # -- signals ----------------------------------------------------------------------------

    async def _latest(self, symbol: str, timeframe: str) -> Signal:
        version, bars, ind = await self._versioned(symbol, timeframe)
        key = ("latest", version, symbol, timeframe, len(bars), int(bars.time[-1]))
        result = await self._memo(key, lambda: signals.latest_signal(symbol, timeframe, bars, ind))
        return to_struct(result, Signal)

    async def signals(
        self, symbols: list[str] | None, timeframe: str, limit: int, min_confidence: float
    ) -> SignalList:
        served = self._served()
        wanted = await self._with_history(timeframe) if not symbols else []
        if symbols:
            wanted = []
            for index, raw in enumerate(symbols):
                symbol = normalise_symbol(raw, "symbols", "query")
                if symbol not in served:
                    raise FieldError(
                        "symbols", f"{symbol} (item {index}) is not served; see /api/v1/symbols"
                    )
                if symbol not in wanted:
                    wanted.append(symbol)
        found = [await self._latest(symbol, timeframe) for symbol in wanted]
        ranked = [s for s in found if s.confidence >= min_confidence]
        ranked.sort(key=lambda s: (-s.confidence, s.symbol))
        ranked = ranked[:limit]
        return SignalList(signals=ranked, count=len(ranked))

    async def symbol_signals(self, symbol: str, timeframe: str) -> SymbolSignals:
        symbol = normalise_symbol(symbol)
        self._check_served(symbol)
        version, bars, ind = await self._versioned(symbol, timeframe)
        key = ("recent", version, symbol, timeframe, len(bars), int(bars.time[-1]))
        results = await self._memo(
            key, lambda: signals.recent_signals(symbol, timeframe, bars, ind)
        )
        found = [to_struct(result, Signal) for result in results]
        return SymbolSignals(symbol=symbol, signals=found, count=len(found))

    async def options(self, symbol: str, timeframe: str) -> OptionsSignals:
        symbol = normalise_symbol(symbol, "symbol", "query")
        self._check_served(symbol)
        version, bars, ind = await self._versioned(symbol, timeframe)
        key = ("options", version, symbol, timeframe, len(bars), int(bars.time[-1]))
        results = await self._memo(
            key, lambda: options.options_signals(symbol, timeframe, bars, ind)
        )
        return OptionsSignals(
            symbol=symbol,
            timeframe=timeframe,  # type: ignore[arg-type]
            signals=[to_struct(result, OptionsSignal) for result in results],
        )

    async def insights(self, signal_id: str) -> Insights:
        parsed = signals.parse_signal_id(signal_id)
        unknown = NotFound(f"Unknown signal id {signal_id!r}")
        if parsed is None:
            raise unknown
        symbol, timeframe, moment = parsed
        if symbol not in self._served() or timeframe not in signals.SIGNAL_TIMEFRAMES:
            raise unknown
        version, bars, ind = await self._versioned(symbol, timeframe)
        matches = (bars.time == moment).nonzero()[0]
        if matches.size == 0:
            raise unknown
        index = int(matches[0])

        def make() -> object:
            signal = signals.signal_at(symbol, timeframe, bars, ind, index)
            return insights.insights_at(signal, bars, ind, index)

        result = await self._memo(("insights", version, signal_id, len(bars)), make)
        return to_struct(result, Insights)

    async def generate(self, symbol: str, timeframe: str) -> Signal:
        symbol = normalise_symbol(symbol, "symbol", "body")
        if symbol not in self._served():
            raise FieldError("symbol", f"{symbol} is not served; see /api/v1/symbols", "body")
        return await self._latest(symbol, timeframe)

    async def opportunities(self, limit: int) -> Opportunities:
        candidates = []
        served = self._served()
        for symbol in await self._with_history("1d"):
            listing = served[symbol]
            version, bars, ind = await self._versioned(symbol, "1d")
            latest = await self._memo(
                ("latest", version, symbol, "1d", len(bars), int(bars.time[-1])),
                lambda bars=bars, ind=ind, s=symbol: signals.latest_signal(  # type: ignore[misc]
                    s, "1d", bars, ind
                ),
            )
            candidates.append(
                opportunities.OpportunityInput(
                    symbol=symbol,
                    name=listing.name,
                    sector=listing.sector,
                    bars=bars,
                    ind=ind,
                    signal=latest,
                )
            )
        found = opportunities.opportunities(candidates, limit)
        return Opportunities(
            opportunities=[to_struct(item, Opportunity) for item in found],
            timestamp=calendar.iso_ms(self._clock()),
        )

    async def agents(self) -> AgentList:
        histories = []
        data_version = self._history.data_version()
        versions: list[object] = []
        for symbol in await self._with_history("1d"):
            bars, ind = await self.series(symbol, "1d")
            histories.append((bars, ind))
            versions.append((symbol, len(bars), int(bars.time[-1])))
        stats = await self._memo(
            ("agents", data_version, tuple(versions)), lambda: accuracy.agent_stats(histories)
        )
        return AgentList(agents=[to_struct(item, Agent) for item in stats])

    async def strategies(self) -> StrategyList:
        return StrategyList(
            strategies=[
                Strategy(
                    name=spec.name,
                    description=spec.description,
                    params={
                        name: StrategyParam(
                            type=param.type, default=param.default, min=param.min, max=param.max
                        )
                        for name, param in spec.params.items()
                    },
                )
                for spec in strategies.STRATEGIES.values()
            ]
        )

    # -- backtests --------------------------------------------------------------------------

    async def prepare_backtest(self, data: BacktestCreate) -> BacktestRequest:
        """Validate a backtest request against the served history; 422 naming the field."""
        symbol = normalise_symbol(data.symbol, "symbol", "body")
        if symbol not in self._served():
            raise FieldError("symbol", f"{symbol} is not served; see /api/v1/symbols", "body")
        try:
            params = strategies.validate_params(data.strategy, dict(data.params))
        except strategies.ParamError as exc:
            raise FieldError(exc.field, str(exc), "body") from exc
        start = _parse_day(data.start, "start")
        end = _parse_day(data.end, "end")
        if end <= start:
            raise FieldError("end", f"end {data.end} must be after start {data.start}", "body")
        daily = await self._history.bars(symbol, "1d")
        if len(daily) == 0:
            raise FieldError("symbol", f"no daily history is stored for {symbol}", "body")
        first, last = _day_of(int(daily.time[0])), _day_of(int(daily.time[-1]))
        if start < first or end > last:
            raise FieldError(
                "start" if start < first else "end",
                f"the stored history of {symbol} runs from {first} to {last}",
                "body",
            )
        return BacktestRequest(
            symbol=symbol,
            strategy=data.strategy,
            start=data.start,
            end=data.end,
            params=params,
            initial_capital=float(data.initial_capital),
        )

    async def compute_backtest(self, request: BacktestRequest) -> BacktestResult:
        """Run a validated backtest over the daily history (in a worker thread)."""
        daily = await self._history.bars(request.symbol, "1d")
        start = _epoch(_parse_day(request.start, "start"))
        end = _epoch(_parse_day(request.end, "end"))

        def make() -> object:
            return run_backtest(
                daily,
                request.strategy,
                dict(request.params),
                request.initial_capital,
                start,
                end,
            )

        try:
            result = await anyio.to_thread.run_sync(make)
        except strategies.ParamError as exc:
            raise FieldError(exc.field, str(exc), "body") from exc
        return to_struct(result, BacktestResult)


def _parse_day(text: str, key: str) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError as exc:
        raise FieldError(key, f"{text!r} is not a date: use YYYY-MM-DD", "body") from exc
    return day


def _day_of(epoch: int) -> date:
    return datetime.fromtimestamp(epoch, UTC).date()


def _epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
