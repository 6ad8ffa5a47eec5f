"""no-data-lost: the drill of PHASES.md, with concurrent writers through the gateway.

Writers (the demo user's and a second user's watchlists, backtests with client ids,
registrations) run through the gateway the whole time, across shadow → canary → promote → Redis
FLUSHALL → rollback → the mock restarted (its memory gone, rebuilt from PostgreSQL) → promote.
The promise: every acknowledged write is readable at the end from the backend that serves, and
the gateway counts the writes, the mirrored writes and the outbox's retries. The canary's latency
gate is wide (2 s): this drill is about data, and it must reach the promotion.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis

from ops.drills.clients import Readers
from ops.drills.outcome import DrillOptions, DrillResult
from ops.drills.stack import API, DATA_SYMBOLS, Stack, demo_token
from ops.drills.writers import ListWriter

INJECTED = (
    "writers across shadow → canary → promote → Redis FLUSHALL → rollback → mock restarted "
    "→ promote"
)
PASSWORD_BYTES = 12


@dataclass
class OtherWriters:
    """Backtests with client ids and registrations, from a thread, each acknowledged one kept."""

    base: str
    token: str
    backtests: list[str] = field(default_factory=list)
    users: dict[str, str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> OtherWriters:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        tag = secrets.token_hex(3)
        n = 0
        with httpx.Client(base_url=self.base, timeout=15) as client:
            while not self._stop.is_set():
                n += 1
                backtest = f"drill-{tag}-{n}"
                body = {
                    "id": backtest,
                    "symbol": "SPY",
                    "strategy": "buy_and_hold",
                    "start": "2025-06-02",
                    "end": "2025-10-31",
                }
                email = f"drill-{tag}-{n}@example.com"
                password = secrets.token_urlsafe(PASSWORD_BYTES)
                try:
                    answer = client.post(f"{API}/backtests", json=body, headers=headers)
                    if answer.status_code == 202:
                        self.backtests.append(backtest)
                    else:
                        self.failed.append(f"POST backtests: {_refusal(answer)}")
                    answer = client.post(
                        f"{API}/auth/register",
                        json={"email": email, "password": password, "name": "Drill"},
                    )
                    if answer.status_code == 201:
                        self.users[email] = password
                    else:
                        self.failed.append(f"POST register: {_refusal(answer)}")
                except httpx.HTTPError as exc:
                    self.failed.append(f"POST writes: {type(exc).__name__}")
                time.sleep(0.25)

    def missing(self, base: str) -> list[str]:
        headers = {"Authorization": f"Bearer {self.token}"}
        found = []
        with httpx.Client(base_url=base, timeout=15) as client:
            for backtest in self.backtests:
                answer = client.get(f"{API}/backtests/{backtest}", headers=headers)
                if answer.status_code != 200:
                    found.append(f"backtest {backtest}: {answer.status_code}")
            for email, password in self.users.items():
                answer = client.post(
                    f"{API}/auth/login", json={"email": email, "password": password}
                )
                if answer.status_code != 200:
                    found.append(f"login {email}: {answer.status_code}")
        return found


def _refusal(answer: httpx.Response) -> str:
    return f"{answer.status_code} from {answer.headers.get('x-gateway-upstream', '?')}"


def refusal_kinds(failed: list[str]) -> dict[str, int]:
    """Refused writes by method, status and backend: `PUT 401 from mock` → how many."""
    kinds: Counter[str] = Counter()
    for line in failed:
        method, _, rest = line.partition(" ")
        kinds[f"{method} {rest.partition(': ')[2].partition(' {')[0]}"] += 1
    return dict(kinds.most_common())


def _second_user(base: str) -> str:
    email = f"drill-second-{secrets.token_hex(3)}@example.com"
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    httpx.post(
        f"{base}{API}/auth/register",
        json={"email": email, "password": password, "name": "Second"},
        timeout=15,
    ).raise_for_status()
    answer = httpx.post(
        f"{base}{API}/auth/login", json={"email": email, "password": password}, timeout=15
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def run(stack: Stack, result: DrillResult, _options: DrillOptions) -> None:
    result.injected = INJECTED
    gateway = stack.gateway
    token = demo_token(gateway, stack)
    lists = [ListWriter(gateway, token, "demo"), ListWriter(gateway, _second_user(gateway), "two")]
    others = OtherWriters(gateway, token)
    timeline: list[str] = []

    def stage(what: str, *args: str) -> None:
        began = time.monotonic()
        if args:
            stack.ok(*args)
        timeline.append(f"{what} ({time.monotonic() - began:.1f} s)")
        time.sleep(2)

    with Readers(gateway, DATA_SYMBOLS.split(","), rate=30):
        for writer in lists:
            writer.start()
        others.start()
        try:
            stage("shadow")
            stage(
                "canary",
                "canary",
                *("--steps", "50,100", "--hold", "3s", "--interval", "1s"),
                *("--min-samples", "5", "--p95-ms", "2000"),
            )
            stage("promote", "promote")
            flush = redis.Redis.from_url(stack.redis_url(), socket_timeout=5)
            try:
                flush.flushall()
            finally:
                flush.close()
            stage("Redis FLUSHALL")
            stage("rollback", "rollback")
            stage("mock stopped", "stop", "mock")
            stage("mock started again (rebuilt)", "simple")
            stage("promote again", "promote")
        finally:
            for writer in lists:
                writer.stop()
            others.stop()
    drained = stack.wait(lambda: stack.admin_get("/outbox")["pending"] == 0, 60, "the outbox")
    state = stack.admin_get("/state")
    outbox = stack.admin_get("/outbox")
    served = httpx.get(f"{gateway}{API}/symbols", timeout=10).headers.get("x-gateway-upstream")
    missing = [m for w in lists for m in w.missing(gateway)] + others.missing(gateway)
    acknowledged = sum(len(w.lists) for w in lists) + len(others.backtests) + len(others.users)
    refused = sum(len(w.failed) for w in lists) + len(others.failed)
    counts: dict[str, Any] = state.get("outbox", {})
    result.figures.update(
        timeline=timeline,
        acknowledged=acknowledged,
        watchlists=sum(len(w.lists) for w in lists),
        backtests=len(others.backtests),
        registrations=len(others.users),
        refused_or_failed=refused,
        refused=refusal_kinds([*(f for w in lists for f in w.failed), *others.failed]),
        refused_examples=[*(f for w in lists for f in w.failed), *others.failed][:5],
        missing=len(missing),
        missing_examples=missing[:10],
        gateway_writes=counts.get("writes"),
        mirrored=outbox.get("mirrored"),
        outbox_retried=outbox.get("retried"),
        outbox_failed=outbox.get("failed"),
        seconds_to_drain=round(drained, 1),
        served_at_end_by=served,
    )
    result.observed += [
        f"{acknowledged} writes acknowledged ({result.figures['watchlists']} watchlists, "
        f"{len(others.backtests)} backtests, {len(others.users)} registrations), "
        f"{refused} refused: {result.figures['refused']}",
        f"gateway: {counts.get('writes')} writes, {outbox.get('mirrored')} mirrored, "
        f"{outbox.get('retried')} outbox retries",
        f"{len(missing)} lost",
    ]
    result.check(
        "writes of every kind acknowledged",
        all(w.lists for w in lists) and bool(others.backtests) and bool(others.users),
        f"{acknowledged} acknowledged",
    )
    result.check(
        "every acknowledged write readable at the end",
        not missing and served == "prod",
        f"{len(missing)} missing of {acknowledged} (served by {served}): {missing[:3]}",
    )
