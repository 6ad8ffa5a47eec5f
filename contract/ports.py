"""Service ports: what the route layer needs from a backend, as `typing.Protocol`s.

The routes depend only on these. Each backend supplies adapters (memory in the mock; PostgreSQL
and Redis in production). Reads that are pure functions of the stored history are implemented
once, in `contract.reads`, over the small `HistoryPort`, so both backends give the same answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

from contract.types import (
    AgentList,
    Backtest,
    BacktestAccepted,
    BacktestCreate,
    BacktestList,
    DataInfo,
    Health,
    Historical,
    IndicatorSeries,
    Insights,
    LoginRequest,
    Opportunities,
    OptionsSignals,
    Quote,
    QuoteBatch,
    Signal,
    SignalList,
    StrategyList,
    SymbolList,
    SymbolSignals,
    TokenPair,
    User,
    UserCreate,
    Watchlist,
    WatchlistList,
)
from contract.universe import Listing
from market.bars import Bars

BaseInterval = Literal["5m", "1d"]


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: the token's subject and its claims."""

    user_id: str
    email: str
    jti: str


class HistoryPort(Protocol):
    """The stored history: the one thing the two backends hold differently."""

    def listings(self) -> list[Listing]:
        """The served universe, sorted by symbol."""
        ...

    def data_info(self) -> DataInfo: ...

    def data_version(self) -> str:
        """A tag that changes whenever the stored bars may have changed (a new load); computed
        reads are cached under it, so a reload is answered without a restart."""
        ...

    async def bars(self, symbol: str, base: BaseInterval) -> Bars:
        """The whole stored history of `symbol` at a base interval; empty when none."""
        ...

    async def live_price(self, symbol: str) -> float | None:
        """The latest live tick, or None when no feed runs."""
        ...


class MarketPort(Protocol):
    async def health(self) -> Health: ...
    async def symbols(self) -> SymbolList: ...
    async def quote(self, symbol: str) -> Quote: ...
    async def quotes(self, symbols: list[str]) -> QuoteBatch: ...
    async def historical(self, symbol: str, period: str, interval: str) -> Historical: ...
    async def indicators(self, symbol: str, period: str, interval: str) -> IndicatorSeries: ...


class SignalPort(Protocol):
    async def signals(
        self, symbols: list[str] | None, timeframe: str, limit: int, min_confidence: float
    ) -> SignalList: ...
    async def symbol_signals(self, symbol: str, timeframe: str) -> SymbolSignals: ...
    async def options(self, symbol: str, timeframe: str) -> OptionsSignals: ...
    async def insights(self, signal_id: str) -> Insights: ...
    async def generate(self, symbol: str, timeframe: str) -> Signal: ...
    async def opportunities(self, limit: int) -> Opportunities: ...
    async def agents(self) -> AgentList: ...
    async def strategies(self) -> StrategyList: ...


class UserPort(Protocol):
    async def register(self, data: UserCreate) -> User: ...
    async def login(self, data: LoginRequest, client: str) -> TokenPair: ...
    async def refresh(self, refresh_token: str) -> TokenPair: ...
    async def authenticate(self, access_token: str) -> Principal:
        """Raises Unauthorized for a bad, expired, revoked or orphaned token."""
        ...

    async def logout(self, principal: Principal) -> None: ...
    async def me(self, principal: Principal) -> User: ...
    async def delete(self, principal: Principal) -> None: ...


class WatchlistPort(Protocol):
    async def of_user(self, user_id: str) -> WatchlistList: ...
    async def get(self, user_id: str, name: str) -> Watchlist: ...
    async def put(self, user_id: str, name: str, symbols: list[str]) -> Watchlist: ...
    async def delete(self, user_id: str, name: str) -> None: ...


class BacktestPort(Protocol):
    async def submit(self, user_id: str, data: BacktestCreate) -> BacktestAccepted: ...
    async def of_user(self, user_id: str) -> BacktestList: ...
    async def get(self, user_id: str, backtest_id: str) -> Backtest: ...
    async def cancel(self, user_id: str, backtest_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int


class RateLimitPort(Protocol):
    async def hit(self, key: str, limit: int, window_seconds: int) -> RateDecision:
        """Count one event for `key` and say whether it is within `limit` per window."""
        ...

    async def peek(self, key: str, limit: int, window_seconds: int) -> RateDecision:
        """The state of `key` without counting."""
        ...

    async def release(self, key: str, window_seconds: int) -> None:
        """Give back one event `hit` counted in the current window (it turned out not to count,
        e.g. a login attempt that succeeded); never below zero."""
        ...


@dataclass(frozen=True, slots=True)
class Limits:
    """Rate limits: per user (else per address) for the API, failed logins for auth."""

    per_minute: int = 1200
    login_per_account: int = 10
    login_per_address: int = 100
    login_window_seconds: int = 15 * 60


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """A push for the WebSocket: `type` is the frame type, `data` its payload."""

    type: Literal["market_data", "signal"]
    channel: Literal["market_data", "signals"]
    symbol: str
    data: object


class LiveSession(Protocol):
    """One WebSocket connection's subscriptions and the events they yield."""

    async def subscribe(self, channel: str, symbol: str) -> None: ...
    async def unsubscribe(self, channel: str, symbol: str) -> None: ...
    def events(self) -> AsyncIterator[LiveEvent]: ...
    async def close(self) -> None: ...


class LivePort(Protocol):
    async def open_session(self) -> LiveSession: ...
    async def publish(self, event: LiveEvent) -> None:
        """Send an event to every subscriber of its channel and symbol (on every worker)."""
        ...


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a backend plugs into the shared route layer."""

    backend: Literal["mock", "production"]
    market: MarketPort
    signals: SignalPort
    users: UserPort
    watchlists: WatchlistPort
    backtests: BacktestPort
    live: LivePort
    limiter: RateLimitPort
    secret_key: str
    limits: Limits = Limits()
    trusted_proxies: frozenset[str] = frozenset({"127.0.0.1", "::1"})
    ws_max_subscriptions: int = 100
