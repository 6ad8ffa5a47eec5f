"""The load_runs and load_run_symbols rows: what a run loaded, and what a resumed run may skip.

A run's row is created `running`. Each symbol's transaction also inserts its load_run_symbols
row and merges that symbol's figures, checksums and problems into the run's row, so whatever
committed is recorded exactly, even if the process is killed a moment later. A run started again
with the same source and parameters after an unfinished one continues that run: it skips the
symbols recorded as done, and its final counts add up to those of an uninterrupted run. Only
while no later run has finished, though: an old run is never resumed over a newer one (readers
take the latest done run); it is marked failed, `superseded_by` the new run, instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from ops.loader.copy import Written
from ops.loader.payload import Payload, symbol_checksum
from ops.loader.rows import Problem, capped
from ops.loader.sources import SourceInfo

# pg_try_advisory_lock key held by a running loader: one load at a time per database.
LOADER_LOCK_KEY = 7_326_101_001

# How many check failures a failed run's row keeps (the report lists them all).
CHECK_FAILURES_KEPT = 50

COUNT_FIELDS = (
    "daily_rows",
    "intraday_rows",
    "inserted",
    "updated",
    "unchanged",
    "skipped",
    "indicators_inserted",
    "indicators_updated",
)


@dataclass(slots=True)
class RunRow:
    """The run being written, and the per-symbol figures it already holds (when resumed)."""

    id: int
    resumed: bool
    done: dict[str, dict[str, Any]] = field(default_factory=dict)


def symbol_figures(payload: Payload, bars: Written, indicators: Written) -> dict[str, Any]:
    """One symbol's figures as kept in load_runs.counts["by_symbol"]."""
    return {
        "daily_rows": payload.daily_rows,
        "intraday_rows": payload.intraday_rows,
        "inserted": bars.inserted,
        "updated": bars.updated,
        "unchanged": payload.rows - bars.inserted - bars.updated,
        "skipped": sum(p.rows for p in payload.problems),
        "indicators_inserted": indicators.inserted,
        "indicators_updated": indicators.updated,
    }


