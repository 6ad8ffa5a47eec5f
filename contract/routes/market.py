"""Health, symbols and market data."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from contract import API_PREFIX
from contract.ports import Services
from contract.routes.docs import PUBLIC, PUBLIC_DATA, errors
from contract.types import (
    SYMBOL_PATTERN,
    Health,
    Historical,
    IndicatorSeries,
    Interval,
    Quote,
    QuoteBatch,
    QuotesRequest,
    SymbolList,
)

SymbolPath = Annotated[
    str,
    Parameter(
        pattern=SYMBOL_PATTERN,
        description="1-12 characters of A-Z 0-9 . - ^, upper-cased; malformed 422, not served 404",
    ),
]
PeriodQuery = Annotated[
    str,
    Parameter(
        max_length=8,
        description=(
            "calendar duration back from the latest bar: a count and a unit (m, h, d, wk, mo, y),"
            " or ytd, max. Intraday intervals serve periods up to 60 days."
        ),
        examples=[],
    ),
]
IntervalQuery = Annotated[
    Interval,
    Parameter(description="bar size; 1h/4h align to the 14:30 UTC open, 1wk to Mondays"),
]


class SystemController(Controller):
    path = API_PREFIX
    tags = ["system"]

    @get(
        "/health",
        summary="Health of the backend and its dependencies",
        description="200 when ok or degraded (cache down); 503 when the database is down.",
        responses=errors(503),
    )
    async def health(self, services: NamedDependency[Services]) -> Response[Health]:
        health = await services.market.health()
        code = HTTP_503_SERVICE_UNAVAILABLE if health.status == "down" else HTTP_200_OK
        return Response(health, status_code=code)

    @get("/symbols", summary="The served universe, sorted", responses=errors(*PUBLIC))
    async def symbols(self, services: NamedDependency[Services]) -> SymbolList:
        return await services.market.symbols()


class MarketController(Controller):
    path = f"{API_PREFIX}/market-data"
    tags = ["market data"]

    @post(
        "/quotes",
        status_code=HTTP_200_OK,
        summary="Quotes for up to 50 symbols",
        description="A read with a body. Unknown well-formed symbols are listed in `missing`.",
        responses=errors(400, 413, *PUBLIC_DATA),
    )
    async def quotes(
        self, data: JSONBody[QuotesRequest], services: NamedDependency[Services]
    ) -> QuoteBatch:
        return await services.market.quotes(data.symbols)

    @get("/{symbol:str}", summary="The latest quote", responses=errors(*PUBLIC_DATA))
    async def quote(self, symbol: SymbolPath, services: NamedDependency[Services]) -> Quote:
        return await services.market.quote(symbol)

    @get(
        "/{symbol:str}/historical",
        summary="Candles, oldest first",
        description="Bars with time > latest - period. Over 10,000 candles is a 422.",
        responses=errors(*PUBLIC_DATA),
    )
    async def historical(
        self,
        symbol: SymbolPath,
        services: NamedDependency[Services],
        period: PeriodQuery = "1mo",
        interval: IntervalQuery = "1d",
    ) -> Historical:
        return await services.market.historical(symbol, period, interval)

    @get(
        "/{symbol:str}/indicators",
        summary="Indicators over the whole history, for the requested window",
        description="TA-Lib conventions; null until defined.",
        responses=errors(*PUBLIC_DATA),
    )
    async def indicators(
        self,
        symbol: SymbolPath,
        services: NamedDependency[Services],
        period: PeriodQuery = "1mo",
        interval: IntervalQuery = "1d",
    ) -> IndicatorSeries:
        return await services.market.indicators(symbol, period, interval)
