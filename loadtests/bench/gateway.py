"""Benchmark: what the gateway adds to a request, at a fixed arrival rate, in one run.

Starts a mock (the primary), a candidate for shadow mode (a second mock by default; `--candidate
prod` runs the production backend on a fresh database filled by the loader, which needs
`./start.sh db`) and a gateway, each on free ports. It measures the mock's capacity briefly on the
frontend's read mix (closed loop, or takes `--rate`), then sends that mix at about half of it:

    (a) directly to the mock, (b) through the gateway in direct mode, (c) through the gateway in
    shadow mode (the mock answers, the candidate gets a copy of every read),

taking turns in short rounds so that a busy neighbour on the machine weighs on all three alike.

The load is open-loop: request i is due at start + i/rate whatever happened to the others, and
its latency runs from that due time to the last byte of the answer, so queueing in the gateway
shows instead of slowing the sender down (no coordinated omission). The client is lean (raw
HTTP/1.1 over a pool of keep-alive connections on uvloop) and reports its own CPU, so that the
figures measure the servers, not the load generator. Each connection plays one browser: it sends
back the gateway's sticky cookie. The gateway's CPU time per request comes from its process's
user + system time (/proc, as psutil reads it) before and after each window.

Targets (issue 6): in direct mode the gateway adds ≤ 1 ms at p50 and ≤ 5 ms at p99.

    python -m loadtests.bench.gateway [--rate R] [--duration S] [--count N] [--candidate mock|prod]

Prints a table and writes var/reports/bench-gateway.json; exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import uvloop
from rich.console import Console
from rich.table import Table

from ops import services
from ops.settings import OpsSettings, SettingsError, load_settings
from ops.state import now_iso, write_atomic

NAME = "gateway"
API = "/api/v1"
TARGET_ADDED_P50_MS = 1.0
TARGET_ADDED_P99_MS = 5.0
# Shadow mode with a candidate slowed by 2 s: the primary's p95 may rise by at most 10 % over
# shadow mode with a healthy candidate (the copies go through a bounded queue, never inline).
SLOW_CANDIDATE_MS = 2000
TARGET_SLOW_P95_RATIO = 1.10
DEFAULT_DURATION_S = 15.0
WARMUP_S = 2.0
CAPACITY_S = 3.0
CAPACITY_CONNECTIONS = 16
# Enough connections that a burst queues in the server, not in the client's pool.
MAX_CONNECTIONS = 64
RATE_SHARE = 0.5
# The cases take turns in short rounds, so that a busy neighbour on the machine weighs on all
# three alike instead of on whichever case ran while it was busy.
ROUNDS = 5
SEED = 42
SYMBOLS = ("SPY", "AAPL", "MSFT", "NVDA", "TSLA", "QQQ", "AMZN", "GOOGL")
# The reference dashboard's reads per minute (loadtests/locustfile.py): the insights of a signal
# take its id from /signals/{symbol}, which is that share of the signals reads.
MIX: tuple[tuple[str, int], ...] = (
    ("quote", 14),
    ("historical 1y", 1),
    ("signals", 1),
    ("insights", 1),
    ("opportunities", 1),
)
CANDIDATE_ADMIN_TOKEN = secrets.token_urlsafe(24)
BACKEND_ENV = {
    "RATE_LIMIT_PER_MINUTE": "10000000",
    "ADMIN_TOKEN": CANDIDATE_ADMIN_TOKEN,
    "LOG_LEVEL": "WARNING",
    "FAULT_LATENCY_MS": "0",
    "FAULT_ERROR_RATE": "0",
    "FAULT_DRIFT": "",
    "FAULT_REFUSE": "false",
}
Candidate = Literal["mock", "prod"]
# The cases, in the order they run.
DIRECT, GATEWAY_DIRECT, GATEWAY_SHADOW, GATEWAY_SHADOW_SLOW = (
    "direct to the mock",
    "gateway, direct mode",
    "gateway, shadow mode",
    "gateway, shadow mode, candidate slowed by 2 s",
)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The benchmark cannot run; the message says what to do."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (what psutil's cpu_times reads on Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# --- the load generator -----------------------------------------------------------------------


class _Connection:
    """One keep-alive HTTP/1.1 connection playing one browser (it keeps the sticky cookie)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.cookie = b""
        self.used = False

    async def get(self, host: bytes, path: bytes) -> int:
        self.writer.write(b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path, host, self.cookie))
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"set-cookie":
                self.cookie = b"Cookie: %s\r\n" % value.split(b";", 1)[0].strip()
        await self.reader.readexactly(length)
        self.used = True
        return int(head[9:12])

    def close(self) -> None:
        self.writer.close()


