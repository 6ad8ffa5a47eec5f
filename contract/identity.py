"""Identity rules shared by both backends, so that a user and a token survive the cutover."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Literal

import jwt

# Fixed forever: changing it changes every user's id.
USER_NAMESPACE = uuid.UUID("5b7e3a52-0c1f-4d3e-9a57-2f1c8e6d4b90")
ISSUER = "cutover-kit"
ALGORITHM = "HS256"
ACCESS_SECONDS = 30 * 60
REFRESH_SECONDS = 7 * 24 * 3600
DEMO_EMAIL = "demo@example.com"
DEMO_NAME = "Demo User"

TokenType = Literal["access", "refresh"]


def normalise_email(email: str) -> str:
    return email.strip().lower()


def user_id_for(email: str) -> str:
    """A user's id: the UUIDv5 of the lower-cased email, the same on every backend."""
    return str(uuid.uuid5(USER_NAMESPACE, normalise_email(email)))


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    email: str
    type: TokenType
    jti: str
    exp: int
    iat: float


class TokenError(Exception):
    """A token that is missing, malformed, expired, of the wrong type or badly signed."""


def issue_token(
    secret: str, user_id: str, email: str, token_type: TokenType, now: float | None = None
) -> tuple[str, Claims]:
    # iat to the millisecond (RFC 7519 allows fractions): a user deleted and registered
    # again within one second must not revive the tokens issued before the deletion.
    issued = round(now if now is not None else time.time(), 3)
    lifetime = ACCESS_SECONDS if token_type == "access" else REFRESH_SECONDS
    claims = Claims(
        sub=user_id,
        email=email,
        type=token_type,
        jti=uuid.uuid4().hex,
        exp=int(issued) + lifetime,
        iat=issued,
    )
    payload = {
        "sub": claims.sub,
        "email": claims.email,
        "type": claims.type,
        "iss": ISSUER,
        "exp": claims.exp,
        "iat": claims.iat,
        "jti": claims.jti,
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM), claims


def decode_token(secret: str, token: str, expected: TokenType) -> Claims:
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["sub", "email", "type", "exp", "jti", "iss"]},
        )
    except jwt.PyJWTError as exc:
        raise TokenError(str(exc)) from exc
    if payload.get("type") != expected:
        raise TokenError(f"expected a {expected} token")
    try:
        return Claims(
            sub=str(payload["sub"]),
            email=str(payload["email"]),
            type=expected,
            jti=str(payload["jti"]),
            exp=int(payload["exp"]),
            iat=float(payload.get("iat", 0)),
        )
    except (TypeError, ValueError) as exc:
        raise TokenError("malformed claims") from exc
