"""The gates of a load test, judged on Locust's in-process statistics, and the run's settings.

For the operator reading `./start.sh loadtest`: a run passes when p95 overall and per route (each
route with at least MIN_ROUTE_SAMPLES requests) stay under the threshold, failures stay under
their ratio, the achieved arrival rate reaches its share of the asked one, the load generator
itself was not CPU-bound (then the figures would measure Locust, not the backend), WebSocket
users were not disconnected, and at least one request was
made. Thresholds come from the environment (`LOADTEST_*`, see env.example) or the CLI.

This module never imports Locust (which monkey-patches the process on import), so the gate logic
is unit-tested on synthetic statistics; `install` wires it into a running Locust through the
`environment` it is given: a `request` listener feeding a per-second timeline, a CPU sampler and
a `quitting` listener that sets the exit code and writes the result document.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from contract.environment import SettingsError, env_float, env_int

WS = "WS"
# A route's own p95 is judged from this many requests on (fewer: only in the p95 overall).
MIN_ROUTE_SAMPLES = 20
# Setup and teardown of a simulated user, not the frontend's traffic: their latency is argon2's
# by design, so they count for failures but not for latency or the arrival rate.
SETUP_ROUTES = frozenset(
    {
        ("POST", "/api/v1/auth/register"),
        ("POST", "/api/v1/auth/login"),
        ("DELETE", "/api/v1/auth/me"),
        ("GET", "/api/v1/symbols"),
    }
)
WS_CONNECT = "/ws connect"
WS_SUBSCRIBE = "/ws subscribe"
WS_HEARTBEAT = "/ws heartbeat"
WS_PUSH = "/ws push interval"
WS_DISCONNECT = "/ws disconnect"
WS_MOVED = "/ws moved (1012)"

# One dashboard user's requests per minute (see loadtests/locustfile.py): 14 quotes, 1 history,
# 2 for insights (the current signal, then its insights), 1 opportunities, 1/15 options.
FRONTEND_REQUESTS_PER_MINUTE = 14 + 1 + 2 + 1 + 1 / 15

Kind = Literal["http", "setup", "ws", "ws-push", "ws-event"]
Mode = Literal["fixed", "knee"]


# --- configuration --------------------------------------------------------------------------


def _env_str(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, "").strip() or default


@dataclass(frozen=True, slots=True)
class GateConfig:
    """The thresholds; defaults are the runbook's (p95 < 100 ms, failures < 0.1 %)."""

    p95_ms: float = 100.0
    max_failure_ratio: float = 0.001
    min_rate_ratio: float = 0.9
    max_cpu_percent: float = 90.0
    max_ws_disconnects: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GateConfig:
        """Thresholds from LOADTEST_*; SettingsError names a bad one."""
        return cls(
            p95_ms=env_float(env, "LOADTEST_P95_MS", 100.0, 1.0, 60_000.0),
            max_failure_ratio=env_float(env, "LOADTEST_MAX_FAILURE_RATIO", 0.001, 0.0, 1.0),
            min_rate_ratio=env_float(env, "LOADTEST_MIN_RATE_RATIO", 0.9, 0.0, 1.0),
            max_cpu_percent=env_float(env, "LOADTEST_MAX_CPU_PERCENT", 90.0, 1.0, 100.0),
            max_ws_disconnects=env_int(env, "LOADTEST_MAX_WS_DISCONNECTS", 0, 0, 1_000_000),
        )

    def env(self) -> dict[str, str]:
        return {
            "LOADTEST_P95_MS": repr(self.p95_ms),
            "LOADTEST_MAX_FAILURE_RATIO": repr(self.max_failure_ratio),
            "LOADTEST_MIN_RATE_RATIO": repr(self.min_rate_ratio),
            "LOADTEST_MAX_CPU_PERCENT": repr(self.max_cpu_percent),
            "LOADTEST_MAX_WS_DISCONNECTS": str(self.max_ws_disconnects),
        }


