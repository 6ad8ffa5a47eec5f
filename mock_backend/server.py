"""Runs the mock: the API on its port and the admin app on a loopback port, one event loop."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from contract.faults import FaultMiddleware, build_admin_app
from contract.serving import Listener, until_started
from mock_backend.app import create_app
from mock_backend.records import records_handler
from mock_backend.settings import MockSettings

log = logging.getLogger("mock_backend")


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
    listener = Listener(api_server, api_server.config.bind_socket)
    servers = [api_server]
    if admin_port:
        admin = build_admin_app(
            settings.admin_token,
            parts.faults,
            listener.set_refuse,
            [records_handler(parts, settings.demo_password)],
        )
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
        async with asyncio.timeout(30):
            await until_started(api_server)
        await listener.set_refuse(True)
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result()
