"""Registration, login, token rotation and revocation, deletion, and the identity rule."""

from __future__ import annotations

import re
import uuid

import httpx
import jwt
import pytest

from contract.identity import DEMO_EMAIL, ISSUER, USER_NAMESPACE
from contract.types import BacktestList, TokenPair, UserEnvelope, WatchlistList

API = "/api/v1"
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
AUTHED_ROUTES = [
    ("GET", f"{API}/auth/me"),
    ("DELETE", f"{API}/auth/me"),
    ("POST", f"{API}/auth/logout"),
    ("GET", f"{API}/watchlists"),
    ("GET", f"{API}/watchlists/Tech"),
    ("PUT", f"{API}/watchlists/Tech"),
    ("DELETE", f"{API}/watchlists/Tech"),
    ("GET", f"{API}/backtests"),
    ("POST", f"{API}/backtests"),
    ("GET", f"{API}/backtests/some-id"),
    ("DELETE", f"{API}/backtests/some-id"),
    ("POST", f"{API}/signals/generate"),
]


def _claims(token: str) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _register(client: httpx.Client, email: str, password: str = "a-good-password"):
    return client.post(
        f"{API}/auth/register", json={"email": email, "password": password, "name": "Contract"}
    )


def _delete_me(client: httpx.Client, email: str, password: str) -> None:
    login = client.post(f"{API}/auth/login", json={"email": email, "password": password})
    if login.status_code == 200:
        token = login.json()["access_token"]
        client.delete(f"{API}/auth/me", headers={"Authorization": f"Bearer {token}"})


def test_register_gives_the_uuid5_of_the_lower_cased_email(client: httpx.Client, expect) -> None:
    email = f"Contract-Mixed-{uuid.uuid4().hex}@Example.COM"
    try:
        user = expect.ok(_register(client, email), UserEnvelope, status=201).user
        assert user.id == str(uuid.uuid5(USER_NAMESPACE, email.lower()))
        assert user.email.lower() == email.lower()
        assert user.name == "Contract"
        assert ISO_MS.match(user.created_at)
    finally:
        _delete_me(client, email, "a-good-password")


def test_duplicate_email_is_409_whatever_its_case(client: httpx.Client, expect, make_user) -> None:
    account = make_user("dup")
    expect.error(_register(client, account.email), 409)
    expect.error(_register(client, account.email.upper()), 409)


def test_login_answers_a_token_pair_with_the_contracts_claims(
    client: httpx.Client, expect, make_user
) -> None:
    account = make_user("login")
    response = client.post(
        f"{API}/auth/login", json={"email": account.email.upper(), "password": account.password}
    )
    pair = expect.ok(response, TokenPair)
    assert pair.token_type == "bearer"
    assert pair.expires_in == 30 * 60
    assert pair.user.id == account.id
    access, refresh = _claims(pair.access_token), _claims(pair.refresh_token)
    assert access["sub"] == refresh["sub"] == account.id
    assert access["email"] == account.email
    assert (access["type"], refresh["type"]) == ("access", "refresh")
    assert access["iss"] == refresh["iss"] == ISSUER
    assert access["jti"]
    assert refresh["jti"]
    assert access["jti"] != refresh["jti"]
    assert jwt.get_unverified_header(pair.access_token)["alg"] == "HS256"
    lifetime = int(refresh["exp"]) - int(access["exp"])  # type: ignore[call-overload]
    assert lifetime == pytest.approx(7 * 24 * 3600 - 30 * 60, abs=5)


def test_the_demo_user_exists(client: httpx.Client, expect, demo) -> None:
    user = expect.ok(client.get(f"{API}/auth/me", headers=demo.headers), UserEnvelope).user
    assert user.email == DEMO_EMAIL
    assert user.id == str(uuid.uuid5(USER_NAMESPACE, DEMO_EMAIL))


@pytest.mark.parametrize("which", ["wrong password", "unknown email"])
def test_wrong_credentials_are_401(client: httpx.Client, expect, make_user, which: str) -> None:
    account = make_user("creds")
    email = account.email if which == "wrong password" else f"nobody-{uuid.uuid4().hex}@example.com"
    response = client.post(
        f"{API}/auth/login", json={"email": email, "password": "not-the-password"}
    )
    expect.error(response, 401)


@pytest.mark.parametrize(("method", "path"), AUTHED_ROUTES)
def test_authenticated_routes_need_a_token(
    client: httpx.Client, expect, method: str, path: str
) -> None:
    expect.error(client.request(method, path, json={}), 401)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer not-a-token",
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl",
        "Basic ZGVtb0BleGFtcGxlLmNvbTpwYXNzd29yZA==",
        "Bearer",
        "Bearer a.b.c",
    ],
)
def test_bad_tokens_are_401(client: httpx.Client, expect, header: str) -> None:
    expect.error(client.get(f"{API}/auth/me", headers={"Authorization": header}), 401)


