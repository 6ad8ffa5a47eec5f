"""Databases the production backend's tests own: fresh PostgreSQL databases filled from market/,
and embedded PostgreSQL/Redis servers a test may stop and start again (never the machine's own).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import numpy as np

from market.bars import Bars
from market.calendar import DEFAULT_ASOF
from market.history import daily_history, intraday_history
from market.indicators import INDICATOR_NAMES, compute_indicators
from ops import databases, embedded, services
from ops.settings import OpsSettings, load_settings

SEED = 42
BAR_COLUMNS = ["symbol", "interval", "time", "open", "high", "low", "close", "volume"]


def fresh_database(server_url: str, prefix: str = "cutover_backend") -> tuple[str, str]:
    """A new database on the server of `server_url`, migrated to head: (url, name)."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    databases.create_database(server_url, name)
    url = databases.with_database(server_url, name)
    databases.upgrade_head(url)
    return url, name


def _moments(bars: Bars) -> list[datetime]:
    return [datetime.fromtimestamp(int(t), UTC) for t in bars.time.tolist()]


async def _fill(
    url: str, symbols: tuple[str, ...], seed: int, asof: date, intervals: tuple[str, ...]
) -> int:
    connection = await asyncpg.connect(databases.libpq_url(url))
    try:
        for symbol in symbols:
            for interval in intervals:
                bars = (
                    daily_history(seed, symbol, asof)
                    if interval == "1d"
                    else intraday_history(seed, symbol, asof)
                )
                moments = _moments(bars)
                columns = [
                    bars.open.tolist(),
                    bars.high.tolist(),
                    bars.low.tolist(),
                    bars.close.tolist(),
                    bars.volume.tolist(),
                ]
                rows = [
                    (symbol, interval, moments[i], *(column[i] for column in columns))
                    for i in range(len(bars))
                ]
                await connection.copy_records_to_table("bars", records=rows, columns=BAR_COLUMNS)
                frame = compute_indicators(bars)
                values = [
                    [None if np.isnan(v) else float(v) for v in getattr(frame, name).tolist()]
                    for name in INDICATOR_NAMES
                ]
                indicator_rows = [
                    (symbol, interval, moments[i], *(column[i] for column in values))
                    for i in range(len(bars))
                ]
                await connection.copy_records_to_table(
                    "indicators",
                    records=indicator_rows,
                    columns=["symbol", "interval", "time", *INDICATOR_NAMES],
                )
        run_id: int = await connection.fetchval(
            "INSERT INTO load_runs (status, source, seed, asof, finished_at, adjusted, params, "
            "counts, checksums, problems) VALUES ('done', 'synthetic', $1, $2, now(), false, "
            "'{}', '{}', '{}', '[]') RETURNING id",
            seed,
            asof,
        )
        return run_id
    finally:
        await connection.close()


def fill(
    url: str,
    symbols: tuple[str, ...],
    seed: int = SEED,
    asof: date = DEFAULT_ASOF,
    intervals: tuple[str, ...] = ("1d", "5m"),
) -> int:
    """Store the generator's bars at `intervals` (daily and 5-minute by default) and their
    indicators for `symbols`, as the loader does, and record a completed load run; its id."""
    return asyncio.run(_fill(url, symbols, seed, asof, intervals))


def private_dir(prefix: str) -> Path:
    # Not pytest's tmp_path (private to root): an embedded PostgreSQL run by root runs as an
    # unprivileged user who must be able to enter its data directory.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


class OwnServers:
    """An embedded PostgreSQL and Redis under a temporary var dir, stopped and started by pid."""

    def __init__(self) -> None:
        self.root = private_dir("cutover-backend-test-")
        self.settings: OpsSettings = load_settings(
            {"CUTOVER_VAR_DIR": str(self.root / "var"), "CUTOVER_ENV_FILE": ""}
        )
        self.config = embedded.EmbeddedConfig(
            postgres_port=services.free_port(),
            redis_port=services.free_port(),
            database="cutover",
            role="cutover",
            system_user=embedded.DEFAULT_SYSTEM_USER,
            postgres_port_fixed=True,
            redis_port_fixed=True,
        )
        self.postgres_url = embedded.postgres_url(self.config)
        self.redis_url = embedded.redis_url(self.config.redis_port)

    def start_postgres(self) -> None:
        embedded.start_postgres(self.settings, self.config)

    def start_redis(self) -> None:
        embedded.start_redis(self.settings, self.config)

    def stop_postgres(self) -> None:
        services.stop_service(self.settings, embedded.POSTGRES, grace=10)

    def stop_redis(self) -> None:
        services.stop_service(self.settings, embedded.REDIS, grace=5)

    def stop_all(self) -> None:
        for record in services.pid_records(self.settings):
            services.stop_service(self.settings, record.name, grace=5)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def own_servers() -> Iterator[OwnServers]:
    """Both embedded servers started (schema migrated), stopped and removed afterwards."""
    servers = OwnServers()
    try:
        servers.start_postgres()
        servers.start_redis()
        databases.upgrade_head(servers.postgres_url)
        yield servers
    finally:
        servers.stop_all()
