#!/usr/bin/env bash
# The operator's entry: make sure .venv exists with the pinned dependencies, then run
# `python -m ops "$@"`. Dependencies are (re)installed only when pyproject.toml changed.
# Usage: ./start.sh <command> [args]   e.g. ./start.sh simple, ./start.sh test, ./start.sh status
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.cutover-deps"

die() {
    echo "start.sh: $*" >&2
    exit 2
}

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

venv_ok() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null
}

BEGAN="$(date +%s%N)"
INSTALLED=0
if ! venv_ok; then
    PY="$(find_python)" || die "Python 3.11 is required (set PYTHON=/path/to/python3.11)"
    echo "start.sh: creating .venv with $PY" >&2
    rm -rf "$VENV"
    "$PY" -m venv "$VENV" >&2 || die "could not create $VENV (on Debian/Ubuntu: apt-get install python3-venv)"
fi

# The stamp is the hash of pyproject.toml (the pins) and of the interpreter version.
WANT="$("$VENV/bin/python" - "$ROOT/pyproject.toml" <<'PY'
import hashlib, sys
print(hashlib.sha256(open(sys.argv[1], "rb").read() + sys.version.encode()).hexdigest())
PY
)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
    LOG="$VENV/pip-install.log"
    echo "start.sh: installing the pinned dependencies: pip install -e '.[dev]' (log: .venv/pip-install.log)" >&2
    if ! (cd "$ROOT" && "$VENV/bin/python" -m pip install --disable-pip-version-check \
        --no-input -e ".[dev]") >"$LOG" 2>&1; then
        tail -n 25 "$LOG" >&2
        die "pip install -e '.[dev]' failed; the whole log is $LOG"
    fi
    echo "$WANT" >"$STAMP"
    INSTALLED=1
fi
if [ "$INSTALLED" = 1 ]; then
    # The demo reports the install as its first stage.
    CUTOVER_INSTALL_SECONDS="$(( ($(date +%s%N) - BEGAN) / 1000000 ))"
    export CUTOVER_INSTALL_SECONDS="${CUTOVER_INSTALL_SECONDS%???}.${CUTOVER_INSTALL_SECONDS: -3}"
fi

cd "$ROOT"
exec "$VENV/bin/python" -m ops "$@"
