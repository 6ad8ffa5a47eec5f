"""The canary controller inside a real gateway, with two mocks behind it (one playing prod) and
faults switched on prod at run time through its admin API, under generated traffic."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ops.gateway.admin import GatewayMetrics
from ops.gateway.canary import CanaryController, CanarySettings
from ops.gateway.proxy import Gateway, GatewayConfig
from ops.gateway.routing import RouteTemplates, Routing, RoutingController
from tests.gateway.processes import AUTH, Backends, GatewayFactory, Proc, set_faults

ADDRESSES = itertools.count(1)
# The gates the tests do not aim at are set loose: the machine running them may be busy, and a
# busy machine's latency is not what these tests are about.
LOOSE = {"p95_ms": 5000, "diff_rate": 0.5}


@dataclass
class Seen:
    at: float
    status: int
    upstream: str


@dataclass
class Traffic:
    """Quote reads through the gateway at a fixed rate, each from a new client (a fresh sticky
    cookie, so clients spread over every bucket) and a new address (no rate limit trips)."""

    base: str
    rate: float
    seen: list[Seen] = field(default_factory=list)
    failed: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    async def _one(self, client: httpx.AsyncClient) -> None:
        n = next(ADDRESSES)
        headers = {
            "X-Forwarded-For": f"10.8.{(n >> 8) & 255}.{n & 255}",
            "Cookie": f"cutover_client={secrets.token_urlsafe(8)}",
        }
        try:
            answer = await client.get("/api/v1/market-data/SPY", headers=headers)
        except httpx.HTTPError:
            self.failed += 1
            return
        upstream = answer.headers.get("x-gateway-upstream", "?")
        self.seen.append(Seen(time.monotonic(), answer.status_code, upstream))

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=self.base, timeout=10, limits=limits) as client:
            tasks: set[asyncio.Task[None]] = set()
            began = time.monotonic()
            for index in itertools.count():
                if self._stop.is_set():
                    break
                delay = began + index / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(self._one(client))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks, timeout=10)

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)


def start_canary(gateway: Proc, **settings: Any) -> dict[str, Any]:
    answer = httpx.post(f"{gateway.admin}/admin/canary", json=settings, headers=AUTH, timeout=10)
    assert answer.status_code == 201, answer.text
    document: dict[str, Any] = answer.json()
    return document


def canary(gateway: Proc) -> dict[str, Any]:
    answer = httpx.get(f"{gateway.admin}/admin/canary", headers=AUTH, timeout=5)
    answer.raise_for_status()
    document: dict[str, Any] = answer.json()
    return document


def wait_for(
    gateway: Proc, ready: Callable[[dict[str, Any]], bool], seconds: float
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        document = canary(gateway)
        if ready(document):
            return document
        assert time.monotonic() < deadline, json.dumps(document, indent=1)[-3000:]
        time.sleep(0.05)


def passed_once(document: dict[str, Any]) -> bool:
    return any(i["verdict"] == "pass" for i in document["intervals"])


@pytest.fixture
def gateway(backends: Backends, start_gateway: GatewayFactory) -> Proc:
    return start_gateway(backends.mock.url, backends.prod.url)


def test_steps_advance_while_prod_passes_and_reads_are_compared(
    gateway: Proc, tmp_path: Path
) -> None:
    weights: list[int] = []

    def note(document: dict[str, Any]) -> bool:
        if not weights or weights[-1] != document["routing"]["weight"]:
            weights.append(document["routing"]["weight"])
        return bool(document["status"] == "done")

    with Traffic(gateway.url, rate=30) as traffic:
        start_canary(
            gateway, steps=[25, 50, 100], hold_s=1, interval_s=1, min_samples=3, p95_ms=5000
        )
        done = wait_for(gateway, note, 40)
        time.sleep(0.5)
    assert weights[-3:] == [25, 50, 100]
    assert done["routing"] == {"mode": "canary", "weight": 100}
    verdicts = {i["verdict"] for i in done["intervals"]}
    assert verdicts <= {"pass", "no-data"}, done["intervals"]
    assert {i["weight"] for i in done["intervals"] if i["verdict"] == "pass"} == {25, 50, 100}
    # A sample of prod's reads went to the mock too, and two mocks agree once noise is known.
    compared = [i for i in done["intervals"] if i["compared"]]
    assert compared
    assert all(i["diff_rate"] <= 0.01 for i in compared), compared
    # At 100 % every new client is on prod.
    last = [s for s in traffic.seen if s.at > traffic.seen[-1].at - 0.3]
    assert {s.upstream for s in last} == {"prod"}
    # start_gateway keeps the gateway's var dir in tmp_path.
    state = json.loads((tmp_path / "var" / "state.json").read_text())
    assert (state["mode"], state["weight"]) == ("canary", 100)
    assert state["canary"]["status"] == "done"
    assert state["gates"]["canary"]["passed"] is True
    # The finished canary left nothing behind that would hold the gateway's shutdown up.
    began = time.monotonic()
    gateway.stop()
    assert gateway.process.returncode == 0
    assert time.monotonic() - began < 5


def test_prod_failing_at_run_time_rolls_back_within_two_intervals(
    backends: Backends, gateway: Proc
) -> None:
    # Weight 100, 2-s intervals: each interval's ~80 answers from prod show a 5 % error rate
    # (at 5 % weight it would take 20 times the traffic to see the same).
    interval = 2.0
    with Traffic(gateway.url, rate=40) as traffic:
        start_canary(gateway, steps=[100], hold_s=60, interval_s=interval, min_samples=20, **LOOSE)
        wait_for(gateway, passed_once, 15)
        set_faults(backends.prod, error_rate=0.05)
        switched = time.monotonic()
        rolled = wait_for(gateway, lambda d: d["status"] == "rolled_back", 15)
        took = time.monotonic() - switched
        time.sleep(2)
    # The interval under way when the fault began counts only in part: two full ones after it.
    assert took <= 3 * interval + 1.0, took
    assert rolled["routing"] == {"mode": "canary", "weight": 0}
    assert "success rate" in rolled["reason"]
    assert [i["verdict"] for i in rolled["intervals"]][-2:] == ["breach", "breach"]
    # Until the rollback, clients on prod saw its injected 500s (that is what is measured); the
    # mock never failed, and after the rollback no client sees a 5xx: all are on the mock.
    errors = [s for s in traffic.seen if s.status >= 500]
    assert errors
    assert {s.upstream for s in errors} == {"prod"}
    after = [s for s in traffic.seen if s.at > switched + took + 0.5]
    assert len(after) > 20
    assert {s.upstream for s in after} == {"mock"}
    assert all(s.status == 200 for s in after)
    assert traffic.failed == 0


def test_prod_slowed_rolls_back_on_the_p95_gate(backends: Backends, gateway: Proc) -> None:
    interval = 1.0
    with Traffic(gateway.url, rate=30) as traffic:
        start_canary(
            gateway, steps=[100], hold_s=60, interval_s=interval, min_samples=10, p95_ms=250
        )
        wait_for(gateway, passed_once, 15)
        set_faults(backends.prod, latency_ms=300)
        switched = time.monotonic()
        rolled = wait_for(gateway, lambda d: d["status"] == "rolled_back", 15)
        took = time.monotonic() - switched
    assert took <= 3 * interval + 1.5, took
    assert rolled["routing"]["weight"] == 0
    assert "p95" in rolled["reason"]
    assert "success rate" not in rolled["reason"]
    slow = rolled["intervals"][-1]
    assert slow["p95_ms"] >= 300
    assert all(s.status == 200 for s in traffic.seen)  # slow, never failing


def test_prod_refusing_connections_rolls_back_at_once(backends: Backends, gateway: Proc) -> None:
    interval = 1.0
    try:
        with Traffic(gateway.url, rate=20) as traffic:
            start_canary(
                gateway, steps=[50], hold_s=60, interval_s=interval, min_samples=3, **LOOSE
            )
            wait_for(gateway, passed_once, 15)
            set_faults(backends.prod, refuse=True)
            switched = time.monotonic()
            rolled = wait_for(gateway, lambda d: d["status"] == "rolled_back", 10)
            took = time.monotonic() - switched
            time.sleep(1)
    finally:
        set_faults(backends.prod, refuse=False)
    # Without waiting for the interval's end, let alone a second one.
    assert took < interval + 1.0, took
    assert rolled["routing"]["weight"] == 0
    assert "prod does not answer its health check" in rolled["reason"]
    # Reads whose connection to prod failed were retried on the mock: no client saw a failure.
    assert traffic.seen
    assert all(s.status == 200 for s in traffic.seen)
    assert traffic.failed == 0


def test_no_data_pauses_the_canary_and_never_passes(gateway: Proc) -> None:
    start_canary(gateway, steps=[50, 100], hold_s=1, interval_s=0.5, min_samples=5, **LOOSE)
    time.sleep(2.5)
    paused = canary(gateway)
    assert paused["status"] == "paused"
    assert "no data" in paused["reason"]
    assert (paused["step"], paused["routing"]["weight"], paused["held_s"]) == (0, 50, 0)
    assert len(paused["intervals"]) >= 3
    assert {i["verdict"] for i in paused["intervals"]} == {"no-data"}
    # Traffic lifts the pause: the hold then counts and the canary goes on.
    with Traffic(gateway.url, rate=30):
        done = wait_for(gateway, lambda d: d["status"] == "done", 30)
    assert done["routing"]["weight"] == 100


def test_dry_run_steps_on_schedule_and_never_acts_on_a_breach(
    backends: Backends, gateway: Proc
) -> None:
    set_faults(backends.prod, error_rate=1.0)
    weights: list[int] = []

    def note(document: dict[str, Any]) -> bool:
        if not weights or weights[-1] != document["routing"]["weight"]:
            weights.append(document["routing"]["weight"])
        return bool(document["status"] == "done")

    with Traffic(gateway.url, rate=20):
        start_canary(
            gateway, steps=[25, 50, 100], hold_s=1, interval_s=0.5, min_samples=1, dry_run=True
        )
        done = wait_for(gateway, note, 30)
    assert weights[-3:] == [25, 50, 100]
    assert 0 not in weights[weights.index(25) :]
    verdicts = [i["verdict"] for i in done["intervals"]]
    assert "dry-run-breach" in verdicts
    assert "breach" not in verdicts
    assert any("success rate" in r for i in done["intervals"] for r in i["reasons"])


def test_a_gateway_killed_mid_canary_resumes_at_the_recorded_step(
    backends: Backends, start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    first = start_gateway(backends.mock.url, backends.prod.url)
    with Traffic(first.url, rate=30):
        start_canary(first, steps=[30, 60, 100], hold_s=3, interval_s=0.5, min_samples=2, **LOOSE)
        wait_for(first, lambda d: d["step"] == 1 and d["routing"]["weight"] == 60, 30)
        first.process.kill()  # SIGKILL: nothing is saved on the way out
        first.process.wait()
    recorded = json.loads((tmp_path / "var" / "state.json").read_text())
    assert (recorded["mode"], recorded["weight"]) == ("canary", 60)
    assert (recorded["canary"]["status"], recorded["canary"]["step"]) == ("running", 1)
    before = len(recorded["canary"]["intervals"])

    second = start_gateway(backends.mock.url, backends.prod.url)
    resumed = canary(second)
    assert resumed["status"] in ("running", "paused")
    assert (resumed["step"], resumed["routing"]) == (1, {"mode": "canary", "weight": 60})
    with Traffic(second.url, rate=30):
        done = wait_for(second, lambda d: d["status"] == "done", 30)
    after = done["intervals"][before:]
    assert {i["weight"] for i in after} <= {60, 100}  # the first step is not run again
    assert done["routing"]["weight"] == 100


def test_bad_settings_are_refused_naming_the_field(gateway: Proc) -> None:
    cases = [
        ({"steps": [50, 20]}, "steps", "rise strictly"),
        ({"steps": [0, 50]}, "steps", ">= 1"),
        ({"steps": [50, 101]}, "steps", "<= 100"),
        ({"interval_s": 0}, "interval_s", ">= 0.2"),
        ({"success_rate": 99.9}, "success_rate", "<= 1"),
        ({"weight": 5}, "weight", "unknown"),
    ]
    for body, key, accepted in cases:
        answer = httpx.post(f"{gateway.admin}/admin/canary", json=body, headers=AUTH, timeout=5)
        assert answer.status_code == 400, (body, answer.text)
        assert key in answer.text, answer.text
        assert accepted in answer.text, answer.text
    assert canary(gateway)["status"] == "idle"
    for action in ("abort", "resume"):
        answer = httpx.post(f"{gateway.admin}/admin/canary/{action}", headers=AUTH, timeout=5)
        assert answer.status_code == 409
        assert "idle" in answer.json()["detail"]


def test_a_step_waits_while_a_routing_guard_objects(backends: Backends) -> None:
    """In process: a guard standing for a non-empty outbox holds the next step back."""
    outbox = ["a write not mirrored yet"]

    def guard(before: Routing, after: Routing) -> str | None:
        more = after.mode == "canary" and after.weight > before.weight
        return f"{len(outbox)} writes pending" if outbox and more else None

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        controller = RoutingController(None)
        controller.set("canary", "mock", 25)
        controller.add_guard(guard)
        upstreams = {"mock": backends.mock.url, "prod": backends.prod.url}
        gateway = Gateway(
            GatewayConfig(upstreams), controller, RouteTemplates([]), GatewayMetrics()
        )
        canary = CanaryController(gateway, None)
        try:
            settings = CanarySettings(steps=[25, 50], hold_s=0.4, interval_s=0.2, dry_run=True)
            await canary.begin(settings)
            await asyncio.sleep(1.5)
            held = canary.document()
            outbox.clear()
            for _ in range(50):
                await asyncio.sleep(0.1)
                if canary.status == "done":
                    break
            return held, canary.document()
        finally:
            await canary.stop()
            await gateway.aclose()

    held, done = asyncio.run(scenario())
    assert held["step"] == 1
    assert held["routing"]["weight"] == 25
    assert held["waiting"] == "waiting for the outbox: 1 writes pending"
    assert done["status"] == "done"
    assert (done["routing"]["weight"], done["waiting"]) == (50, "")
