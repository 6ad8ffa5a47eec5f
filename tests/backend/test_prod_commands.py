"""`./start.sh prod` and `./start.sh worker`: started in the background like the mock, recorded
by pid, healthy, shown by `status`, and stopped by `stop`; without databases chosen, exit 2."""

from __future__ import annotations

import json

import httpx

from ops.services import free_port
from tests.backend.processes import ADMIN_TOKEN, SECRET_KEY
from tests.conftest import Env, run_cli


def test_prod_and_worker_start_show_and_stop(
    cli_env: Env, served_database: str, redis_url: str
) -> None:
    port, admin = free_port(), free_port()
    env = cli_env | {
        "DATABASE_URL": served_database,
        "REDIS_URL": redis_url,
        "SECRET_KEY": SECRET_KEY,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "PROD_PORT": str(port),
        "PROD_ADMIN_PORT": str(admin),
        "PROD_WORKERS": "2",
        "LOG_LEVEL": "WARNING",
        "WORKER_SHUTDOWN_GRACE": "1",
    }
    started = run_cli(env, "prod")
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"http://127.0.0.1:{port}" in started.stdout
    health = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5)
    assert health.status_code == 200
    assert health.headers["x-backend"] == "production"
    faults = httpx.get(
        f"http://127.0.0.1:{admin}/admin/faults",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=5,
    )
    assert faults.status_code == 200, "the admin app listens on PROD_ADMIN_PORT"
    again = run_cli(env, "prod")
    assert again.returncode == 0
    assert "already runs" in again.stdout
    worker = run_cli(env, "worker")
    assert worker.returncode == 0, worker.stdout + worker.stderr

    status = run_cli(env, "status", "--json")
    processes = {p["name"]: p for p in json.loads(status.stdout)["processes"]}
    assert processes["prod"]["alive"]
    assert processes["prod"]["health"]["ok"]
    assert processes["worker"]["alive"]

    stopped = run_cli(env, "stop", "prod", "worker")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    status = run_cli(env, "status", "--json")
    processes = {p["name"]: p for p in json.loads(status.stdout)["processes"]}
    assert not processes["prod"]["alive"]
    assert not processes["worker"]["alive"]


def test_prod_without_databases_says_what_to_run(cli_env: Env) -> None:
    refused = run_cli(cli_env, "prod")
    assert refused.returncode == 2
    assert "./start.sh db" in refused.stderr
