"""The WebSocket protocol: frames, subscriptions, pushes, errors that keep the socket open."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import httpx
import msgspec
import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection, connect

from contract.types import Frame, GeneratedSignal, Quote, Signal, SymbolList

API = "/api/v1"
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
PUSHES = ("market_data", "signal")
REPLY_SECONDS = 5.0
PUSH_SECONDS = 8.0
MAX_SUBSCRIPTIONS = 100


def receive(ws: ClientConnection, timeout: float = REPLY_SECONDS) -> Frame:
    raw = ws.recv(timeout=timeout)
    assert isinstance(raw, str), "server frames are JSON text"
    frame = msgspec.json.decode(raw, type=Frame)
    assert ISO_MS.match(frame.timestamp), frame.timestamp
    return frame


def reply(ws: ClientConnection, timeout: float = REPLY_SECONDS) -> Frame:
    """The next frame that is not a push (pushes may arrive between a request and its reply)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = receive(ws, max(deadline - time.monotonic(), 0.01))
        if frame.type not in PUSHES:
            return frame


def wait_for(ws: ClientConnection, kind: str, timeout: float = PUSH_SECONDS) -> Frame:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {kind} frame within {timeout} s"
        try:
            frame = receive(ws, remaining)
        except TimeoutError:
            pytest.fail(f"no {kind} frame within {timeout} s")
        if frame.type == kind:
            return frame


def send(ws: ClientConnection, kind: str, data: dict[str, object] | None = None) -> None:
    ws.send(json.dumps({"type": kind, "data": data or {}}))


def assert_alive(ws: ClientConnection) -> None:
    send(ws, "heartbeat")
    ack = reply(ws)
    assert ack.type == "heartbeat_ack", ack
    assert ISO_MS.match(str(ack.data["server_time"]))


def expect_error(ws: ClientConnection, code: str) -> None:
    frame = reply(ws)
    assert frame.type == "error", frame
    assert frame.data.get("code") == code, frame.data
    assert isinstance(frame.data.get("message"), str)
    assert frame.data["message"]
    assert_alive(ws)


@pytest.fixture
def ws(target) -> Iterator[ClientConnection]:
    with connect(target.ws_url, open_timeout=10, close_timeout=2) as socket:
        hello = receive(socket)
        assert hello.type == "connection_established", hello
        yield socket


def test_connection_established_names_the_connection_and_backend(
    target, client: httpx.Client
) -> None:
    backend = client.get(f"{API}/health").headers["x-backend"]
    ids = []
    for _ in range(2):
        with connect(target.ws_url, open_timeout=10, close_timeout=2) as socket:
            hello = receive(socket)
            assert hello.type == "connection_established"
            assert hello.data["backend"] == backend
            assert ISO_MS.match(str(hello.data["server_time"]))
            assert isinstance(hello.data["connection_id"], str)
            assert hello.data["connection_id"]
            ids.append(hello.data["connection_id"])
    assert ids[0] != ids[1]


def test_heartbeat_is_acknowledged(ws: ClientConnection) -> None:
    assert_alive(ws)


def test_subscribe_pushes_quotes_and_unsubscribe_stops_them(ws: ClientConnection) -> None:
    send(ws, "subscribe", {"channel": "market_data", "symbol": "spy"})
    subscribed = reply(ws)
    assert subscribed.type == "subscribed", subscribed
    assert subscribed.data == {"channel": "market_data", "symbol": "SPY"}
    push = wait_for(ws, "market_data")
    quote = msgspec.convert(push.data, type=Quote)
    assert quote.symbol == "SPY"
    assert quote.bid <= quote.price <= quote.ask
    assert quote.low <= quote.price <= quote.high

    send(ws, "unsubscribe", {"channel": "market_data", "symbol": "SPY"})
    unsubscribed = reply(ws)
    assert unsubscribed.type == "unsubscribed", unsubscribed
    assert unsubscribed.data == {"channel": "market_data", "symbol": "SPY"}
    # Drain what was in flight, then no more SPY quotes may arrive.
    time.sleep(0.3)
    send(ws, "heartbeat")
    while (frame := receive(ws)).type != "heartbeat_ack":
        pass
    deadline = time.monotonic() + 2.5
    while (left := deadline - time.monotonic()) > 0:
        try:
            frame = receive(ws, left)
        except TimeoutError:
            break
        assert frame.type != "market_data", f"a push after unsubscribe: {frame}"


def test_pushes_only_for_subscribed_symbols(ws: ClientConnection) -> None:
    send(ws, "subscribe", {"channel": "market_data", "symbol": "QQQ"})
    assert reply(ws).type == "subscribed"
    seen = set()
    # Watch 3 s after the first push; the first may take longer on a busy machine (a feed that
    # just started), which is not what this test is about.
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        try:
            frame = receive(ws, deadline - time.monotonic())
        except TimeoutError:
            break
        if frame.type == "market_data":
            if not seen:
                deadline = min(deadline, time.monotonic() + 3.0)
            seen.add(frame.data["symbol"])
    assert seen == {"QQQ"}


