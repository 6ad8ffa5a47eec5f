"""PUT /admin/records on the mock's admin app: replace every user record with a snapshot.

The rollback rebuilds the mock from PostgreSQL this way, so even a restarted (empty) mock serves
every user, watchlist and backtest prod holds, and tokens issued before keep working (same
SECRET_KEY, same user ids).
"""

from __future__ import annotations

from litestar import put
from litestar.exceptions import ValidationException
from litestar.handlers import HTTPRouteHandler

from contract.identity import user_id_for
from contract.records import RebuildCounts, RecordsSnapshot
from mock_backend.app import MockParts
from mock_backend.backtests import BacktestRecord
from mock_backend.users import UserRecord
from mock_backend.watchlists import WatchlistRecord

# A snapshot carries every backtest with its result (equity curves): far above the API's limit.
MAX_SNAPSHOT_BYTES = 1024 * 1024 * 1024


def _refuse(key: str, message: str) -> ValidationException:
    return ValidationException(
        f"Invalid snapshot: {message}", extra=[{"key": key, "message": message}]
    )


def _check(snapshot: RecordsSnapshot) -> None:
    """Every record belongs to a user of the snapshot; ids follow the identity rule."""
    ids = set()
    for index, user in enumerate(snapshot.users):
        if user.id != user_id_for(user.email):
            raise _refuse(f"users[{index}].id", "must be the UUIDv5 of the lower-cased email")
        ids.add(user.id)
    for kind, owners in (
        ("watchlists", [w.user_id for w in snapshot.watchlists]),
        ("backtests", [b.user_id for b in snapshot.backtests]),
        ("refresh_tokens", [t.user_id for t in snapshot.refresh_tokens]),
    ):
        for index, owner in enumerate(owners):
            if owner not in ids:
                raise _refuse(f"{kind}[{index}].user_id", "must name a user of the snapshot")


def records_handler(parts: MockParts, demo_password: str) -> HTTPRouteHandler:
    """The handler, for contract.faults.build_admin_app's `extra` (token checked there)."""

    @put("/admin/records", request_max_body_size=MAX_SNAPSHOT_BYTES)
    async def replace_records(data: RecordsSnapshot) -> RebuildCounts:
        _check(data)
        parts.users.replace(
            [UserRecord(u.id, u.email, u.name, u.password_hash, u.created_at) for u in data.users],
            {t.jti: t.user_id for t in data.refresh_tokens},
            {t.user_id: t.deleted_at for t in data.tombstones},
        )
        parts.watchlists.replace(
            {
                (w.user_id, w.name): WatchlistRecord(list(w.symbols), w.updated_at)
                for w in data.watchlists
            }
        )
        parts.backtests.replace(
            [
                BacktestRecord(
                    id=b.id,
                    user_id=b.user_id,
                    status=b.status,
                    request=b.request,
                    created_at=b.created_at,
                    result=b.result,
                    error=b.error,
                )
                for b in data.backtests
            ]
        )
        # The mock always has its demo user; PostgreSQL's (same id) wins when it has one.
        await parts.users.ensure_demo(demo_password)
        return RebuildCounts(
            users=len(data.users),
            watchlists=len(data.watchlists),
            backtests=len(data.backtests),
            refresh_tokens=len(data.refresh_tokens),
            tombstones=len(data.tombstones),
        )

    return replace_records


__all__ = ["records_handler"]
