"""The operator's commands behind `./start.sh`: one small function per phase of the cutover.

Every command says what it did and what to run next, and exits 0 when done, 1 when its gate
failed, 2 when a precondition is missing or the usage is wrong (naming the command that provides
it), 3 when interrupted. A state-changing command holds `var/cutover.lock` while it runs and
records its outcome in the history of `var/state.json`. To add a command: write its body as a
function of a `Run` returning a one-line summary, and register it with `state_changing` (or
`read_only` when it changes nothing).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, NoReturn

import httpx
import msgspec
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ops import services
from ops.settings import OpsSettings, SettingsError, load_settings, read_env_file
from ops.state import (
    CutoverLock,
    CutoverState,
    LockHeldError,
    Outcome,
    StateError,
    StateStore,
    gate_record,
    now_iso,
    write_atomic,
)

EXIT_DONE = 0
EXIT_GATE_FAILED = 1
EXIT_PRECONDITION = 2
EXIT_INTERRUPTED = 3

# Which command brings each service up, for "not running: start it with ..." hints.
PROVIDERS = {
    "mock": "./start.sh simple",
    "prod": "./start.sh prod",
    "worker": "./start.sh worker",
    "gateway": "./start.sh shadow",
}
SERVICE_NAMES = ("mock", "prod", "worker", "gateway")

# Generated into .env by `setup`; an empty value in an existing .env is filled in too.
GENERATED_SECRETS = {
    "SECRET_KEY": lambda: secrets.token_urlsafe(48),
    "ADMIN_TOKEN": lambda: secrets.token_urlsafe(32),
}
PROJECT_PACKAGES = ("market", "contract", "mock_backend", "backend", "ops", "loadtests")
THIRD_PARTY_MODULES = (
    "litestar",
    "msgspec",
    "numpy",
    "sqlalchemy",
    "alembic",
    "asyncpg",
    "redis",
    "sentry_sdk",
    "prometheus_client",
    "jwt",
    "argon2",
    "httpx",
    "websockets",
    "uvicorn",
    "yaml",
    "locust",
)

app = typer.Typer(
    name="./start.sh",
    help="Move a frontend from the mock backend to the production backend, phase by phase.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class CommandError(Exception):
    """A command cannot finish; `next_step` tells the operator what to run about it."""

    exit_code: ClassVar[int] = EXIT_GATE_FAILED
    outcome: ClassVar[Outcome] = "failed"

    def __init__(
        self, message: str, next_step: str | None = None, *, summary: str | None = None
    ) -> None:
        super().__init__(message)
        self.next_step = next_step
        # One line for the history; the message may carry a process's output below it.
        self.summary = summary or message.partition("\n")[0]


class GateFailedError(CommandError):
    """The command ran but its gate did not pass (exit 1)."""


class PreconditionError(CommandError):
    """Something the command needs is missing; the message names the command providing it."""

    exit_code: ClassVar[int] = EXIT_PRECONDITION
    outcome: ClassVar[Outcome] = "refused"


@dataclass(frozen=True, slots=True)
class Run:
    """What a state-changing command's body gets: settings and the state, lock already held."""

    command: str
    settings: OpsSettings
    store: StateStore

    def update(self, change: Callable[[CutoverState], None]) -> CutoverState:
        return self.store.update(change)


def _fail(message: str, next_step: str | None, code: int) -> NoReturn:
    _report_error(message, next_step)
    raise typer.Exit(code)


def _report_error(message: str, next_step: str | None = None) -> None:
    err.print(Text("✗ ", style="bold red") + Text(message), soft_wrap=True)
    if next_step:
        err.print(Text("  next: ", style="bold") + Text(next_step), soft_wrap=True)


def _settings() -> OpsSettings:
    try:
        return load_settings()
    except SettingsError as exc:
        _fail(f"bad setting: {exc}", "fix it in .env (see env.example)", EXIT_PRECONDITION)


def state_changing(command: str, body: Callable[[Run], str]) -> None:
    """Run `body` holding the cutover lock and record its outcome in the state history."""
    settings = _settings()
    lock = CutoverLock(settings.lock_file)
    try:
        lock.acquire(command)
    except LockHeldError as held:
        _fail(str(held), None, EXIT_PRECONDITION)
    if lock.taken_over is not None:
        err.print(f"[yellow]![/] took over a stale lock left by {lock.taken_over.describe()}")
    store = StateStore(settings.state_file)
    code, detail = EXIT_GATE_FAILED, "unexpected error"
    outcome: Outcome = "error"
    state_readable = True
    try:
        try:
            store.load()
        except StateError as exc:
            state_readable = False
            raise PreconditionError(str(exc)) from None
        detail = body(Run(command=command, settings=settings, store=store))
        code, outcome = EXIT_DONE, "done"
    except CommandError as exc:
        code, outcome, detail = exc.exit_code, exc.outcome, exc.summary
        _report_error(str(exc), exc.next_step)
    except KeyboardInterrupt:
        code, outcome, detail = EXIT_INTERRUPTED, "interrupted", "interrupted (Ctrl-C)"
        err.print(f"[yellow]![/] {command} interrupted")
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        try:
            if state_readable:
                store.record(command, outcome, detail.splitlines()[0] if detail else "")
        finally:
            lock.release()
    if code != EXIT_DONE:
        raise typer.Exit(code)


def read_only(body: Callable[[OpsSettings], int]) -> None:
    """Run a command that changes no state: no lock, no history entry."""
    settings = _settings()
    try:
        code = body(settings)
    except CommandError as exc:
        _report_error(str(exc), exc.next_step)
        code = exc.exit_code
    except StateError as exc:
        _report_error(str(exc))
        code = EXIT_PRECONDITION
    except KeyboardInterrupt:
        err.print("[yellow]![/] interrupted")
        code = EXIT_INTERRUPTED
    if code != EXIT_DONE:
        raise typer.Exit(code)


