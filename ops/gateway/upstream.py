"""The gateway's HTTP/1.1 client for one upstream: a bounded pool of keep-alive connections.

A lean asyncio protocol around httptools (llhttp, the parser uvicorn itself uses) rather than
httpx, measured with loadtests/bench/gateway.py: httpx polled every pooled connection's socket on
each request and its per-request machinery was most of the gateway's 3-7 ms of CPU per request;
this client costs about 0.1 ms. It only has to talk to our own backends on loopback: HTTP/1.1,
answers read whole (the differ needs them whole), no redirects followed, no cookies kept.

Errors are httpx's transport errors, which the gateway, the differ and the write mirror sort by:
ConnectError / ConnectTimeout mean nothing reached the upstream (an idempotent request may then
go to the other backend); anything after that is a ReadError, ReadTimeout or RemoteProtocolError.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
import zlib
from typing import cast

import httptools
import httpx

# Closed before the backends close theirs (30 s), so a request never meets a closing socket.
KEEPALIVE_S = 15.0
# Re-sent once on a fresh connection when a reused one dies before any answer (a keep-alive race).
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# Methods whose request always states its body's length, even an empty one.
WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
# The backends answer on loopback: compressing there would only cost CPU on both sides.
SKIPPED_REQUEST_HEADERS = frozenset({"accept-encoding", "content-length", "host", "connection"})

Answer = tuple[int, tuple[tuple[str, str], ...], bytes]


class _StaleConnectionError(Exception):
    """A reused connection closed before any byte of the answer came."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, pool: UpstreamClient) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Answer] | None = None
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.received = False
        self.closed = False
        self.reusable = False
        self.served = 0
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.head_request = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: the connection is not trustworthy
            self.close()
            return
        self.received = True
        self._arm()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"bad answer from {self.pool.base_url}: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.waiter is not None and not self.waiter.done():
            if not self.received and self.served:
                self.waiter.set_exception(_StaleConnectionError())
            else:
                detail = f": {exc}" if exc else ""
                self._fail(
                    httpx.RemoteProtocolError(
                        f"{self.pool.base_url} closed the connection before answering{detail}"
                    )
                )

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self.head_request:
            # llhttp cannot be told that a HEAD's answer has no body: done here, not reused.
            self.reusable = False
            self._complete()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.reusable = self.parser.should_keep_alive()
        self._complete()

    # the exchange
    async def exchange(self, request: bytes, head: bool) -> Answer:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.headers, self.body, self.received, self.reusable = [], [], False, False
        self.head_request = head
        self.transport.write(request)
        self._arm()
        try:
            return await self.waiter
        finally:
            if self.timer is not None:
                self.timer.cancel()
            self.waiter = None
            self.served += 1
            if not (self.reusable and not self.closed):
                self.close()  # cancelled, failed, or the server will not keep it

    def _arm(self) -> None:
        # The read timeout runs from the request, then from each piece of the answer.
        if self.timer is not None:
            self.timer.cancel()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.pool.read_timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._fail(httpx.ReadTimeout(f"{self.pool.base_url} did not answer in time"))

    def _complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            status = self.parser.get_status_code()
            self.waiter.set_result((status, tuple(self.headers), b"".join(self.body)))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.reusable = False
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.close()


def _decoded(headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
    """The body without its content-encoding (none is asked for; an unknown one is a bad answer)."""
    encoding = next((v.strip().lower() for k, v in headers if k == "content-encoding"), "")
    if encoding in ("", "identity"):
        return body
    try:
        if encoding in ("gzip", "x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)
    except zlib.error as exc:
        raise httpx.RemoteProtocolError(f"undecodable {encoding} body: {exc}") from None
    raise httpx.RemoteProtocolError(f"unsupported content-encoding {encoding!r}")


class UpstreamClient:
    """Requests to one upstream over at most `max_connections` keep-alive connections; a request
    that finds them all busy waits for one (up to the read timeout)."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int,
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"an upstream is an http:// URL, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.host_header = f"host: {parts.netloc}\r\n".encode("latin-1")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._idle: list[_Connection] = []
        self._slots: asyncio.Semaphore | None = None
        self._max_connections = max_connections
        self._open: set[_Connection] = set()

    def forget(self, connection: _Connection) -> None:
        self._open.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self), self.host, self.port
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"{self.base_url}: no connection in time") from None
        except OSError as exc:
            raise httpx.ConnectError(f"{self.base_url}: {exc}") from None
        self._open.add(connection)
        return connection

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and now - connection.idle_since < KEEPALIVE_S:
                return connection
            connection.close()
        return None

    def _serialise(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> bytes:
        lines = [f"{method} {self.prefix}{target} HTTP/1.1\r\n".encode("latin-1"), self.host_header]
        lines.extend(
            f"{name}: {value}\r\n".encode("latin-1")
            for name, value in headers
            if name.lower() not in SKIPPED_REQUEST_HEADERS
        )
        if body or method in WITH_BODY:
            lines.append(f"content-length: {len(body)}\r\n".encode("latin-1"))
        lines.append(b"\r\n")
        lines.append(body)
        return b"".join(lines)

    async def request(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> Answer:
        """Send one request (`target`: the path with its query, sent as is) and read the whole
        answer: status, lower-case headers, decoded body. Raises httpx.TransportError."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_connections)
        raw = self._serialise(method, target, headers, body)
        if self._slots.locked():
            try:
                async with asyncio.timeout(self.read_timeout):
                    await self._slots.acquire()
            except TimeoutError:
                raise httpx.PoolTimeout(f"{self.base_url}: every connection stayed busy") from None
        else:
            await self._slots.acquire()
        try:
            connection = self._take_idle()
            if connection is None:
                connection = await self._connect()
            try:
                status, answer_headers, content = await connection.exchange(raw, method == "HEAD")
            except _StaleConnectionError:
                if method not in IDEMPOTENT:
                    raise httpx.RemoteProtocolError(
                        f"{self.base_url} closed a kept-alive connection as the request went out"
                    ) from None
                connection = await self._connect()
                status, answer_headers, content = await connection.exchange(raw, method == "HEAD")
            if not connection.closed:
                connection.idle_since = time.monotonic()
                self._idle.append(connection)
        finally:
            self._slots.release()
        return status, answer_headers, _decoded(answer_headers, content)

    async def aclose(self) -> None:
        for connection in list(self._open):
            connection.close()
        self._idle.clear()
