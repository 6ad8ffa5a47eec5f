"""Watchlists: idempotent upserts, case-sensitive names, per-user isolation."""

from __future__ import annotations

import re

import httpx

from contract.types import SymbolList, Watchlist, WatchlistList

API = "/api/v1"
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def _put(client: httpx.Client, account, name: str, symbols: list[str]) -> httpx.Response:
    return client.put(
        f"{API}/watchlists/{name}", json={"symbols": symbols}, headers=account.headers
    )


def test_put_stores_upper_cased_symbols_without_duplicates_in_order(
    client: httpx.Client, expect, make_user
) -> None:
    account = make_user("wl")
    stored = expect.ok(
        _put(client, account, "Tech", ["aapl", "MSFT", "AAPL", "spy", "msft"]), Watchlist
    )
    assert stored.name == "Tech"
    assert stored.symbols == ["AAPL", "MSFT", "SPY"]
    assert ISO_MS.match(stored.updated_at)
    fetched = expect.ok(client.get(f"{API}/watchlists/Tech", headers=account.headers), Watchlist)
    assert fetched == stored


def test_put_is_idempotent(client: httpx.Client, expect, make_user) -> None:
    account = make_user("wl")
    first = expect.ok(_put(client, account, "Daily", ["SPY", "QQQ"]), Watchlist)
    second = expect.ok(_put(client, account, "Daily", ["SPY", "QQQ"]), Watchlist)
    assert (second.name, second.symbols) == (first.name, first.symbols)
    lists = expect.ok(client.get(f"{API}/watchlists", headers=account.headers), WatchlistList)
    assert [w.name for w in lists.watchlists] == ["Daily"]
    assert lists.watchlists[0].symbols == ["SPY", "QQQ"]


def test_put_replaces_the_symbols(client: httpx.Client, expect, make_user) -> None:
    account = make_user("wl")
    first = expect.ok(_put(client, account, "Swing", ["SPY", "QQQ"]), Watchlist)
    second = expect.ok(_put(client, account, "Swing", ["IWM"]), Watchlist)
    assert second.symbols == ["IWM"]
    assert second.updated_at >= first.updated_at
    emptied = expect.ok(_put(client, account, "Swing", []), Watchlist)
    assert emptied.symbols == []


def test_names_are_case_sensitive_and_listed_by_name(
    client: httpx.Client, expect, make_user
) -> None:
    account = make_user("wl")
    expect.ok(_put(client, account, "tech", ["NVDA"]), Watchlist)
    expect.ok(_put(client, account, "Tech", ["AAPL"]), Watchlist)
    expect.ok(_put(client, account, "My list_2-b", ["KO"]), Watchlist)
    lists = expect.ok(client.get(f"{API}/watchlists", headers=account.headers), WatchlistList)
    names = [w.name for w in lists.watchlists]
    assert sorted(names) == names
    assert set(names) == {"tech", "Tech", "My list_2-b"}
    by_name = {w.name: w.symbols for w in lists.watchlists}
    assert (by_name["tech"], by_name["Tech"]) == (["NVDA"], ["AAPL"])
    spaced = expect.ok(
        client.get(f"{API}/watchlists/My list_2-b", headers=account.headers), Watchlist
    )
    assert spaced.symbols == ["KO"]


def test_delete_removes_the_watchlist(client: httpx.Client, expect, make_user) -> None:
    account = make_user("wl")
    expect.ok(_put(client, account, "Gone", ["SPY"]), Watchlist)
    response = client.delete(f"{API}/watchlists/Gone", headers=account.headers)
    assert response.status_code == 204, response.text
    assert response.content == b""
    expect.error(client.get(f"{API}/watchlists/Gone", headers=account.headers), 404)
    expect.error(client.delete(f"{API}/watchlists/Gone", headers=account.headers), 404)
    lists = expect.ok(client.get(f"{API}/watchlists", headers=account.headers), WatchlistList)
    assert lists.watchlists == []


def test_another_users_watchlist_is_404(client: httpx.Client, expect, make_user) -> None:
    owner, stranger = make_user("owner"), make_user("stranger")
    expect.ok(_put(client, owner, "Private", ["SPY", "QQQ"]), Watchlist)
    expect.error(client.get(f"{API}/watchlists/Private", headers=stranger.headers), 404)
    expect.error(client.delete(f"{API}/watchlists/Private", headers=stranger.headers), 404)
    theirs = expect.ok(client.get(f"{API}/watchlists", headers=stranger.headers), WatchlistList)
    assert theirs.watchlists == []
    expect.ok(_put(client, stranger, "Private", ["KO"]), Watchlist)
    mine = expect.ok(client.get(f"{API}/watchlists/Private", headers=owner.headers), Watchlist)
    assert mine.symbols == ["SPY", "QQQ"]


def test_a_hundred_entries_with_duplicates_are_accepted(
    client: httpx.Client, expect, make_user, reader
) -> None:
    account = make_user("wl")
    served = [
        s.symbol
        for s in expect.ok(client.get(f"{API}/symbols", headers=reader), SymbolList).symbols
    ]
    entries = [served[i % len(served)] for i in range(100)]
    stored = expect.ok(_put(client, account, "Many", entries), Watchlist)
    assert stored.symbols == served[:100]


def test_watchlist_body_errors_name_the_field(client: httpx.Client, expect, make_user) -> None:
    account = make_user("wl")
    expect.field(_put(client, account, "Bad", ["SPY"] * 101), "symbols")
    expect.field(_put(client, account, "Bad", ["SPY", "ZZZZ"]), "symbols")
    expect.field(_put(client, account, "Bad", ["not a symbol"]), "symbols")
    expect.field(
        client.put(
            f"{API}/watchlists/Bad",
            json={"symbols": ["SPY"], "color": "red"},
            headers=account.headers,
        ),
        "color",
    )
    expect.field(
        client.put(f"{API}/watchlists/Bad", json={"symbols": "SPY"}, headers=account.headers),
        "symbols",
    )
    expect.field(client.put(f"{API}/watchlists/Bad", json={}, headers=account.headers), "symbols")
    expect.error(client.get(f"{API}/watchlists/Bad", headers=account.headers), 404)


def test_watchlist_names_are_checked(client: httpx.Client, expect, make_user) -> None:
    account = make_user("wl")
    expect.field(_put(client, account, "bad!name", ["SPY"]), "name")
    expect.field(_put(client, account, "x" * 65, ["SPY"]), "name")
    assert _put(client, account, "x" * 64, ["SPY"]).status_code == 200