def totals(by_symbol: dict[str, dict[str, Any]]) -> dict[str, int]:
    out = dict.fromkeys(COUNT_FIELDS, 0)
    for figures in by_symbol.values():
        for name in COUNT_FIELDS:
            out[name] += int(figures.get(name, 0))
    out["symbols"] = len(by_symbol)
    return out


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def try_lock(conn: asyncpg.Connection) -> bool:
    """Take the loader's advisory lock on this session; False when another loader holds it."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOADER_LOCK_KEY))


async def start(
    conn: asyncpg.Connection,
    info: SourceInfo,
    asof: date,
    params: dict[str, Any],
    *,
    resume: bool,
) -> RunRow:
    """Continue the latest run with the same source and parameters if it did not finish and no
    later run has finished since (resuming it then would make it the newest completed run, over
    data a later run wrote); else create a new one, marking the unfinished one superseded.
    """
    unfinished: int | None = None
    if resume:
        row = await conn.fetchrow(
            "SELECT id, status, counts, EXISTS (SELECT 1 FROM load_runs later "
            "WHERE later.id > r.id AND later.status = 'done') AS superseded "
            "FROM load_runs r WHERE source = $1 "
            "AND source_detail IS NOT DISTINCT FROM $2 AND seed IS NOT DISTINCT FROM $3 "
            "AND asof = $4 AND adjusted = $5 AND params = $6::jsonb ORDER BY id DESC LIMIT 1",
            info.kind,
            info.detail,
            info.seed,
            asof,
            info.adjusted,
            _json(params),
        )
        # A run that failed its checks wrote every symbol: resuming it would rewrite nothing.
        resumable = row is not None and row["status"] != "done" and not row["superseded"]
        if resumable and "check_failures" not in (_decoded(row["counts"]) or {}):
            await conn.execute(
                "UPDATE load_runs SET status = 'running', finished_at = NULL WHERE id = $1",
                row["id"],
            )
            counts = _decoded(row["counts"]) or {}
            done_symbols = {
                r["symbol"]
                for r in await conn.fetch(
                    "SELECT symbol FROM load_run_symbols WHERE run_id = $1", row["id"]
                )
            }
            by_symbol = counts.get("by_symbol", {})
            done = {s: by_symbol.get(s, {}) for s in done_symbols}
            return RunRow(id=int(row["id"]), resumed=True, done=done)
        if row is not None and row["status"] != "done":
            unfinished = int(row["id"])
    run_id = await conn.fetchval(
        "INSERT INTO load_runs (status, source, source_detail, seed, asof, adjusted, params, "
        "counts, checksums, problems) VALUES ('running', $1, $2, $3, $4, $5, $6::jsonb, "
        "$7::jsonb, '{}'::jsonb, '[]'::jsonb) RETURNING id",
        info.kind,
        info.detail,
        info.seed,
        asof,
        info.adjusted,
        _json(params),
        _json({"by_symbol": {}}),
    )
    if unfinished is not None:
        # It can never be resumed now (this run is its latest match): say so in its row.
        await conn.execute(
            "UPDATE load_runs SET status = 'failed', finished_at = coalesce(finished_at, now()), "
            "counts = counts || jsonb_build_object('superseded_by', $1::int) WHERE id = $2",
            run_id,
            unfinished,
        )
    return RunRow(id=int(run_id), resumed=False)


async def record_symbol(
    conn: asyncpg.Connection, run_id: int, payload: Payload, figures: dict[str, Any]
) -> None:
    """Record one symbol as done, inside its loading transaction."""
    await conn.execute(
        "INSERT INTO load_run_symbols (run_id, symbol, status, daily_rows, intraday_rows, "
        "inserted, updated, checksum) VALUES ($1, $2, 'done', $3, $4, $5, $6, $7)",
        run_id,
        payload.symbol,
        payload.daily_rows,
        payload.intraday_rows,
        figures["inserted"],
        figures["updated"],
        symbol_checksum(payload.digests),
    )
    digests = {interval: d.to_json() for interval, d in payload.digests.items()}
    await conn.execute(
        "UPDATE load_runs SET "
        "checksums = checksums || jsonb_build_object($2::text, $3::jsonb), "
        "counts = counts || jsonb_build_object('by_symbol', "
        "coalesce(counts->'by_symbol', '{}'::jsonb) || jsonb_build_object($2::text, $4::jsonb)), "
        "problems = problems || $5::jsonb WHERE id = $1",
        run_id,
        payload.symbol,
        _json(digests),
        _json(figures),
        _json([p.to_json() for p in capped(payload.problems)]),
    )


async def finish(
    conn: asyncpg.Connection,
    run_id: int,
    summary: dict[str, Any],
    extra_problems: list[Problem],
    check_failures: list[str],
) -> tuple[dict[str, Any], list[Problem]]:
    """Record the run's totals and mark it done, or failed when its checks failed (readers take
    the latest done run, so a failed load never goes live); returns (counts, every problem).
    """
    row = await conn.fetchrow("SELECT counts, problems FROM load_runs WHERE id = $1", run_id)
    assert row is not None
    counts = _decoded(row["counts"]) or {}
    by_symbol: dict[str, dict[str, Any]] = counts.get("by_symbol", {})
    stored = [Problem.from_json(p) for p in _decoded(row["problems"]) or []]
    seen = set(stored)
    problems = stored + [p for p in capped(extra_problems) if p not in seen]
    problems.sort(key=lambda p: (p.file or "", p.line or 0))
    final = {**totals(by_symbol), **summary, "by_symbol": by_symbol}
    final["skipped"] = sum(p.rows for p in problems)
    stored_counts = dict(final)
    if check_failures:
        stored_counts["error"] = f"the load's checks failed ({len(check_failures)} failures)"
        stored_counts["check_failures"] = check_failures[:CHECK_FAILURES_KEPT]
    await conn.execute(
        "UPDATE load_runs SET status = $4, finished_at = now(), counts = $2::jsonb, "
        "problems = $3::jsonb WHERE id = $1",
        run_id,
        _json(stored_counts),
        _json([p.to_json() for p in problems]),
        "failed" if check_failures else "done",
    )
    return final, problems


async def fail(conn: asyncpg.Connection, run_id: int, why: str) -> None:
    """Mark the run failed (a later run with the same parameters resumes it)."""
    await conn.execute(
        "UPDATE load_runs SET status = 'failed', finished_at = now(), "
        "counts = counts || jsonb_build_object('error', $2::text) WHERE id = $1",
        run_id,
        why,
    )
