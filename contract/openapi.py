"""The frozen OpenAPI of the contract: `python -m contract.openapi --write` regenerates it.

The document comes from the route layer itself (the same controllers both backends mount), so a
change to a type, constraint or route shows up as drift until the file is regenerated.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

FROZEN = Path(__file__).with_name("openapi.json")


def generate() -> dict[str, Any]:
    """The OpenAPI document of the contract's routes, as a plain dict."""
    from contract.app import build_app
    from contract.ports import Services

    # The document depends on the routes only, never on an adapter: none is called here.
    services = Services(
        backend="mock",
        market=None,  # type: ignore[arg-type]
        signals=None,  # type: ignore[arg-type]
        users=None,  # type: ignore[arg-type]
        watchlists=None,  # type: ignore[arg-type]
        backtests=None,  # type: ignore[arg-type]
        live=None,  # type: ignore[arg-type]
        limiter=None,  # type: ignore[arg-type]
        secret_key="-",
    )
    app = build_app(services)
    document: dict[str, Any] = app.openapi_schema.to_schema()
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contract.openapi", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite contract/openapi.json")
    parser.add_argument("--check", action="store_true", help="exit 1 when the file has drifted")
    args = parser.parse_args(argv)
    text = render(generate())
    if args.write:
        FROZEN.write_text(text, encoding="utf-8")
        print(f"wrote {FROZEN.name} ({len(text)} bytes)")
        return 0
    if args.check:
        current = FROZEN.read_text(encoding="utf-8") if FROZEN.exists() else ""
        if current != text:
            print("contract/openapi.json has drifted: run python -m contract.openapi --write")
            return 1
        print("contract/openapi.json is current")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
