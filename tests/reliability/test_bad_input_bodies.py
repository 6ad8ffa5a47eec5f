"""Bad bodies and bad bytes, to both backends as real servers: out-of-range numbers and dates,
wrong types, deep nesting, bodies over 1 MiB however they are sent, and bytes that are not UTF-8
in the request line itself. Each gets a clear 4xx naming the field (or a 2xx where the input is
legal); never a 5xx or a hang, and the server answers its health check afterwards."""

from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.security.servers import API, Account, Server, fresh_address

MIB = 1024 * 1024
ANSWER_SECONDS = 15.0
BACKTEST = {"symbol": "SPY", "strategy": "buy_and_hold", "start": "2026-01-05", "end": "2026-06-30"}


def _backtest(**change: Any) -> dict[str, Any]:
    return {**BACKTEST, **change}


# (method, path, JSON body or raw bytes, statuses allowed, field a 422 must name)
CASES: list[tuple[str, str, Any, set[int], str]] = [
    ("POST", "/backtests", _backtest(start="0001-01-01"), {202, 422}, "start"),
    ("POST", "/backtests", _backtest(end="9999-12-31"), {202, 422}, "end"),
    ("POST", "/backtests", _backtest(start="2026-02-30"), {422}, "start"),
    ("POST", "/backtests", _backtest(start="2026-13-01"), {422}, "start"),
    ("POST", "/backtests", _backtest(start="2026-06-30", end="2026-01-05"), {422}, "end"),
    ("POST", "/backtests", _backtest(start="1800-01-01", end="1800-12-31"), {422}, "start"),
    ("POST", "/backtests", _backtest(initial_capital=-1), {422}, "initial_capital"),
    ("POST", "/backtests", _backtest(initial_capital=0), {422}, "initial_capital"),
    ("POST", "/backtests", _backtest(initial_capital=1e308), {202, 422}, "initial_capital"),
    ("POST", "/backtests", _backtest(initial_capital=10**40), {202, 422}, "initial_capital"),
    # Litestar decodes bodies leniently: a number in a string is that number.
    ("POST", "/backtests", _backtest(initial_capital="1000"), {202, 422}, "initial_capital"),
    ("POST", "/backtests", _backtest(initial_capital="lots"), {422}, "initial_capital"),
    (
        "POST",
        "/backtests",
        _backtest(strategy="sma_crossover", params={"fast": 10**30}),
        {422},
        "fast",
    ),
    ("POST", "/backtests", _backtest(strategy="sma_crossover", params={"fast": -5}), {422}, "fast"),
    (
        "POST",
        "/backtests",
        _backtest(strategy="sma_crossover", params={"fast": 2.5}),
        {422},
        "fast",
    ),
    ("POST", "/backtests", _backtest(strategy="../../etc/passwd"), {422}, "strategy"),
    ("POST", "/backtests", _backtest(symbol="'; DROP TABLE bars; --"), {422}, "symbol"),
    ("POST", "/backtests", _backtest(id="x" * 1000), {422}, "id"),
    ("POST", "/backtests", _backtest(id="<script>"), {422}, "id"),
    ("POST", "/backtests", [BACKTEST], {422}, "body"),
    ("POST", "/market-data/quotes", {"symbols": []}, {422}, "symbols"),
    ("POST", "/market-data/quotes", {"symbols": ["SPY"] * 51}, {422}, "symbols"),
    ("POST", "/market-data/quotes", {"symbols": ["<script>"]}, {422}, "symbols"),
    ("POST", "/market-data/quotes", {"symbols": [10**30]}, {422}, "symbols"),
    ("POST", "/market-data/quotes", {"symbols": "SPY"}, {422}, "symbols"),
    ("POST", "/market-data/quotes", {"symbols": ["ＳＰＹ"]}, {200, 422}, "symbols"),
    ("POST", "/market-data/quotes", {"symbols": ["ß"]}, {200, 422}, "symbols"),
    (
        "POST",
        "/market-data/quotes",
        b'{"symbols": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        {400, 422},
        "symbols",
    ),
    ("POST", "/market-data/quotes", b'{"symbols": ["SPY"], "symbols": 1}', {400, 422}, "symbols"),
    ("POST", "/market-data/quotes", b'{"symbols": [1e999]}', {400, 422}, "symbols"),
    (
        "POST",
        "/auth/register",
        {"email": "a" * 1000 + "@example.com", "password": "p" * 12, "name": "x"},
        {422},
        "email",
    ),
    (
        "POST",
        "/auth/register",
        {"email": "x\x00@example.com", "password": "p" * 12, "name": "x"},
        {422},
        "email",
    ),
    (
        "POST",
        "/auth/register",
        {"email": "nul@example.com", "password": "p" * 129, "name": "x"},
        {422},
        "password",
    ),
    (
        "POST",
        "/auth/register",
        {"email": "n@example.com", "password": 10**30, "name": "x"},
        {422},
        "password",
    ),
    (
        "POST",
        "/auth/register",
        {"email": "n@example.com", "password": "p" * 12, "name": "x" * 200_000},
        {422},
        "name",
    ),
    (
        "POST",
        "/auth/register",
        {"email": "nul-name@example.com", "password": "p" * 12, "name": "a\x00b"},
        {422},
        "name",
    ),
    (
        "POST",
        "/auth/register",
        {"email": "bell@example.com", "password": "p\x00" * 6, "name": "x"},
        {201},
        "password",
    ),
    ("POST", "/auth/login", {"email": 10**30, "password": "x"}, {422}, "email"),
    (
        "POST",
        "/auth/login",
        {"email": "x\x00@example.com", "password": "p" * 12},
        {401, 422},
        "email",
    ),
    (
        "POST",
        "/auth/login",
        {"email": "' OR 1=1 --", "password": "' OR 1=1 --"},
        {401, 422},
        "email",
    ),
    ("POST", "/auth/refresh", {"refresh_token": "x" * 500_000}, {401, 422}, "refresh_token"),
    ("POST", "/auth/refresh", {"refresh_token": None}, {422}, "refresh_token"),
    ("POST", "/signals/generate", {"symbol": "SPY", "timeframe": "1y"}, {422}, "timeframe"),
    ("POST", "/signals/generate", {"symbol": None, "timeframe": "1d"}, {422}, "symbol"),
    ("PUT", "/watchlists/Mine", {"symbols": ["SPY"] * 101}, {200, 422}, "symbols"),
    ("PUT", "/watchlists/Mine", {"symbols": [f"S{n}" for n in range(101)]}, {422}, "symbols"),
    ("PUT", "/watchlists/Mine", {"symbols": [None]}, {422}, "symbols"),
    ("PUT", "/watchlists/Mine", {"symbols": "SPY"}, {422}, "symbols"),
    ("PUT", "/watchlists/Mine", {"symbols": ["../etc"]}, {422}, "symbols"),
]