@dataclass(frozen=True, slots=True)
class RunConfig:
    """What the Locust process runs: set by `./start.sh loadtest` through the environment."""

    mode: Mode = "fixed"
    rate: float = 50.0
    http_users: int = 20
    ws_users: int = 2
    accounts: int = 5
    duration_s: float = 60.0
    setup_timeout_s: float = 120.0
    warmup_s: float = 5.0
    watchlist_share: float = 0.2
    heartbeat_s: float = 30.0
    seed: int = 42
    run_id: str = "run"
    result_file: str = ""
    step_rate: float = 50.0
    step_s: float = 10.0
    settle_s: float = 3.0
    max_steps: int = 20
    gates: GateConfig = field(default_factory=GateConfig)

    @property
    def per_user_rate(self) -> float:
        return self.rate / max(self.http_users, 1)

    def step_rate_at(self, index: int) -> float:
        """The asked arrival rate of knee step `index` (0-based)."""
        return self.rate + self.step_rate * index

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RunConfig:
        mode = _env_str(env, "LOADTEST_MODE", "fixed")
        if mode not in ("fixed", "knee"):
            raise SettingsError(f"LOADTEST_MODE={mode!r}: accepted fixed or knee")
        return cls(
            mode="knee" if mode == "knee" else "fixed",
            rate=env_float(env, "LOADTEST_RATE", 50.0, 0.01, 100_000.0),
            http_users=env_int(env, "LOADTEST_HTTP_USERS", 20, 1, 100_000),
            ws_users=env_int(env, "LOADTEST_WS_USERS", 2, 0, 100_000),
            accounts=env_int(env, "LOADTEST_ACCOUNTS", 5, 1, 100_000),
            duration_s=env_float(env, "LOADTEST_DURATION_S", 60.0, 1.0, 86_400.0),
            setup_timeout_s=env_float(env, "LOADTEST_SETUP_TIMEOUT_S", 120.0, 1.0, 3600.0),
            warmup_s=env_float(env, "LOADTEST_WARMUP_S", 5.0, 0.0, 3600.0),
            watchlist_share=env_float(env, "LOADTEST_WATCHLIST_SHARE", 0.2, 0.0, 1.0),
            heartbeat_s=env_float(env, "LOADTEST_WS_HEARTBEAT_S", 30.0, 0.1, 3600.0),
            seed=env_int(env, "LOADTEST_SEED", 42, 0, 2**31 - 1),
            run_id=_env_str(env, "LOADTEST_RUN_ID", "run"),
            result_file=_env_str(env, "LOADTEST_RESULT_FILE", ""),
            step_rate=env_float(env, "LOADTEST_KNEE_STEP_RATE", 50.0, 0.01, 100_000.0),
            step_s=env_float(env, "LOADTEST_KNEE_STEP_S", 10.0, 1.0, 3600.0),
            settle_s=env_float(env, "LOADTEST_KNEE_SETTLE_S", 3.0, 0.0, 3600.0),
            max_steps=env_int(env, "LOADTEST_KNEE_MAX_STEPS", 20, 1, 1000),
            gates=GateConfig.from_env(env),
        )

    def env(self) -> dict[str, str]:
        return {
            "LOADTEST_MODE": self.mode,
            "LOADTEST_RATE": repr(self.rate),
            "LOADTEST_HTTP_USERS": str(self.http_users),
            "LOADTEST_WS_USERS": str(self.ws_users),
            "LOADTEST_ACCOUNTS": str(self.accounts),
            "LOADTEST_DURATION_S": repr(self.duration_s),
            "LOADTEST_SETUP_TIMEOUT_S": repr(self.setup_timeout_s),
            "LOADTEST_WARMUP_S": repr(self.warmup_s),
            "LOADTEST_WATCHLIST_SHARE": repr(self.watchlist_share),
            "LOADTEST_WS_HEARTBEAT_S": repr(self.heartbeat_s),
            "LOADTEST_SEED": str(self.seed),
            "LOADTEST_RUN_ID": self.run_id,
            "LOADTEST_RESULT_FILE": self.result_file,
            "LOADTEST_KNEE_STEP_RATE": repr(self.step_rate),
            "LOADTEST_KNEE_STEP_S": repr(self.step_s),
            "LOADTEST_KNEE_SETTLE_S": repr(self.settle_s),
            "LOADTEST_KNEE_MAX_STEPS": str(self.max_steps),
            **self.gates.env(),
        }


# --- statistics -----------------------------------------------------------------------------


def bucket_ms(response_time: float) -> int:
    """Round like Locust's histogram: exact under 100 ms, then about two significant digits."""
    if response_time < 100:
        return round(response_time)
    if response_time < 1000:
        return int(round(response_time, -1))
    if response_time < 10000:
        return int(round(response_time, -2))
    return int(round(response_time, -3))


