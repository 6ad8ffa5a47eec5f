"""soak: the frontend's reads through the gateway at 80% of the knee, for `--minutes`.

The knee is measured first (unless `--rate` is given) the way the runbook's load test defines
it: the highest arrival rate of a quick ramp (5 s steps) whose p95 stays under 100 ms with under
0.1% failures and at least 90% of the asked rate answered. The load comes from this process, so
on a small machine the generator shares the CPU with the servers: the knee is this machine's.
The promise at 80% of it: failures under 0.1%, p95 under 100 ms, and no process leaking, i.e.
after a 60 s warm-up no process's private memory rising faster than 1 MB/min (linear
regression over samples every 5 s).
"""

from __future__ import annotations

import time

from ops.drills.clients import Readers
from ops.drills.memory import slope, tree_mb
from ops.drills.outcome import DrillOptions, DrillResult
from ops.drills.stack import DATA_SYMBOLS, Stack

RAMP = (20, 40, 60, 80, 120, 160, 200, 260, 320)
STEP_S = 5.0
P95_MS = 100.0
MAX_FAILURES = 0.001
MIN_RATE_RATIO = 0.9
WARM_UP_S = 60.0
SAMPLE_EVERY_S = 5.0
LEAK_MB_PER_MIN = 1.0
PROCESSES = ("gateway", "mock", "prod", "worker", "postgres", "redis")


def knee(stack: Stack) -> tuple[float, list[dict[str, float | None]]]:
    """The highest passing rate of the ramp, and every step's figures."""
    symbols = DATA_SYMBOLS.split(",")
    found, steps = float(RAMP[0]), []
    for rate in RAMP:
        readers = Readers(stack.gateway, symbols, rate=rate).start()
        time.sleep(STEP_S)
        readers.stop()
        seen = len(readers.seen)
        failures = len(readers.failures())
        p95 = readers.p95_ms()
        steps.append({"rate": rate, "answered": seen, "failures": failures, "p95_ms": p95})
        passed = (
            seen >= MIN_RATE_RATIO * rate * STEP_S
            and failures <= MAX_FAILURES * seen
            and p95 is not None
            and p95 < P95_MS
        )
        stack.say(f"  knee ramp: {rate}/s → {seen} answered, p95 {p95} ms, {failures} failed")
        if not passed:
            break
        found = float(rate)
    return found, steps


def run(stack: Stack, result: DrillResult, options: DrillOptions) -> None:
    measured, steps = (options.rate, []) if options.rate else knee(stack)
    rate = round(0.8 * measured, 1) if not options.rate else measured
    seconds = options.minutes * 60
    result.injected = f"{rate:g} req/s through the gateway for {options.minutes:g} min"
    leaders = {name: stack.pid(name) for name in PROCESSES}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in leaders}
    stack.say(f"  soaking at {rate:g}/s for {options.minutes:g} min …")
    with Readers(stack.gateway, DATA_SYMBOLS.split(","), rate=rate) as readers:
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            at = (time.monotonic() - began) / 60
            for name, pid in leaders.items():
                if pid is not None:
                    samples[name].append((at, tree_mb(pid)))
            time.sleep(SAMPLE_EVERY_S)
    warm = WARM_UP_S / 60
    slopes = {
        name: round(slope([p for p in points if p[0] >= warm]), 3)
        for name, points in samples.items()
        if points
    }
    memory = {name: round(points[-1][1], 1) for name, points in samples.items() if points}
    total = len(readers.seen)
    failures = len(readers.failures())
    p95 = readers.p95_ms()
    achieved = total / seconds
    leaking = {name: s for name, s in slopes.items() if s > LEAK_MB_PER_MIN}
    # p95 per 30 s, to tell a steady overload from a stall.
    windows = [
        readers.p95_ms(began + start, began + start + 30) for start in range(0, int(seconds), 30)
    ]
    result.figures.update(
        knee_rate=measured,
        knee_steps=steps,
        rate=rate,
        minutes=options.minutes,
        requests=total,
        achieved_rate=round(achieved, 1),
        failures=failures,
        error_rate=round(failures / total, 5) if total else None,
        p95_ms=p95,
        p95_ms_per_30_s=windows,
        memory_mb_at_end=memory,
        slope_mb_per_min=slopes,
    )
    result.observed += [
        f"knee {measured:g}/s; {total} requests at {achieved:.1f}/s, {failures} failed, "
        f"p95 {p95} ms",
        "MB/min after warm-up: " + ", ".join(f"{n} {s:+.2f}" for n, s in slopes.items()),
    ]
    result.check(
        "failures under 0.1%",
        total > 0 and failures <= MAX_FAILURES * total,
        f"{failures} of {total}",
    )
    result.check(f"p95 under {P95_MS:g} ms", p95 is not None and p95 < P95_MS, f"{p95} ms")
    result.check(
        f"the asked rate held (≥ {MIN_RATE_RATIO:.0%})",
        achieved >= MIN_RATE_RATIO * rate,
        f"{achieved:.1f}/s of {rate:g}/s",
    )
    result.check(
        f"no process leaks (slope ≤ {LEAK_MB_PER_MIN:g} MB/min after {WARM_UP_S:g} s)",
        not leaking and len(slopes) == len(PROCESSES),
        f"{slopes}; memory at the end (MB): {memory}",
    )