def _shown(settings: OpsSettings, path: Path) -> str:
    """A path as the operator types it: relative to the project when inside it."""
    try:
        return str(path.relative_to(settings.root))
    except ValueError:
        return str(path)


def _next(*steps: str) -> None:
    out.print(Text("next: ", style="bold") + Text(" · ".join(steps)))


# --- setup ----------------------------------------------------------------------------------


def ensure_env_file(settings: OpsSettings) -> list[str]:
    """Create `.env` from env.example with fresh secrets, or fill empty secrets in an existing one.

    Returns what was done, one line per change (empty when `.env` was complete already).
    """
    path = settings.env_file
    if path.exists():
        existing = path.read_text(encoding="utf-8")
        current = read_env_file(path)
        missing = [name for name in GENERATED_SECRETS if not current.get(name)]
        if not missing:
            return []
        lines = [
            line for line in existing.splitlines() if line.partition("=")[0].strip() not in missing
        ]
        lines += [f"{name}={GENERATED_SECRETS[name]()}" for name in missing]
        write_atomic(path, ("\n".join(lines) + "\n").encode(), mode=0o600)
        return [f"generated {', '.join(missing)} in the existing {path.name}"]
    if not settings.env_example.is_file():
        raise PreconditionError(
            f"{settings.env_example.name} is missing, so .env cannot be written",
            "restore it: git checkout -- env.example",
        )
    lines = []
    for line in settings.env_example.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.partition("=")
        if sep and name in GENERATED_SECRETS and not value.strip():
            line = f"{name}={GENERATED_SECRETS[name]()}"
        lines.append(line)
    write_atomic(path, ("\n".join(lines) + "\n").encode(), mode=0o600)
    return [
        f"wrote {path.name} from {settings.env_example.name} with a new SECRET_KEY and ADMIN_TOKEN"
    ]


def check_imports() -> list[str]:
    """The packages that fail to import (ours) or are not installed (third-party), with why."""
    problems = []
    if sys.version_info[:2] != (3, 11):
        problems.append(f"Python {sys.version_info[0]}.{sys.version_info[1]} (3.11 is required)")
    for name in PROJECT_PACKAGES:
        try:
            importlib.import_module(name)
        except Exception as exc:
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
    problems += [
        f"{name}: not installed"
        for name in THIRD_PARTY_MODULES
        if importlib.util.find_spec(name) is None
    ]
    return problems


def _setup(run: Run) -> str:
    done = ensure_env_file(run.settings)
    for line in done:
        out.print(f"[green]✓[/] {line}")
    if not done:
        out.print(f"[green]✓[/] kept the existing {run.settings.env_file.name}")
    problems = check_imports()
    if problems:
        run.update(
            lambda s: s.gates.__setitem__("imports", gate_record(False, "; ".join(problems)))
        )
        raise GateFailedError(
            "some packages do not import:\n  " + "\n  ".join(problems),
            "./start.sh setup again after fixing them (start.sh re-installs when "
            "pyproject.toml changes), or .venv/bin/pip install -e '.[dev]'",
        )

    def change(state: CutoverState) -> None:
        state.advance("setup")
        state.gates["imports"] = gate_record(True, "all packages import")

    run.update(change)
    out.print("[green]✓[/] all packages import")
    _next("./start.sh simple (start the mock)", "./start.sh test")
    return "; ".join(done) or "kept .env; imports ok"


@app.command()
def setup() -> None:
    """Write .env from env.example (with generated secrets) and check that everything imports."""
    state_changing("setup", _setup)


# --- db -------------------------------------------------------------------------------------


@app.command()
def db(
    embedded: Annotated[
        bool,
        typer.Option("--embedded", help="Use the embedded PostgreSQL and Redis under var/."),
    ] = False,
    check: Annotated[
        bool,
        typer.Option("--check", help="Only check the chosen databases; start and migrate nothing."),
    ] = False,
) -> None:
    """Choose PostgreSQL and Redis (see ARCHITECTURE.md), migrate to head, check both."""
    from ops.phases_db import db_phase  # it imports this module

    state_changing("db", lambda run: db_phase(run, force_embedded=embedded, check_only=check))


# --- simple ---------------------------------------------------------------------------------


def _show_mock_answering(url: str) -> None:
    try:
        quote = httpx.get(f"{url}/api/v1/market-data/SPY", timeout=3.0)
        body = quote.json()
    except (httpx.HTTPError, ValueError):
        return
    if quote.status_code == 200 and isinstance(body, dict) and "price" in body:
        change = body.get("change_percent")
        change_text = f" ({change:+.2f} %)" if isinstance(change, int | float) else ""
        out.print(f"  GET /api/v1/market-data/SPY → {body['price']}{change_text}")


