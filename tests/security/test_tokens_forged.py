"""Tokens that carry a user's real claims but no valid HS256 signature are refused by both
backends, over HTTP and on the WebSocket: `alg: none` in its spellings, a signature stripped, and
the same claims signed with another algorithm. (Expired, wrong-key, refresh-as-access, reused
refresh, logged-out and deleted-user tokens: the contract suite, run against both backends.)"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect

from contract.identity import ISSUER, user_id_for
from tests.backend.processes import SECRET_KEY
from tests.security.servers import API, Server, new_account


def _segment(value: dict[str, Any]) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(email: str) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": user_id_for(email),
        "email": email,
        "type": "access",
        "iss": ISSUER,
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }


def forged(kind: str, email: str) -> str:
    """A token for `email` with valid claims that no server may accept."""
    claims = _claims(email)
    if kind.startswith("alg "):
        algorithm = kind.removeprefix("alg ")
        return f"{_segment({'alg': algorithm, 'typ': 'JWT'})}.{_segment(claims)}."
    real = jwt.encode(claims, SECRET_KEY, algorithm="HS256")
    if kind == "signature stripped":
        return real.rsplit(".", 1)[0] + "."
    if kind == "HS512 with the right key":
        return jwt.encode(claims, SECRET_KEY, algorithm="HS512")
    if kind == "signature of another token":
        other = jwt.encode(_claims("someone-else@example.com"), SECRET_KEY, algorithm="HS256")
        return real.rsplit(".", 1)[0] + "." + other.rsplit(".", 1)[1]
    raise AssertionError(kind)


KINDS = [
    "alg none",
    "alg None",
    "alg NONE",
    "signature stripped",
    "HS512 with the right key",
    "signature of another token",
]


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("kind", KINDS)
def test_an_unsigned_or_resigned_token_is_401(backend: Server, kind: str) -> None:
    account = new_account(backend, "forged")
    token = forged(kind, account.email)
    with httpx.Client(base_url=backend.url, timeout=30) as http:
        real = http.get(f"{API}/auth/me", headers=account.headers)
        assert real.status_code == 200, "the user's own token works"
        for method, path in (("GET", "/auth/me"), ("GET", "/watchlists"), ("DELETE", "/auth/me")):
            answer = http.request(
                method, f"{API}{path}", headers={"Authorization": f"Bearer {token}"}
            )
            assert answer.status_code == 401, f"{kind}: {method} {path} -> {answer.status_code}"
            assert answer.headers["www-authenticate"].lower().startswith("bearer")
        still = http.get(f"{API}/auth/me", headers=account.headers)
        assert still.status_code == 200, "the forged DELETE removed nobody"


@pytest.mark.parametrize("kind", ["alg none", "signature stripped"])
def test_an_unsigned_token_does_not_authenticate_a_websocket(backend: Server, kind: str) -> None:
    account = new_account(backend, "forged-ws")
    ws_url = backend.url.replace("http://", "ws://") + "/ws"
    token = forged(kind, account.email)
    try:
        with connect(f"{ws_url}?token={token}", open_timeout=10) as socket:
            frame = socket.recv(timeout=5)
    except InvalidHandshake:
        return  # refused before the upgrade
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd is not None else None
    else:
        pytest.fail(f"a socket with a forged token was served: {frame!r}")
    assert code == 1008, "refused after the upgrade: close code 1008 (policy violation)"
