"""Wire types: msgspec Structs with their constraints declared once (validation + OpenAPI).

Naming follows `X` for a resource, `XCreate`/`XUpdate` for what a client sends, `XList` for a
collection. Field names are the JSON keys of CONTRACT.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

# -- shared scalars -------------------------------------------------------------------------

SYMBOL_PATTERN = r"^[A-Za-z0-9.\-^]{1,12}$"
NAME_PATTERN = r"^[A-Za-z0-9 _\-]{1,64}$"
CLIENT_ID_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
# No control characters (a NUL cannot be stored in PostgreSQL text) in what a user types.
EMAIL_PATTERN = r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]{1,190}\.[^@\s\x00-\x1f\x7f]{1,63}$"
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"

Symbol = Annotated[
    str,
    Meta(
        pattern=SYMBOL_PATTERN,
        description="1-12 characters of A-Z 0-9 . - ^ (upper-cased on input)",
        examples=["SPY"],
    ),
]
Price = Annotated[float, Meta(description="price, rounded to 4 decimals")]
Percent = Annotated[float, Meta(description="percent: 0.19 means 0.19 %")]
Confidence = Annotated[float, Meta(ge=0, le=100, description="confidence, percent 0-100")]
Timestamp = Annotated[
    str, Meta(description="ISO-8601 UTC, milliseconds, Z", examples=["2026-11-21T22:18:45.123Z"])
]
EpochSeconds = Annotated[int, Meta(description="epoch seconds, UTC")]
Interval = Literal["5m", "15m", "30m", "1h", "4h", "1d", "1wk", "1mo"]
Timeframe = Literal["5m", "15m", "30m", "1h", "4h", "1d"]
Vote = Literal["BUY", "SELL", "HOLD"]
WatchlistName = Annotated[
    str, Meta(pattern=NAME_PATTERN, description="1-64 letters, digits, space, _ or -")
]


class Error(Struct, omit_defaults=True):
    """Every error answer: the shape of Litestar's validation errors."""

    status_code: int
    detail: str
    extra: list[ErrorField] | None = None


class ErrorField(Struct, omit_defaults=True):
    key: str
    message: str
    source: str | None = None


# -- health and symbols ---------------------------------------------------------------------


class HealthChecks(Struct):
    database: Literal["ok", "down", "n/a"]
    cache: Literal["ok", "down", "n/a"]
    feed: Literal["ok", "down", "n/a"]


class DataInfo(Struct):
    source: Literal["synthetic", "csv", "provider"]
    seed: int | None
    asof: Annotated[str, Meta(pattern=DATE_PATTERN)]


class Health(Struct):
    status: Literal["ok", "degraded", "down"]
    backend: Literal["mock", "production"]
    version: str
    checks: HealthChecks
    data: DataInfo
    timestamp: Timestamp


class SymbolInfo(Struct):
    symbol: str
    name: str
    sector: str
    exchange: str


class SymbolList(Struct):
    symbols: list[SymbolInfo]
    count: int


# -- market data ----------------------------------------------------------------------------


class Quote(Struct):
    symbol: str
    price: Price
    change: Price
    change_percent: Percent
    volume: int
    open: Price
    high: Price
    low: Price
    previous_close: Price
    bid: Price
    ask: Price
    timestamp: Timestamp


class QuotesRequest(Struct, forbid_unknown_fields=True):
    symbols: Annotated[list[Symbol], Meta(min_length=1, max_length=50)]


class QuoteBatch(Struct):
    quotes: list[Quote]
    missing: list[str]


class Candle(Struct, array_like=False):
    time: EpochSeconds
    open: Price
    high: Price
    low: Price
    close: Price
    volume: int


class Historical(Struct):
    symbol: str
    period: str
    interval: Interval
    data: list[Candle]


class IndicatorPoint(Struct):
    time: EpochSeconds
    sma_20: float | None
    sma_50: float | None
    sma_200: float | None
    ema_12: float | None
    ema_26: float | None
    rsi_14: float | None
    macd: float | None
    macd_signal: float | None
    macd_hist: float | None
    bb_upper: float | None
    bb_middle: float | None
    bb_lower: float | None
    atr_14: float | None
    volume_ratio: float | None


