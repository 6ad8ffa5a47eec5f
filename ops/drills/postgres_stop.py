"""postgres-stop: PostgreSQL stopped while a canary sends prod half the clients.

The promise: prod's health says 503, its uncached reads and its writes answer 503 with a detail
naming the database (never a 500 or a hang), the canary rolls back; PostgreSQL started again,
prod recovers by itself (the same process, no restart). The canary's latency gate is wide (2 s):
the drill is about a dead database, not about a loaded machine's latency.
"""

from __future__ import annotations

import time

import httpx

from ops.drills.clients import Readers
from ops.drills.outcome import DrillOptions, DrillResult
from ops.drills.stack import API, DATA_SYMBOLS, Stack, demo_token

INJECTED = "PostgreSQL stopped (fast shutdown) at canary weight 50, then started again"
RECOVER_WITHIN_S = 30.0


def _answer(method: str, url: str, token: str) -> tuple[int, str]:
    body = {"symbols": ["SPY"]} if method == "PUT" else None
    try:
        answer = httpx.request(
            method, url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=15
        )
    except httpx.HTTPError as exc:
        return 0, type(exc).__name__
    return answer.status_code, answer.text[:200]


def run(stack: Stack, result: DrillResult, _options: DrillOptions) -> None:
    result.injected = INJECTED
    prod = stack.url("PROD_PORT")
    token = demo_token(prod, stack)
    pid = stack.pid("prod")
    with Readers(stack.gateway, DATA_SYMBOLS.split(","), rate=40) as readers:
        began = time.monotonic()
        stack.start_canary(steps=[50, 100], hold_s=600, interval_s=1, min_samples=10, p95_ms=2000)
        stack.wait(lambda: readers.count(time.monotonic() - 2, upstream="prod") > 10, 30, "prod")
        stopped_at = time.monotonic()
        stack.stop_server("postgres")
        stack.say("  stopped PostgreSQL")
        health = httpx.get(f"{prod}{API}/health", timeout=15)
        read = _answer("GET", f"{prod}{API}/watchlists", token)
        write = _answer("PUT", f"{prod}{API}/watchlists/drill-pg", token)
        stack.wait(lambda: stack.admin_get("/canary")["status"] == "rolled_back", 30, "rollback")
        to_rollback = time.monotonic() - stopped_at
        canary = stack.admin_get("/canary")
        restart_s = stack.start_server("postgres")
        stack.say(f"  started PostgreSQL again ({restart_s:.1f} s)")
        recovered = stack.wait(
            lambda: httpx.get(f"{prod}{API}/health", timeout=5).status_code == 200,
            RECOVER_WITHIN_S,
            "prod's health 200",
        )
        after = _answer("PUT", f"{prod}{API}/watchlists/drill-pg", token)
    failures = readers.failures(since=began)
    result.figures.update(
        health_while_down=health.status_code,
        read_while_down=read,
        write_while_down=write,
        seconds_to_rollback=round(to_rollback, 2),
        seconds_to_recover=round(recovered, 2),
        client_reads=len(readers.seen),
        client_reads_failed=len(failures),
        canary_reason=canary.get("reason"),
    )
    result.observed += [
        f"health {health.status_code}, uncached read {read[0]}, write {write[0]}",
        f"rolled back in {to_rollback:.1f} s",
        f"{len(failures)} of {len(readers.seen)} client reads failed (503 before the rollback)",
        f"recovered {recovered:.1f} s after PostgreSQL returned, same pid",
    ]
    result.check("prod's health 503", health.status_code == 503, health.text[:200])
    for what, (status, detail) in (("uncached read", read), ("write", write)):
        result.check(
            f"{what} 503 naming the database",
            status == 503 and "database" in detail.lower(),
            f"{status} {detail}",
        )
    result.check(
        "the canary rolls back",
        canary.get("status") == "rolled_back" and stack.admin_get("/state")["weight"] == 0,
        f"{canary.get('status')} in {to_rollback:.1f} s: {canary.get('reason')}",
    )
    result.check(
        "prod recovers without a restart",
        stack.pid("prod") == pid and after[0] in (200, 201),
        f"health 200 {recovered:.1f} s after PostgreSQL returned; pid {pid} → "
        f"{stack.pid('prod')}; a write then answers {after[0]}",
    )