def percentile(histogram: Mapping[int, int], percent: float) -> int:
    """The response time that `percent` (0..1) of the requests finished within (Locust's rule)."""
    count = sum(histogram.values())
    if count == 0:
        return 0
    allowed_above = count - int(count * percent)
    seen = 0
    for value in sorted(histogram, reverse=True):
        seen += histogram[value]
        if seen >= allowed_above:
            return value
    return 0


def kind_of(method: str, name: str) -> Kind:
    """What an entry of the statistics is: the frontend's HTTP mix, setup, or a WebSocket figure."""
    if method == WS:
        if name == WS_PUSH:
            return "ws-push"
        if name in (WS_DISCONNECT, WS_MOVED):
            return "ws-event"
        return "ws"
    if (method, name) in SETUP_ROUTES:
        return "setup"
    return "http"


@dataclass(frozen=True, slots=True)
class RouteStats:
    """One entry of Locust's statistics (method + route template), histogram in rounded ms."""

    method: str
    name: str
    requests: int
    failures: int
    histogram: Mapping[int, int]
    total_ms: float = 0.0
    max_ms: float = 0.0

    @property
    def kind(self) -> Kind:
        return kind_of(self.method, self.name)

    @property
    def label(self) -> str:
        return f"{self.method} {self.name}"

    def p(self, percent: float) -> int:
        return percentile(self.histogram, percent)

    @property
    def avg_ms(self) -> float:
        return self.total_ms / self.requests if self.requests else 0.0

    @property
    def latency_gated(self) -> bool:
        """Whether its p95 is gated: the HTTP mix and WebSocket round trips, not push intervals."""
        return self.kind in ("http", "ws")


def merged(histograms: Iterable[Mapping[int, int]]) -> Counter[int]:
    total: Counter[int] = Counter()
    for histogram in histograms:
        total.update(histogram)
    return total


def routes_from_stats(stats: Any) -> list[RouteStats]:
    """Snapshot of a Locust `RequestStats` (duck-typed: `entries` of `StatsEntry`)."""
    routes = []
    for entry in stats.entries.values():
        if not entry.num_requests:
            continue
        routes.append(
            RouteStats(
                method=str(entry.method),
                name=str(entry.name),
                requests=int(entry.num_requests),
                failures=int(entry.num_failures),
                histogram=dict(entry.response_times),
                total_ms=float(entry.total_response_time),
                max_ms=float(entry.max_response_time),
            )
        )
    return sorted(routes, key=lambda r: (r.kind != "http", r.name, r.method))


