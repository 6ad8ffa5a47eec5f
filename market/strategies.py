"""Backtest strategies: declared parameters and a vectorised target position per bar.

A strategy's `positions(bars, params)` says, for every bar, the position wanted after that
bar's close: 1 long, 0 flat, -1 short (only strategies with an `allow_short` parameter go
short). The engine (market.backtest) fills it at the next bar's open.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from market.bars import Bars, FloatArray
from market.indicators import bbands, macd, rsi, sma

Int8Array = NDArray[np.int8]
ParamValue = int | float | bool
Params = Mapping[str, ParamValue]
PositionFunction = Callable[[Bars, Params], Int8Array]


class ParamError(ValueError):
    """A bad strategy name or parameter; `field` names it as the request does ("params.fast")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """A parameter's type ("int", "float" or "bool"), default and inclusive range."""

    type: Literal["int", "float", "bool"]
    default: ParamValue
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True, slots=True)
class StrategySpec:
    """A strategy as `GET /strategies` lists it, with its position function."""

    name: str
    description: str
    params: dict[str, ParamSpec]
    positions: PositionFunction


def _int(params: Params, name: str) -> int:
    return int(params[name])


def _float(params: Params, name: str) -> float:
    return float(params[name])


def _hold_between(enter: np.ndarray, leave: np.ndarray) -> Int8Array:
    """1 from each bar where `enter` holds until the next bar where `leave` holds, else 0.

    A stateful long/flat switch without a loop: each bar takes the state of the latest event
    at or before it (entering wins when both happen on the same bar).
    """
    n = enter.shape[0]
    event = np.where(enter, 1, np.where(leave, 0, -1))
    idx = np.where(event >= 0, np.arange(n), -1)
    last = np.maximum.accumulate(idx) if n else idx
    state = np.where(last >= 0, event[np.maximum(last, 0)], 0)
    return state.astype(np.int8)


def _switch(long: np.ndarray, short: np.ndarray, allow_short: bool) -> Int8Array:
    position = np.where(long, 1, np.where(short & allow_short, -1, 0))
    return position.astype(np.int8)


def _defined(*arrays: FloatArray) -> np.ndarray:
    ok = np.ones(arrays[0].shape[0], dtype=bool)
    for a in arrays:
        ok &= np.isfinite(a)
    return ok


def buy_and_hold(bars: Bars, params: Params) -> Int8Array:
    """Long on every bar."""
    return np.ones(len(bars), dtype=np.int8)


def sma_crossover(bars: Bars, params: Params) -> Int8Array:
    """Long while SMA(fast) is above SMA(slow); short below it when allow_short."""
    fast = sma(bars.close, _int(params, "fast"))
    slow = sma(bars.close, _int(params, "slow"))
    ok = _defined(fast, slow)
    return _switch(ok & (fast > slow), ok & (fast < slow), bool(params["allow_short"]))


def rsi_reversion(bars: Bars, params: Params) -> Int8Array:
    """Buy when RSI(period) drops under `lower`, sell when it rises over `upper`."""
    r = rsi(bars.close, _int(params, "period"))
    ok = np.isfinite(r)
    return _hold_between(ok & (r < _float(params, "lower")), ok & (r > _float(params, "upper")))


def macd_trend(bars: Bars, params: Params) -> Int8Array:
    """Long while the MACD line is above its signal line; short below it when allow_short."""
    line, signal, _ = macd(
        bars.close, _int(params, "fast"), _int(params, "slow"), _int(params, "signal")
    )
    ok = _defined(line, signal)
    return _switch(ok & (line > signal), ok & (line < signal), bool(params["allow_short"]))


def bollinger_reversion(bars: Bars, params: Params) -> Int8Array:
    """Buy a close under the lower band, sell once the close is back over the middle band."""
    upper, middle, lower = bbands(bars.close, _int(params, "period"), _float(params, "std_dev"))
    ok = _defined(upper, middle, lower)
    return _hold_between(ok & (bars.close < lower), ok & (bars.close > middle))


