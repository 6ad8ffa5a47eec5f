"""Alembic's environment: runs the revisions on an async SQLAlchemy engine (asyncpg).

The database is, in order: a connection or URL handed over by the caller (`ops` and the tests,
through `config.attributes`), `-x database_url=...`, `sqlalchemy.url` in alembic.ini, then
DATABASE_URL from the environment, else from `.env`. `postgresql://` and `postgres://` URLs are
accepted and run on asyncpg.
"""

from __future__ import annotations

import asyncio
import logging.config

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from backend.db.models import Base
from ops.databases import asyncpg_url, configured_database_url

config = context.config
target_metadata = Base.metadata

# The CLI and the tests keep their own logging; `alembic` on the command line gets alembic.ini's.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    """The URL to migrate, from the first place that names one; SystemExit says where to set it."""
    given = config.attributes.get("database_url") or context.get_x_argument(as_dictionary=True).get(
        "database_url"
    )
    url = given or config.get_main_option("sqlalchemy.url") or configured_database_url()
    if not url:
        raise SystemExit(
            "DATABASE_URL is not set (neither in the environment nor in .env); "
            "run ./start.sh db to choose the databases, or set DATABASE_URL"
        )
    return asyncpg_url(str(url))


def configure(connection: Connection | None = None, url: str | None = None) -> None:
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        literal_binds=connection is None,
        dialect_opts={"paramstyle": "named"} if connection is None else None,
    )


def run_on(connection: Connection) -> None:
    configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_async() -> None:
    engine = create_async_engine(database_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_on)
    finally:
        await engine.dispose()


def run_offline() -> None:
    """`alembic upgrade head --sql`: print the SQL instead of running it."""
    configure(url=database_url())
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif isinstance(config.attributes.get("connection"), Connection):
    run_on(config.attributes["connection"])
else:
    asyncio.run(run_async())
