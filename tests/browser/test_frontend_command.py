"""`./start.sh frontend`: the dashboard's server in the background, its env documents made from
the frontend env file on every request (no restart after the cutover rewrites it)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ops.frontend_env import point_frontend
from ops.services import free_port
from tests.conftest import Env, run_cli


def test_frontend_serves_the_dashboard_and_follows_the_env_file(
    cli_env: Env, tmp_path: Path
) -> None:
    port = free_port()
    env_file = tmp_path / "frontend.env"
    env = {
        **cli_env,
        "FRONTEND_PORT": str(port),
        "FRONTEND_ENV_FILE": str(env_file),
        "CORS_ORIGINS": "http://localhost:3000",
    }
    started = run_cli(env, "frontend")
    assert started.returncode == 0, started.stderr
    assert f"the dashboard is up at http://127.0.0.1:{port}" in started.stdout
    # No URL in the file yet: the page talks to the mock, and the operator is told so.
    assert f"it talks to http://127.0.0.1:{env['MOCK_PORT']}" in started.stdout
    assert f"CORS_ORIGINS does not allow http://127.0.0.1:{port}" in started.stdout

    base = f"http://127.0.0.1:{port}"
    page = httpx.get(f"{base}/", timeout=5)
    assert page.status_code == 200
    assert '<script src="env.js"></script>' in page.text
    for asset in ("app.js", "api.js", "live.js", "chart.js", "style.css"):
        assert httpx.get(f"{base}/{asset}", timeout=5).status_code == 200, asset

    point_frontend(env_file, "http://127.0.0.1:8000")
    script = httpx.get(f"{base}/env.js", timeout=5)
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["cache-control"] == "no-store"
    assert '"apiUrl": "http://127.0.0.1:8000"' in script.text
    assert '"wsUrl": "ws://127.0.0.1:8000/ws"' in script.text

    point_frontend(env_file, "http://127.0.0.1:8002")  # e.g. decommission: prod directly
    assert httpx.get(f"{base}/env.json", timeout=5).json() == {
        "apiUrl": "http://127.0.0.1:8002",
        "wsUrl": "ws://127.0.0.1:8002/ws",
        "source": "frontend.env",
    }

    again = run_cli(env, "frontend")
    assert again.returncode == 0, again.stderr
    assert "already runs" in again.stdout
    status = run_cli(env, "status", "--json")
    assert '"frontend"' in status.stdout

    stopped = run_cli(env, "stop", "frontend")
    assert stopped.returncode == 0, stopped.stderr
    assert "frontend" in stopped.stdout
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/health", timeout=2)
