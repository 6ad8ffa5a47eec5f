"""Backtests: submitted, listed, read and cancelled per user."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, Parameter
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from contract import API_PREFIX
from contract.ports import Principal, Services
from contract.routes.deps import provide_principal
from contract.routes.docs import AUTHED, errors
from contract.types import (
    CLIENT_ID_PATTERN,
    Backtest,
    BacktestAccepted,
    BacktestCreate,
    BacktestList,
)

IdPath = Annotated[str, Parameter(pattern=CLIENT_ID_PATTERN, description="the backtest's id")]


class BacktestController(Controller):
    path = f"{API_PREFIX}/backtests"
    tags = ["backtests"]
    dependencies = {"principal": Provide(provide_principal)}
    security = [{"BearerToken": []}]

    @post(
        status_code=HTTP_202_ACCEPTED,
        summary="Queue a backtest",
        description=(
            "With an id: the same id and body again is the same backtest; another body 409."
        ),
        responses=errors(400, 409, 413, *AUTHED),
    )
    async def submit(
        self,
        data: JSONBody[BacktestCreate],
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
    ) -> BacktestAccepted:
        return await services.backtests.submit(principal.user_id, data)

    @get(summary="The caller's backtests, newest first", responses=errors(*AUTHED))
    async def list_backtests(
        self, services: NamedDependency[Services], principal: NamedDependency[Principal]
    ) -> BacktestList:
        return await services.backtests.of_user(principal.user_id)

    @get(
        "/{backtest_id:str}",
        summary="One backtest and, when done, its result",
        responses=errors(404, *AUTHED),
    )
    async def get_backtest(
        self,
        backtest_id: IdPath,
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
    ) -> Backtest:
        return await services.backtests.get(principal.user_id, backtest_id)

    @delete(
        "/{backtest_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Cancel a queued or running backtest",
        responses=errors(404, *AUTHED),
    )
    async def cancel_backtest(
        self,
        backtest_id: IdPath,
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
    ) -> None:
        await services.backtests.cancel(principal.user_id, backtest_id)
