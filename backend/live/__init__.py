"""Live quotes and WebSocket fan-out: Litestar channels on Redis, and the single-publisher feed."""

from backend.live.channels import ChannelsLive, ChannelsSession
from backend.live.feed import QuoteFeed, QuoteProvider, SimulatedProvider

__all__ = ["ChannelsLive", "ChannelsSession", "QuoteFeed", "QuoteProvider", "SimulatedProvider"]
