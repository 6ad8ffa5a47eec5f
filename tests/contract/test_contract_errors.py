"""The status table: 400, 404, 405, 413 and 422 for each kind of bad field, in the error shape."""

from __future__ import annotations

import httpx
import pytest

API = "/api/v1"
MIB = 1024 * 1024


# -- 400: bodies that are not decodable -----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "content"),
    [
        ("POST", f"{API}/auth/login", b"not json"),
        ("POST", f"{API}/auth/register", b'{"email": "a@b.co",'),
        ("POST", f"{API}/market-data/quotes", b'{"symbols": ["SPY"]} trailing'),
        ("POST", f"{API}/market-data/quotes", b'{"symbols": ["\xff\xfe"]}'),
        ("POST", f"{API}/auth/login", b'{"email": "caf\xe9@example.com", "password": "x"}'),
        ("PUT", f"{API}/watchlists/Broken", b"[1, 2"),
        ("POST", f"{API}/backtests", b"\x00\x01\x02"),
    ],
)
def test_undecodable_bodies_are_400(
    client: httpx.Client, expect, reader, method: str, path: str, content: bytes
) -> None:
    headers = {**reader, "Content-Type": "application/json"}
    expect.error(client.request(method, path, content=content, headers=headers), 400)


# -- 404: none by that key ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        f"{API}/market-data/ZZZZ",
        f"{API}/market-data/zzzz/historical",
        f"{API}/market-data/ZZZZ/indicators",
        f"{API}/signals/ZZZZ",
        f"{API}/signals/SPY-1d-12345/insights",
        f"{API}/no-such-thing",
        f"{API}/market-data/SPY/no-such-thing",
    ],
)
def test_unknown_resources_are_404(client: httpx.Client, expect, reader, path: str) -> None:
    expect.error(client.get(path, headers=reader), 404)


# -- 405: wrong method on a known path ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", f"{API}/symbols"),
        ("GET", f"{API}/signals/generate"),
        ("POST", f"{API}/market-data/SPY"),
        ("PUT", f"{API}/health"),
        ("GET", f"{API}/auth/login"),
        ("GET", f"{API}/market-data/quotes"),
        ("PATCH", f"{API}/watchlists/Tech"),
        ("POST", f"{API}/agents"),
    ],
)
def test_wrong_methods_are_405(
    client: httpx.Client, expect, reader, method: str, path: str
) -> None:
    expect.error(client.request(method, path, headers=reader), 405)


# -- 413: bodies over 1 MiB -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"{API}/market-data/quotes"),
        ("POST", f"{API}/auth/register"),
        ("PUT", f"{API}/watchlists/Huge"),
    ],
)
def test_bodies_over_one_mib_are_413(
    client: httpx.Client, expect, reader, method: str, path: str
) -> None:
    content = b'{"symbols": ["' + b"A" * (MIB + 1024) + b'"]}'
    headers = {**reader, "Content-Type": "application/json"}
    expect.error(client.request(method, path, content=content, headers=headers), 413)


def test_a_body_just_under_one_mib_is_not_413(client: httpx.Client, expect, reader) -> None:
    content = b'{"symbols": ["SPY"], "pad": "' + b" " * (MIB - 200) + b'"}'
    headers = {**reader, "Content-Type": "application/json"}
    response = client.post(f"{API}/market-data/quotes", content=content, headers=headers)
    expect.field(response, "pad")


