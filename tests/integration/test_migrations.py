"""The Alembic revisions on a real PostgreSQL: they build exactly the models' schema, undo it
completely, and build it again; `alembic check` finds no drift."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest

from backend.db.models import Base
from ops import databases
from ops.settings import PROJECT_ROOT


@pytest.fixture
def scratch_url(postgres_server_url: str) -> Iterator[str]:
    """An empty database of its own (the round trip must not disturb the shared one)."""
    name = f"cutover_test_{secrets.token_hex(4)}"
    databases.create_database(postgres_server_url, name)
    try:
        yield databases.with_database(postgres_server_url, name)
    finally:
        databases.drop_database(postgres_server_url, name)


def tables(url: str) -> set[str]:
    probe = databases.probe_postgres(url)
    assert probe.ok, probe.error
    return databases.table_names(url)


def test_upgrade_downgrade_upgrade_round_trip(scratch_url: str) -> None:
    model_tables = set(Base.metadata.tables)
    head = databases.head_revision()

    databases.upgrade_head(scratch_url)
    assert tables(scratch_url) == model_tables | {"alembic_version"}
    assert databases.probe_postgres(scratch_url).revision == head
    assert databases.schema_drift(scratch_url) == []

    databases.downgrade(scratch_url, "base")
    assert tables(scratch_url) == {"alembic_version"}
    assert databases.probe_postgres(scratch_url).revision is None

    databases.upgrade_head(scratch_url)
    assert tables(scratch_url) == model_tables | {"alembic_version"}
    assert databases.schema_drift(scratch_url) == []


def test_alembic_check_on_the_command_line_reports_no_drift(database_url: str) -> None:
    # Given as postgres://, the form hosting providers hand out: env.py converts it.
    plain = "postgres://" + database_url.partition("://")[2]
    environment = {**os.environ, "DATABASE_URL": plain}
    checked = subprocess.run(
        [sys.executable, "-m", "alembic", "check"],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "No new upgrade operations detected" in checked.stdout + checked.stderr


def test_alembic_check_fails_on_a_schema_that_lags_behind(scratch_url: str) -> None:
    databases.upgrade_head(scratch_url)
    databases.downgrade(scratch_url, "-1")
    assert databases.schema_drift(scratch_url) != []