class IndicatorSeries(Struct):
    symbol: str
    period: str
    interval: Interval
    data: list[IndicatorPoint]


# -- signals --------------------------------------------------------------------------------


class AgentVote(Struct):
    agent: str
    vote: Vote
    confidence: Confidence


class SignalIndicators(Struct):
    rsi_14: float | None
    macd_hist: float | None
    trend: Literal["up", "down", "flat"]
    volume_ratio: float | None


class Signal(Struct):
    id: Annotated[str, Meta(description="{SYMBOL}-{timeframe}-{bar epoch seconds}")]
    symbol: str
    type: Vote
    confidence: Confidence
    entry: Price
    stop_loss: Price
    take_profit: Price
    timeframe: Timeframe
    risk: Literal["LOW", "MEDIUM", "HIGH"]
    pattern: str
    reasoning: list[str]
    agents: list[AgentVote]
    indicators: SignalIndicators
    timestamp: Annotated[Timestamp, Meta(description="the time of the bar the signal is for")]


class SignalList(Struct):
    signals: list[Signal]
    count: int


class SymbolSignals(Struct):
    symbol: str
    signals: list[Signal]
    count: int


class GenerateSignal(Struct, forbid_unknown_fields=True):
    symbol: Symbol
    timeframe: Timeframe = "1d"


class GeneratedSignal(Struct):
    signal: Signal


class OptionsTarget(Struct):
    price: Price
    exit_pct: Percent


class OptionsSignal(Struct):
    id: str
    signal_id: str
    symbol: str
    type: Literal["CALL", "PUT"]
    confidence: Confidence
    priority: Literal["HIGH", "MEDIUM", "LOW"]
    strike_price: Price
    expiration_date: Annotated[str, Meta(pattern=DATE_PATTERN)]
    entry_price: Price
    entry_zone: Annotated[list[float], Meta(min_length=2, max_length=2)]
    stop_loss: Price
    targets: list[OptionsTarget]
    risk_reward_ratio: float
    hold_duration: str
    setup_name: str
    key_indicators: dict[str, float | str | None]
    exit_rules: list[str]
    timestamp: Timestamp


class OptionsSignals(Struct):
    symbol: str
    timeframe: Timeframe
    signals: list[OptionsSignal]


class Sentiment(Struct):
    score: Annotated[float, Meta(ge=-1, le=1)]
    label: Literal["very_bearish", "bearish", "neutral", "bullish", "very_bullish"]


class TechnicalView(Struct):
    rsi_14: float | None
    macd_state: Literal["bullish_crossover", "bearish_crossover", "bullish", "bearish", "neutral"]
    support: Annotated[list[float], Meta(min_length=3, max_length=3)]
    resistance: Annotated[list[float], Meta(min_length=3, max_length=3)]


class Prediction(Struct):
    target_price: Price
    horizon_days: int
    confidence: Confidence


class RiskView(Struct):
    volatility: Annotated[float, Meta(description="annualised, a fraction (0.25)")]
    max_drawdown: Annotated[Percent, Meta(description="peak-to-trough fall, a positive percent")]
    sharpe_ratio: float


class Insights(Struct):
    signal_id: str
    symbol: str
    sentiment: Sentiment
    technical: TechnicalView
    prediction: Prediction
    risk: RiskView
    summary: str


class Opportunity(Struct):
    id: str
    symbol: str
    name: str
    type: Literal["CALL", "PUT"]
    confidence: Confidence
    potential_return: Percent
    timeframe: Timeframe
    key_reason: str
    momentum: Literal["strong", "moderate", "building"]
    ai_score: Annotated[int, Meta(ge=0, le=100)]
    sector: str
    volume: int
    volatility: float
    current_price: Price


class Opportunities(Struct):
    opportunities: list[Opportunity]
    timestamp: Timestamp


class Agent(Struct):
    name: str
    type: Literal["technical"]
    status: Literal["active", "idle", "error"]
    description: str
    accuracy: Percent
    total_signals: int
    correct_signals: int
    avg_confidence: Confidence
    last_signal_at: Timestamp | None


class AgentList(Struct):
    agents: list[Agent]


# -- strategies and backtests ---------------------------------------------------------------


