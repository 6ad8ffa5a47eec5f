"""`./start.sh demo [--embedded]`: the whole cutover, once, on this machine, with stage times.

setup → db → load-data → mock, prod, worker → gateway in shadow → contract → shadow gate →
load test through the gateway → canary → promote → rollback drill → report. Each stage is the
operator's own command run as a child (`python -m ops …`), so the demo proves the commands, not a
shortcut around them. The canary needs traffic to judge, so the demo sends the frontend's reads
through the gateway while it runs, from many simulated dashboards (each its own sticky cookie, so
they spread over the buckets). The rollback drill writes a watchlist before promotion and one
after, rolls back, and reads both back through the gateway from the rebuilt mock.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.table import Table
from rich.text import Text

from contract.identity import DEMO_EMAIL
from ops.cli import EXIT_DONE, EXIT_INTERRUPTED, out
from ops.phases_shadow import Traffic, _symbols
from ops.settings import OpsSettings, read_env_file
from ops.state import write_atomic

API = "/api/v1"
DRILL_LIST = "cutover-drill"
CANARY_RATE = 120.0


@dataclass(slots=True)
class Stage:
    name: str
    seconds: float = 0.0
    code: int | None = None
    detail: str = ""


@dataclass(slots=True)
class Demo:
    settings: OpsSettings
    embedded: bool
    stages: list[Stage] = field(default_factory=list)

    def command(self, name: str, *argv: str, env: dict[str, str] | None = None) -> bool:
        """Run `./start.sh ARGV` as a child; its output goes straight to the terminal."""
        stage = Stage(name)
        self.stages.append(stage)
        out.rule(f"[bold]{name}[/]: ./start.sh {' '.join(argv)}", align="left")
        began = time.monotonic()
        child_env = {**os.environ, **(env or {})}
        stage.code = subprocess.call(
            [sys.executable, "-m", "ops", *argv], cwd=self.settings.root, env=child_env
        )
        stage.seconds = time.monotonic() - began
        stage.detail = "passed" if stage.code == EXIT_DONE else f"exit {stage.code}"
        if stage.code == EXIT_INTERRUPTED:
            raise KeyboardInterrupt
        return stage.code == EXIT_DONE

    def step(self, name: str, body: Callable[[], str]) -> bool:
        """Run an in-process stage; an exception is its failure."""
        stage = Stage(name)
        self.stages.append(stage)
        out.rule(f"[bold]{name}[/]", align="left")
        began = time.monotonic()
        try:
            stage.detail = body()
            stage.code = EXIT_DONE
            out.print(f"[green]✓[/] {stage.detail}")
        except DrillError as exc:
            stage.code, stage.detail = 1, str(exc)
            out.print(f"[red]✗[/] {exc}")
        stage.seconds = time.monotonic() - began
        return stage.code == EXIT_DONE


class DrillError(Exception):
    """The rollback drill found a write missing."""


def _env(settings: OpsSettings) -> dict[str, str]:
    return {**read_env_file(settings.env_file), **os.environ}


def _login(base: str, settings: OpsSettings) -> str:
    password = _env(settings).get("DEMO_PASSWORD") or "demo-password-123"
    answer = httpx.post(
        f"{base}{API}/auth/login", json={"email": DEMO_EMAIL, "password": password}, timeout=10.0
    )
    if answer.status_code != 200:
        raise DrillError(f"the demo user's login through the gateway: HTTP {answer.status_code}")
    return str(answer.json()["access_token"])


def _put_list(base: str, token: str, name: str, symbols: list[str]) -> str:
    answer = httpx.put(
        f"{base}{API}/watchlists/{name}",
        json={"symbols": symbols},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10.0,
    )
    if answer.status_code not in (200, 201):
        raise DrillError(f"PUT watchlist {name}: HTTP {answer.status_code} {answer.text[:200]}")
    return str(answer.headers.get("x-gateway-upstream", "?"))


def _read_list(base: str, token: str, name: str) -> tuple[list[str], str]:
    answer = httpx.get(
        f"{base}{API}/watchlists/{name}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10.0,
    )
    if answer.status_code != 200:
        raise DrillError(f"watchlist {name} not readable after the rollback: {answer.status_code}")
    served = str(answer.headers.get("x-gateway-upstream", "?"))
    return list(answer.json().get("symbols", [])), served


class BackgroundTraffic:
    """The frontend's reads through the gateway from a thread, while a child command runs."""

    def __init__(self, settings: OpsSettings, rate: float) -> None:
        base = settings.url(settings.gateway_port)
        self.traffic = Traffic(base, _symbols(settings.url(settings.mock_port)))
        self.rate = rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            asyncio.run(self.traffic.run(self.rate, 5.0))

    def __enter__(self) -> BackgroundTraffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30.0)