def _rebuild_mock_records(run: Run) -> None:
    """A mock started while PostgreSQL holds users, watchlists and backtests gets them all, so a
    restarted mock loses nothing that was written during the cutover."""
    import asyncio

    from ops import databases
    from ops.records import RecordsError, rebuild_mock

    given = databases.configured(run.settings).get("postgres")
    if given is None or not run.settings.mock_admin_port:
        return
    url = given[0]
    probe = databases.probe_postgres(url)
    if not probe.ok or probe.revision != databases.head_revision():
        out.print(
            f"[yellow]![/] the mock starts empty: PostgreSQL ({databases.mask_url(url)}) "
            f"{'is not at head' if probe.ok else 'does not answer'}, so no records to rebuild"
        )
        return
    token = {**read_env_file(run.settings.env_file), **os.environ}.get("ADMIN_TOKEN", "")
    admin = run.settings.url(run.settings.mock_admin_port)
    try:
        counts = asyncio.run(rebuild_mock(url, admin, token))
    except RecordsError as exc:
        raise GateFailedError(
            f"the mock started but could not be rebuilt from PostgreSQL: {exc}",
            "./start.sh logs mock; ./start.sh rollback (rebuilds it again)",
        ) from None
    out.print(
        f"[green]✓[/] rebuilt from PostgreSQL: {counts.users} users, {counts.watchlists} "
        f"watchlists, {counts.backtests} backtests"
    )


def _simple(run: Run) -> str:
    for line in ensure_env_file(run.settings):
        out.print(f"[green]✓[/] {line}")
    spec = services.mock_spec(run.settings)
    out.print(f"starting the mock on {spec.url} …")
    try:
        result = services.start_service(run.settings, spec)
    except services.PortBusyError as exc:
        raise PreconditionError(str(exc), "./start.sh status; set MOCK_PORT in .env") from None
    except services.ServiceError as exc:
        summary = exc.summary
        run.update(lambda s: s.gates.__setitem__("mock-health", gate_record(False, summary)))
        raise GateFailedError(str(exc), "./start.sh logs mock", summary=summary) from None
    record = result.record
    body = result.health.body or {}

    def change(state: CutoverState) -> None:
        state.advance("simple")
        state.processes["mock"] = {
            "pid": record.pid,
            "port": record.port,
            "url": record.url,
            "started_at": record.started_at,
        }
        if not result.already_running:
            state.gates["mock-health"] = gate_record(
                True, "healthy", startup_seconds=result.startup_seconds
            )

    run.update(change)
    if result.already_running:
        out.print(f"[green]✓[/] the mock already runs at {record.url} (pid {record.pid}), healthy")
        summary = f"already running (pid {record.pid})"
    else:
        out.print(
            f"[green]✓[/] the mock is up at {record.url} (pid {record.pid}, "
            f"healthy in {result.startup_seconds:.2f} s)"
        )
        summary = f"started (pid {record.pid}) in {result.startup_seconds:.2f} s"
    data = body.get("data")
    if isinstance(data, dict):
        out.print(
            f"  health: {body.get('status')} · backend {body.get('backend')} · data "
            f"{data.get('source')} (seed {data.get('seed')}, as of {data.get('asof')})"
        )
    if not result.already_running:
        _rebuild_mock_records(run)
    _show_mock_answering(str(record.url))
    out.print(f"  try: curl {record.health_url}")
    log = _shown(run.settings, services.log_path(run.settings, "mock"))
    out.print(f"  API docs: {record.url}/schema · log: {log}")
    out.print(f"  a frontend points at it with VITE_API_URL={record.url}")
    _next("./start.sh status", "./start.sh logs mock", "./start.sh stop")
    return summary


@app.command()
def simple() -> None:
    """Start the mock backend in the background and wait until it is healthy."""
    state_changing("simple", _simple)


# --- load-data / verify-data (bodies in ops/loader/commands.py) -----------------------------


@app.command("load-data")
def load_data(
    source: Annotated[
        str, typer.Option(help="synthetic (market/'s generator) or csv:FOLDER (Yahoo/Stooq).")
    ] = "synthetic",
    symbols: Annotated[
        str | None,
        typer.Option(help="Comma-separated symbols (default: the universe; csv: every file's)."),
    ] = None,
    years: Annotated[
        int,
        typer.Option(
            help="Years of daily bars back from --asof (the default covers the whole synthetic "
            "history from 2005-01-03).",
            min=1,
        ),
    ] = 22,
    intraday_days: Annotated[
        int, typer.Option(help="Calendar days of 5-minute bars up to --asof (0 = none).", min=0)
    ] = 60,
    seed: Annotated[
        int | None, typer.Option(help="Generator seed (default MARKET_SEED, else 42).", min=0)
    ] = None,
    asof: Annotated[
        str | None,
        typer.Option(help="Last date, YYYY-MM-DD (default MARKET_ASOF; csv: the files' last)."),
    ] = None,
    adjusted: Annotated[
        bool, typer.Option("--adjusted", help="Yahoo CSV: scale prices by Adj Close / Close.")
    ] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue an unfinished run with the same parameters.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: one per CPU).", min=1)
    ] = None,
    connections: Annotated[int, typer.Option(help="PostgreSQL sessions writing.", min=1)] = 2,
) -> None:
    """Load history and indicators into PostgreSQL: idempotent, resumable, with progress."""
    from ops.loader.commands import LoadArgs
    from ops.loader.commands import load_data as body  # it imports this module

    args = LoadArgs(
        source, symbols, years, intraday_days, seed, asof, adjusted, resume, as_json, workers,
        connections,
    )  # fmt: skip
    state_changing("load-data", lambda run: body(run, args))


