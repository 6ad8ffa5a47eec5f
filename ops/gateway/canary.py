"""The canary controller: runs inside the gateway and moves clients to prod step by step, each
step held only while prod's share of the traffic passes its gates.

Each interval it judges prod's share from the gateway's own measurements (ops/gateway/window.py):
success rate (non-5xx, refused connections counted as failures), p95 latency, and the diff rate
of a mirrored sample of prod's reads (also sent to the mock and compared by a Differ of its own,
so the shadow run's diff table stays as it was). An interval with fewer than `min_samples` of
prod's answers is "no-data": the canary pauses there (the step's hold does not advance) and goes
on when traffic returns; it never passes on no data. A breach on `breaches` consecutive
intervals sets the weight to 0 at once; prod not answering (refused connections or a failed
health check, confirmed by a second probe) does so without waiting for the interval to end.

The hold counts passed intervals: a step moves on after `hold_s` of them. `dry_run` judges and
records ("dry-run-breach") but never acts on a verdict: the steps advance on schedule (so the
console can show the weight moving with gates that never act), no-data never pauses and nothing
rolls back. A step that a routing guard refuses (the outbox still holds writes) waits, recorded
as such, and is retried.

Every change is persisted in `CutoverState.canary`, so a lost terminal changes nothing and a
restarted gateway resumes a running or paused canary at its recorded step and weight; the hold
of that step restarts from zero (the time already held before the restart is not counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import msgspec
from litestar import get, post
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import Parameter
from litestar.types import ControllerRouterHandler

from ops.gateway.differ import Differ
from ops.gateway.routing import Routing, RoutingBlocked
from ops.gateway.window import Drained
from ops.state import CutoverState, StateStore, gate_record, now_iso

if TYPE_CHECKING:
    from ops.gateway.proxy import Gateway

log = logging.getLogger("ops.gateway.canary")

ACTIVE = ("running", "paused")
MAX_INTERVALS = 1000
# Fewer compared reads than this in an interval: the diff rate is recorded but not judged.
MIN_COMPARED = 20
HEALTH = "/api/v1/health"
PROBE_TIMEOUT = 2.0
PROBE_CONFIRM_AFTER = 0.2


class CanarySettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /admin/canary: how the canary steps and what each interval must show."""

    steps: Annotated[
        list[Annotated[int, msgspec.Meta(ge=1, le=100)]], msgspec.Meta(min_length=1, max_length=20)
    ] = msgspec.field(default_factory=lambda: [5, 25, 50, 100])
    hold_s: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 60.0
    interval_s: Annotated[float, msgspec.Meta(ge=0.2, le=3_600)] = 10.0
    min_samples: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 200
    breaches: Annotated[int, msgspec.Meta(ge=1, le=100)] = 2
    p95_ms: Annotated[float, msgspec.Meta(gt=0, le=600_000)] = 100.0
    success_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.999
    diff_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.01
    # Share of prod's reads also sent to the mock for the diff gate.
    mirror_share: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5
    dry_run: bool = False

    def problems(self) -> list[dict[str, str]]:
        """What the constraints above cannot say: the steps must rise strictly."""
        if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
            return [
                {
                    "key": "steps",
                    "message": f"{self.steps}: weights in % must rise strictly, "
                    "each 1..100 (e.g. 5,25,50,100)",
                }
            ]
        return []


class CanaryConflict(HTTPException):
    """The canary cannot do that in its present status (409), or prod cannot take it (503)."""

    status_code = 409


def p95(seconds: list[float]) -> float:
    """The 95th percentile (nearest rank) of a non-empty list."""
    ordered = sorted(seconds)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def figures(drained: Drained) -> dict[str, Any]:
    """Samples, success rate and p95 of one upstream's interval; refused connections count."""
    total = len(drained.statuses) + drained.connect_failures
    ok = sum(1 for status in drained.statuses if status < 500)
    return {
        "samples": total,
        "success_rate": round(ok / total, 5) if total else None,
        "p95_ms": round(p95(drained.seconds) * 1000, 2) if drained.seconds else None,
    }


def diff_totals(differ: Differ) -> tuple[int, int]:
    """(compared, differing) over every route, noise subtracted."""
    stats = list(differ.routes.values())
    return sum(s.compared for s in stats), sum(s.differing() for s in stats)


