"""SQLAlchemy models of the production schema. Alembic revisions create them; `alembic check`
keeps the two in step. The loader (ops/loader) writes the market-data tables; the backend reads.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints, so that Alembic can find, alter and drop each one.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Bar(Base):
    """One OHLCV bar; `interval` is a stored base interval ('1d' or '5m')."""

    __tablename__ = "bars"
    __table_args__ = (
        CheckConstraint("interval IN ('1d', '5m')", name="interval_known"),
        CheckConstraint(
            "low > 0 AND low <= open AND low <= close AND high >= open AND high >= close",
            name="ohlc_consistent",
        ),
        CheckConstraint("volume >= 0", name="volume_not_negative"),
    )

    symbol: Mapped[str] = mapped_column(String(12), primary_key=True)
    interval: Mapped[str] = mapped_column(String(4), primary_key=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    open: Mapped[float] = mapped_column(Float(53))
    high: Mapped[float] = mapped_column(Float(53))
    low: Mapped[float] = mapped_column(Float(53))
    close: Mapped[float] = mapped_column(Float(53))
    volume: Mapped[int] = mapped_column(BigInteger)


class Indicator(Base):
    """Indicators of one stored bar, computed with market/ over the whole stored history."""

    __tablename__ = "indicators"

    symbol: Mapped[str] = mapped_column(String(12), primary_key=True)
    interval: Mapped[str] = mapped_column(String(4), primary_key=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    sma_20: Mapped[float | None] = mapped_column(Float(53))
    sma_50: Mapped[float | None] = mapped_column(Float(53))
    sma_200: Mapped[float | None] = mapped_column(Float(53))
    ema_12: Mapped[float | None] = mapped_column(Float(53))
    ema_26: Mapped[float | None] = mapped_column(Float(53))
    rsi_14: Mapped[float | None] = mapped_column(Float(53))
    macd: Mapped[float | None] = mapped_column(Float(53))
    macd_signal: Mapped[float | None] = mapped_column(Float(53))
    macd_hist: Mapped[float | None] = mapped_column(Float(53))
    bb_upper: Mapped[float | None] = mapped_column(Float(53))
    bb_middle: Mapped[float | None] = mapped_column(Float(53))
    bb_lower: Mapped[float | None] = mapped_column(Float(53))
    atr_14: Mapped[float | None] = mapped_column(Float(53))
    volume_ratio: Mapped[float | None] = mapped_column(Float(53))


class LoadRun(Base):
    """One run of the loader: what it loaded, from where, and what it found."""

    __tablename__ = "load_runs"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'done', 'failed')", name="status_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), default="running")
    source: Mapped[str] = mapped_column(String(16))  # synthetic | csv | provider
    source_detail: Mapped[str | None] = mapped_column(Text)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    asof: Mapped[date] = mapped_column(Date)
    adjusted: Mapped[bool] = mapped_column(Boolean, default=False)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    checksums: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    problems: Mapped[list[Any]] = mapped_column(JSONB, default=list)


class LoadRunSymbol(Base):
    """Per-symbol progress of a load run: what a resumed run may skip."""

    __tablename__ = "load_run_symbols"

    run_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("load_runs.id", ondelete="CASCADE"), primary_key=True
    )
    symbol: Mapped[str] = mapped_column(String(12), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # done
    daily_rows: Mapped[int] = mapped_column(Integer, default=0)
    intraday_rows: Mapped[int] = mapped_column(Integer, default=0)
    inserted: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    checksum: Mapped[str | None] = mapped_column(String(64))
    finished_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


# -- users and what they own ------------------------------------------------------------------


class User(Base):
    """A user; `id` is the UUIDv5 of the lower-cased email (the same on both backends)."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RefreshToken(Base):
    """A live refresh token (by its jti); a refresh deletes it (rotation), logout all of them."""

    __tablename__ = "refresh_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class UserTombstone(Base):
    """A deleted user: tokens issued before `deleted_at` stay dead if the email registers again."""

    __tablename__ = "user_tombstones"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    deleted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Watchlist(Base):
    __tablename__ = "watchlists"
    __table_args__ = (CheckConstraint("cardinality(symbols) <= 100", name="at_most_100_symbols"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    symbols: Mapped[list[str]] = mapped_column(ARRAY(String(12)))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Backtest(Base):
    """A backtest: the row is the truth; the job queue only carries work."""

    __tablename__ = "backtests"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed', 'cancelled')", name="status_known"
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSONB)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    job_key: Mapped[str | None] = mapped_column(String(128))


class GeneratedSignal(Base):
    """A signal produced on request (POST /signals/generate), kept for audit and replay."""

    __tablename__ = "signals"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    signal_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL")
    )
    symbol: Mapped[str] = mapped_column(String(12))
    timeframe: Mapped[str] = mapped_column(String(4))
    type: Mapped[str] = mapped_column(String(4))
    confidence: Mapped[float] = mapped_column(Float(53))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