@app.command("verify-data")
def verify_data(
    symbols: Annotated[
        str | None, typer.Option(help="Comma-separated symbols (default: every loaded one).")
    ] = None,
    generator: Annotated[
        bool, typer.Option(help="Also recompute synthetic runs' checksums with the generator.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    seed: Annotated[
        int | None, typer.Option("--sample-seed", help="Seed of the indicator sample.")
    ] = None,
) -> None:
    """Check stored bars and indicators against the load runs and market/; exit 1 on a mismatch."""
    from ops.loader.commands import VerifyArgs
    from ops.loader.commands import verify_data as body  # it imports this module

    args = VerifyArgs(symbols, generator, as_json, seed)
    state_changing("verify-data", lambda run: body(run, args))


# --- stop -----------------------------------------------------------------------------------


def _stop(run: Run, names: list[str]) -> str:
    recorded = [p.stem for p in sorted(run.settings.run_dir.glob("*.pid"))]
    targets = services.stop_order(names or recorded)
    if not targets:
        out.print("nothing to stop: no process started by this project is recorded")
        return "nothing to stop"
    results = [services.stop_service(run.settings, name) for name in targets]
    for result in results:
        if result.outcome in ("stopped", "killed"):
            how = "stopped" if result.outcome == "stopped" else "killed after the grace period"
            out.print(f"[green]✓[/] {result.name} (pid {result.pid}) {how}")
        elif result.outcome == "stale":
            out.print(f"[green]✓[/] {result.name} was not running; removed its stale pid file")
        else:
            out.print(f"  {result.name} is not running")

    def change(state: CutoverState) -> None:
        for result in results:
            state.processes.pop(result.name, None)

    run.update(change)
    return ", ".join(f"{r.name} {r.outcome}" for r in results)


@app.command()
def stop(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Services to stop (default: every one this project started)."),
    ] = None,
) -> None:
    """Stop what this project started, by pid (SIGTERM, then SIGKILL after a grace period)."""
    state_changing("stop", lambda run: _stop(run, names or []))


# --- prod / worker --------------------------------------------------------------------------


def _env_int(settings: OpsSettings, name: str, default: int, low: int, high: int) -> int:
    raw = {**read_env_file(settings.env_file), **os.environ}.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise PreconditionError(f"{name}={raw!r}: accepted {low}..{high}", "fix it in .env")
    return int(raw)


def _databases_env(run: Run) -> dict[str, str]:
    """DATABASE_URL and REDIS_URL as `./start.sh db` chose them, checked to answer at head."""
    from ops import databases

    given = databases.configured(run.settings)
    variables = (("DATABASE_URL", "postgres"), ("REDIS_URL", "redis"))
    missing = [name for name, kind in variables if kind not in given]
    if missing:
        raise PreconditionError(f"{' and '.join(missing)} not set", "./start.sh db")
    postgres_url, redis_url = given["postgres"][0], given["redis"][0]
    problems = databases.check(postgres_url, redis_url).problems()
    if problems:
        raise PreconditionError("; ".join(problems), "./start.sh db (starts and migrates them)")
    return {"DATABASE_URL": postgres_url, "REDIS_URL": redis_url}


def _start_recorded(run: Run, spec: services.ServiceSpec, env: dict[str, str]) -> str:
    """Start `spec` like `simple` starts the mock, record it in the state, say what happened."""
    try:
        result = services.start_service(run.settings, spec, env=env)
    except services.PortBusyError as exc:
        raise PreconditionError(str(exc), "./start.sh status; choose other ports in .env") from None
    except services.ServiceError as exc:
        summary = exc.summary
        run.update(
            lambda s: s.gates.__setitem__(f"{spec.name}-health", gate_record(False, summary))
        )
        raise GateFailedError(str(exc), f"./start.sh logs {spec.name}", summary=summary) from None
    record = result.record

    def change(state: CutoverState) -> None:
        if spec.name == "prod":
            state.advance("prod")
        state.processes[spec.name] = {
            "pid": record.pid,
            "port": record.port,
            "url": record.url,
            "started_at": record.started_at,
        }
        if not result.already_running:
            state.gates[f"{spec.name}-health"] = gate_record(
                True, "healthy", startup_seconds=result.startup_seconds
            )

    run.update(change)
    where = f" at {record.url}" if record.url else ""
    if result.already_running:
        out.print(f"[green]✓[/] {spec.name} already runs{where} (pid {record.pid})")
        return f"already running (pid {record.pid})"
    out.print(
        f"[green]✓[/] {spec.name} is up{where} (pid {record.pid}, "
        f"in {result.startup_seconds:.2f} s)"
    )
    return f"started (pid {record.pid}) in {result.startup_seconds:.2f} s"


def _prod(run: Run, workers: int | None) -> str:
    for line in ensure_env_file(run.settings):
        out.print(f"[green]✓[/] {line}")
    env = _databases_env(run)
    workers = workers or _env_int(run.settings, "PROD_WORKERS", 2, 1, 64)
    admin = _env_int(run.settings, "PROD_ADMIN_PORT", 8012, 0, 65535)
    spec = services.app_spec(
        run.settings,
        "prod",
        "backend",
        run.settings.prod_port,
        *("--workers", str(workers), "--admin-port", str(admin)),
        other_ports=(admin,),
    )
    out.print(f"starting the production backend on {spec.url} with {workers} workers …")
    summary = _start_recorded(run, spec, env)
    health = services.check_health(f"{spec.url}{services.HEALTH_PATH}")
    data = (health.body or {}).get("data")
    if isinstance(data, dict):
        out.print(
            f"  health: {health.status} · data {data.get('source')} (seed {data.get('seed')}, "
            f"as of {data.get('asof')})"
        )
        if data.get("seed") is None:
            out.print("[yellow]![/] no market data loaded yet: ./start.sh load-data")
    log = _shown(run.settings, services.log_path(run.settings, "prod"))
    out.print(f"  API docs: {spec.url}/schema · metrics: {spec.url}/metrics · log: {log}")
    _next("./start.sh worker (backtests)", "./start.sh status", "./start.sh logs prod")
    return summary


@app.command()
def prod(
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default PROD_WORKERS, 2).", min=1)
    ] = None,
) -> None:
    """Start the production backend (PostgreSQL + Redis) in the background, wait until healthy."""
    state_changing("prod", lambda run: _prod(run, workers))


