"""The market-data tables: bars, indicators, and the loader's runs with per-symbol progress.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 23:47:59.335704+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bars",
        sa.Column("symbol", sa.String(length=12), nullable=False),
        sa.Column("interval", sa.String(length=4), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("open", sa.Float(precision=53), nullable=False),
        sa.Column("high", sa.Float(precision=53), nullable=False),
        sa.Column("low", sa.Float(precision=53), nullable=False),
        sa.Column("close", sa.Float(precision=53), nullable=False),
        sa.Column("volume", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("interval IN ('1d', '5m')", name=op.f("ck_bars_interval_known")),
        sa.CheckConstraint(
            "low > 0 AND low <= open AND low <= close AND high >= open AND high >= close",
            name=op.f("ck_bars_ohlc_consistent"),
        ),
        sa.CheckConstraint("volume >= 0", name=op.f("ck_bars_volume_not_negative")),
        sa.PrimaryKeyConstraint("symbol", "interval", "time", name=op.f("pk_bars")),
    )
    op.create_table(
        "indicators",
        sa.Column("symbol", sa.String(length=12), nullable=False),
        sa.Column("interval", sa.String(length=4), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sma_20", sa.Float(precision=53), nullable=True),
        sa.Column("sma_50", sa.Float(precision=53), nullable=True),
        sa.Column("sma_200", sa.Float(precision=53), nullable=True),
        sa.Column("ema_12", sa.Float(precision=53), nullable=True),
        sa.Column("ema_26", sa.Float(precision=53), nullable=True),
        sa.Column("rsi_14", sa.Float(precision=53), nullable=True),
        sa.Column("macd", sa.Float(precision=53), nullable=True),
        sa.Column("macd_signal", sa.Float(precision=53), nullable=True),
        sa.Column("macd_hist", sa.Float(precision=53), nullable=True),
        sa.Column("bb_upper", sa.Float(precision=53), nullable=True),
        sa.Column("bb_middle", sa.Float(precision=53), nullable=True),
        sa.Column("bb_lower", sa.Float(precision=53), nullable=True),
        sa.Column("atr_14", sa.Float(precision=53), nullable=True),
        sa.Column("volume_ratio", sa.Float(precision=53), nullable=True),
        sa.PrimaryKeyConstraint("symbol", "interval", "time", name=op.f("pk_indicators")),
    )
    op.create_table(
        "load_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("source_detail", sa.Text(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("asof", sa.Date(), nullable=False),
        sa.Column("adjusted", sa.Boolean(), nullable=False),
        sa.Column("params", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("counts", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("checksums", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("problems", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.CheckConstraint(
            "status IN ('running', 'done', 'failed')", name=op.f("ck_load_runs_status_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_load_runs")),
    )
    op.create_table(
        "load_run_symbols",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.String(length=12), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("daily_rows", sa.Integer(), nullable=False),
        sa.Column("intraday_rows", sa.Integer(), nullable=False),
        sa.Column("inserted", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("checksum", sa.String(length=64), nullable=True),
        sa.Column(
            "finished_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["load_runs.id"],
            name=op.f("fk_load_run_symbols_run_id_load_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "symbol", name=op.f("pk_load_run_symbols")),
    )


def downgrade() -> None:
    op.drop_table("load_run_symbols")
    op.drop_table("load_runs")
    op.drop_table("indicators")
    op.drop_table("bars")
