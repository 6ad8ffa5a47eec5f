"""Typed settings for the operator's CLI, read once from the environment and `.env`.

Where the CLI keeps its files (`var/`), which ports the services use and how long it waits for
them. The process environment wins over `.env`, so a test or CI can point a whole run elsewhere
(e.g. `CUTOVER_VAR_DIR`) without touching the project's own files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

LOOPBACK = "127.0.0.1"


class SettingsError(Exception):
    """A variable is set to something unusable; the message names it and what is accepted."""


def read_env_file(path: Path) -> dict[str, str]:
    """The `KEY=VALUE` lines of a dotenv file (comments, blank lines and `export ` ignored).

    Values may be wrapped in single or double quotes; nothing is interpolated, so a secret
    containing `$` is taken as written.
    """
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer ({lo}-{hi})") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name}={value} is out of range ({lo}-{hi})")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw.removesuffix("s"))
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise SettingsError(f"{name}={raw} is out of range (0-3600 seconds)")
    return value


def _path(env: Mapping[str, str], name: str, default: Path, root: Path) -> Path:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    path = Path(raw).expanduser()
    return path if path.is_absolute() else root / path


@dataclass(frozen=True, slots=True)
class OpsSettings:
    """Everything the CLI needs to find its files and the services it runs."""

    root: Path
    env_file: Path
    env_example: Path
    var_dir: Path
    host: str
    mock_port: int
    mock_admin_port: int
    prod_port: int
    gateway_port: int
    gateway_admin_port: int
    frontend_port: int
    health_timeout: float
    stop_grace: float
    frontend_env_file: Path

    @property
    def run_dir(self) -> Path:
        """Pid files of the processes this project started."""
        return self.var_dir / "run"

    @property
    def logs_dir(self) -> Path:
        return self.var_dir / "logs"

    @property
    def reports_dir(self) -> Path:
        return self.var_dir / "reports"

    @property
    def state_file(self) -> Path:
        return self.var_dir / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.var_dir / "cutover.lock"

    def url(self, port: int) -> str:
        return f"http://{self.host}:{port}"


def load_settings(environ: Mapping[str, str] | None = None) -> OpsSettings:
    """Settings from `.env` overlaid by the process environment; SettingsError names a bad one."""
    env_source = os.environ if environ is None else environ
    root = PROJECT_ROOT
    env_file = _path(env_source, "CUTOVER_ENV_FILE", root / ".env", root)
    env = {**read_env_file(env_file), **env_source}
    ports = {
        name: _int(env, name, default, 0 if name == "MOCK_ADMIN_PORT" else 1, 65535)
        for name, default in (
            ("MOCK_PORT", 8001),
            ("MOCK_ADMIN_PORT", 8011),
            ("PROD_PORT", 8002),
            ("GATEWAY_PORT", 8000),
            ("GATEWAY_ADMIN_PORT", 8009),
            ("FRONTEND_PORT", 3000),
        )
    }
    used = [port for port in ports.values() if port]
    clashes = {port for port in used if used.count(port) > 1}
    if clashes:
        names = ", ".join(name for name, port in ports.items() if port in clashes)
        raise SettingsError(f"{names} share a port; give each service its own")
    return OpsSettings(
        root=root,
        env_file=env_file,
        env_example=root / "env.example",
        var_dir=_path(env, "CUTOVER_VAR_DIR", root / "var", root),
        host=LOOPBACK,
        mock_port=ports["MOCK_PORT"],
        mock_admin_port=ports["MOCK_ADMIN_PORT"],
        prod_port=ports["PROD_PORT"],
        gateway_port=ports["GATEWAY_PORT"],
        gateway_admin_port=ports["GATEWAY_ADMIN_PORT"],
        frontend_port=ports["FRONTEND_PORT"],
        health_timeout=_seconds(env, "CUTOVER_HEALTH_TIMEOUT", 30.0),
        stop_grace=_seconds(env, "CUTOVER_STOP_GRACE", 10.0),
        frontend_env_file=_path(env, "FRONTEND_ENV_FILE", root / "frontend.env", root),
    )


def child_environment(
    settings: OpsSettings, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment a started service sees: `.env`, then the process environment, then extra."""
    env = {**read_env_file(settings.env_file), **os.environ}
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env
