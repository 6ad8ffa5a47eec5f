"""A dashboard's WebSocket: connect to /ws, subscribe to quotes, heartbeat, hear the pushes.

Uses the `websockets` sync client, which runs on gevent's patched sockets and threads inside
Locust. Its figures go to Locust's statistics with request_type "WS": `/ws connect` (until
`connection_established`), `/ws subscribe` and `/ws heartbeat` (round trips), `/ws push interval`
(ms between two quote pushes of one symbol; not gated for latency: it is the feed's pace), and
`/ws disconnect` (a failure: the server closed the socket unasked). A close with code 1012 (a
cutover step moving the client) is counted as `/ws moved (1012)` and the user reconnects.
"""

from __future__ import annotations

import json
import random
import time
import urllib.request
from typing import Any, ClassVar

from locust import User, constant, task
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection, connect

from loadtests.gates import (
    RECORDER,
    WS,
    WS_CONNECT,
    WS_DISCONNECT,
    WS_HEARTBEAT,
    WS_MOVED,
    WS_PUSH,
    WS_SUBSCRIBE,
)

REPLY_SECONDS = 5.0
RECONNECT_SECONDS = 1.0
SERVICE_RESTART = 1012


class WsProtocolError(Exception):
    """The server answered a frame with something other than the contract's reply."""


def ws_url(host: str) -> str:
    """ws(s)://host/ws for an http(s) base URL."""
    base = host.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://") + "/ws"
    return "ws://" + base.removeprefix("http://") + "/ws"


def served_symbols(host: str) -> list[str]:
    """The served universe (not counted in the statistics); SPY if it cannot be read."""
    try:
        with urllib.request.urlopen(f"{host.rstrip('/')}/api/v1/symbols", timeout=10) as answer:
            body = json.loads(answer.read())
        symbols = [str(item["symbol"]) for item in body["symbols"]]
    except (OSError, ValueError, KeyError, TypeError):
        return ["SPY"]
    return symbols or ["SPY"]


class WebSocketUser(User):
    """One dashboard's live connection; `heartbeat_s` and `symbols_per_user` set by the run."""

    wait_time = constant(0)
    heartbeat_s: ClassVar[float] = 30.0
    symbols_per_user: ClassVar[int] = 2
    seed: ClassVar[int] = 42
    _count: ClassVar[int] = 0

    def on_start(self) -> None:
        WebSocketUser._count += 1
        self.rng = random.Random(self.seed * 7919 + WebSocketUser._count)
        universe = served_symbols(str(self.host))
        self.symbols = self.rng.sample(universe, min(self.symbols_per_user, len(universe)))
        self.url = ws_url(str(self.host))
        # Connect once the measured window opens, so that connections count in its statistics.
        while RECORDER.window_start is None:
            time.sleep(0.2)

    def _fire(
        self,
        name: str,
        started: float,
        exception: BaseException | None = None,
        length: int = 0,
        response_time: float | None = None,
    ) -> None:
        elapsed = (time.perf_counter() - started) * 1000 if response_time is None else response_time
        self.environment.events.request.fire(
            request_type=WS,
            name=name,
            response_time=elapsed,
            response_length=length,
            exception=exception,
            context={},
        )

    @task
    def session(self) -> None:
        """One connection, held until the user stops or the server closes it."""
        started = time.perf_counter()
        try:
            with connect(self.url, open_timeout=REPLY_SECONDS, close_timeout=1) as ws:
                self._expect(ws, "connection_established")
                self._fire(WS_CONNECT, started)
                self._listen(ws)
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
            if code == SERVICE_RESTART:
                self._fire(WS_MOVED, time.perf_counter(), response_time=0)
            else:
                self._fire(WS_DISCONNECT, time.perf_counter(), closed, response_time=0)
            time.sleep(RECONNECT_SECONDS)
        except (OSError, TimeoutError, ValueError, InvalidHandshake, WsProtocolError) as exc:
            self._fire(WS_CONNECT, started, exc)
            time.sleep(RECONNECT_SECONDS)

    def _expect(self, ws: ClientConnection, kind: str) -> dict[str, Any]:
        """The next frame that is not a push; it must be `kind`."""
        deadline = time.monotonic() + REPLY_SECONDS
        while True:
            frame = json.loads(ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
            if frame.get("type") in ("market_data", "signal"):
                continue
            if frame.get("type") != kind:
                raise WsProtocolError(f"expected {kind}, got {str(frame)[:200]}")
            data: dict[str, Any] = frame
            return data

    def _send(self, ws: ClientConnection, kind: str, data: dict[str, Any]) -> None:
        ws.send(json.dumps({"type": kind, "data": data}))

    def _listen(self, ws: ClientConnection) -> None:
        for symbol in self.symbols:
            started = time.perf_counter()
            self._send(ws, "subscribe", {"channel": "market_data", "symbol": symbol})
            try:
                self._expect(ws, "subscribed")
            except (TimeoutError, WsProtocolError) as exc:
                self._fire(WS_SUBSCRIBE, started, exc)
                continue
            self._fire(WS_SUBSCRIBE, started)
        last_push: dict[str, float] = {}
        next_heartbeat = time.monotonic() + self.heartbeat_s
        while True:
            now = time.monotonic()
            if now >= next_heartbeat:
                started = time.perf_counter()
                self._send(ws, "heartbeat", {})
                try:
                    self._expect(ws, "heartbeat_ack")
                    self._fire(WS_HEARTBEAT, started)
                except (TimeoutError, WsProtocolError) as exc:
                    self._fire(WS_HEARTBEAT, started, exc)
                next_heartbeat = time.monotonic() + self.heartbeat_s
                continue
            try:
                raw = ws.recv(timeout=min(1.0, next_heartbeat - now))
            except TimeoutError:
                continue
            frame = json.loads(raw)
            if frame.get("type") != "market_data":
                continue
            symbol = str((frame.get("data") or {}).get("symbol", ""))
            arrived = time.monotonic()
            previous = last_push.get(symbol)
            last_push[symbol] = arrived
            if previous is not None:
                self._fire(
                    WS_PUSH,
                    0.0,
                    length=len(raw),
                    response_time=(arrived - previous) * 1000,
                )
