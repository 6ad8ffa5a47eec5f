"""Serving pieces both backends share: the `refuse` fault on a uvicorn server's socket."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import Callable

import uvicorn

log = logging.getLogger("contract.serving")


class Listener:
    """Stops and resumes accepting connections on a uvicorn server (the `refuse` fault).

    Closing the listening socket makes new connections fail with 'connection refused' while the
    process, its memory and its open connections live on. `make_socket` binds a new one.
    """

    def __init__(self, server: uvicorn.Server, make_socket: Callable[[], socket.socket]) -> None:
        self.server = server
        self.make_socket = make_socket

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
        create_protocol = functools.partial(
            config.http_protocol_class,  # type: ignore[call-arg]
            config=config,
            server_state=self.server.server_state,
            app_state=self.server.lifespan.state,
        )
        loop = asyncio.get_running_loop()
        listening = await loop.create_server(
            create_protocol, sock=self.make_socket(), backlog=config.backlog
        )
        self.server.servers = [listening]
        log.warning("fault cleared: accepting connections")


async def until_started(server: uvicorn.Server) -> None:
    """Wait until uvicorn has bound its socket (it offers only a flag), or gave up."""
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.02)
