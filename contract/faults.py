"""Fault injection for rehearsals, the same in both backends: latency, an error rate, a field
drift, refused connections.

Off by default; set at start-up from the environment and at run time through the admin app,
which listens on loopback only and wants the admin token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

import msgspec
from litestar import Litestar, Request, Router, get, put
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import (
    ASGIApp,
    ControllerRouterHandler,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)

from contract.environment import env_bool, env_choice, env_float, env_int
from contract.errors import send_error

DRIFTS = ("", "rename_price", "alter_price", "drop_volume")


@dataclass(slots=True)
class FaultState:
    """The faults in force now; the middleware reads it on every request."""

    latency_ms: int = 0
    error_rate: float = 0.0
    drift: str = ""
    refuse: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FaultState:
        """The faults asked for at start-up (FAULT_*); all off when unset."""
        return cls(
            latency_ms=env_int(env, "FAULT_LATENCY_MS", 0, 0, 60_000),
            error_rate=env_float(env, "FAULT_ERROR_RATE", 0.0, 0.0, 1.0),
            drift=env_choice(env, "FAULT_DRIFT", "", DRIFTS),
            refuse=env_bool(env, "FAULT_REFUSE", False),
        )


class FaultUpdate(msgspec.Struct, forbid_unknown_fields=True):
    latency_ms: int | None = msgspec.field(default=None)
    error_rate: float | None = None
    drift: str | None = None
    refuse: bool | None = None


def _drift(value: Any, drift: str) -> Any:
    if isinstance(value, list):
        return [_drift(item, drift) for item in value]
    if not isinstance(value, dict):
        return value
    out = {key: _drift(item, drift) for key, item in value.items()}
    if "price" in out and "previous_close" in out:  # a Quote
        if drift == "rename_price":
            out["last_price"] = out.pop("price")
        elif drift == "alter_price" and isinstance(out["price"], float | int):
            out["price"] = round(out["price"] * 1.01, 4)
        elif drift == "drop_volume":
            out.pop("volume", None)
    return out


class FaultMiddleware:
    """Wraps the API app: sleeps, fails or rewrites answers as the fault state says."""

    def __init__(
        self, app: ASGIApp, state: FaultState, backend: str, rng: random.Random | None = None
    ) -> None:
        self.app = app
        self.state = state
        self.backend = backend
        self.rng = rng or random.Random()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != ScopeType.HTTP
            or not path.startswith("/api/v1")
            or path == "/api/v1/health"
        ):
            await self.app(scope, receive, send)
            return
        state = self.state
        if state.latency_ms:
            await asyncio.sleep(state.latency_ms / 1000)
        if state.error_rate and self.rng.random() < state.error_rate:
            await send_error(send, 500, "Injected fault (rehearsal)", {"x-backend": self.backend})
            return
        if not state.drift:
            await self.app(scope, receive, send)
            return
        await self._drifted(scope, receive, send, state.drift)

    async def _drifted(self, scope: Scope, receive: Receive, send: Send, drift: str) -> None:
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            with contextlib.suppress(msgspec.DecodeError):
                body = msgspec.json.encode(_drift(msgspec.json.decode(body), drift))
            headers = [
                (k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"
            ]
            headers.append((b"content-length", str(len(body)).encode()))
            await send(cast("HTTPResponseStartEvent", {**start, "headers": headers}))
            end: HTTPResponseBodyEvent = {
                "type": "http.response.body",
                "body": body,
                "more_body": False,
            }
            await send(end)

        await self.app(scope, receive, capture)


def build_admin_app(
    token: str,
    state: FaultState,
    set_refuse: Callable[[bool], Awaitable[None]],
    extra: Sequence[ControllerRouterHandler] = (),
) -> Litestar:
    """The admin app (loopback only): GET/PUT /admin/faults with `Authorization: Bearer TOKEN`.

    `extra` handlers (a backend's own admin routes, e.g. the mock's records rebuild) are served
    with the same token check; give them their full paths.
    """

    def check(request: ASGIConnection[Any, Any, Any, Any]) -> None:
        sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not sent or not hmac.compare_digest(sent, token):
            raise NotAuthorizedException(
                "admin token required", headers={"WWW-Authenticate": "Bearer"}
            )

    @get("/admin/faults")
    async def read_faults(request: Request[Any, Any, State]) -> dict[str, Any]:
        check(request)
        return asdict(state)

    @put("/admin/faults")
    async def write_faults(request: Request[Any, Any, State], data: FaultUpdate) -> dict[str, Any]:
        check(request)
        if data.drift is not None and data.drift not in DRIFTS:
            raise ValidationException(
                "Invalid drift", extra=[{"key": "drift", "message": f"accepted: {DRIFTS[1:]}"}]
            )
        if data.error_rate is not None and not 0 <= data.error_rate <= 1:
            raise ValidationException(
                "Invalid error_rate", extra=[{"key": "error_rate", "message": "0..1"}]
            )
        if data.latency_ms is not None and not 0 <= data.latency_ms <= 60_000:
            raise ValidationException(
                "Invalid latency_ms", extra=[{"key": "latency_ms", "message": "0..60000"}]
            )
        if data.latency_ms is not None:
            state.latency_ms = data.latency_ms
        if data.error_rate is not None:
            state.error_rate = data.error_rate
        if data.drift is not None:
            state.drift = data.drift
        if data.refuse is not None and data.refuse != state.refuse:
            await set_refuse(data.refuse)
            state.refuse = data.refuse
        return asdict(state)

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        check(connection)

    handlers: list[ControllerRouterHandler] = [read_faults, write_faults]
    if extra:
        handlers.append(Router("/", route_handlers=list(extra), guards=[guard]))
    # No logging config: the process's own structured logging stays in place.
    return Litestar(handlers, openapi_config=None, logging_config=None)
