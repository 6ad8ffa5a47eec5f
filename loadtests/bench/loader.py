"""Benchmark: the historical loader, against psql COPY + the same upsert and plain COPY.

In one run, each into a fresh database migrated to head (created on the configured PostgreSQL
server and dropped afterwards):

1. loader: `load-data`'s default load (the universe, 20 years daily + 60 days of 5-minute bars,
   with indicators), timed end to end: generation, indicators, COPY, upserts, bookkeeping, checks.
2. baseline: the same rows (bars and indicator rows, written to CSV beforehand, untimed) fed by
   `psql \\copy` into the loader's staging tables, then the loader's own upsert SQL.
3. ceiling: the same CSV files by `psql \\copy` straight into the bars and indicators tables.
4. many symbols: the loader on `--count` generated symbols (S0001…, default 500), daily bars only
   (20 years, no 5-minute bars), about 2.6 million bars.

Rates are bars per second (each bar comes with its indicator row). Targets (issue 3): the default
load under 20 s, and the loader at least 0.7 of the baseline's rate.

    python -m loadtests.bench.loader [--count N]

Prints a table and writes var/reports/bench-loader.json; exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
from rich.console import Console
from rich.table import Table

from market.bars import Bars
from market.calendar import DEFAULT_ASOF
from market.indicators import INDICATOR_NAMES, IndicatorFrame, compute_indicators
from ops import databases
from ops.loader.copy import STAGE_BARS, STAGE_INDICATORS, UPSERT_BARS, UPSERT_INDICATORS, stage_ddl
from ops.loader.payload import BAR_COLUMNS, INDICATOR_COLUMNS
from ops.loader.run import LoadOptions, LoadReport, load
from ops.loader.sources import Request, SyntheticSource
from ops.settings import OpsSettings, SettingsError, load_settings
from ops.state import now_iso, write_atomic

NAME = "loader"
DEFAULT_COUNT = 500
TARGET_SECONDS = 20.0
TARGET_RATIO = 0.7


@dataclass(frozen=True, slots=True)
class Timing:
    """One measured way of loading: how many bars (each with its indicator row), how long."""

    name: str
    what: str
    symbols: int
    bars: int
    seconds: float

    @property
    def bars_per_second(self) -> float:
        return self.bars / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class BenchResult:
    benchmark: str
    server: str
    psql: str
    timings: list[dict[str, float | int | str]]
    loader_seconds: float
    loader_bars_per_second: float
    baseline_bars_per_second: float
    ceiling_bars_per_second: float
    ratio_to_baseline: float
    ratio_to_ceiling: float
    many_symbols: int
    many_symbols_seconds: float
    targets: dict[str, bool]
    at: str
    cpus: int = field(default_factory=lambda: os.cpu_count() or 0)
    python: str = field(default_factory=platform.python_version)


class BenchError(Exception):
    """The benchmark cannot run here (exit 2)."""


def find_psql() -> str:
    """psql on PATH, else the one pgserver ships (a machine without PostgreSQL client tools)."""
    found = shutil.which("psql")
    if found:
        return found
    try:
        import pgserver

        bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    except ImportError:
        bundled = None
    if bundled is not None and bundled.is_file():
        return str(bundled)
    raise BenchError("psql is needed for the baseline: install the PostgreSQL client (psql)")


def admin_url() -> str:
    """A URL of the configured PostgreSQL server (DATABASE_URL, else a local trusting server)."""
    url = databases.configured_database_url() or databases.local_postgres_url(
        databases=("postgres", "test")
    )
    if not url:
        raise BenchError("no PostgreSQL: DATABASE_URL is not set; run ./start.sh db first")
    return databases.asyncpg_url(url)


@contextlib.contextmanager
def fresh_database(admin: str, label: str) -> Iterator[str]:
    """A new database migrated to head (libpq URL), dropped afterwards."""
    name = f"bench_loader_{label}_{secrets.token_hex(3)}"
    databases.create_database(admin, name)
    url = databases.with_database(admin, name)
    try:
        databases.upgrade_head(url)
        yield databases.libpq_url(url)
    finally:
        databases.drop_database(admin, name)


def run_loader(url: str, options: LoadOptions) -> tuple[LoadReport, float]:
    """The loader in this process on `url`; no Redis (a scratch database has nothing cached)."""
    saved = {k: os.environ.get(k) for k in ("DATABASE_URL", "REDIS_URL")}
    os.environ["DATABASE_URL"] = url
    os.environ["REDIS_URL"] = ""
    try:
        started = time.perf_counter()
        report = load(options)
        return report, time.perf_counter() - started
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _times(epoch: np.ndarray[tuple[int], np.dtype[np.int64]]) -> list[str]:
    text = np.datetime_as_string(epoch.astype("datetime64[s]"))
    return [f"{t}+00" for t in text.tolist()]


def _write_series(
    bars_out: TextIO, indicators_out: TextIO, symbol: str, interval: str, bars: Bars
) -> None:
    frame: IndicatorFrame = compute_indicators(bars)
    times = _times(bars.time)
    prices = zip(
        bars.open.tolist(),
        bars.high.tolist(),
        bars.low.tolist(),
        bars.close.tolist(),
        bars.volume.tolist(),
        strict=True,
    )
    for t, (o, h, lo, c, v) in zip(times, prices, strict=True):
        bars_out.write(f"{symbol},{interval},{t},{o!r},{h!r},{lo!r},{c!r},{v}\n")
    columns = [getattr(frame, name).tolist() for name in INDICATOR_NAMES]
    for i, t in enumerate(times):
        values = ",".join("" if v != v else repr(v) for v in (col[i] for col in columns))
        indicators_out.write(f"{symbol},{interval},{t},{values}\n")


def write_csv(folder: Path) -> tuple[Path, Path, int, int]:
    """The default load's rows as CSV (bars, indicators): generated exactly as the loader does."""
    plan = SyntheticSource(seed=42, default_asof=DEFAULT_ASOF).plan(Request())
    bars_path, indicators_path = folder / "bars.csv", folder / "indicators.csv"
    count = 0
    with bars_path.open("w") as bars_out, indicators_path.open("w") as indicators_out:
        for job in plan.jobs:
            series = job.recipe.series()
            for interval, bars in (("1d", series.daily), ("5m", series.intraday)):
                _write_series(bars_out, indicators_out, job.symbol, interval, bars)
                count += len(bars)
    return bars_path, indicators_path, len(plan.jobs), count