def _worker(run: Run) -> str:
    env = _databases_env(run)
    argv = (sys.executable, "-m", "backend.worker", "--log-file")
    spec = services.ServiceSpec(
        name="worker",
        module="backend.worker",
        argv=(*argv, str(services.log_path(run.settings, "worker"))),
        port=None,
        health_path=None,
    )
    out.print("starting the backtest worker …")
    summary = _start_recorded(run, spec, env)
    _next("./start.sh status", "./start.sh logs worker")
    return summary


@app.command()
def worker() -> None:
    """Start the backtest worker (`python -m backend.worker`) in the background."""
    state_changing("worker", _worker)


# --- shadow (body in ops/phases_shadow.py) --------------------------------------------------


@app.command()
def shadow(
    duration: Annotated[
        str | None,
        typer.Option(help="Generate the frontend's reads this long (60s, 2m), then judge."),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(help="Requests/s (default: enough for --min-samples per route).", min=0.1),
    ] = None,
    min_samples: Annotated[
        int, typer.Option(help="Compared requests a route needs to be judged.", min=1)
    ] = 50,
    threshold: Annotated[
        str, typer.Option(help="Highest noise-adjusted diff rate per route (1% or 0.01).")
    ] = "1%",
) -> None:
    """The gateway answers from the mock and copies reads to prod; prints the diff table."""
    from ops.phases_shadow import ShadowArgs, shadow_phase  # it imports this module

    args = ShadowArgs(duration, rate, min_samples, threshold)
    state_changing("shadow", lambda run: shadow_phase(run, args))


# --- canary / abort / resume (bodies in ops/phases_canary.py) ------------------------------


@app.command()
def canary(
    steps: Annotated[str, typer.Option(help="Prod's weight in % at each step, rising.")] = (
        "5,25,50,100"
    ),
    hold: Annotated[str, typer.Option(help="How long each step holds (60s, 2m).")] = "60s",
    interval: Annotated[str, typer.Option(help="Analysis interval (10s, 500ms).")] = "10s",
    min_samples: Annotated[
        int, typer.Option(help="Prod's answers an interval needs; fewer pauses.", min=1)
    ] = 200,
    breaches: Annotated[
        int, typer.Option(help="Consecutive breached intervals that roll back.", min=1)
    ] = 2,
    p95_ms: Annotated[float, typer.Option(help="Highest p95 of prod's answers, in ms.")] = 100.0,
    success_rate: Annotated[str, typer.Option(help="Lowest non-5xx share (99.9%).")] = "99.9%",
    diff_rate: Annotated[str, typer.Option(help="Highest mirrored-read diff rate.")] = "1%",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Judge and report, never act (steps still advance).")
    ] = False,
) -> None:
    """Start the canary in the gateway and follow it; Ctrl-C detaches, the canary goes on."""
    from ops.phases_canary import CanaryArgs, canary_command  # it imports this module

    canary_command(
        CanaryArgs(
            steps, hold, interval, min_samples, breaches, p95_ms, success_rate, diff_rate, dry_run
        )
    )


@app.command()
def abort() -> None:
    """Stop a running canary: weight 0, status aborted; nothing else changes."""
    from ops.phases_canary import abort_command  # it imports this module

    abort_command()


@app.command()
def resume() -> None:
    """Continue an aborted or paused canary from its last step, and follow it."""
    from ops.phases_canary import resume_command  # it imports this module

    resume_command()


# --- promote / rollback / decommission (bodies in ops/phases_cutover.py) ---------------------


@app.command()
def promote() -> None:
    """Every client to prod now: a pg_dump first, then weight 100; the frontend on the gateway."""
    from ops.phases_cutover import promote_phase  # it imports this module

    state_changing("promote", promote_phase)


@app.command()
def rollback() -> None:
    """From any state: the mock rebuilt from PostgreSQL, every client back to it; prod stays up."""
    from ops.phases_cutover import rollback_phase  # it imports this module

    state_changing("rollback", rollback_phase)


@app.command()
def decommission(
    force: Annotated[
        bool, typer.Option("--force", help="Even if the state does not record a promotion.")
    ] = False,
) -> None:
    """After a promotion held: the frontend on prod directly; the gateway and the mock stopped."""
    from ops.phases_cutover import decommission_phase  # it imports this module

    state_changing("decommission", lambda run: decommission_phase(run, force))


# --- demo (body in ops/demo.py) ---------------------------------------------------------------


@app.command()
def demo(
    embedded: Annotated[
        bool, typer.Option("--embedded", help="Use embedded PostgreSQL and Redis under var/.")
    ] = False,
) -> None:
    """The whole cutover once, every stage timed: setup to promote, rollback drill, report."""
    from ops.demo import run_demo  # it imports this module

    read_only(lambda settings: run_demo(settings, embedded))


# --- frontend (body in ops/phases_frontend.py) ----------------------------------------------


@app.command()
def frontend() -> None:
    """Serve the reference dashboard on FRONTEND_PORT (3000) in the background."""
    from ops.phases_frontend import frontend_phase  # it imports this module

    read_only(frontend_phase)


# --- status ---------------------------------------------------------------------------------


