"""The operator console: one page on the gateway's admin port, and the reads it needs.

GET /console serves the page without the token (it holds no data; it asks the operator for the
admin token once and keeps it in the tab's sessionStorage). Everything the page shows comes from
the token-guarded admin API, polled every 1.5 s: GET /admin/state, /admin/cutover (the state
file's phase, history and gates), /admin/upstreams (each backend's health, probed now),
/admin/diffs, /admin/canary and /admin/outbox when those exist. Its buttons call the same admin
API as the CLI (POST /admin/promote, /admin/rollback, /admin/canary/abort, PUT /admin/mode).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
from litestar import Response, get
from litestar.types import ControllerRouterHandler

from ops.gateway.routing import UPSTREAMS
from ops.state import StateError

if TYPE_CHECKING:
    from ops.gateway.proxy import Gateway

PAGE = Path(__file__).with_name("console.html")
HEALTH = "/api/v1/health"
PROBE_TIMEOUT = 2.0
HISTORY_SHOWN = 30
# The page is the operator's: never cached, never framed by another site.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
}


async def probe(client: httpx.AsyncClient, base_url: str) -> dict[str, Any]:
    """One health check of the backend at `base_url`; never raises. The console's own client,
    not the proxy's pool: it reports the backend, whatever state the proxy is in."""
    started = time.perf_counter()
    try:
        answer = await client.get(base_url.rstrip("/") + HEALTH)
    except httpx.HTTPError as exc:
        return {"ok": False, "error": type(exc).__name__}
    try:
        body: Any = answer.json()
    except ValueError:
        body = None
    status = body.get("status") if isinstance(body, dict) else None
    return {
        "ok": answer.status_code == 200,
        "status_code": answer.status_code,
        "status": status,
        "ms": round((time.perf_counter() - started) * 1000, 1),
    }


def console_handlers(
    gateway: Gateway,
) -> tuple[list[ControllerRouterHandler], list[ControllerRouterHandler]]:
    """(public, guarded): the page itself, and the reads mounted under the guarded /admin."""

    @get("/console", media_type="text/html", cache=False, include_in_schema=False)
    async def console_page() -> Response[bytes]:
        return Response(PAGE.read_bytes(), headers=PAGE_HEADERS)

    @get("/cutover", cache=False)
    async def read_cutover() -> dict[str, Any]:
        store = gateway.controller.store
        if store is None:
            return {"phase": None, "history": [], "gates": {}, "processes": {}}
        try:
            state = msgspec.to_builtins(await asyncio.to_thread(store.load))
        except StateError as exc:
            return {"phase": None, "history": [], "gates": {}, "error": str(exc)}
        state["history"] = state.get("history", [])[-HISTORY_SHOWN:]
        return dict(state)

    @get("/upstreams", cache=False)
    async def read_upstreams() -> dict[str, Any]:
        urls = {name: gateway.config.upstreams.get(name) for name in UPSTREAMS}
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT) as client:
            results = await asyncio.gather(
                *(probe(client, url) for url in urls.values() if url is not None)
            )
        answered = dict(zip([name for name, url in urls.items() if url], results, strict=True))
        return {name: {"url": urls[name], **result} for name, result in answered.items()}

    return [console_page], [read_cutover, read_upstreams]
