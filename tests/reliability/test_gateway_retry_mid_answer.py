"""The gateway's one retry covers an upstream that dies mid-answer (what the SIGKILL drill found):
an idempotent request whose connection is lost after it was sent goes to the other backend; a
POST is never sent twice."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.gateway.processes import GatewayFactory, start_gateway, start_mock

__all__ = ["start_gateway"]


@pytest.fixture
def dies_mid_answer() -> Iterator[str]:
    """A server that reads each request and closes the connection without answering."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(2)
                with contextlib.suppress(OSError):
                    connection.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        thread.join(5)
        listener.close()


def test_a_read_lost_mid_answer_is_retried_on_the_other_backend_a_post_never(
    dies_mid_answer: str, start_gateway: GatewayFactory
) -> None:
    prod = start_mock()
    try:
        gateway = start_gateway(dies_mid_answer, prod.url)
        with httpx.Client(base_url=gateway.url, timeout=15) as client:
            read = client.get("/api/v1/market-data/SPY")
            assert read.status_code == 200
            assert read.headers["x-gateway-upstream"] == "prod"
            post = client.post("/api/v1/market-data/quotes", json={"symbols": ["SPY"]})
            assert post.status_code == 502
            assert post.headers["x-gateway-upstream"] == "mock"
    finally:
        prod.stop()
