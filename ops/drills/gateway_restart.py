"""gateway-restart: the gateway killed with SIGKILL mid-canary, with writes in its outbox.

Set-up: a canary at its second step; the mock stopped, so every mirrored write to it lands in
the outbox (and the guard holds the canary's next step). Injected: SIGKILL to the gateway, then
a restart as a supervisor would do it (the same process spec, no command that changes the mode).
The promise: the restarted gateway serves in the recorded mode and weight at the recorded canary
step, its outbox still holds every write, and once the mock is back the outbox drains in order:
the mock ends with every write acknowledged while it was down, the rewritten list at its last
acknowledged value.
"""

from __future__ import annotations

import time

from ops import services
from ops.drills.clients import Readers
from ops.drills.outcome import DrillOptions, DrillResult
from ops.drills.stack import DATA_SYMBOLS, Stack, demo_token
from ops.drills.writers import ListWriter

INJECTED = "mock stopped (outbox filling), then SIGKILL to the gateway at canary step 2, restart"
STEPS = [10, 30, 100]


def _restart_gateway(stack: Stack) -> float:
    settings = stack.settings
    spec = services.app_spec(
        settings,
        "gateway",
        "ops.gateway",
        settings.gateway_port,
        *("--admin-port", str(settings.gateway_admin_port)),
        other_ports=(settings.gateway_admin_port,),
    )
    return services.start_service(settings, spec, env=stack.env).startup_seconds or 0.0


def run(stack: Stack, result: DrillResult, _options: DrillOptions) -> None:
    result.injected = INJECTED
    token = demo_token(stack.gateway, stack)
    writer = ListWriter(stack.gateway, token, "restart")
    with Readers(stack.gateway, DATA_SYMBOLS.split(","), rate=30):
        stack.start_canary(steps=STEPS, hold_s=4, interval_s=1, min_samples=5, p95_ms=2000)
        stack.wait(lambda: stack.admin_get("/state")["weight"] == STEPS[1], 40, "step 2")
        writer.start()
        time.sleep(1)
        services.stop_service(stack.settings, "mock", grace=3)
        # From here every acknowledged write was served by prod: the mock holds it only once
        # the outbox has replayed it (writes it acknowledged before are gone with its memory,
        # which the operator's `simple` rebuilds from PostgreSQL; this restart skips that).
        mock_down_at = time.monotonic()
        stack.say("  stopped the mock: mirrors to it go to the outbox")
        stack.wait(lambda: stack.admin_get("/outbox")["pending"] >= 10, 30, "10 outbox entries")
        before = {
            "state": stack.admin_get("/state"),
            "canary": stack.admin_get("/canary"),
        }
        pid = stack.kill("gateway")
        stack.say(f"  killed the gateway (pid {pid}) with SIGKILL")
        restart_s = _restart_gateway(stack)
        after = {"state": stack.admin_get("/state"), "canary": stack.admin_get("/canary")}
        pending_after = stack.admin_get("/outbox")["pending"]
        stack.say(f"  gateway restarted in {restart_s:.1f} s; outbox {pending_after} pending")
        time.sleep(2)  # writes go on after the restart
        mock_back = services.start_service(stack.settings, services.mock_spec(stack.settings))
        stack.say(f"  mock back (no rebuild) in {mock_back.startup_seconds:.1f} s")
        drained = stack.wait(lambda: stack.admin_get("/outbox")["pending"] == 0, 60, "drain")
        writer.stop()
        outbox = stack.admin_get("/outbox")
    missing = writer.missing(stack.url("MOCK_PORT"), since=mock_down_at)
    was, now = before["canary"], after["canary"]
    resumed = (
        after["state"]["mode"] == before["state"]["mode"] == "canary"
        and after["state"]["weight"] == before["state"]["weight"] == STEPS[1]
        and now.get("step") == was.get("step") == 1
        and now.get("status") in ("running", "paused")
    )
    kept = [n for n, at in writer.acked_at.items() if at >= mock_down_at]
    result.figures.update(
        restart_seconds=round(restart_s, 2),
        before={
            "mode": before["state"]["mode"],
            "weight": before["state"]["weight"],
            "step": was.get("step"),
            "outbox": before["state"]["outbox"]["pending"],
        },
        after={
            "mode": after["state"]["mode"],
            "weight": after["state"]["weight"],
            "step": now.get("step"),
            "status": now.get("status"),
            "outbox": pending_after,
        },
        acknowledged_while_mock_down=len(kept),
        seconds_to_drain=round(drained, 2),
        outbox=outbox,
        missing=missing[:10],
        writes_refused=len(writer.failed),
    )
    result.observed += [
        f"restarted in {restart_s:.1f} s at {after['state']['mode']} weight "
        f"{after['state']['weight']} step {now.get('step')} ({now.get('status')})",
        f"outbox {before['state']['outbox']['pending']} → {pending_after} across the kill, "
        f"drained in {drained:.1f} s",
        f"{len(missing)} of {len(kept)} writes missing from the mock",
    ]
    result.check(
        "resumes the recorded mode, weight and canary step",
        resumed,
        f"before {result.figures['before']}, after {result.figures['after']}",
    )
    result.check(
        "the outbox survives the kill",
        pending_after >= before["state"]["outbox"]["pending"] > 0,
        f"{before['state']['outbox']['pending']} before, {pending_after} after",
    )
    result.check(
        "the outbox drains in order: every write on the mock, the last value last",
        not missing and writer.last in kept and outbox["pending"] == 0,
        f"{len(kept)} acknowledged while the mock was down, {len(missing)} missing: {missing[:3]}",
    )
