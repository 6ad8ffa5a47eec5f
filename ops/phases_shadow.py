"""`./start.sh shadow`: the gateway answers from the mock and copies reads to prod; the differ
compares them. With `--duration`, it generates the frontend's reads through the gateway and
judges the diff table: per route, the noise-adjusted diff rate ≤ threshold with at least
`--min-samples` compared requests (fewer is "not enough data", never a pass).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httpx
from rich.table import Table
from rich.text import Text

from ops import services
from ops.cli import (
    GateFailedError,
    PreconditionError,
    Run,
    _next,
    _shown,
    ensure_env_file,
    out,
)
from ops.gateway.routing import CLIENT_COOKIE
from ops.settings import read_env_file
from ops.state import CutoverState, gate_record, write_atomic

API = "/api/v1"
# The frontend's reads per dashboard minute (loadtests/locustfile.py), with the options read
# raised from 1/15 to 1 so that a short run compares enough of it to judge.
MIX: tuple[tuple[str, float], ...] = (
    ("quote", 14.0),
    ("history", 1.0),
    ("signals", 1.0),
    ("insights", 1.0),
    ("opportunities", 1.0),
    ("options", 1.0),
)
DRAIN_SECONDS = 15.0
USERS = 500
GATE_FIGURES = ("compared", "differing", "rate", "verdict")


@dataclass(frozen=True, slots=True)
class ShadowArgs:
    duration: str | None
    rate: float | None
    min_samples: int
    threshold: str


def parse_duration(text: str) -> float:
    """`60s`, `2m`, `90` → seconds; ValueError for anything else."""
    raw = text.strip().lower()
    scale = 60.0 if raw.endswith("m") else 1.0
    value = float(raw.rstrip("sm"))
    if not 0 < value * scale <= 24 * 3600:
        raise ValueError(text)
    return value * scale


def parse_threshold(text: str) -> float:
    """`1%` → 0.01; `0.01` → 0.01."""
    raw = text.strip()
    value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    if not 0 <= value <= 1:
        raise ValueError(text)
    return value


def _running(run: Run, name: str) -> services.PidRecord | None:
    record = services.read_pid_file(run.settings, name)
    return record if record is not None and services.is_running(record) else None


def _admin(run: Run) -> tuple[str, dict[str, str]]:
    # As the gateway sees it (ops.settings.child_environment): the process environment wins.
    token = {**read_env_file(run.settings.env_file), **os.environ}.get("ADMIN_TOKEN", "")
    return run.settings.url(run.settings.gateway_admin_port), {"Authorization": f"Bearer {token}"}


def _start_gateway(run: Run) -> services.PidRecord:
    settings = run.settings
    admin_port = settings.gateway_admin_port
    spec = services.app_spec(
        settings,
        "gateway",
        "ops.gateway",
        settings.gateway_port,
        "--admin-port",
        str(admin_port),
        other_ports=(admin_port,),
    )
    existing = _running(run, "gateway")
    if existing is not None:
        # A running gateway changes mode through its admin API (it persists the change).
        url, headers = _admin(run)
        answer = httpx.put(
            f"{url}/admin/mode",
            json={"mode": "shadow", "primary": "mock"},
            headers=headers,
            timeout=5.0,
        )
        if answer.status_code != 200:
            raise GateFailedError(
                f"the running gateway refused shadow mode: HTTP {answer.status_code}",
                "./start.sh logs gateway",
            )
        out.print(f"[green]✓[/] the gateway (pid {existing.pid}) switched to shadow mode")
        return existing

    def to_shadow(state: CutoverState) -> None:
        state.mode = "shadow"  # the gateway starts in the mode the state records

    run.update(to_shadow)
    try:
        result = services.start_service(settings, spec)
    except services.PortBusyError as exc:
        raise PreconditionError(str(exc), "./start.sh status; set GATEWAY_PORT in .env") from None
    except services.ServiceError as exc:
        raise GateFailedError(str(exc), "./start.sh logs gateway", summary=exc.summary) from None
    out.print(
        f"[green]✓[/] the gateway is up at {spec.url} in shadow mode (pid {result.record.pid}): "
        "the mock answers, prod gets a copy of every read"
    )
    return result.record


# --- traffic ----------------------------------------------------------------------------------


class Traffic:
    """Anonymous dashboard reads through the gateway at a fixed arrival rate, bounded in time."""

    def __init__(self, base: str, symbols: list[str], seed: int = 42) -> None:
        self.base = base
        self.symbols = symbols
        self.rng = random.Random(seed)
        self.sent = 0
        self.failed = 0

    def _paths(self) -> list[str]:
        symbol = urllib.parse.quote(self.rng.choice(self.symbols), safe="")
        kind = self.rng.choices([k for k, _ in MIX], weights=[w for _, w in MIX])[0]
        return {
            "quote": [f"{API}/market-data/{symbol}"],
            "history": [f"{API}/market-data/{symbol}/historical?period=1h&interval=5m"],
            "signals": [f"{API}/signals/{symbol}"],
            "insights": [f"{API}/signals/{symbol}", "insights"],
            "opportunities": [f"{API}/market/opportunities?limit=5"],
            "options": [f"{API}/signals/precise-options?symbol={symbol}"],
        }[kind]

    async def _one(self, client: httpx.AsyncClient) -> None:
        paths = self._paths()
        # Each simulated dashboard from its own address, as loadtests/locustfile.py does, so
        # the backends' per-address rate limit sees a crowd, not one client at the whole rate.
        user = self.rng.randrange(USERS)
        # and its own sticky cookie, so that a canary spreads the dashboards over the buckets.
        headers = {
            "X-Forwarded-For": f"10.77.{user >> 8}.{user & 255}",
            "Cookie": f"{CLIENT_COOKIE}=dashboard-{user}",
        }
        try:
            answer = await client.get(paths[0], headers=headers)
            self.sent += 1
            if paths[1:] and answer.status_code == 200:
                signals = answer.json().get("signals") or []
                if signals:
                    signal_id = urllib.parse.quote(str(signals[0]["id"]), safe="")
                    await client.get(f"{API}/signals/{signal_id}/insights", headers=headers)
                    self.sent += 1
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            self.failed += 1

    async def run(self, rate: float, seconds: float) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=self.base, timeout=10.0, limits=limits) as client:
            began = time.monotonic()
            tasks: set[asyncio.Task[None]] = set()
            for index in range(int(rate * seconds)):
                due = began + index / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(self._one(client))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks, timeout=15.0)


def _symbols(mock_url: str) -> list[str]:
    # Read from the mock directly: a read through the gateway would be one lone comparison.
    try:
        answer = httpx.get(f"{mock_url}{API}/symbols", timeout=5.0)
        return [str(s["symbol"]) for s in answer.json()["symbols"]] or ["SPY"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return ["SPY"]


def default_rate(min_samples: int, seconds: float) -> float:
    """Enough arrivals for the rarest route of the mix to reach `min_samples`, with margin."""
    total = sum(w for _, w in MIX)
    rarest = min(w for _, w in MIX) / total
    return float(max(10, math.ceil(min_samples * 1.5 / rarest / seconds)))


# --- the table --------------------------------------------------------------------------------


def render_table(routes: list[dict[str, Any]], threshold: float) -> Table:
    table = Table(title=f"shadow diffs (gate: ≤ {threshold:.2%} per route)", title_justify="left")
    for column in ("route", "compared", "differing", "noise fields", "rate", "verdict"):
        table.add_column(column, justify="right" if column in ("compared", "rate") else "left")
    styles = {"pass": "green", "fail": "red", "not enough data": "yellow"}
    for row in routes:
        table.add_row(
            row["route"],
            str(row["compared"]),
            f"{row['differing']} of {row['compared']}",
            ", ".join(row["noise_fields"]) or "-",
            f"{row['rate']:.2%}",
            Text(row["verdict"], style=styles.get(row["verdict"], "")),
        )
    return table


def _differing_fields(routes: list[dict[str, Any]]) -> list[str]:
    lines = []
    for row in routes:
        if row["differing"] == 0:
            continue
        noise = set(row["noise_fields"])
        fields = {p: k for p, k in row["fields"].items() if p not in noise}
        shown = ", ".join(
            f"{path} ({', '.join(f'{kind} {n}' for kind, n in kinds.items())})"
            for path, kinds in list(fields.items())[:6]
        )
        lines.append(f"  {row['route']}: {shown}")
    return lines


def _wait_drained(url: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/admin/diffs", headers=headers, timeout=5.0).json()["queued"] == 0:
                time.sleep(0.5)  # copies taken from the queue may still be in flight
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.2)


def shadow_phase(run: Run, args: ShadowArgs) -> str:
    """The body of `./start.sh shadow`."""
    try:
        seconds = parse_duration(args.duration) if args.duration else None
        threshold = parse_threshold(args.threshold)
    except ValueError as exc:
        raise PreconditionError(
            f"bad value {exc}: --duration like 60s or 2m, --threshold like 1% or 0.01"
        ) from None
    for line in ensure_env_file(run.settings):
        out.print(f"[green]✓[/] {line}")
    for name, provider in (("mock", "./start.sh simple"), ("prod", "./start.sh prod")):
        record = _running(run, name)
        health = services.check_health(record.health_url) if record and record.health_url else None
        if health is None or not health.ok:
            raise PreconditionError(
                f"shadow needs the {name} running and healthy; it is not", provider
            )
    record = _start_gateway(run)

    def change(state: CutoverState) -> None:
        state.phase = "shadow"
        state.processes["gateway"] = {
            "pid": record.pid,
            "port": record.port,
            "url": record.url,
            "started_at": record.started_at,
        }

    run.update(change)
    admin_url, headers = _admin(run)
    if seconds is None:
        out.print("  the gateway runs until stopped; the diffs grow with real traffic")
        out.print(
            f"  see them: curl -H 'Authorization: Bearer $ADMIN_TOKEN' {admin_url}/admin/diffs"
        )
        _next("./start.sh status", "./start.sh logs gateway", "./start.sh stop gateway")
        return f"gateway in shadow mode (pid {record.pid})"

    rate = args.rate or default_rate(args.min_samples, seconds)
    httpx.delete(f"{admin_url}/admin/diffs", headers=headers, timeout=5.0)
    mock_url = run.settings.url(run.settings.mock_port)
    traffic = Traffic(run.settings.url(run.settings.gateway_port), _symbols(mock_url))
    out.print(f"sending the frontend's reads through the gateway: {rate:g}/s for {seconds:g} s …")
    asyncio.run(traffic.run(rate, seconds))
    _wait_drained(admin_url, headers)
    answer = httpx.get(
        f"{admin_url}/admin/diffs",
        params={"min_samples": args.min_samples, "threshold": threshold},
        headers=headers,
        timeout=10.0,
    )
    document = answer.json()
    routes: list[dict[str, Any]] = document["routes"]
    out.print(render_table(routes, threshold))
    copies = document["copies"]
    out.print(
        f"  {traffic.sent} requests sent ({traffic.failed} failed); copies to prod: "
        f"{copies['sent']} compared, {copies['dropped']} dropped"
    )
    for line in _differing_fields(routes):
        out.print(line)
    run.settings.reports_dir.mkdir(parents=True, exist_ok=True)
    report = run.settings.reports_dir / "shadow-diffs.json"
    write_atomic(report, json.dumps(document, indent=2).encode() + b"\n")
    out.print(f"  the diff table with samples: {_shown(run.settings, report)}")
    failing = [r["route"] for r in routes if r["verdict"] == "fail"]
    thin = [r["route"] for r in routes if r["verdict"] == "not enough data"]
    passed = bool(routes) and not failing and not thin
    detail = (
        f"{len(routes)} routes under {threshold:.2%}"
        if passed
        else "; ".join(
            part
            for part in (
                f"over the threshold: {', '.join(failing)}" if failing else "",
                f"not enough data (< {args.min_samples}): {', '.join(thin)}" if thin else "",
                "no route compared" if not routes else "",
            )
            if part
        )
    )
    gate = gate_record(
        passed,
        detail,
        threshold=threshold,
        min_samples=args.min_samples,
        routes={
            r["route"]: {k: r[k] for k in ("compared", "differing", "rate", "verdict")}
            for r in routes
        },
    )
    run.update(lambda state: state.gates.__setitem__("shadow", gate))
    if not passed:
        raise GateFailedError(
            f"shadow gate failed: {detail}",
            "read the samples in the report; fix prod, or add a justified rule to "
            "ops/shadow-ignore.toml; then ./start.sh shadow --duration 60s again",
        )
    out.print(f"[green]✓[/] shadow gate passed: {detail}")
    _next("./start.sh loadtest --target gateway", "./start.sh status")
    return f"passed: {detail}"
