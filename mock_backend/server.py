"""Runs the mock: the API on its port and the admin app on a loopback port, one event loop."""

from __future__ import annotations

import asyncio
import functools
import logging

import uvicorn

from contract.faults import FaultMiddleware, build_admin_app
from mock_backend.app import create_app
from mock_backend.settings import MockSettings

log = logging.getLogger("mock_backend")


class Listener:
    """Stops and resumes accepting connections on the API port (the `refuse` fault).

    Closing the listening socket makes new connections fail with 'connection refused' while
    the process, its memory and its open connections live on.
    """

    def __init__(self, server: uvicorn.Server) -> None:
        self.server = server

    async def set_refuse(self, refuse: bool) -> None:
        if refuse:
            for listening in self.server.servers:
                listening.close()
            self.server.servers = []
            log.warning("fault: refusing connections")
            return
        if self.server.servers:
            return
        config = self.server.config
        sock = config.bind_socket()
        create_protocol = functools.partial(
            config.http_protocol_class,  # type: ignore[call-arg]
            config=config,
            server_state=self.server.server_state,
            app_state=self.server.lifespan.state,
        )
        loop = asyncio.get_running_loop()
        listening = await loop.create_server(create_protocol, sock=sock, backlog=config.backlog)
        self.server.servers = [listening]
        log.warning("fault cleared: accepting connections")


async def _started(server: uvicorn.Server) -> None:
    """Wait until uvicorn has bound its socket (it offers no event for it)."""
    async with asyncio.timeout(30):
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
            await asyncio.sleep(0.01)


async def serve(settings: MockSettings, host: str, port: int, admin_port: int) -> None:
    parts = create_app(settings)
    api = FaultMiddleware(parts.app, parts.faults, "mock")
    api_server = uvicorn.Server(
        uvicorn.Config(
            api,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            ws="websockets-sansio",
            timeout_keep_alive=30,
        )
    )
    listener = Listener(api_server)
    servers = [api_server]
    if admin_port:
        admin = build_admin_app(settings.admin_token, parts.faults, listener.set_refuse)
        servers.append(
            uvicorn.Server(
                uvicorn.Config(
                    admin,
                    host="127.0.0.1",
                    port=admin_port,
                    log_config=None,
                    access_log=False,
                    lifespan="off",
                )
            )
        )
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    if parts.faults.refuse:
        await _started(api_server)
        await listener.set_refuse(True)
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result()
