"""The frontend switch: the frontend's env file, pointed at the gateway or at prod.

The file holds `REACT_APP_API_URL`, `VITE_API_URL` and `VITE_WS_URL` (the names the two common
frontend toolchains read). It is rewritten atomically, so a dev server watching it never reads
half a file, and every other line (comments, the frontend's own settings) is kept as it was.
"""

from __future__ import annotations

from pathlib import Path

from ops.settings import read_env_file
from ops.state import write_atomic

API_KEYS = ("REACT_APP_API_URL", "VITE_API_URL")
WS_KEY = "VITE_WS_URL"
HEADER = "# The backend the frontend talks to; rewritten by ./start.sh (promote, rollback, ...).\n"


def urls_for(base_url: str) -> dict[str, str]:
    """The three variables for a backend at `base_url` (http://host:port)."""
    base = base_url.rstrip("/")
    ws = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return {**dict.fromkeys(API_KEYS, base), WS_KEY: f"{ws}/ws"}


def point_frontend(path: Path, base_url: str) -> dict[str, str]:
    """Point the frontend at `base_url`; other lines stay. Returns the variables written."""
    wanted = urls_for(base_url)
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else [HEADER.strip()]
    seen: set[str] = set()
    out: list[str] = []
    for line in lines:
        key = line.strip().removeprefix("export ").partition("=")[0].strip()
        if key in wanted and "=" in line and not line.lstrip().startswith("#"):
            if key not in seen:
                out.append(f"{key}={wanted[key]}")
                seen.add(key)
            continue  # a repeated key would shadow the new value in some loaders: dropped
        out.append(line)
    out.extend(f"{key}={value}" for key, value in wanted.items() if key not in seen)
    write_atomic(path, ("\n".join(out) + "\n").encode("utf-8"))
    return wanted


def frontend_target(path: Path) -> str | None:
    """The API URL the frontend uses now, or None when the file does not say."""
    values = read_env_file(path)
    return next((values[key] for key in API_KEYS if values.get(key)), None)