def _id(case: tuple[str, str, Any, set[int], str]) -> str:
    method, path, body, _, field = case
    shown = body if isinstance(body, bytes) else repr(body)
    return f"{method} {path} {field} {str(shown)[:40]}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_a_bad_body_gets_a_clear_answer(
    backend: Server, account: Account, case: tuple[str, str, Any, set[int], str]
) -> None:
    method, path, body, allowed, field = case
    raw = body if isinstance(body, bytes) else None
    with httpx.Client(base_url=backend.url, timeout=ANSWER_SECONDS) as http:
        answer = http.request(
            method,
            f"{API}{path}",
            json=None if raw is not None else body,
            content=raw,
            # Each case from an address of its own: the servers' per-address login limit is small,
            # and a failed login here must not lock the other tests' users out (or this one).
            headers={
                **account.headers,
                "Content-Type": "application/json",
                "X-Forwarded-For": fresh_address(),
            },
        )
    assert answer.status_code in allowed, f"{answer.status_code}: {answer.text[:300]}"
    if answer.status_code >= 400:
        error = answer.json()
        assert error["detail"].strip()
        if answer.status_code == 422:
            named = " ".join(f"{e['key']} {e['message']}" for e in error["extra"])
            assert field.lower() in named.lower(), error


# --- bodies over 1 MiB, however they come ----------------------------------------------------


def test_a_chunked_body_over_one_mib_is_413(backend: Server, account: Account) -> None:
    def chunks() -> Any:
        yield b'{"symbols": ["'
        for _ in range(20):
            yield b"A" * 64 * 1024
        yield b'"]}'

    answer = httpx.post(
        f"{backend.url}{API}/market-data/quotes",
        content=chunks(),
        headers={**account.headers, "Content-Type": "application/json"},
        timeout=ANSWER_SECONDS,
    )
    assert answer.status_code == 413, answer.text[:200]
    assert "1 MiB" in answer.json()["detail"], answer.text


