"""Redis key conventions that the loader shares with the backend's read-through cache."""

from __future__ import annotations

CACHE_PREFIX = "cache:"
MARKET_PREFIX = f"{CACHE_PREFIX}market:"


def market_key(symbol: str, *parts: str) -> str:
    """The cache key of a market-data answer for `symbol` (e.g. historical, period, interval)."""
    return ":".join((MARKET_PREFIX + symbol.upper(), *parts))


def market_pattern(symbol: str) -> str:
    """A SCAN pattern matching every cached market-data answer of `symbol`."""
    return f"{MARKET_PREFIX}{symbol.upper()}:*"