FAILURES = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


class Pool:
    """Keep-alive connections to one server, at most `size`, opened on demand; a request that
    finds none free waits for one (that wait is part of its latency)."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port = host, port
        self.host_header = f"{host}:{port}".encode()
        self.idle: list[_Connection] = []
        self.slots = asyncio.Semaphore(size)

    async def _exchange(self, path: bytes, fresh: bool) -> str | None:
        """One GET on an idle connection (or a new one): its status or error name; None when a
        reused connection failed (the server may have closed it meanwhile)."""
        connection = self.idle.pop() if self.idle and not fresh else None
        try:
            if connection is None:
                connection = _Connection(*await asyncio.open_connection(self.host, self.port))
            status = await connection.get(self.host_header, path)
        except FAILURES as exc:
            if connection is not None:
                connection.close()
                return None if connection.used else type(exc).__name__
            return type(exc).__name__
        self.idle.append(connection)
        return str(status)

    async def get(self, path: bytes) -> str:
        """One GET; its status, or the name of the error. As a browser does, a request that
        fails on a reused keep-alive connection is sent once more on a fresh one."""
        async with self.slots:
            answer = await self._exchange(path, fresh=False)
            if answer is None:
                answer = await self._exchange(path, fresh=True)
            return answer or "ConnectionClosed"

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()


@dataclass(slots=True)
class Window:
    """What one measured window saw: latencies from the due time, and the sender's lag."""

    latencies: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    wall: float = 0.0
    client_cpu: float = 0.0


async def open_loop(pool: Pool, paths: list[bytes], rate: float) -> Window:
    """Send `paths` at `rate` per second on a fixed schedule; wait for every answer."""
    window = Window()
    tasks: set[asyncio.Task[None]] = set()

    async def one(due: float, path: bytes) -> None:
        window.lags.append(time.perf_counter() - due)
        status = await pool.get(path)
        window.latencies.append(time.perf_counter() - due)
        window.statuses[status] += 1

    cpu = time.process_time()
    began = time.perf_counter() + 0.01
    for index, path in enumerate(paths):
        due = began + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(due, path))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    window.wall = time.perf_counter() - began
    window.client_cpu = time.process_time() - cpu
    return window


async def closed_loop(pool: Pool, paths: list[bytes], seconds: float, connections: int) -> float:
    """Requests per second that `connections` back-to-back senders get: the capacity."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def sender(offset: int) -> None:
        nonlocal done
        index = offset
        while time.perf_counter() < deadline:
            await pool.get(paths[index % len(paths)])
            index += connections
            done += 1

    began = time.perf_counter()
    await asyncio.gather(*(sender(i) for i in range(connections)))
    return done / (time.perf_counter() - began)


# --- the mix ----------------------------------------------------------------------------------


def signal_ids(url: str) -> dict[str, str]:
    """The current signal's id per symbol (the insights route wants it), from the mock."""
    ids: dict[str, str] = {}
    with httpx.Client(base_url=url, timeout=30) as client:
        for symbol in SYMBOLS:
            answer = client.get(f"{API}/signals/{symbol}")
            if answer.status_code != 200:
                raise BenchError(f"{url}{API}/signals/{symbol}: {answer.status_code}")
            signals = answer.json().get("signals") or []
            if signals:
                ids[symbol] = str(signals[0]["id"])
    return ids


