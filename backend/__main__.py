"""`python -m backend --port 8002 --workers 2`: the production backend on PostgreSQL and Redis.

A supervisor and N uvicorn worker processes (see backend/server.py); the fault admin app on a
loopback port when `--admin-port` (or PROD_ADMIN_PORT) is set. A bad or missing setting stops
start-up with exit code 2 and a message naming the variable.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from backend.settings import Settings, SettingsError
from contract.logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="API port (default PROD_PORT)")
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default PROD_WORKERS)"
    )
    parser.add_argument(
        "--admin-port",
        type=int,
        default=None,
        help="loopback port of the fault admin (default PROD_ADMIN_PORT; 0: off)",
    )
    parser.add_argument("--log-file", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        port = settings.port if args.port is None else args.port
        workers = settings.workers if args.workers is None else args.workers
        admin_port = settings.admin_port if args.admin_port is None else args.admin_port
        if not 1 <= port <= 65535 or not 0 <= admin_port <= 65535:
            raise SettingsError("--port must be 1-65535 and --admin-port 0-65535")
        if not 1 <= workers <= 64:
            raise SettingsError("--workers must be 1-64")
        settings = dataclasses.replace(settings, admin_port=admin_port)
        settings.check_admin()
    except SettingsError as exc:
        print(f"backend: bad setting: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, args.log_file)
    from backend.server import PortBusyError, ServeOptions, serve

    options = ServeOptions(
        host=args.host, port=port, workers=workers, admin_port=admin_port, log_file=args.log_file
    )
    try:
        return serve(settings, options)
    except PortBusyError as exc:
        print(f"backend: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
