"""`./start.sh loadtest`: Locust, headless, the frontend's traffic mix at a fixed arrival rate.

For the operator: picks the running server(s) (`mock` and `prod` from the pid files that
`./start.sh simple` and `./start.sh prod` wrote, `gateway` once it exists, or a loopback URL),
runs `python -m locust -f loadtests/locustfile.py` as a child process bounded in time, and reads
the result document its `quitting` listener wrote from Locust's in-process statistics (never the
CSV). Locust's CSV and HTML, the result JSON and PNG plots land in `var/reports/loadtest-STAMP/`.
The exit code is the gates' (loadtests/gates.py): 0 all pass, 1 a gate failed (named), 2 a
precondition is missing. `--find-knee` raises the arrival rate step by step instead and reports
the highest rate whose step passed; `--target both` runs the same load against the mock, then
prod, and compares them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx
import msgspec
from rich.table import Table
from rich.text import Text

from contract.environment import SettingsError
from loadtests.gates import (
    FRONTEND_REQUESTS_PER_MINUTE,
    GateConfig,
    RunConfig,
    RunResult,
    decode_result,
    failed_gates,
)
from ops import services
from ops.cli import (
    CommandError,
    GateFailedError,
    PreconditionError,
    Run,
    _next,
    _shown,
    out,
)
from ops.settings import OpsSettings, child_environment, read_env_file
from ops.state import CutoverState, gate_record

TARGETS = ("mock", "prod", "gateway", "both")
PROVIDERS = {"mock": "./start.sh simple", "prod": "./start.sh prod", "gateway": "./start.sh shadow"}
MAX_DURATION_S = 30 * 60
# Keep each account well under the target's per-user limit, so that 429s never decide a run.
ACCOUNT_SHARE_OF_LIMIT = 0.8
# Requests in flight a step may need (Little's law at the latency threshold, doubled).
USERS_PER_RATE = 0.2
LOGIN_SECONDS_PER_ACCOUNT = 1.5
LOCUSTFILE = Path("loadtests") / "locustfile.py"
# Settings of the run an operator may put in .env (the rest comes from the CLI).
_USER_SETTINGS = ("LOADTEST_WATCHLIST_SHARE", "LOADTEST_WS_HEARTBEAT_S")


@dataclass(frozen=True, slots=True)
class LoadArgs:
    """The options of `./start.sh loadtest`, as typed."""

    target: str = "mock"
    users: int = 20
    rate: float = 50.0
    duration: str = "60s"
    find_knee: bool = False
    ws_users: int | None = None
    watchlist_share: float | None = None
    p95_ms: float | None = None
    max_failure_ratio: float | None = None
    step_rate: float | None = None
    step_duration: str = "10s"
    warmup: str = "5s"
    max_steps: int = 20
    seed: int = 42


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    url: str


def parse_duration(text: str, option: str = "--duration", shortest: float = 1) -> float:
    """'60s', '2m', '90' (seconds) or '1h' as seconds; PreconditionError when unreadable."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match:
        raise PreconditionError(f"{option} {text!r}: give seconds, e.g. 60s, 2m or 90")
    value = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if not shortest <= value <= MAX_DURATION_S:
        raise PreconditionError(
            f"{option} {text}: accepted {shortest:g} s to {MAX_DURATION_S // 60} min"
        )
    return value


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _running_url(settings: OpsSettings, name: str) -> str:
    record = services.read_pid_file(settings, name)
    if record is None or not services.is_running(record) or not record.url:
        label = {"mock": "the mock", "prod": "the production backend"}.get(name, f"the {name}")
        raise PreconditionError(f"{label} is not running", f"{PROVIDERS[name]} starts it")
    return record.url


def resolve_targets(settings: OpsSettings, target: str) -> list[Target]:
    """The servers to load: from the pid files of running services, or a loopback URL."""
    if target == "both":
        return [Target(name, _running_url(settings, name)) for name in ("mock", "prod")]
    if target in ("mock", "prod"):
        return [Target(target, _running_url(settings, target))]
    if target == "gateway":
        record = services.read_pid_file(settings, "gateway")
        if record is not None and services.is_running(record) and record.url:
            return [Target("gateway", record.url)]
        if importlib.util.find_spec("ops.gateway") is None:
            raise PreconditionError(
                "the gateway does not exist yet in this version of the kit",
                "load the backends directly: ./start.sh loadtest --target mock|prod|both",
            )
        raise PreconditionError("the gateway is not running", f"{PROVIDERS['gateway']} starts it")
    if target.startswith(("http://", "https://")):
        if not is_loopback(target):
            raise PreconditionError(
                f"{target} is not on this machine: load tests run only against 127.0.0.1"
            )
        return [Target("url", target.rstrip("/"))]
    raise PreconditionError(f"--target {target!r}: accepted {', '.join(TARGETS)} or a loopback URL")