def status_document(settings: OpsSettings, history: int = 20) -> dict[str, Any]:
    """Phase, mode, weight, lock, every known process with its health, gates and history."""
    state = StateStore(settings.state_file).load()
    recorded = {r.name: r for r in services.pid_records(settings)}
    names = list(SERVICE_NAMES) + sorted(n for n in recorded if n not in SERVICE_NAMES)
    processes = []
    for name in names:
        record = recorded.get(name)
        entry: dict[str, Any] = {
            "name": name,
            "pid": None,
            "alive": False,
            "port": services.known_port(settings, name),
            "url": None,
            "health": None,
        }
        if record is not None:
            alive = services.is_running(record)
            entry.update(pid=record.pid, alive=alive, port=record.port, url=record.url)
            if alive and record.health_url:
                health = services.check_health(record.health_url, timeout=2.0)
                entry["health"] = {
                    "ok": health.ok,
                    "status_code": health.status_code,
                    "status": health.status,
                    "error": health.error,
                    "elapsed_ms": health.elapsed_ms,
                }
        processes.append(entry)
    holder = CutoverLock(settings.lock_file).live_holder()
    gateway_alive = any(p["alive"] for p in processes if p["name"] == "gateway")
    return {
        "version": state.version,
        "gateway": gateway_state(settings) if gateway_alive else None,
        "phase": state.phase,
        "mode": state.mode,
        "weight": state.weight,
        "lock": msgspec.to_builtins(holder) if holder else None,
        "processes": processes,
        "gates": state.gates,
        "history": msgspec.to_builtins(state.history[-history:]),
        "at": now_iso(),
    }


def gateway_state(settings: OpsSettings) -> dict[str, Any] | None:
    """What the running gateway says of itself (routing, counts, outbox, canary); None if mute."""
    token = {**read_env_file(settings.env_file), **os.environ}.get("ADMIN_TOKEN", "")
    headers = {"Authorization": f"Bearer {token}"}
    base = settings.url(settings.gateway_admin_port)
    try:
        answer = httpx.get(f"{base}/admin/state", headers=headers, timeout=2.0)
        document: dict[str, Any] = answer.json() if answer.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return None
    return document or None


def _gateway_text(gateway: dict[str, Any]) -> Text:
    counts = gateway.get("counts") or {}
    requests = counts.get("requests") or {}
    sockets = counts.get("websockets") or {}
    outbox = gateway.get("outbox") or {}
    parts = [
        f"gateway: {gateway.get('mode')} (primary {gateway.get('primary')}, "
        f"weight {gateway.get('weight')} %)",
        "requests " + ", ".join(f"{k} {v}" for k, v in requests.items()),
        "sockets " + ", ".join(f"{k} {v}" for k, v in sockets.items()),
    ]
    if outbox:
        parts.append(f"outbox {outbox.get('pending', 0)} pending")
    return Text(" · ".join(parts))


def _health_text(entry: dict[str, Any]) -> Text:
    health = entry["health"]
    if not entry["alive"]:
        return Text("-", style="dim")
    if health is None:
        return Text("n/a", style="dim")
    if health["ok"]:
        label = health["status"] or "ok"
        return Text(f"{label} ({health['elapsed_ms']:.0f} ms)", style="green")
    return Text(str(health["error"] or f"HTTP {health['status_code']}"), style="red")


def render_status(doc: dict[str, Any]) -> Group:
    lock = doc["lock"]
    lock_text = f"held by `{lock['command']}` (pid {lock['pid']})" if lock else "free"
    header = Text.assemble(
        ("cutover ", "bold"),
        f"phase {doc['phase']} · mode {doc['mode']} · weight {doc['weight']} % · lock {lock_text}",
    )
    procs = Table(title="processes", title_justify="left", expand=False)
    for column in ("name", "pid", "state", "port", "health"):
        procs.add_column(column)
    for entry in doc["processes"]:
        state = Text("running", style="green") if entry["alive"] else Text("stopped", style="dim")
        if entry["pid"] is not None and not entry["alive"]:
            state = Text("dead (stale pid file)", style="yellow")
        procs.add_row(
            entry["name"],
            str(entry["pid"] or "-"),
            state,
            str(entry["port"] or "-"),
            _health_text(entry),
        )
    parts: list[Any] = [header, procs]
    if doc.get("gateway"):
        parts.append(_gateway_text(doc["gateway"]))
    if doc["gates"]:
        gates = Table(title="gates", title_justify="left")
        for column in ("gate", "result", "at", "detail"):
            gates.add_column(column)
        for name, gate in sorted(doc["gates"].items()):
            passed = isinstance(gate, dict) and gate.get("passed")
            gates.add_row(
                name,
                Text("pass", style="green") if passed else Text("fail", style="red"),
                str(gate.get("at", "")) if isinstance(gate, dict) else "",
                str(gate.get("detail", "")) if isinstance(gate, dict) else str(gate),
            )
        parts.append(gates)
    history = Table(title="history", title_justify="left")
    for column in ("at", "command", "outcome", "detail"):
        history.add_column(column)
    styles = {"done": "green", "failed": "red", "error": "red"}
    for item in doc["history"][-10:]:
        history.add_row(
            item["at"],
            item["command"],
            Text(item["outcome"], style=styles.get(item["outcome"], "yellow")),
            item["detail"],
        )
    if doc["history"]:
        parts.append(history)
    else:
        parts.append(Text("no command has run yet: ./start.sh simple", style="dim"))
    return Group(*parts)


def _status(settings: OpsSettings, as_json: bool, watch: bool, interval: float) -> int:
    if not watch:
        doc = status_document(settings)
        if as_json:
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        else:
            out.print(render_status(doc))
            if not any(p["alive"] for p in doc["processes"] if p["name"] == "mock"):
                _next("./start.sh simple (start the mock)")
        return EXIT_DONE
    try:
        if as_json:
            while True:
                sys.stdout.write(json.dumps(status_document(settings)) + "\n")
                sys.stdout.flush()
                time.sleep(interval)
        with Live(
            render_status(status_document(settings)), console=out, auto_refresh=False
        ) as live:
            while True:
                time.sleep(interval)
                live.update(render_status(status_document(settings)), refresh=True)
    except KeyboardInterrupt:
        return EXIT_DONE  # leaving a watch is its normal end


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.", min=0.2)] = 2.0,
) -> None:
    """Phase and history from the state file, and every known process: pid, port, health."""
    read_only(lambda settings: _status(settings, as_json, watch, interval))


