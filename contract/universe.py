"""The symbol universe both backends serve by default: symbol, name, sector, exchange."""

from __future__ import annotations

from typing import NamedTuple


class Listing(NamedTuple):
    symbol: str
    name: str
    sector: str
    exchange: str


UNIVERSE: tuple[Listing, ...] = (
    Listing("AAPL", "Apple Inc.", "Technology", "NASDAQ"),
    Listing("AMD", "Advanced Micro Devices Inc.", "Technology", "NASDAQ"),
    Listing("AMZN", "Amazon.com Inc.", "Consumer Discretionary", "NASDAQ"),
    Listing("BA", "The Boeing Company", "Industrials", "NYSE"),
    Listing("BRK-B", "Berkshire Hathaway Inc. Class B", "Financials", "NYSE"),
    Listing("CAT", "Caterpillar Inc.", "Industrials", "NYSE"),
    Listing("COST", "Costco Wholesale Corporation", "Consumer Staples", "NASDAQ"),
    Listing("DIA", "SPDR Dow Jones Industrial Average ETF", "ETF", "NYSE Arca"),
    Listing("DIS", "The Walt Disney Company", "Communication Services", "NYSE"),
    Listing("GOOGL", "Alphabet Inc. Class A", "Communication Services", "NASDAQ"),
    Listing("IWM", "iShares Russell 2000 ETF", "ETF", "NYSE Arca"),
    Listing("JNJ", "Johnson & Johnson", "Health Care", "NYSE"),
    Listing("JPM", "JPMorgan Chase & Co.", "Financials", "NYSE"),
    Listing("KO", "The Coca-Cola Company", "Consumer Staples", "NYSE"),
    Listing("META", "Meta Platforms Inc.", "Communication Services", "NASDAQ"),
    Listing("MSFT", "Microsoft Corporation", "Technology", "NASDAQ"),
    Listing("NFLX", "Netflix Inc.", "Communication Services", "NASDAQ"),
    Listing("NVDA", "NVIDIA Corporation", "Technology", "NASDAQ"),
    Listing("QQQ", "Invesco QQQ Trust", "ETF", "NASDAQ"),
    Listing("SPY", "SPDR S&P 500 ETF Trust", "ETF", "NYSE Arca"),
    Listing("TSLA", "Tesla Inc.", "Consumer Discretionary", "NASDAQ"),
    Listing("UNH", "UnitedHealth Group Inc.", "Health Care", "NYSE"),
    Listing("V", "Visa Inc.", "Financials", "NYSE"),
    Listing("XOM", "Exxon Mobil Corporation", "Energy", "NYSE"),
)

SYMBOLS: tuple[str, ...] = tuple(listing.symbol for listing in UNIVERSE)
BY_SYMBOL: dict[str, Listing] = {listing.symbol: listing for listing in UNIVERSE}
