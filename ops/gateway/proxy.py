"""The reverse proxy: each client's requests and WebSockets to its backend, reads copied to the
candidate in shadow mode, one retry of an idempotent request on the other backend.

Plain ASGI (served by uvicorn) with one pooled keep-alive HTTP/1.1 client per upstream. Bodies
are read whole: the API's answers are small JSON documents and the differ needs them whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import secrets
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ops.gateway.admin import GatewayMetrics
from ops.gateway.differ import Answer, Differ, RequestCopy, ShadowJob
from ops.gateway.routing import (
    CLIENT_COOKIE,
    IDEMPOTENT,
    UPSTREAMS,
    Client,
    RouteTemplates,
    Routing,
    RoutingController,
    Upstream,
    bucket_of,
    identify,
    is_shadowed_read,
    other,
)
from ops.gateway.upstream import UpstreamClient
from ops.gateway.window import AnswerWindow
from ops.gateway.writes import WriteMirror

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
# The upstream client hands over decoded bodies, so the encoding header must not travel with them.
DROPPED_ANSWER_HEADERS = HOP_BY_HOP | {"content-encoding"}
UPSTREAM_HEADER = b"x-gateway-upstream"
WS_SERVICE_RESTART = 1012
# Connection failures: nothing reached the upstream, so an idempotent request may go elsewhere.
CONNECT_FAILURES = (httpx.ConnectError, httpx.ConnectTimeout)


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Where the upstreams are and how long to wait for them."""

    upstreams: Mapping[Upstream, str]
    connect_timeout: float = 2.0
    read_timeout: float = 30.0
    max_connections: int = 200


def sticky_cookie(bucket: int) -> str:
    """A fresh cookie value that hashes into `bucket`, so the client keeps the bucket its
    address gave it on the first request (about 100 tries of a fast hash, once per client)."""
    for _ in range(10_000):
        value = secrets.token_urlsafe(12)
        if bucket_of(f"cookie:{value}") == bucket:
            return value
    return secrets.token_urlsafe(12)


@dataclass(slots=True)
class TrackedSocket:
    bucket: int
    upstream: Upstream
    moved: asyncio.Event = field(default_factory=asyncio.Event)


class SocketTracker:
    """Open WebSockets by bucket, so that a weight change can move exactly the clients it moves."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics
        self._sockets: dict[int, TrackedSocket] = {}
        self._ids = itertools.count()

    def add(self, socket: TrackedSocket) -> int:
        key = next(self._ids)
        self._sockets[key] = socket
        self.metrics.websockets.labels(upstream=socket.upstream).inc()
        return key

    def remove(self, key: int) -> None:
        socket = self._sockets.pop(key, None)
        if socket is not None:
            self.metrics.websockets.labels(upstream=socket.upstream).dec()

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(UPSTREAMS, 0)
        for socket in self._sockets.values():
            counts[socket.upstream] += 1
        return counts

    def on_routing(self, _before: Routing, after: Routing) -> None:
        """Flag every socket whose client now belongs to the other backend."""
        for socket in self._sockets.values():
            if after.upstream_for(socket.bucket) != socket.upstream and not socket.moved.is_set():
                socket.moved.set()
                self.metrics.websocket_moves.inc()


def _headers(scope: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]


def _address(scope: Mapping[str, Any]) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def forwarded_headers(headers: list[tuple[str, str]], address: str) -> tuple[tuple[str, str], ...]:
    """The client's headers minus hop-by-hop ones, with the client added to X-Forwarded-For."""
    kept = [(k, v) for k, v in headers if k not in HOP_BY_HOP and k != "x-forwarded-for"]
    prior = ", ".join(v for k, v in headers if k == "x-forwarded-for")
    kept.append(("x-forwarded-for", f"{prior}, {address}" if prior else address))
    return tuple(kept)


def _target(scope: Mapping[str, Any]) -> str:
    raw = scope.get("raw_path") or scope["path"].encode()
    path = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