# --- logs -----------------------------------------------------------------------------------


def _follow(path: Path, position: int) -> None:
    """Print what is appended to `path`, reopening it when it is rotated, until Ctrl-C."""
    handle = path.open("rb")
    handle.seek(position)
    inode = os.fstat(handle.fileno()).st_ino
    try:
        while True:
            chunk = handle.read()
            if chunk:
                sys.stdout.write(chunk.decode(errors="replace"))
                sys.stdout.flush()
                continue
            time.sleep(0.25)
            try:
                current = path.stat()
            except FileNotFoundError:
                continue
            if current.st_ino != inode or current.st_size < handle.tell():
                handle.close()
                handle = path.open("rb")
                inode = os.fstat(handle.fileno()).st_ino
    finally:
        handle.close()


def _has_content(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def _logs(settings: OpsSettings, name: str, lines: int, follow: bool) -> int:
    available = sorted({p.name.split(".")[0] for p in settings.logs_dir.glob("*.log")})
    known = sorted(set(SERVICE_NAMES) | set(available))
    if name not in known:
        raise PreconditionError(f"no service named {name!r}; known: {', '.join(known)}")
    path = services.log_path(settings, name)
    fallback = services.out_path(settings, name)
    if not _has_content(path) and fallback.is_file():
        # Start-up errors, and anything the app prints before its log is set up, land here.
        path = fallback
    if not path.is_file():
        raise PreconditionError(
            f"no log for {name} yet ({services.log_path(settings, name)} does not exist)",
            f"{PROVIDERS.get(name, './start.sh status')} starts it",
        )
    err.print(f"[dim]==> {_shown(settings, path)} <==[/]")
    for line in services.tail_lines(path, lines):
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    if follow:
        try:
            _follow(path, path.stat().st_size)
        except KeyboardInterrupt:
            return EXIT_DONE  # Ctrl-C is how a follow ends
    return EXIT_DONE


@app.command()
def logs(
    name: Annotated[str, typer.Argument(help="mock, prod, worker or gateway.")],
    lines: Annotated[int, typer.Option("-n", "--lines", help="How many lines.", min=0)] = 50,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
) -> None:
    """Show the end of a service's log (var/logs/NAME.log)."""
    read_only(lambda settings: _logs(settings, name, lines, follow))


# --- report (body in ops/report.py) --------------------------------------------------------


@app.command()
def report() -> None:
    """The cutover report, Markdown and HTML: verdict, phases, diffs, gates, load, plots."""
    from ops.report import report_command  # it imports this module

    read_only(report_command)


# --- contract / loadtest (bodies in ops/verify.py and loadtests/run.py) ---------------------


@app.command()
def contract(
    target: Annotated[
        str, typer.Option(help="mock, prod, both, or a base URL (http://127.0.0.1:8001).")
    ] = "mock",
    examples: Annotated[
        int, typer.Option(help="Schemathesis examples per operation and mode.", min=1, max=10_000)
    ] = 25,
    seed: Annotated[int, typer.Option(help="Schemathesis seed: the same seed replays.")] = 42,
    allow_writes: Annotated[
        bool,
        typer.Option(
            "--allow-writes", help="Let prod see writes too (needs a scratch DATABASE_URL)."
        ),
    ] = False,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Send only reads, whatever the target.")
    ] = False,
    suite: Annotated[bool, typer.Option(help="Run the contract suite (tests/contract).")] = True,
    fuzz: Annotated[bool, typer.Option(help="Run Schemathesis on contract/openapi.json.")] = True,
) -> None:
    """The contract suite and schema fuzzing against running servers; exit 1 on any failure."""
    from ops.verify import ContractArgs, contract_phase  # it imports this module

    args = ContractArgs(target, examples, seed, allow_writes, suite, fuzz, read_only)
    state_changing("contract", lambda run: contract_phase(run, args))


@app.command()
def loadtest(
    target: Annotated[
        str, typer.Option(help="mock, prod, both, gateway, or a loopback base URL.")
    ] = "mock",
    users: Annotated[int, typer.Option(help="Simulated dashboard users.", min=1, max=5000)] = 20,
    rate: Annotated[
        float, typer.Option(help="Asked arrival rate, requests/s (knee: the first step).", min=0.1)
    ] = 50.0,
    duration: Annotated[str, typer.Option(help="Measured time, e.g. 60s or 2m.")] = "60s",
    find_knee: Annotated[
        bool, typer.Option("--find-knee", help="Raise the rate step by step until p95 fails.")
    ] = False,
    ws_users: Annotated[
        int | None, typer.Option(help="WebSocket users (default: a tenth of --users).", min=0)
    ] = None,
    watchlist_share: Annotated[
        float | None, typer.Option(help="Share of users editing watchlists (0-1).", min=0, max=1)
    ] = None,
    p95_ms: Annotated[
        float | None, typer.Option(help="p95 threshold in ms (default LOADTEST_P95_MS, 100).")
    ] = None,
    max_failure_ratio: Annotated[
        float | None, typer.Option(help="Failure ratio threshold (default 0.001).", min=0, max=1)
    ] = None,
    step_rate: Annotated[
        float | None, typer.Option(help="Knee: rate added per step (default --rate).", min=0.1)
    ] = None,
    step_duration: Annotated[str, typer.Option(help="Knee: length of a step.")] = "10s",
    warmup: Annotated[str, typer.Option(help="Traffic before measuring (caches fill).")] = "5s",
    max_steps: Annotated[int, typer.Option(help="Knee: most steps.", min=1, max=200)] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the simulated users' choices.")] = 42,
) -> None:
    """Locust, headless, the frontend's traffic mix at a fixed arrival rate; exit 1 on a gate."""
    from loadtests.run import LoadArgs
    from loadtests.run import loadtest as body  # it imports this module

    args = LoadArgs(
        target=target, users=users, rate=rate, duration=duration, find_knee=find_knee,
        ws_users=ws_users, watchlist_share=watchlist_share, p95_ms=p95_ms,
        max_failure_ratio=max_failure_ratio, step_rate=step_rate, step_duration=step_duration,
        warmup=warmup, max_steps=max_steps, seed=seed,
    )  # fmt: skip
    state_changing("loadtest", lambda run: body(run, args))