def run_psql(psql: str, url: str, script: str) -> float:
    """Run a psql script (stop on the first error); its wall time in seconds."""
    started = time.perf_counter()
    result = subprocess.run(
        [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url],
        input=script,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"psql failed: {result.stderr.strip()}")
    return elapsed


def _copy(table: str, columns: tuple[str, ...], path: Path) -> str:
    return f"\\copy {table} ({', '.join(columns)}) FROM '{path}' WITH (FORMAT csv)\n"


def baseline_script(bars: Path, indicators: Path) -> str:
    """psql COPY into the staging tables, then the loader's own upsert statements."""
    ddl = "".join(f"{statement};\n" for statement in stage_ddl(empty_on_commit=False))
    return (
        ddl
        + _copy(STAGE_BARS, BAR_COLUMNS, bars)
        + _copy(STAGE_INDICATORS, INDICATOR_COLUMNS, indicators)
        + f"{UPSERT_BARS};\n{UPSERT_INDICATORS};\n"
    )


def ceiling_script(bars: Path, indicators: Path) -> str:
    return _copy("bars", BAR_COLUMNS, bars) + _copy("indicators", INDICATOR_COLUMNS, indicators)


def run(console: Console, count: int) -> BenchResult:
    psql = find_psql()
    admin = admin_url()
    timings: list[Timing] = []

    console.print("loader: the default universe into a fresh database …")
    with fresh_database(admin, "load") as url:
        report, seconds = run_loader(url, LoadOptions())
    loader = Timing("loader", "load-data (default)", report.counts["symbols"], report.rows, seconds)
    timings.append(loader)

    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        console.print("writing the same rows as CSV for psql (untimed) …")
        bars_csv, indicators_csv, symbols, rows = write_csv(Path(tmp))
        if rows != report.rows:
            raise RuntimeError(f"the CSV holds {rows} bars, the loader loaded {report.rows}")
        console.print("baseline: psql COPY into staging + the loader's upsert …")
        with fresh_database(admin, "baseline") as url:
            seconds = run_psql(psql, url, baseline_script(bars_csv, indicators_csv))
        baseline = Timing("baseline", "psql COPY → staging → upsert", symbols, rows, seconds)
        timings.append(baseline)
        console.print("ceiling: psql COPY into the tables …")
        with fresh_database(admin, "ceiling") as url:
            seconds = run_psql(psql, url, ceiling_script(bars_csv, indicators_csv))
        ceiling = Timing("ceiling", "psql COPY → tables", symbols, rows, seconds)
        timings.append(ceiling)

    console.print(f"loader: {count} generated symbols, daily bars only …")
    generated = tuple(f"S{i:04d}" for i in range(1, count + 1))
    with fresh_database(admin, "many") as url:
        many_report, seconds = run_loader(
            url, LoadOptions(symbols=generated, intraday_days=0, years=20)
        )
    many = Timing(
        "many", f"load-data, {count} symbols, daily only", count, many_report.rows, seconds
    )
    timings.append(many)

    ratio = loader.bars_per_second / baseline.bars_per_second
    return BenchResult(
        benchmark=NAME,
        server=databases.mask_url(databases.with_database(admin, "")),
        psql=psql,
        timings=[
            {
                **asdict(t),
                "bars_per_second": round(t.bars_per_second, 1),
                "seconds": round(t.seconds, 3),
            }
            for t in timings
        ],
        loader_seconds=round(loader.seconds, 3),
        loader_bars_per_second=round(loader.bars_per_second, 1),
        baseline_bars_per_second=round(baseline.bars_per_second, 1),
        ceiling_bars_per_second=round(ceiling.bars_per_second, 1),
        ratio_to_baseline=round(ratio, 3),
        ratio_to_ceiling=round(loader.bars_per_second / ceiling.bars_per_second, 3),
        many_symbols=count,
        many_symbols_seconds=round(many.seconds, 3),
        targets={
            f"default load under {TARGET_SECONDS:.0f} s": loader.seconds < TARGET_SECONDS,
            f"loader ≥ {TARGET_RATIO} of the baseline": ratio >= TARGET_RATIO,
            f"{count} symbols complete": many_report.counts["symbols"] == count,
        },
        at=now_iso(),
    )


