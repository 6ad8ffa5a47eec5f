"""The frontend's traffic, per simulated dashboard user: what `./start.sh loadtest` runs.

Per user and minute, as the reference dashboard does: `GET /api/v1/market-data/{symbol}` 14 times,
the history (`period=1h&interval=5m`) once, the insights of the symbol's current signal once (its
id from `GET /signals/{symbol}`, then `GET /signals/{id}/insights`), the opportunities once, and
the precise options every 15 minutes; a share of the users (LOADTEST_WATCHLIST_SHARE, default
20 %) also edit a watchlist (PUT, then GET the list) once a minute. Symbols come from the served
universe (`GET /api/v1/symbols` once). The proportions are the dashboard's; the pace is scaled so
that the users together make LOADTEST_RATE requests a second.

Every user is logged in, so rate limits apply per user as in production: users share a small
pool of accounts (LOADTEST_ACCOUNTS, registered at the start, each kept well under the per-user
limit, and deleted at the end), and each user sends its own `X-Forwarded-For` address, as
browsers behind the gateway would. Request names are route templates
(`/api/v1/market-data/[symbol]`). Run it through `./start.sh loadtest`, which sets the
configuration (loadtests/gates.py `RunConfig`) and reads the result.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import secrets
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
from gevent.event import Event
from gevent.lock import BoundedSemaphore
from locust import FastHttpUser, events, task
from locust.exception import StopUser

import loadtests.shapes as shapes
from loadtests import gates
from loadtests.ws_user import WebSocketUser

API = "/api/v1"
CONFIG = gates.RunConfig.from_env(os.environ)
shapes.configure(CONFIG)

WebSocketUser.fixed_count = CONFIG.ws_users
WebSocketUser.heartbeat_s = CONFIG.heartbeat_s
WebSocketUser.seed = CONFIG.seed
if CONFIG.ws_users == 0:
    WebSocketUser.abstract = True

# Exactly one shape in this module's namespace: Locust picks it up from here.
Shape = shapes.StepLoadShape if CONFIG.mode == "knee" else shapes.FixedRateShape

# At most this many registrations and logins at once: each costs argon2 time on the server.
LOGIN_CONCURRENCY = 4
# A user keeps looking at one symbol for a while, as a person at a dashboard does.
SWITCH_SYMBOL_CHANCE = 0.05


@dataclass
class Account:
    """One registered user of the pool; `token` once logged in, `problem` when that failed."""

    email: str
    password: str
    done: Event = field(default_factory=Event)
    claimed: bool = False
    token: str | None = None
    address: str = ""
    problem: str | None = None


def _retried(call: Callable[[], Any], wanted: tuple[int, ...], attempts: int = 3) -> Any:
    """A setup request, tried again after a 5xx or no answer, as a person would click again."""
    answer = call()
    for _ in range(attempts - 1):
        if answer.status_code in wanted or 0 < answer.status_code < 500:
            break
        gevent.sleep(0.5)
        answer = call()
    return answer


class AccountPool:
    """The run's accounts, registered and logged in by the first user that needs each."""

    def __init__(self, count: int, run_id: str) -> None:
        self.accounts = [
            Account(f"loadtest-{run_id}-{slot}@example.com", secrets.token_urlsafe(18))
            for slot in range(count)
        ]
        self.gate = BoundedSemaphore(LOGIN_CONCURRENCY)

    def token(self, user: FrontendUser, slot: int) -> str:
        account = self.accounts[slot % len(self.accounts)]
        if not account.claimed:
            account.claimed = True
            account.address = user.address
            try:
                with self.gate:
                    account.token = self._login(user, account)
            except Exception as exc:
                account.problem = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                account.done.set()
        account.done.wait(CONFIG.setup_timeout_s)
        if account.token is None:
            raise StopUser(account.problem or "the account did not log in")
        return account.token

    def _login(self, user: FrontendUser, account: Account) -> str:
        headers = {"X-Forwarded-For": user.address}
        body = {"email": account.email, "password": account.password, "name": "Load Test"}
        # 409: an earlier attempt registered it after all.
        register = _retried(
            lambda: user.client.post(
                f"{API}/auth/register", json=body, headers=headers, name=f"{API}/auth/register"
            ),
            (201, 409),
        )
        if register.status_code not in (201, 409):
            raise RuntimeError(f"register answered {register.status_code}")
        answer = _retried(
            lambda: user.client.post(
                f"{API}/auth/login",
                json={"email": account.email, "password": account.password},
                headers=headers,
                name=f"{API}/auth/login",
            ),
            (200,),
        )
        if answer.status_code != 200:
            raise RuntimeError(f"login answered {answer.status_code}")
        return str(answer.json()["access_token"])

    def delete_all(self, host: str) -> None:
        """Best effort: the accounts (and their watchlists) go again, unrecorded."""
        for account in self.accounts:
            if account.token is None:
                continue
            request = urllib.request.Request(
                f"{host.rstrip('/')}{API}/auth/me",
                method="DELETE",
                headers={
                    "Authorization": f"Bearer {account.token}",
                    "X-Forwarded-For": account.address,
                },
            )
            try:
                urllib.request.urlopen(request, timeout=10).close()
            except OSError:
                continue


