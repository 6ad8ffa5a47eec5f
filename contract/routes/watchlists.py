"""Per-user watchlists, keyed by (user, name)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, put
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, Parameter
from litestar.status_codes import HTTP_204_NO_CONTENT

from contract import API_PREFIX
from contract.ports import Principal, Services
from contract.routes.deps import provide_principal
from contract.routes.docs import AUTHED, errors
from contract.types import NAME_PATTERN, Watchlist, WatchlistList, WatchlistUpdate

NamePath = Annotated[
    str,
    Parameter(
        pattern=NAME_PATTERN, description="1-64 letters, digits, space, _ or -; case-sensitive"
    ),
]


class WatchlistController(Controller):
    path = f"{API_PREFIX}/watchlists"
    tags = ["watchlists"]
    dependencies = {"principal": Provide(provide_principal)}
    security = [{"BearerToken": []}]

    @get(summary="The caller's watchlists, by name", responses=errors(*AUTHED))
    async def list_watchlists(
        self, services: NamedDependency[Services], principal: NamedDependency[Principal]
    ) -> WatchlistList:
        return await services.watchlists.of_user(principal.user_id)

    @get("/{name:str}", summary="One watchlist", responses=errors(404, *AUTHED))
    async def get_watchlist(
        self,
        name: NamePath,
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
    ) -> Watchlist:
        return await services.watchlists.get(principal.user_id, name)

    @put(
        "/{name:str}",
        summary="Create or replace a watchlist (idempotent)",
        description="Symbols are upper-cased; duplicates dropped, order kept; at most 100.",
        responses=errors(400, 413, *AUTHED),
    )
    async def put_watchlist(
        self,
        name: NamePath,
        data: JSONBody[WatchlistUpdate],
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
    ) -> Watchlist:
        return await services.watchlists.put(principal.user_id, name, data.symbols)

    @delete(
        "/{name:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete a watchlist",
        responses=errors(404, *AUTHED),
    )
    async def delete_watchlist(
        self,
        name: NamePath,
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
    ) -> None:
        await services.watchlists.delete(principal.user_id, name)
