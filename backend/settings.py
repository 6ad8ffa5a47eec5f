"""The production backend's settings, read from the environment once and validated at start-up.

Every bad or missing value is a `SettingsError` naming the variable; `python -m backend` turns it
into exit code 2 before any worker starts.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from contract.environment import (
    SettingsError,
    asyncpg_url,
    env_choice,
    env_int,
    env_list,
    env_secret,
    mask_url,
)
from contract.faults import FaultState

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def database_url(env: Mapping[str, str], name: str = "DATABASE_URL") -> str:
    """A required PostgreSQL URL, returned as `postgresql+asyncpg://` (the driver we run on)."""
    raw = env.get(name, "").strip()
    if not raw:
        raise SettingsError(
            f"{name} is not set: run ./start.sh db to choose the databases, or set it "
            "(postgresql+asyncpg://user:password@host:5432/database)"
        )
    try:
        url = asyncpg_url(raw)
    except ValueError:
        raise SettingsError(
            f"{name} is not a PostgreSQL URL (postgresql://...): {mask_url(raw)}"
        ) from None
    parts = _split(name, raw)
    if not parts.hostname or not parts.path.strip("/"):
        raise SettingsError(f"{name} must name a host and a database: {mask_url(raw)}")
    return url


def _split(name: str, raw: str) -> SplitResult:
    # urlsplit's own message may quote a fragment of the password (one holding a `/` is read as
    # the port): say what is wrong with the masked URL instead.
    try:
        parts = urlsplit(raw)
        _ = parts.port
    except ValueError:
        raise SettingsError(
            f"{name} is malformed (a bad host or port; percent-encode special characters in "
            f"the password): {mask_url(raw)}"
        ) from None
    return parts


def redis_url(env: Mapping[str, str], name: str = "REDIS_URL") -> str:
    raw = env.get(name, "").strip()
    if not raw:
        raise SettingsError(
            f"{name} is not set: run ./start.sh db to choose the databases, or set it "
            "(redis://host:6379/0)"
        )
    parts = _split(name, raw)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise SettingsError(f"{name} is not a Redis URL (redis://host:port/db): {mask_url(raw)}")
    return raw


def _proxies(env: Mapping[str, str]) -> tuple[str, ...]:
    found = env_list(env, "TRUSTED_PROXIES", ("127.0.0.1", "::1"))
    for item in found:
        try:
            ipaddress.ip_address(item)
        except ValueError:
            raise SettingsError(
                f"TRUSTED_PROXIES: {item!r} is not an IP address (comma-separated addresses)"
            ) from None
    return found


def _origins(env: Mapping[str, str]) -> tuple[str, ...]:
    found = env_list(env, "CORS_ORIGINS", ("http://localhost:3000", "http://127.0.0.1:3000"))
    for origin in found:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise SettingsError(
                f"CORS_ORIGINS: {origin!r} is not an origin (http[s]://host[:port])"
            )
    return found


def _sentry_dsn(env: Mapping[str, str]) -> str | None:
    raw = env.get("SENTRY_DSN", "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.username or not parts.hostname:
        raise SettingsError("SENTRY_DSN is not a DSN (https://PUBLIC_KEY@host/PROJECT_ID)")
    return raw


def _demo_password(env: Mapping[str, str]) -> str:
    demo = env.get("DEMO_PASSWORD", "").strip() or "demo-password-123"
    if not 10 <= len(demo) <= 128:
        raise SettingsError("DEMO_PASSWORD must be 10-128 characters")
    return demo


def _admin_token(env: Mapping[str, str]) -> str | None:
    raw = env.get("ADMIN_TOKEN", "").strip()
    if raw and len(raw) < 16:
        raise SettingsError("ADMIN_TOKEN is too short: use at least 16 characters")
    return raw or None


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the production backend reads from its environment."""

    database_url: str
    redis_url: str
    secret_key: str
    admin_token: str | None = None
    demo_password: str = "demo-password-123"
    sentry_dsn: str | None = None
    sentry_environment: str = "production"
    cors_origins: tuple[str, ...] = ("http://localhost:3000", "http://127.0.0.1:3000")
    rate_limit_per_minute: int = 1200
    login_limit_per_account: int = 10
    login_limit_per_address: int = 100
    login_limit_window_seconds: int = 15 * 60
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    port: int = 8002
    admin_port: int = 0
    workers: int = 2
    quote_feed: bool = True
    market_seed: int = 42
    log_level: str = "INFO"
    ws_max_subscriptions: int = 100
    ws_max_backlog: int = 256
    cache_ttl_seconds: int = 3600
    data_poll_seconds: float = 5.0
    db_pool_size: int = 10
    db_timeout_seconds: int = 5
    faults: FaultState = field(default_factory=FaultState)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every variable; SettingsError names the first bad one."""
        env = os.environ if env is None else env
        return cls(
            database_url=database_url(env),
            redis_url=redis_url(env),
            secret_key=env_secret(env, "SECRET_KEY"),
            admin_token=_admin_token(env),
            demo_password=_demo_password(env),
            sentry_dsn=_sentry_dsn(env),
            sentry_environment=env.get("SENTRY_ENVIRONMENT", "").strip() or "production",
            cors_origins=_origins(env),
            rate_limit_per_minute=env_int(env, "RATE_LIMIT_PER_MINUTE", 1200, 1, 10_000_000),
            login_limit_per_account=env_int(env, "LOGIN_LIMIT_PER_ACCOUNT", 10, 1, 1_000_000),
            login_limit_per_address=env_int(env, "LOGIN_LIMIT_PER_ADDRESS", 100, 1, 1_000_000),
            login_limit_window_seconds=env_int(
                env, "LOGIN_LIMIT_WINDOW_SECONDS", 15 * 60, 1, 24 * 3600
            ),
            trusted_proxies=_proxies(env),
            port=env_int(env, "PROD_PORT", 8002, 1, 65535),
            admin_port=env_int(env, "PROD_ADMIN_PORT", 0, 0, 65535),
            workers=env_int(env, "PROD_WORKERS", 2, 1, 64),
            quote_feed=env_choice(env, "QUOTE_FEED", "simulated", ("simulated", "off"))
            == "simulated",
            market_seed=env_int(env, "MARKET_SEED", 42, 0, 2**31 - 1),
            log_level=env_choice(env, "LOG_LEVEL", "INFO", LOG_LEVELS),
            ws_max_subscriptions=env_int(env, "WS_MAX_SUBSCRIPTIONS", 100, 1, 100),
            ws_max_backlog=env_int(env, "WS_MAX_BACKLOG", 256, 1, 100_000),
            cache_ttl_seconds=env_int(env, "CACHE_TTL_SECONDS", 3600, 1, 30 * 24 * 3600),
            data_poll_seconds=float(env_int(env, "DATA_POLL_SECONDS", 5, 1, 3600)),
            db_pool_size=env_int(env, "DB_POOL_SIZE", 10, 1, 200),
            db_timeout_seconds=env_int(env, "DB_TIMEOUT_SECONDS", 5, 1, 300),
            faults=FaultState.from_env(env),
        )

    def check_admin(self) -> None:
        """The admin app needs a token: refuse to serve it without one."""
        if self.admin_port and not self.admin_token:
            raise SettingsError(
                "ADMIN_TOKEN is not set but the admin app is on (PROD_ADMIN_PORT / --admin-port);"
                " run ./start.sh setup to generate one"
            )


__all__ = ["Settings", "SettingsError"]
