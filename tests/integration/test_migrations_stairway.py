"""The migrations stairway on a database that holds data: from base, every Alembic revision goes
up, gets representative rows in the tables it brings, goes down one step (the older tables keep
their rows, its own tables are gone) and up again; at head every row ever inserted is there and
equal. A new revision or table fails `test_every_table_at_head_gets_rows` until ROWS covers it.

A database of the test's own (fresh, created for it): the session's `database_url` stays at head
for the other integration tests while this one walks the schema down and up."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest
from alembic import command
from alembic.script import ScriptDirectory

from backend.db.models import Base
from ops import databases

USER = "6f1c6a3e-8a0e-5b7c-9d2e-1f3a4b5c6d7e"
OTHER = "0a9b8c7d-6e5f-5a4b-8c3d-2e1f0a9b8c7d"
WHEN = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)

# Representative rows per table, inserted in this order (parents before children).
ROWS: dict[str, list[dict[str, Any]]] = {
    "bars": [
        {"symbol": "SPY", "interval": "1d", "time": datetime(2026, 11, 19, tzinfo=UTC),
         "open": 590.1, "high": 595.25, "low": 588.0, "close": 594.5, "volume": 81_000_000},
        {"symbol": "BRK.B", "interval": "5m", "time": datetime(2026, 11, 20, 14, 30, tzinfo=UTC),
         "open": 470.0, "high": 470.5, "low": 469.9, "close": 470.2, "volume": 12_345},
    ],
    "indicators": [
        {"symbol": "SPY", "interval": "1d", "time": datetime(2026, 11, 19, tzinfo=UTC),
         "sma_20": 588.4, "sma_50": None, "rsi_14": 61.25, "macd": 1.5, "volume_ratio": 0.97},
    ],
    "load_runs": [
        {"id": 1, "status": "done", "source": "synthetic", "seed": 42, "asof": date(2026, 11, 20),
         "adjusted": False, "params": json.dumps({"symbols": ["SPY"]}),
         "counts": json.dumps({"inserted": 2}), "checksums": json.dumps({"SPY/1d": "ab12"}),
         "problems": json.dumps([{"file": "X.csv", "line": 3, "kind": "nan"}]),
         "started_at": WHEN, "finished_at": WHEN},
    ],
    "load_run_symbols": [
        {"run_id": 1, "symbol": "SPY", "status": "done", "daily_rows": 1, "intraday_rows": 0,
         "inserted": 1, "updated": 0, "checksum": "ab12", "finished_at": WHEN},
    ],
    "users": [
        {"id": USER, "email": "stairway@example.com", "name": "Zoë Stairway",
         "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", "created_at": WHEN},
        {"id": OTHER, "email": "other@example.com", "name": "Other",
         "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", "created_at": WHEN},
    ],
    "user_tombstones": [{"user_id": "11111111-2222-5333-8444-555555555555", "deleted_at": WHEN}],
    "watchlists": [
        {"user_id": USER, "name": "Tech", "symbols": ["AAPL", "MSFT", "BRK.B"], "updated_at": WHEN},
        {"user_id": OTHER, "name": "Empty", "symbols": [], "updated_at": WHEN},
    ],
    "backtests": [
        {"user_id": USER, "id": "client-id-1", "status": "done",
         "request": json.dumps({"symbol": "SPY", "strategy": "buy_and_hold"}),
         "result": json.dumps({"total_return": 12.5, "trades": []}), "error": None,
         "created_at": WHEN, "started_at": WHEN, "finished_at": WHEN, "job_key": "job:1"},
        {"user_id": USER, "id": "client-id-2", "status": "queued",
         "request": json.dumps({"symbol": "AAPL", "strategy": "sma_crossover"}),
         "result": None, "error": None, "created_at": WHEN, "started_at": None,
         "finished_at": None, "job_key": None},
    ],
    "refresh_tokens": [{"jti": "a" * 32, "user_id": USER, "expires_at": WHEN}],
    "signals": [
        {"id": 1, "signal_id": "SPY-1d-1763510400", "user_id": USER, "symbol": "SPY",
         "timeframe": "1d", "type": "BUY", "confidence": 71.5,
         "payload": json.dumps({"reasoning": ["trend up"]}), "created_at": WHEN},
    ],
}  # fmt: skip


def revisions() -> list[str]:
    """Every revision, oldest first (the stairway is a single line of revisions)."""
    script = ScriptDirectory.from_config(databases.alembic_config())
    walked = list(script.walk_revisions("base", "heads"))
    assert all(not isinstance(r.down_revision, tuple) for r in walked), (
        "a merge revision: the stairway expects one line"
    )
    return [r.revision for r in reversed(walked)]


async def _insert(url: str, tables: list[str]) -> None:
    connection = await asyncpg.connect(databases.libpq_url(url))
    try:
        for table in tables:
            for row in ROWS[table]:
                columns = ", ".join(f'"{c}"' for c in row)
                marks = ", ".join(f"${n}" for n in range(1, len(row) + 1))
                values = [_typed(value) for value in row.values()]
                await connection.execute(
                    f'INSERT INTO "{table}" ({columns}) VALUES ({marks})', *values
                )
    finally:
        await connection.close()


def _typed(value: Any) -> Any:
    # asyncpg wants uuid objects for uuid columns; the ids above are strings for reading ease.
    if isinstance(value, str) and len(value) == 36 and value.count("-") == 4:
        return uuid.UUID(value)
    return value


async def _dump(url: str, tables: set[str]) -> dict[str, list[tuple[Any, ...]]]:
    connection = await asyncpg.connect(databases.libpq_url(url))
    try:
        dumped = {}
        for table in sorted(tables):
            rows = await connection.fetch(f'SELECT * FROM "{table}"')
            dumped[table] = sorted((tuple(r.items()) for r in rows), key=repr)
        return dumped
    finally:
        await connection.close()


def insert(url: str, tables: list[str]) -> None:
    asyncio.run(_insert(url, tables))


def dump(url: str, tables: set[str]) -> dict[str, list[tuple[Any, ...]]]:
    return asyncio.run(_dump(url, tables))


def upgrade(url: str, revision: str) -> None:
    command.upgrade(databases.alembic_config(url), revision)


def data_tables(url: str) -> set[str]:
    return databases.table_names(url) - {"alembic_version"}


@pytest.fixture
def empty_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty database of the test's own; dropped afterwards."""
    name = f"cutover_test_{secrets.token_hex(4)}"
    databases.create_database(postgres_server_url, name)
    try:
        yield databases.with_database(postgres_server_url, name)
    finally:
        databases.drop_database(postgres_server_url, name)


