"""The one place that assembles a contract app: both backends call `build_app`."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from litestar import Litestar, Response, get
from litestar.config.cors import CORSConfig
from litestar.datastructures import MutableScopeHeaders, State
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme, Tag
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST

from contract import API_PREFIX, CONTRACT_VERSION
from contract.errors import EXCEPTION_HANDLERS, MAX_BODY_BYTES, RateLimited, send_error
from contract.identity import TokenError, decode_token
from contract.logs import request_id_var
from contract.ports import Services
from contract.routes import ROUTES
from contract.routes.deps import provide_services

access_log = logging.getLogger("access")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_EXPOSED = [
    "X-Request-ID",
    "X-Backend",
    # Set by the gateway on what it relays: the dashboard shows which upstream answered.
    "X-Gateway-Upstream",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
]
# Routes outside the per-user rate limit: probes, metrics and docs must answer an operator.
_UNLIMITED = ("/api/v1/health", "/metrics", "/schema", "/ws")


class MetricsController(PrometheusController):
    """Litestar's Prometheus endpoint, documented as the text it answers."""

    @get(
        media_type=CONTENT_TYPE_LATEST,
        summary="Prometheus metrics (route templates, not raw paths)",
        tags=["system"],
    )
    async def get(self) -> Response[bytes]:
        answer: Response[bytes] = await PrometheusController.get.fn(self)
        return answer


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Cutover Kit trading-signals API",
        version=CONTRACT_VERSION,
        description=(
            "One contract, two backends (mock and production). Errors have the shape "
            "{status_code, detail, extra?}; every response carries X-Request-ID and X-Backend."
        ),
        path="/schema",
        components=Components(
            security_schemes={
                "BearerToken": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    bearer_format="JWT",
                    description="access token from /api/v1/auth/login",
                )
            }
        ),
        tags=[
            Tag(name=name)
            for name in (
                "system",
                "market data",
                "signals",
                "insights",
                "agents",
                "backtests",
                "auth",
                "watchlists",
            )
        ],
        use_handler_docstrings=False,
    )


def _request_id(scope: Scope) -> str:
    """The request's id: the client's X-Request-ID if well-formed, else a new one (once)."""
    state = scope.setdefault("state", {})
    request_id: str | None = state.get("request_id")
    if request_id is None:
        sent = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = sent if _REQUEST_ID_RE.match(sent) else uuid.uuid4().hex
        state["request_id"] = request_id
    return request_id


