"""Backtests: queued, polled to a result, idempotent by id, listed newest first, per user."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from contract.types import Backtest, BacktestAccepted, BacktestList, StrategyList

API = "/api/v1"
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
POLL_SECONDS = 30.0
FINAL = ("done", "failed", "cancelled")


def _epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


@pytest.fixture(scope="module")
def window(health) -> tuple[str, str]:
    """About eighteen months ending on the server's as-of date."""
    asof = date.fromisoformat(health.data.asof)
    return (asof - timedelta(days=550)).isoformat(), asof.isoformat()


@pytest.fixture
def body(window) -> dict[str, object]:
    start, end = window
    return {
        "symbol": "spy",
        "strategy": "sma_crossover",
        "start": start,
        "end": end,
        "params": {"fast": 10, "slow": 30},
    }


def submit(client: httpx.Client, account, body: dict[str, object]) -> httpx.Response:
    return client.post(f"{API}/backtests", json=body, headers=account.headers)


def wait_final(client: httpx.Client, expect, account, backtest_id: str) -> Backtest:
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        current = expect.ok(
            client.get(f"{API}/backtests/{backtest_id}", headers=account.headers), Backtest
        )
        if current.status in FINAL or time.monotonic() > deadline:
            return current
        time.sleep(0.1)


def test_a_backtest_is_queued_then_done_with_a_result(
    client: httpx.Client, expect, make_user, body, window
) -> None:
    account = make_user("bt")
    accepted = expect.ok(submit(client, account, body), BacktestAccepted, status=202)
    assert accepted.status == "queued"
    assert re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", accepted.id), accepted.id
    final = wait_final(client, expect, account, accepted.id)
    assert final.status == "done", final
    assert final.id == accepted.id
    assert ISO_MS.match(final.created_at)
    request = final.request
    assert (request.symbol, request.strategy) == ("SPY", "sma_crossover")
    assert (request.start, request.end) == window
    assert request.params["fast"] == 10
    assert request.params["slow"] == 30
    assert request.params.get("allow_short") is False, "params are stored with their defaults"
    assert request.initial_capital == 10_000.0
    result = final.result
    assert result is not None
    assert final.error is None
    assert result.trade_count == len(result.trades)
    assert 0 <= result.win_rate <= 100
    assert result.max_drawdown >= 0
    start, end = (_epoch(date.fromisoformat(day)) for day in window)
    times = [point.time for point in result.equity_curve]
    assert times
    assert times == sorted(set(times))
    assert start <= times[0]
    assert times[-1] <= end
    for trade in result.trades:
        assert start <= trade.entry_time <= trade.exit_time <= end
        assert trade.side == "long"
        assert trade.entry_price > 0
        assert trade.exit_price > 0
        assert trade.return_pct == pytest.approx(
            (trade.exit_price / trade.entry_price - 1) * 100, abs=0.02
        )
    final_equity = result.equity_curve[-1].equity
    assert result.total_return == pytest.approx((final_equity / 10_000.0 - 1) * 100, abs=0.02)


def test_the_same_id_and_body_is_the_same_backtest(
    client: httpx.Client, expect, make_user, body
) -> None:
    account = make_user("bt")
    named = {**body, "id": f"run-{uuid.uuid4().hex[:12]}"}
    first = expect.ok(submit(client, account, named), BacktestAccepted, status=202)
    again = expect.ok(submit(client, account, named), BacktestAccepted, status=202)
    assert first.id == again.id == named["id"]
    listing = expect.ok(client.get(f"{API}/backtests", headers=account.headers), BacktestList)
    assert [b.id for b in listing.backtests] == [named["id"]]
    changed = {**named, "params": {"fast": 12, "slow": 30}}
    expect.error(submit(client, account, changed), 409)


def test_without_an_id_each_submission_is_a_new_backtest(
    client: httpx.Client, expect, make_user, body
) -> None:
    account = make_user("bt")
    first = expect.ok(submit(client, account, body), BacktestAccepted, status=202)
    second = expect.ok(submit(client, account, body), BacktestAccepted, status=202)
    assert first.id != second.id