def probe(target: Target) -> int | None:
    """Check the target answers; its per-user limit per minute (RateLimit-Limit) if it says."""
    hint = PROVIDERS.get(target.name, "start the server")
    try:
        health = httpx.get(f"{target.url}/api/v1/health", timeout=5.0)
        symbols = httpx.get(f"{target.url}/api/v1/symbols", timeout=5.0)
    except httpx.HTTPError as exc:
        raise PreconditionError(
            f"{target.name} at {target.url} does not answer ({type(exc).__name__})",
            f"{hint} (./start.sh status shows what runs)",
        ) from None
    if health.status_code != 200:
        raise PreconditionError(
            f"{target.name} at {target.url} is not healthy (health answered {health.status_code})",
            f"./start.sh logs {target.name}" if target.name in PROVIDERS else hint,
        )
    raw = symbols.headers.get("ratelimit-limit", "")
    return int(raw) if raw.isdigit() else None


def gate_config(settings: OpsSettings, args: LoadArgs) -> GateConfig:
    """Thresholds: LOADTEST_* from the environment and .env, overridden by the CLI."""
    env = {**read_env_file(settings.env_file), **os.environ}
    try:
        config = GateConfig.from_env(env)
    except SettingsError as exc:
        raise PreconditionError(f"bad setting: {exc}", "fix it in .env (see env.example)") from None
    if args.p95_ms is not None:
        config = replace(config, p95_ms=args.p95_ms)
    if args.max_failure_ratio is not None:
        config = replace(config, max_failure_ratio=args.max_failure_ratio)
    return config


