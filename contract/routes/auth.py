"""Register, login, refresh, logout, me: the same identities and tokens on both backends."""

from __future__ import annotations

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from contract import API_PREFIX
from contract.errors import RateLimited, Unauthorized
from contract.identity import normalise_email
from contract.ports import Principal, Services
from contract.routes.deps import client_address, provide_principal
from contract.routes.docs import AUTHED, errors
from contract.types import LoginRequest, RefreshRequest, TokenPair, User, UserCreate, UserEnvelope

_AUTH = {"principal": Provide(provide_principal)}
_BEARER: list[dict[str, list[str]]] = [{"BearerToken": []}]


class AuthController(Controller):
    path = f"{API_PREFIX}/auth"
    tags = ["auth"]

    @post(
        "/register",
        status_code=HTTP_201_CREATED,
        summary="Create a user; the id is the UUIDv5 of the lower-cased email",
        responses=errors(400, 409, 413, 422, 429, 503),
    )
    async def register(
        self, data: JSONBody[UserCreate], services: NamedDependency[Services]
    ) -> UserEnvelope:
        return UserEnvelope(user=await services.users.register(data))

    @post(
        "/login",
        status_code=HTTP_200_OK,
        summary="Tokens for an email and password",
        description="Failed attempts are limited per account and per address (429).",
        responses=errors(400, 401, 413, 422, 429, 503),
    )
    async def login(
        self,
        data: JSONBody[LoginRequest],
        services: NamedDependency[Services],
        request: Request[object, object, State],
    ) -> TokenPair:
        limits = services.limits
        address = client_address(request, services)
        keys = (
            (f"login:account:{normalise_email(data.email)}", limits.login_per_account),
            (f"login:address:{address}", limits.login_per_address),
        )
        window = limits.login_window_seconds
        # Count the attempt before the password is checked (an atomic hit, not a peek): a burst
        # of parallel guesses, on any worker, gets no more checks than the limit. A success is
        # given back, so that only failures count.
        counted: list[str] = []
        for key, limit in keys:
            state = await services.limiter.hit(key, limit, window)
            if not state.allowed:
                for earlier in counted:
                    await services.limiter.release(earlier, window)
                raise RateLimited(limit, state.reset_seconds, "Too many failed logins")
            counted.append(key)
        failed = False
        try:
            return await services.users.login(data, address)
        except Unauthorized:
            failed = True
            raise
        finally:
            if not failed:
                for key in counted:
                    await services.limiter.release(key, window)

    @post(
        "/refresh",
        status_code=HTTP_200_OK,
        summary="New tokens for a refresh token; each refresh token works once",
        responses=errors(400, 401, 413, 422, 429, 503),
    )
    async def refresh(
        self, data: JSONBody[RefreshRequest], services: NamedDependency[Services]
    ) -> TokenPair:
        return await services.users.refresh(data.refresh_token)

    @post(
        "/logout",
        status_code=HTTP_204_NO_CONTENT,
        summary="Revoke the caller's refresh tokens",
        dependencies=_AUTH,
        security=_BEARER,
        responses=errors(*AUTHED),
    )
    async def logout(
        self, services: NamedDependency[Services], principal: NamedDependency[Principal]
    ) -> None:
        await services.users.logout(principal)

    @get(
        "/me",
        summary="The caller",
        dependencies=_AUTH,
        security=_BEARER,
        responses=errors(*AUTHED),
    )
    async def me(
        self, services: NamedDependency[Services], principal: NamedDependency[Principal]
    ) -> UserEnvelope:
        user: User = await services.users.me(principal)
        return UserEnvelope(user=user)

    @delete(
        "/me",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete the caller, their watchlists and backtests; their tokens stop working",
        dependencies=_AUTH,
        security=_BEARER,
        responses=errors(*AUTHED),
    )
    async def delete_me(
        self, services: NamedDependency[Services], principal: NamedDependency[Principal]
    ) -> None:
        await services.users.delete(principal)


__all__ = ["AuthController", "TokenPair"]
