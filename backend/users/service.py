"""Users in PostgreSQL with the identity rules both backends share (contract.identity).

The same ids (UUIDv5 of the email) and the same HS256 tokens as the mock, so a user and a token
survive the cutover. Passwords are argon2 hashes computed in a worker thread. A refresh token is a
row in refresh_tokens that a refresh deletes (rotation) and logout deletes (all of them); a
deleted user leaves a tombstone so that tokens issued before the deletion stay dead even if the
email registers again. Every write commits explicitly: a failed commit is an error to the client.
"""

from __future__ import annotations

import contextvars
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.db.models import RefreshToken, UserTombstone
from backend.db.models import User as UserRow
from backend.db.session import database_calls
from contract.errors import Conflict, Unauthorized
from contract.identity import (
    ACCESS_SECONDS,
    DEMO_EMAIL,
    DEMO_NAME,
    Claims,
    TokenError,
    TokenType,
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

# The authenticated caller of the current request, for records that note who asked.
current_user_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_user_id", default=None
)


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _public(row: UserRow) -> User:
    created = iso_ms(row.created_at.timestamp())
    return User(id=str(row.id), email=row.email, name=row.name, created_at=created)


class PgUsers:
    """The `UserPort` on PostgreSQL."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        secret_key: str,
        on_delete: Callable[[str], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self._secret = secret_key
        self._on_delete = on_delete
        self._clock = clock

    async def ensure_demo(self, password: str) -> bool:
        """Create the demo user unless it exists; safe when several workers start at once."""
        email = normalise_email(DEMO_EMAIL)
        user_id = uuid.UUID(user_id_for(email))
        with database_calls():
            async with self._sessions() as session:
                if await session.get(UserRow, user_id) is not None:
                    return False
                statement = (
                    insert(UserRow)
                    .values(
                        id=user_id,
                        email=email,
                        name=DEMO_NAME,
                        password_hash=await hash_password(password),
                        created_at=_moment(round(self._clock(), 3)),
                    )
                    .on_conflict_do_nothing()
                    .returning(UserRow.id)
                )
                created = (await session.execute(statement)).first() is not None
                await session.commit()
        return created

    async def register(self, data: UserCreate) -> User:
        email = normalise_email(data.email)
        user_id = uuid.UUID(user_id_for(email))
        taken = Conflict(f"A user with email {email} already exists")
        with database_calls():
            async with self._sessions() as session:
                exists = await session.get(UserRow, user_id) is not None
        if exists:
            raise taken
        # Hashed with no connection held: argon2 takes a while by design.
        password_hash = await hash_password(data.password)
        statement = (
            insert(UserRow)
            .values(
                id=user_id,
                email=email,
                name=data.name,
                password_hash=password_hash,
                created_at=_moment(round(self._clock(), 3)),
            )
            .on_conflict_do_nothing()
            .returning(UserRow)
        )
        with database_calls():
            async with self._sessions() as session:
                row = (await session.execute(statement)).scalar_one_or_none()
                if row is None:  # registered by another request while hashing
                    raise taken
                await session.commit()
        return _public(row)

    async def _pair(self, session: AsyncSession, row: UserRow) -> TokenPair:
        """New tokens for `row`; the refresh token's row is added to `session` (commit after)."""
        now = self._clock()
        email = row.email
        access, _ = issue_token(self._secret, str(row.id), email, "access", now)
        refresh, claims = issue_token(self._secret, str(row.id), email, "refresh", now)
        session.add(RefreshToken(jti=claims.jti, user_id=row.id, expires_at=_moment(claims.exp)))
        return TokenPair(
            access_token=access,
            refresh_token=refresh,
            token_type="bearer",
            expires_in=ACCESS_SECONDS,
            user=_public(row),
        )

    async def login(self, data: LoginRequest, client: str) -> TokenPair:
        user_id = uuid.UUID(user_id_for(data.email))
        with database_calls():
            async with self._sessions() as session:
                row = await session.get(UserRow, user_id)
        # Verified with no connection held: argon2 takes a while by design.
        if row is None or not await verify_password(row.password_hash, data.password):
            raise Unauthorized(_BAD_LOGIN)
        with database_calls():
            async with self._sessions() as session:
                pair = await self._pair(session, row)
                # Expired refresh tokens of this user go as new ones come.
                await session.execute(
                    delete(RefreshToken).where(
                        RefreshToken.user_id == user_id,
                        RefreshToken.expires_at < _moment(self._clock()),
                    )
                )
                try:
                    await session.commit()
                except IntegrityError as exc:  # deleted while the password was checked
                    raise Unauthorized(_BAD_LOGIN) from exc
        return pair

    def _claims(self, token: str, kind: TokenType) -> tuple[Claims, uuid.UUID]:
        """A token's claims and its subject as a user id; 401 naming what is wrong."""
        try:
            claims = decode_token(self._secret, token, kind)
        except TokenError as exc:
            raise Unauthorized(f"Invalid {kind} token: {exc}") from exc
        try:
            return claims, uuid.UUID(claims.sub)
        except ValueError:
            raise Unauthorized(f"Invalid {kind} token: malformed subject") from None

    async def refresh(self, refresh_token: str) -> TokenPair:
        claims, user_id = self._claims(refresh_token, "refresh")
        spent = Unauthorized("Refresh token already used, revoked or unknown")
        with database_calls():
            async with self._sessions() as session:
                used = await session.execute(
                    delete(RefreshToken)
                    .where(RefreshToken.jti == claims.jti, RefreshToken.user_id == user_id)
                    .returning(RefreshToken.jti)
                )
                if used.first() is None:
                    raise spent
                row = await session.get(UserRow, user_id)
                if row is None:
                    raise spent
                pair = await self._pair(session, row)
                await session.commit()
        return pair

    async def authenticate(self, access_token: str) -> Principal:
        claims, user_id = self._claims(access_token, "access")
        with database_calls():
            async with self._sessions() as session:
                found = (
                    await session.execute(
                        select(UserRow.email, UserTombstone.deleted_at)
                        .outerjoin(UserTombstone, UserTombstone.user_id == UserRow.id)
                        .where(UserRow.id == user_id)
                    )
                ).first()
        if found is None:
            raise Unauthorized("The token's user does not exist")
        email, deleted_at = found
        # Tokens issued before the user was deleted stay dead if the email registers again.
        if deleted_at is not None and claims.iat <= round(deleted_at.timestamp(), 3):
            raise Unauthorized("The token was issued before its user was deleted")
        current_user_id.set(str(user_id))
        return Principal(user_id=str(user_id), email=email, jti=claims.jti)

    async def logout(self, principal: Principal) -> None:
        with database_calls():
            async with self._sessions() as session:
                await session.execute(
                    delete(RefreshToken).where(RefreshToken.user_id == uuid.UUID(principal.user_id))
                )
                await session.commit()

    async def me(self, principal: Principal) -> User:
        with database_calls():
            async with self._sessions() as session:
                row = await session.get(UserRow, uuid.UUID(principal.user_id))
        if row is None:
            raise Unauthorized("The token's user does not exist")
        return _public(row)

    async def delete(self, principal: Principal) -> None:
        """Delete the user (their tokens, watchlists and backtests go with the row) and leave
        a tombstone dated now."""
        user_id = uuid.UUID(principal.user_id)
        deleted_at = _moment(round(self._clock(), 3))
        with database_calls():
            async with self._sessions() as session:
                await session.execute(delete(UserRow).where(UserRow.id == user_id))
                await session.execute(
                    insert(UserTombstone)
                    .values(user_id=user_id, deleted_at=deleted_at)
                    .on_conflict_do_update(
                        index_elements=[UserTombstone.user_id],
                        set_={"deleted_at": deleted_at},
                    )
                )
                await session.commit()
        if self._on_delete is not None:
            await self._on_delete(principal.user_id)
