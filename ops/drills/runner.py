"""Run drills: each on a system of its own, bounded in time, its result saved as JSON."""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path

from ops.drills.catalog import Drill, body
from ops.drills.outcome import DrillOptions, DrillResult
from ops.drills.stack import Say, running_stack
from ops.state import write_atomic


def run_drill(drill: Drill, say: Say, options: DrillOptions) -> DrillResult:
    """Bring up the drill's system, inject its fault, check its promise; stop everything."""
    result = DrillResult(drill.name)
    began = time.monotonic()
    try:
        with running_stack(drill.name, say) as stack:
            body(drill)(stack, result, options)
    except Exception as exc:  # a drill that cannot finish has not shown its promise holds
        result.error = f"{type(exc).__name__}: {exc}"
        say(traceback.format_exc(limit=3))
    result.seconds = time.monotonic() - began
    return result


def save(result: DrillResult, reports: Path) -> Path:
    path = reports / f"drill-{result.name}.json"
    write_atomic(path, json.dumps(result.document(), indent=2).encode() + b"\n")
    return path
