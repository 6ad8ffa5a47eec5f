"""The route layer both backends mount: thin Litestar controllers over the service ports."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from contract.routes.auth import AuthController
from contract.routes.backtests import BacktestController
from contract.routes.market import MarketController, SystemController
from contract.routes.signals import SignalController
from contract.routes.watchlists import WatchlistController
from contract.routes.ws import live_socket

ROUTES: list[ControllerRouterHandler] = [
    SystemController,
    MarketController,
    SignalController,
    AuthController,
    WatchlistController,
    BacktestController,
    live_socket,
]
