"""Rate limits: per user past the advertised RateLimit-Limit, and failed logins per account."""

from __future__ import annotations

import httpx
import pytest

API = "/api/v1"
MAX_DRIVEN = 5000


def _limit_headers(response: httpx.Response) -> tuple[int, int, int]:
    return (
        int(response.headers["ratelimit-limit"]),
        int(response.headers["ratelimit-remaining"]),
        int(response.headers["ratelimit-reset"]),
    )


def test_answers_advertise_the_limit(client: httpx.Client, reader) -> None:
    response = client.get(f"{API}/symbols", headers=reader)
    assert response.status_code == 200
    limit, remaining, reset = _limit_headers(response)
    assert limit >= 600, "at least 600 requests a minute per user"
    assert 0 <= remaining < limit
    assert 0 < reset <= 60


def test_a_user_past_the_limit_gets_429_and_others_do_not(
    client: httpx.Client, expect, make_user, demo
) -> None:
    account = make_user("limited")
    first = client.get(f"{API}/watchlists", headers=account.headers)
    assert first.status_code == 200, first.text
    limit, remaining, _ = _limit_headers(first)
    if limit > MAX_DRIVEN:
        pytest.skip(f"RateLimit-Limit {limit} is too high to drive past in a test run")
    assert remaining == limit - 1, "a fresh user starts with a full allowance"
    limited = None
    previous = remaining
    for _ in range(2 * limit + 5):
        response = client.get(f"{API}/watchlists", headers=account.headers)
        if response.status_code == 429:
            limited = response
            break
        assert response.status_code == 200, response.text
        now = int(response.headers["ratelimit-remaining"])
        assert now == previous - 1 or now > previous, "Remaining counts down (or a window reset)"
        previous = now
    assert limited is not None, f"no 429 after {2 * limit + 5} requests with limit {limit}"
    expect.error(limited, 429)
    retry_after = int(limited.headers["retry-after"])
    assert 0 < retry_after <= 60
    assert _limit_headers(limited)[:2] == (limit, 0)
    assert 0 < _limit_headers(limited)[2] <= 60
    expect.error(client.get(f"{API}/auth/me", headers=account.headers), 429)
    assert client.get(f"{API}/watchlists", headers=demo.headers).status_code == 200
    bystander = make_user("bystander")
    assert client.get(f"{API}/watchlists", headers=bystander.headers).status_code == 200


def test_failed_logins_are_limited_per_account(
    client: httpx.Client, expect, make_user, demo
) -> None:
    account = make_user("guessed")
    wrong = {"email": account.email, "password": "not-the-password"}
    failures = 0
    limited = None
    for _ in range(60):
        response = client.post(f"{API}/auth/login", json=wrong)
        if response.status_code == 429:
            limited = response
            break
        expect.error(response, 401)
        failures += 1
    assert limited is not None, "60 failed logins for one account were never limited"
    expect.error(limited, 429)
    assert int(limited.headers["retry-after"]) > 0
    advertised = {k: v for k, v in limited.headers.items() if k.startswith("ratelimit-")}
    assert int(limited.headers["ratelimit-limit"]) == failures, (
        f"429 after {failures} failed logins advertises {advertised}"
    )
    assert limited.headers["ratelimit-remaining"] == "0", advertised
    right = {"email": account.email, "password": account.password}
    expect.error(client.post(f"{API}/auth/login", json=right), 429)
    other = client.post(f"{API}/auth/login", json={"email": demo.email, "password": demo.password})
    assert other.status_code == 200, "other accounts can still log in"