@dataclass(slots=True)
class Second:
    """The frontend mix's requests that ended within one wall-clock second."""

    requests: int = 0
    failures: int = 0
    histogram: Counter[int] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class Window:
    """The mix's figures over whole seconds [start, end)."""

    seconds: int
    requests: int
    failures: int
    histogram: Counter[int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    def p(self, percent: float) -> int:
        return percentile(self.histogram, percent)


class Timeline:
    """Per-second figures of the frontend mix, for the arrival rate, knee steps and plots."""

    def __init__(self) -> None:
        self.seconds: dict[int, Second] = {}

    def record(self, at: float, response_time: float, failed: bool) -> None:
        second = self.seconds.setdefault(int(at), Second())
        second.requests += 1
        second.failures += int(failed)
        second.histogram[bucket_ms(response_time)] += 1

    def window(self, start: float, end: float) -> Window:
        """Whole seconds from ceil(start) to floor(end) (a partial second would skew the rate)."""
        first, last = math.ceil(start), math.floor(end)
        histogram: Counter[int] = Counter()
        requests = failures = 0
        for key in range(first, last):
            second = self.seconds.get(key)
            if second is None:
                continue
            requests += second.requests
            failures += second.failures
            histogram.update(second.histogram)
        return Window(max(last - first, 0), requests, failures, histogram)

    def series(self, start: float, end: float) -> list[SeriesPoint]:
        """One point per whole second of [start, end), t counted from `start`."""
        points = []
        for key in range(math.ceil(start), math.floor(end)):
            second = self.seconds.get(key, Second())
            points.append(
                SeriesPoint(
                    t=round(key - start, 3),
                    requests=second.requests,
                    failures=second.failures,
                    p50=percentile(second.histogram, 0.5),
                    p95=percentile(second.histogram, 0.95),
                    p99=percentile(second.histogram, 0.99),
                )
            )
        return points


# --- the result document (read by `./start.sh loadtest`) ------------------------------------


class Gate(msgspec.Struct, frozen=True):
    name: str
    passed: bool
    detail: str
    value: float | None = None
    threshold: float | None = None


class RouteFigures(msgspec.Struct, frozen=True):
    method: str
    name: str
    kind: str
    requests: int
    failures: int
    p50: int
    p95: int
    p99: int
    max_ms: float
    avg_ms: float
    rate: float


class SeriesPoint(msgspec.Struct, frozen=True):
    """One second of the run: t from the start of the measured window."""

    t: float
    requests: int
    failures: int
    p50: int
    p95: int
    p99: int


class StepResult(msgspec.Struct, frozen=True):
    index: int
    asked_rate: float
    achieved_rate: float
    users: int
    p95: int
    failure_ratio: float
    cpu_max: float | None
    passed: bool
    why: str


class KneeResult(msgspec.Struct, frozen=True):
    steps: list[StepResult]
    knee: StepResult | None
    stopped_because: str


class RunResult(msgspec.Struct, frozen=True):
    mode: str
    host: str
    asked_rate: float
    achieved_rate: float
    http_users: int
    ws_users: int
    accounts: int
    window_s: float
    passed: bool
    gates: list[Gate]
    routes: list[RouteFigures]
    series: list[SeriesPoint]
    cpu_max: float | None
    cpu_warning: bool
    setup: str
    knee: KneeResult | None = None


def decode_result(data: bytes) -> RunResult:
    return msgspec.json.decode(data, type=RunResult)


# --- the gates ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Measured:
    """Everything the gates look at, from one run's in-process statistics."""

    routes: list[RouteStats]
    asked_rate: float
    achieved_rate: float
    cpu_max: float | None = None
    ws_users: int = 0
    setup_problem: str | None = None


def _ms(value: float) -> str:
    return f"{value:.0f} ms"


def evaluate(measured: Measured, config: GateConfig) -> list[Gate]:
    """Every gate of a fixed-rate run, passing or not, in a stable order."""
    gates: list[Gate] = []
    mix = [r for r in measured.routes if r.kind == "http"]
    mix_requests = sum(r.requests for r in mix)
    if measured.setup_problem:
        gates.append(Gate("setup", False, measured.setup_problem))
    gates.append(
        Gate(
            "requests",
            mix_requests > 0,
            f"{mix_requests} requests of the frontend mix"
            if mix_requests
            else "no request of the frontend mix was made (zero requests is a failure)",
            float(mix_requests),
        )
    )
    if mix_requests:
        overall = percentile(merged(r.histogram for r in mix), 0.95)
        gates.append(
            Gate(
                "p95 overall",
                overall < config.p95_ms,
                f"{_ms(overall)} (threshold < {_ms(config.p95_ms)})",
                float(overall),
                config.p95_ms,
            )
        )
    thin = [r for r in measured.routes if r.latency_gated and r.requests < MIN_ROUTE_SAMPLES]
    if thin:
        # A p95 of a handful of requests is their maximum: too few to judge a route on its own.
        # They still count in the p95 overall above.
        gates.append(
            Gate(
                "p95 of thin routes",
                True,
                f"not judged per route (< {MIN_ROUTE_SAMPLES} requests; counted in p95 overall): "
                + ", ".join(f"{r.label} ({r.requests})" for r in thin),
            )
        )
    for route in measured.routes:
        if not route.latency_gated or route.requests < MIN_ROUTE_SAMPLES:
            continue
        p95 = route.p(0.95)
        gates.append(
            Gate(
                f"p95 {route.label}",
                p95 < config.p95_ms,
                f"{_ms(p95)} over {route.requests} requests (threshold < {_ms(config.p95_ms)})",
                float(p95),
                config.p95_ms,
            )
        )
    counted = [r for r in measured.routes if r.kind in ("http", "setup", "ws")]
    requests = sum(r.requests for r in counted)
    failures = sum(r.failures for r in counted)
    ratio = failures / requests if requests else 0.0
    gates.append(
        Gate(
            "failures",
            failures == 0 or ratio < config.max_failure_ratio,
            f"{failures} of {requests} ({ratio:.3%}; threshold < {config.max_failure_ratio:.3%})",
            ratio,
            config.max_failure_ratio,
        )
    )
    wanted = measured.asked_rate * config.min_rate_ratio
    gates.append(
        Gate(
            "arrival rate",
            measured.achieved_rate >= wanted and measured.achieved_rate > 0,
            f"{measured.achieved_rate:.1f} req/s of {measured.asked_rate:.1f} asked "
            f"(needs ≥ {config.min_rate_ratio:.0%})",
            measured.achieved_rate,
            wanted,
        )
    )
    if measured.cpu_max is None:
        gates.append(Gate("load generator CPU", True, "not sampled"))
    else:
        gates.append(
            Gate(
                "load generator CPU",
                measured.cpu_max < config.max_cpu_percent,
                f"Locust peaked at {measured.cpu_max:.0f} % of a core (must stay < "
                f"{config.max_cpu_percent:.0f} %, else the figures measure Locust itself)",
                measured.cpu_max,
                config.max_cpu_percent,
            )
        )
    if measured.ws_users:
        disconnects = sum(r.requests for r in measured.routes if r.name == WS_DISCONNECT)
        connects = sum(r.requests - r.failures for r in measured.routes if r.name == WS_CONNECT)
        gates.append(
            Gate(
                "websocket disconnects",
                disconnects <= config.max_ws_disconnects and connects > 0,
                f"{disconnects} unexpected disconnects, {connects} connections "
                f"(threshold ≤ {config.max_ws_disconnects})",
                float(disconnects),
                float(config.max_ws_disconnects),
            )
        )
    return gates


def failed_gates(gates: Iterable[Gate]) -> list[Gate]:
    return [g for g in gates if not g.passed]


def judge_step(
    index: int,
    asked_rate: float,
    users: int,
    window: Window,
    cpu_max: float | None,
    config: GateConfig,
) -> StepResult:
    """One step of the knee search: p95, failures, achieved rate and Locust's CPU, or why not."""
    p95 = window.p(0.95)
    reasons = []
    if window.requests == 0:
        reasons.append("no requests")
    if p95 >= config.p95_ms:
        reasons.append(f"p95 {p95} ms ≥ {config.p95_ms:.0f} ms")
    if window.failure_ratio >= config.max_failure_ratio and window.failures:
        reasons.append(f"failures {window.failure_ratio:.2%}")
    if window.rate < asked_rate * config.min_rate_ratio:
        reasons.append(f"achieved {window.rate:.0f} of {asked_rate:.0f} req/s")
    if cpu_max is not None and cpu_max >= config.max_cpu_percent:
        reasons.append(f"Locust CPU {cpu_max:.0f} %")
    return StepResult(
        index=index,
        asked_rate=round(asked_rate, 2),
        achieved_rate=round(window.rate, 2),
        users=users,
        p95=p95,
        failure_ratio=round(window.failure_ratio, 5),
        cpu_max=cpu_max,
        passed=not reasons,
        why="; ".join(reasons) or "pass",
    )


class KneeSearch:
    """Steps of rising arrival rate; stops at the first failing step or the last step."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.steps: list[StepResult] = []
        self.stopped_because = "not started"

    def record(self, step: StepResult) -> bool:
        """Keep a judged step; True when the search goes on."""
        self.steps.append(step)
        if not step.passed:
            self.stopped_because = f"step {step.index + 1} failed: {step.why}"
            return False
        if len(self.steps) >= self.config.max_steps:
            self.stopped_because = (
                f"the last step ({self.config.max_steps}) passed: the knee lies higher"
            )
            return False
        return True

    @property
    def knee(self) -> StepResult | None:
        """The highest passing step below the first failing one."""
        passing = None
        for step in self.steps:
            if not step.passed:
                break
            passing = step
        return passing

    def result(self) -> KneeResult:
        return KneeResult(list(self.steps), self.knee, self.stopped_because)


# --- inside Locust --------------------------------------------------------------------------


@dataclass
class Recorder:
    """What one Locust process measures beyond Locust's own statistics."""

    timeline: Timeline = field(default_factory=Timeline)
    cpu: list[tuple[float, float]] = field(default_factory=list)
    cpu_warning: bool = False
    window_start: float | None = None
    window_end: float | None = None
    setup_problem: str | None = None
    knee: KneeSearch | None = None

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float | None,
        exception: BaseException | None = None,
        **_: Any,
    ) -> None:
        if response_time is None or kind_of(request_type, name) != "http":
            return
        self.timeline.record(time.time(), response_time, exception is not None)

    def cpu_max(self, start: float, end: float) -> float | None:
        values = [pct for at, pct in self.cpu if start <= at <= end]
        return max(values) if values else None