STRATEGIES: dict[str, StrategySpec] = {
    spec.name: spec
    for spec in (
        StrategySpec(
            name="buy_and_hold",
            description="Buy at the first open of the window and hold to its last close.",
            params={},
            positions=buy_and_hold,
        ),
        StrategySpec(
            name="sma_crossover",
            description="Long while the fast SMA is above the slow SMA (short below if allowed).",
            params={
                "fast": ParamSpec("int", 20, 5, 100),
                "slow": ParamSpec("int", 50, 10, 300),
                "allow_short": ParamSpec("bool", False),
            },
            positions=sma_crossover,
        ),
        StrategySpec(
            name="rsi_reversion",
            description="Buy when RSI falls under `lower`, sell when it rises over `upper`.",
            params={
                "period": ParamSpec("int", 14, 2, 50),
                "lower": ParamSpec("float", 30.0, 5.0, 50.0),
                "upper": ParamSpec("float", 70.0, 50.0, 95.0),
            },
            positions=rsi_reversion,
        ),
        StrategySpec(
            name="macd_trend",
            description="Long while MACD is above its signal line (short below if allowed).",
            params={
                "fast": ParamSpec("int", 12, 2, 50),
                "slow": ParamSpec("int", 26, 5, 100),
                "signal": ParamSpec("int", 9, 2, 50),
                "allow_short": ParamSpec("bool", False),
            },
            positions=macd_trend,
        ),
        StrategySpec(
            name="bollinger_reversion",
            description="Buy a close under the lower Bollinger band, sell over the middle band.",
            params={
                "period": ParamSpec("int", 20, 5, 100),
                "std_dev": ParamSpec("float", 2.0, 0.5, 4.0),
            },
            positions=bollinger_reversion,
        ),
    )
}

# Pairs (a, b) that must satisfy params[a] < params[b] where both exist.
_ORDERED = {
    "sma_crossover": ("fast", "slow"),
    "rsi_reversion": ("lower", "upper"),
    "macd_trend": ("fast", "slow"),
}


def _range_text(spec: ParamSpec) -> str:
    if spec.type == "bool":
        return "a boolean (true or false)"
    kind = "an integer" if spec.type == "int" else "a number"
    return f"{kind} from {_num(spec.min)} to {_num(spec.max)}"


def _num(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else str(value)


def _coerce(name: str, spec: ParamSpec, value: object) -> ParamValue:
    field = f"params.{name}"
    wrong = ParamError(field, f"{name} must be {_range_text(spec)}, got {value!r}")
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise wrong
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise wrong
    if not math.isfinite(value):
        raise wrong
    if spec.type == "int":
        if isinstance(value, float) and not value.is_integer():
            raise wrong
        number: ParamValue = int(value)
    else:
        number = float(value)
    if (spec.min is not None and number < spec.min) or (spec.max is not None and number > spec.max):
        raise wrong
    return number


def validate_params(strategy_name: str, params: Mapping[str, object]) -> dict[str, ParamValue]:
    """The strategy's full parameter set: given values checked and coerced, the rest defaults.

    Raises ParamError naming the field: "strategy" for an unknown strategy, "params.<name>" for
    an unknown parameter, a wrong type, a value out of range or a broken ordering (fast < slow).
    """
    spec = STRATEGIES.get(strategy_name)
    if spec is None:
        raise ParamError(
            "strategy",
            f"unknown strategy {strategy_name!r}: accepted {', '.join(sorted(STRATEGIES))}",
        )
    for name in sorted(params):
        if name not in spec.params:
            accepted = ", ".join(spec.params) or "none"
            raise ParamError(
                f"params.{name}",
                f"unknown parameter {name!r} for {strategy_name}: accepted {accepted}",
            )
    values = {
        name: _coerce(name, p, params[name]) if name in params else p.default
        for name, p in spec.params.items()
    }
    ordered = _ORDERED.get(strategy_name)
    if ordered is not None:
        low, high = ordered
        if values[low] >= values[high]:
            raise ParamError(
                f"params.{low}",
                f"{low} ({values[low]}) must be less than {high} ({values[high]})",
            )
    return values
