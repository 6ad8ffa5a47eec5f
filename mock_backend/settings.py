"""The mock's settings, read from the environment once and validated at start-up."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from contract.environment import (
    SettingsError,
    env_asof,
    env_choice,
    env_int,
    env_list,
)
from contract.faults import FaultState
from market.calendar import DEFAULT_ASOF


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
    cors_origins: tuple[str, ...] = ("http://localhost:3000", "http://127.0.0.1:3000")
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    log_level: str = "INFO"
    ws_max_subscriptions: int = 100
    faults: FaultState = field(default_factory=FaultState)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MockSettings:
        env = os.environ if env is None else env
        secret = env.get("SECRET_KEY", "").strip()
        if not secret:
            # A mock alone may run without one; tokens then do not survive a restart.
            secret = secrets.token_hex(32)
        elif len(secret) < 32:
            raise SettingsError("SECRET_KEY is too short: use at least 32 characters")
        feed = env_choice(env, "QUOTE_FEED", "simulated", ("simulated", "off"))
        demo = env.get("DEMO_PASSWORD", "").strip() or "demo-password-123"
        if not 10 <= len(demo) <= 128:
            raise SettingsError("DEMO_PASSWORD must be 10-128 characters")
        level = env_choice(env, "LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
        return cls(
            secret_key=secret,
            admin_token=env.get("ADMIN_TOKEN", "").strip() or secrets.token_hex(16),
            demo_password=demo,
            seed=env_int(env, "MARKET_SEED", 42, 0, 2**31 - 1),
            asof=env_asof(env),
            quote_feed=feed == "simulated",
            rate_limit_per_minute=env_int(env, "RATE_LIMIT_PER_MINUTE", 1200, 1, 10_000_000),
            login_limit_per_account=env_int(env, "LOGIN_LIMIT_PER_ACCOUNT", 10, 1, 1_000_000),
            login_limit_per_address=env_int(env, "LOGIN_LIMIT_PER_ADDRESS", 100, 1, 1_000_000),
            cors_origins=env_list(
                env, "CORS_ORIGINS", ("http://localhost:3000", "http://127.0.0.1:3000")
            ),
            trusted_proxies=env_list(env, "TRUSTED_PROXIES", ("127.0.0.1", "::1")),
            log_level=level,
            ws_max_subscriptions=env_int(env, "WS_MAX_SUBSCRIPTIONS", 100, 1, 100),
            faults=FaultState.from_env(env),
        )