def run_demo(settings: OpsSettings, embedded: bool) -> int:
    demo = Demo(settings, embedded)
    began = time.monotonic()
    install = os.environ.get("CUTOVER_INSTALL_SECONDS")
    if install:
        demo.stages.append(Stage("install (start.sh: venv + pinned deps)", float(install), 0))
    gateway = settings.url(settings.gateway_port)
    drill: dict[str, Any] = {}

    def before_promotion() -> str:
        token = _login(gateway, settings)
        drill["token"] = token
        served = _put_list(gateway, token, f"{DRILL_LIST}-before", ["SPY", "QQQ"])
        return f"watchlist {DRILL_LIST}-before written through the gateway (served by {served})"

    def after_promotion() -> str:
        served = _put_list(gateway, drill["token"], f"{DRILL_LIST}-after", ["AAPL", "MSFT"])
        return f"watchlist {DRILL_LIST}-after written through the gateway (served by {served})"

    def after_rollback() -> str:
        found = []
        for name, want in (("before", ["SPY", "QQQ"]), ("after", ["AAPL", "MSFT"])):
            symbols, served = _read_list(gateway, drill["token"], f"{DRILL_LIST}-{name}")
            if symbols != want or served != "mock":
                raise DrillError(f"{DRILL_LIST}-{name}: {symbols} from {served}, want {want}")
            found.append(f"{DRILL_LIST}-{name}")
        return f"both writes read back from the mock after the rollback: {', '.join(found)}"

    plan: list[Callable[[], bool]] = [
        lambda: demo.command("setup", "setup"),
        lambda: demo.command("db", "db", *(["--embedded"] if embedded else [])),
        lambda: demo.command("load-data", "load-data"),
        lambda: demo.command("mock", "simple"),
        lambda: demo.command("prod", "prod"),
        lambda: demo.command("worker", "worker"),
        lambda: demo.command("gateway (shadow)", "shadow"),
        lambda: demo.command(
            "contract", "contract", "--target", "both", "--examples", "2", "--read-only"
        ),
        lambda: demo.command("shadow gate", "shadow", "--duration", "20s"),
        lambda: demo.command(
            "load test", "loadtest", "--target", "gateway", "--duration", "15s", "--rate", "40"
        ),
        lambda: demo.step("drill: a write before promotion", before_promotion),
        lambda: _canary(demo),
        lambda: demo.command("promote", "promote"),
        lambda: demo.step("drill: a write after promotion", after_promotion),
        lambda: demo.command("rollback", "rollback"),
        lambda: demo.step("drill: every write after the rollback", after_rollback),
    ]
    passed = True
    try:
        for stage in plan:
            if not stage():
                passed = False
                break
    finally:
        demo.command("report", "report")
        total = time.monotonic() - began + (float(install) if install else 0.0)
        _summary(demo, total, passed)
    return EXIT_DONE if passed else 1


def _canary(demo: Demo) -> bool:
    settings = demo.settings
    with BackgroundTraffic(settings, CANARY_RATE):
        return demo.command(
            "canary",
            "canary",
            *("--steps", "5,25,50,100", "--hold", "6s", "--interval", "2s"),
            *("--min-samples", "5"),
        )


def _summary(demo: Demo, total: float, passed: bool) -> None:
    table = Table(title="demo: the time of each stage", title_justify="left")
    for column in ("stage", "seconds", "result"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for stage in demo.stages:
        ok = stage.code == EXIT_DONE
        table.add_row(
            stage.name,
            f"{stage.seconds:.1f}",
            Text(stage.detail or "-", style="green" if ok else "red"),
        )
    table.add_row(Text("total", style="bold"), f"{total:.1f}", "")
    out.print(table)
    document = {
        "passed": passed,
        "total_seconds": round(total, 2),
        "stages": [
            {"name": s.name, "seconds": round(s.seconds, 2), "code": s.code, "detail": s.detail}
            for s in demo.stages
        ],
    }
    path = demo.settings.reports_dir / "demo.json"
    write_atomic(path, json.dumps(document, indent=2).encode() + b"\n")
    verdict = "[green]PASS[/]" if passed else "[red]FAIL[/]"
    out.print(f"demo {verdict} in {total:.1f} s; stage times saved to {path.name}")
    out.print("the system is left running: ./start.sh status · ./start.sh stop")
