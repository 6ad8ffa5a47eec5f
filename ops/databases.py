"""Which PostgreSQL and Redis this project uses, whether they answer, and the schema's revision.

The rule (ARCHITECTURE.md, "Which databases"): a set DATABASE_URL/REDIS_URL is used as given and
a dead one fails naming it, never silently replaced. Unset: local servers on the default ports if
they answer, else `docker compose` when a Docker engine runs, else the embedded servers
(ops/embedded.py); `--embedded` forces them. The choice is written into `.env` with its origin
(DATABASE_ORIGIN, REDIS_ORIGIN), so later commands and both backends use the same databases and
the next `db` keeps them: embedded ones are started again, any other must answer.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

import redis
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

# asyncpg_url and mask_url live with the backends' settings; callers keep reaching them here.
from contract.environment import asyncpg_url as asyncpg_url
from contract.environment import mask_url as mask_url
from ops import embedded
from ops.services import port_in_use
from ops.settings import PROJECT_ROOT, OpsSettings, read_env_file
from ops.state import write_atomic

ASYNCPG_SCHEME = "postgresql+asyncpg"
LOCAL_POSTGRES_PORT = 5432
LOCAL_REDIS_PORT = 6379
DEFAULT_DATABASE = "cutover"
PROBE_TIMEOUT = 3.0

Origin = Literal["set", "local", "compose", "embedded"]
ORIGINS: tuple[Origin, ...] = ("set", "local", "compose", "embedded")
# What each origin is called in messages.
ORIGIN_TEXT: dict[Origin, str] = {
    "set": "set by you",
    "local": "the local server",
    "compose": "docker compose",
    "embedded": "embedded, under var/",
}


class DatabaseError(Exception):
    """A database cannot be used; `precondition` means the operator must fix a setting (exit 2)."""

    def __init__(self, message: str, next_step: str | None = None, *, precondition: bool) -> None:
        super().__init__(message)
        self.next_step = next_step
        self.precondition = precondition


# --- URLs -----------------------------------------------------------------------------------


def libpq_url(url: str) -> str:
    """The same URL as psql and asyncpg.connect() take it: `postgresql://`."""
    return "postgresql://" + asyncpg_url(url).partition("://")[2]


def with_database(url: str, name: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def redis_db_url(url: str, number: int) -> str:
    """The same Redis server, database `number`."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{number}", parts.query, parts.fragment))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or ""


def env_file_path() -> Path:
    """`.env` of the project, or CUTOVER_ENV_FILE (as ops.settings reads it)."""
    raw = os.environ.get("CUTOVER_ENV_FILE", "").strip()
    if not raw:
        return PROJECT_ROOT / ".env"
    path = Path(raw).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def configured_database_url() -> str | None:
    """DATABASE_URL from the environment, else from `.env`; None when unset."""
    return _configured("DATABASE_URL")


def configured_redis_url() -> str | None:
    """REDIS_URL from the environment, else from `.env`; None when unset."""
    return _configured("REDIS_URL")


