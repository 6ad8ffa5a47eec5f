"""Hostile values in every path and query parameter of contract/openapi.json (read from the
document, so a new route is covered the day it is added), sent to both backends as real servers:
each answer is a clear 4xx naming the parameter, or a 2xx where the value is legal; never a 5xx,
never a hang, and the server still answers its health check afterwards."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from ops.settings import PROJECT_ROOT
from tests.security.servers import Account, Server

OPENAPI = json.loads((PROJECT_ROOT / "contract" / "openapi.json").read_text(encoding="utf-8"))
# They end the caller's own session; their refusals are the security drills'.
LEFT_OUT = {("DELETE", "/api/v1/auth/me"), ("POST", "/api/v1/auth/logout")}
# A legal value for each parameter, used while another one of the same request is under test.
LEGAL = {
    "symbol": "SPY",
    "name": "Mine",
    "backtest_id": "0b9d6a2c-1f3e-4c55-9a0e-2d6f1b7c8e90",
    "signal_id": "SPY-1d-1763596800",
}
HOSTILE = {
    "sql quote": "' OR '1'='1",
    "sql statement": "1; DROP TABLE users; --",
    "path traversal": "../../etc/passwd",
    "encoded traversal": "..%2F..%2Fetc%2Fpasswd",
    "percent nul": "%00",
    "nul byte": "SPY\x00",
    "control bytes": "\x01\x02\x1b[31m",
    "script tag": "<script>alert(1)</script>",
    "template": "{{7*7}}${7*7}",
    "very long": "A" * 4000,
    "fullwidth letters": "ＳＰＹ",
    "emoji": "💥📈",
    "dotted capital i": "İ",
    "sharp s": "ß",
    "right-to-left override": "\u202eYPS",
    "combining marks": "S\u0301P\u0301Y\u0301",
    "huge number": "9" * 40,
    "negative": "-1",
    "negative huge": "-" + "9" * 30,
    "float overflow": "1e999",
    "not a number": "NaN",
    "infinity": "Infinity",
    "hex": "0x10",
    "empty": "",
    "spaces": "   ",
    "comma list": ",,,,",
    "json": '{"$ne": null}',
    "far date": "9999-12-31",
    "impossible date": "2026-02-30",
}
ACCEPTED = {200, 201, 202, 204, 400, 404, 422}
ANSWER_SECONDS = 15.0


@dataclass(frozen=True)
class Slot:
    """One parameter of one operation."""

    method: str
    path: str
    name: str
    where: str  # path | query
    secured: bool
    body: dict[str, Any] | None

    @property
    def label(self) -> str:
        return f"{self.method} {self.path} {self.where}:{self.name}"


def _body_for(method: str, path: str) -> dict[str, Any] | None:
    if method == "PUT" and path.endswith("/watchlists/{name}"):
        return {"symbols": ["SPY"]}
    return None


def slots() -> Iterator[Slot]:
    for path, item in OPENAPI["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or (method.upper(), path) in LEFT_OUT:
                continue
            for parameter in operation.get("parameters", []):
                if parameter["in"] in ("path", "query"):
                    yield Slot(
                        method.upper(),
                        path,
                        parameter["name"],
                        parameter["in"],
                        bool(operation.get("security")),
                        _body_for(method.upper(), path),
                    )


SLOTS = list(slots())


def required_query(path: str, method: str) -> dict[str, str]:
    operation = OPENAPI["paths"][path][method.lower()]
    return {
        p["name"]: LEGAL.get(p["name"], "1")
        for p in operation.get("parameters", [])
        if p["in"] == "query" and p.get("required")
    }


def request_for(slot: Slot, value: str) -> tuple[str, dict[str, str]]:
    """The URL path (parameters percent-encoded) and query with `value` in the slot."""
    path = slot.path
    for name in [p.strip("{}") for p in path.split("/") if p.startswith("{")]:
        chosen = value if (slot.where == "path" and name == slot.name) else LEGAL[name]
        path = path.replace("{" + name + "}", quote(chosen, safe=""))
    query = required_query(slot.path, slot.method)
    if slot.where == "query":
        query[slot.name] = value
    return path, query


def problem(answer: httpx.Response, slot: Slot, value: str) -> str | None:
    """What is wrong with an answer to a hostile value, or None."""
    status = answer.status_code
    # An empty path segment names the collection: a wrong method there is the contract's 405.
    collection = slot.where == "path" and value == "" and status == 405
    if status not in ACCEPTED and not collection:
        return f"status {status}: {answer.text[:200]}"
    if status >= 400:
        try:
            body = answer.json()
        except ValueError:
            return f"{status} that is not the contract's JSON error: {answer.text[:200]}"
        if not str(body.get("detail", "")).strip():
            return f"{status} without a detail"
        if status == 422:
            named = " ".join(f"{e.get('key', '')} {e.get('message', '')}" for e in body["extra"])
            if slot.name.lower() not in named.lower():
                return f"422 does not name {slot.name!r}: {body}"
    return None


@pytest.mark.parametrize("slot", SLOTS, ids=[s.label for s in SLOTS])
def test_hostile_values_in_a_parameter_get_a_clear_answer(
    backend: Server, account: Account, slot: Slot
) -> None:
    headers = account.headers if slot.secured else {}
    found: dict[str, str] = {}
    slowest = 0.0
    with httpx.Client(base_url=backend.url, timeout=ANSWER_SECONDS) as http:
        for label, value in HOSTILE.items():
            path, query = request_for(slot, value)
            started = time.monotonic()
            try:
                answer = http.request(
                    slot.method, path, params=query, headers=headers, json=slot.body
                )
            except httpx.TimeoutException:
                found[label] = f"no answer within {ANSWER_SECONDS} s"
                continue
            slowest = max(slowest, time.monotonic() - started)
            wrong = problem(answer, slot, value)
            if wrong:
                found[label] = wrong
    assert not found, f"{backend.name} {slot.label}:\n" + "\n".join(
        f"  {label}: {why}" for label, why in found.items()
    )
    assert backend.healthy(), f"{backend.name} stopped answering its health check"


def test_every_parameter_of_the_document_is_drilled() -> None:
    """The drill reads the document: at least the parameters the contract has today."""
    names = {(s.path, s.name) for s in SLOTS}
    assert ("/api/v1/market-data/{symbol}/historical", "interval") in names
    assert ("/api/v1/signals", "min_confidence") in names
    assert len(SLOTS) >= 20