# -- 422: parameters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        (f"{API}/market-data/TOOLONGSYMBOL", {}, "symbol"),
        (f"{API}/market-data/SP%20Y", {}, "symbol"),
        (f"{API}/market-data/SPY!/historical", {}, "symbol"),
        (f"{API}/market-data/SPY$/indicators", {}, "symbol"),
        (f"{API}/signals/SPY!", {}, "symbol"),
        (f"{API}/market-data/SPY/historical", {"interval": "2h"}, "interval"),
        (f"{API}/market-data/SPY/historical", {"interval": "1D"}, "interval"),
        (f"{API}/market-data/SPY/indicators", {"interval": "7m"}, "interval"),
        (f"{API}/market-data/SPY/historical", {"period": "abc"}, "period"),
        (f"{API}/market-data/SPY/historical", {"period": "0d"}, "period"),
        (f"{API}/market-data/SPY/historical", {"period": "1y", "interval": "5m"}, "period"),
        (f"{API}/market-data/SPY/historical", {"period": "90d", "interval": "1h"}, "period"),
        (f"{API}/market-data/SPY/historical", {"period": "ytd", "interval": "15m"}, "period"),
        (f"{API}/market-data/SPY/historical", {"period": "1h", "interval": "1d"}, "period"),
        (f"{API}/market-data/SPY/historical", {"period": "1d", "interval": "1wk"}, "period"),
        (f"{API}/market-data/SPY/indicators", {"period": "2wk", "interval": "1mo"}, "period"),
        (f"{API}/market-data/SPY/historical", {"period": "10m", "interval": "15m"}, "period"),
        (f"{API}/signals", {"limit": "0"}, "limit"),
        (f"{API}/signals", {"limit": "-1"}, "limit"),
        (f"{API}/signals", {"limit": "501"}, "limit"),
        (f"{API}/signals", {"limit": "ten"}, "limit"),
        (f"{API}/signals", {"min_confidence": "101"}, "min_confidence"),
        (f"{API}/signals", {"min_confidence": "-0.5"}, "min_confidence"),
        (f"{API}/signals", {"timeframe": "1wk"}, "timeframe"),
        (f"{API}/signals", {"symbols": "SPY,ZZZZ"}, "symbols"),
        (f"{API}/signals", {"symbols": "SPY,not a symbol"}, "symbols"),
        (f"{API}/signals/SPY", {"timeframe": "2h"}, "timeframe"),
        (f"{API}/signals/precise-options", {"symbol": "not a symbol"}, "symbol"),
        (f"{API}/signals/precise-options", {"symbol": "SPY", "timeframe": "1mo"}, "timeframe"),
        (f"{API}/signals/{'X' * 65}/insights", {}, "signal_id"),
        (f"{API}/market/opportunities", {"limit": "0"}, "limit"),
        (f"{API}/market/opportunities", {"limit": "51"}, "limit"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(
    client: httpx.Client, expect, reader, path: str, params: dict[str, str], field: str
) -> None:
    expect.field(client.get(path, params=params, headers=reader), field)


def test_a_422_lists_what_is_accepted(client: httpx.Client, expect, reader) -> None:
    interval = expect.field(
        client.get(f"{API}/market-data/SPY/historical", params={"interval": "2h"}, headers=reader),
        "interval",
    )
    assert any("1wk" in item.message for item in interval.extra or []), interval
    period = expect.field(
        client.get(
            f"{API}/market-data/SPY/historical",
            params={"period": "1y", "interval": "5m"},
            headers=reader,
        ),
        "period",
    )
    assert any("60" in item.message for item in period.extra or []), period


# -- 422: bodies ----------------------------------------------------------------------------

GOOD_USER = {"email": "someone@example.com", "password": "long-enough-pw", "name": "Someone"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "email"),
        ({"email": "x@example.com", "name": "X"}, "password"),
        ({**GOOD_USER, "password": "123456789"}, "password"),
        ({**GOOD_USER, "password": "p" * 129}, "password"),
        ({**GOOD_USER, "email": "not-an-email"}, "email"),
        ({**GOOD_USER, "email": 123}, "email"),
        ({**GOOD_USER, "name": ""}, "name"),
        ({**GOOD_USER, "admin": True}, "admin"),
        ([GOOD_USER], "body"),
    ],
)
def test_bad_registrations_are_422_naming_the_field(
    client: httpx.Client, expect, reader, body: object, field: str
) -> None:
    expect.field(client.post(f"{API}/auth/register", json=body, headers=reader), field)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (f"{API}/auth/login", {"email": "a@example.com"}, "password"),
        (f"{API}/auth/login", {"email": "a@example.com", "password": "x", "otp": 1}, "otp"),
        (f"{API}/auth/refresh", {}, "refresh_token"),
        (f"{API}/market-data/quotes", {"symbols": []}, "symbols"),
        (f"{API}/market-data/quotes", {"symbols": ["SPY"] * 51}, "symbols"),
        (f"{API}/market-data/quotes", {"symbols": ["SPY", "not a symbol"]}, "symbols"),
        (f"{API}/market-data/quotes", {"symbols": "SPY"}, "symbols"),
        (f"{API}/market-data/quotes", {}, "symbols"),
        (f"{API}/signals/generate", {"symbol": "ZZZZ"}, "symbol"),
        (f"{API}/signals/generate", {"symbol": "bad symbol"}, "symbol"),
        (f"{API}/signals/generate", {"symbol": "SPY", "timeframe": "1wk"}, "timeframe"),
        (f"{API}/signals/generate", {}, "symbol"),
    ],
)
def test_bad_bodies_are_422_naming_the_field(
    client: httpx.Client, expect, reader, path: str, body: object, field: str
) -> None:
    expect.field(client.post(path, json=body, headers=reader), field)


def test_fifty_symbols_are_accepted(client: httpx.Client, reader) -> None:
    response = client.post(
        f"{API}/market-data/quotes", json={"symbols": ["SPY"] * 50}, headers=reader
    )
    assert response.status_code == 200, response.text


BACKTEST = {
    "symbol": "SPY",
    "strategy": "sma_crossover",
    "start": "2025-01-02",
    "end": "2026-06-30",
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"strategy": "no_such_strategy"}, "strategy"),
        ({"params": {"fast": 1}}, "fast"),
        ({"params": {"slow": 10_000}}, "slow"),
        ({"params": {"fast": "ten"}}, "fast"),
        ({"params": {"nope": 3}}, "nope"),
        ({"start": "2026-06-30", "end": "2025-01-02"}, "end"),
        ({"start": "2026-13-01"}, "start"),
        ({"start": "20250102"}, "start"),
        ({"start": "1990-01-02"}, "start"),
        ({"end": "2999-01-01"}, "end"),
        ({"symbol": "ZZZZ"}, "symbol"),
        ({"symbol": "not a symbol"}, "symbol"),
        ({"initial_capital": 50}, "initial_capital"),
        ({"id": "bad id!"}, "id"),
        ({"benchmark": "SPY"}, "benchmark"),
        ({"start": None}, "start"),
    ],
)
def test_bad_backtests_are_422_naming_the_field(
    client: httpx.Client, expect, reader, change: dict[str, object], field: str
) -> None:
    body = {key: value for key, value in {**BACKTEST, **change}.items() if value is not None}
    expect.field(client.post(f"{API}/backtests", json=body, headers=reader), field)


def test_a_malformed_backtest_id_in_the_path_is_422(client: httpx.Client, expect, reader) -> None:
    expect.field(client.get(f"{API}/backtests/bad!id", headers=reader), "backtest_id")
