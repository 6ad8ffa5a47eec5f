"""The user records both backends hold, as one snapshot: what a rollback copies from PostgreSQL
into the mock (PUT /admin/records on the mock's admin app).

Times are epoch seconds (floats, millisecond precision), ids as the API shows them, password
hashes as stored (contract.passwords: the same argon2 hashes verify on both backends).
"""

from __future__ import annotations

from msgspec import Struct

from contract.types import BacktestRequest, BacktestResult, BacktestStatus


class UserSnapshot(Struct, forbid_unknown_fields=True):
    id: str
    email: str
    name: str
    password_hash: str
    created_at: float


class RefreshTokenSnapshot(Struct, forbid_unknown_fields=True):
    """A live refresh token (by jti): it keeps working once on the rebuilt mock."""

    jti: str
    user_id: str


class TombstoneSnapshot(Struct, forbid_unknown_fields=True):
    """A deleted user: tokens issued at or before `deleted_at` stay dead."""

    user_id: str
    deleted_at: float


class WatchlistSnapshot(Struct, forbid_unknown_fields=True):
    user_id: str
    name: str
    symbols: list[str]
    updated_at: float


class BacktestSnapshot(Struct, forbid_unknown_fields=True):
    user_id: str
    id: str
    status: BacktestStatus
    request: BacktestRequest
    created_at: float
    result: BacktestResult | None = None
    error: str | None = None


class RecordsSnapshot(Struct, forbid_unknown_fields=True):
    """Every user record; a PUT replaces all the mock holds with it."""

    users: list[UserSnapshot]
    watchlists: list[WatchlistSnapshot]
    backtests: list[BacktestSnapshot]
    refresh_tokens: list[RefreshTokenSnapshot] = []
    tombstones: list[TombstoneSnapshot] = []


class RebuildCounts(Struct):
    """What a rebuild put in place."""

    users: int
    watchlists: int
    backtests: int
    refresh_tokens: int = 0
    tombstones: int = 0


__all__ = [
    "BacktestSnapshot",
    "RebuildCounts",
    "RecordsSnapshot",
    "RefreshTokenSnapshot",
    "TombstoneSnapshot",
    "UserSnapshot",
    "WatchlistSnapshot",
]
