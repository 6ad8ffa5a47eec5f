"""Bad WebSocket traffic to both backends: frames of every wrong shape, a frame far over the size
limit, floods of frames and of subscriptions, and many sockets at once. The socket answers each
bad frame with an `error` and stays open (or closes with a clear code); the server goes on.
(One frame of each kind, and the subscription cap: tests/contract/test_contract_websocket.py.)"""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.security.servers import Server

REPLY_SECONDS = 20.0
PUSHES = ("market_data", "signal")


def ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://") + "/ws"


def frames(socket: ClientConnection, seconds: float) -> Any:
    """Frames that are not pushes, decoded, until `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            raw = socket.recv(timeout=left)
        except TimeoutError:
            return
        frame = json.loads(raw)
        if frame["type"] not in PUSHES:
            yield frame


def heartbeat_answered(socket: ClientConnection, seconds: float = REPLY_SECONDS) -> bool:
    """A heartbeat gets its ack (after whatever was still queued)."""
    socket.send(json.dumps({"type": "heartbeat", "data": {}}))
    return any(frame["type"] == "heartbeat_ack" for frame in frames(socket, seconds))


GARBAGE = [
    "",
    " ",
    "null",
    "42",
    '"subscribe"',
    "[]",
    "[" * 5000 + "]" * 5000,
    '{"type": ' * 3000 + "1" + "}" * 3000,
    "{",
    '{"type": null}',
    '{"type": 7, "data": {}}',
    '{"type": "subscribe"}',
    '{"type": "subscribe", "data": "SPY"}',
    '{"type": "subscribe", "data": {"channel": "market_data"}}',
    '{"type": "subscribe", "data": {"channel": "market_data", "symbol": "SP\\u0000Y"}}',
    '{"type": "subscribe", "data": {"channel": "market_data", "symbol": "<script>"}}',
    '{"type": "subscribe", "data": {"channel": "../../etc", "symbol": "SPY"}}',
    '{"type": "subscribe", "data": {"channel": "market_data", "symbol": 1e999}}',
    '{"type": "subscribe", "data": {"channel": ["market_data"], "symbol": ["SPY"]}}',
    '{"type": "' + "x" * 10_000 + '", "data": {}}',
    "\u202e\u0000\ufffd",
    "' OR '1'='1",
]


def test_every_wrong_shape_gets_an_error_and_the_socket_stays_open(backend: Server) -> None:
    with connect(ws_url(backend), open_timeout=10, max_size=None) as socket:
        assert json.loads(socket.recv(timeout=10))["type"] == "connection_established"
        for raw in GARBAGE:
            socket.send(raw)
            answer = next(frames(socket, REPLY_SECONDS), None)
            assert answer is not None, f"no answer to {raw[:40]!r}"
            assert answer["type"] == "error", (raw[:40], answer)
            assert answer["data"]["code"], answer
            assert answer["data"]["message"], answer
        assert heartbeat_answered(socket)
    assert backend.healthy()


def test_a_frame_far_over_the_limit_is_refused(backend: Server) -> None:
    big = json.dumps({"type": "heartbeat", "data": {"pad": "x" * (4 * 1024 * 1024)}})
    with connect(ws_url(backend), open_timeout=10, max_size=None) as socket:
        socket.recv(timeout=10)
        try:
            socket.send(big)
            answer = next(frames(socket, REPLY_SECONDS), None)
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
            assert code == 1009, f"closed with {code}, not 1009 (message too big)"
        else:
            assert answer is not None, "no answer to a 4 MiB frame"
            assert answer["type"] == "error", answer
            assert heartbeat_answered(socket)
    assert backend.healthy()


def test_a_flood_of_frames_is_answered_in_order_and_the_server_goes_on(backend: Server) -> None:
    flood = 3000
    with connect(ws_url(backend), open_timeout=10, max_size=None) as socket:
        socket.recv(timeout=10)
        started = time.monotonic()
        for n in range(flood):
            kind = "subscribe" if n % 2 == 0 else "unsubscribe"
            data = {"channel": "market_data", "symbol": random.choice(["SPY", "AAPL", "MSFT"])}
            socket.send(json.dumps({"type": kind, "data": data}))
        socket.send(json.dumps({"type": "heartbeat", "data": {}}))
        replies = 0
        for frame in frames(socket, 60):
            if frame["type"] == "heartbeat_ack":
                break
            replies += 1
        else:
            pytest.fail(f"no heartbeat_ack after a flood of {flood} frames ({replies} replies)")
        took = time.monotonic() - started
    assert replies == flood, f"{replies} replies to {flood} frames"
    assert took < 60
    assert backend.healthy()


def test_subscription_floods_stop_at_the_cap(backend: Server) -> None:
    with connect(ws_url(backend), open_timeout=10, max_size=None) as socket:
        hello = json.loads(socket.recv(timeout=10))
        cap = hello["data"]["max_subscriptions"]
        refused = 0
        for n in range(cap + 200):
            # Symbols the server does not serve are refused as unknown; served ones count.
            socket.send(
                json.dumps(
                    {"type": "subscribe", "data": {"channel": "signals", "symbol": f"Z{n:04d}"}}
                )
            )
        for frame in frames(socket, 10):
            if frame["type"] == "error":
                refused += 1
            if refused == cap + 200:
                break
        assert refused == cap + 200, "each unknown symbol is refused, none is counted"
        assert heartbeat_answered(socket)
    assert backend.healthy()


def test_many_sockets_at_once(backend: Server) -> None:
    def one(_: int) -> bool:
        with connect(ws_url(backend), open_timeout=20) as socket:
            if json.loads(socket.recv(timeout=20))["type"] != "connection_established":
                return False
            for symbol in ("SPY", "AAPL", "MSFT"):
                socket.send(
                    json.dumps(
                        {"type": "subscribe", "data": {"channel": "market_data", "symbol": symbol}}
                    )
                )
            return heartbeat_answered(socket)

    with ThreadPoolExecutor(max_workers=30) as pool:
        answered = list(pool.map(one, range(60)))
    assert all(answered), f"{answered.count(False)} of 60 sockets were not served"
    assert backend.healthy()