def mix_paths(count: int, ids: dict[str, str], seed: int = SEED) -> list[bytes]:
    """`count` request paths drawn from the dashboard's read mix, the same for every case."""
    rng = random.Random(seed)
    kinds, weights = [k for k, _ in MIX], [w for _, w in MIX]
    paths = []
    for kind in rng.choices(kinds, weights=weights, k=count):
        symbol = rng.choice(SYMBOLS)
        path = {
            "quote": f"{API}/market-data/{symbol}",
            "historical 1y": f"{API}/market-data/{symbol}/historical?period=1y&interval=1d",
            "signals": f"{API}/signals/{symbol}",
            "insights": f"{API}/signals/{ids.get(symbol, symbol)}/insights",
            "opportunities": f"{API}/market/opportunities?limit=5",
        }[kind]
        paths.append(path.encode())
    return paths


# --- the servers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Servers:
    mock: str
    mock_pid: int
    candidate: str
    candidate_admin: str
    gateway: str
    gateway_pid: int
    gateway_admin: str
    admin_token: str


@contextlib.contextmanager
def _candidate(
    settings: OpsSettings, candidate: Candidate, console: Console, admin_port: int
) -> Iterator[services.StartResult]:
    if candidate == "mock":
        spec = services.mock_spec(
            settings,
            name="bench-gateway-candidate",
            port=services.free_port(),
            admin_port=admin_port,
        )
        with services.temporary_service(settings, spec, env=BACKEND_ENV) as started:
            yield started
        return
    # Production on a fresh database, as the backends benchmark builds it.
    from loadtests.bench import backends

    try:
        admin, redis_server = backends._admin_url(settings)
    except backends.BenchError as exc:
        raise BenchError(f"--candidate prod: {exc}") from None
    with (
        backends._redis_database(redis_server) as redis_url,
        backends._loaded_database(admin, redis_url, console) as database_url,
    ):
        spec = services.app_spec(
            settings,
            "bench-gateway-prod",
            "backend",
            services.free_port(),
            *("--workers", "1", "--admin-port", str(admin_port)),
        )
        env = {
            **BACKEND_ENV,
            **backends.COMMON_ENV,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": secrets.token_urlsafe(48),
        }
        with services.temporary_service(settings, spec, env=env) as started:
            yield started


@contextlib.contextmanager
def servers(settings: OpsSettings, candidate: Candidate, console: Console) -> Iterator[Servers]:
    """The mock, the candidate and a gateway (its state in a directory of its own)."""
    mock = services.mock_spec(
        settings, name="bench-gateway-mock", port=services.free_port(), admin_port=0
    )
    port, admin_port = services.free_port(), services.free_port()
    candidate_admin_port = services.free_port()  # the slow case sets its latency at run time
    token = secrets.token_urlsafe(24)
    with (
        tempfile.TemporaryDirectory(prefix="bench-gateway-") as var,
        services.temporary_service(settings, mock, env=BACKEND_ENV) as mock_started,
        _candidate(settings, candidate, console, candidate_admin_port) as candidate_started,
    ):
        mock_url, candidate_url = str(mock_started.record.url), str(candidate_started.record.url)
        candidate_admin = settings.url(candidate_admin_port)
        gateway = services.app_spec(
            settings,
            "bench-gateway",
            "ops.gateway",
            port,
            *("--admin-port", str(admin_port)),
            other_ports=(admin_port,),
        )
        env = {
            "MOCK_URL": mock_url,
            "PROD_URL": candidate_url,
            "ADMIN_TOKEN": token,
            "LOG_LEVEL": "WARNING",
            # Its own state file: the benchmark never touches the cutover's.
            "CUTOVER_VAR_DIR": var,
            "CUTOVER_ENV_FILE": str(Path(var) / "none.env"),
        }
        with services.temporary_service(settings, gateway, env=env) as gateway_started:
            yield Servers(
                mock=mock_url,
                mock_pid=mock_started.record.pid,
                candidate=candidate_url,
                candidate_admin=candidate_admin,
                gateway=str(gateway_started.record.url),
                gateway_pid=gateway_started.record.pid,
                gateway_admin=settings.url(admin_port),
                admin_token=token,
            )


