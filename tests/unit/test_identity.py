"""Identity rules both backends share: ids from emails, tokens with the contract's claims."""

from __future__ import annotations

import uuid

import jwt
import pytest

from contract.identity import (
    ACCESS_SECONDS,
    ISSUER,
    REFRESH_SECONDS,
    USER_NAMESPACE,
    TokenError,
    decode_token,
    issue_token,
    user_id_for,
)

SECRET = "s" * 64


def test_user_id_is_uuid5_of_the_lower_cased_email() -> None:
    assert user_id_for("Demo@Example.com ") == str(uuid.uuid5(USER_NAMESPACE, "demo@example.com"))
    assert user_id_for("a@b.co") != user_id_for("c@b.co")


def test_tokens_carry_the_contract_claims() -> None:
    token, claims = issue_token(SECRET, "u1", "a@b.co", "access", now=1_000_000)
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert payload["sub"] == "u1"
    assert payload["email"] == "a@b.co"
    assert payload["type"] == "access"
    assert payload["iss"] == ISSUER
    assert payload["exp"] == 1_000_000 + ACCESS_SECONDS
    assert payload["jti"] == claims.jti
    _, refresh = issue_token(SECRET, "u1", "a@b.co", "refresh", now=1_000_000)
    assert refresh.exp == 1_000_000 + REFRESH_SECONDS


def test_a_token_is_refused_when_it_is_of_the_wrong_type_expired_or_forged() -> None:
    access, _ = issue_token(SECRET, "u1", "a@b.co", "access")
    assert decode_token(SECRET, access, "access").sub == "u1"
    with pytest.raises(TokenError):
        decode_token(SECRET, access, "refresh")
    with pytest.raises(TokenError):
        decode_token("t" * 64, access, "access")
    expired, _ = issue_token(SECRET, "u1", "a@b.co", "access", now=1_000)
    with pytest.raises(TokenError):
        decode_token(SECRET, expired, "access")
    with pytest.raises(TokenError):
        decode_token(SECRET, "not.a.token", "access")
