"""The production supervisor's admin app: a port it cannot bind is reported, not ignored, and
its Redis client is closed when it stops."""

from __future__ import annotations

import socket
import urllib.request

from backend.server import AdminThread
from backend.settings import Settings
from ops import services

TOKEN = "admin-token-" + "x" * 20


def _settings(redis_url: str) -> Settings:
    return Settings(
        database_url="postgresql+asyncpg://nobody@127.0.0.1:9/none",
        redis_url=redis_url,
        secret_key="k" * 40,
        admin_token=TOKEN,
    )


def test_a_port_already_taken_fails_the_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        admin = AdminThread(_settings("redis://127.0.0.1:9/0"), taken.getsockname()[1])
        assert admin.start(within=10) is False
        admin.thread.join(timeout=5)
        assert not admin.thread.is_alive()


def test_the_admin_app_serves_and_closes_its_redis_client_on_stop(redis_url: str) -> None:
    port = services.free_port()
    admin = AdminThread(_settings(redis_url), port)
    closed: list[bool] = []
    close = admin.app.close

    async def recording_close() -> None:
        await close()
        closed.append(admin.app._client is not None)

    admin.app.close = recording_close  # type: ignore[method-assign]
    assert admin.start() is True
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/admin/faults", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 200
    finally:
        admin.stop()
    assert not admin.thread.is_alive()
    assert closed == [True], "the client the request opened was closed on stop"