def set_mode(run: Servers, mode: str) -> None:
    answer = httpx.put(
        f"{run.gateway_admin}/admin/mode",
        json={"mode": mode, "primary": "mock", "weight": 0},
        headers={"Authorization": f"Bearer {run.admin_token}"},
        timeout=10,
    )
    if answer.status_code != 200:
        raise BenchError(f"the gateway refused mode {mode}: {answer.status_code} {answer.text}")


def slow_candidate(run: Servers, latency_ms: int) -> None:
    answer = httpx.put(
        f"{run.candidate_admin}/admin/faults",
        json={"latency_ms": latency_ms},
        headers={"Authorization": f"Bearer {CANDIDATE_ADMIN_TOKEN}"},
        timeout=10,
    )
    if answer.status_code != 200:
        raise BenchError(f"the candidate refused a latency of {latency_ms} ms: {answer.text}")


def shadow_counts(run: Servers) -> dict[str, int]:
    answer = httpx.get(
        f"{run.gateway_admin}/admin/state",
        headers={"Authorization": f"Bearer {run.admin_token}"},
        timeout=10,
    )
    counts: dict[str, int] = answer.json()["counts"]["shadow"]
    return counts


def wait_drained(run: Servers, seconds: float = 15.0) -> None:
    """Until the differ's queue is empty, so its work lands in the window that caused it."""
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {run.admin_token}"}
    while time.monotonic() < deadline:
        answer = httpx.get(f"{run.gateway_admin}/admin/diffs", headers=headers, timeout=10)
        if answer.status_code != 200 or answer.json().get("queued", 0) == 0:
            time.sleep(0.3)  # copies taken off the queue may still be in flight
            return
        time.sleep(0.1)


# --- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    """One measured window; latencies in ms, CPU in ms per request."""

    name: str
    requests: int
    errors: int
    statuses: dict[str, int]
    achieved_rate: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    send_lag_p99_ms: float
    gateway_cpu_ms_per_request: float | None
    mock_cpu_ms_per_request: float
    client_cpu_ms_per_request: float
    client_cpu_share: float
    shadow: dict[str, int] | None = None


def _case(
    name: str,
    window: Window,
    gateway_cpu: float | None,
    mock_cpu: float,
    shadow: dict[str, int] | None = None,
) -> Case:
    latencies = np.asarray(window.latencies, dtype=np.float64) * 1000
    p50, p90, p95, p99 = np.percentile(latencies, [50, 90, 95, 99])
    count = int(latencies.size)
    return Case(
        name=name,
        requests=count,
        errors=count - window.statuses.get("200", 0),
        statuses=dict(window.statuses),
        achieved_rate=round(count / window.wall, 1),
        p50_ms=round(float(p50), 3),
        p90_ms=round(float(p90), 3),
        p95_ms=round(float(p95), 3),
        p99_ms=round(float(p99), 3),
        max_ms=round(float(latencies.max()), 3),
        send_lag_p99_ms=round(float(np.percentile(window.lags, 99)) * 1000, 3),
        gateway_cpu_ms_per_request=None
        if gateway_cpu is None
        else round(gateway_cpu / count * 1000, 3),
        mock_cpu_ms_per_request=round(mock_cpu / count * 1000, 3),
        client_cpu_ms_per_request=round(window.client_cpu / count * 1000, 3),
        client_cpu_share=round(window.client_cpu / window.wall, 3),
        shadow=shadow,
    )