class StrategyParam(Struct):
    # `float` stands for any JSON number here: an int is a number too, and `int | float` would
    # become a `oneOf` that an integer matches twice.
    type: Literal["int", "float", "bool"]
    default: float | bool
    min: float | None = None
    max: float | None = None


class Strategy(Struct):
    name: str
    description: str
    params: dict[str, StrategyParam]


class StrategyList(Struct):
    strategies: list[Strategy]


class BacktestCreate(Struct, forbid_unknown_fields=True, omit_defaults=True):
    symbol: Symbol
    strategy: Annotated[str, Meta(min_length=1, max_length=64)]
    start: Annotated[str, Meta(pattern=DATE_PATTERN, description="first day, YYYY-MM-DD")]
    end: Annotated[str, Meta(pattern=DATE_PATTERN, description="last day, YYYY-MM-DD")]
    params: Annotated[
        dict[str, Any],
        Meta(description="strategy parameters; GET /api/v1/strategies declares each"),
    ] = msgspec.field(default_factory=dict)
    initial_capital: Annotated[float, Meta(ge=100, le=1_000_000_000)] = 10_000.0
    id: (
        Annotated[
            str,
            Meta(
                pattern=CLIENT_ID_PATTERN,
                description="client id: the same id and body again is the same backtest",
            ),
        ]
        | None
    ) = None


class BacktestRequest(Struct):
    """The request as stored: normalised (symbol upper-cased, params with defaults)."""

    symbol: str
    strategy: str
    start: str
    end: str
    params: dict[str, int | float | bool]
    initial_capital: float


class Trade(Struct):
    entry_time: EpochSeconds
    exit_time: EpochSeconds
    side: Literal["long", "short"]
    entry_price: Price
    exit_price: Price
    return_pct: Percent


class EquityPoint(Struct):
    time: EpochSeconds
    equity: float


class BacktestResult(Struct):
    total_return: Percent
    cagr: Percent
    sharpe: float
    max_drawdown: Percent
    win_rate: Percent
    trade_count: int
    trades: list[Trade]
    equity_curve: list[EquityPoint]


BacktestStatus = Literal["queued", "running", "done", "failed", "cancelled"]


class BacktestAccepted(Struct):
    id: str
    status: BacktestStatus


class BacktestSummary(Struct):
    id: str
    status: BacktestStatus
    request: BacktestRequest
    created_at: Timestamp


class BacktestList(Struct):
    backtests: list[BacktestSummary]


class Backtest(Struct, omit_defaults=True):
    id: str
    status: BacktestStatus
    request: BacktestRequest
    created_at: Timestamp
    result: BacktestResult | None = None
    error: str | None = None


# -- users and auth -------------------------------------------------------------------------

Email = Annotated[str, Meta(pattern=EMAIL_PATTERN, max_length=254, description="an email address")]
Password = Annotated[str, Meta(min_length=10, max_length=128, description="10-128 characters")]


class UserCreate(Struct, forbid_unknown_fields=True):
    email: Email
    password: Password
    name: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=64,
            pattern=TEXT_PATTERN,
            description="1-64 characters, no control characters",
        ),
    ]


class User(Struct):
    id: str
    email: str
    name: str
    created_at: Timestamp


class UserEnvelope(Struct):
    user: User


class LoginRequest(Struct, forbid_unknown_fields=True):
    email: Annotated[str, Meta(min_length=3, max_length=254, pattern=TEXT_PATTERN)]
    password: Annotated[str, Meta(min_length=1, max_length=128)]


class RefreshRequest(Struct, forbid_unknown_fields=True):
    refresh_token: Annotated[str, Meta(min_length=1, max_length=4096)]


class TokenPair(Struct):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"]
    expires_in: int
    user: User


# -- watchlists -----------------------------------------------------------------------------


class WatchlistUpdate(Struct, forbid_unknown_fields=True):
    symbols: Annotated[list[Symbol], Meta(max_length=100)]


class Watchlist(Struct):
    name: str
    symbols: list[str]
    updated_at: Timestamp


class WatchlistList(Struct):
    watchlists: list[Watchlist]


# -- WebSocket frames -----------------------------------------------------------------------


class Frame(Struct):
    """Every WebSocket frame, both ways."""

    type: str
    data: dict[str, object]
    timestamp: Timestamp
