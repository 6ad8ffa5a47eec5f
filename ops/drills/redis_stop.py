"""redis-stop: Redis stopped under load, started again, then flushed.

The promise: while Redis is down prod answers from PostgreSQL (health `degraded`, HTTP 200, no
5xx on reads or writes); when it returns, the live feed and the WebSocket fan-out come back (a
socket subscribed after the return gets quotes); a FLUSHALL right after backtests were queued
loses none of them (the worker's sweeper re-enqueues what the queue forgot).
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import httpx
import redis
from websockets.sync.client import ClientConnection, connect

from ops.drills.clients import Readers
from ops.drills.outcome import DrillOptions, DrillResult
from ops.drills.stack import API, DATA_SYMBOLS, Stack, StackError, demo_token
from ops.state import now_iso

INJECTED = (
    "Redis stopped for 10 s under reads and writes, started again; FLUSHALL with 5 backtests queued"
)
DOWN_S = 10.0
BACKTESTS = 5
SWEPT_WITHIN_S = 90.0


def subscribed(ws_url: str) -> ClientConnection:
    """A socket subscribed to SPY's quotes."""
    socket = connect(ws_url, open_timeout=10)
    subscribe = {"type": "subscribe", "data": {"channel": "market_data", "symbol": "SPY"}}
    socket.send(json.dumps(subscribe))
    return socket


def two_quotes(socket: ClientConnection, since: str, seconds: float) -> float | None:
    """Seconds until `socket` has received two live quotes stamped after `since` (ISO time):
    the feed ticking and fanned out through Redis; None if they did not come."""
    began = time.monotonic()
    quotes = 0
    while time.monotonic() - began < seconds:
        try:
            frame: Any = json.loads(socket.recv(timeout=1))
        except TimeoutError:
            continue
        if (
            frame.get("type") == "market_data"
            and frame.get("data", {}).get("symbol") == "SPY"
            and str(frame.get("timestamp", "")) > since
        ):
            quotes += 1
            if quotes == 2:
                return time.monotonic() - began
    return None


def _writes(prod: str, token: str, seconds: float) -> list[int]:
    statuses = []
    headers = {"Authorization": f"Bearer {token}"}
    end = time.monotonic() + seconds
    with httpx.Client(base_url=prod, timeout=15, headers=headers) as client:
        n = 0
        while time.monotonic() < end:
            n += 1
            put = client.put(f"{API}/watchlists/redis-{n}", json={"symbols": ["SPY"]})
            statuses.append(put.status_code)
            statuses.append(client.get(f"{API}/watchlists").status_code)
            time.sleep(0.2)
    return statuses


def run(stack: Stack, result: DrillResult, _options: DrillOptions) -> None:
    result.injected = INJECTED
    prod = stack.url("PROD_PORT")
    ws_url = prod.replace("http", "ws") + "/ws"
    token = demo_token(prod, stack)
    held = subscribed(ws_url)  # stays open across the outage, as a dashboard's would
    before = two_quotes(held, "", 15)
    with held, Readers(prod, DATA_SYMBOLS.split(","), rate=20) as readers:
        time.sleep(2)
        stopped_at = time.monotonic()
        stack.stop_server("redis")
        stack.say("  stopped Redis")
        health = httpx.get(f"{prod}{API}/health", timeout=15)
        writes = _writes(prod, token, DOWN_S)
        back_at = time.monotonic()
        stack.start_server("redis")
        returned = now_iso()
        stack.say("  started Redis again")
        held_after = two_quotes(held, returned, 30)
    down = [s for s in readers.seen if stopped_at <= s.at <= back_at]
    five = [f"{s.status} GET {s.path}" for s in readers.seen if s.failed]
    five += [f"{status} watchlists" for status in writes if status >= 500]
    with subscribed(ws_url) as fresh:
        quote_after = two_quotes(fresh, returned, 30)
    healthy = stack.wait(
        lambda: httpx.get(f"{prod}{API}/health", timeout=5).json()["status"] == "ok", 30, "ok"
    )

    headers = {"Authorization": f"Bearer {token}"}
    ids = [f"drill-flush-{n}-{int(time.time())}" for n in range(BACKTESTS)]
    # The worker stopped first, so the jobs are still queued in Redis when it is flushed: only
    # the sweeper (rows queued, jobs gone) can bring them back.
    stack.ok("stop", "worker")
    for backtest_id in ids:
        answer = httpx.post(
            f"{prod}{API}/backtests",
            json={
                "id": backtest_id,
                "symbol": "SPY",
                "strategy": "buy_and_hold",
                "start": "2025-06-02",
                "end": "2025-10-31",
            },
            headers=headers,
            timeout=15,
        )
        answer.raise_for_status()
    client = redis.Redis.from_url(stack.redis_url(), socket_timeout=5)
    try:
        client.flushall()
    finally:
        client.close()
    flushed_at = time.monotonic()

    def statuses() -> dict[str, str]:
        return {
            i: httpx.get(f"{prod}{API}/backtests/{i}", headers=headers, timeout=10).json()["status"]
            for i in ids
        }

    at_flush = statuses()
    stack.say(f"  queued {BACKTESTS} backtests with the worker stopped, FLUSHALL: {at_flush}")
    stack.ok("worker")

    with contextlib.suppress(StackError):  # the statuses below say what happened
        stack.wait(lambda: set(statuses().values()) == {"done"}, SWEPT_WITHIN_S, "backtests")
    swept = time.monotonic() - flushed_at
    final = statuses()
    done = sum(1 for s in final.values() if s == "done")
    result.figures.update(
        health_while_down=[health.status_code, health.json().get("status")],
        reads_while_down=len(down),
        writes_while_down=len(writes),
        five_xx=len(five),
        two_quotes_before_s=before,
        two_quotes_after_on_the_held_socket_s=held_after,
        two_quotes_after_on_a_new_socket_s=quote_after,
        seconds_until_health_ok=round(healthy, 2),
        backtests_at_flush=at_flush,
        backtests_done_after_flush=f"{done}/{BACKTESTS}",
        seconds_to_complete_after_flush=round(swept, 1),
    )
    result.observed += [
        f"health {health.status_code} {health.json().get('status')} while down",
        f"{len(five)} 5xx of {len(down)} reads + {len(writes)} writes/reads while down",
        f"quotes again on the held socket {held_after and round(held_after, 1)} s after Redis "
        f"returned, on a new one {quote_after and round(quote_after, 1)} s",
        f"{done}/{BACKTESTS} backtests done {swept:.0f} s after FLUSHALL",
    ]
    result.check(
        "health degraded (200) while Redis is down",
        health.status_code == 200 and health.json().get("status") == "degraded",
        f"{health.status_code} {health.text[:160]}",
    )
    result.check(
        "no 5xx while Redis is down",
        not five and len(down) > 0 and len(writes) > 0,
        f"{len(five)} of {len(down) + len(writes)}: {five[:3]}",
    )
    result.check(
        "the feed and WebSocket fan-out come back",
        None not in (before, held_after, quote_after),
        f"two live quotes: {before and round(before, 2)} s after subscribing; after Redis "
        f"returned, {held_after and round(held_after, 2)} s on the socket held across the "
        f"outage, {quote_after and round(quote_after, 2)} s on a new one",
    )
    result.check(
        "no backtest lost to FLUSHALL",
        done == BACKTESTS and set(at_flush.values()) == {"queued"},
        f"at the flush {at_flush}; {swept:.0f} s later {final}",
    )