def test_generate_pushes_a_signal_to_its_subscribers(
    ws: ClientConnection, client: httpx.Client, expect, demo
) -> None:
    send(ws, "subscribe", {"channel": "signals", "symbol": "SPY"})
    assert reply(ws).data == {"channel": "signals", "symbol": "SPY"}
    response = client.post(f"{API}/signals/generate", json={"symbol": "SPY"}, headers=demo.headers)
    generated = expect.ok(response, GeneratedSignal).signal
    push = wait_for(ws, "signal")
    payload = push.data.get("signal", push.data)
    pushed = msgspec.convert(payload, type=Signal)
    assert pushed.id == generated.id
    assert (pushed.type, pushed.confidence) == (generated.type, generated.confidence)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "malformed_frame"),
        ("[1, 2, 3]", "malformed_frame"),
        ('"heartbeat"', "malformed_frame"),
        ('{"data": {}}', "malformed_frame"),
        ('{"type": "dance", "data": {}}', "unknown_type"),
        ('{"type": "subscribe", "data": {"channel": "news", "symbol": "SPY"}}', "invalid_channel"),
        ('{"type": "subscribe", "data": {"channel": "market_data"}}', "invalid_symbol"),
        (
            '{"type": "subscribe", "data": {"channel": "market_data", "symbol": "no way!"}}',
            "invalid_symbol",
        ),
        (
            '{"type": "subscribe", "data": {"channel": "market_data", "symbol": "ZZZZ"}}',
            "unknown_symbol",
        ),
        (
            '{"type": "unsubscribe", "data": {"channel": "signals", "symbol": "ZZZZ"}}',
            "unknown_symbol",
        ),
    ],
)
def test_bad_frames_get_an_error_and_the_socket_stays_open(
    ws: ClientConnection, raw: str, code: str
) -> None:
    ws.send(raw)
    expect_error(ws, code)


def test_a_binary_frame_gets_an_error(ws: ClientConnection) -> None:
    ws.send(b'{"type": "heartbeat", "data": {}}')
    expect_error(ws, "binary_not_supported")


def test_an_oversized_frame_gets_an_error(ws: ClientConnection) -> None:
    ws.send(json.dumps({"type": "heartbeat", "data": {"pad": "x" * 70_000}}))
    expect_error(ws, "frame_too_large")


def test_resubscribing_a_pair_does_not_count_twice(
    target, client: httpx.Client, expect, reader
) -> None:
    served = [
        s.symbol
        for s in expect.ok(client.get(f"{API}/symbols", headers=reader), SymbolList).symbols
    ]
    pairs = [(channel, symbol) for channel in ("market_data", "signals") for symbol in served]
    with connect(target.ws_url, open_timeout=10, close_timeout=2) as socket:
        cap = receive(socket).data["max_subscriptions"]
        assert isinstance(cap, int)
        for channel, symbol in pairs[:cap]:
            for _ in range(2):
                send(socket, "subscribe", {"channel": channel, "symbol": symbol})
                answer = reply(socket)
                assert answer.type == "subscribed", (channel, symbol, answer)
        assert_alive(socket)


def test_subscriptions_beyond_the_cap_are_refused(
    target, client: httpx.Client, expect, reader
) -> None:
    served = [
        s.symbol
        for s in expect.ok(client.get(f"{API}/symbols", headers=reader), SymbolList).symbols
    ]
    pairs = [(channel, symbol) for channel in ("market_data", "signals") for symbol in served]
    with connect(target.ws_url, open_timeout=10, close_timeout=2) as socket:
        hello = receive(socket)
        cap = hello.data["max_subscriptions"]
        assert isinstance(cap, int)
        assert 1 <= cap <= MAX_SUBSCRIPTIONS, "the contract allows at most 100"
        if len(pairs) <= cap:
            pytest.skip(
                f"the served universe gives {len(pairs)} distinct (channel, symbol) pairs; the "
                f"server's cap of {cap} cannot be reached"
            )
        for channel, symbol in pairs[:cap]:
            send(socket, "subscribe", {"channel": channel, "symbol": symbol})
            assert reply(socket).type == "subscribed"
        channel, symbol = pairs[cap]
        send(socket, "subscribe", {"channel": channel, "symbol": symbol})
        expect_error(socket, "subscription_limit")
        assert_alive(socket)


def test_a_valid_token_authenticates_the_socket(target, demo) -> None:
    with connect(f"{target.ws_url}?token={demo.access}", open_timeout=10) as socket:
        assert receive(socket).type == "connection_established"
        assert_alive(socket)


@pytest.mark.parametrize("token", ["garbage", "refresh"])
def test_a_bad_token_is_refused(target, make_user, token: str) -> None:
    value = make_user("ws").refresh if token == "refresh" else token
    try:
        with connect(f"{target.ws_url}?token={value}", open_timeout=10) as socket:
            frame = socket.recv(timeout=REPLY_SECONDS)
    except InvalidHandshake:
        return  # refused before the upgrade (HTTP 403)
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd is not None else None
    else:
        pytest.fail(f"a socket with a bad token was served: {frame!r}")
    assert code == 1008, "refused after the upgrade: close code 1008 (policy violation)"