@dataclass(slots=True)
class Tally:
    """One case's rounds added up."""

    window: Window = field(default_factory=Window)
    gateway_cpu: float | None = None
    mock_cpu: float = 0.0
    shadow: dict[str, int] | None = None

    def add(self, window: Window, gateway_cpu: float | None, mock_cpu: float) -> None:
        self.window.latencies += window.latencies
        self.window.lags += window.lags
        self.window.statuses.update(window.statuses)
        self.window.wall += window.wall
        self.window.client_cpu += window.client_cpu
        if gateway_cpu is not None:
            self.gateway_cpu = (self.gateway_cpu or 0.0) + gateway_cpu
        self.mock_cpu += mock_cpu

    def add_shadow(self, counts: dict[str, int]) -> None:
        so_far = self.shadow or {}
        self.shadow = {k: so_far.get(k, 0) + v for k, v in counts.items()}

    def case(self, name: str) -> Case:
        return _case(name, self.window, self.gateway_cpu, self.mock_cpu, self.shadow)


@dataclass(slots=True)
class BenchResult:
    benchmark: str
    at: str
    candidate: Candidate
    capacity_rps: float | None
    rate: float
    duration_s: float
    cases: list[Case]
    cpus: int | None = field(default_factory=os.cpu_count)
    python: str = field(default_factory=platform.python_version)

    def case(self, name: str) -> Case:
        return next(c for c in self.cases if c.name == name)

    def added(self, name: str) -> dict[str, float]:
        base, case = self.case(DIRECT), self.case(name)
        return {
            "p50_ms": round(case.p50_ms - base.p50_ms, 3),
            "p99_ms": round(case.p99_ms - base.p99_ms, 3),
        }

    @property
    def passed(self) -> bool:
        added = self.added(GATEWAY_DIRECT)
        errors = sum(c.errors for c in self.cases)
        return (
            errors == 0
            and added["p50_ms"] <= TARGET_ADDED_P50_MS
            and added["p99_ms"] <= TARGET_ADDED_P99_MS
        )

    def slow_ratio(self) -> float:
        """The primary's p95 with a candidate slowed by 2 s over its p95 with a healthy one."""
        healthy = self.case(GATEWAY_SHADOW).p95_ms
        return round(self.case(GATEWAY_SHADOW_SLOW).p95_ms / healthy, 3) if healthy else 0.0

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["added"] = {
            name: self.added(name) for name in (GATEWAY_DIRECT, GATEWAY_SHADOW, GATEWAY_SHADOW_SLOW)
        }
        document["slow_candidate"] = {
            "p95_ms_healthy_candidate": self.case(GATEWAY_SHADOW).p95_ms,
            "p95_ms_slow_candidate": self.case(GATEWAY_SHADOW_SLOW).p95_ms,
            "ratio": self.slow_ratio(),
            "target_ratio": TARGET_SLOW_P95_RATIO,
        }
        document["targets"] = {
            "direct_mode_added_p50_ms": TARGET_ADDED_P50_MS,
            "direct_mode_added_p99_ms": TARGET_ADDED_P99_MS,
        }
        document["passed"] = self.passed
        return document


async def capacity_of(url: str, ids: dict[str, str]) -> float:
    """The mock's requests/s on the read mix from back-to-back senders (after a warm-up)."""
    pool = Pool("127.0.0.1", _port(url), CAPACITY_CONNECTIONS)
    paths = mix_paths(2000, ids, seed=SEED + 1)
    try:
        await closed_loop(pool, paths, 1.0, CAPACITY_CONNECTIONS)
        return await closed_loop(pool, paths, CAPACITY_S, CAPACITY_CONNECTIONS)
    finally:
        pool.close()


