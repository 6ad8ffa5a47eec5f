"""COPY into staging tables, then set-based upserts into bars and indicators.

Each writer connection owns two temporary staging tables that empty themselves at every commit.
One symbol = one transaction: its bars and indicators are streamed in binary COPY format, then
each staging table is deduplicated (the last staged row of a key wins) and merged into its table
with `INSERT ... ON CONFLICT DO UPDATE ... WHERE ... IS DISTINCT FROM`, so a row that is already
stored as loaded is not written again, and an unchanged load writes nothing at all. The statement
returns how many rows it inserted and how many it updated (`xmax = 0` marks an inserted row).

The same SQL text serves the benchmark's psql baseline (loadtests/bench/loader.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from market.indicators import INDICATOR_NAMES
from ops.loader.payload import BAR_COLUMNS, INDICATOR_COLUMNS, Payload

STAGE_BARS = "loader_stage_bars"
STAGE_INDICATORS = "loader_stage_indicators"
_PRICES = ("open", "high", "low", "close", "volume")


def stage_ddl(*, empty_on_commit: bool = True) -> list[str]:
    """CREATE statements of the two staging tables (temporary, per session)."""
    suffix = " ON COMMIT DELETE ROWS" if empty_on_commit else ""
    indicators = ", ".join(f"{name} float8" for name in INDICATOR_NAMES)
    return [
        f"CREATE TEMP TABLE IF NOT EXISTS {STAGE_BARS} (symbol text NOT NULL, "
        "interval text NOT NULL, time timestamptz NOT NULL, open float8, high float8, "
        f"low float8, close float8, volume int8){suffix}",
        f"CREATE TEMP TABLE IF NOT EXISTS {STAGE_INDICATORS} (symbol text NOT NULL, "
        f"interval text NOT NULL, time timestamptz NOT NULL, {indicators}){suffix}",
    ]


def _upsert(table: str, stage: str, columns: tuple[str, ...], values: list[str]) -> str:
    keys = "symbol, interval, time"
    assigned = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
    stored = ", ".join(f"t.{c}" for c in columns)
    incoming = ", ".join(f"EXCLUDED.{c}" for c in columns)
    return (
        f"WITH staged AS (SELECT DISTINCT ON ({keys}) {keys}, {', '.join(values)} "
        f"FROM {stage} ORDER BY {keys}, ctid DESC), "
        f"written AS (INSERT INTO {table} AS t ({keys}, {', '.join(columns)}) "
        f"SELECT * FROM staged ON CONFLICT ({keys}) DO UPDATE SET {assigned} "
        f"WHERE ({stored}) IS DISTINCT FROM ({incoming}) RETURNING (t.xmax = 0) AS inserted) "
        "SELECT count(*) FILTER (WHERE inserted) AS inserted, "
        "count(*) FILTER (WHERE NOT inserted) AS updated FROM written"
    )


# Undefined indicators travel as NaN (fixed-width binary rows) and are stored as NULL.
UPSERT_BARS = _upsert("bars", STAGE_BARS, _PRICES, list(_PRICES))
UPSERT_INDICATORS = _upsert(
    "indicators",
    STAGE_INDICATORS,
    INDICATOR_NAMES,
    [f"NULLIF({name}, 'NaN'::float8)" for name in INDICATOR_NAMES],
)


@dataclass(frozen=True, slots=True)
class Written:
    """Rows an upsert inserted and updated; the rest of the staged rows were unchanged."""

    inserted: int = 0
    updated: int = 0


async def prepare_connection(conn: asyncpg.Connection) -> None:
    """Create the session's staging tables; commit without waiting for the WAL flush.

    Safe for resuming: a symbol's rows and its load_run_symbols row share one transaction, so a
    crash loses both or neither; the run's final update is a normal commit, which flushes all.
    """
    await conn.execute("SET synchronous_commit TO off")
    for statement in stage_ddl():
        await conn.execute(statement)


async def write_payload(conn: asyncpg.Connection, payload: Payload) -> tuple[Written, Written]:
    """Stage and upsert one symbol inside the caller's transaction: (bars, indicators) written."""
    if payload.rows == 0:
        return Written(), Written()
    # A memoryview: asyncpg would take bytes for a file path.
    await conn.copy_to_table(
        STAGE_BARS,
        source=memoryview(payload.bars_copy),
        columns=list(BAR_COLUMNS),
        format="binary",
    )
    await conn.copy_to_table(
        STAGE_INDICATORS,
        source=memoryview(payload.indicators_copy),
        columns=list(INDICATOR_COLUMNS),
        format="binary",
    )
    bars = await conn.fetchrow(UPSERT_BARS)
    indicators = await conn.fetchrow(UPSERT_INDICATORS)
    assert bars is not None
    assert indicators is not None
    return (
        Written(int(bars["inserted"]), int(bars["updated"])),
        Written(int(indicators["inserted"]), int(indicators["updated"])),
    )