class RequestContext:
    """Puts the request id in the logging context, and logs one access line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = request_id_var.set(_request_id(scope))
        started = time.perf_counter()
        status = 0

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            if scope["type"] == ScopeType.HTTP:
                access_log.info(
                    "%s %s %s %.1fms",
                    scope.get("method", "-"),
                    scope.get("path", "-"),
                    status or "-",
                    (time.perf_counter() - started) * 1000,
                )
            request_id_var.reset(token)


# Security headers of every HTTP answer, the same on both backends. A JSON API is never rendered,
# framed or sniffed as a page. No Strict-Transport-Security: the backends speak plain HTTP on
# loopback, browsers ignore HSTS without TLS, and whatever terminates TLS in front sets it.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# The docs pages under /schema load their UI from a CDN and run inline bootstrap code.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net "
    "https://unpkg.com; style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net "
    "https://unpkg.com https://fonts.googleapis.com; font-src 'self' https://fonts.gstatic.com; "
    "img-src 'self' data: https:; frame-ancestors 'none'"
)
_DOCS_PAGES = ("/schema",)
_DOCS_DOCUMENTS = ("/schema/openapi.json", "/schema/openapi.yaml", "/schema/openapi.yml")
_COMMON_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
# Appended as prepared bytes: no handler sets them, and this runs on every answer.
_API_HEADERS = [*_COMMON_HEADERS, (b"content-security-policy", API_CSP.encode())]
_DOCS_HEADERS = [*_COMMON_HEADERS, (b"content-security-policy", DOCS_CSP.encode())]


def stamp_headers(backend: str) -> Callable[[Message, Scope], Any]:
    """A before-send hook: X-Request-ID, X-Backend and the security headers on every answer,
    404s and 405s included (a WebSocket accept gets the first two)."""

    async def stamp(message: Message, scope: Scope) -> None:
        if message["type"] in ("http.response.start", "websocket.accept"):
            headers = MutableScopeHeaders.from_message(message)
            headers["X-Request-ID"] = _request_id(scope)
            headers["X-Backend"] = backend
        if message["type"] == "http.response.start":
            path: str = scope.get("path", "")
            page = path.startswith(_DOCS_PAGES) and not path.startswith(_DOCS_DOCUMENTS)
            message["headers"] = [
                *message.get("headers", ()),
                *(_DOCS_HEADERS if page else _API_HEADERS),
            ]

    return stamp


class RateLimit:
    """Per-user limits (the token's subject), else per client address, with RateLimit-* headers.

    The counting itself is the backend's `RateLimitPort` (atomic in Redis in production), so the
    limit holds across worker processes.
    """

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    def _key(self, scope: Scope) -> str:
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token:
            try:
                return "user:" + decode_token(self.services.secret_key, token.strip(), "access").sub
            except TokenError:
                pass
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        forwarded = headers.get(b"x-forwarded-for", b"").decode("latin-1")
        if forwarded and peer in self.services.trusted_proxies:
            peer = forwarded.split(",")[0].strip() or peer
        return "addr:" + peer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != ScopeType.HTTP
            or path.startswith(_UNLIMITED)
            or not path.startswith(API_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        limit = self.services.limits.per_minute
        decision = await self.services.limiter.hit(self._key(scope), limit, 60)
        values = {
            "RateLimit-Limit": str(decision.limit),
            "RateLimit-Remaining": str(decision.remaining),
            "RateLimit-Reset": str(decision.reset_seconds),
        }
        if not decision.allowed:
            exc = RateLimited(decision.limit, decision.reset_seconds)
            await send_error(send, exc.status_code, exc.detail, exc.headers)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                for key, value in values.items():
                    if key not in headers:  # a 429 of its own (login) keeps its figures
                        headers[key] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def build_app(
    services: Services,
    *,
    cors_origins: Sequence[str] = (),
    on_startup: Sequence[Callable[..., Any]] = (),
    on_shutdown: Sequence[Callable[..., Any]] = (),
    extra_routes: Sequence[Any] = (),
    extra_middleware: Sequence[Any] = (),
    plugins: Sequence[Any] = (),
    exception_handlers: Mapping[type[Exception] | int, Any] | None = None,
    before_send: Sequence[Callable[[Message, Scope], Any]] = (),
    debug: bool = False,
) -> Litestar:
    """The contract's app for one backend's services: routes, errors, headers, limits, docs.

    `exception_handlers` add to (or refine) the contract's handlers, e.g. a backend's own
    "dependency down" errors; `before_send` hooks run after the contract's header stamp.
    """
    prometheus = PrometheusConfig(
        app_name=f"cutover_{services.backend}",
        group_path=True,
        exclude=["/metrics"],
    )
    return Litestar(
        route_handlers=[*ROUTES, MetricsController, *extra_routes],
        dependencies={"services": Provide(provide_services, sync_to_thread=False)},
        state=State({"services": services}),
        exception_handlers={**EXCEPTION_HANDLERS, **(exception_handlers or {})},
        middleware=[
            RequestContext,
            prometheus.middleware,
            DefineMiddleware(RateLimit, services=services),
            *extra_middleware,
        ],
        cors_config=CORSConfig(
            allow_origins=list(cors_origins) or ["*"],
            expose_headers=_EXPOSED,
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        ),
        openapi_config=openapi_config(),
        request_max_body_size=MAX_BODY_BYTES,
        before_send=[stamp_headers(services.backend), *before_send],
        on_startup=list(on_startup),
        on_shutdown=list(on_shutdown),
        plugins=list(plugins),
        logging_config=None,  # each process configures logging itself (contract.logs)
        debug=debug,
    )