def test_a_token_signed_with_another_key_is_401(client: httpx.Client, expect) -> None:
    forged = jwt.encode(
        {
            "sub": str(uuid.uuid5(USER_NAMESPACE, DEMO_EMAIL)),
            "email": DEMO_EMAIL,
            "type": "access",
            "iss": ISSUER,
            "exp": 4_000_000_000,
            "jti": uuid.uuid4().hex,
        },
        "another-key-that-the-server-does-not-know-0123456789",
        algorithm="HS256",
    )
    expect.error(client.get(f"{API}/auth/me", headers={"Authorization": f"Bearer {forged}"}), 401)


def test_a_refresh_token_is_no_access_token(client: httpx.Client, expect, make_user) -> None:
    account = make_user("kind")
    headers = {"Authorization": f"Bearer {account.refresh}"}
    expect.error(client.get(f"{API}/auth/me", headers=headers), 401)
    expect.error(client.get(f"{API}/watchlists", headers=headers), 401)


def test_an_access_token_is_no_refresh_token(client: httpx.Client, expect, make_user) -> None:
    account = make_user("kind")
    response = client.post(f"{API}/auth/refresh", json={"refresh_token": account.access})
    expect.error(response, 401)


def test_an_expired_token_is_401(client: httpx.Client, expect, minted) -> None:
    token = minted("access", -60)
    expect.error(client.get(f"{API}/auth/me", headers={"Authorization": f"Bearer {token}"}), 401)


def test_a_token_minted_with_the_shared_key_is_accepted(
    client: httpx.Client, expect, minted
) -> None:
    token = minted("access", 600)
    user = expect.ok(
        client.get(f"{API}/auth/me", headers={"Authorization": f"Bearer {token}"}), UserEnvelope
    ).user
    assert user.email == DEMO_EMAIL


def test_a_refresh_token_works_once(client: httpx.Client, expect, make_user) -> None:
    account = make_user("rotate")
    first = expect.ok(
        client.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh}), TokenPair
    )
    account.access = first.access_token
    assert first.refresh_token != account.refresh
    assert first.user.id == account.id
    expect.error(client.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh}), 401)
    second = expect.ok(
        client.post(f"{API}/auth/refresh", json={"refresh_token": first.refresh_token}), TokenPair
    )
    account.access, account.refresh = second.access_token, second.refresh_token
    me = expect.ok(client.get(f"{API}/auth/me", headers=account.headers), UserEnvelope)
    assert me.user.id == account.id


def test_logout_revokes_the_refresh_tokens(client: httpx.Client, expect, make_user) -> None:
    account = make_user("logout")
    other = client.post(
        f"{API}/auth/login", json={"email": account.email, "password": account.password}
    )
    other_refresh = expect.ok(other, TokenPair).refresh_token
    response = client.post(f"{API}/auth/logout", headers=account.headers)
    assert response.status_code == 204, response.text
    assert response.content == b""
    for token in (account.refresh, other_refresh):
        expect.error(client.post(f"{API}/auth/refresh", json={"refresh_token": token}), 401)
    relogin = client.post(
        f"{API}/auth/login", json={"email": account.email, "password": account.password}
    )
    account.access = expect.ok(relogin, TokenPair).access_token


def test_delete_me_removes_the_user_their_data_and_their_tokens(
    client: httpx.Client, expect, make_user
) -> None:
    account = make_user("gone")
    put = client.put(f"{API}/watchlists/Mine", json={"symbols": ["SPY"]}, headers=account.headers)
    assert put.status_code == 200, put.text
    backtest = client.post(
        f"{API}/backtests",
        json={
            "symbol": "SPY",
            "strategy": "buy_and_hold",
            "start": "2026-01-05",
            "end": "2026-06-30",
        },
        headers=account.headers,
    )
    assert backtest.status_code == 202, backtest.text

    response = client.delete(f"{API}/auth/me", headers=account.headers)
    assert response.status_code == 204, response.text
    expect.error(client.get(f"{API}/auth/me", headers=account.headers), 401)
    expect.error(client.get(f"{API}/watchlists", headers=account.headers), 401)
    expect.error(client.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh}), 401)
    expect.error(
        client.post(
            f"{API}/auth/login", json={"email": account.email, "password": account.password}
        ),
        401,
    )

    again = expect.ok(_register(client, account.email, account.password), UserEnvelope, 201)
    assert again.user.id == account.id, "the id is the UUIDv5 of the email, again"
    pair = expect.ok(
        client.post(
            f"{API}/auth/login", json={"email": account.email, "password": account.password}
        ),
        TokenPair,
    )
    account.access, account.refresh = pair.access_token, pair.refresh_token
    lists = expect.ok(client.get(f"{API}/watchlists", headers=account.headers), WatchlistList)
    assert lists.watchlists == []
    runs = expect.ok(client.get(f"{API}/backtests", headers=account.headers), BacktestList)
    assert runs.backtests == []


def test_me_answers_the_caller(client: httpx.Client, expect, make_user) -> None:
    account = make_user("me")
    user = expect.ok(client.get(f"{API}/auth/me", headers=account.headers), UserEnvelope).user
    assert (user.id, user.email) == (account.id, account.email)
