"""Fixtures shared by the whole suite: real databases for integration tests, and the CLI run in
an isolated var dir.

Databases (session scope, created only when a test asks for them, so unit tests stay fast):
- `postgres_server_url`: a PostgreSQL server to create databases on: TEST_DATABASE_URL when set
  (a dead one fails the tests that need it, naming it), else a local server on 127.0.0.1:5432
  that lets user postgres or the current user in without a password, else an embedded server
  started for the session under a temporary directory and stopped by pid at the end.
- `database_url`: a fresh database (`cutover_test_<8 hex>`) on that server, migrated to head
  with Alembic, as `postgresql+asyncpg://...`; dropped at the end of the session.
- `redis_url`: TEST_REDIS_URL, else a local Redis on 127.0.0.1:6379, else an embedded one; the
  session claims a database number (1-15) no other running session holds and flushes it first.
  Tests that use Redis must go through this fixture, never a fixed URL or db 0.
TEST_DATABASES=embedded skips the local servers (and TEST_*_URL): what a machine without any
database server sees.

CLI: `cli_env` is an environment whose var dir and .env live in tmp_path (and with no
DATABASE_URL/REDIS_URL inherited); run commands with `run_cli(cli_env, "status", "--json")`.
Whatever a test started through it is stopped by pid afterwards.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ops import databases, embedded, services
from ops.settings import PROJECT_ROOT, OpsSettings, load_settings

Env = dict[str, str]

# Settings a developer's shell or .env may carry that must not leak into a test's CLI run.
CLI_ENV_DROPPED = (
    "DATABASE_URL",
    "REDIS_URL",
    "DATABASE_ORIGIN",
    "REDIS_ORIGIN",
    "EMBEDDED_POSTGRES_PORT",
    "EMBEDDED_REDIS_PORT",
)
REDIS_CLAIM_PREFIX = "cutover-tests:claim:"
# A claim lapses this long after its session stops renewing it (a killed run frees its db soon).
REDIS_CLAIM_SECONDS = 300
REDIS_CLAIM_RENEW_EVERY = 60.0


# --- the CLI in an isolated var dir ------------------------------------------------------------


def run_cli(env: Env, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """`python -m ops ARGS` (what ./start.sh runs) in a subprocess, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stop_recorded(settings: OpsSettings, grace: float = 5) -> None:
    """Stop every process recorded under the settings' var/run, by pid."""
    for record in services.pid_records(settings):
        services.stop_service(settings, record.name, grace=grace)


@pytest.fixture
def cli_env(tmp_path: Path) -> Iterator[Env]:
    """A CLI environment isolated in tmp_path: its own var dir and .env, the mock on free ports."""
    environment = {
        key: value for key, value in os.environ.items() if key not in CLI_ENV_DROPPED
    } | {
        "CUTOVER_VAR_DIR": str(tmp_path / "var"),
        "CUTOVER_ENV_FILE": str(tmp_path / ".env"),
        "MOCK_PORT": str(services.free_port()),
        "MOCK_ADMIN_PORT": str(services.free_port()),
        "CUTOVER_HEALTH_TIMEOUT": "30",
        "CUTOVER_STOP_GRACE": "5",
        "COLUMNS": "200",
    }
    try:
        yield environment
    finally:
        stop_recorded(load_settings(environment), grace=2)


# --- PostgreSQL --------------------------------------------------------------------------------


def only_embedded() -> bool:
    return os.environ.get("TEST_DATABASES", "").strip().lower() == "embedded"


def _enterable_dir(prefix: str) -> Path:
    # Not pytest's tmp_path: that one is private to its owner (0700), and an embedded PostgreSQL
    # started by root runs as an unprivileged user who must be able to enter its data directory.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture
