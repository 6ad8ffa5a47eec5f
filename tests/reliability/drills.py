"""Run one drill of ops/drills the way `./start.sh drill NAME` does, and say why it failed."""

from __future__ import annotations

import json
from pathlib import Path

from ops.drills.catalog import BY_NAME
from ops.drills.outcome import DrillOptions, DrillResult
from ops.drills.runner import run_drill
from tests.conftest import leftovers


def drilled(name: str, options: DrillOptions | None = None) -> DrillResult:
    """The drill's result; nothing of its system may be left running afterwards."""
    result = run_drill(BY_NAME[name], print, options or DrillOptions())
    print(json.dumps(result.document(), indent=2))
    left = leftovers_of(name)
    assert left == [], f"the {name} drill left processes running: {left}"
    return result


def leftovers_of(name: str) -> list[int]:
    """Processes whose command line mentions the drill's temporary directory."""
    return leftovers(Path(f"cutover-drill-{name}-"), set())


def broken(result: DrillResult) -> str:
    """The promises that broke, for the assertion message."""
    lines = [f"{c.promise}: {c.measured}" for c in result.checks if not c.held]
    if result.error:
        lines.append(f"the drill could not finish: {result.error}")
    return "\n".join(lines) or "no promise was checked"
