"""Benchmark: the mock and the production backend side by side, on the same requests.

Both serve the same history: the mock generates it (seed 42, the default as-of date), production
reads it from a fresh database on the configured PostgreSQL server, filled by the loader with the
same seed and as-of date (created here and dropped afterwards), with a Redis database of its own.
Equal worker counts (one process each: the mock is single-process by design), rate limits far
above the load, caches warm. For each request kind -- a quote, one year of daily candles, one year
of indicators, the signals list -- `--count` requests from `--concurrency` keep-alive connections
give requests/s, p50 and p99 per backend and production's share of the mock's requests/s. Then
twenty years of daily candles for one symbol, one request at a time (concurrency 1).

Targets (issue 4): production ≥ 50 % of the mock's requests/s on these cached reads; the
twenty-year answer under 15 ms p50.

    python -m loadtests.bench.backends [--count N] [--concurrency C] [--clients P]

Prints a table and writes var/reports/bench-backends.json; exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import secrets
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import redis
from rich.console import Console
from rich.table import Table

from market.calendar import DEFAULT_ASOF
from ops import databases, services
from ops.settings import OpsSettings, SettingsError, load_settings
from ops.state import now_iso, write_atomic

NAME = "backends"
DEFAULT_COUNT = 4000
DEFAULT_CONCURRENCY = 16
DEFAULT_CLIENTS = 1
TWENTY_YEARS_COUNT = 300
TARGET_RATIO = 0.5
TARGET_TWENTY_YEARS_P50_MS = 15.0
SEED = 42
SYMBOLS = ("SPY", "AAPL", "MSFT", "NVDA", "TSLA", "QQQ", "AMZN", "GOOGL")
KINDS: dict[str, str] = {
    "quote": "/api/v1/market-data/{symbol}",
    "historical 1y 1d": "/api/v1/market-data/{symbol}/historical?period=1y&interval=1d",
    "indicators 1y 1d": "/api/v1/market-data/{symbol}/indicators?period=1y&interval=1d",
    "signals list": "/api/v1/signals",
}
TWENTY_YEARS = "/api/v1/market-data/SPY/historical?period=20y&interval=1d"
# Both servers: no limit in the way, the same data, the same feed.
COMMON_ENV = {
    "RATE_LIMIT_PER_MINUTE": "10000000",
    "MARKET_SEED": str(SEED),
    "MARKET_ASOF": DEFAULT_ASOF.isoformat(),
    "QUOTE_FEED": "simulated",
    "LOG_LEVEL": "WARNING",
    "FAULT_LATENCY_MS": "0",
    "FAULT_ERROR_RATE": "0",
    "FAULT_DRIFT": "",
    "FAULT_REFUSE": "false",
}
REDIS_CLAIM_PREFIX = "cutover-tests:claim:"


class BenchError(Exception):
    """The benchmark cannot run; the message says what to do."""


# --- the load generator -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shot:
    """What one client process measured: latencies in seconds, statuses, its wall time."""

    latencies: list[float]
    statuses: dict[str, int]
    wall: float


async def _connection(
    host: str,
    port: int,
    paths: list[str],
    count: int,
    latencies: list[float],
    statuses: Counter[str],
) -> None:
    """`count` GETs on one keep-alive HTTP/1.1 connection (a lean client: the server is measured,
    not the client library)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for index in range(count):
            path = paths[index % len(paths)]
            started = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses[head[9:12].decode()] += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _drive(host: str, port: int, paths: list[str], count: int, concurrency: int) -> Shot:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    share = [
        count // concurrency + (1 if i < count % concurrency else 0) for i in range(concurrency)
    ]
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _connection(host, port, paths[i:] + paths[:i], n, latencies, statuses)
            for i, n in enumerate(share)
            if n
        )
    )
    return Shot(latencies, dict(statuses), time.perf_counter() - started)


def _client(job: tuple[str, int, list[str], int, int, float]) -> Shot:
    host, port, paths, count, concurrency, start_at = job
    time.sleep(max(0.0, start_at - time.monotonic()))  # every client process starts together
    return asyncio.run(_drive(host, port, paths, count, concurrency))


@dataclass(frozen=True, slots=True)
class Figures:
    requests: int
    errors: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    mean_ms: float


def _figures(shots: list[Shot]) -> Figures:
    latencies = np.asarray([x for shot in shots for x in shot.latencies], dtype=np.float64) * 1000
    wall = max(shot.wall for shot in shots)
    ok = sum(shot.statuses.get("200", 0) for shot in shots)
    p50, p99 = np.percentile(latencies, [50, 99])
    return Figures(
        requests=int(latencies.size),
        errors=int(latencies.size) - ok,
        requests_per_second=round(latencies.size / wall, 1),
        p50_ms=round(float(p50), 3),
        p99_ms=round(float(p99), 3),
        mean_ms=round(float(latencies.mean()), 3),
    )


