"""The mock's settings, read from the environment once and validated at start-up."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from market.calendar import DEFAULT_ASOF, ORIGIN


class SettingsError(ValueError):
    """A missing or bad environment variable, named in the message."""


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not an integer ({low}..{high})") from exc
    if not low <= value <= high:
        raise SettingsError(f"{name}={value} is out of range: accepted {low}..{high}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a number ({low}..{high})") from exc
    if not low <= value <= high:
        raise SettingsError(f"{name}={value} is out of range: accepted {low}..{high}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean: accepted true/false")


def _list(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None:
        return default
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class Faults:
    """Fault injection for rehearsals; all off by default."""

    latency_ms: int = 0
    error_rate: float = 0.0
    drift: str = ""
    refuse: bool = False

    @property
    def active(self) -> bool:
        return bool(self.latency_ms or self.error_rate or self.drift or self.refuse)


DRIFTS = ("", "rename_price", "alter_price", "drop_volume")


@dataclass(frozen=True, slots=True)
class MockSettings:
    secret_key: str
    admin_token: str
    demo_password: str = "demo-password-123"
    seed: int = 42
    asof: date = DEFAULT_ASOF
    quote_feed: bool = True
    rate_limit_per_minute: int = 1200
    login_limit_per_account: int = 10
    login_limit_per_address: int = 100
    cors_origins: tuple[str, ...] = ("http://localhost:3000",)
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    log_level: str = "INFO"
    ws_max_subscriptions: int = 100
    faults: Faults = field(default_factory=Faults)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MockSettings:
        env = os.environ if env is None else env
        secret = env.get("SECRET_KEY", "").strip()
        if not secret:
            # A mock alone may run without one; tokens then do not survive a restart.
            secret = secrets.token_hex(32)
        elif len(secret) < 32:
            raise SettingsError("SECRET_KEY is too short: use at least 32 characters")
        asof_raw = env.get("MARKET_ASOF", "").strip()
        try:
            asof = date.fromisoformat(asof_raw) if asof_raw else DEFAULT_ASOF
        except ValueError as exc:
            raise SettingsError(f"MARKET_ASOF={asof_raw!r} is not a date: use YYYY-MM-DD") from exc
        if asof < ORIGIN:
            raise SettingsError(f"MARKET_ASOF={asof} is before the history's origin {ORIGIN}")
        feed = env.get("QUOTE_FEED", "simulated").strip().lower() or "simulated"
        if feed not in ("simulated", "off"):
            raise SettingsError(f"QUOTE_FEED={feed!r}: accepted simulated, off")
        drift = env.get("FAULT_DRIFT", "").strip()
        if drift not in DRIFTS:
            raise SettingsError(f"FAULT_DRIFT={drift!r}: accepted {', '.join(DRIFTS[1:])} or empty")
        demo = env.get("DEMO_PASSWORD", "").strip() or "demo-password-123"
        if not 10 <= len(demo) <= 128:
            raise SettingsError("DEMO_PASSWORD must be 10-128 characters")
        level = env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(f"LOG_LEVEL={level!r}: accepted DEBUG, INFO, WARNING, ERROR")
        return cls(
            secret_key=secret,
            admin_token=env.get("ADMIN_TOKEN", "").strip() or secrets.token_hex(16),
            demo_password=demo,
            seed=_int(env, "MARKET_SEED", 42, 0, 2**31 - 1),
            asof=asof,
            quote_feed=feed == "simulated",
            rate_limit_per_minute=_int(env, "RATE_LIMIT_PER_MINUTE", 1200, 1, 10_000_000),
            login_limit_per_account=_int(env, "LOGIN_LIMIT_PER_ACCOUNT", 10, 1, 1_000_000),
            login_limit_per_address=_int(env, "LOGIN_LIMIT_PER_ADDRESS", 100, 1, 1_000_000),
            cors_origins=_list(env, "CORS_ORIGINS", ("http://localhost:3000",)),
            trusted_proxies=_list(env, "TRUSTED_PROXIES", ("127.0.0.1", "::1")),
            log_level=level,
            ws_max_subscriptions=_int(env, "WS_MAX_SUBSCRIPTIONS", 100, 1, 100),
            faults=Faults(
                latency_ms=_int(env, "FAULT_LATENCY_MS", 0, 0, 60_000),
                error_rate=_float(env, "FAULT_ERROR_RATE", 0.0, 0.0, 1.0),
                drift=drift,
                refuse=_bool(env, "FAULT_REFUSE", False),
            ),
        )