RECORDER = Recorder()


def _route_figures(route: RouteStats, seconds: float) -> RouteFigures:
    return RouteFigures(
        method=route.method,
        name=route.name,
        kind=route.kind,
        requests=route.requests,
        failures=route.failures,
        p50=route.p(0.5),
        p95=route.p(0.95),
        p99=route.p(0.99),
        max_ms=round(route.max_ms, 1),
        avg_ms=round(route.avg_ms, 2),
        rate=round(route.requests / seconds, 2) if seconds else 0.0,
    )


def build_result(
    config: RunConfig,
    host: str,
    routes: list[RouteStats],
    recorder: Recorder,
    now: float,
) -> RunResult:
    """The result of a run from its statistics and the recorder: gates, figures, time series."""
    start = recorder.window_start if recorder.window_start is not None else now
    end = recorder.window_end if recorder.window_end is not None else now
    window = recorder.timeline.window(start, end)
    cpu_max = recorder.cpu_max(start, end)
    knee = recorder.knee.result() if recorder.knee is not None else None
    if config.mode == "knee":
        passed_knee = knee is not None and knee.knee is not None
        gates = [
            Gate(
                "knee",
                passed_knee,
                knee.stopped_because if knee is not None else "the search did not start",
            )
        ]
        if recorder.setup_problem:
            gates.insert(0, Gate("setup", False, recorder.setup_problem))
    else:
        gates = evaluate(
            Measured(
                routes=routes,
                asked_rate=config.rate,
                achieved_rate=window.rate,
                cpu_max=cpu_max,
                ws_users=config.ws_users,
                setup_problem=recorder.setup_problem,
            ),
            config.gates,
        )
    seconds = max(end - start, 0.0)
    return RunResult(
        mode=config.mode,
        host=host,
        asked_rate=config.rate,
        achieved_rate=round(window.rate, 2),
        http_users=config.http_users,
        ws_users=config.ws_users,
        accounts=config.accounts,
        window_s=round(seconds, 2),
        passed=not failed_gates(gates),
        gates=gates,
        routes=[_route_figures(r, seconds) for r in routes],
        series=recorder.timeline.series(start, end),
        cpu_max=cpu_max,
        cpu_warning=recorder.cpu_warning,
        setup=recorder.setup_problem or "ok",
        knee=knee,
    )


