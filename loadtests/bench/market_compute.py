"""Benchmark: the cost of the market domain's pure computations on 20 years of history.

What a backend pays the first time it serves a symbol: generating the reference history (daily
and 5-minute), the indicators over the whole history, the latest signal, the options and insights
of a signal, a 20-year backtest, and the agents' accuracy over the universe. Best and median of
`--count` repetitions, each on a cold generator cache.

    python -m loadtests.bench.market_compute [--count N]

Prints a table and writes var/reports/bench-market-compute.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from contract.universe import SYMBOLS
from market import accuracy, insights, options, signals
from market.backtest import run_backtest
from market.calendar import DEFAULT_ASOF, iso_ms
from market.history import clear_cache, daily_history, intraday_history
from market.indicators import compute_indicators
from ops.settings import load_settings
from ops.state import write_atomic

NAME = "market-compute"
SEED = 42


def _timed(step: Callable[[], object], count: int, before: Callable[[], None]) -> list[float]:
    times = []
    for _ in range(count):
        before()
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1000)
    return times


def measure(count: int) -> dict[str, dict[str, float]]:
    """Milliseconds per step: best and median over `count` runs."""
    clear = clear_cache
    daily = daily_history(SEED, "SPY", DEFAULT_ASOF)
    ind = compute_indicators(daily)
    latest = signals.latest_signal("SPY", "1d", daily, ind)
    last = len(daily) - 1
    histories = [
        (bars, compute_indicators(bars))
        for bars in (daily_history(SEED, symbol, DEFAULT_ASOF) for symbol in SYMBOLS)
    ]
    steps: dict[str, tuple[Callable[[], object], Callable[[], None]]] = {
        "daily history, 20 years (cold)": (
            lambda: daily_history(SEED, "SPY", DEFAULT_ASOF),
            clear,
        ),
        "5-minute history, 60 days (cold)": (
            lambda: intraday_history(SEED, "SPY", DEFAULT_ASOF),
            clear,
        ),
        "all indicators, 20 years daily": (lambda: compute_indicators(daily), lambda: None),
        "latest signal": (
            lambda: signals.latest_signal("SPY", "1d", daily, ind),
            lambda: None,
        ),
        "options signals": (
            lambda: options.options_signals("SPY", "1d", daily, ind),
            lambda: None,
        ),
        "insights of a signal": (
            lambda: insights.insights_at(latest, daily, ind, last),
            lambda: None,
        ),
        "backtest sma_crossover, 20 years": (
            lambda: run_backtest(
                daily, "sma_crossover", {}, 10_000.0, int(daily.time[0]), int(daily.time[-1])
            ),
            lambda: None,
        ),
        f"agent accuracy, {len(SYMBOLS)} symbols": (
            lambda: accuracy.agent_stats(histories),
            lambda: None,
        ),
    }
    figures: dict[str, dict[str, float]] = {}
    for name, (step, before) in steps.items():
        times = _timed(step, count, before)
        figures[name] = {
            "best_ms": round(min(times), 3),
            "median_ms": round(statistics.median(times), 3),
        }
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench.market_compute")
    parser.add_argument("--count", type=int, default=5, help="repetitions of each step")
    parser.add_argument("--url", default=None, help="not used: this benchmark runs in-process")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    figures = measure(args.count)
    table = Table(title=f"market/ computations, best and median of {args.count}")
    for column in ("step", "best ms", "median ms"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for name, values in figures.items():
        table.add_row(name, f"{values['best_ms']:.2f}", f"{values['median_ms']:.2f}")
    Console().print(table)
    settings = load_settings()
    path = settings.reports_dir / f"bench-{NAME}.json"
    document: dict[str, Any] = {
        "benchmark": NAME,
        "at": iso_ms(time.time()),
        "count": args.count,
        "python": platform.python_version(),
        "figures": figures,
    }
    write_atomic(path, (json.dumps(document, indent=2) + "\n").encode())
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