def plan(settings: OpsSettings, args: LoadArgs, limit: int | None, run_id: str) -> RunConfig:
    """The Locust run's configuration for these options and the target's per-user limit."""
    env = {**read_env_file(settings.env_file), **os.environ}
    try:
        defaults = RunConfig.from_env({k: v for k, v in env.items() if k in _USER_SETTINGS})
    except SettingsError as exc:
        raise PreconditionError(f"bad setting: {exc}", "fix it in .env (see env.example)") from None
    if not args.users >= 1 or not args.rate > 0:
        raise PreconditionError("--users must be ≥ 1 and --rate > 0")
    per_account = ACCOUNT_SHARE_OF_LIMIT * limit / 60 if limit else 16.0
    step_rate = args.rate if args.step_rate is None else args.step_rate
    top_rate = args.rate + step_rate * (args.max_steps - 1) if args.find_knee else args.rate
    users = args.users
    if args.find_knee:
        users = max(users, math.ceil(top_rate * USERS_PER_RATE))
    elif args.rate / users > per_account:
        raise PreconditionError(
            f"--rate {args.rate:g} over --users {users} is {args.rate / users:.1f} req/s per user, "
            f"over {ACCOUNT_SHARE_OF_LIMIT:.0%} of the target's per-user limit ({limit}/min)",
            f"raise --users to at least {math.ceil(args.rate / per_account)}",
        )
    accounts = max(1, min(users, math.ceil(top_rate / per_account)))
    ws_users = max(1, users // 10) if args.ws_users is None else args.ws_users
    duration = parse_duration(args.duration)
    step_s = parse_duration(args.step_duration, "--step-duration")
    return replace(
        defaults,
        mode="knee" if args.find_knee else "fixed",
        rate=args.rate,
        http_users=users,
        ws_users=ws_users,
        accounts=accounts,
        duration_s=duration,
        warmup_s=parse_duration(args.warmup, "--warmup", shortest=0),
        setup_timeout_s=60 + LOGIN_SECONDS_PER_ACCOUNT * accounts,
        watchlist_share=defaults.watchlist_share
        if args.watchlist_share is None
        else args.watchlist_share,
        seed=args.seed,
        run_id=run_id,
        step_rate=step_rate,
        step_s=step_s,
        settle_s=min(3.0, step_s / 3),
        max_steps=args.max_steps,
        gates=gate_config(settings, args),
    )


def time_bound(config: RunConfig) -> float:
    """How long the Locust child may run before it is stopped."""
    measured = config.max_steps * config.step_s if config.mode == "knee" else config.duration_s
    return config.setup_timeout_s + config.warmup_s + measured + 60


def _pump(stream: IO[bytes], log: IO[bytes], echo: bool) -> None:
    for line in iter(stream.readline, b""):
        log.write(line)
        log.flush()
        text = line.decode(errors="replace").rstrip()
        if echo and text.startswith("step "):
            out.print(f"  {text}", soft_wrap=True)


def _stop_child(process: subprocess.Popen[bytes], grace: float) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
        return
    process.send_signal(signal.SIGINT)  # Locust quits cleanly on SIGINT, writing its result
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_locust(settings: OpsSettings, target: Target, config: RunConfig, folder: Path) -> RunResult:
    """One headless Locust run against `target`; its result document, or a CommandError."""
    result_file = folder / f"{target.name}.json"
    config = replace(config, result_file=str(result_file))
    log_path = folder / f"{target.name}-locust.log"
    argv = [
        sys.executable, "-m", "locust", "-f", str(settings.root / LOCUSTFILE), "--headless",
        "--host", target.url, "--csv", str(folder / target.name), "--csv-full-history",
        "--html", str(folder / f"{target.name}.html"), "--only-summary", "--loglevel", "WARNING",
    ]  # fmt: skip
    env = child_environment(settings, config.env())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(settings.root), env.get("PYTHONPATH")]))
    result_file.unlink(missing_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, cwd=settings.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert process.stdout is not None
        pump = threading.Thread(
            target=_pump, args=(process.stdout, log, config.mode == "knee"), daemon=True
        )
        pump.start()
        try:
            code = process.wait(timeout=time_bound(config))
        except subprocess.TimeoutExpired:
            _stop_child(process, 0)
            pump.join(timeout=5)
            raise GateFailedError(
                f"Locust did not finish within {time_bound(config):.0f} s; stopped it",
                f"see {_shown(settings, log_path)}",
            ) from None
        except KeyboardInterrupt:
            _stop_child(process, 10)
            pump.join(timeout=5)
            raise
        pump.join(timeout=5)
    if not result_file.is_file() or code not in (0, 1):
        tail = "\n".join("    " + line for line in services.tail_lines(log_path, 15))
        raise CommandError(
            f"Locust exited with {code} without a result against {target.name}:\n{tail}",
            f"see {_shown(settings, log_path)}",
        )
    try:
        return decode_result(result_file.read_bytes())
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CommandError(f"unreadable result {result_file}: {exc}") from None


# --- what the operator sees -----------------------------------------------------------------


def _ms_text(value: float, threshold: float | None) -> Text:
    style = "red" if threshold is not None and value >= threshold else ""
    return Text(f"{value:.0f}", style=style)


def route_table(target: Target, result: RunResult, p95_ms: float) -> Table:
    title = Text(
        f"{target.name} ({target.url}) · {result.http_users} users + {result.ws_users} WebSocket "
        f"· {result.achieved_rate:.1f} of {result.asked_rate:.1f} req/s · {result.window_s:.0f} s"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("route")
    for column in ("requests", "fail", "p50 ms", "p95 ms", "p99 ms", "max ms", "req/s"):
        table.add_column(column, justify="right")
    for route in result.routes:
        gated = route.kind in ("http", "ws")
        table.add_row(
            Text(f"{route.method} {route.name}" + ("" if gated else f"  ({route.kind})")),
            str(route.requests),
            Text(str(route.failures), style="red" if route.failures else ""),
            str(route.p50),
            _ms_text(route.p95, p95_ms if gated else None),
            str(route.p99),
            f"{route.max_ms:.0f}",
            f"{route.rate:.1f}",
        )
    return table


def gate_table(results: Sequence[tuple[Target, RunResult]]) -> Table:
    table = Table(title="gates", title_justify="left")
    table.add_column("gate")
    for target, _ in results:
        table.add_column(target.name)
    names: list[str] = []
    for _, result in results:
        names += [g.name for g in result.gates if g.name not in names]
    for name in names:
        per_route = name.startswith("p95 ") and name != "p95 overall"
        if per_route and all(g.passed for _, r in results for g in r.gates if g.name == name):
            continue  # per-route p95s are in the route table; only failures repeat here
        cells: list[Text | str] = [Text(name)]
        for _, result in results:
            gate = next((g for g in result.gates if g.name == name), None)
            if gate is None:
                cells.append("-")
            else:
                label, style = ("pass", "green") if gate.passed else ("FAIL", "red")
                cells.append(Text(f"{label}: {gate.detail}", style=style))
        table.add_row(*cells)
    return table


def knee_table(target: Target, result: RunResult) -> Table:
    table = Table(title=f"knee search on {target.name} ({target.url})", title_justify="left")
    for column in ("step", "asked req/s", "achieved", "users", "p95 ms", "failures", "Locust CPU"):
        table.add_column(column, justify="right")
    table.add_column("result")
    steps = result.knee.steps if result.knee else []
    for step in steps:
        table.add_row(
            str(step.index + 1),
            f"{step.asked_rate:.0f}",
            f"{step.achieved_rate:.0f}",
            str(step.users),
            str(step.p95),
            f"{step.failure_ratio:.2%}",
            "-" if step.cpu_max is None else f"{step.cpu_max:.0f} %",
            Text(step.why, style="green" if step.passed else "red"),
        )
    return table


def comparison_table(results: Sequence[tuple[Target, RunResult]]) -> Table:
    """The same load on two backends, route by route."""
    (first, a), (second, b) = results[0], results[1]
    table = Table(title=f"{first.name} vs {second.name}", title_justify="left")
    table.add_column("route")
    for kind in ("p95", "req/s", "fail"):
        for target in (first, second):
            table.add_column(f"{target.name} {kind}", justify="right")
        if kind == "p95":
            table.add_column("Δ p95", justify="right")
    keyed = {(r.method, r.name): r for r in b.routes}
    for route in a.routes:
        if route.kind not in ("http", "ws"):
            continue
        other = keyed.get((route.method, route.name))
        table.add_row(
            Text(f"{route.method} {route.name}"),
            str(route.p95),
            "-" if other is None else str(other.p95),
            "-" if other is None else f"{other.p95 - route.p95:+d}",
            f"{route.rate:.1f}",
            "-" if other is None else f"{other.rate:.1f}",
            str(route.failures),
            "-" if other is None else str(other.failures),
        )
    table.add_row(
        "all (achieved req/s, pass)",
        "",
        "",
        "",
        f"{a.achieved_rate:.1f}",
        f"{b.achieved_rate:.1f}",
        "pass" if a.passed else "FAIL",
        "pass" if b.passed else "FAIL",
    )
    return table


def plot(results: Sequence[tuple[Target, RunResult]], folder: Path, p95_ms: float) -> list[Path]:
    """Latency percentiles and throughput over time, one line per target (PNG, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    figure, axis = plt.subplots(figsize=(10, 5))
    for index, (target, result) in enumerate(results):
        t = [p.t for p in result.series if p.requests]
        for key, style in (("p50", ":"), ("p95", "-"), ("p99", "--")):
            values = [getattr(p, key) for p in result.series if p.requests]
            axis.plot(t, values, style, color=f"C{index}", label=f"{target.name} {key}")
    axis.axhline(p95_ms, color="red", linewidth=0.8, label=f"p95 threshold {p95_ms:.0f} ms")
    axis.set_xlabel("seconds into the measured window")
    axis.set_ylabel("latency per second (ms)")
    axis.set_title("latency percentiles of the frontend mix")
    axis.legend(fontsize="small")
    path = folder / "latency.png"
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    written.append(path)

    figure, axis = plt.subplots(figsize=(10, 5))
    for index, (target, result) in enumerate(results):
        color = f"C{index}"
        seconds = [p.t for p in result.series]
        requests = [p.requests for p in result.series]
        axis.plot(seconds, requests, color=color, label=f"{target.name} achieved")
        failures = [p.failures for p in result.series]
        if any(failures):
            axis.plot(seconds, failures, ":", color=color, label=f"{target.name} failed")
        if result.mode == "fixed":
            axis.axhline(
                result.asked_rate, linestyle="--", linewidth=0.8, color=color,
                label=f"{target.name} asked",
            )  # fmt: skip
    axis.set_xlabel("seconds into the measured window")
    axis.set_ylabel("requests per second")
    axis.set_title("throughput of the frontend mix")
    axis.legend(fontsize="small")
    path = folder / "throughput.png"
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    written.append(path)
    return written


def frontend_users(rate: float) -> int:
    """How many dashboards at the real pace make `rate` requests a second."""
    return round(rate / (FRONTEND_REQUESTS_PER_MINUTE / 60))


def _describe(config: RunConfig) -> str:
    if config.mode == "knee":
        top = config.step_rate_at(config.max_steps - 1)
        return (
            f"knee search: {config.rate:g} → {top:g} req/s in steps of {config.step_rate:g} "
            f"every {config.step_s:g} s, {config.http_users} users on {config.accounts} accounts "
            f"+ {config.ws_users} WebSocket"
        )
    return (
        f"{config.http_users} users on {config.accounts} accounts + {config.ws_users} WebSocket, "
        f"{config.rate:g} req/s for {config.duration_s:g} s (after logging in and a "
        f"{config.warmup_s:g} s warm-up)"
    )


def _report_folder(settings: OpsSettings) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    folder = settings.reports_dir / f"loadtest-{stamp}-{secrets.token_hex(2)}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def loadtest(run: Run, args: LoadArgs) -> str:
    """The body of `loadtest`: a one-line summary for the history, or a CommandError."""
    settings = run.settings
    targets = resolve_targets(settings, args.target)
    limits = [probe(target) for target in targets]
    known = [limit for limit in limits if limit]
    folder = _report_folder(settings)
    config = plan(settings, args, min(known) if known else None, folder.name)
    out.print(f"[bold]loadtest[/] {_describe(config)}")
    results: list[tuple[Target, RunResult]] = []
    for target in targets:
        out.print(f"running against {target.name} at {target.url} …")
        result = run_locust(settings, target, config, folder)
        results.append((target, result))
        if result.mode == "knee":
            out.print(knee_table(target, result))
        else:
            out.print(route_table(target, result, config.gates.p95_ms))
    out.print(gate_table(results))
    if len(results) == 2:
        out.print(comparison_table(results))
    plots = plot(results, folder, config.gates.p95_ms)
    document = {
        "config": config.env(),
        "results": {t.name: r for t, r in results},
        "plots": [p.name for p in plots],
    }
    (folder / "summary.json").write_bytes(msgspec.json.format(msgspec.json.encode(document)))
    lines = _summaries(results)
    for line in lines:
        out.print(line)
    shown = _shown(settings, folder)
    out.print(f"reports: {shown}/ (Locust CSV and HTML, JSON, latency.png, throughput.png)")
    _record(run, results, folder)
    failed = [(t, g) for t, r in results for g in failed_gates(r.gates)]
    if failed:
        names = "; ".join(f"{t.name}: {g.name} ({g.detail})" for t, g in failed[:6])
        raise GateFailedError(
            f"load test gates failed: {names}",
            f"see {_shown(settings, folder)}/ and ./start.sh logs mock|prod",
            summary="; ".join(lines),
        )
    _next("./start.sh status", "./start.sh report")
    return "; ".join(lines)


def _summaries(results: Sequence[tuple[Target, RunResult]]) -> list[str]:
    lines = []
    for target, result in results:
        if result.mode == "knee":
            knee = result.knee.knee if result.knee else None
            why = result.knee.stopped_because if result.knee else "no steps"
            if knee is None:
                lines.append(f"{target.name}: no step passed ({why})")
            else:
                lines.append(
                    f"{target.name}: knee at {knee.asked_rate:.0f} req/s (achieved "
                    f"{knee.achieved_rate:.0f}, p95 {knee.p95} ms) with {knee.users} users, about "
                    f"{frontend_users(knee.asked_rate)} dashboards at the real pace; {why}"
                )
            continue
        verdict = "passed" if result.passed else "FAILED"
        overall = next((g for g in result.gates if g.name == "p95 overall"), None)
        p95 = f"p95 {overall.value:.0f} ms, " if overall and overall.value is not None else ""
        lines.append(
            f"{target.name}: {verdict} ({p95}{result.achieved_rate:.1f} of "
            f"{result.asked_rate:.1f} req/s)"
        )
    return lines


def _record(run: Run, results: Sequence[tuple[Target, RunResult]], folder: Path) -> None:
    def change(state: CutoverState) -> None:
        for target, result in results:
            figures: dict[str, Any] = {
                "url": target.url,
                "report": _shown(run.settings, folder),
                "asked_rate": result.asked_rate,
                "achieved_rate": result.achieved_rate,
                "users": result.http_users,
            }
            if result.knee is not None and result.knee.knee is not None:
                figures["knee_rate"] = result.knee.knee.asked_rate
                figures["knee_p95_ms"] = result.knee.knee.p95
            failed = failed_gates(result.gates)
            detail = "; ".join(f"{g.name}: {g.detail}" for g in failed) or "all gates pass"
            key = "loadtest-knee" if result.mode == "knee" else "loadtest"
            state.gates[f"{key}-{target.name}"] = gate_record(not failed, detail, **figures)

    run.update(change)
