"""The differ's judgement: field trees, ignore rules, tolerance, noise, redaction."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from ops.gateway.admin import GatewayMetrics
from ops.gateway.differ import (
    REDACTED,
    Answer,
    Differ,
    IgnoreFileError,
    RequestCopy,
    Rule,
    differences,
    load_rules,
)
from ops.settings import PROJECT_ROOT

QUOTE = "/api/v1/market-data/{symbol}"


def answer(body: Any, status: int = 200, **headers: str) -> Answer:
    pairs = tuple((k.replace("_", "-"), v) for k, v in headers.items())
    return Answer(status, (("content-type", "application/json"), *pairs), json.dumps(body).encode())


def request(route: str = QUOTE, path: str = "/api/v1/market-data/SPY", **kw: Any) -> RequestCopy:
    return RequestCopy(
        kw.get("method", "GET"), path, route, kw.get("headers", ()), kw.get("body", b"")
    )


async def never(*_: Any) -> Answer:
    raise AssertionError("not sent in these tests")


def differ(rules: list[Rule] | None = None) -> Differ:
    return Differ(rules or [], never, GatewayMetrics())


def test_field_tree_differences_name_the_paths() -> None:
    primary = answer({"symbol": "SPY", "price": 1.5, "bars": [{"close": 1}, {"close": 2}]})
    candidate = answer({"symbol": "SPY", "last_price": 1.5, "bars": [{"close": 1}, {"close": 3}]})
    assert differences(primary, candidate, QUOTE, []) == {
        "body.price": "missing",
        "body.last_price": "extra",
        "body.bars[*].close": "changed",
    }
    assert differences(primary, primary, QUOTE, []) == {}
    assert differences(answer({}, 200), answer({}, 500), QUOTE, []) == {"status": "changed"}


def test_default_header_ignores_and_compared_headers() -> None:
    a = answer({}, date="Mon", server="a", x_request_id="1", x_backend="mock", ratelimit_limit="5")
    b = answer({}, date="Tue", server="b", x_request_id="2", x_backend="prod", ratelimit_limit="9")
    assert differences(a, b, QUOTE, []) == {}
    assert differences(answer({}, cache_control="no-store"), answer({}), QUOTE, []) == {
        "headers.cache-control": "missing"
    }


def test_rules_ignore_tolerate_and_sort() -> None:
    ignore = Rule(QUOTE, "body.source", "why")
    tolerant = Rule("/api/v1/*", "body.price", "why", tolerance=0.01)
    unordered = Rule(QUOTE, "body.tags", "why", unordered=True)
    rules = [ignore, tolerant, unordered]
    a = answer({"source": "mem", "price": 1.000, "tags": ["a", "b"]})
    b = answer({"source": "pg", "price": 1.005, "tags": ["b", "a"]})
    assert differences(a, b, QUOTE, rules) == {}
    c = answer({"source": "pg", "price": 1.02, "tags": ["b", "c"]})
    assert differences(a, c, QUOTE, rules) == {"body.price": "changed", "body.tags[*]": "changed"}
    # A rule for another route does not apply.
    assert "body.source" in differences(a, b, "/api/v1/symbols", rules)


def test_primary_against_primary_difference_is_noise() -> None:
    judge = differ()
    base = {"symbol": "SPY", "price": 1.5}
    for n in range(60):
        judge.record(
            request(),
            answer({**base, "timestamp": f"t{n}"}),
            answer({**base, "timestamp": f"u{n}"}),
        )
    row = judge.table(min_samples=50)[0]
    assert (row.differing, row.verdict) == (60, "fail")
    judge.record_noise(
        QUOTE, answer({**base, "timestamp": "t1"}), answer({**base, "timestamp": "t2"})
    )
    row = judge.table(min_samples=50)[0]
    assert row.noise_fields == ["body.timestamp"]
    assert (row.compared, row.differing, row.rate, row.verdict) == (60, 0, 0.0, "pass")
    # A real difference next to the noise still counts.
    judge.record(
        request(), answer({**base, "timestamp": "a"}), answer({"symbol": "SPY", "last_price": 1.5})
    )
    row = judge.table(min_samples=50)[0]
    assert (row.differing, row.fields["body.last_price"]) == (1, {"extra": 1})


def test_too_few_samples_is_never_a_pass() -> None:
    judge = differ()
    for _ in range(10):
        judge.record(request(), answer({"a": 1}), answer({"a": 1}))
    assert judge.table(min_samples=50)[0].verdict == "not enough data"
    assert judge.table(min_samples=10)[0].verdict == "pass"


def test_samples_are_redacted() -> None:
    judge = differ()
    secret_request = request(
        route="/api/v1/signals/{symbol}",
        path="/api/v1/signals/SPY?token=abc.def.ghi&limit=5",
        headers=(
            ("authorization", "Bearer abc.def.ghi"),
            ("cookie", "cutover_client=zzz"),
            ("accept", "*/*"),
        ),
    )
    judge.record(
        secret_request,
        answer({"access_token": "s3cret", "nested": {"password": "hunter2"}, "n": 1}),
        answer({"refresh_token": "s3cret2", "n": 2}, set_cookie="session=1"),
    )
    sample = judge.document()["routes"][0]["samples"][0]
    text = json.dumps(sample)
    for secret in ("abc.def.ghi", "zzz", "s3cret", "hunter2", "session=1"):
        assert secret not in text
    assert sample["request"]["headers"]["accept"] == "*/*"
    assert sample["request"]["path"].endswith("limit=5")
    assert sample["primary"]["body"]["nested"]["password"] == REDACTED
    login = request(
        route="/api/v1/auth/login",
        path="/api/v1/auth/login",
        method="POST",
        body=b'{"email":"a@b.c","pw":"x"}',
    )
    judge.record(login, answer({"x": 1}), answer({"x": 2}))
    auth = next(r for r in judge.document()["routes"] if r["route"] == "/api/v1/auth/login")
    assert auth["samples"][0]["request"]["body"] == REDACTED
    assert auth["samples"][0]["primary"]["body"] == REDACTED


def test_ignore_file_rules_need_a_reason_and_may_not_ignore_everything(tmp_path: Path) -> None:
    path = tmp_path / "ignore.toml"
    path.write_text('[[rule]]\nroute = "*"\nfield = "body.x"\n')
    with pytest.raises(IgnoreFileError, match="reason"):
        load_rules(path)
    path.write_text('[[rule]]\nroute = "*"\nfield = "body"\nreason = "lazy"\n')
    with pytest.raises(IgnoreFileError, match="whole answer"):
        load_rules(path)


def test_checked_in_ignore_file_is_short_and_justified() -> None:
    path = PROJECT_ROOT / "ops" / "shadow-ignore.toml"
    written = tomllib.loads(path.read_text(encoding="utf-8"))["rule"]
    assert len(written) <= 10  # rules as the file states them, each with its reason
    rules = load_rules(path)
    assert all(len(rule.reason) > 10 for rule in rules)
    # No rule ignores a whole answer, nor a whole body of any route.
    assert all(rule.field.strip("*.") not in ("", "body") for rule in rules)
    assert all(not rule.field.startswith(("*", "body.*")) for rule in rules)


def test_checked_in_rules_absorb_one_price_tick_but_not_a_drift() -> None:
    rules = load_rules(PROJECT_ROOT / "ops" / "shadow-ignore.toml")
    base = {"symbol": "SPY", "price": 80.0, "previous_close": 82.0, "change": -2.0}
    tick = {**base, "price": 80.05, "change": -1.95}
    assert differences(answer(base), answer(tick), QUOTE, rules) == {}
    drifted = {**base, "price": 80.8}  # alter_price: +1 %
    assert differences(answer(base), answer(drifted), QUOTE, rules) == {"body.price": "changed"}
    closed = {**base, "previous_close": 82.01}
    assert differences(answer(base), answer(closed), QUOTE, rules) == {
        "body.previous_close": "changed"
    }
