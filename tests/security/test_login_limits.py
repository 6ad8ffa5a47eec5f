"""Login brute force is limited per address (across accounts) and per account (across addresses),
on both backends, with every request on a connection of its own so prod's two workers share the
work: the limits hold across worker processes and against a burst of parallel guesses.
(Sequential failures per account: tests/contract/test_contract_rate_limits.py.)"""

from __future__ import annotations

import random
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.security.servers import API, SETTINGS, Server, new_account

PER_ACCOUNT = int(SETTINGS["LOGIN_LIMIT_PER_ACCOUNT"])
PER_ADDRESS = int(SETTINGS["LOGIN_LIMIT_PER_ADDRESS"])


def an_address() -> str:
    """A random documentation address (2001:db8::/32): no other test shares its limit."""
    return "2001:db8::" + ":".join(f"{random.randrange(1, 0xFFFF):x}" for _ in range(3))


def login(server: Server, email: str, password: str, address: str) -> httpx.Response:
    """One login on a new connection, from `address` (X-Forwarded-For, trusted from loopback)."""
    with httpx.Client(timeout=30) as fresh:
        return fresh.post(
            f"{server.url}{API}/auth/login",
            json={"email": email, "password": password},
            headers={"X-Forwarded-For": address},
        )


def test_one_address_guessing_many_accounts_is_stopped(backend: Server) -> None:
    address = an_address()
    victims = [f"nobody-{uuid.uuid4().hex[:10]}@example.com" for _ in range(PER_ADDRESS + 4)]
    statuses = [login(backend, email, "guess-123456", address).status_code for email in victims]
    assert statuses[:PER_ADDRESS] == [401] * PER_ADDRESS, statuses
    assert set(statuses[PER_ADDRESS:]) == {429}, statuses

    account = new_account(backend, "limited-address")
    blocked = login(backend, account.email, account.password, address)
    assert blocked.status_code == 429, "even a right password waits out the address's limit"
    assert int(blocked.headers["retry-after"]) > 0
    assert "login" in blocked.json()["detail"].lower()
    elsewhere = login(backend, account.email, account.password, an_address())
    assert elsewhere.status_code == 200, "another address is not limited"


def test_one_account_guessed_from_many_addresses_is_stopped(backend: Server) -> None:
    account = new_account(backend, "limited-account")
    statuses = [
        login(backend, account.email, f"guess-{n:06d}", an_address()).status_code
        for n in range(PER_ACCOUNT + 3)
    ]
    assert statuses[:PER_ACCOUNT] == [401] * PER_ACCOUNT, statuses
    assert set(statuses[PER_ACCOUNT:]) == {429}, statuses
    assert login(backend, account.email, account.password, an_address()).status_code == 429


def test_a_successful_login_does_not_use_up_the_allowance(backend: Server) -> None:
    account = new_account(backend, "allowance")
    wrong = [
        login(backend, account.email, f"guess-{n}", an_address()) for n in range(PER_ACCOUNT - 1)
    ]
    assert [r.status_code for r in wrong] == [401] * (PER_ACCOUNT - 1)
    assert login(backend, account.email, account.password, an_address()).status_code == 200
    assert login(backend, account.email, "guess-last", an_address()).status_code == 401
    assert login(backend, account.email, "guess-over", an_address()).status_code == 429


def test_a_burst_of_parallel_guesses_gets_no_more_than_the_limit(backend: Server) -> None:
    account = new_account(backend, "burst")
    guesses = 40
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(
            pool.map(
                lambda n: login(backend, account.email, f"burst-{n:06d}", an_address()).status_code,
                range(guesses),
            )
        )
    checked = statuses.count(401)
    assert set(statuses) <= {401, 429}, statuses
    assert checked <= PER_ACCOUNT, (
        f"{checked} of {guesses} parallel guesses had their password checked; "
        f"the limit is {PER_ACCOUNT} per account"
    )
