"""Dependencies the controllers share: the services and the authenticated caller."""

from __future__ import annotations

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency

from contract.errors import Unauthorized
from contract.ports import Principal, Services


def provide_services(state: State) -> Services:
    services: NamedDependency[Services] = state.services
    return services


def bearer_token(request: Request[object, object, State]) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def provide_principal(
    request: Request[object, object, State], services: NamedDependency[Services]
) -> Principal:
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("Missing bearer token: send Authorization: Bearer <access token>")
    return await services.users.authenticate(token)


def client_address(
    request: Request[object, object, State], services: NamedDependency[Services]
) -> str:
    """The caller's address: X-Forwarded-For is trusted only from configured proxies."""
    peer = request.client.host if request.client else "unknown"
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded and peer in services.trusted_proxies:
        return forwarded.split(",")[0].strip() or peer
    return peer
