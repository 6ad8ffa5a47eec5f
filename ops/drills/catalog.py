"""The drills by name: what each rehearses and the module that runs it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import NamedTuple

from ops.drills.outcome import DrillOptions, DrillResult
from ops.drills.stack import Stack


class Drill(NamedTuple):
    name: str
    module: str
    promise: str


DRILLS = (
    Drill(
        "prod-sigkill-during-canary",
        "ops.drills.prod_sigkill",
        "prod's share back to the mock at once, the rollback recorded, no failed read",
    ),
    Drill(
        "postgres-stop",
        "ops.drills.postgres_stop",
        "prod 503 with a clear detail, the canary rolls back; prod recovers without a restart",
    ),
    Drill(
        "redis-stop",
        "ops.drills.redis_stop",
        "prod answers from PostgreSQL (degraded, no 5xx); live data back; FLUSHALL loses no job",
    ),
    Drill(
        "prod-slow",
        "ops.drills.prod_slow",
        "latency injected at run time: the canary's latency gate fires within two intervals",
    ),
    Drill(
        "gateway-restart",
        "ops.drills.gateway_restart",
        "SIGKILLed gateway resumes mode, weight and canary step; the outbox drains in order",
    ),
    Drill(
        "no-data-lost",
        "ops.drills.no_data_lost",
        "every acknowledged write readable after shadow → canary → promote → rollback → promote",
    ),
    Drill(
        "soak",
        "ops.drills.soak",
        "80% of the knee through the gateway: errors, p95, no process leaking > 1 MB/min",
    ),
)
BY_NAME = {drill.name: drill for drill in DRILLS}
Body = Callable[[Stack, DrillResult, DrillOptions], None]


def body(drill: Drill) -> Body:
    module = importlib.import_module(drill.module)
    run: Body = module.run
    return run
