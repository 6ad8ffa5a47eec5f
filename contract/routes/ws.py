"""The WebSocket protocol of CONTRACT.md, implemented once over the live port.

Frames both ways are `{type, data, timestamp}`. A malformed or unknown frame gets an `error`
frame and the socket stays open; at most 100 subscriptions per connection (configurable lower;
`connection_established` says the cap in force).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

import anyio
import msgspec
from litestar import WebSocket, websocket
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect

from contract.errors import Unauthorized
from contract.identity import TokenError, decode_token
from contract.ports import LiveSession, Services
from contract.reads import normalise_symbol
from contract.types import Frame
from market.calendar import iso_ms

MAX_FRAME_BYTES = 64 * 1024
CHANNELS = ("market_data", "signals")
_encoder = msgspec.json.Encoder()


def frame(kind: str, data: Any) -> bytes:
    return _encoder.encode({"type": kind, "data": data, "timestamp": iso_ms(time.time())})


class _Connection:
    """One client's protocol state."""

    def __init__(
        self,
        socket: WebSocket[Any, Any, State],
        services: NamedDependency[Services],
        session: LiveSession,
    ) -> None:
        self.socket = socket
        self.services = services
        self.session = session
        self.subscriptions: set[tuple[str, str]] = set()
        self.served: set[str] | None = None
        self.lock = anyio.Lock()

    async def send(self, kind: str, data: Any) -> None:
        async with self.lock:
            await self.socket.send_text(frame(kind, data).decode())

    async def error(self, code: str, message: str) -> None:
        await self.send("error", {"code": code, "message": message})

    async def symbols(self) -> set[str]:
        if self.served is None:
            listing = await self.services.market.symbols()
            self.served = {item.symbol for item in listing.symbols}
        return self.served

    async def handle(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            await self.error("binary_not_supported", "send JSON text frames")
            return
        if len(raw) > MAX_FRAME_BYTES:
            await self.error("frame_too_large", f"frames are at most {MAX_FRAME_BYTES} bytes")
            return
        try:
            message = msgspec.json.decode(raw)
        except (msgspec.DecodeError, RecursionError):  # nested past the recursion limit
            await self.error("malformed_frame", "a frame is a JSON object {type, data}")
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self.error("malformed_frame", "a frame is a JSON object {type, data}")
            return
        kind = message["type"]
        data: dict[str, Any] = message["data"] if isinstance(message.get("data"), dict) else {}
        if kind == "heartbeat":
            await self.send("heartbeat_ack", {"server_time": iso_ms(time.time())})
        elif kind in ("subscribe", "unsubscribe"):
            await self.subscription(kind, data)
        else:
            await self.error(
                "unknown_type",
                f"unknown frame type {kind[:40]!r}: subscribe, unsubscribe, heartbeat",
            )

    async def subscription(self, kind: str, data: dict[str, Any]) -> None:
        channel, raw_symbol = data.get("channel"), data.get("symbol")
        if channel not in CHANNELS:
            await self.error("invalid_channel", f"channel must be one of {', '.join(CHANNELS)}")
            return
        if not isinstance(raw_symbol, str):
            await self.error("invalid_symbol", "symbol must be a served symbol string")
            return
        try:
            symbol = normalise_symbol(raw_symbol)
        except Exception:
            await self.error("invalid_symbol", "symbol: 1-12 characters of A-Z 0-9 . - ^")
            return
        if symbol not in await self.symbols():
            await self.error("unknown_symbol", f"{symbol} is not served")
            return
        key = (str(channel), symbol)
        if kind == "subscribe":
            cap = self.services.ws_max_subscriptions
            if key not in self.subscriptions and len(self.subscriptions) >= cap:
                await self.error(
                    "subscription_limit",
                    f"at most {cap} subscriptions per connection",
                )
                return
            self.subscriptions.add(key)
            await self.session.subscribe(*key)
            await self.send("subscribed", {"channel": channel, "symbol": symbol})
        else:
            self.subscriptions.discard(key)
            await self.session.unsubscribe(*key)
            await self.send("unsubscribed", {"channel": channel, "symbol": symbol})

    async def pump(self) -> None:
        async for event in self.session.events():
            if (event.channel, event.symbol) in self.subscriptions:
                await self.send(event.type, event.data)


@websocket("/ws")
async def live_socket(
    socket: WebSocket[Any, Any, State], services: NamedDependency[Services]
) -> None:
    """Live quotes and signals; `?token=` optionally authenticates the connection."""
    token = socket.query_params.get("token")
    if token:
        try:
            decode_token(services.secret_key, token, "access")
        except TokenError:
            await socket.close(code=1008, reason="invalid token")
            return
    await socket.accept()
    session = await services.live.open_session()
    connection = _Connection(socket, services, session)
    try:
        await connection.send(
            "connection_established",
            {
                "connection_id": uuid.uuid4().hex,
                "backend": services.backend,
                "server_time": iso_ms(time.time()),
                "max_subscriptions": services.ws_max_subscriptions,
            },
        )
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(connection.pump)
            while True:
                message = await socket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                data = message.get("bytes")
                raw: str | bytes = (
                    text if isinstance(text, str) else bytes(cast("bytes", data or b""))
                )
                await connection.handle(raw)
            tasks.cancel_scope.cancel()
    except (WebSocketDisconnect, anyio.ClosedResourceError, anyio.BrokenResourceError):
        pass
    finally:
        await session.close()


__all__ = ["Frame", "Unauthorized", "live_socket"]