async def measure(
    run: Servers, rate: float | None, duration: float, count: int | None, console: Console
) -> tuple[float | None, float, list[Case]]:
    """The capacity (unless `rate` is given), then the three cases at the chosen rate."""
    ids = signal_ids(run.mock)
    capacity = None
    if rate is None:
        capacity = await capacity_of(run.mock, ids)
        rate = max(1.0, float(round(capacity * RATE_SHARE)))
        console.print(
            f"  the mock's capacity on the read mix: {capacity:,.0f} req/s "
            f"({CAPACITY_CONNECTIONS} connections); measuring at {rate:,.0f} req/s"
        )
    paths = mix_paths(count or max(1, int(rate * duration)), ids)
    warmup = mix_paths(max(1, int(rate * WARMUP_S)), ids, seed=SEED + 2)
    cases = (
        (DIRECT, run.mock, None),
        (GATEWAY_DIRECT, run.gateway, "direct"),
        (GATEWAY_SHADOW, run.gateway, "shadow"),
        (GATEWAY_SHADOW_SLOW, run.gateway, "shadow-slow"),
    )
    pools = {name: Pool("127.0.0.1", _port(url), MAX_CONNECTIONS) for name, url, _ in cases}
    tallies = {name: Tally() for name, _, _ in cases}
    for name, _, mode in cases:
        if mode is not None:
            set_mode(run, "shadow" if mode == "shadow-slow" else mode)
        await open_loop(pools[name], warmup, rate)
    rounds = max(1, min(ROUNDS, len(paths)))
    console.print(
        f"  {len(paths)} requests per case at {rate:,.0f}/s, in {rounds} rounds of the three "
        "cases in turn …"
    )
    for index in range(rounds):
        part = paths[index * len(paths) // rounds : (index + 1) * len(paths) // rounds]
        for name, _, mode in cases:
            shadowing = mode in ("shadow", "shadow-slow")
            if mode is not None:
                set_mode(run, "shadow" if shadowing else mode)
            if shadowing:
                wait_drained(run)
                before = shadow_counts(run)
            if mode == "shadow-slow":
                slow_candidate(run, SLOW_CANDIDATE_MS)
            gateway_cpu, mock_cpu = cpu_seconds(run.gateway_pid), cpu_seconds(run.mock_pid)
            window = await open_loop(pools[name], part, rate)
            if mode == "shadow-slow":
                slow_candidate(run, 0)  # the copies still queued then go fast
            if shadowing:
                wait_drained(run)  # its copies' work belongs to this case
                after = shadow_counts(run)
                tallies[name].add_shadow({k: v - before.get(k, 0) for k, v in after.items()})
            gateway_used = cpu_seconds(run.gateway_pid) - gateway_cpu if mode else None
            tallies[name].add(window, gateway_used, cpu_seconds(run.mock_pid) - mock_cpu)
    for pool in pools.values():
        pool.close()
    set_mode(run, "direct")
    return capacity, rate, [tallies[name].case(name) for name, _, _ in cases]


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def run(
    settings: OpsSettings,
    console: Console,
    rate: float | None,
    duration: float,
    count: int | None,
    candidate: Candidate,
) -> BenchResult:
    with servers(settings, candidate, console) as started:
        console.print(
            f"  mock {started.mock}, candidate ({candidate}) {started.candidate}, "
            f"gateway {started.gateway}"
        )
        capacity, chosen, cases = uvloop.run(measure(started, rate, duration, count, console))
    return BenchResult(
        benchmark=NAME,
        at=now_iso(),
        candidate=candidate,
        capacity_rps=None if capacity is None else round(capacity, 1),
        rate=chosen,
        duration_s=round(cases[0].requests / chosen, 1),
        cases=cases,
    )


LABELS = {
    DIRECT: "mock",
    GATEWAY_DIRECT: "gateway direct",
    GATEWAY_SHADOW: "gateway shadow",
    GATEWAY_SHADOW_SLOW: "shadow, slow candidate",
}


def render(result: BenchResult) -> Table:
    capacity = f"capacity {result.capacity_rps:,.0f}/s, " if result.capacity_rps is not None else ""
    table = Table(
        title=(
            f"read mix at {result.rate:,.0f} req/s, open loop ({capacity}"
            f"{result.duration_s:g} s per case); ms, gateway CPU per request"
        )
    )
    table.add_column("case", no_wrap=True)
    for column in ("p50", "p90", "p99", "+p50", "+p99", "gw CPU", "errors"):
        table.add_column(column, justify="right", no_wrap=True)
    for case in result.cases:
        added = result.added(case.name) if case.name != DIRECT else None
        gateway_cpu = case.gateway_cpu_ms_per_request
        table.add_row(
            LABELS[case.name],
            f"{case.p50_ms:.2f}",
            f"{case.p90_ms:.2f}",
            f"{case.p99_ms:.2f}",
            f"{added['p50_ms']:+.2f}" if added else "",
            f"{added['p99_ms']:+.2f}" if added else "",
            "" if gateway_cpu is None else f"{gateway_cpu:.3f}",
            str(case.errors),
        )
    return table


def report_path(settings: OpsSettings) -> Path:
    return settings.reports_dir / f"bench-{NAME}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench.gateway",
        description="What the gateway adds to a request (direct and shadow mode), open loop.",
    )
    parser.add_argument("--rate", type=float, help="requests/s (default: half the capacity)")
    parser.add_argument(
        "--duration", type=float, default=DEFAULT_DURATION_S, help="seconds per case"
    )
    parser.add_argument("--count", type=int, help="requests per case (instead of --duration)")
    parser.add_argument(
        "--candidate",
        choices=("mock", "prod"),
        default="mock",
        help="shadow mode's candidate: a second mock, or prod on a fresh database (needs db)",
    )
    parser.add_argument("--url", help="not used: this benchmark starts its own servers")
    args = parser.parse_args(argv)
    if (args.rate is not None and args.rate <= 0) or args.duration <= 0:
        parser.error("--rate and --duration must be > 0")
    if args.count is not None and args.count < 1:
        parser.error("--count must be ≥ 1")
    console = Console(highlight=False)
    try:
        settings = load_settings()
    except SettingsError as exc:
        console.print(f"[red]✗[/] bad setting: {exc}")
        return 2
    try:
        result = run(settings, console, args.rate, args.duration, args.count, args.candidate)
    except (BenchError, services.PortBusyError) as exc:
        console.print(f"[red]✗[/] {exc}")
        return 2
    except services.ServiceError as exc:
        console.print(f"[red]✗[/] a server did not start: {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("[yellow]![/] interrupted")
        return 3
    console.print(render(result))
    console.print(f"shadow candidate: {result.candidate}")
    for case in result.cases:
        console.print(
            f"  {case.name}: {case.achieved_rate:,.0f} req/s reached; the mock's CPU "
            f"{case.mock_cpu_ms_per_request:.3f} ms/req; the load generator's "
            f"{case.client_cpu_ms_per_request:.3f} ms/req ({case.client_cpu_share:.0%} of a core, "
            f"send lag p99 {case.send_lag_p99_ms:.2f} ms)"
            + (f"; shadow copies {case.shadow}" if case.shadow else "")
        )
    added = result.added(GATEWAY_DIRECT)
    console.print(
        f"direct mode adds {added['p50_ms']:+.2f} ms at p50 (target ≤ {TARGET_ADDED_P50_MS:g}) "
        f"and {added['p99_ms']:+.2f} ms at p99 (target ≤ {TARGET_ADDED_P99_MS:g})"
    )
    ratio = result.slow_ratio()
    console.print(
        f"a candidate slowed by {SLOW_CANDIDATE_MS / 1000:g} s: the primary's p95 "
        f"{result.case(GATEWAY_SHADOW_SLOW).p95_ms:.2f} ms against "
        f"{result.case(GATEWAY_SHADOW).p95_ms:.2f} ms with a healthy one (× {ratio:.3f}; "
        f"target ≤ × {TARGET_SLOW_P95_RATIO:g})"
    )
    path = report_path(settings)
    write_atomic(path, (json.dumps(result.to_json(), indent=2) + "\n").encode())
    console.print(f"saved {path}")
    if not result.passed:
        console.print("[red]✗[/] a target was missed, or a request failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