def test_a_declared_body_over_one_mib_is_413_saying_the_limit(
    backend: Server, account: Account
) -> None:
    answer = httpx.put(
        f"{backend.url}{API}/watchlists/Huge",
        content=b'{"symbols": ["' + b"A" * (MIB + 10) + b'"]}',
        headers={**account.headers, "Content-Type": "application/json"},
        timeout=ANSWER_SECONDS,
    )
    assert answer.status_code == 413
    assert answer.json()["detail"] == ("Body too large: at most 1 MiB (1048576 bytes) is accepted")


# --- the raw request line: bytes httpx would never send -------------------------------------


def raw_exchange(server: Server, request: bytes, seconds: float = ANSWER_SECONDS) -> bytes:
    """Send bytes on a new connection; what came back until the server closed or was quiet."""
    parts = urlsplit(server.url)
    received = b""
    deadline = time.monotonic() + seconds
    with socket.create_connection((parts.hostname, parts.port), timeout=seconds) as sock:
        sock.sendall(request)
        while time.monotonic() < deadline:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
            if b"\r\n\r\n" in received:
                head, _, rest = received.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    None,
                )
                if length is not None and len(rest) >= length:
                    break
    return received


def status_of(response: bytes) -> int:
    line = response.split(b"\r\n", 1)[0]
    assert line.startswith(b"HTTP/1.1 "), f"no HTTP answer: {response[:200]!r}"
    return int(line.split()[1])


CLIENT_ERROR = set(range(400, 500))
# name -> (the request's bytes, the statuses allowed): a header the server only reads for its
# own bookkeeping (a request id, a forwarded address) may be ignored, with a 200.
RAW: dict[str, tuple[bytes, set[int]]] = {
    "non-UTF-8 path": (
        b"GET /api/v1/market-data/\xff\xfeSPY HTTP/1.1\r\nHost: x\r\n\r\n",
        CLIENT_ERROR,
    ),
    "non-UTF-8 query": (
        b"GET /api/v1/signals?symbols=\xff\xfe&limit=\xc3 HTTP/1.1\r\nHost: x\r\n\r\n",
        CLIENT_ERROR,
    ),
    "encoded non-UTF-8 query": (
        b"GET /api/v1/signals?symbols=%FF%FE HTTP/1.1\r\nHost: x\r\n\r\n",
        CLIENT_ERROR,
    ),
    "encoded non-UTF-8 path": (
        b"GET /api/v1/market-data/%FF%FE HTTP/1.1\r\nHost: x\r\n\r\n",
        CLIENT_ERROR,
    ),
    "NUL in the path": (
        b"GET /api/v1/market-data/SP%00Y HTTP/1.1\r\nHost: x\r\n\r\n",
        CLIENT_ERROR,
    ),
    "non-latin-1 request id": (
        b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Request-ID: \xff\xfe\r\n\r\n",
        {200} | CLIENT_ERROR,
    ),
    "non-UTF-8 bearer": (
        b"GET /api/v1/auth/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n",
        {400, 401},
    ),
    "non-UTF-8 forwarded-for": (
        b"GET /api/v1/symbols HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: \xff\r\n\r\n",
        {200} | CLIENT_ERROR,
    ),
}


@pytest.mark.parametrize("name", list(RAW))
def test_bytes_that_are_not_utf8_get_a_4xx(backend: Server, name: str) -> None:
    request, allowed = RAW[name]
    response = raw_exchange(backend, request)
    assert status_of(response) in allowed, response[:300]
    assert backend.healthy()


def test_a_declared_50_mib_body_is_refused_without_waiting_for_it(backend: Server) -> None:
    head = (
        b"POST /api/v1/market-data/quotes HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 52428800\r\n\r\n{"
    )
    started = time.monotonic()
    response = raw_exchange(backend, head, seconds=10)
    assert status_of(response) == 413, response[:300]
    assert time.monotonic() - started < 5, "the 413 came only after a wait"
    assert backend.healthy()


def test_garbage_instead_of_http_is_dropped_and_the_server_goes_on(backend: Server) -> None:
    tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256))
    for garbage in (tls_hello, b"\x00" * 4096, b"GET / HTTP/9.9\r\n\r\n", b"\r\n" * 1000):
        answer = raw_exchange(backend, garbage, seconds=5)
        assert not answer or 400 <= status_of(answer) < 500, answer[:200]
    assert backend.healthy()