def _configured(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or read_env_file(env_file_path()).get(name, "").strip() or None


# --- probes ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PostgresProbe:
    """One connection attempt: the server's version and the schema's revision, or the error."""

    ok: bool
    version: str | None = None
    revision: str | None = None
    error: str | None = None


def _short_error(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__ or exc
    inner = getattr(exc, "orig", None) or cause
    message = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    return f"{type(inner).__name__}: {message}" if message else type(inner).__name__


async def _probe_postgres(url: str, connect_seconds: float) -> PostgresProbe:
    engine = create_async_engine(
        asyncpg_url(url), poolclass=NullPool, connect_args={"timeout": connect_seconds}
    )
    try:
        async with engine.connect() as connection:
            version = await connection.scalar(text("SHOW server_version"))
            has_table = await connection.scalar(text("SELECT to_regclass('alembic_version')"))
            revision = None
            if has_table is not None:
                revision = await connection.scalar(text("SELECT version_num FROM alembic_version"))
        return PostgresProbe(
            ok=True, version=str(version), revision=None if revision is None else str(revision)
        )
    except (OSError, SQLAlchemyError, TimeoutError, ValueError) as exc:
        return PostgresProbe(ok=False, error=_short_error(exc))
    finally:
        await engine.dispose()


def probe_postgres(url: str, timeout: float = PROBE_TIMEOUT) -> PostgresProbe:
    """Connect once; never raises. Call from synchronous code only (it runs its own loop)."""
    try:
        return asyncio.run(asyncio.wait_for(_probe_postgres(url, timeout), timeout + 2))
    except TimeoutError:
        return PostgresProbe(ok=False, error=f"no answer within {timeout:.0f} s")
    except ValueError as exc:
        return PostgresProbe(ok=False, error=str(exc))


@dataclass(frozen=True, slots=True)
class RedisProbe:
    ok: bool
    version: str | None = None
    error: str | None = None


def probe_redis(url: str, timeout: float = PROBE_TIMEOUT) -> RedisProbe:
    """PING and read the version; never raises."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    except ValueError as exc:
        return RedisProbe(ok=False, error=f"bad URL: {exc}")
    try:
        client.ping()
        info = client.info("server")
        return RedisProbe(ok=True, version=str(info.get("redis_version", "?")))
    except redis.RedisError as exc:
        return RedisProbe(ok=False, error=f"{type(exc).__name__}: {exc}")
    finally:
        client.close()


# --- databases on a server ------------------------------------------------------------------


async def _admin(url: str, statements: Iterable[tuple[str, dict[str, str]]]) -> list[object]:
    engine = create_async_engine(
        asyncpg_url(url),
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"timeout": PROBE_TIMEOUT},
    )
    try:
        async with engine.connect() as connection:
            results: list[object] = []
            for sql, params in statements:
                result = await connection.execute(text(sql), params)
                results.append(result.scalar() if result.returns_rows else None)
            return results
    finally:
        await engine.dispose()


def create_database(admin_url: str, name: str) -> bool:
    """Create database `name` on the server of `admin_url` unless it exists (another creator at
    the same moment included); True when this call created it."""
    return asyncio.run(embedded.create_database(asyncpg_url(admin_url), name, PROBE_TIMEOUT))


def drop_database(admin_url: str, name: str) -> None:
    """Drop database `name`, ending its sessions first (they would block the drop)."""
    terminate = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = :n AND pid <> pg_backend_pid()"
    )
    [_, version] = asyncio.run(
        _admin(admin_url, [(terminate, {"n": name}), ("SHOW server_version_num", {})])
    )
    # pg_terminate_backend does not wait for the session to end; FORCE (PostgreSQL 13+) does.
    force = " WITH (FORCE)" if int(str(version)) >= 130000 else ""
    dropped = embedded.quoted_database_name(name)
    asyncio.run(_admin(admin_url, [(f"DROP DATABASE IF EXISTS {dropped}{force}", {})]))


# --- Alembic --------------------------------------------------------------------------------


def alembic_config(url: str | None = None) -> Config:
    """alembic.ini of the project, pointed at `url`, leaving the caller's logging alone."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.attributes["configure_logger"] = False
    if url is not None:
        config.attributes["database_url"] = asyncpg_url(url)
    return config


def head_revision() -> str:
    """The newest revision in migrations/versions."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise DatabaseError("migrations/versions has no revision", precondition=True)
    return head


def upgrade_head(url: str) -> None:
    """`alembic upgrade head` on `url` (in this process)."""
    command.upgrade(alembic_config(url), "head")


def downgrade(url: str, target: str) -> None:
    """`alembic downgrade TARGET` on `url` (e.g. "-1" or "base")."""
    command.downgrade(alembic_config(url), target)


def table_names(url: str) -> set[str]:
    """The tables of the public schema."""

    async def run() -> set[str]:
        engine = create_async_engine(asyncpg_url(url), poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                )
                return {str(row[0]) for row in rows}
        finally:
            await engine.dispose()

    return asyncio.run(run())


def schema_drift(url: str) -> list[str]:
    """What `alembic check` would report: differences between the models and the database."""
    # The schema models, needed only here: the rest of `db` never loads them.
    from backend.db.models import Base

    def compare(connection: Connection) -> list[str]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        return [repr(diff) for diff in compare_metadata(context, Base.metadata)]

    async def run() -> list[str]:
        engine = create_async_engine(asyncpg_url(url), poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(compare)
        finally:
            await engine.dispose()

    return asyncio.run(run())


# --- which databases ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Choice:
    """One chosen database: its URL, where it comes from, and why it was chosen."""

    kind: Literal["postgres", "redis"]
    url: str
    origin: Origin
    why: str


@dataclass(slots=True)
class Resolution:
    """Both databases, the embedded servers started for them, and what `.env` must record."""

    postgres: Choice
    redis: Choice
    started: list[embedded.Started] = field(default_factory=list)
    env_updates: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Variable:
    kind: Literal["postgres", "redis"]
    name: str
    origin_name: str
    label: str


VARIABLES = (
    _Variable("postgres", "DATABASE_URL", "DATABASE_ORIGIN", "PostgreSQL"),
    _Variable("redis", "REDIS_URL", "REDIS_ORIGIN", "Redis"),
)


def docker_engine_runs(timeout: float = 10.0) -> bool:
    """Whether a Docker engine answers `docker info` (a client without an engine fails fast)."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        probe = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def local_postgres_url(
    databases: Iterable[str] = ("postgres",), port: int = LOCAL_POSTGRES_PORT
) -> str | None:
    """A URL of a local server on 127.0.0.1:`port` that lets user postgres or the current user
    in without a password, on the first of `databases` that exists; None when there is none."""
    if not port_in_use("127.0.0.1", port):
        return None
    users = dict.fromkeys(("postgres", getpass.getuser()))
    for database in databases:
        for user in users:
            url = f"{ASYNCPG_SCHEME}://{user}@127.0.0.1:{port}/{database}"
            if probe_postgres(url, timeout=2.0).ok:
                return url
    return None


def local_redis_url(port: int = LOCAL_REDIS_PORT) -> str | None:
    """redis://127.0.0.1:`port`/0 when a Redis answers there."""
    url = f"redis://127.0.0.1:{port}/0"
    return url if probe_redis(url, timeout=1.0).ok else None


def _answers(kind: str, url: str) -> str | None:
    """None when the database at `url` answers, else why not."""
    if kind == "postgres":
        return probe_postgres(url).error
    return probe_redis(url).error


def configured(settings: OpsSettings) -> dict[str, tuple[str, Origin, bool]]:
    """Per kind, the URL set (environment first, then `.env`), its origin, and whether it comes
    from the process environment; kinds with no URL are left out."""
    file_values = read_env_file(settings.env_file)
    found: dict[str, tuple[str, Origin, bool]] = {}
    for variable in VARIABLES:
        from_environment = os.environ.get(variable.name, "").strip()
        if from_environment:
            found[variable.kind] = (from_environment, "set", True)
            continue
        url = file_values.get(variable.name, "").strip()
        if url:
            raw = file_values.get(variable.origin_name, "").strip()
            origin: Origin = raw if raw in ORIGINS else "set"
            found[variable.kind] = (url, origin, False)
    return found


def resolve(settings: OpsSettings, *, force_embedded: bool = False) -> Resolution:
    """Choose both databases by the rule above and start what has to run.

    Raises DatabaseError naming a set URL that does not answer (a precondition: exit 2), or a
    server that could not be started.
    """
    given = configured(settings)
    chosen: dict[str, Choice] = {}
    to_embed: dict[str, str] = {}  # kind → why
    unset: list[Literal["postgres", "redis"]] = []
    notes: list[str] = []
    for variable in VARIABLES:
        kind = variable.kind
        if force_embedded:
            if kind in given and given[kind][2]:
                notes.append(
                    f"--embedded: {variable.name}={mask_url(given[kind][0])} is not used now, "
                    f"but set in your environment it wins over .env for later commands: unset it"
                )
            elif kind in given and given[kind][1] != "embedded":
                notes.append(
                    f"--embedded: {variable.name}={mask_url(given[kind][0])} is replaced in .env"
                )
            to_embed[kind] = "--embedded"
            continue
        if kind not in given:
            unset.append(kind)
            continue
        url, origin, from_environment = given[kind]
        if origin == "embedded":
            to_embed[kind] = "chosen earlier by ./start.sh db"
            continue
        error = _answers(kind, url)
        if error is not None:
            where = "in your environment" if from_environment else f"in {settings.env_file.name}"
            earlier = "" if origin == "set" else f" (chosen earlier: {ORIGIN_TEXT[origin]})"
            again = (
                f", or remove {variable.name} and {variable.origin_name} there to choose again"
                if origin != "set"
                else ""
            )
            raise DatabaseError(
                f"{variable.name}={mask_url(url)}{earlier} does not answer: {error}",
                f"start that server, or correct {variable.name} {where}{again}",
                precondition=True,
            )
        why = f"{variable.name} {where_set(origin, from_environment)}"
        chosen[kind] = Choice(kind=kind, url=url, origin=origin, why=why)

    if "postgres" in unset:
        local = local_postgres_url()
        if local is not None:
            create_database(local, DEFAULT_DATABASE)
            chosen["postgres"] = Choice(
                kind="postgres",
                url=with_database(local, DEFAULT_DATABASE),
                origin="local",
                why=f"a local server answers on 127.0.0.1:{LOCAL_POSTGRES_PORT}",
            )
    if "redis" in unset:
        local_redis = local_redis_url()
        if local_redis is not None:
            chosen["redis"] = Choice(
                kind="redis",
                url=local_redis,
                origin="local",
                why=f"a local server answers on 127.0.0.1:{LOCAL_REDIS_PORT}",
            )
    remaining = [kind for kind in unset if kind not in chosen]
    if remaining and docker_engine_runs():
        _compose(settings, remaining, chosen)
    elif remaining:
        for kind in remaining:
            to_embed[kind] = "no local server on the default port, no Docker engine"

    resolution = Resolution(
        postgres=Choice(kind="postgres", url="", origin="embedded", why=""),
        redis=Choice(kind="redis", url="", origin="embedded", why=""),
        notes=notes,
    )
    if to_embed:
        _start_embedded(settings, to_embed, chosen, resolution)
    resolution.postgres, resolution.redis = chosen["postgres"], chosen["redis"]
    file_values = read_env_file(settings.env_file)
    for variable in VARIABLES:
        choice = chosen[variable.kind]
        for name, value in ((variable.name, choice.url), (variable.origin_name, choice.origin)):
            if file_values.get(name) != value:
                resolution.env_updates[name] = value
    return resolution


def where_set(origin: Origin, from_environment: bool) -> str:
    if from_environment:
        return "set in the environment"
    if origin == "set":
        return "set in .env"
    return f"in .env ({ORIGIN_TEXT[origin]}, chosen earlier)"


def compose_postgres_url(values: Mapping[str, str]) -> str:
    """The URL of docker-compose.yml's PostgreSQL from POSTGRES_USER, POSTGRES_PASSWORD and
    POSTGRES_DB; user and password are escaped, so any character in them survives the URL.
    """
    user = quote(values.get("POSTGRES_USER") or "cutover", safe="")
    password = quote(values.get("POSTGRES_PASSWORD") or "cutover", safe="")
    database = values.get("POSTGRES_DB") or DEFAULT_DATABASE
    return f"{ASYNCPG_SCHEME}://{user}:{password}@127.0.0.1:{LOCAL_POSTGRES_PORT}/{database}"


def _compose(
    settings: OpsSettings, kinds: list[Literal["postgres", "redis"]], chosen: dict[str, Choice]
) -> None:
    """`docker compose up` the services for `kinds`, waiting until they are healthy."""
    docker = shutil.which("docker") or "docker"
    try:
        started = subprocess.run(
            [docker, "compose", "up", "--detach", "--wait", *kinds],
            cwd=settings.root,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DatabaseError(
            f"docker compose up {' '.join(kinds)} failed: {exc}",
            "./start.sh db --embedded runs without Docker",
            precondition=False,
        ) from None
    if started.returncode != 0:
        raise DatabaseError(
            f"docker compose up {' '.join(kinds)} failed: "
            f"{(started.stderr or started.stdout).strip()[-600:]}",
            "./start.sh db --embedded runs without Docker",
            precondition=False,
        )
    urls = {
        "postgres": compose_postgres_url({**read_env_file(settings.env_file), **os.environ}),
        "redis": f"redis://127.0.0.1:{LOCAL_REDIS_PORT}/0",
    }
    for kind in kinds:
        chosen[kind] = Choice(
            kind=kind, url=urls[kind], origin="compose", why="a Docker engine runs"
        )


Starter = Callable[[OpsSettings, embedded.EmbeddedConfig], embedded.Started]


def _start_embedded(
    settings: OpsSettings,
    kinds: Mapping[str, str],
    chosen: dict[str, Choice],
    resolution: Resolution,
) -> None:
    try:
        config = embedded.embedded_config(settings)
    except embedded.EmbeddedError as exc:
        raise DatabaseError(str(exc), "fix it in .env", precondition=True) from None
    servers: tuple[tuple[Literal["postgres", "redis"], str, Starter, int], ...] = (
        ("postgres", "PostgreSQL", embedded.start_postgres, config.postgres_port),
        ("redis", "Redis", embedded.start_redis, config.redis_port),
    )
    for kind, title, starter, port in servers:
        if kind not in kinds:
            continue
        started = _start(starter, settings, config, kind)
        resolution.started.append(started)
        chosen[kind] = Choice(kind=kind, url=started.url, origin="embedded", why=kinds[kind])
        if started.port != port:
            variable = f"EMBEDDED_{kind.upper()}_PORT"
            resolution.env_updates[variable] = str(started.port)
            resolution.notes.append(
                f"port {port} is taken: the embedded {title} listens on "
                f"{started.port} (recorded in .env as {variable})"
            )


def _start(
    starter: Starter,
    settings: OpsSettings,
    config: embedded.EmbeddedConfig,
    name: str,
) -> embedded.Started:
    try:
        return starter(settings, config)
    except embedded.MissingBinaryError as exc:
        raise DatabaseError(str(exc), None, precondition=True) from None
    except embedded.EmbeddedError as exc:
        raise DatabaseError(str(exc), f"./start.sh logs {name}", precondition=False) from None


def update_env_file(path: Path, updates: Mapping[str, str]) -> None:
    """Set KEY=VALUE lines in a dotenv file in place, keeping every other line; a key with no
    line of its own takes the place of its commented example (`# KEY=...`), else goes at the end.
    The file stays private (0600)."""
    if not updates:
        return
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []

    def key_of(line: str) -> str:
        return line.strip().removeprefix("export ").strip().partition("=")[0].strip()

    def example_of(line: str) -> str | None:
        stripped = line.strip()
        if not stripped.startswith("#") or "=" not in stripped:
            return None
        return stripped.lstrip("#").strip().partition("=")[0].strip()

    present = {key_of(line) for line in lines if not line.strip().startswith("#")}
    remaining = dict(updates)
    result: list[str] = []
    for line in lines:
        key = key_of(line)
        example = example_of(line)
        if not line.strip().startswith("#") and key in remaining:
            result.append(f"{key}={remaining.pop(key)}")
        elif example in remaining and example not in present:
            result.append(f"{example}={remaining.pop(example)}")
        else:
            result.append(line)
    if remaining:
        result.append("# Chosen by ./start.sh db (remove a URL and its ORIGIN to choose again).")
        result += [f"{key}={value}" for key, value in remaining.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, ("\n".join(result) + "\n").encode(), mode=0o600)


# --- the check ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    """The database check: both answer, and the schema is at head."""

    postgres_url: str
    redis_url: str
    postgres: PostgresProbe
    redis: RedisProbe
    head: str
    elapsed_ms: float

    @property
    def at_head(self) -> bool:
        return self.postgres.ok and self.postgres.revision == self.head

    @property
    def passed(self) -> bool:
        return self.at_head and self.redis.ok

    def problems(self) -> list[str]:
        found = []
        if not self.postgres.ok:
            found.append(
                f"PostgreSQL {mask_url(self.postgres_url)} does not answer: {self.postgres.error}"
            )
        elif self.postgres.revision != self.head:
            found.append(
                f"the schema of {database_name(self.postgres_url)} is at "
                f"{self.postgres.revision or 'no revision (empty)'}, head is {self.head}"
            )
        if not self.redis.ok:
            found.append(f"Redis {mask_url(self.redis_url)} does not answer: {self.redis.error}")
        return found


def check(postgres_url: str, redis_url: str) -> Check:
    """Probe both databases and compare the schema's revision with head; never raises."""
    started = time.perf_counter()
    postgres = probe_postgres(postgres_url)
    redis_probe = probe_redis(redis_url)
    return Check(
        postgres_url=postgres_url,
        redis_url=redis_url,
        postgres=postgres,
        redis=redis_probe,
        head=head_revision(),
        elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
    )
