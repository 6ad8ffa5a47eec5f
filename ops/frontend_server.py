"""`python -m ops.frontend_server --port 3000`: the reference dashboard's static server.

Serves `frontend/` as it is (no build step) and `/env.js` + `/env.json`, made from the frontend
env file (`FRONTEND_ENV_FILE`: `VITE_API_URL`, `REACT_APP_API_URL`, `VITE_WS_URL`) on every
request, so a file the cutover rewrote takes effect on the page's next load or re-read. When the
file names no API URL, the page talks to the mock (the state before any cutover).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import uvicorn
from litestar import Litestar, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router

from contract.logs import configure_logging
from ops.frontend_env import API_KEYS, WS_KEY, urls_for
from ops.settings import LOOPBACK, PROJECT_ROOT, SettingsError, load_settings, read_env_file

FRONTEND_DIR = PROJECT_ROOT / "frontend"
NO_STORE = {"Cache-Control": "no-store"}
log = logging.getLogger("ops.frontend_server")


def page_env(env_file: Path, fallback_api_url: str) -> dict[str, Any]:
    """What the page reads: its API and WebSocket URLs and where they came from."""
    values = read_env_file(env_file)
    api = next((values[key].rstrip("/") for key in API_KEYS if values.get(key)), None)
    source = env_file.name if api else "default (the mock)"
    api = api or fallback_api_url.rstrip("/")
    ws = values.get(WS_KEY) or urls_for(api)[WS_KEY]
    return {"apiUrl": api, "wsUrl": ws, "source": source}


def create_app(env_file: Path, fallback_api_url: str, root: Path = FRONTEND_DIR) -> Litestar:
    """The dashboard's app: the env documents (read per request) and the static files."""

    @get("/env.json", cache=False)
    async def env_json() -> Response[dict[str, Any]]:
        return Response(page_env(env_file, fallback_api_url), headers=NO_STORE)

    @get("/env.js", cache=False, media_type="text/javascript")
    async def env_js() -> Response[str]:
        body = json.dumps(page_env(env_file, fallback_api_url))
        return Response(f"window.CUTOVER_ENV = {body};\n", headers=NO_STORE)

    @get("/health", cache=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    static = create_static_files_router(
        path="/",
        directories=[root],
        html_mode=True,
        # Served as edited: a browser revalidates instead of keeping an old copy.
        cache_control=CacheControlHeader(no_cache=True),
        name="frontend",
    )
    return Litestar(
        [env_json, env_js, health, static],
        openapi_config=None,
        logging_config=None,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.frontend_server", description=__doc__)
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=None, help="default FRONTEND_PORT (3000)")
    parser.add_argument("--log-file", type=Path, default=None)
    parser.add_argument("--root", type=Path, default=FRONTEND_DIR, help="the static files")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"ops.frontend_server: bad setting: {exc}", file=sys.stderr)
        return 2
    if not (args.root / "index.html").is_file():
        print(f"ops.frontend_server: no index.html in {args.root}", file=sys.stderr)
        return 2
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"), args.log_file)
    port = settings.frontend_port if args.port is None else args.port
    app = create_app(settings.frontend_env_file, settings.url(settings.mock_port), args.root)
    log.info("dashboard on %s:%d, env from %s", args.host, port, settings.frontend_env_file)
    config = uvicorn.Config(app, host=args.host, port=port, log_config=None, access_log=False)
    try:
        asyncio.run(uvicorn.Server(config).serve())
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