def write_result(path: str, result: RunResult) -> None:
    if not path:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(result)))
    os.replace(tmp, target)


def _sample_cpu(recorder: Recorder, sleep: Callable[[float], None], interval: float) -> None:
    # Locust samples its CPU only every 10 s; a short run needs finer samples.
    import psutil  # type: ignore[import-untyped]

    process = psutil.Process()
    process.cpu_percent(None)
    while True:
        sleep(interval)
        recorder.cpu.append((time.time(), float(process.cpu_percent(None))))


def install(environment: Any, config: RunConfig, recorder: Recorder = RECORDER) -> None:
    """Wire the recorder and the gates into a Locust environment (call from `events.init`)."""
    import gevent

    events = environment.events
    events.request.add_listener(recorder.on_request)

    def on_cpu_warning(**_: Any) -> None:
        recorder.cpu_warning = True

    events.cpu_warning.add_listener(on_cpu_warning)
    sampler = gevent.spawn(_sample_cpu, recorder, gevent.sleep, 1.0)

    def on_quitting(environment: Any, **_: Any) -> None:
        sampler.kill(block=False)
        now = time.time()
        if recorder.window_end is None:
            recorder.window_end = now
        result = build_result(
            config, str(environment.host or ""), routes_from_stats(environment.stats), recorder, now
        )
        write_result(config.result_file, result)
        for gate in result.gates:
            mark = "pass" if gate.passed else "FAIL"
            print(f"gate {mark}: {gate.name}: {gate.detail}", flush=True)
        # Locust would exit 1 on any failed request; the gates decide instead.
        environment.process_exit_code = 0 if result.passed else 1

    events.quitting.add_listener(on_quitting)
