"""Serving the production backend: a supervisor process and N uvicorn worker processes.

Each worker binds the API port itself with SO_REUSEPORT, so the kernel spreads connections over
the workers and a worker can stop and resume listening on its own (the `refuse` fault) without
touching the others. The supervisor never accepts API connections: it prepares the Prometheus
multiprocess directory, writes the start-up faults to Redis, starts the workers, replaces one that
dies, serves the fault admin app on a loopback port, and on SIGTERM or SIGINT stops the workers
gracefully (they finish their requests) before it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from types import FrameType

import uvicorn

from backend.settings import Settings
from contract.serving import Listener, until_started

log = logging.getLogger("backend.server")

STOP_GRACE_SECONDS = 20
SUPERVISE_SECONDS = 0.5
ADMIN_START_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """How to serve: from the command line (defaults from the settings)."""

    host: str
    port: int
    workers: int
    admin_port: int
    log_file: Path | None = None


class PortBusyError(Exception):
    """The API or admin port is taken by another process."""


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port with SO_REUSEPORT (not yet listening: uvicorn does that
    when the worker is ready, so no connection waits on a worker that is still starting)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets that say so, and without
    # it a kept-alive client waits out a delayed ACK (40 ms) on every request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def check_port(host: str, port: int, what: str) -> None:
    """PortBusyError when something already listens on host:port (ours or anyone's)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise PortBusyError(f"{what} port {host}:{port} is taken: {error.strerror}") from None


# --- a worker ---------------------------------------------------------------------------------


async def _orphan_watch(server: uvicorn.Server, parent: int) -> None:
    """Leave when the supervisor is gone (a worker must never outlive it)."""
    while os.getppid() == parent:  # noqa: ASYNC110 - nothing signals a parent's death
        await asyncio.sleep(1.0)
    log.error("the supervisor (pid %d) is gone: stopping this worker", parent)
    server.should_exit = True


async def _serve_worker(settings: Settings, options: ServeOptions, ready: ProcessEvent) -> None:
    from backend.app import create_app
    from backend.faults import BackendStamp, FaultFollower
    from contract.faults import FaultMiddleware

    worker = str(os.getpid())
    app = create_app(settings, worker=worker)
    faults = settings.faults
    api = BackendStamp(FaultMiddleware(app, faults, "production"), worker)
    server = uvicorn.Server(
        uvicorn.Config(
            api,
            host=options.host,
            port=options.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            ws="websockets-sansio",
            timeout_keep_alive=30,
            timeout_graceful_shutdown=STOP_GRACE_SECONDS - 5,
            server_header=False,
        )
    )
    listener = Listener(server, lambda: reuseport_socket(options.host, options.port))
    follower = FaultFollower(settings.redis_url, faults, listener.set_refuse)
    sock = reuseport_socket(options.host, options.port)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    await until_started(server)
    helpers: list[asyncio.Task[None]] = []
    if server.started:
        if faults.refuse:
            await listener.set_refuse(True)
        ready.set()
        helpers = [
            asyncio.create_task(follower.run()),
            asyncio.create_task(_orphan_watch(server, os.getppid())),
        ]
    try:
        await serving
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when installed (uvicorn's choice too), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_worker(options: ServeOptions, ready: ProcessEvent) -> None:
    """A worker process's entry point (spawned by the supervisor)."""
    from backend.observability import init_sentry
    from contract.logs import configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level, options.log_file)
    init_sentry(settings)
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=_loop_factory()) as runner,
    ):
        runner.run(_serve_worker(settings, options, ready))


# --- the supervisor ---------------------------------------------------------------------------


@dataclass(slots=True)
class Worker:
    """A worker process and the event it sets once it serves."""

    process: SpawnProcess
    ready: ProcessEvent

    @classmethod
    def spawn(cls, context: SpawnContext, options: ServeOptions) -> Worker:
        ready = context.Event()
        process = context.Process(
            target=run_worker, args=(options, ready), name="backend-worker", daemon=False
        )
        process.start()
        return cls(process=process, ready=ready)


class AdminThread:
    """The fault admin app on a loopback port, in a thread of the supervisor."""

    def __init__(self, settings: Settings, port: int) -> None:
        from backend.faults import SharedFaultsAdmin

        assert settings.admin_token is not None  # checked by Settings.check_admin
        self.app = SharedFaultsAdmin(settings.redis_url, settings.admin_token, settings.faults)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=port,
                log_config=None,
                access_log=False,
                lifespan="off",
            )
        )
        self.port = port
        self.thread = threading.Thread(target=self._run, name="admin", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        try:
            await self.server.serve()
        except SystemExit:  # uvicorn exits when it cannot bind; start() reports it
            pass
        finally:
            await self.app.close()  # the Redis client lives in this thread's event loop

    def start(self, within: float = ADMIN_START_SECONDS) -> bool:
        """Start serving; False when the app is not listening within `within` seconds."""
        self.thread.start()
        deadline = time.monotonic() + within
        while not self.server.started and self.thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        return bool(self.server.started)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)


def _stop_workers(workers: list[Worker]) -> None:
    for worker in workers:
        if worker.process.is_alive() and worker.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for worker in workers:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            log.error("worker %s did not stop in time: killing it", worker.process.pid)
            worker.process.kill()
            worker.process.join(5)


def serve(settings: Settings, options: ServeOptions) -> int:
    """Run the supervisor until SIGTERM/SIGINT; the exit code (1 when workers cannot start)."""
    from backend.faults import publish_startup
    from backend.observability import MULTIPROC_ENV, prepare_multiprocess_dir, worker_exited

    check_port(options.host, options.port, "API")
    if options.admin_port:
        check_port("127.0.0.1", options.admin_port, "admin")
    own_metrics_dir = not os.environ.get(MULTIPROC_ENV)
    metrics_dir = (
        Path(tempfile.mkdtemp(prefix="cutover-metrics-"))
        if own_metrics_dir
        else Path(os.environ[MULTIPROC_ENV])
    )
    prepare_multiprocess_dir(metrics_dir)
    publish_startup(settings.redis_url, settings.faults)

    stopping = threading.Event()

    def on_signal(signum: int, _: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)

    context = multiprocessing.get_context("spawn")
    workers = [Worker.spawn(context, options) for _ in range(options.workers)]
    log.info(
        "serving on http://%s:%d with %d workers (pids %s)",
        options.host,
        options.port,
        options.workers,
        ", ".join(str(w.process.pid) for w in workers),
    )
    admin = AdminThread(settings, options.admin_port) if options.admin_port else None
    code = 0
    if admin is not None and not admin.start():
        log.error("the admin app cannot listen on 127.0.0.1:%d: stopping", options.admin_port)
        code = 1
        stopping.set()
    try:
        while not stopping.wait(SUPERVISE_SECONDS):
            for index, worker in enumerate(workers):
                if worker.process.is_alive():
                    continue
                pid = worker.process.pid
                if pid is not None:
                    worker_exited(pid)
                if not worker.ready.is_set():
                    log.error(
                        "worker %s exited with code %s before serving: stopping",
                        pid,
                        worker.process.exitcode,
                    )
                    code = 1
                    stopping.set()
                    break
                log.warning(
                    "worker %s exited with code %s: starting another", pid, worker.process.exitcode
                )
                workers[index] = Worker.spawn(context, options)
    finally:
        if admin is not None:
            admin.stop()
        _stop_workers(workers)
        for worker in workers:
            if worker.process.pid is not None:
                worker_exited(worker.process.pid)
        if own_metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    log.info("stopped")
    return code