def open_tmp_path() -> Iterator[Path]:
    """A temporary directory other users may enter (0755): where an embedded PostgreSQL started
    as root (run by an unprivileged user) can live. Removed afterwards."""
    path = _enterable_dir("cutover-test-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def embedded_servers(kind: str) -> Iterator[tuple[OpsSettings, embedded.Started]]:
    """An embedded PostgreSQL or Redis under a temporary var dir, stopped by pid afterwards."""
    root = _enterable_dir(f"cutover-test-{kind}-")
    settings = load_settings({"CUTOVER_VAR_DIR": str(root / "var"), "CUTOVER_ENV_FILE": ""})
    config = embedded.EmbeddedConfig(
        postgres_port=services.free_port(),
        redis_port=services.free_port(),
        database="cutover",
        role="cutover",
        system_user=embedded.DEFAULT_SYSTEM_USER,
    )
    try:
        if kind == "postgres":
            started = embedded.start_postgres(settings, config)
        else:
            started = embedded.start_redis(settings, config)
        yield settings, started
    finally:
        stop_recorded(settings)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """An admin URL (postgresql+asyncpg://) of a PostgreSQL server tests may create databases on."""
    given = os.environ.get("TEST_DATABASE_URL", "").strip()
    if only_embedded():
        with embedded_servers("postgres") as (_, started):
            yield databases.with_database(started.url, "postgres")
        return
    if given:
        probe = databases.probe_postgres(given)
        if not probe.ok:
            pytest.fail(
                f"TEST_DATABASE_URL={databases.mask_url(given)} does not answer: {probe.error}",
                pytrace=False,
            )
        yield databases.asyncpg_url(given)
        return
    local = databases.local_postgres_url(databases=("test", "postgres"))
    if local is not None:
        yield local
        return
    with embedded_servers("postgres") as (_, started):
        yield databases.with_database(started.url, "postgres")


@pytest.fixture(scope="session")
def database_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh database for this test session, migrated to head; dropped at the end."""
    name = f"cutover_test_{secrets.token_hex(4)}"
    databases.create_database(postgres_server_url, name)
    url = databases.with_database(postgres_server_url, name)
    try:
        databases.upgrade_head(url)
        yield url
    finally:
        databases.drop_database(postgres_server_url, name)


# --- Redis -------------------------------------------------------------------------------------


def _claim_redis_db(server_url: str) -> tuple[int, str]:
    """A database number (1-15) no other running test session holds, claimed in db 0."""
    token = secrets.token_hex(8)
    client = redis.Redis.from_url(databases.redis_db_url(server_url, 0), socket_timeout=5)
    try:
        numbers = list(range(1, 16))
        random.shuffle(numbers)
        for number in numbers:
            if client.set(f"{REDIS_CLAIM_PREFIX}{number}", token, nx=True, ex=REDIS_CLAIM_SECONDS):
                return number, token
    finally:
        client.close()
    pytest.fail(f"every Redis database 1-15 on {server_url} is claimed by a test session")


@contextlib.contextmanager
def _held_claim(server_url: str, number: int, token: str) -> Iterator[None]:
    """Renew the claim while the session runs; release it at the end."""
    key = f"{REDIS_CLAIM_PREFIX}{number}"
    client = redis.Redis.from_url(databases.redis_db_url(server_url, 0), socket_timeout=5)
    done = threading.Event()

    def renew() -> None:
        while not done.wait(REDIS_CLAIM_RENEW_EVERY):
            with contextlib.suppress(redis.RedisError):
                client.set(key, token, xx=True, ex=REDIS_CLAIM_SECONDS)

    renewer = threading.Thread(target=renew, name="redis-claim", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        done.set()
        renewer.join(timeout=10)
        with contextlib.suppress(redis.RedisError):
            if client.get(key) == token.encode():
                client.delete(key)
        client.close()


@contextlib.contextmanager
def _redis_server() -> Iterator[str]:
    given = os.environ.get("TEST_REDIS_URL", "").strip()
    if only_embedded():
        with embedded_servers("redis") as (_, started):
            yield started.url
        return
    if given:
        probe = databases.probe_redis(given)
        if not probe.ok:
            pytest.fail(
                f"TEST_REDIS_URL={databases.mask_url(given)} does not answer: {probe.error}",
                pytrace=False,
            )
        yield given
        return
    local = databases.local_redis_url()
    if local is not None:
        yield local
        return
    with embedded_servers("redis") as (_, started):
        yield started.url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """redis://host:port/N: a database of its own for this session, flushed at the start."""
    with _redis_server() as server_url:
        number, token = _claim_redis_db(server_url)
        url = databases.redis_db_url(server_url, number)
        client = redis.Redis.from_url(url, socket_timeout=5)
        try:
            client.flushdb()
        finally:
            client.close()
        with _held_claim(server_url, number, token):
            yield url


def leftovers(path: Path, groups: set[int]) -> list[int]:
    """Pids still running in one of `groups` (a server and its children share the group of the
    pid recorded for it) or mentioning `path` on their command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if fields[0] in ("Z", "X"):
            continue  # exited, waiting for its parent to collect it: runs nothing
        if int(fields[2]) in groups or str(path) in cmdline:
            found.append(int(entry.name))
    return found
