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
