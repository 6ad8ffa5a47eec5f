"""`load-data`: plan the run, prepare symbols in worker processes, write them over a few
connections, check the result, record the run (done only when the checks pass), invalidate
the cache.

The pipeline: worker processes generate (or take) each symbol's bars, compute its indicators and
encode both as binary COPY data; meanwhile the event loop streams finished symbols into
PostgreSQL over `connections` sessions, one transaction per symbol (ops/loader/copy.py), and
records each in the run (ops/loader/runs.py). At most a few prepared symbols wait at any time,
so memory stays flat however many symbols are loaded.

Resume: a run killed in the middle left its row `running` and its committed symbols recorded; the
next run with the same parameters continues it. The test hook CUTOVER_LOAD_PAUSE_AFTER=N makes
the loader stop after N committed symbols (it holds the next one uncommitted and sleeps), so a
test can look at the partial state, kill it, and start it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from backend.db.cache import market_pattern
from contract.environment import SettingsError, env_asof, env_int
from ops import databases
from ops.loader import copy, runs
from ops.loader.feedback import Feedback, QuietFeedback
from ops.loader.payload import Payload, prepare
from ops.loader.rows import Problem, capped
from ops.loader.sources import (
    DEFAULT_YEARS,
    CsvSource,
    FileInfo,
    Plan,
    Request,
    Source,
    SourceError,
    SourceInfo,
    SymbolJob,
    Window,
    parse_source,
)
from ops.settings import read_env_file

PAUSE_VARIABLE = "CUTOVER_LOAD_PAUSE_AFTER"
DEFAULT_SEED = 42
# The backends' range for MARKET_SEED (backend/settings.py, mock_backend/settings.py).
MAX_SEED = 2**31 - 1
DEFAULT_CONNECTIONS = 2
CONNECT_SECONDS = 10.0


class LoadError(Exception):
    """The load cannot run or did not pass its checks; `precondition` → exit 2, else exit 1."""

    def __init__(self, message: str, next_step: str | None = None, *, precondition: bool) -> None:
        super().__init__(message)
        self.next_step = next_step
        self.precondition = precondition


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """What `load-data` was asked to do (None = the default of the source or the environment)."""

    source: str = "synthetic"
    symbols: tuple[str, ...] | None = None
    years: int = DEFAULT_YEARS
    intraday_days: int = 60
    seed: int | None = None
    asof: date | None = None
    adjusted: bool = False
    resume: bool = True
    workers: int | None = None
    connections: int = DEFAULT_CONNECTIONS
    pause_after: int | None = None


@dataclass(frozen=True, slots=True)
class CacheResult:
    """What the cache invalidation did: keys deleted, or why it could not run."""

    deleted: int = 0
    warning: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"deleted_keys": self.deleted, "warning": self.warning}


@dataclass(slots=True)
class LoadReport:
    """Everything `load-data` prints, as the summary table or as one JSON document."""

    run_id: int
    resumed: bool
    resumed_symbols: int
    source: SourceInfo
    window: Window
    params: dict[str, Any]
    counts: dict[str, int]
    attempt_symbols: int
    attempt_rows: int
    seconds: float
    problems: list[Problem] = field(default_factory=list)
    files: list[FileInfo] = field(default_factory=list)
    cache: CacheResult = field(default_factory=CacheResult)
    check_failures: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.counts["daily_rows"] + self.counts["intraday_rows"]

    @property
    def rows_per_second(self) -> float:
        return self.attempt_rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def changed(self) -> bool:
        c = self.counts
        return any(
            c[k] for k in ("inserted", "updated", "indicators_inserted", "indicators_updated")
        )

    def message(self) -> str:
        c = self.counts
        if self.changed:
            text = (
                f"loaded {self.rows:,} bars of {_count(c['symbols'], 'symbol')}: "
                f"{c['inserted']:,} inserted, "
                f"{c['updated']:,} updated, {c['unchanged']:,} unchanged"
            )
        else:
            text = (
                f"nothing changed: the database already held all {self.rows:,} bars of "
                f"{_count(c['symbols'], 'symbol')} and their indicators (0 inserted, 0 updated)"
            )
        if c["skipped"]:
            text += f"; {c['skipped']:,} bad rows skipped"
        if self.resumed:
            text = (
                f"resumed run #{self.run_id} ({_count(self.resumed_symbols, 'symbol')} done "
                "before): " + text
            )
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": "done" if not self.check_failures else "check-failed",
            "message": self.message(),
            "changed": self.changed,
            "resumed": self.resumed,
            "resumed_symbols": self.resumed_symbols,
            "source": self.source.kind,
            "source_detail": self.source.detail,
            "seed": self.source.seed,
            "adjusted": self.source.adjusted,
            "asof": self.window.asof.isoformat(),
            "window": self.window.to_json(),
            "params": self.params,
            "counts": self.counts,
            "rows": self.rows,
            "attempt": {
                "symbols": self.attempt_symbols,
                "rows": self.attempt_rows,
                "seconds": round(self.seconds, 3),
                "rows_per_second": round(self.rows_per_second, 1),
            },
            "problems": [p.to_json() for p in self.problems],
            "files": [f.to_json() for f in self.files],
            "cache": self.cache.to_json(),
            "check_failures": self.check_failures,
        }


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


# --- settings -------------------------------------------------------------------------------


def _environment() -> dict[str, str]:
    return {**read_env_file(databases.env_file_path()), **os.environ}


def market_defaults() -> tuple[int, date]:
    """MARKET_SEED and MARKET_ASOF from the environment or .env (the mock's defaults: 42,
    2026-11-20), read and range-checked as the backends read them, so the loader and the
    backends agree, and a value they would refuse is refused here too.
    """
    env = _environment()
    try:
        return env_int(env, "MARKET_SEED", DEFAULT_SEED, 0, MAX_SEED), env_asof(env)
    except SettingsError as exc:
        raise LoadError(str(exc), "fix it in .env (see env.example)", precondition=True) from None


def pause_after_from_env() -> int | None:
    """The test hook: CUTOVER_LOAD_PAUSE_AFTER=N, or None."""
    raw = os.environ.get(PAUSE_VARIABLE, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise LoadError(f"{PAUSE_VARIABLE}={raw!r} is not a count of symbols", precondition=True)
    return int(raw)


def database_url() -> str:
    """DATABASE_URL (environment, else .env) as asyncpg takes it; exit 2 when there is none."""
    url = databases.configured_database_url()
    if not url:
        raise LoadError(
            "DATABASE_URL is not set (neither in the environment nor in .env)",
            "./start.sh db (chooses the databases, migrates them and records the URLs in .env)",
            precondition=True,
        )
    try:
        return databases.libpq_url(url)
    except ValueError as exc:
        raise LoadError(f"DATABASE_URL: {exc}", precondition=True) from None


def redis_url() -> str | None:
    return databases.configured_redis_url()


def make_source(options: LoadOptions) -> Source:
    seed, asof = market_defaults()
    try:
        return parse_source(
            options.source,
            seed=options.seed if options.seed is not None else seed,
            asof=asof,
            adjusted=options.adjusted,
        )
    except SourceError as exc:
        raise LoadError(str(exc), precondition=True) from None


# --- database -------------------------------------------------------------------------------


async def connect(url: str) -> asyncpg.Connection:
    """One connection, or a LoadError naming the server and what to run."""
    try:
        return await asyncpg.connect(url, timeout=CONNECT_SECONDS)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise LoadError(
            f"PostgreSQL at {databases.mask_url(url)} does not answer: {type(exc).__name__}: {exc}",
            "./start.sh db",
            precondition=True,
        ) from None


async def check_schema(conn: asyncpg.Connection) -> None:
    missing = await conn.fetchval(
        "SELECT array_agg(t) FROM unnest(ARRAY['bars', 'indicators', 'load_runs', "
        "'load_run_symbols']) AS t WHERE to_regclass(t) IS NULL"
    )
    if missing:
        raise LoadError(
            f"the database has no table {', '.join(missing)}: the schema is not migrated",
            "./start.sh db (runs alembic upgrade head)",
            precondition=True,
        )


async def invalidate_cache(url: str | None, symbols: list[str]) -> CacheResult:
    """Delete the cached market data of `symbols` (SCAN + UNLINK of each symbol's pattern).

    Redis is a cache: when it is unset or down, the load still succeeded, so this warns instead.
    """
    if not url:
        return CacheResult(warning="REDIS_URL is not set: no cached market data was invalidated")
    client = aioredis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
    deleted = 0
    try:
        for symbol in symbols:
            batch: list[bytes] = []
            async for key in client.scan_iter(match=market_pattern(symbol), count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += int(await client.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(await client.unlink(*batch))
    except (RedisError, OSError) as exc:
        return CacheResult(
            deleted=deleted,
            warning=f"Redis at {databases.mask_url(url)} did not answer ({type(exc).__name__}: "
            f"{exc}): cached market data of the loaded symbols may be stale until it expires",
        )
    finally:
        with contextlib.suppress(RedisError, OSError):
            await client.aclose()
    return CacheResult(deleted=deleted)


# --- the run --------------------------------------------------------------------------------


def _params(options: LoadOptions, plan: Plan, source: Source) -> dict[str, Any]:
    """What identifies a run for resuming: same source, window, symbols (and CSV files)."""
    params: dict[str, Any] = {
        "symbols": [job.symbol for job in plan.jobs],
        "years": options.years,
        "intraday_days": options.intraday_days,
        "window": plan.window.to_json(),
    }
    if isinstance(source, CsvSource):
        params["files"] = {
            f.file: {"layout": f.layout, "data_lines": f.data_lines} for f in plan.files
        }
    return params


@dataclass(slots=True)
class _Progress:
    rows: int = 0
    symbols: int = 0


class _Pause:
    """CUTOVER_LOAD_PAUSE_AFTER: commit exactly N symbols, then hold the next one and sleep."""

    def __init__(self, after: int | None, feedback: Feedback) -> None:
        self.after = after
        self.feedback = feedback
        self.lock = asyncio.Lock()
        self.committed = 0

    async def commit(self, commit: Callable[[], Awaitable[None]]) -> None:
        if self.after is None:
            await commit()
            return
        async with self.lock:
            if self.committed >= self.after:
                self.feedback.stop()
                sys.stderr.write(
                    f"load-data: paused after {self.committed} symbols ({PAUSE_VARIABLE}="
                    f"{self.after}); the next one is held uncommitted until this process ends\n"
                )
                sys.stderr.flush()
                await asyncio.Event().wait()
            await commit()
            self.committed += 1


async def _pipeline(
    url: str,
    jobs: list[SymbolJob],
    executor: Executor,
    ahead: int,
    connections: int,
    run_id: int,
    pause: _Pause,
    feedback: Feedback,
) -> _Progress:
    loop = asyncio.get_running_loop()
    progress = _Progress()
    ready: asyncio.Queue[Payload | None] = asyncio.Queue(maxsize=2 * connections)

    async def produce() -> None:
        pending: set[asyncio.Future[Payload]] = set()
        for job in jobs:
            while len(pending) >= ahead:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    await ready.put(future.result())
            pending.add(loop.run_in_executor(executor, prepare, job))
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                await ready.put(future.result())
        for _ in range(connections):
            await ready.put(None)

    async def write(conn: asyncpg.Connection) -> None:
        while (payload := await ready.get()) is not None:
            feedback.symbol_started(payload.symbol, payload.rows)
            transaction = conn.transaction()
            await transaction.start()
            try:
                bars, indicators = await copy.write_payload(conn, payload)
                feedback.symbol_written(payload.symbol)
                figures = runs.symbol_figures(payload, bars, indicators)
                await runs.record_symbol(conn, run_id, payload, figures)
                await pause.commit(transaction.commit)
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    await transaction.rollback()
                if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError | OSError):
                    raise LoadError(
                        f"{payload.symbol}: PostgreSQL refused or lost the write "
                        f"({type(exc).__name__}: {exc}); the symbols committed before are kept",
                        "./start.sh load-data again resumes this run",
                        precondition=False,
                    ) from exc
                raise
            progress.symbols += 1
            progress.rows += payload.rows
            feedback.symbol_done(payload.symbol, payload.rows)

    async with contextlib.AsyncExitStack() as stack:
        sessions = []
        for _ in range(connections):
            conn = await connect(url)
            stack.push_async_callback(conn.close)
            await copy.prepare_connection(conn)
            sessions.append(conn)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(produce())
                for conn in sessions:
                    group.create_task(write(conn))
        except BaseExceptionGroup as grouped:
            # One failure cancels the rest; report the failure, not the cancellations.
            first = next(
                (e for e in grouped.exceptions if not isinstance(e, asyncio.CancelledError)),
                grouped.exceptions[0],
            )
            raise first from None
    return progress


async def _post_checks(conn: asyncpg.Connection, run_id: int) -> list[str]:
    """The load's gate: every recorded series is stored with its count and, for a sample of
    symbols, its checksum (ops/loader/verify.py checks everything)."""
    from ops.loader.verify import check_run

    return await check_run(conn, run_id, sample=3)


async def load_async(
    options: LoadOptions,
    source: Source,
    plan: Plan,
    executor: Executor,
    feedback: Feedback,
    *,
    workers: int,
    started: float,
) -> LoadReport:
    url = database_url()
    control = await connect(url)
    try:
        await check_schema(control)
        if not await runs.try_lock(control):
            raise LoadError(
                "another load-data is writing to this database (it holds the loader's lock)",
                "wait for it to finish, or ./start.sh status to see what runs",
                precondition=True,
            )
        params = _params(options, plan, source)
        run = await runs.start(
            control, source.info, plan.window.asof, params, resume=options.resume
        )
        jobs = [job for job in plan.jobs if job.symbol not in run.done]
        feedback.start(len(plan.jobs), len(run.done))
        try:
            progress = await _pipeline(
                url,
                jobs,
                executor,
                2 * workers,
                max(1, options.connections),
                run.id,
                _Pause(options.pause_after, feedback),
                feedback,
            )
            seconds = time.perf_counter() - started
            # Checked before it is marked done: a run that fails its checks never goes live.
            failures = await _post_checks(control, run.id)
            counts, problems = await runs.finish(
                control, run.id, {"seconds": round(seconds, 3)}, plan.problems, failures
            )
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await runs.fail(control, run.id, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            feedback.stop()
    finally:
        with contextlib.suppress(Exception):
            await control.close()
    cache = await invalidate_cache(redis_url(), [job.symbol for job in plan.jobs])
    seconds = time.perf_counter() - started
    return LoadReport(
        run_id=run.id,
        resumed=run.resumed,
        resumed_symbols=len(run.done),
        source=source.info,
        window=plan.window,
        params=params,
        counts={k: v for k, v in counts.items() if isinstance(v, int)},
        attempt_symbols=progress.symbols,
        attempt_rows=progress.rows,
        seconds=seconds,
        problems=capped(problems),
        files=plan.files,
        cache=cache,
        check_failures=failures,
    )


def _ignore_interrupts() -> None:
    # Ctrl-C reaches the whole process group: the main process handles it, workers just end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def worker_count(workers: int | None = None) -> int:
    return max(1, workers or os.cpu_count() or 2)


def worker_pool(count: int) -> ProcessPoolExecutor:
    """Worker processes for generation and encoding (fork: no re-import, instant start)."""
    return ProcessPoolExecutor(
        max_workers=count,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_ignore_interrupts,
    )


def load(options: LoadOptions, feedback: Feedback | None = None) -> LoadReport:
    """Run one load (or resume one) and return its report; LoadError when it cannot."""
    started = time.perf_counter()
    feedback = feedback or QuietFeedback()
    source = make_source(options)
    database_url()  # fail before any work when there is no database to load into
    request = Request(
        symbols=options.symbols,
        years=options.years,
        intraday_days=options.intraday_days,
        asof=options.asof,
    )
    # The pool is forked before any connection or thread exists, so children inherit neither.
    workers = worker_count(options.workers)
    executor = worker_pool(workers)
    try:
        try:
            plan = source.plan(request, executor)
        except SourceError as exc:
            raise LoadError(str(exc), precondition=True) from None
        if not plan.jobs:
            shown = "".join(
                f"\n  {p.where()}: {p.kind}: {p.detail}" for p in capped(plan.problems, 3)[:8]
            )
            raise LoadError(
                "nothing to load: no symbol has good bars in the window "
                f"({plan.window.daily_from} to {plan.window.asof}){shown}",
                precondition=False,
            )
        return asyncio.run(
            load_async(options, source, plan, executor, feedback, workers=workers, started=started)
        )
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