class Gateway:
    """The ASGI app on the gateway's public port."""

    def __init__(
        self,
        config: GatewayConfig,
        controller: RoutingController,
        templates: RouteTemplates,
        metrics: GatewayMetrics,
        differ: Differ | None = None,
    ) -> None:
        self.config = config
        self.controller = controller
        self.templates = templates
        self.metrics = metrics
        self.clients = {
            name: UpstreamClient(
                url,
                connect_timeout=config.connect_timeout,
                read_timeout=config.read_timeout,
                max_connections=config.max_connections,
            )
            for name, url in config.upstreams.items()
        }
        self.differ = differ or Differ([], self.forward, metrics)
        self.sockets = SocketTracker(metrics)
        controller.listen(self.sockets.on_routing)
        self.counts: dict[str, int] = dict.fromkeys(UPSTREAMS, 0)
        self.retries = 0
        # Set by the process that serves the gateway (ops/gateway/__main__.py), like the differ.
        self.writes: WriteMirror | None = None
        # The canary's measurements per upstream, and its differ for the sample of prod's reads
        # also sent to the mock; both in use only while a canary runs (ops/gateway/canary.py).
        self.window = AnswerWindow()
        self.canary_differ: Differ | None = None
        self.canary_mirror_share = 0.0

    async def aclose(self) -> None:
        await self.differ.stop()
        if self.writes is not None:
            await self.writes.outbox.stop()
        for client in self.clients.values():
            await client.aclose()

    def describe(self) -> dict[str, Any]:
        """What GET /admin/state answers."""
        routing = self.controller.routing
        described: dict[str, Any] = {
            "mode": routing.mode,
            "primary": routing.primary,
            "candidate": routing.candidate,
            "weight": routing.weight,
            "upstreams": dict(self.config.upstreams),
            "counts": {
                "requests": dict(self.counts),
                "retries": self.retries,
                "websockets": self.sockets.counts(),
                "shadow": {
                    "sent": self.differ.sent,
                    "dropped": self.differ.dropped,
                    "failed": self.differ.failed,
                },
            },
        }
        if self.writes is not None:
            described["outbox"] = self.writes.describe()
        return described

    async def forward(self, upstream: Upstream, request: RequestCopy) -> Answer:
        """Send a request to one upstream and read its whole answer (httpx.TransportError when
        it cannot: ConnectError/ConnectTimeout when nothing reached the upstream)."""
        status, headers, body = await self.clients[upstream].request(
            request.method, request.path, list(request.headers), request.body
        )
        return Answer(status=status, headers=headers, body=body)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)

    def _client(self, scope: Mapping[str, Any], headers: list[tuple[str, str]]) -> Client:
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        tokens = query.get("token")
        return identify(dict(headers), tokens[0] if tokens else None, _address(scope))

    async def _http(self, scope: Any, receive: Any, send: Any) -> None:
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = _headers(scope)
        client = self._client(scope, headers)
        cookie = sticky_cookie(client.bucket) if client.needs_cookie else None
        routing = self.controller.routing
        upstream = routing.upstream_for(client.bucket)
        method: str = scope["method"]
        route = self.templates.template(scope["path"])
        request = RequestCopy(
            method=method,
            path=_target(scope),
            route=route,
            headers=forwarded_headers(headers, client.address),
            body=b"".join(chunks),
        )
        candidate = routing.candidate
        served_by, differ = routing.primary, self.differ
        if (
            self.canary_differ is not None
            and upstream == "prod"
            and routing.mode == "canary"
            and random.random() < self.canary_mirror_share
        ):
            # The canary's mirrored sample: prod answers, the mock's answer is compared with it.
            candidate, served_by, differ = "mock", "prod", self.canary_differ
        shadowed: asyncio.Future[Answer] | None = None
        if candidate is not None and is_shadowed_read(method, route):
            # Writes are never copied here: mirrorable ones go synchronously to the other
            # backend below (self.writes), with the durable outbox.
            shadowed = asyncio.get_running_loop().create_future()
            job = ShadowJob(request, served_by, candidate, shadowed)
            if not differ.offer(job):
                shadowed = None
        started = time.perf_counter()
        answer: Answer | None = None
        try:
            answer = await self.forward(upstream, request)
        except CONNECT_FAILURES:
            self.metrics.upstream_errors.labels(upstream=upstream, route=route).inc()
            self.window.connect_failure(upstream)
            if method in IDEMPOTENT:
                retry_on = other(upstream)
                self.retries += 1
                self.metrics.retries.labels(failed=upstream, retried_on=retry_on, route=route).inc()
                upstream = retry_on
                with contextlib.suppress(httpx.TransportError):
                    answer = await self.forward(upstream, request)
        except httpx.TransportError:
            # The upstream may have acted on it (it died mid-answer: a SIGKILLed prod): only an
            # idempotent request, which may run twice, goes to the other backend; a POST never.
            self.metrics.upstream_errors.labels(upstream=upstream, route=route).inc()
            self.window.connect_failure(upstream)  # no answer: a failure in the canary's figures
            if method in IDEMPOTENT:
                retry_on = other(upstream)
                self.retries += 1
                self.metrics.retries.labels(failed=upstream, retried_on=retry_on, route=route).inc()
                upstream = retry_on
                with contextlib.suppress(httpx.TransportError):
                    answer = await self.forward(upstream, request)
        elapsed = time.perf_counter() - started
        if answer is None:
            answer = Answer(
                status=502,
                headers=(("content-type", "application/json"),),
                body=b'{"status_code":502,"detail":"Upstream unavailable"}',
            )
        self.counts[upstream] += 1
        self.metrics.requests.labels(
            upstream=upstream, route=route, method=method, status_class=f"{answer.status // 100}xx"
        ).inc()
        self.metrics.latency.labels(upstream=upstream, route=route).observe(elapsed)
        self.window.record(upstream, answer.status, elapsed)
        if self.writes is not None:
            # Before the client hears of it: an acknowledged write is on both backends or in
            # the outbox on disk.
            await self.writes.after(request, upstream, answer)
        if shadowed is not None:
            if answer.status != 502 and upstream == served_by:
                shadowed.set_result(answer)
            else:
                shadowed.cancel()
        out = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in answer.headers
            if k not in DROPPED_ANSWER_HEADERS
        ]
        out.append((b"content-length", str(len(answer.body)).encode()))
        out.append((UPSTREAM_HEADER, upstream.encode()))
        if cookie is not None:
            value = f"{CLIENT_COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Lax"
            out.append((b"set-cookie", value.encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": out})
        await send({"type": "http.response.body", "body": answer.body})

    async def _open_upstream(
        self,
        upstream: Upstream,
        scope: Mapping[str, Any],
        headers: list[tuple[str, str]],
        address: str,
    ) -> ClientConnection:
        base = (
            self.config.upstreams[upstream]
            .replace("http://", "ws://", 1)
            .replace("https://", "wss://", 1)
        )
        wanted = [
            p.strip() for k, v in headers if k == "sec-websocket-protocol" for p in v.split(",")
        ]
        forwarded = [
            (k, v)
            for k, v in forwarded_headers(headers, address)
            if k in ("authorization", "cookie", "origin", "user-agent") or k.startswith("x-")
        ]
        return await connect(
            base.rstrip("/") + _target(scope),
            additional_headers=forwarded,
            subprotocols=wanted or None,  # type: ignore[arg-type]
            open_timeout=self.config.connect_timeout + 3,
            max_size=None,
            compression=None,
        )

    async def _websocket(self, scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        headers = _headers(scope)
        client = self._client(scope, headers)
        upstream = self.controller.routing.upstream_for(client.bucket)
        try:
            try:
                remote = await self._open_upstream(upstream, scope, headers, client.address)
            except InvalidStatus:
                raise
            except (OSError, InvalidHandshake, TimeoutError):
                # The handshake is a GET: idempotent, so the other backend may take it.
                retry_on = other(upstream)
                self.retries += 1
                self.metrics.retries.labels(failed=upstream, retried_on=retry_on, route="/ws").inc()
                upstream = retry_on
                remote = await self._open_upstream(upstream, scope, headers, client.address)
        except (OSError, InvalidHandshake, TimeoutError):
            await send({"type": "websocket.close", "code": 1011})
            return
        self.counts[upstream] += 1
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": remote.subprotocol,
                "headers": [(UPSTREAM_HEADER, upstream.encode())],
            }
        )
        tracked = TrackedSocket(client.bucket, upstream)
        key = self.sockets.add(tracked)
        try:
            await self._relay(receive, send, remote, tracked)
        finally:
            self.sockets.remove(key)
            with contextlib.suppress(Exception):
                await remote.close()

    async def _relay(
        self, receive: Any, send: Any, remote: ClientConnection, tracked: TrackedSocket
    ) -> None:
        async def client_to_upstream() -> None:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                await remote.send(text if text is not None else message.get("bytes") or b"")

        async def upstream_to_client() -> int:
            try:
                async for frame in remote:
                    if isinstance(frame, str):
                        await send({"type": "websocket.send", "text": frame})
                    else:
                        await send({"type": "websocket.send", "bytes": frame})
            except ConnectionClosed:
                pass
            code = remote.close_code
            return code if code is not None and code not in (1005, 1006, 1015) else 1011

        tasks = {
            "client": asyncio.create_task(client_to_upstream()),
            "upstream": asyncio.create_task(upstream_to_client()),
            "moved": asyncio.create_task(tracked.moved.wait()),
        }
        try:
            done, _ = await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks.values():
                task.cancel()
            for task in tasks.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if tasks["moved"] in done:
            await send({"type": "websocket.close", "code": WS_SERVICE_RESTART, "reason": "moved"})
        elif tasks["upstream"] in done and not tasks["upstream"].cancelled():
            with contextlib.suppress(Exception):
                code = tasks["upstream"].result()
                await send({"type": "websocket.close", "code": code})


__all__ = ["Gateway", "GatewayConfig", "SocketTracker"]
