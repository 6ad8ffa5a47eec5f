"""Background processes this project starts: spawn, pid files, logs, health wait, stop by pid.

Each process runs in its own session (so a signal reaches its workers too), writes its
stdout/stderr to `var/logs/NAME.out` and its own rotating log to `var/logs/NAME.log`, and is
recorded in `var/run/NAME.pid` with its command line and start time. It is stopped only through
that pid file, after checking that the pid still runs the expected module: never by name.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import msgspec

from ops.settings import OpsSettings, child_environment
from ops.state import now_iso, pid_alive, process_start_ticks, write_atomic

HEALTH_PATH = "/api/v1/health"
OUT_ROTATE_BYTES = 5 * 1024 * 1024
OUT_KEEP = 3

# The services `stop` knows, in the order it stops them (front first, the mock last).
STOP_ORDER = ("gateway", "worker", "prod", "mock")


class ServiceError(Exception):
    """A process did not come up healthy; `output` is the end of what it printed."""

    def __init__(self, summary: str, output: str = "") -> None:
        super().__init__(f"{summary}; its output:\n{output}" if output else summary)
        self.summary = summary
        self.output = output


class PortBusyError(ServiceError):
    """The port is taken by a process this project did not start."""


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """How to run one service: its argv, the module to recognise it by, where to probe health."""

    name: str
    module: str
    argv: tuple[str, ...]
    port: int | None
    host: str = "127.0.0.1"
    health_path: str | None = HEALTH_PATH
    # Further ports the process binds (e.g. an admin port), checked free before it starts.
    other_ports: tuple[int, ...] = ()

    @property
    def url(self) -> str | None:
        return None if self.port is None else f"http://{self.host}:{self.port}"

    @property
    def health_url(self) -> str | None:
        url = self.url
        return None if url is None or self.health_path is None else url + self.health_path


def log_path(settings: OpsSettings, name: str) -> Path:
    """The service's own (rotating) log, written by the app through `--log-file`."""
    return settings.logs_dir / f"{name}.log"


def out_path(settings: OpsSettings, name: str) -> Path:
    """Whatever the process prints to stdout/stderr (start-up errors end up here)."""
    return settings.logs_dir / f"{name}.out"


def pid_path(settings: OpsSettings, name: str) -> Path:
    return settings.run_dir / f"{name}.pid"


def app_spec(
    settings: OpsSettings,
    name: str,
    module: str,
    port: int,
    *extra: str,
    other_ports: tuple[int, ...] = (),
) -> ServiceSpec:
    """A web app run as `python -m MODULE --host --port --log-file`, health at /api/v1/health."""
    argv = (
        sys.executable,
        "-m",
        module,
        "--host",
        settings.host,
        "--port",
        str(port),
        "--log-file",
        str(log_path(settings, name)),
        *extra,
    )
    return ServiceSpec(
        name=name,
        module=module,
        argv=argv,
        port=port,
        host=settings.host,
        other_ports=tuple(p for p in other_ports if p),
    )


def mock_spec(
    settings: OpsSettings,
    *,
    name: str = "mock",
    port: int | None = None,
    admin_port: int | None = None,
) -> ServiceSpec:
    """The mock backend, on MOCK_PORT and MOCK_ADMIN_PORT unless other ports are given (0 = off)."""
    admin = settings.mock_admin_port if admin_port is None else admin_port
    return app_spec(
        settings,
        name,
        "mock_backend",
        settings.mock_port if port is None else port,
        "--admin-port",
        str(admin),
        other_ports=(admin,),
    )


def known_port(settings: OpsSettings, name: str) -> int | None:
    """The configured port of a known service name, if it has one."""
    return {
        "mock": settings.mock_port,
        "prod": settings.prod_port,
        "gateway": settings.gateway_port,
    }.get(name)


class PidRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The content of `var/run/NAME.pid`."""

    pid: int
    name: str
    module: str
    argv: list[str]
    port: int | None = None
    url: str | None = None
    health_url: str | None = None
    started_at: str
    proc_start: int | None = None


def read_pid_file(settings: OpsSettings, name: str) -> PidRecord | None:
    """The recorded process for `name`, or None when there is no readable pid file."""
    try:
        return msgspec.json.decode(pid_path(settings, name).read_bytes(), type=PidRecord)
    except (FileNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def pid_records(settings: OpsSettings) -> list[PidRecord]:
    """Every readable pid file under var/run, by name."""
    if not settings.run_dir.is_dir():
        return []
    records = (read_pid_file(settings, p.stem) for p in sorted(settings.run_dir.glob("*.pid")))
    return [r for r in records if r is not None]


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_running(record: PidRecord) -> bool:
    """Whether the recorded pid still runs the recorded module (a recycled pid does not)."""
    if not pid_alive(record.pid, record.proc_start):
        return False
    cmdline = _cmdline(record.pid)
    return cmdline is None or record.module in cmdline


@dataclass(frozen=True, slots=True)
class Health:
    """One health probe: `ok` is an HTTP 200; `status` is the body's own status when it has one."""

    ok: bool
    status_code: int | None = None
    status: str | None = None
    body: dict[str, Any] | None = None
    error: str | None = None
    elapsed_ms: float | None = None


