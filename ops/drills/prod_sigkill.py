"""prod-sigkill-during-canary: prod killed with SIGKILL while a canary sends it half the clients.

The promise: the gateway sends prod's share back to the mock at once, the canary records the
rollback, and clients see no failed idempotent request (the gateway's one retry on the other
backend). The canary's latency gate is set wide here (2 s): this drill is about a dead prod, and
a loaded 2-core machine must not roll the canary back before the kill.
"""

from __future__ import annotations

import time

from ops.drills.clients import Readers
from ops.drills.outcome import DrillOptions, DrillResult
from ops.drills.stack import DATA_SYMBOLS, Stack

INJECTED = "SIGKILL to prod (its whole process group) at canary weight 50"
ROLLBACK_WITHIN_S = 5.0


def run(stack: Stack, result: DrillResult, _options: DrillOptions) -> None:
    result.injected = INJECTED
    with Readers(stack.gateway, DATA_SYMBOLS.split(","), rate=60) as readers:
        began = time.monotonic()
        stack.start_canary(steps=[50, 100], hold_s=600, interval_s=1, min_samples=10, p95_ms=2000)
        stack.wait(lambda: readers.count(time.monotonic() - 2, upstream="prod") > 20, 30, "prod")
        killed_at = time.monotonic()
        pid = stack.kill("prod")
        stack.say(f"  killed prod (pid {pid}) with SIGKILL")
        stack.wait(lambda: stack.admin_get("/state")["weight"] == 0, 30, "weight 0")
        to_zero = time.monotonic() - killed_at
        stack.wait(lambda: stack.admin_get("/canary")["status"] == "rolled_back", 10, "record")
        canary = stack.admin_get("/canary")
        time.sleep(3)  # clients go on reading from the mock
    failures = readers.failures(since=began)
    to_prod = readers.count(began, killed_at, upstream="prod")
    result.figures.update(
        requests=len(readers.seen),
        served_by_prod_before_kill=to_prod,
        failed=len(failures),
        seconds_to_weight_0=round(to_zero, 3),
        canary_reason=canary.get("reason"),
        retries=stack.admin_get("/state")["counts"]["retries"],
    )
    result.observed += [
        f"weight 0 {to_zero:.2f} s after the kill",
        f"{len(failures)} of {len(readers.seen)} client reads failed",
        f"canary {canary.get('status')}: {canary.get('reason')}",
    ]
    result.check(
        f"weight back to 0 within {ROLLBACK_WITHIN_S:g} s",
        to_zero <= ROLLBACK_WITHIN_S,
        f"{to_zero:.2f} s",
    )
    result.check(
        "the canary records the rollback",
        canary.get("status") == "rolled_back" and bool(canary.get("reason")),
        f"{canary.get('status')}: {canary.get('reason')}",
    )
    result.check(
        "no failed idempotent request",
        not failures and to_prod > 0,
        f"{len(failures)} failed of {len(readers.seen)} ({to_prod} served by prod before the "
        f"kill); first: {[(f.status, f.error, f.path) for f in failures[:3]]}",
    )
