"""What the production backend tells its operators: metrics, error reports and response headers.

- Prometheus: the contract app mounts Litestar's plugin (route templates, `group_path=True`);
  with several workers `PROMETHEUS_MULTIPROC_DIR` is set by the server before any worker starts,
  and `/metrics` on any worker sums all of them. The backend adds cache hits and misses, the feed's
  lag and the backtest queue's depth.
- Sentry's Litestar integration when SENTRY_DSN is set, initialised before the app is built.
- X-Worker on every answer: which worker answered (the security headers are the contract's).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sentry_sdk
from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope
from prometheus_client import Counter, Gauge
from sentry_sdk.integrations.litestar import LitestarIntegration
from sentry_sdk.transport import Transport

from backend.settings import Settings
from contract import CONTRACT_VERSION

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

CACHE_HITS = Counter(
    "cutover_cache_hits_total",
    "Market-data reads answered from a cache, by layer (process memory or Redis)",
    ["layer"],
)
CACHE_MISSES = Counter(
    "cutover_cache_misses_total",
    "Market-data reads a cache layer could not answer (Redis misses include Redis being down)",
    ["layer"],
)
FEED_LAG = Gauge(
    "cutover_feed_lag_seconds",
    "Seconds since the quote feed last published a tick (as seen by the workers)",
    multiprocess_mode="livemax",
)
QUEUE_DEPTH = Gauge(
    "cutover_backtest_queue_depth",
    "Backtest jobs waiting in the job queue",
    multiprocess_mode="livemax",
)


def worker_header(worker: str) -> Callable[[Message, Scope], Any]:
    """A before-send hook: X-Worker (which worker answered) on every answer and WebSocket accept.
    The security headers are the contract's (contract/app.py), the same on both backends."""

    async def stamp(message: Message, scope: Scope) -> None:
        if message["type"] in ("http.response.start", "websocket.accept"):
            headers = MutableScopeHeaders.from_message(message)
            headers["X-Worker"] = worker

    return stamp


def init_sentry(settings: Settings, transport: Transport | None = None) -> bool:
    """Start Sentry's SDK with the Litestar integration when SENTRY_DSN is set (before the app
    is built: the integration patches Litestar's constructor). True when it was started."""
    if not settings.sentry_dsn:
        return False
    # 503 means a dependency is down: an operational state reported by health, not a bug.
    failed = set(range(500, 600)) - {503}
    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.sentry_environment,
        release=f"cutover-kit@{CONTRACT_VERSION}",
        integrations=[LitestarIntegration(failed_request_status_codes=failed)],
        traces_sample_rate=0.0,
        send_default_pii=False,
        transport=transport,
    )
    return True


def prepare_multiprocess_dir(directory: Path) -> None:
    """Empty `directory` of a previous run's metric files and point prometheus_client at it.

    Call before any worker imports prometheus_client (the server does, before spawning them).
    """
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)


def worker_exited(pid: int) -> None:
    """Forget a dead worker's live gauges (its counters stay in the sums)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
