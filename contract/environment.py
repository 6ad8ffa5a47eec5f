"""Typed settings from the environment, shared by both backends: each bad value is an error
naming the variable and what it accepts, raised at start-up, never deep in a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from market.calendar import DEFAULT_ASOF, ORIGIN


class SettingsError(ValueError):
    """A missing or bad environment variable, named in the message."""


def env_int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
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


def env_float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
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


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean: accepted true/false")


def env_list(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None:
        return default
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def env_choice(env: Mapping[str, str], name: str, default: str, accepted: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip() or default
    if raw not in accepted:
        shown = ", ".join(item or repr(item) for item in accepted)
        raise SettingsError(f"{name}={raw!r}: accepted {shown}")
    return raw


def env_asof(env: Mapping[str, str], name: str = "MARKET_ASOF") -> date:
    raw = env.get(name, "").strip()
    try:
        asof = date.fromisoformat(raw) if raw else DEFAULT_ASOF
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a date: use YYYY-MM-DD") from exc
    if asof < ORIGIN:
        raise SettingsError(f"{name}={asof} is before the history's origin {ORIGIN}")
    return asof


def env_secret(env: Mapping[str, str], name: str, minimum: int = 32) -> str:
    """A required secret of at least `minimum` characters."""
    raw = env.get(name, "").strip()
    if not raw:
        raise SettingsError(f"{name} is not set: run ./start.sh setup to generate one")
    if len(raw) < minimum:
        raise SettingsError(f"{name} is too short: use at least {minimum} characters")
    return raw


_POSTGRES_SCHEMES = ("postgresql", "postgres")


def mask_url(url: str) -> str:
    """The URL with its password replaced by `***`, for messages, status and logs.

    Split by hand, not by `urlsplit`: a password holding an unescaped `/`, `?`, `#` or `@` would
    otherwise be read as part of the host or path and shown. Everything up to the last `@` is
    the user information; when that is ambiguous this masks too much, never too little.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, hostinfo = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    prefix = f"{scheme}://" if sep else ""
    return f"{prefix}{userinfo.partition(':')[0]}:***@{hostinfo}"


def asyncpg_url(url: str) -> str:
    """`postgresql://`, `postgres://` or any `postgresql+driver://` → `postgresql+asyncpg://`."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.split("+")[0] not in _POSTGRES_SCHEMES:
        raise ValueError(f"not a PostgreSQL URL: {mask_url(url)}")
    return f"postgresql+asyncpg://{rest}"
