"""`python -m ops.gateway --host 127.0.0.1 --port 8000 --admin-port 8009 [--log-file F]`.

Starts in the mode and weight the cutover state file records (so a restarted gateway resumes),
with the mock and prod at MOCK_URL and PROD_URL (default: 127.0.0.1 on MOCK_PORT and PROD_PORT).
The admin port listens on loopback only and wants ADMIN_TOKEN.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Generator
from pathlib import Path

import uvicorn
import uvloop

from contract.logs import configure_logging
from ops.gateway.actions import Actions, CutoverTargets
from ops.gateway.admin import GatewayMetrics, build_admin_app
from ops.gateway.canary import CanaryController, canary_handlers
from ops.gateway.console import console_handlers
from ops.gateway.differ import Differ, IgnoreFileError, load_rules
from ops.gateway.proxy import Gateway, GatewayConfig
from ops.gateway.routing import RouteTemplates, RoutingController, Upstream
from ops.gateway.writes import Outbox, WriteMirror
from ops.settings import LOOPBACK, PROJECT_ROOT, SettingsError, load_settings, read_env_file
from ops.state import StateError, StateStore

DEFAULT_IGNORE_FILE = PROJECT_ROOT / "ops" / "shadow-ignore.toml"
log = logging.getLogger("ops.gateway")


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the gateway, which runs two of them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ops.gateway", description=__doc__)
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=None, help="default GATEWAY_PORT (8000)")
    parser.add_argument(
        "--admin-port", type=int, default=None, help="default GATEWAY_ADMIN_PORT (8009)"
    )
    parser.add_argument("--log-file", type=Path, default=None)
    parser.add_argument("--ignore-file", type=Path, default=DEFAULT_IGNORE_FILE)
    parser.add_argument(
        "--noise-share", type=float, default=0.1, help="share of reads sent twice to the primary"
    )
    parser.add_argument("--queue-size", type=int, default=500, help="shadow copies waiting")
    parser.add_argument(
        "--shadow-timeout", type=float, default=5.0, help="seconds a shadow copy may take"
    )
    parser.add_argument(
        "--mirror-timeout",
        type=float,
        default=5.0,
        help="seconds a mirrored write may take before it goes to the outbox",
    )
    return parser


async def serve(args: argparse.Namespace) -> None:
    settings = load_settings()
    env = {**read_env_file(settings.env_file), **os.environ}
    upstreams: dict[Upstream, str] = {
        "mock": env.get("MOCK_URL") or settings.url(settings.mock_port),
        "prod": env.get("PROD_URL") or settings.url(settings.prod_port),
    }
    controller = RoutingController(StateStore(settings.state_file))
    templates = RouteTemplates.from_openapi(PROJECT_ROOT / "contract" / "openapi.json")
    metrics = GatewayMetrics()
    gateway = Gateway(GatewayConfig(upstreams), controller, templates, metrics)
    gateway.differ = Differ(
        load_rules(args.ignore_file),
        gateway.forward,
        metrics,
        queue_size=args.queue_size,
        timeout=args.shadow_timeout,
        noise_share=args.noise_share,
    )
    gateway.differ.start()
    outbox = Outbox(
        settings.var_dir / "outbox", gateway.forward, metrics, timeout=args.mirror_timeout
    )
    gateway.writes = WriteMirror(outbox, gateway.forward, metrics, timeout=args.mirror_timeout)
    controller.add_guard(outbox.guard)
    outbox.start()
    port = settings.gateway_port if args.port is None else args.port
    mock_admin = env.get("MOCK_ADMIN_URL") or (
        settings.url(settings.mock_admin_port) if settings.mock_admin_port else None
    )
    # After the guards: the canary's steps go through them. It resumes a recorded canary below.
    canary = CanaryController(gateway, controller.store)
    actions = Actions(
        gateway,
        CutoverTargets(
            database_url=env.get("DATABASE_URL") or None,
            mock_admin_url=mock_admin,
            admin_token=env.get("ADMIN_TOKEN", ""),
            frontend_env_file=settings.frontend_env_file,
            public_url=env.get("GATEWAY_PUBLIC_URL") or settings.url(port),
            backups_dir=settings.var_dir / "backups",
        ),
        stop_canary=canary.end_by_operator,
    )
    admin_extra = [*actions.handlers(), *gateway.writes.handlers(), *canary_handlers(canary)]
    console_page, console_reads = console_handlers(gateway)
    admin_port = settings.gateway_admin_port if args.admin_port is None else args.admin_port
    # The upstream's Date and Server headers pass through; uvicorn must not add its own.
    common = {
        "log_config": None,
        "lifespan": "off",
        "access_log": False,
        "server_header": False,
        "date_header": False,
        # The gateway is the edge: the peer is the client, whatever X-Forwarded-For it sends.
        "proxy_headers": False,
        # httptools' C parser, stated rather than left to "auto" (measured in bench gateway).
        "http": "httptools",
        # As long as the backends keep theirs: a frontend moved onto the gateway keeps its
        # connections as it did (uvicorn's default of 5 s closes a quiet browser's every time).
        "timeout_keep_alive": 30,
    }
    public = _Server(
        uvicorn.Config(gateway, host=args.host, port=port, ws="websockets-sansio", **common)  # type: ignore[arg-type]
    )
    admin = _Server(
        uvicorn.Config(
            build_admin_app(
                env.get("ADMIN_TOKEN", ""),
                gateway,
                [*admin_extra, *console_reads],
                public=console_page,
            ),
            host=LOOPBACK,
            port=admin_port,
            **common,  # type: ignore[arg-type]
        )
    )
    loop = asyncio.get_running_loop()

    def stop() -> None:
        public.should_exit = admin.should_exit = True

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    routing = controller.routing
    log.info(
        "gateway on %s:%d (admin %s:%d): mode %s, primary %s, weight %d; mock %s, prod %s",
        args.host, port, LOOPBACK, admin_port, routing.mode, routing.primary, routing.weight,
        upstreams["mock"], upstreams["prod"],
    )  # fmt: skip
    try:
        canary.start()
        tasks = [asyncio.create_task(public.serve()), asyncio.create_task(admin.serve())]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop()  # one server ending (e.g. its port was taken) ends the other
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if task.exception() is not None or not (public.started and admin.started):
                raise SystemExit(1)
    finally:
        await canary.stop()
        await gateway.aclose()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        load_settings()
        log_level = os.environ.get("LOG_LEVEL", "INFO").upper()
        configure_logging(log_level, args.log_file)
        return_code = 0
        # uvloop: the event loop's own share of each proxied request is about halved.
        uvloop.run(serve(args))
    except (SettingsError, StateError, IgnoreFileError) as exc:
        print(f"ops.gateway: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:
        return_code = int(exc.code or 0)
    except KeyboardInterrupt:
        return 0
    return return_code


if __name__ == "__main__":
    sys.exit(main())
