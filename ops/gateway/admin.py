"""The gateway's admin API (loopback only, `Authorization: Bearer ADMIN_TOKEN`) and its metrics.

Through it the CLI and the console act: GET /admin/state, PUT /admin/mode, GET/DELETE
/admin/diffs. Prometheus reads /gateway/metrics (no secrets in it, so no token).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Litestar, Response, Router, delete, get, put
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.status_codes import HTTP_409_CONFLICT
from litestar.types import ControllerRouterHandler, Guard
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from ops.gateway.routing import RoutingBlocked

if TYPE_CHECKING:
    from ops.gateway.proxy import Gateway

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    """The gateway's own measurements, per upstream and route template, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_requests",
            "Requests answered through the gateway",
            ("upstream", "route", "method", "status_class"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds",
            "Time from request to the upstream's full answer",
            ("upstream", "route"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.retries = Counter(
            "gateway_retries",
            "Idempotent requests retried on the other backend after a connection failure",
            ("failed", "retried_on", "route"),
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors",
            "Requests whose upstream could not be reached (answered 502)",
            ("upstream", "route"),
            registry=self.registry,
        )
        self.shadow_copies = Counter(
            "gateway_shadow_copies",
            "Shadow copies of reads: sent to the candidate, dropped (queue full or timeout)",
            ("outcome",),
            registry=self.registry,
        )
        self.diffs = Counter(
            "gateway_shadow_diffs",
            "Compared shadow answers by outcome (before noise is subtracted)",
            ("route", "outcome"),
            registry=self.registry,
        )
        self.websockets = Gauge(
            "gateway_websockets",
            "Open WebSockets relayed, per upstream",
            ("upstream",),
            registry=self.registry,
        )
        self.websocket_moves = Counter(
            "gateway_websocket_moves",
            "WebSockets closed with 1012 because a weight change moved their client",
            registry=self.registry,
        )
        self.writes = Counter(
            "gateway_writes",
            "Mirrorable writes the client's backend accepted (each is mirrored or kept)",
            ("route",),
            registry=self.registry,
        )
        self.writes_mirrored = Counter(
            "gateway_writes_mirrored",
            "Writes delivered to the other backend, at once or replayed from the outbox",
            ("target",),
            registry=self.registry,
        )
        self.mirror_failed = Counter(
            "gateway_mirror_failed",
            "Mirrors not delivered at once: kept in the outbox",
            ("target",),
            registry=self.registry,
        )
        self.outbox_retried = Counter(
            "gateway_outbox_retried",
            "Replays of outbox entries",
            ("target",),
            registry=self.registry,
        )
        self.outbox_pending = Gauge(
            "gateway_outbox_pending",
            "Writes waiting in the outbox to be mirrored",
            ("target",),
            registry=self.registry,
        )
        self.outbox_dead = Gauge(
            "gateway_outbox_dead",
            "Mirrors the target refused for good (kept for the operator)",
            registry=self.registry,
        )


class ModeChange(msgspec.Struct, forbid_unknown_fields=True):
    """PUT /admin/mode: fields left out keep their current value."""

    mode: str | None = None
    primary: str | None = None
    weight: int | None = None
    # The operator's override of the routing guards (e.g. a non-empty outbox).
    force: bool = False


def admin_guard(token: str) -> Guard:
    """A guard: `Authorization: Bearer ADMIN_TOKEN` or 401. An empty token admits no one."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        sent = connection.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not token or not sent or not hmac.compare_digest(sent, token):
            raise NotAuthorizedException(
                "admin token required", headers={"WWW-Authenticate": "Bearer"}
            )

    return guard


def build_admin_app(
    token: str,
    gateway: Gateway,
    extra: Sequence[ControllerRouterHandler] = (),
    public: Sequence[ControllerRouterHandler] = (),
) -> Litestar:
    """The admin app: state, mode changes, the diff table and the metrics.

    `extra` handlers (the canary's, the outbox's) are mounted under /admin with the same token
    guard as the rest, so their paths are relative (`/canary` answers at /admin/canary).
    `public` handlers are mounted at the root without the guard: only what holds no data (the
    console's page, which asks for the token itself).
    """

    @get("/state")
    async def read_state() -> dict[str, Any]:
        return gateway.describe()

    @put("/mode")
    async def write_mode(data: ModeChange) -> dict[str, Any]:
        now = gateway.controller.routing
        mode = data.mode if data.mode is not None else now.mode
        primary = data.primary if data.primary is not None else now.primary
        weight = data.weight if data.weight is not None else now.weight
        try:
            gateway.controller.set(mode, primary, weight, force=data.force)  # type: ignore[arg-type]
        except RoutingBlocked as exc:
            raise HTTPException(
                f"routing not changed: {exc}", status_code=HTTP_409_CONFLICT
            ) from None
        except ValueError as exc:
            raise ValidationException(
                str(exc),
                extra=[
                    {"key": "mode", "message": "direct, shadow or canary"},
                    {"key": "primary", "message": "mock or prod"},
                    {"key": "weight", "message": "0..100"},
                ],
            ) from None
        return gateway.describe()

    @get("/diffs")
    async def read_diffs(min_samples: int = 50, threshold: float = 0.01) -> dict[str, Any]:
        return gateway.differ.document(min_samples, threshold)

    @delete("/diffs", status_code=200)
    async def reset_diffs() -> dict[str, Any]:
        gateway.differ.reset()
        return gateway.differ.document()

    @get("/gateway/metrics")
    async def metrics() -> Response[bytes]:
        return Response(
            generate_latest(gateway.metrics.registry),
            media_type=CONTENT_TYPE_LATEST,
        )

    return Litestar(
        [
            Router(
                "/admin",
                route_handlers=[read_state, write_mode, read_diffs, reset_diffs, *extra],
                guards=[admin_guard(token)],
            ),
            metrics,
            *public,
        ],
        openapi_config=None,
        logging_config=None,
    )