def measure(url: str, paths: list[str], count: int, concurrency: int, clients: int) -> Figures:
    """`count` requests over `paths` from `clients` processes × `concurrency` connections."""
    host, _, port = url.removeprefix("http://").partition(":")
    start_at = time.monotonic() + 0.3
    per_client = [count // clients + (1 if i < count % clients else 0) for i in range(clients)]
    jobs = [
        (host, int(port), paths, n, max(1, concurrency // clients), start_at) for n in per_client
    ]
    if clients == 1:
        return _figures([_client(jobs[0])])
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        return _figures(pool.map(_client, jobs))


# --- the servers ----------------------------------------------------------------------------


def _admin_url(settings: OpsSettings) -> tuple[str, str]:
    given = databases.configured(settings)
    if "postgres" not in given or "redis" not in given:
        raise BenchError("DATABASE_URL and REDIS_URL are not set: run ./start.sh db first")
    postgres, redis_url = given["postgres"][0], given["redis"][0]
    for kind, url, probe in (
        ("PostgreSQL", postgres, databases.probe_postgres(postgres).ok),
        ("Redis", redis_url, databases.probe_redis(redis_url).ok),
    ):
        if not probe:
            raise BenchError(f"{kind} at {databases.mask_url(url)} does not answer: ./start.sh db")
    return databases.asyncpg_url(postgres), redis_url


@contextlib.contextmanager
def _redis_database(server_url: str) -> Iterator[str]:
    """A Redis database (1-15) of the benchmark's own, claimed like a test session claims one,
    so that its counters and caches never meet a running backend's."""
    client = redis.Redis.from_url(databases.redis_db_url(server_url, 0), socket_timeout=5)
    token = f"bench-{secrets.token_hex(6)}"
    number = next(
        (
            n
            for n in range(15, 0, -1)
            if client.set(f"{REDIS_CLAIM_PREFIX}{n}", token, nx=True, ex=3600)
        ),
        None,
    )
    if number is None:
        client.close()
        raise BenchError("every Redis database 1-15 is claimed (by test sessions?)")
    url = databases.redis_db_url(server_url, number)
    redis.Redis.from_url(url, socket_timeout=5).flushdb()
    try:
        yield url
    finally:
        redis.Redis.from_url(url, socket_timeout=5).flushdb()
        if client.get(f"{REDIS_CLAIM_PREFIX}{number}") == token.encode():
            client.delete(f"{REDIS_CLAIM_PREFIX}{number}")
        client.close()


@contextlib.contextmanager
def _loaded_database(admin: str, redis_url: str, console: Console) -> Iterator[str]:
    """A fresh database with the universe as `load-data` loads it by default (the mock's)."""
    from ops.loader.run import LoadOptions, load

    name = f"cutover_bench_{secrets.token_hex(4)}"
    databases.create_database(admin, name)
    url = databases.with_database(admin, name)
    try:
        databases.upgrade_head(url)
        console.print("loading the universe into a fresh database …")
        saved = {k: os.environ.get(k) for k in ("DATABASE_URL", "REDIS_URL")}
        os.environ.update({"DATABASE_URL": url, "REDIS_URL": redis_url})
        try:
            load(LoadOptions(seed=SEED, asof=DEFAULT_ASOF))  # the default window
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        yield url
    finally:
        databases.drop_database(admin, name)


@contextlib.contextmanager
def _servers(settings: OpsSettings, database_url: str, redis_url: str) -> Iterator[tuple[str, str]]:
    mock = services.mock_spec(
        settings, name="bench-mock-backends", port=services.free_port(), admin_port=0
    )
    prod = services.app_spec(
        settings,
        "bench-prod",
        "backend",
        services.free_port(),
        *("--workers", "1", "--admin-port", "0"),
    )
    prod_env = {
        **COMMON_ENV,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": secrets.token_urlsafe(48),
    }
    with (
        services.temporary_service(settings, mock, env=COMMON_ENV) as mock_started,
        services.temporary_service(settings, prod, env=prod_env) as prod_started,
    ):
        yield str(mock_started.record.url), str(prod_started.record.url)


# --- the run --------------------------------------------------------------------------------


@dataclass(slots=True)
class KindResult:
    kind: str
    example: str
    mock: Figures
    production: Figures

    @property
    def ratio(self) -> float:
        base = self.mock.requests_per_second
        return round(self.production.requests_per_second / base, 3) if base else 0.0


@dataclass(slots=True)
class BenchResult:
    benchmark: str
    at: str
    count: int
    concurrency: int
    clients: int
    workers_each: int
    kinds: list[KindResult]
    twenty_years: dict[str, Figures]
    candles_twenty_years: int
    cpus: int | None = field(default_factory=os.cpu_count)
    python: str = field(default_factory=platform.python_version)

    @property
    def worst_ratio(self) -> float:
        return min(kind.ratio for kind in self.kinds)

    @property
    def passed(self) -> bool:
        return (
            self.worst_ratio >= TARGET_RATIO
            and self.twenty_years["production"].p50_ms < TARGET_TWENTY_YEARS_P50_MS
        )

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["kinds"] = [{**asdict(k), "ratio": k.ratio} for k in self.kinds]
        document["targets"] = {
            "ratio_min": TARGET_RATIO,
            "twenty_years_p50_ms": TARGET_TWENTY_YEARS_P50_MS,
        }
        document["worst_ratio"] = self.worst_ratio
        document["passed"] = self.passed
        return document


def _paths(template: str) -> list[str]:
    return [template.format(symbol=symbol) for symbol in SYMBOLS] if "{" in template else [template]


def _warm(url: str, console: Console) -> int:
    """Every path a few times on one connection; the 20-year answer's candle count."""
    import httpx

    with httpx.Client(base_url=url, timeout=60) as client:
        for template in [*KINDS.values(), TWENTY_YEARS]:
            for path in _paths(template):
                for _ in range(3):
                    answer = client.get(path)
                    if answer.status_code != 200:
                        raise BenchError(f"{url}{path}: {answer.status_code} {answer.text[:200]}")
        candles = len(client.get(TWENTY_YEARS).json()["data"])
    console.print(f"  warmed {url}")
    return candles


def run(
    settings: OpsSettings, console: Console, count: int, concurrency: int, clients: int
) -> BenchResult:
    admin, redis_server = _admin_url(settings)
    with (
        _redis_database(redis_server) as redis_url,
        _loaded_database(admin, redis_url, console) as database_url,
        _servers(settings, database_url, redis_url) as (mock_url, prod_url),
    ):
        candles = _warm(mock_url, console)
        if _warm(prod_url, console) != candles:
            raise BenchError("the two backends serve different histories")
        kinds = []
        for kind, template in KINDS.items():
            console.print(f"  {kind}: {count} requests × 2 backends …")
            figures = {
                name: measure(url, _paths(template), count, concurrency, clients)
                for name, url in (("mock", mock_url), ("production", prod_url))
            }
            kinds.append(
                KindResult(
                    kind, template.format(symbol="SPY"), figures["mock"], figures["production"]
                )
            )
        console.print(
            f"  twenty years of daily candles: {TWENTY_YEARS_COUNT} sequential requests …"
        )
        twenty = {
            name: measure(url, [TWENTY_YEARS], TWENTY_YEARS_COUNT, 1, 1)
            for name, url in (("mock", mock_url), ("production", prod_url))
        }
    return BenchResult(
        benchmark=NAME,
        at=now_iso(),
        count=count,
        concurrency=concurrency,
        clients=clients,
        workers_each=1,
        kinds=kinds,
        twenty_years=twenty,
        candles_twenty_years=candles,
    )


def render(result: BenchResult) -> Table:
    table = Table(
        title=(
            f"mock vs production · 1 worker each · {result.count} requests per kind · "
            f"{result.concurrency} connections"
        )
    )
    for column in ("request", "backend", "req/s", "p50 ms", "p99 ms", "errors", "prod/mock"):
        table.add_column(column, justify="left" if column in ("request", "backend") else "right")
    rows = [(k.kind, k.mock, k.production, f"{k.ratio:.2f}") for k in result.kinds]
    rows.append(
        (
            f"20y daily ({result.candles_twenty_years} candles), concurrency 1",
            result.twenty_years["mock"],
            result.twenty_years["production"],
            "",
        )
    )
    for kind, mock, production, ratio in rows:
        for name, figures in (("mock", mock), ("production", production)):
            table.add_row(
                kind if name == "mock" else "",
                name,
                f"{figures.requests_per_second:,.0f}",
                f"{figures.p50_ms:.2f}",
                f"{figures.p99_ms:.2f}",
                str(figures.errors),
                ratio if name == "production" else "",
            )
    return table


def report_path(settings: OpsSettings) -> Path:
    return settings.reports_dir / f"bench-{NAME}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench.backends",
        description="Mock and production side by side on the same cached reads.",
    )
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="requests per kind")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--clients", type=int, default=DEFAULT_CLIENTS, help="client processes")
    parser.add_argument("--url", help="not used: this benchmark starts both backends itself")
    args = parser.parse_args(argv)
    if args.count < 1 or args.concurrency < 1 or not 1 <= args.clients <= args.concurrency:
        parser.error("--count and --concurrency must be ≥ 1, --clients 1..concurrency")
    console = Console(highlight=False)
    try:
        settings = load_settings()
    except SettingsError as exc:
        console.print(f"[red]✗[/] bad setting: {exc}")
        return 2
    try:
        result = run(settings, console, args.count, args.concurrency, args.clients)
    except (BenchError, services.PortBusyError) as exc:
        console.print(f"[red]✗[/] {exc}")
        return 2
    except services.ServiceError as exc:
        console.print(f"[red]✗[/] a backend did not start: {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("[yellow]![/] interrupted")
        return 3
    console.print(render(result))
    twenty = result.twenty_years["production"].p50_ms
    console.print(
        f"production / mock requests/s: worst {result.worst_ratio:.2f} (target ≥ {TARGET_RATIO}); "
        f"20-year answer p50 {twenty:.2f} ms (target < {TARGET_TWENTY_YEARS_P50_MS:.0f} ms)"
    )
    path = report_path(settings)
    write_atomic(path, (json.dumps(result.to_json(), indent=2) + "\n").encode())
    console.print(f"saved {path}")
    if not result.passed:
        console.print("[red]✗[/] a target was missed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
