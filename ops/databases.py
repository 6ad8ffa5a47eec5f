"""Which PostgreSQL and Redis this project uses, and whether they answer.

A set DATABASE_URL/REDIS_URL is used as given and never silently replaced; unset, local servers
on the default ports, else docker compose, else the embedded servers (see ops/embedded.py).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from ops.settings import PROJECT_ROOT, read_env_file

ASYNCPG_SCHEME = "postgresql+asyncpg"
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg", "postgresql+psycopg")


def asyncpg_url(url: str) -> str:
    """`postgresql://` / `postgres://` (or any postgresql+driver) → `postgresql+asyncpg://`."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {mask_url(url)}")
    return f"{ASYNCPG_SCHEME}://{rest}"


def libpq_url(url: str) -> str:
    """The same URL as asyncpg.connect() and psql take it: `postgresql://`."""
    return "postgresql://" + asyncpg_url(url).partition("://")[2]


def mask_url(url: str) -> str:
    """The URL with its password replaced by `***`, for messages and status."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def configured_database_url() -> str | None:
    """DATABASE_URL from the environment, else from `.env` (CUTOVER_ENV_FILE moves it)."""
    return _configured("DATABASE_URL")


def configured_redis_url() -> str | None:
    """REDIS_URL from the environment, else from `.env`."""
    return _configured("REDIS_URL")


def _configured(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    if value:
        return value
    raw = os.environ.get("CUTOVER_ENV_FILE", "").strip()
    env_file = PROJECT_ROOT / ".env"
    if raw:
        path = os.path.expanduser(raw)
        env_file = PROJECT_ROOT / path if not os.path.isabs(path) else type(env_file)(path)
    return read_env_file(env_file).get(name, "").strip() or None
