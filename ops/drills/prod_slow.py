"""prod-slow: latency injected into prod at run time (its admin /admin/faults) during a canary.

The promise: the canary's latency gate fires within two intervals. "Within two intervals" is
counted from the first interval that is wholly under the fault: the interval running when the
fault arrives is partly fast, so the bound is that interval plus two, plus a second for the
analysis itself. The gate is p95 ≤ 300 ms with 800 ms injected: a wide margin both ways, so a
loaded 2-core machine neither trips it before the fault nor hides the fault.
"""

from __future__ import annotations

import time

from ops.drills.clients import Readers
from ops.drills.outcome import DrillOptions, DrillResult
from ops.drills.stack import DATA_SYMBOLS, Stack

INTERVAL_S = 2.0
GATE_MS = 300.0
LATENCY_MS = 800
INJECTED = f"{LATENCY_MS} ms added to every prod answer (PUT /admin/faults) at canary weight 50"


def run(stack: Stack, result: DrillResult, _options: DrillOptions) -> None:
    result.injected = INJECTED
    with Readers(stack.gateway, DATA_SYMBOLS.split(","), rate=40) as readers:
        stack.start_canary(
            steps=[50, 100],
            hold_s=600,
            interval_s=INTERVAL_S,
            min_samples=10,
            p95_ms=GATE_MS,
        )
        # The last two intervals passed (a cold first interval may breach once): the gate is
        # quiet before the fault.
        stack.wait(
            lambda: (
                [i["verdict"] for i in stack.admin_get("/canary")["intervals"][-2:]]
                == ["pass", "pass"]
            ),
            40,
            "two passing intervals in a row",
        )
        before = stack.admin_get("/canary")["intervals"]
        injected_at = time.monotonic()
        stack.prod_faults(latency_ms=LATENCY_MS)
        stack.say(f"  prod slowed by {LATENCY_MS} ms")
        try:
            stack.wait(
                lambda: stack.admin_get("/canary")["status"] == "rolled_back",
                8 * INTERVAL_S,
                "the latency gate",
            )
            to_rollback = time.monotonic() - injected_at
        finally:
            stack.prod_faults(latency_ms=0)
        canary = stack.admin_get("/canary")
    after = canary["intervals"][len(before) :]
    bound = 3 * INTERVAL_S + 1.0
    result.figures.update(
        interval_s=INTERVAL_S,
        gate_p95_ms=GATE_MS,
        injected_ms=LATENCY_MS,
        seconds_to_rollback=round(to_rollback, 2),
        intervals_after_fault=[
            {k: i.get(k) for k in ("verdict", "p95_ms", "samples", "reasons")} for i in after
        ],
        intervals_before_fault=len(before),
        client_reads=len(readers.seen),
    )
    breaches = [i for i in after if i["verdict"] == "breach"]
    result.observed += [
        f"rolled back {to_rollback:.1f} s after the fault ({len(after)} intervals of "
        f"{INTERVAL_S:g} s, p95 {[i.get('p95_ms') for i in after]} ms)",
    ]
    result.check(
        "the canary ran, passing, before the fault",
        [i["verdict"] for i in before[-2:]] == ["pass", "pass"],
        f"{len(before)} intervals before it, the last two passed",
    )
    result.check(
        "the latency gate fires within two intervals",
        canary.get("status") == "rolled_back"
        and to_rollback <= bound
        and any("p95" in r for i in breaches for r in i.get("reasons", [])),
        f"{to_rollback:.1f} s (bound {bound:g} s: the interval under way + 2); "
        f"reason: {canary.get('reason')}",
    )