def test_every_table_at_head_gets_rows() -> None:
    missing = set(Base.metadata.tables) - set(ROWS)
    assert not missing, f"tables without representative rows in the stairway: {missing}"


def test_each_revision_goes_up_down_and_up_again_keeping_the_data(empty_url: str) -> None:
    steps = revisions()
    assert steps, "migrations/versions has no revision"
    assert steps[-1] == databases.head_revision()
    previous_tables: set[str] = set()
    previous = "base"
    first_seen: dict[str, list[tuple[Any, ...]]] = {}
    for revision in steps:
        upgrade(empty_url, revision)
        assert databases.probe_postgres(empty_url).revision == revision
        tables = data_tables(empty_url)
        added = [t for t in ROWS if t in tables - previous_tables]
        insert(empty_url, added)
        held = dump(empty_url, tables)
        assert all(held[t] for t in added), f"{revision}: rows were not stored"
        first_seen |= {t: held[t] for t in added}

        databases.downgrade(empty_url, previous)
        assert data_tables(empty_url) == previous_tables, f"{revision} did not undo its tables"
        assert dump(empty_url, previous_tables) == {t: held[t] for t in previous_tables}, (
            f"going down from {revision} changed the older tables' rows"
        )

        upgrade(empty_url, revision)
        assert dump(empty_url, previous_tables) == {t: held[t] for t in previous_tables}, (
            f"going up to {revision} again changed the older tables' rows"
        )
        insert(empty_url, added)  # its own tables came back empty
        assert dump(empty_url, tables) == held, f"{revision}: the data differs after up-down-up"
        previous_tables, previous = tables, revision

    # Every row, from whichever step brought its table, is at head as it was first stored.
    final = dump(empty_url, data_tables(empty_url))
    assert final == first_seen
    for table, rows in ROWS.items():
        assert len(final[table]) == len(rows), f"{table}: {len(final[table])} rows at head"
    assert databases.schema_drift(empty_url) == []
