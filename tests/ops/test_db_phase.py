"""`./start.sh db` end to end, in subprocesses with an isolated var dir and .env, on real servers:
a set URL that answers, a set URL that does not, the embedded servers, and a schema behind head.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from pathlib import Path
from typing import Any

import pytest

from ops import databases, services
from ops.settings import read_env_file
from ops.state import pid_alive
from tests.conftest import Env, leftovers, run_cli


def state(env: Env) -> dict[str, Any]:
    shown = run_cli(env, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    doc: dict[str, Any] = json.loads(shown.stdout)
    return doc


def env_values(env: Env) -> dict[str, str]:
    return read_env_file(Path(env["CUTOVER_ENV_FILE"]))


def pid_files(env: Env) -> list[str]:
    return sorted(p.stem for p in (Path(env["CUTOVER_VAR_DIR"]) / "run").glob("*.pid"))


def test_a_set_database_url_that_answers_is_used_and_migrated(
    cli_env: Env, scratch_url: str, redis_url: str
) -> None:
    # Given as postgresql://, the way most providers print it.
    plain = "postgresql://" + scratch_url.partition("://")[2]
    env = {**cli_env, "DATABASE_URL": plain, "REDIS_URL": redis_url}
    result = run_cli(env, "db")
    assert result.returncode == 0, result.stdout + result.stderr
    head = databases.head_revision()
    assert f"alembic upgrade head: empty → {head}" in result.stdout
    assert f"both answer, schema at head ({head})" in result.stdout
    assert "next: ./start.sh load-data" in result.stdout
    assert databases.probe_postgres(scratch_url).revision == head
    assert pid_files(env) == []  # nothing was started

    recorded = env_values(env)
    assert recorded["DATABASE_URL"] == plain
    assert recorded["DATABASE_ORIGIN"] == "set"
    assert recorded["REDIS_URL"] == redis_url
    doc = state(env)
    assert doc["phase"] == "db"
    assert doc["history"][-1]["command"] == "db"
    assert doc["history"][-1]["outcome"] == "done"
    gate = doc["gates"]["databases"]
    assert gate["passed"] is True
    assert gate["revision"] == head

    again = run_cli(env, "db")
    assert again.returncode == 0, again.stderr
    assert f"schema already at head ({head})" in again.stdout


def test_a_password_is_never_shown(cli_env: Env) -> None:
    secret = "s3cret-" + secrets.token_hex(4)
    port = services.free_port()
    env = {**cli_env, "DATABASE_URL": f"postgresql://someone:{secret}@127.0.0.1:{port}/x"}
    result = run_cli(env, "db")
    assert result.returncode == 2
    assert f"someone:***@127.0.0.1:{port}" in result.stderr
    assert secret not in result.stdout + result.stderr
    assert secret not in json.dumps(state(env))


@pytest.mark.parametrize("variable", ["DATABASE_URL", "REDIS_URL"])
def test_a_set_url_that_does_not_answer_fails_naming_it_and_starts_nothing(
    cli_env: Env, variable: str
) -> None:
    port = services.free_port()
    dead = (
        f"postgresql://cutover@127.0.0.1:{port}/cutover"
        if variable == "DATABASE_URL"
        else f"redis://127.0.0.1:{port}/0"
    )
    env = {**cli_env, variable: dead}
    result = run_cli(env, "db")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{variable}={dead} does not answer" in result.stderr
    assert f"correct {variable} in your environment" in result.stderr
    assert pid_files(env) == []
    assert not (Path(env["CUTOVER_VAR_DIR"]) / "embedded").exists()
    assert variable not in env_values(env)  # a failed choice is not recorded
    assert state(env)["history"][-1]["outcome"] == "refused"


def test_the_check_fails_when_the_schema_is_behind_and_db_brings_it_to_head(
    cli_env: Env, scratch_url: str, redis_url: str
) -> None:
    head = databases.head_revision()
    databases.upgrade_head(scratch_url)
    databases.downgrade(scratch_url, "-1")
    behind = databases.probe_postgres(scratch_url).revision
    assert behind != head
    env = {**cli_env, "DATABASE_URL": scratch_url, "REDIS_URL": redis_url}

    checked = run_cli(env, "db", "--check")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"is at {behind or 'no revision (empty)'}, head is {head}" in checked.stderr
    assert "./start.sh db" in checked.stderr
    doc = state(env)
    assert doc["gates"]["databases"]["passed"] is False
    assert doc["history"][-1]["outcome"] == "failed"
    assert databases.probe_postgres(scratch_url).revision == behind  # --check changed nothing

    migrated = run_cli(env, "db")
    assert migrated.returncode == 0, migrated.stderr
    assert f"{behind} → {head}" in migrated.stdout
    assert run_cli(env, "db", "--check").returncode == 0


def test_check_without_chosen_databases_names_the_command_that_chooses_them(
    cli_env: Env,
) -> None:
    result = run_cli(cli_env, "db", "--check")
    assert result.returncode == 2
    assert "DATABASE_URL and REDIS_URL not set" in result.stderr
    assert "next: ./start.sh db" in result.stderr


def test_embedded_servers_start_migrate_pass_the_check_and_stop_by_pid(
    cli_env: Env, open_tmp_path: Path
) -> None:
    var_dir = open_tmp_path / "var"
    env = {**cli_env, "CUTOVER_VAR_DIR": str(var_dir)}
    # The embedded Redis's port is taken by someone else: it moves to a free one, recorded.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        pg_port = services.free_port()
        Path(env["CUTOVER_ENV_FILE"]).write_text(
            f"EMBEDDED_POSTGRES_PORT={pg_port}\nEMBEDDED_REDIS_PORT={taken}\n"
        )
        first = run_cli(env, "db", "--embedded", timeout=180)
    assert first.returncode == 0, first.stdout + first.stderr
    head = databases.head_revision()
    assert "started the embedded PostgreSQL" in first.stdout
    assert "started the embedded Redis" in first.stdout
    assert f"port {taken} is taken" in first.stdout
    assert f"both answer, schema at head ({head})" in first.stdout

    recorded = env_values(env)
    assert recorded["DATABASE_ORIGIN"] == recorded["REDIS_ORIGIN"] == "embedded"
    assert recorded["DATABASE_URL"] == f"postgresql+asyncpg://cutover@127.0.0.1:{pg_port}/cutover"
    redis_port = int(recorded["EMBEDDED_REDIS_PORT"])
    assert redis_port != taken
    assert recorded["REDIS_URL"] == f"redis://127.0.0.1:{redis_port}/0"
    assert databases.probe_postgres(recorded["DATABASE_URL"]).revision == head
    assert databases.probe_redis(recorded["REDIS_URL"]).ok
    assert (var_dir / "embedded" / "pg" / "data" / "PG_VERSION").is_file()

    doc = state(env)
    running = {p["name"]: p for p in doc["processes"] if p["alive"]}
    assert set(running) == {"postgres", "redis"}
    assert running["postgres"]["port"] == pg_port
    assert running["redis"]["port"] == redis_port
    pids = {name: entry["pid"] for name, entry in running.items()}
    if os.geteuid() == 0:  # PostgreSQL refuses root: it runs as an unprivileged user
        status = Path(f"/proc/{pids['postgres']}/status").read_text()
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        assert uid != 0
        assert (var_dir / "embedded" / "pg" / "data").stat().st_uid == uid

    # Twice is safe: the same servers are reused, and a plain `db` keeps the embedded choice.
    again = run_cli(env, "db")
    assert again.returncode == 0, again.stderr
    assert f"the embedded PostgreSQL already runs on 127.0.0.1:{pg_port}" in again.stdout
    assert {p["name"]: p["pid"] for p in state(env)["processes"] if p["alive"]} == pids

    stopped = run_cli(env, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"postgres (pid {pids['postgres']}) stopped" in stopped.stdout
    assert f"redis (pid {pids['redis']}) stopped" in stopped.stdout
    assert not any(pid_alive(pid) for pid in pids.values())
    assert leftovers(var_dir, set(pids.values())) == []  # no postgres child left behind either
    assert pid_files(env) == []

    # Started again: the data is kept (no second initdb), the schema still at head.
    restarted = run_cli(env, "db", timeout=120)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "initdb" not in restarted.stdout
    assert f"schema already at head ({head})" in restarted.stdout
    pids_again = {p["name"]: p["pid"] for p in state(env)["processes"] if p["alive"]}
    assert run_cli(env, "stop").returncode == 0
    assert leftovers(var_dir, set(pids_again.values())) == []


def test_the_compose_url_keeps_a_user_and_password_with_url_characters() -> None:
    from urllib.parse import unquote, urlsplit

    from sqlalchemy.engine import make_url

    values = {"POSTGRES_USER": "ops:team", "POSTGRES_PASSWORD": "p@ss/w:rd#1%", "POSTGRES_DB": "mk"}
    url = databases.compose_postgres_url(values)
    parts = urlsplit(url)
    assert (parts.hostname, parts.port, parts.path) == ("127.0.0.1", 5432, "/mk")
    assert unquote(parts.username or "") == "ops:team"
    assert unquote(parts.password or "") == "p@ss/w:rd#1%"
    parsed = make_url(url)  # what the backends' engine sees
    assert (parsed.username, parsed.password, parsed.database) == ("ops:team", "p@ss/w:rd#1%", "mk")
    assert "p@ss" not in databases.mask_url(url)
