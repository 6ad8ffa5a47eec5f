"""Writes during the cutover: mirrored synchronously to the other backend, failed mirrors kept
in a durable outbox and replayed in order.

A mirrorable write goes to the client's backend first; when that answers 2xx, the same request
goes to the other backend before the client is answered (the client gets its own backend's
answer). A mirror that cannot be delivered (connection error, timeout, 5xx, 429) becomes an
outbox entry: one 0600 JSON file per entry under `var/outbox/`, written with fsync before the
client is answered, so an acknowledged write survives a gateway crash. A background task replays
the entries head first, per target; while a target has entries, new mirrors to it queue behind
them, so a later write never overtakes an earlier one. While the outbox holds entries, a guard
refuses any routing change that sends more clients to prod.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import httpx
import msgspec
from litestar import get
from litestar.types import ControllerRouterHandler

from ops.gateway.admin import GatewayMetrics
from ops.gateway.differ import Answer, RequestCopy, redact_body
from ops.gateway.routing import UPSTREAMS, Routing, Upstream, other, prod_share

log = logging.getLogger("ops.gateway.writes")

Forward = Callable[[Upstream, RequestCopy], Awaitable[Answer]]
Verdict = Literal["done", "retry", "dead"]

# Writes whose effect is keyed by what the client sent, so the same request on the other
# backend makes the same record there. Not mirrored: login and refresh (each backend issues
# its own refresh token, unknown to the other: a mirrored login would mint a token no client
# holds and a mirrored refresh could only fail), and POST /backtests without a client id (each
# backend would pick its own id, so the mirror would be a different backtest the client never
# sees; PostgreSQL's copy reaches the mock on a rollback rebuild).
MIRRORED = frozenset(
    {
        ("PUT", "/api/v1/watchlists/{name}"),
        ("DELETE", "/api/v1/watchlists/{name}"),
        ("DELETE", "/api/v1/backtests/{backtest_id}"),
        ("POST", "/api/v1/auth/register"),
        ("POST", "/api/v1/auth/logout"),
        ("DELETE", "/api/v1/auth/me"),
    }
)
BACKTEST_SUBMIT = ("POST", "/api/v1/backtests")
# The client's cookies mean nothing to a backend (auth is the bearer token): not stored.
DROPPED_HEADERS = frozenset({"cookie"})
SHOWN_ENTRIES = 5


def is_mirrorable(method: str, route: str, body: bytes) -> bool:
    """Whether a write on `route` is repeated on the other backend (see MIRRORED)."""
    if (method, route) in MIRRORED:
        return True
    if (method, route) == BACKTEST_SUBMIT:
        with contextlib.suppress(msgspec.DecodeError):
            sent = msgspec.json.decode(body)
            return isinstance(sent, dict) and isinstance(sent.get("id"), str)
    return False


def verdict(method: str, status: int) -> Verdict:
    """What a target's answer to a mirrored write means.

    409 (it exists: a replayed register or backtest) and 404 on a DELETE (already gone) are the
    write already done; 5xx, 429 and 408 are worth another try; any other 4xx is a refusal that
    no retry changes (kept as dead, with the reason, for the operator).
    """
    if 200 <= status < 300 or status == 409 or (status == 404 and method == "DELETE"):
        return "done"
    if status >= 500 or status in (408, 429):
        return "retry"
    return "dead"


class OutboxEntry(msgspec.Struct, kw_only=True):
    """A mirror not yet delivered: the request as forwarded (Authorization kept: replaying
    needs it; hence the 0600 files), where it goes, and how its tries went."""

    seq: int
    method: str
    path: str
    route: str
    headers: list[tuple[str, str]]
    body: bytes
    target: Upstream
    first_failed_at: float
    attempts: int = 0
    last_error: str = ""
    next_try_at: float = 0.0
    dead_reason: str | None = None

    def request(self) -> RequestCopy:
        return RequestCopy(self.method, self.path, self.route, tuple(self.headers), self.body)

    def public(self) -> dict[str, Any]:
        """The entry for GET /admin/outbox: no headers, secrets in the body redacted."""
        shown: dict[str, Any] = {
            "seq": self.seq,
            "method": self.method,
            "path": self.path,
            "target": self.target,
            "first_failed_at": self.first_failed_at,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "body": redact_body(self.body, self.route),
        }
        if self.dead_reason is not None:
            shown["dead_reason"] = self.dead_reason
        return shown


def _write_atomically(path: Path, data: bytes) -> None:
    """Write, fsync, rename, fsync the folder: the file is whole or absent after a crash."""
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, path)
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class Outbox:
    """Failed mirrors on disk, replayed in order per target with exponential backoff.

    Files are written synchronously on the event loop (a few ms, only when a mirror failed):
    an entry is in memory and on disk in one step, so no later mirror can slip past it.
    """

    def __init__(
        self,
        folder: Path,
        forward: Forward,
        metrics: GatewayMetrics,
        *,
        timeout: float = 5.0,
        first_delay: float = 0.5,
        max_delay: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.folder = folder
        self.dead_folder = folder / "dead"
        self.forward = forward
        self.metrics = metrics
        self.timeout = timeout
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.clock = clock
        self.queues: dict[Upstream, deque[OutboxEntry]] = {name: deque() for name in UPSTREAMS}
        self.dead: list[OutboxEntry] = []
        self.retried = 0
        self.drained = 0
        self._next_seq = 1
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._load()

    # -- the files ------------------------------------------------------------------------

    def _load(self) -> None:
        """Re-read the entries a previous gateway left, oldest first."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.dead_folder.mkdir(exist_ok=True, mode=0o700)
        decoder = msgspec.json.Decoder(OutboxEntry)
        highest = 0
        for folder, into_dead in ((self.folder, False), (self.dead_folder, True)):
            for path in sorted(folder.glob("*.json")):
                try:
                    entry = decoder.decode(path.read_bytes())
                except (OSError, msgspec.DecodeError) as exc:
                    # Never dropped silently: left on disk and named in the log.
                    log.error("outbox: unreadable entry %s left in place: %s", path, exc)
                    continue
                highest = max(highest, entry.seq)
                # A restart is a fresh chance: the backoff of the previous process restarts.
                entry.next_try_at = min(entry.next_try_at, self.clock() + self.first_delay)
                if into_dead:
                    self.dead.append(entry)
                else:
                    self.queues[entry.target].append(entry)
        for queue in self.queues.values():
            ordered = sorted(queue, key=lambda e: e.seq)
            queue.clear()
            queue.extend(ordered)
        self.dead.sort(key=lambda e: e.seq)
        self._next_seq = highest + 1
        self._gauge()
        if self.pending():
            log.warning("outbox: %d write(s) left to mirror from before a restart", self.pending())

    def _path(self, entry: OutboxEntry) -> Path:
        folder = self.dead_folder if entry.dead_reason is not None else self.folder
        return folder / f"{entry.seq:012d}.json"

    def _save(self, entry: OutboxEntry) -> None:
        _write_atomically(self._path(entry), msgspec.json.encode(entry))

    def _gauge(self) -> None:
        for target, queue in self.queues.items():
            self.metrics.outbox_pending.labels(target=target).set(len(queue))
        self.metrics.outbox_dead.set(len(self.dead))

    # -- adding ----------------------------------------------------------------------------

    def pending(self, target: Upstream | None = None) -> int:
        if target is not None:
            return len(self.queues[target])
        return sum(len(queue) for queue in self.queues.values())

    def add(self, request: RequestCopy, target: Upstream, error: str) -> OutboxEntry:
        """Keep a mirror that could not be delivered; on disk before this returns."""
        now = self.clock()
        entry = OutboxEntry(
            seq=self._next_seq,
            method=request.method,
            path=request.path,
            route=request.route,
            headers=[(k, v) for k, v in request.headers if k not in DROPPED_HEADERS],
            body=request.body,
            target=target,
            first_failed_at=now,
            attempts=1,
            last_error=error,
            next_try_at=now + self.first_delay,
        )
        self._next_seq += 1
        self._save(entry)
        self.queues[target].append(entry)
        self._gauge()
        self._wake.set()
        return entry

    def add_dead(self, request: RequestCopy, target: Upstream, reason: str) -> OutboxEntry:
        """A mirror the target refused for good: kept for the operator, never replayed."""
        entry = self.add(request, target, reason)
        self._kill(entry, reason)
        return entry

    def _kill(self, entry: OutboxEntry, reason: str) -> None:
        queue = self.queues[entry.target]
        with contextlib.suppress(ValueError):
            queue.remove(entry)
        live = self._path(entry)
        entry.dead_reason = reason
        self._save(entry)
        live.unlink(missing_ok=True)
        self.dead.append(entry)
        self._gauge()
        log.error(
            "outbox: %s %s to %s refused for good: %s",
            entry.method, entry.path, entry.target, reason,
        )  # fmt: skip

    # -- replaying -------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                wait = await self.drain_once()
            except Exception:  # the replay loop must outlive any one bad answer
                log.exception("outbox: replay failed; trying again shortly")
                wait = self.first_delay
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def drain_once(self) -> float | None:
        """Replay what is due, head first per target; the seconds until the next is due."""
        soonest: float | None = None
        for queue in self.queues.values():
            while queue:
                head = queue[0]
                if head.next_try_at <= self.clock() and await self._replay(head):
                    continue
                # Not due yet, or it failed again (its next try is set): wait for it.
                due_in = max(0.0, head.next_try_at - self.clock())
                soonest = due_in if soonest is None else min(soonest, due_in)
                break
        return soonest

    async def _replay(self, entry: OutboxEntry) -> bool:
        """One try of the head entry; True when it left the queue (done or dead)."""
        self.retried += 1
        self.metrics.outbox_retried.labels(target=entry.target).inc()
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self.forward(entry.target, entry.request())
        except (httpx.TransportError, TimeoutError) as exc:
            self._again(entry, f"{type(exc).__name__}: {exc}".rstrip(": "))
            return False
        outcome = verdict(entry.method, answer.status)
        if outcome == "retry":
            self._again(entry, f"HTTP {answer.status}")
            return False
        if outcome == "dead":
            self._kill(entry, f"HTTP {answer.status}: {answer.body[:200].decode(errors='replace')}")
            return True
        self.queues[entry.target].popleft()
        self._path(entry).unlink(missing_ok=True)
        self.drained += 1
        self.metrics.writes_mirrored.labels(target=entry.target).inc()
        self._gauge()
        log.info("outbox: %s %s mirrored to %s", entry.method, entry.path, entry.target)
        return True

    def _again(self, entry: OutboxEntry, error: str) -> None:
        entry.attempts += 1
        entry.last_error = error
        delay = min(self.max_delay, self.first_delay * 2 ** (entry.attempts - 1))
        entry.next_try_at = self.clock() + delay
        self._save(entry)

    # -- the guard and the admin view ------------------------------------------------------

    def guard(self, before: Routing, after: Routing) -> str | None:
        """Refuse a change that sends more clients to prod while writes wait to be mirrored:
        those clients would read prod before it has them. Changes toward the mock pass."""
        pending = self.pending()
        if pending == 0 or prod_share(after) <= prod_share(before):
            return None
        targets = ", ".join(t for t in UPSTREAMS if self.queues[t])
        return (
            f"the outbox holds {pending} write(s) not yet mirrored to {targets}; "
            "the change goes through once it drains (GET /admin/outbox)"
        )

    def counts(self) -> dict[str, Any]:
        return {
            "pending": self.pending(),
            "pending_by_target": {t: len(q) for t, q in self.queues.items()},
            "dead": len(self.dead),
            "retried": self.retried,
            "drained": self.drained,
        }