def analyse(
    settings: CanarySettings,
    prod: Drained,
    mock: Drained,
    compared: int,
    differing: int,
    weight: int,
    step: int,
) -> dict[str, Any]:
    """One interval's verdict on prod's share: pass, breach, no-data or dry-run-breach."""
    measured = figures(prod)
    diff = round(differing / compared, 5) if compared else None
    reasons: list[str] = []
    verdict = "pass"
    if measured["samples"] < settings.min_samples:
        verdict = "no-data"
        reasons.append(f"no data: {measured['samples']} of {settings.min_samples} samples")
    else:
        if measured["success_rate"] < settings.success_rate:
            refused = (
                f", {prod.connect_failures} connections refused" if prod.connect_failures else ""
            )
            reasons.append(
                f"success rate {measured['success_rate']:.2%} < {settings.success_rate:.2%}"
                f"{refused}"
            )
        if measured["p95_ms"] is not None and measured["p95_ms"] > settings.p95_ms:
            reasons.append(f"p95 {measured['p95_ms']:.0f} ms > {settings.p95_ms:g} ms")
        if diff is not None and compared >= MIN_COMPARED and diff > settings.diff_rate:
            reasons.append(
                f"diff rate {diff:.2%} > {settings.diff_rate:.2%} ({differing} of {compared})"
            )
        if reasons:
            verdict = "dry-run-breach" if settings.dry_run else "breach"
    return {
        "at": now_iso(),
        "step": step,
        "weight": weight,
        **measured,
        "diff_rate": diff,
        "compared": compared,
        "connect_failures": prod.connect_failures,
        "mock": figures(mock),
        "verdict": verdict,
        "reasons": reasons,
    }