def test_ids_are_per_user(client: httpx.Client, expect, make_user, body) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    named = {**body, "id": "shared-id"}
    expect.ok(submit(client, alice, named), BacktestAccepted, status=202)
    other = {**named, "strategy": "buy_and_hold", "params": {}}
    expect.ok(submit(client, bob, other), BacktestAccepted, status=202)
    mine = expect.ok(client.get(f"{API}/backtests/shared-id", headers=alice.headers), Backtest)
    theirs = expect.ok(client.get(f"{API}/backtests/shared-id", headers=bob.headers), Backtest)
    assert (mine.request.strategy, theirs.request.strategy) == ("sma_crossover", "buy_and_hold")


def test_backtests_are_listed_newest_first(client: httpx.Client, expect, make_user, body) -> None:
    account = make_user("bt")
    ids = [f"order-{n}" for n in range(3)]
    for backtest_id in ids:
        expect.ok(submit(client, account, {**body, "id": backtest_id}), BacktestAccepted, 202)
        time.sleep(0.01)
    listing = expect.ok(client.get(f"{API}/backtests", headers=account.headers), BacktestList)
    assert [b.id for b in listing.backtests] == ids[::-1]
    created = [b.created_at for b in listing.backtests]
    assert created == sorted(created, reverse=True)
    for summary in listing.backtests:
        assert summary.request.symbol == "SPY"
        assert summary.status in ("queued", "running", "done", "failed", "cancelled")


def test_delete_cancels_or_finds_it_done(client: httpx.Client, expect, make_user, health) -> None:
    account = make_user("bt")
    long_run = {
        "symbol": "SPY",
        "strategy": "macd_trend",
        "start": "2005-01-03",
        "end": health.data.asof,
        "id": "to-cancel",
    }
    expect.ok(submit(client, account, long_run), BacktestAccepted, status=202)
    response = client.delete(f"{API}/backtests/to-cancel", headers=account.headers)
    assert response.status_code == 204, response.text
    assert response.content == b""
    final = wait_final(client, expect, account, "to-cancel")
    assert final.status in ("cancelled", "done"), final.status
    if final.status == "cancelled":
        assert final.result is None
    again = client.delete(f"{API}/backtests/to-cancel", headers=account.headers)
    assert again.status_code in (204, 404), again.text


def test_unknown_and_other_users_backtests_are_404(
    client: httpx.Client, expect, make_user, body
) -> None:
    owner, stranger = make_user("owner"), make_user("stranger")
    expect.ok(submit(client, owner, {**body, "id": "mine"}), BacktestAccepted, status=202)
    for account, backtest_id in ((owner, "nope"), (stranger, "mine")):
        expect.error(client.get(f"{API}/backtests/{backtest_id}", headers=account.headers), 404)
        expect.error(client.delete(f"{API}/backtests/{backtest_id}", headers=account.headers), 404)
    theirs = expect.ok(client.get(f"{API}/backtests", headers=stranger.headers), BacktestList)
    assert theirs.backtests == []
    assert (
        expect.ok(client.get(f"{API}/backtests/mine", headers=owner.headers), Backtest).id == "mine"
    )


def test_every_strategy_runs(client: httpx.Client, expect, make_user, window) -> None:
    account = make_user("bt")
    strategies = expect.ok(client.get(f"{API}/strategies"), StrategyList).strategies
    start, end = window
    submitted = []
    for strategy in strategies:
        accepted = expect.ok(
            submit(
                client,
                account,
                {"symbol": "QQQ", "strategy": strategy.name, "start": start, "end": end},
            ),
            BacktestAccepted,
            status=202,
        )
        submitted.append((strategy, accepted.id))
    for strategy, backtest_id in submitted:
        final = wait_final(client, expect, account, backtest_id)
        assert final.status == "done", (strategy.name, final.status, final.error)
        defaults = {name: param.default for name, param in strategy.params.items()}
        assert final.request.params == defaults