class WriteMirror:
    """Sends each mirrorable write that its client's backend accepted to the other backend."""

    def __init__(
        self, outbox: Outbox, forward: Forward, metrics: GatewayMetrics, timeout: float = 5.0
    ) -> None:
        self.outbox = outbox
        self.forward = forward
        self.metrics = metrics
        self.timeout = timeout
        self.writes = 0
        self.mirrored = 0
        self.failed = 0

    async def after(self, request: RequestCopy, answered_by: Upstream, answer: Answer) -> None:
        """Mirror `request` when it is mirrorable and `answered_by` accepted it (2xx); a
        refused write is not repeated. Returns once mirrored or kept in the outbox."""
        if not 200 <= answer.status < 300:
            return
        if not is_mirrorable(request.method, request.route, request.body):
            return
        target = other(answered_by)
        self.writes += 1
        self.metrics.writes.labels(route=request.route).inc()
        if self.outbox.pending(target):
            self._failed(target)
            self.outbox.add(request, target, "queued behind earlier writes to the same backend")
            return
        try:
            async with asyncio.timeout(self.timeout):
                mirrored = await self.forward(target, request)
        except (httpx.TransportError, TimeoutError) as exc:
            self._failed(target)
            self.outbox.add(request, target, f"{type(exc).__name__}: {exc}".rstrip(": "))
            return
        outcome = verdict(request.method, mirrored.status)
        if outcome == "done":
            self.mirrored += 1
            self.metrics.writes_mirrored.labels(target=target).inc()
        elif outcome == "retry":
            self._failed(target)
            self.outbox.add(request, target, f"HTTP {mirrored.status}")
        else:
            self._failed(target)
            detail = mirrored.body[:200].decode(errors="replace")
            self.outbox.add_dead(request, target, f"HTTP {mirrored.status}: {detail}")

    def _failed(self, target: Upstream) -> None:
        self.failed += 1
        self.metrics.mirror_failed.labels(target=target).inc()

    def describe(self) -> dict[str, Any]:
        """The `outbox` part of GET /admin/state."""
        return {
            **self.outbox.counts(),
            "writes": self.writes,
            "mirrored": self.mirrored + self.outbox.drained,
            "failed": self.failed,
        }

    def handlers(self) -> list[ControllerRouterHandler]:
        """GET /outbox, mounted under the guarded /admin router."""

        @get("/outbox")
        async def read_outbox() -> dict[str, Any]:
            queued = sorted(
                (e for q in self.outbox.queues.values() for e in q), key=lambda e: e.seq
            )
            return {
                **self.describe(),
                "entries": [e.public() for e in queued[:SHOWN_ENTRIES]],
                "dead_entries": [e.public() for e in self.outbox.dead[-SHOWN_ENTRIES:]],
            }

        return [read_outbox]


__all__ = ["MIRRORED", "Outbox", "OutboxEntry", "WriteMirror", "is_mirrorable", "verdict"]