class Universe:
    """The served symbols, read once by the first user."""

    def __init__(self) -> None:
        self.symbols: list[str] = []
        self.ready = Event()
        self.claimed = False

    def get(self, user: FrontendUser) -> list[str]:
        if not self.claimed:
            self.claimed = True
            try:
                answer = _retried(
                    lambda: user.client.get(f"{API}/symbols", name=f"{API}/symbols"), (200,)
                )
                if answer.status_code == 200:
                    self.symbols = [str(s["symbol"]) for s in answer.json()["symbols"]]
            finally:
                self.symbols = self.symbols or ["SPY"]
                self.ready.set()
        self.ready.wait(CONFIG.setup_timeout_s)
        return self.symbols or ["SPY"]


ACCOUNTS = AccountPool(CONFIG.accounts, CONFIG.run_id)
UNIVERSE = Universe()
USER_NUMBERS = itertools.count(1)


def is_editor(number: int, share: float) -> bool:
    """Whether user `number` (1-based) edits watchlists: exactly `share` of the users do."""
    return int(number * share) > int((number - 1) * share)


def client_address(number: int) -> str:
    return f"10.{(number >> 16) & 255}.{(number >> 8) & 255}.{number & 255}"


def path_part(value: str) -> str:
    return urllib.parse.quote(value, safe="")


class FrontendUser(FastHttpUser):
    """One logged-in dashboard user making the frontend's requests at the run's pace."""

    network_timeout = 10.0
    connection_timeout = 5.0

    def on_start(self) -> None:
        self.number = next(USER_NUMBERS)
        self.rng = random.Random(CONFIG.seed * 1_000_003 + self.number)
        self.address = client_address(self.number)
        self.task_started = time.monotonic()
        self.requests_made = 0
        try:
            self.symbols = UNIVERSE.get(self)
            token = ACCOUNTS.token(self, self.number - 1)
        except Exception as exc:
            shapes.PACE.given_up += 1
            raise StopUser(f"user {self.number} could not log in: {exc}") from exc
        self.headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": self.address}
        self.symbol = self.rng.choice(self.symbols)
        self.watchlist = f"loadtest {self.number}"
        self.actions: list[Callable[[], int]] = [
            self.quote,
            self.history,
            self.insights,
            self.opportunities,
            self.options,
        ]
        self.weights = [14.0, 1.0, 1.0, 1.0, 1.0 / 15]
        if is_editor(self.number, CONFIG.watchlist_share):
            self.actions.append(self.edit_watchlist)
            self.weights.append(1.0)
        shapes.PACE.ready += 1
        # Spread the users' first requests over one interval instead of a burst.
        gevent.sleep(self.rng.uniform(0, 1 / shapes.PACE.per_user()))

    def wait_time(self) -> float:
        """Pace: the requests of the last task took their share of this user's arrival rate."""
        due = self.task_started + self.requests_made / shapes.PACE.per_user()
        return max(0.0, due - time.monotonic())

    @task
    def dashboard(self) -> None:
        self.task_started = time.monotonic()
        if self.rng.random() < SWITCH_SYMBOL_CHANCE:
            self.symbol = self.rng.choice(self.symbols)
        action = self.rng.choices(self.actions, weights=self.weights)[0]
        self.requests_made = action()

    def _get(self, path: str, name: str) -> Any:
        return self.client.get(path, headers=self.headers, name=name)

    def quote(self) -> int:
        self._get(f"{API}/market-data/{path_part(self.symbol)}", f"{API}/market-data/[symbol]")
        return 1

    def history(self) -> int:
        self._get(
            f"{API}/market-data/{path_part(self.symbol)}/historical?period=1h&interval=5m",
            f"{API}/market-data/[symbol]/historical",
        )
        return 1

    def insights(self) -> int:
        answer = self._get(f"{API}/signals/{path_part(self.symbol)}", f"{API}/signals/[symbol]")
        if answer.status_code != 200:
            return 1
        try:
            signals = answer.json()["signals"]
        except (ValueError, KeyError, TypeError):
            return 1
        if not signals:
            return 1
        signal_id = str(signals[0]["id"])
        self._get(
            f"{API}/signals/{path_part(signal_id)}/insights", f"{API}/signals/[signal_id]/insights"
        )
        return 2

    def opportunities(self) -> int:
        self._get(f"{API}/market/opportunities?limit=5", f"{API}/market/opportunities")
        return 1

    def options(self) -> int:
        self._get(
            f"{API}/signals/precise-options?symbol={path_part(self.symbol)}",
            f"{API}/signals/precise-options",
        )
        return 1

    def edit_watchlist(self) -> int:
        chosen = self.rng.sample(self.symbols, min(len(self.symbols), self.rng.randint(3, 8)))
        self.client.put(
            f"{API}/watchlists/{path_part(self.watchlist)}",
            data=json.dumps({"symbols": chosen}),
            headers={**self.headers, "Content-Type": "application/json"},
            name=f"{API}/watchlists/[name]",
        )
        self._get(f"{API}/watchlists", f"{API}/watchlists")
        return 2


def _install_gates(environment: Any, **_: Any) -> None:
    gates.install(environment, CONFIG)


def _delete_accounts(environment: Any, **_: Any) -> None:
    ACCOUNTS.delete_all(str(environment.host or ""))


events.init.add_listener(_install_gates)  # type: ignore[no-untyped-call]
events.test_stop.add_listener(_delete_accounts)  # type: ignore[no-untyped-call]


__all__ = ["FrontendUser", "Shape", "WebSocketUser"]
