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
    Listing("ABBV", "AbbVie Inc.", "Health Care", "NYSE"),
    Listing("ADBE", "Adobe Inc.", "Technology", "NASDAQ"),
    Listing("AMD", "Advanced Micro Devices Inc.", "Technology", "NASDAQ"),
    Listing("AMZN", "Amazon.com Inc.", "Consumer Discretionary", "NASDAQ"),
    Listing("BA", "The Boeing Company", "Industrials", "NYSE"),
    Listing("BAC", "Bank of America Corporation", "Financials", "NYSE"),
    Listing("BRK-B", "Berkshire Hathaway Inc. Class B", "Financials", "NYSE"),
    Listing("C", "Citigroup Inc.", "Financials", "NYSE"),
    Listing("CAT", "Caterpillar Inc.", "Industrials", "NYSE"),
    Listing("COST", "Costco Wholesale Corporation", "Consumer Staples", "NASDAQ"),
    Listing("CRM", "Salesforce Inc.", "Technology", "NYSE"),
    Listing("CSCO", "Cisco Systems Inc.", "Technology", "NASDAQ"),
    Listing("CVX", "Chevron Corporation", "Energy", "NYSE"),
    Listing("DIA", "SPDR Dow Jones Industrial Average ETF", "ETF", "NYSE Arca"),
    Listing("DIS", "The Walt Disney Company", "Communication Services", "NYSE"),
    Listing("GLD", "SPDR Gold Shares", "ETF", "NYSE Arca"),
    Listing("GOOGL", "Alphabet Inc. Class A", "Communication Services", "NASDAQ"),
    Listing("GS", "The Goldman Sachs Group Inc.", "Financials", "NYSE"),
    Listing("HD", "The Home Depot Inc.", "Consumer Discretionary", "NYSE"),
    Listing("INTC", "Intel Corporation", "Technology", "NASDAQ"),
    Listing("IWM", "iShares Russell 2000 ETF", "ETF", "NYSE Arca"),
    Listing("JNJ", "Johnson & Johnson", "Health Care", "NYSE"),
    Listing("JPM", "JPMorgan Chase & Co.", "Financials", "NYSE"),
    Listing("KO", "The Coca-Cola Company", "Consumer Staples", "NYSE"),
    Listing("LLY", "Eli Lilly and Company", "Health Care", "NYSE"),
    Listing("MCD", "McDonald's Corporation", "Consumer Discretionary", "NYSE"),
    Listing("META", "Meta Platforms Inc.", "Communication Services", "NASDAQ"),
    Listing("MRK", "Merck & Co. Inc.", "Health Care", "NYSE"),
    Listing("MS", "Morgan Stanley", "Financials", "NYSE"),
    Listing("MSFT", "Microsoft Corporation", "Technology", "NASDAQ"),
    Listing("NFLX", "Netflix Inc.", "Communication Services", "NASDAQ"),
    Listing("NKE", "Nike Inc.", "Consumer Discretionary", "NYSE"),
    Listing("NVDA", "NVIDIA Corporation", "Technology", "NASDAQ"),
    Listing("ORCL", "Oracle Corporation", "Technology", "NYSE"),
    Listing("PEP", "PepsiCo Inc.", "Consumer Staples", "NASDAQ"),
    Listing("PFE", "Pfizer Inc.", "Health Care", "NYSE"),
    Listing("PG", "The Procter & Gamble Company", "Consumer Staples", "NYSE"),
    Listing("QQQ", "Invesco QQQ Trust", "ETF", "NASDAQ"),
    Listing("SPY", "SPDR S&P 500 ETF Trust", "ETF", "NYSE Arca"),
    Listing("TSLA", "Tesla Inc.", "Consumer Discretionary", "NASDAQ"),
    Listing("UNH", "UnitedHealth Group Inc.", "Health Care", "NYSE"),
    Listing("V", "Visa Inc.", "Financials", "NYSE"),
    Listing("WMT", "Walmart Inc.", "Consumer Staples", "NYSE"),
    Listing("XOM", "Exxon Mobil Corporation", "Energy", "NYSE"),
)

SYMBOLS: tuple[str, ...] = tuple(listing.symbol for listing in UNIVERSE)
BY_SYMBOL: dict[str, Listing] = {listing.symbol: listing for listing in UNIVERSE}