class CanaryController:
    """Drives the routing weight in a task of the gateway's event loop; see the module doc."""

    def __init__(self, gateway: Gateway, store: StateStore | None) -> None:
        self.gateway = gateway
        self.store = store
        self.record: dict[str, Any] = dict(store.load().canary) if store is not None else {}
        self._task: asyncio.Task[None] | None = None
        self._own_change = False
        self._prober: httpx.AsyncClient | None = None
        gateway.controller.listen(self._on_routing)

    # --- reading --------------------------------------------------------------------------

    @property
    def status(self) -> str:
        return str(self.record.get("status", "idle"))

    def settings(self) -> CanarySettings:
        return msgspec.convert(self.record.get("settings", {}), CanarySettings)

    def document(self, intervals: int = MAX_INTERVALS) -> dict[str, Any]:
        """What GET /admin/canary answers: the record, with its last `intervals` analyses."""
        kept = self.record.get("intervals", [])
        return {
            **self.record,
            "status": self.status,
            "routing": {
                "mode": self.gateway.controller.routing.mode,
                "weight": self.gateway.controller.routing.weight,
            },
            "intervals": kept[len(kept) - intervals :] if intervals else [],
        }

    # --- the operator's actions -----------------------------------------------------------

    async def begin(self, settings: CanarySettings) -> dict[str, Any]:
        """Start a new canary (refused while one is running or paused)."""
        if self.status in ACTIVE:
            raise CanaryConflict(
                f"a canary is already {self.status} at step {self.record.get('step', 0) + 1} "
                f"(weight {self.record.get('weight')} %): follow it, or ./start.sh abort it first"
            )
        problem = await self._probe()
        if problem is not None:
            raise CanaryConflict(f"canary not started: {problem}", status_code=503)
        now = now_iso()
        self.record = {
            "status": "running",
            "steps": list(settings.steps),
            "step": 0,
            "weight": self.gateway.controller.routing.weight,
            "settings": msgspec.to_builtins(settings),
            "reason": "",
            "waiting": "",
            "held_s": 0.0,
            "consecutive_breaches": 0,
            "started_at": now,
            "step_started_at": None,
            "updated_at": now,
            "intervals": [],
        }
        self._persist()
        self._launch()
        log.info("canary started: steps %s, dry run %s", settings.steps, settings.dry_run)
        return self.document()

    async def abort(self) -> dict[str, Any]:
        """Weight 0 and status `aborted`; nothing else changes. Again on an aborted one: a no-op."""
        if self.status == "aborted":
            return self.document()
        if self.status not in ACTIVE:
            raise CanaryConflict(
                f"no canary is running (status {self.status}); to send every client back to "
                "the mock use ./start.sh rollback"
            )
        await self._cancel()
        self._set_weight(0, force=True)
        self._end("aborted", "aborted by the operator")
        return self.document()

    async def resume(self) -> dict[str, Any]:
        """Continue an aborted or paused canary from its recorded step."""
        if self.status not in ("aborted", "paused"):
            raise CanaryConflict(
                f"only an aborted or paused canary can be resumed; this one is {self.status}"
                + ("" if self.status in ACTIVE else ": start a new one with ./start.sh canary")
            )
        if self.status == "paused" and self._task is not None and not self._task.done():
            self._update(status="running", reason="resumed by the operator")
            return self.document()
        problem = await self._probe()
        if problem is not None:
            raise CanaryConflict(f"canary not resumed: {problem}", status_code=503)
        self._update(status="running", reason="", waiting="", consecutive_breaches=0, held_s=0.0)
        self._launch()
        return self.document()

    async def end_by_operator(self, status: str, reason: str) -> None:
        """Promote and rollback (ops/gateway/actions.py) end a running canary through this."""
        if self.status in ACTIVE:
            await self._cancel()
            self._end(status, reason)

    def start(self) -> None:
        """At the gateway's start: resume a canary the state records as running or paused."""
        if self.status in ACTIVE:
            log.info(
                "resuming the canary at step %d (weight %s %%); the step's hold starts again",
                self.record.get("step", 0) + 1,
                self.record.get("weight"),
            )
            self._update(held_s=0.0, waiting="")
            self._launch()

    async def stop(self) -> None:
        """At the gateway's end: stop the task, leaving the record as it is for the restart."""
        await self._cancel()
        if self._prober is not None:
            await self._prober.aclose()

    # --- the task -------------------------------------------------------------------------

    def _launch(self) -> None:
        self._task = asyncio.create_task(self._run(), name="canary")

    async def _cancel(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        settings = self.settings()
        gateway = self.gateway
        differ = Differ(gateway.differ.rules, gateway.forward, gateway.metrics)
        differ.start()
        gateway.window.clear()
        gateway.window.active = True
        gateway.canary_differ, gateway.canary_mirror_share = differ, settings.mirror_share
        try:
            await self._drive(settings, differ)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken controller must not leave clients on prod unwatched
            log.exception("canary controller failed")
            self._set_weight(0, force=True)
            self._end("rolled_back", f"the canary controller failed: {type(exc).__name__}: {exc}")
        finally:
            # A canary begun since this one was cancelled owns the window and the mirror now.
            if gateway.canary_differ is differ:
                gateway.window.active = False
                gateway.window.clear()
                gateway.canary_differ, gateway.canary_mirror_share = None, 0.0
            await differ.stop()

    async def _drive(self, settings: CanarySettings, differ: Differ) -> None:
        steps: list[int] = self.record["steps"]
        routing = self.gateway.controller.routing
        applied = routing == Routing("canary", "mock", steps[self.record["step"]])
        tick = min(0.25, settings.interval_s / 4)
        probe_every = min(1.0, settings.interval_s / 2)
        window = self.gateway.window
        interval_began = last_probe = time.monotonic()
        marks = diff_totals(differ)
        failures_seen = 0
        down: str | None = None
        while True:
            if not applied:
                applied = self._apply(steps[self.record["step"]])
                if applied:
                    window.clear()
                    interval_began, marks, failures_seen = time.monotonic(), diff_totals(differ), 0
            await asyncio.sleep(tick)
            failures = window.connect_failures("prod")
            if failures > failures_seen or time.monotonic() - last_probe >= probe_every:
                failures_seen, last_probe = failures, time.monotonic()
                down = await self._prod_down()
                if down is not None and not settings.dry_run:
                    self._roll_back([down], window.drain("prod"), window.drain("mock"))
                    return
            elapsed = time.monotonic() - interval_began
            if elapsed < settings.interval_s:
                continue
            totals = diff_totals(differ)
            entry = analyse(
                settings,
                window.drain("prod"),
                window.drain("mock"),
                totals[0] - marks[0],
                max(0, totals[1] - marks[1]),
                self.gateway.controller.routing.weight,
                self.record["step"],
            )
            if down is not None:
                entry["reasons"].append(down)  # dry run: noted, never acted on
                down = None
            interval_began, marks, failures_seen = time.monotonic(), totals, 0
            if self._judge(settings, entry, elapsed if applied else 0.0):
                return
            if applied and self.record["held_s"] >= settings.hold_s - 1e-6:
                if self.record["step"] == len(steps) - 1:
                    self._end("done", f"held {steps[-1]} % for {settings.hold_s:g} s")
                    return
                self._update(step=self.record["step"] + 1, held_s=0.0)
                applied = False

    def _judge(self, settings: CanarySettings, entry: dict[str, Any], elapsed: float) -> bool:
        """Record an interval and act on it; True when the canary ended (rolled back)."""
        verdict = entry["verdict"]
        held = float(self.record["held_s"])
        breaches = int(self.record["consecutive_breaches"])
        status, reason = "running", ""
        if settings.dry_run:
            held += elapsed
        elif verdict == "pass":
            held, breaches = held + elapsed, 0
        elif verdict == "no-data":
            status, reason = "paused", f"paused, {entry['reasons'][0]}"
        elif verdict == "breach":
            breaches += 1
            reason = f"breach {breaches} of {settings.breaches}: " + "; ".join(entry["reasons"])
        intervals = [*self.record.get("intervals", []), entry][-MAX_INTERVALS:]
        self._update(
            intervals=intervals,
            held_s=round(held, 3),
            consecutive_breaches=breaches,
            status=status,
            reason=reason,
        )
        if verdict == "breach" and breaches >= settings.breaches:
            self._roll_back(entry["reasons"], None, None)
            return True
        return False

    def _roll_back(self, reasons: list[str], prod: Drained | None, mock: Drained | None) -> None:
        """Weight 0 at once (no guard may stop it), status rolled_back with why."""
        self._set_weight(0, force=True)
        if prod is not None and mock is not None:
            # Prod stopped answering mid-interval: what the interval had so far, for the record.
            entry = analyse(
                self.settings(), prod, mock, 0, 0, self.record["weight"], self.record["step"]
            )
            entry["verdict"] = "breach"
            entry["reasons"] = [*reasons, *entry["reasons"]]
            self.record["intervals"] = [*self.record.get("intervals", []), entry][-MAX_INTERVALS:]
        self._end("rolled_back", "; ".join(reasons))
        log.warning("canary rolled back: %s", "; ".join(reasons))

    def _apply(self, weight: int) -> bool:
        """Set a step's weight; False (and recorded) while a guard refuses it."""
        try:
            self._set_weight(weight)
        except RoutingBlocked as exc:
            waiting = f"waiting for the outbox: {exc}"
            if self.record.get("waiting") != waiting:
                self._update(waiting=waiting)
            return False
        self._update(waiting="", step_started_at=now_iso(), held_s=0.0)
        return True

    # --- prod's health ----------------------------------------------------------------------

    async def _probe(self) -> str | None:
        """None when prod answers its health check below 500; else why not.

        On a new connection each time: the proxy's pooled keep-alive connections can go on
        working for a while after prod stopped accepting new ones.
        """
        if self._prober is None:
            self._prober = httpx.AsyncClient(
                base_url=self.gateway.config.upstreams["prod"],
                timeout=PROBE_TIMEOUT,
                limits=httpx.Limits(max_keepalive_connections=0),
            )
        try:
            answer = await self._prober.get(HEALTH, headers={"accept": "application/json"})
        except httpx.HTTPError as exc:
            return f"prod does not answer its health check ({type(exc).__name__})"
        if answer.status_code >= 500:
            return f"prod's health check answers HTTP {answer.status_code}"
        return None

    async def _prod_down(self) -> str | None:
        """Why prod is down, confirmed by a second probe; None when it answers."""
        if await self._probe() is None:
            return None
        await asyncio.sleep(PROBE_CONFIRM_AFTER)
        return await self._probe()

    # --- the record -------------------------------------------------------------------------

    def _set_weight(self, weight: int, *, force: bool = False) -> None:
        self._own_change = True
        try:
            self.gateway.controller.set("canary", "mock", weight, force=force)
        finally:
            self._own_change = False
        self.record["weight"] = weight

    def _on_routing(self, _before: Routing, after: Routing) -> None:
        """Someone else changed the routing during a canary: it ends, saying so."""
        if self._own_change or self.status not in ACTIVE:
            return
        if self._task is not None:
            self._task.cancel()
            self._task = None
        status = "promoted" if after.mode == "direct" and after.primary == "prod" else "aborted"
        self.record["weight"] = after.weight if after.mode == "canary" else None
        self._end(
            status,
            f"the routing was changed outside the canary: mode {after.mode}, "
            f"primary {after.primary}, weight {after.weight}",
        )

    def _update(self, **changes: Any) -> None:
        self.record.update(changes)
        self._persist()

    def _end(self, status: str, reason: str) -> None:
        self.record.update(status=status, reason=reason, waiting="")
        passed = status in ("done", "promoted")
        self._persist(gate_record(passed, f"canary {status}: {reason}", steps=self.record["steps"]))

    def _persist(self, gate: dict[str, Any] | None = None) -> None:
        self.record["updated_at"] = now_iso()
        if self.store is None:
            return
        record = dict(self.record)

        def change(state: CutoverState) -> None:
            state.canary = record
            if gate is not None:
                state.gates["canary"] = gate

        self.store.update(change)


def canary_handlers(canary: CanaryController) -> list[ControllerRouterHandler]:
    """POST /canary, GET /canary, POST /canary/abort, POST /canary/resume (under /admin)."""

    @post("/canary", status_code=201)
    async def start_canary(data: CanarySettings) -> dict[str, Any]:
        problems = data.problems()
        if problems:
            raise ValidationException("Invalid canary settings", extra=problems)
        return await canary.begin(data)

    @get("/canary")
    async def read_canary(
        intervals: Annotated[
            int, Parameter(ge=0, le=MAX_INTERVALS, description="how many of the last analyses")
        ] = MAX_INTERVALS,
    ) -> dict[str, Any]:
        return canary.document(intervals)

    @post("/canary/abort", status_code=200)
    async def abort_canary() -> dict[str, Any]:
        return await canary.abort()

    @post("/canary/resume", status_code=200)
    async def resume_canary() -> dict[str, Any]:
        return await canary.resume()

    return [start_canary, read_canary, abort_canary, resume_canary]
