"""`python -m mock_backend --port 8001`: the simple backend, in memory, ready in about a second."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from contract.environment import SettingsError
from contract.logs import configure_logging
from mock_backend.settings import MockSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mock_backend", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument(
        "--admin-port",
        type=int,
        default=None,
        help="loopback port of the fault admin (default MOCK_ADMIN_PORT; 0 or unset: off)",
    )
    parser.add_argument("--log-file", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        settings = MockSettings.from_env()
        admin_port = args.admin_port
        if admin_port is None:
            admin_port = int(os.environ.get("MOCK_ADMIN_PORT", "0") or 0)
    except (SettingsError, ValueError) as exc:
        print(f"mock_backend: bad setting: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, args.log_file)
    from mock_backend.server import serve

    try:
        asyncio.run(serve(settings, args.host, args.port, admin_port))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
