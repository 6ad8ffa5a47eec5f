"""Signals, options signals, insights, opportunities, agents and strategies."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK

from contract import API_PREFIX
from contract.ports import LiveEvent, Principal, Services
from contract.routes.deps import provide_principal
from contract.routes.docs import AUTHED, PUBLIC, PUBLIC_DATA, errors
from contract.routes.market import SymbolPath
from contract.types import (
    SYMBOL_PATTERN,
    AgentList,
    GeneratedSignal,
    GenerateSignal,
    Insights,
    Opportunities,
    OptionsSignals,
    SignalList,
    StrategyList,
    SymbolSignals,
    Timeframe,
)

TimeframeQuery = Annotated[Timeframe, Parameter(description="bar size the signal is computed on")]


class SignalController(Controller):
    path = API_PREFIX
    tags = ["signals"]

    @get(
        "/signals",
        summary="The latest signal of each symbol, confidence descending (ties by symbol)",
        responses=errors(*PUBLIC_DATA),
    )
    async def signals(
        self,
        services: NamedDependency[Services],
        symbols: Annotated[
            str | None,
            Parameter(
                max_length=800,
                description="comma-separated symbols; all served symbols when absent",
            ),
        ] = None,
        timeframe: TimeframeQuery = "1d",
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        min_confidence: Annotated[float, Parameter(ge=0, le=100)] = 0.0,
    ) -> SignalList:
        wanted = [part.strip() for part in symbols.split(",") if part.strip()] if symbols else None
        return await services.signals.signals(wanted, timeframe, limit, min_confidence)

    @get(
        "/signals/precise-options",
        summary="Options signals derived from the symbol's recent signals",
        responses=errors(*PUBLIC_DATA),
    )
    async def precise_options(
        self,
        services: NamedDependency[Services],
        symbol: Annotated[str, Parameter(pattern=SYMBOL_PATTERN, description="a served symbol")],
        timeframe: TimeframeQuery = "1d",
    ) -> OptionsSignals:
        return await services.signals.options(symbol, timeframe)

    @get(
        "/signals/{symbol:str}",
        summary="The symbol's recent signals, newest first",
        responses=errors(*PUBLIC_DATA),
    )
    async def symbol_signals(
        self,
        symbol: SymbolPath,
        services: NamedDependency[Services],
        timeframe: TimeframeQuery = "1d",
    ) -> SymbolSignals:
        return await services.signals.symbol_signals(symbol, timeframe)

    @get(
        "/signals/{signal_id:str}/insights",
        summary="Insights of one signal",
        description="signal_id is {SYMBOL}-{timeframe}-{bar epoch seconds}; unknown ids 404.",
        responses=errors(*PUBLIC_DATA),
    )
    async def insights(
        self,
        signal_id: Annotated[str, Parameter(max_length=64)],
        services: NamedDependency[Services],
    ) -> Insights:
        return await services.signals.insights(signal_id)

    @post(
        "/signals/generate",
        status_code=HTTP_200_OK,
        summary="The signal for the latest bar; pushed to WebSocket subscribers",
        dependencies={"principal": Provide(provide_principal)},
        security=[{"BearerToken": []}],
        responses=errors(400, 413, *AUTHED),
    )
    async def generate(
        self,
        data: JSONBody[GenerateSignal],
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
    ) -> GeneratedSignal:
        signal = await services.signals.generate(data.symbol, data.timeframe)
        await services.live.publish(
            LiveEvent(
                type="signal",
                channel="signals",
                symbol=signal.symbol,
                data={"signal": signal},
            )
        )
        return GeneratedSignal(signal=signal)

    @get(
        "/market/opportunities",
        summary="Options opportunities across the universe, by AI score",
        tags=["insights"],
        responses=errors(*PUBLIC_DATA),
    )
    async def opportunities(
        self, services: NamedDependency[Services], limit: Annotated[int, Parameter(ge=1, le=50)] = 5
    ) -> Opportunities:
        return await services.signals.opportunities(limit)

    @get(
        "/agents",
        summary="Signal agents and their accuracy measured against later prices",
        tags=["agents"],
        responses=errors(*PUBLIC),
    )
    async def agents(self, services: NamedDependency[Services]) -> AgentList:
        return await services.signals.agents()

    @get(
        "/strategies",
        summary="Backtest strategies and their declared parameters",
        tags=["backtests"],
        responses=errors(*PUBLIC),
    )
    async def strategies(self, services: NamedDependency[Services]) -> StrategyList:
        return await services.signals.strategies()
