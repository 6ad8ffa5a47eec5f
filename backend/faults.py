"""Fault injection across worker processes: the same faults as the mock (contract.faults), with
the run-time state kept in Redis so that a toggle on the admin app reaches every worker.

The server writes the start-up faults (FAULT_*) to Redis before its workers start; the admin app
(loopback, ADMIN_TOKEN) reads and writes that record; each worker reads it every second into the
`FaultState` its middleware consults, and opens or closes its listening socket for `refuse`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import msgspec
from litestar import Litestar
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from redis.exceptions import RedisError

from backend.cache import create_redis
from contract.errors import send_error
from contract.faults import DRIFTS, FaultState, build_admin_app

log = logging.getLogger("backend.faults")

FAULTS_KEY = "faults:production"
SYNC_SECONDS = 1.0


class FaultRecord(msgspec.Struct):
    latency_ms: int = 0
    error_rate: float = 0.0
    drift: str = ""
    refuse: bool = False


def encode_state(state: FaultState) -> bytes:
    return msgspec.json.encode(FaultRecord(**asdict(state)))


def apply_record(raw: bytes, state: FaultState) -> bool:
    """Copy a stored record into `state`; False (state untouched) when it is not one."""
    try:
        record = msgspec.json.decode(raw, type=FaultRecord)
    except msgspec.DecodeError:
        return False
    if record.drift not in DRIFTS or not 0 <= record.error_rate <= 1 or record.latency_ms < 0:
        return False
    state.latency_ms = record.latency_ms
    state.error_rate = record.error_rate
    state.drift = record.drift
    state.refuse = record.refuse
    return True


def publish_startup(redis_url: str, state: FaultState) -> bool:
    """Write the start-up faults for every worker (blocking; before the workers start)."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.set(FAULTS_KEY, encode_state(state))
    except (RedisError, OSError) as error:
        log.warning("faults: redis does not answer (%s); workers keep FAULT_* from start-up", error)
        return False
    finally:
        client.close()
    return True


class FaultFollower:
    """A worker's copy of the shared faults, refreshed every second for as long as it runs."""

    def __init__(
        self,
        redis_url: str,
        state: FaultState,
        set_refuse: Callable[[bool], Awaitable[None]],
        every: float = SYNC_SECONDS,
    ) -> None:
        self._redis_url = redis_url
        self.state = state
        self._set_refuse = set_refuse
        self._every = every

    async def run(self) -> None:
        client = create_redis(self._redis_url)
        try:
            while True:
                await self.sync_once(client)
                await asyncio.sleep(self._every)
        finally:
            await client.aclose()

    async def sync_once(self, client: Any) -> None:
        try:
            raw = await client.get(FAULTS_KEY)
        except (RedisError, OSError, TimeoutError):
            return  # keep the faults in force until Redis answers again
        if not isinstance(raw, bytes):
            return
        refuse_before = self.state.refuse
        before = asdict(self.state)
        if not apply_record(raw, self.state):
            return
        if asdict(self.state) != before:
            log.warning("faults now %s", asdict(self.state))
        if self.state.refuse != refuse_before:
            await self._set_refuse(self.state.refuse)


class BackendStamp:
    """Outermost wrapper of a worker's API: every answer, injected ones included, names the
    worker that gave it (X-Worker), so that tests can prove two workers took part."""

    def __init__(self, app: ASGIApp, worker: str) -> None:
        self.app = app
        self.worker = worker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableScopeHeaders.from_message(message)["X-Worker"] = self.worker
            await send(message)

        await self.app(scope, receive, stamped)


class SharedFaultsAdmin:
    """The contract's admin app over the state in Redis: every request first loads the shared
    record, and a successful change is written back before it is answered."""

    def __init__(self, redis_url: str, token: str, state: FaultState) -> None:
        self._redis_url = redis_url
        self.state = state
        self._admin: Litestar = build_admin_app(token, state, self._no_listener)
        self._client: Any = None

    @staticmethod
    async def _no_listener(refuse: bool) -> None:
        """The workers own the listening sockets; they follow `refuse` from Redis."""

    def _redis(self) -> Any:
        if self._client is None:
            self._client = create_redis(self._redis_url, timeout=2.0)
        return self._client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._admin(scope, receive, send)
            return
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            raw = await self._redis().get(FAULTS_KEY)
            if isinstance(raw, bytes):
                apply_record(raw, self.state)
        answer: list[Message] = []

        async def capture(message: Message) -> None:
            answer.append(message)

        await self._admin(scope, receive, capture)
        changed = scope.get("method") == "PUT" and any(
            m["type"] == "http.response.start" and m["status"] == 200 for m in answer
        )
        if changed:
            try:
                await self._redis().set(FAULTS_KEY, encode_state(self.state))
            except (RedisError, OSError, TimeoutError):
                await send_error(
                    send,
                    503,
                    "Service unavailable: the cache (Redis) does not answer, so the faults "
                    "cannot reach the workers",
                )
                return
        for message in answer:
            await send(message)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