def check_health(url: str, timeout: float = 2.0, client: httpx.Client | None = None) -> Health:
    """GET `url` once; never raises."""
    started = time.perf_counter()
    try:
        if client is None:
            response = httpx.get(url, timeout=timeout)
        else:
            response = client.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return Health(ok=False, error=type(exc).__name__)
    elapsed_ms = (time.perf_counter() - started) * 1000
    body: dict[str, Any] | None = None
    with contextlib.suppress(ValueError):
        decoded = response.json()
        if isinstance(decoded, dict):
            body = decoded
    status = body.get("status") if body else None
    return Health(
        ok=response.status_code == 200,
        status_code=response.status_code,
        status=status if isinstance(status, str) else None,
        body=body,
        elapsed_ms=round(elapsed_ms, 2),
    )


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


# Below Linux's ephemeral range (32768-60999): ports the OS hands out for bind(0) and outgoing
# connections, so a port chosen there can be taken by anyone before its server binds it.
FREE_PORT_RANGE = (20000, 32767)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing uses right now, chosen at random below the ephemeral range (so parallel
    test runs rarely pick the same one); the OS picks one if none of the tries is free."""
    for _ in range(50):
        port = random.randint(*FREE_PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tail_lines(path: Path, count: int) -> list[str]:
    """The last `count` lines of a text file (reads only the end of a large file)."""
    if count <= 0 or not path.is_file():
        return []
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        block = 8192
        data = b""
        while size > 0 and data.count(b"\n") <= count:
            step = min(block, size)
            size -= step
            handle.seek(size)
            data = handle.read(step) + data
            block *= 2
    return data.decode(errors="replace").splitlines()[-count:]


def rotate(path: Path, max_bytes: int = OUT_ROTATE_BYTES, keep: int = OUT_KEEP) -> None:
    """Shift `path` to `path.1` (… up to `keep`) when it has grown over `max_bytes`."""
    try:
        if path.stat().st_size <= max_bytes:
            return
    except FileNotFoundError:
        return
    for index in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{index + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))


@dataclass(slots=True)
class StartResult:
    """What `start_service` did. `process` is set when this call spawned it (reap it in-process)."""

    record: PidRecord
    already_running: bool
    health: Health
    startup_seconds: float | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)


def _output_since(path: Path, offset: int, count: int = 15) -> str:
    """The last `count` lines written to `path` after `offset`, indented for a message."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            lines = handle.read().decode(errors="replace").splitlines()[-count:]
    except FileNotFoundError:
        lines = []
    return "\n".join("    " + line for line in lines) or "    (it printed nothing)"


def wait_healthy(
    url: str,
    deadline: float,
    *,
    process: subprocess.Popen[bytes] | None = None,
    interval: float = 0.05,
) -> Health:
    """Probe `url` until it answers 200 or `deadline` (monotonic) passes or the process exits."""
    last = Health(ok=False, error="not probed")
    with httpx.Client(timeout=1.0) as client:
        while True:
            last = check_health(url, timeout=1.0, client=client)
            if last.ok:
                return last
            if process is not None and process.poll() is not None:
                return Health(ok=False, error=f"exited with code {process.returncode}")
            if time.monotonic() >= deadline:
                return last
            time.sleep(interval)


