"""The database engine and sessions of the production backend, and what "the database is down"
means for a request: every such failure becomes a 503 naming the database, never a traceback.

The pool pings a connection before handing it out, so after PostgreSQL restarts the next request
reconnects on its own (recovery without restarting the backend).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
from litestar import Request, Response
from litestar.exceptions import HTTPException
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from contract.errors import EXCEPTION_HANDLERS, DependencyDown

DATABASE = "database (PostgreSQL)"

# asyncpg's own failures that mean the server is gone, shutting down or refusing connections.
_ASYNCPG_DOWN: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    # A read-only database (a standby, or one set read-only for maintenance) takes no writes.
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)


def create_engine(
    url: str, *, pool_size: int = 10, timeout_seconds: int = 5, application: str = "backend"
) -> AsyncEngine:
    """An asyncpg engine whose pool reconnects by itself and never waits long for a dead server."""
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=timeout_seconds,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={
            "timeout": timeout_seconds,
            "command_timeout": 60,
            "server_settings": {"application_name": f"cutover-{application}"},
        },
    )


def create_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded values after commit (services return them to the client)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_database_down(error: BaseException) -> bool:
    """Whether `error` says the database cannot be reached (as opposed to a bad statement)."""
    for item in _chain(error):
        if isinstance(item, sa_exc.IntegrityError | sa_exc.ProgrammingError | sa_exc.DataError):
            return False
        if isinstance(item, sa_exc.DBAPIError) and item.connection_invalidated:
            return True
        if isinstance(
            item,
            sa_exc.OperationalError
            | sa_exc.InterfaceError
            | sa_exc.TimeoutError
            | sa_exc.DisconnectionError,
        ):
            return True
        if isinstance(item, (*_ASYNCPG_DOWN, OSError, TimeoutError)):
            return True
    return False


@contextlib.contextmanager
def database_calls() -> Iterator[None]:
    """Turn "the database does not answer" inside the block into a 503 naming the database."""
    try:
        yield
    except DependencyDown:
        raise
    except Exception as error:
        if is_database_down(error):
            raise DependencyDown(DATABASE) from error
        raise


def database_down_handler(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    """The safety net for a database failure that escaped a service: 503, never a traceback."""
    if is_database_down(error):
        down = DependencyDown(DATABASE)
        handled: Response[Any] = EXCEPTION_HANDLERS[HTTPException](request, down)
        return handled
    bug: Response[Any] = EXCEPTION_HANDLERS[Exception](request, error)
    return bug


# Exception types the safety net is registered for (the app's other handlers stay in force).
DATABASE_EXCEPTIONS: tuple[type[Exception], ...] = (
    sa_exc.SQLAlchemyError,
    asyncpg.exceptions.PostgresError,
    asyncpg.exceptions.InterfaceError,
)
