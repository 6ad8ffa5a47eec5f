"""Benchmark: latency of `GET /api/v1/market-data/SPY` and the mock's start time.

Sequential requests over one keep-alive client after a warm-up, so the figures are the server's
own per-request cost plus loopback, not a concurrency test (that is the Locust load test). With no
`--url` it starts a mock on a free port (timing spawn → first healthy answer) and stops it by pid.

    python -m loadtests.bench.market_data [--url URL] [--count N] [--warmup N] [--symbol SPY]

Prints a table and writes var/reports/bench-market-data.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from ops import services
from ops.settings import OpsSettings, SettingsError, load_settings
from ops.state import now_iso, write_atomic

NAME = "market-data"
BENCH_MOCK = "bench-mock"
DEFAULT_COUNT = 2000
DEFAULT_WARMUP = 100

# The benchmark's own mock must not rate-limit one client sending thousands of requests.
BENCH_MOCK_ENV = {"RATE_LIMIT_PER_MINUTE": "10000000"}


@dataclass(frozen=True, slots=True)
class BenchResult:
    """The figures saved as JSON; latencies in milliseconds."""

    benchmark: str
    target: str
    path: str
    started_own_mock: bool
    count: int
    warmup: int
    ok: int
    errors: int
    status_counts: dict[str, int]
    duration_s: float
    requests_per_second: float
    latency_ms: dict[str, float]
    mock_start_seconds: float | None
    at: str
    python: str = field(default_factory=platform.python_version)


def measure(
    client: httpx.Client, path: str, count: int, warmup: int
) -> tuple[list[float], dict[str, int], float]:
    """Time `count` sequential GETs after `warmup` untimed ones.

    Returns the latencies in ms, the count of each status (or error name) and the wall time in s.
    """
    for _ in range(warmup):
        client.get(path)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    wall_start = time.perf_counter()
    for _ in range(count):
        started = time.perf_counter()
        try:
            response = client.get(path)
            response.read()
            key = str(response.status_code)
        except httpx.HTTPError as exc:
            key = type(exc).__name__
        latencies.append((time.perf_counter() - started) * 1000)
        statuses[key] = statuses.get(key, 0) + 1
    return latencies, statuses, time.perf_counter() - wall_start


def summarise(latencies: list[float]) -> dict[str, float]:
    values = np.asarray(latencies, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "p50": round(float(p50), 3),
        "p90": round(float(p90), 3),
        "p99": round(float(p99), 3),
        "max": round(float(values.max()), 3),
        "mean": round(float(values.mean()), 3),
        "min": round(float(values.min()), 3),
    }


@contextlib.contextmanager
def target(settings: OpsSettings, url: str | None) -> Iterator[tuple[str, float | None]]:
    """The base URL to measure and the mock's start time when this run started one."""
    if url:
        yield url.rstrip("/"), None
        return
    spec = services.mock_spec(
        settings, name=BENCH_MOCK, port=services.free_port(settings.host), admin_port=0
    )
    with services.temporary_service(settings, spec, env=BENCH_MOCK_ENV) as started:
        yield str(started.record.url), started.startup_seconds


def run(
    settings: OpsSettings,
    url: str | None = None,
    count: int = DEFAULT_COUNT,
    warmup: int = DEFAULT_WARMUP,
    symbol: str = "SPY",
) -> BenchResult:
    """Run the benchmark and return its figures (nothing printed or written)."""
    path = f"/api/v1/market-data/{symbol}"
    with (
        target(settings, url) as (base_url, start_seconds),
        httpx.Client(base_url=base_url, timeout=10.0) as client,
    ):
        latencies, statuses, wall = measure(client, path, count, warmup)
    ok = statuses.get("200", 0)
    return BenchResult(
        benchmark=NAME,
        target=base_url,
        path=path,
        started_own_mock=url is None,
        count=count,
        warmup=warmup,
        ok=ok,
        errors=count - ok,
        status_counts=dict(sorted(statuses.items())),
        duration_s=round(wall, 3),
        requests_per_second=round(count / wall, 1) if wall > 0 else 0.0,
        latency_ms=summarise(latencies),
        mock_start_seconds=start_seconds,
        at=now_iso(),
    )


def report_path(settings: OpsSettings) -> Path:
    return settings.reports_dir / f"bench-{NAME}.json"


def save(settings: OpsSettings, result: BenchResult) -> Path:
    path = report_path(settings)
    write_atomic(path, (json.dumps(asdict(result), indent=2) + "\n").encode())
    return path


def render(result: BenchResult) -> Table:
    table = Table(title=f"GET {result.path} × {result.count} on {result.target}")
    for column in ("p50 ms", "p90 ms", "p99 ms", "max ms", "req/s", "errors"):
        table.add_column(column, justify="right")
    lat = result.latency_ms
    table.add_row(
        f"{lat['p50']:.2f}",
        f"{lat['p90']:.2f}",
        f"{lat['p99']:.2f}",
        f"{lat['max']:.2f}",
        f"{result.requests_per_second:.0f}",
        str(result.errors),
    )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench.market_data",
        description="Time sequential GET /api/v1/market-data/SYMBOL requests.",
    )
    parser.add_argument("--url", help="base URL (default: start a mock on a free port)")
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="timed requests")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed requests first")
    parser.add_argument("--symbol", default="SPY")
    args = parser.parse_args(argv)
    if args.count < 1 or args.warmup < 0:
        parser.error("--count must be ≥ 1 and --warmup ≥ 0")
    console = Console(highlight=False)
    try:
        settings = load_settings()
    except SettingsError as exc:
        console.print(f"[red]✗[/] bad setting: {exc}")
        return 2
    try:
        result = run(settings, args.url, args.count, args.warmup, args.symbol.upper())
    except services.PortBusyError as exc:
        console.print(f"[red]✗[/] {exc}")
        return 2
    except services.ServiceError as exc:
        console.print(f"[red]✗[/] could not start a mock to measure: {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("[yellow]![/] interrupted")
        return 3
    console.print(render(result))
    if result.mock_start_seconds is not None:
        console.print(
            f"mock start (spawn → first healthy answer): {result.mock_start_seconds:.2f} s"
        )
    path = save(settings, result)
    console.print(f"saved {path}")
    if result.errors:
        console.print(
            f"[red]✗[/] {result.errors} of {result.count} requests failed: {result.status_counts}"
        )
        if "429" in result.status_counts:
            console.print("  429 = rate limited: raise RATE_LIMIT_PER_MINUTE on the target")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