def start_service(
    settings: OpsSettings,
    spec: ServiceSpec,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> StartResult:
    """Start `spec` in the background unless it already runs, and wait until it is healthy.

    Raises PortBusyError when a foreign process holds the port, ServiceError (with the end of its
    output) when it exits or stays unhealthy past the timeout; such a process is stopped.
    """
    timeout = settings.health_timeout if timeout is None else timeout
    existing = read_pid_file(settings, spec.name)
    if existing is not None and is_running(existing):
        health = (
            wait_healthy(existing.health_url, time.monotonic() + timeout)
            if existing.health_url
            else Health(ok=True)
        )
        if not health.ok:
            raise ServiceError(
                f"{spec.name} runs (pid {existing.pid}) but is not healthy at "
                f"{existing.health_url}: {health.error or health.status_code}"
            )
        return StartResult(record=existing, already_running=True, health=health)
    if existing is not None or pid_path(settings, spec.name).exists():
        pid_path(settings, spec.name).unlink(missing_ok=True)
    for port in (spec.port, *spec.other_ports):
        if port is not None and port_in_use(spec.host, port):
            raise PortBusyError(
                f"port {port} on {spec.host}, needed by {spec.name}, is taken by a process this "
                f"project did not start; stop it or choose another port in .env"
            )

    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    out = out_path(settings, spec.name)
    rotate(out)
    offset = out.stat().st_size if out.exists() else 0
    started = time.perf_counter()
    with out.open("ab") as out_file:
        out_file.write(f"--- {now_iso()} starting: {' '.join(spec.argv)}\n".encode())
        out_file.flush()
        process = subprocess.Popen(
            spec.argv,
            cwd=settings.root,
            env=child_environment(settings, env),
            stdin=subprocess.DEVNULL,
            stdout=out_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    record = PidRecord(
        pid=process.pid,
        name=spec.name,
        module=spec.module,
        argv=list(spec.argv),
        port=spec.port,
        url=spec.url,
        health_url=spec.health_url,
        started_at=now_iso(),
        proc_start=process_start_ticks(process.pid),
    )
    write_atomic(pid_path(settings, spec.name), msgspec.json.encode(record) + b"\n")

    def abandon() -> None:
        _kill_group(process.pid, settings.stop_grace, lambda: process.poll() is None)
        process.wait()
        pid_path(settings, spec.name).unlink(missing_ok=True)

    try:
        if spec.health_url is None:
            time.sleep(0.5)
            health = Health(ok=process.poll() is None, error="exited at once")
        else:
            health = wait_healthy(spec.health_url, time.monotonic() + timeout, process=process)
    except KeyboardInterrupt:
        abandon()  # an interrupted start leaves nothing half-up behind
        raise
    elapsed = time.perf_counter() - started
    if not health.ok:
        abandon()
        if process.returncode not in (None, -signal.SIGTERM, -signal.SIGKILL) and health.error:
            summary = f"{spec.name} {health.error} before answering its health check"
        else:
            why = health.error or f"HTTP {health.status_code}"
            summary = f"{spec.name} did not become healthy within {timeout:.0f} s ({why})"
        raise ServiceError(summary, _output_since(out, offset))
    return StartResult(
        record=record,
        already_running=False,
        health=health,
        startup_seconds=round(elapsed, 3),
        process=process,
    )


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        # Our children lead their own process group; signal the group so workers go too.
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)


def _wait_until(predicate_alive: Callable[[], bool], seconds: float) -> bool:
    """Poll until `predicate_alive()` is false; True when it ended within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not predicate_alive():
            return True
        time.sleep(0.05)
    return not predicate_alive()


def _kill_group(pid: int, grace: float, alive: Callable[[], bool]) -> bool:
    """SIGTERM, then SIGKILL after `grace` seconds; True when SIGKILL was needed."""
    _signal_group(pid, signal.SIGTERM)
    if _wait_until(alive, grace):
        return False
    _signal_group(pid, signal.SIGKILL)
    _wait_until(alive, 5.0)
    return True


StopOutcome = Literal["stopped", "killed", "not-running", "stale"]


@dataclass(frozen=True, slots=True)
class StopResult:
    name: str
    outcome: StopOutcome
    pid: int | None = None


def stop_service(settings: OpsSettings, name: str, grace: float | None = None) -> StopResult:
    """Stop the process recorded in `var/run/NAME.pid` and remove the pid file.

    A pid file whose process is gone, or whose pid now runs something else, is only removed.
    """
    path = pid_path(settings, name)
    record = read_pid_file(settings, name)
    if record is None:
        if path.exists():
            path.unlink(missing_ok=True)
            return StopResult(name=name, outcome="stale")
        return StopResult(name=name, outcome="not-running")
    if not is_running(record):
        path.unlink(missing_ok=True)
        return StopResult(name=name, outcome="stale", pid=record.pid)
    killed = _kill_group(
        record.pid,
        settings.stop_grace if grace is None else grace,
        lambda: is_running(record),
    )
    path.unlink(missing_ok=True)
    return StopResult(name=name, outcome="killed" if killed else "stopped", pid=record.pid)


def stop_order(names: list[str]) -> list[str]:
    """Known services in STOP_ORDER first, then any others (e.g. a benchmark's own mock)."""
    known = [n for n in STOP_ORDER if n in names]
    return known + sorted(n for n in names if n not in STOP_ORDER)


@contextlib.contextmanager
def temporary_service(
    settings: OpsSettings, spec: ServiceSpec, *, env: Mapping[str, str] | None = None
) -> Iterator[StartResult]:
    """A service started for the length of a `with` block and stopped by pid after it."""
    result = start_service(settings, spec, env=env)
    try:
        yield result
    finally:
        stop_service(settings, spec.name)
        if result.process is not None:
            result.process.wait()