# --- test -----------------------------------------------------------------------------------

# pytest's exit codes → ours: 0 passed, 1 failed, 2 interrupted, 3 internal error,
# 4 usage error, 5 no test collected (a test command that ran nothing has not passed).
PYTEST_EXIT = {0: EXIT_DONE, 1: EXIT_GATE_FAILED, 2: EXIT_INTERRUPTED, 4: EXIT_PRECONDITION}


def run_child(argv: list[str], cwd: Path) -> int:
    """Run a foreground child; on Ctrl-C let it finish its own interrupt handling, then 3."""
    process = subprocess.Popen(argv, cwd=cwd)
    try:
        return process.wait()
    except KeyboardInterrupt:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            # The Ctrl-C reached only us (not a terminal's whole group): pass it on.
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        raise


# The whole suite on two processes: its fixtures give each process its own servers, database and
# Redis db, so the run takes about half as long on this 2-core kind of machine.
# The fault drills, the soak and the demo are left out of the default run (see the `drill`,
# `soak` and `demo` markers in pyproject.toml): minutes each, and latency-gated.
WHOLE_SUITE_ARGS = ["-n", "2", "-m", "not soak and not drill and not demo"]


def _test(settings: OpsSettings, args: list[str]) -> int:
    args = args or WHOLE_SUITE_ARGS
    argv = [sys.executable, "-m", "pytest", *args]
    err.print(f"[dim]running: python -m pytest {' '.join(args)}[/]")
    code = run_child(argv, settings.root)
    if code == 5:
        err.print("[red]✗[/] no test ran (pytest collected none)")
    return PYTEST_EXIT.get(code, EXIT_GATE_FAILED)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    options_metavar="[PYTEST ARGS]...",
)
def test(ctx: typer.Context) -> None:
    """Run the test suite (what CI runs); any arguments go to pytest, e.g. `test -x tests/ops`."""
    read_only(lambda settings: _test(settings, list(ctx.args)))


# --- drill (body in ops/phases_drill.py) -----------------------------------------------------


@app.command()
def drill(
    name: Annotated[str | None, typer.Argument(help="A drill's name, or all.")] = None,
    show_list: Annotated[bool, typer.Option("--list", help="List the drills.")] = False,
    minutes: Annotated[
        float, typer.Option(help="soak: how long it holds the load.", min=1.5)
    ] = 10.0,
    rate: Annotated[
        float | None, typer.Option(help="soak: requests/s (default: 80% of the knee).", min=1)
    ] = None,
) -> None:
    """A rehearsed fault on a system of its own (embedded databases, free ports); exit 1 when
    its promise broke."""
    from ops.drills.outcome import DrillOptions
    from ops.phases_drill import drill_command  # it imports this module

    options = DrillOptions(minutes=minutes, rate=rate)
    read_only(lambda settings: drill_command(settings, name, show_list, options))


# --- bench ----------------------------------------------------------------------------------


def benchmarks(settings: OpsSettings) -> dict[str, str]:
    """The benchmarks under loadtests/bench/ by name: market-data → loadtests.bench.market_data."""
    folder = settings.root / "loadtests" / "bench"
    return {
        path.stem.replace("_", "-"): f"loadtests.bench.{path.stem}"
        for path in sorted(folder.glob("*.py"))
        if not path.stem.startswith("_")
    }


def _bench(settings: OpsSettings, name: str | None, url: str | None, count: int | None) -> int:
    available = benchmarks(settings)
    if name is not None and name.replace("_", "-") not in available:
        raise PreconditionError(f"no benchmark {name!r}; there are: {', '.join(available)}")
    chosen = [name.replace("_", "-")] if name else list(available)
    worst = EXIT_DONE
    for bench_name in chosen:
        argv = [sys.executable, "-m", available[bench_name]]
        if url:
            argv += ["--url", url]
        if count is not None:
            argv += ["--count", str(count)]
        code = run_child(argv, settings.root)
        worst = max(worst, EXIT_GATE_FAILED if code == 1 else code)
    return worst


@app.command()
def bench(
    name: Annotated[str | None, typer.Argument(help="One benchmark (default: all).")] = None,
    url: Annotated[
        str | None,
        typer.Option(help="Base URL to measure (default: a mock started on a free port)."),
    ] = None,
    count: Annotated[int | None, typer.Option(help="Requests to time.", min=1)] = None,
) -> None:
    """Run the benchmarks in loadtests/bench/; figures printed and saved under var/reports/."""
    read_only(lambda settings: _bench(settings, name, url, count))


def main() -> None:
    """Entry point of `python -m ops`."""
    app(prog_name="./start.sh")
