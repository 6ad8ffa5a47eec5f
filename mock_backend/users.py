"""Users, passwords and tokens in memory, with the identity rules both backends share."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from contract.errors import Conflict, Unauthorized
from contract.identity import (
    ACCESS_SECONDS,
    DEMO_EMAIL,
    DEMO_NAME,
    TokenError,
    decode_token,
    issue_token,
    normalise_email,
    user_id_for,
)
from contract.passwords import hash_password, verify_password
from contract.ports import Principal
from contract.types import LoginRequest, TokenPair, User, UserCreate
from market.calendar import iso_ms

_BAD_LOGIN = "Wrong email or password"


@dataclass(slots=True)
class UserRecord:
    id: str
    email: str
    name: str
    password_hash: str
    created_at: float

    def public(self) -> User:
        return User(
            id=self.id, email=self.email, name=self.name, created_at=iso_ms(self.created_at)
        )


class MemoryUsers:
    """The `UserPort` in memory: argon2 hashes, refresh tokens that work once."""

    def __init__(
        self,
        secret_key: str,
        on_delete: Callable[[str], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret_key
        self._clock = clock
        self._on_delete = on_delete
        self.users: dict[str, UserRecord] = {}
        self._refresh: dict[str, str] = {}  # live refresh-token jti -> user id
        self.revoked_before: dict[str, float] = {}  # user id -> time of deletion

    def replace(
        self,
        users: list[UserRecord],
        refresh: dict[str, str],
        revoked_before: dict[str, float],
    ) -> None:
        """Hold exactly these users, live refresh tokens (jti -> user id) and deletions: the
        rollback's rebuild from PostgreSQL."""
        self.users = {record.id: record for record in users}
        self._refresh = dict(refresh)
        self.revoked_before = dict(revoked_before)

    async def ensure_demo(self, password: str) -> None:
        if user_id_for(DEMO_EMAIL) not in self.users:
            await self.register(UserCreate(email=DEMO_EMAIL, password=password, name=DEMO_NAME))

    async def register(self, data: UserCreate) -> User:
        email = normalise_email(data.email)
        user_id = user_id_for(email)
        if user_id in self.users:
            raise Conflict(f"A user with email {email} already exists")
        record = UserRecord(
            id=user_id,
            email=email,
            name=data.name,
            password_hash=await hash_password(data.password),
            created_at=self._clock(),
        )
        if user_id in self.users:  # registered while hashing
            raise Conflict(f"A user with email {email} already exists")
        self.users[user_id] = record
        return record.public()

    def _pair(self, record: UserRecord) -> TokenPair:
        now = self._clock()
        access, _ = issue_token(self._secret, record.id, record.email, "access", now)
        refresh, claims = issue_token(self._secret, record.id, record.email, "refresh", now)
        self._refresh[claims.jti] = record.id
        return TokenPair(
            access_token=access,
            refresh_token=refresh,
            token_type="bearer",
            expires_in=ACCESS_SECONDS,
            user=record.public(),
        )

    async def login(self, data: LoginRequest, client: str) -> TokenPair:
        record = self.users.get(user_id_for(data.email))
        if record is None or not await verify_password(record.password_hash, data.password):
            raise Unauthorized(_BAD_LOGIN)
        return self._pair(record)

    async def refresh(self, refresh_token: str) -> TokenPair:
        try:
            claims = decode_token(self._secret, refresh_token, "refresh")
        except TokenError as exc:
            raise Unauthorized(f"Invalid refresh token: {exc}") from exc
        owner = self._refresh.pop(claims.jti, None)
        record = self.users.get(claims.sub)
        if owner != claims.sub or record is None:
            raise Unauthorized("Refresh token already used, revoked or unknown")
        return self._pair(record)

    async def authenticate(self, access_token: str) -> Principal:
        try:
            claims = decode_token(self._secret, access_token, "access")
        except TokenError as exc:
            raise Unauthorized(f"Invalid access token: {exc}") from exc
        record = self.users.get(claims.sub)
        if record is None:
            raise Unauthorized("The token's user does not exist")
        # Tokens issued before the user was deleted stay dead if the email registers again.
        if claims.iat <= self.revoked_before.get(claims.sub, float("-inf")):
            raise Unauthorized("The token was issued before its user was deleted")
        return Principal(user_id=record.id, email=record.email, jti=claims.jti)

    async def logout(self, principal: Principal) -> None:
        for jti in [jti for jti, owner in self._refresh.items() if owner == principal.user_id]:
            del self._refresh[jti]

    async def me(self, principal: Principal) -> User:
        record = self.users.get(principal.user_id)
        if record is None:
            raise Unauthorized("The token's user does not exist")
        return record.public()

    async def delete(self, principal: Principal) -> None:
        await self.logout(principal)
        self.users.pop(principal.user_id, None)
        self.revoked_before[principal.user_id] = round(self._clock(), 3)
        if self._on_delete is not None:
            await self._on_delete(principal.user_id)
