"""Promote and rollback, done by the gateway itself so the CLI and the console act the same way.

POST /admin/promote: prod must answer its health check; a `pg_dump` of PostgreSQL is taken first
(no dump, no promotion); then every client goes to prod and the frontend env file points at the
gateway. POST /admin/rollback: the mock's users, watchlists and backtests are rebuilt from
PostgreSQL (never the other way round: a rollback does not touch PostgreSQL), then every client
goes back to the mock, whatever the outbox holds (a rollback is never blocked), and the frontend
env file points at the gateway again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from litestar import post
from litestar.exceptions import HTTPException
from litestar.types import ControllerRouterHandler

from ops.frontend_env import point_frontend
from ops.gateway.differ import RequestCopy
from ops.gateway.routing import RoutingBlocked

if TYPE_CHECKING:
    from ops.gateway.proxy import Gateway

log = logging.getLogger("ops.gateway.actions")
HEALTH = "/api/v1/health"
DUMP_TIMEOUT = 600.0
DRAIN_WAIT = 20.0

# Called with (status, reason) when an operator's action ends a running canary.
StopCanary = Callable[[str, str], Awaitable[None]]


class ActionError(HTTPException):
    """An action that could not be done; the detail says why and what to do."""


def _refused(status: int, detail: str) -> ActionError:
    return ActionError(status_code=status, detail=detail)


@dataclass(frozen=True, slots=True)
class CutoverTargets:
    """What promote and rollback act on besides the routing."""

    database_url: str | None
    mock_admin_url: str | None
    admin_token: str
    frontend_env_file: Path
    public_url: str
    backups_dir: Path


def libpq_url(url: str) -> str:
    """`postgresql+asyncpg://…` → `postgresql://…`, the form pg_dump reads."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+')[0]}://{rest}" if sep else url


def pg_dump_binary() -> str | None:
    """pg_dump of the pinned embedded PostgreSQL (16 dumps 16 and older servers), else PATH's."""
    from ops.embedded import EmbeddedError, postgres_bin_dir

    with contextlib.suppress(EmbeddedError):
        candidate = postgres_bin_dir() / "pg_dump"
        if candidate.is_file():
            return str(candidate)
    return shutil.which("pg_dump")


def _dump_paths(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target = folder / f"pre-promote-{stamp}.dump"
    partial = target.with_suffix(".partial")
    # The dump holds password hashes: readable by the owner only.
    partial.touch(mode=0o600)
    return target, partial


async def take_dump(database_url: str, folder: Path) -> Path:
    """A custom-format dump of the whole database under `folder`; RuntimeError says why not."""
    binary = pg_dump_binary()
    if binary is None:
        raise RuntimeError("pg_dump not found (install PostgreSQL's client tools)")
    target, partial = await asyncio.to_thread(_dump_paths, folder)
    process = await asyncio.create_subprocess_exec(
        binary,
        "--format=custom",
        # Level 1: a quarter of the default's time for 10 % more bytes; the dump is taken while
        # the operator waits to promote.
        "--compress=1",
        "--no-owner",
        f"--file={partial}",
        f"--dbname={libpq_url(database_url)}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(DUMP_TIMEOUT):
            _, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"pg_dump took longer than {DUMP_TIMEOUT:.0f} s") from None
    if process.returncode != 0:
        partial.unlink(missing_ok=True)
        message = stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"pg_dump failed: {message[-1] if message else process.returncode}")
    os.replace(partial, target)
    return target


class Actions:
    """The operator's actions on a running gateway, one at a time."""

    def __init__(
        self, gateway: Gateway, targets: CutoverTargets, stop_canary: StopCanary | None = None
    ) -> None:
        self.gateway = gateway
        self.targets = targets
        self.stop_canary = stop_canary
        self._busy = asyncio.Lock()
        self.last: dict[str, Any] | None = None

    async def _prod_healthy(self) -> str | None:
        """None when prod answers its health check with 200; else why not."""
        request = RequestCopy("GET", HEALTH, HEALTH, (("accept", "application/json"),), b"")
        try:
            answer = await asyncio.wait_for(self.gateway.forward("prod", request), 5.0)
        except Exception as exc:  # any failure to reach it is the answer
            return f"prod does not answer: {type(exc).__name__}"
        return None if answer.status == 200 else f"prod's health is HTTP {answer.status}"

    async def _wait_unblocked(self) -> str | None:
        """Give the outbox a moment to drain: None once promotion may go, else why not."""
        deadline = time.monotonic() + DRAIN_WAIT
        while True:
            reason = self.gateway.controller.blocked_reason("direct", "prod", 100)
            if reason is None or time.monotonic() > deadline:
                return reason
            await asyncio.sleep(0.2)

    def _point_frontend(self) -> dict[str, str]:
        return point_frontend(self.targets.frontend_env_file, self.targets.public_url)

    async def promote(self) -> dict[str, Any]:
        async with self._busy:
            problem = await self._prod_healthy()
            if problem is not None:
                raise _refused(503, f"not promoted: {problem}")
            blocked = await self._wait_unblocked()
            if blocked is not None:
                raise _refused(409, f"not promoted: {blocked}")
            if self.targets.database_url is None:
                raise _refused(503, "not promoted: no DATABASE_URL, so no pg_dump can be taken")
            try:
                dump = await take_dump(self.targets.database_url, self.targets.backups_dir)
            except RuntimeError as exc:
                raise _refused(503, f"not promoted: {exc}") from None
            blocked = self.gateway.controller.blocked_reason("direct", "prod", 100)
            if blocked is not None:  # a mirror failed during the dump: the canary stays as is
                raise _refused(409, f"not promoted: {blocked}")
            if self.stop_canary is not None:
                await self.stop_canary("promoted", "promoted by the operator")
            try:
                self.gateway.controller.set("direct", "prod", 100)
            except RoutingBlocked as exc:
                raise _refused(409, f"not promoted: {exc}") from None
            frontend = self._point_frontend()
            self.last = {"action": "promote", "backup": str(dump), "frontend": frontend}
            log.info("promoted: every client to prod; backup %s", dump)
            return {**self.gateway.describe(), **self.last}

    async def rollback(self) -> dict[str, Any]:
        async with self._busy:
            rebuilt: dict[str, int] | None = None
            if self.targets.database_url is not None and self.targets.mock_admin_url:
                from ops.records import RecordsError, rebuild_mock

                try:
                    counts = await rebuild_mock(
                        self.targets.database_url,
                        self.targets.mock_admin_url,
                        self.targets.admin_token,
                    )
                except RecordsError as exc:
                    raise _refused(503, f"not rolled back: {exc}") from None
                rebuilt = {
                    "users": counts.users,
                    "watchlists": counts.watchlists,
                    "backtests": counts.backtests,
                }
            if self.stop_canary is not None:
                await self.stop_canary("rolled_back", "rolled back by the operator")
            self.gateway.controller.set("direct", "mock", 0, force=True)
            frontend = self._point_frontend()
            self.last = {"action": "rollback", "rebuilt": rebuilt, "frontend": frontend}
            log.info("rolled back: every client to the mock; rebuilt %s", rebuilt)
            return {**self.gateway.describe(), **self.last}

    def handlers(self) -> list[ControllerRouterHandler]:
        """POST /promote and POST /rollback, mounted under the guarded /admin router."""

        @post("/promote", status_code=200)
        async def promote() -> dict[str, Any]:
            return await self.promote()

        @post("/rollback", status_code=200)
        async def rollback() -> dict[str, Any]:
            return await self.rollback()

        return [promote, rollback]