def render(result: BenchResult) -> Table:
    table = Table(title="loading history (bars with their indicator rows)", title_justify="left")
    for column, justify in (
        ("way", "left"),
        ("what", "left"),
        ("symbols", "right"),
        ("bars", "right"),
        ("seconds", "right"),
        ("bars/s", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for t in result.timings:
        table.add_row(
            str(t["name"]),
            str(t["what"]),
            f"{int(t['symbols']):,}",
            f"{int(t['bars']):,}",
            f"{float(t['seconds']):.2f}",
            f"{float(t['bars_per_second']):,.0f}",
        )
    return table


def save(settings: OpsSettings, result: BenchResult) -> Path:
    path = settings.reports_dir / f"bench-{NAME}.json"
    write_atomic(path, (json.dumps(asdict(result), indent=2) + "\n").encode())
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench.loader",
        description="Time the loader against psql COPY + upsert (baseline) and plain COPY.",
    )
    parser.add_argument(
        "--count", type=int, default=DEFAULT_COUNT, help="generated symbols of the large run"
    )
    parser.add_argument("--url", help="not used: this benchmark measures the loader, not a server")
    args = parser.parse_args(argv)
    console = Console(highlight=False)
    if args.count < 1:
        parser.error("--count must be ≥ 1")
    try:
        settings = load_settings()
    except SettingsError as exc:
        console.print(f"[red]✗[/] bad setting: {exc}")
        return 2
    try:
        result = run(console, args.count)
    except BenchError as exc:
        console.print(f"[red]✗[/] {exc}")
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]![/] interrupted")
        return 3
    console.print(render(result))
    console.print(
        f"loader / baseline: {result.ratio_to_baseline:.2f} (target ≥ {TARGET_RATIO}); "
        f"loader / ceiling: {result.ratio_to_ceiling:.2f}; default load "
        f"{result.loader_seconds:.2f} s (target < {TARGET_SECONDS:.0f} s); "
        f"{result.many_symbols} symbols in {result.many_symbols_seconds:.2f} s"
    )
    for target, met in result.targets.items():
        console.print(f"{'[green]✓[/]' if met else '[red]✗[/]'} {target}")
    console.print(f"saved {save(settings, result)}")
    return 0 if all(result.targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
