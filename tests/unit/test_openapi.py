"""The frozen OpenAPI matches what the route layer generates, and documents the error codes."""

from __future__ import annotations

import json

from contract.openapi import FROZEN, generate, render


def test_frozen_openapi_has_not_drifted() -> None:
    assert FROZEN.read_text(encoding="utf-8") == render(generate()), (
        "contract/openapi.json is out of date: run python -m contract.openapi --write"
    )


def test_error_statuses_of_the_status_table_appear() -> None:
    document = json.loads(FROZEN.read_text(encoding="utf-8"))
    seen = {
        int(code)
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict)
        for code in operation.get("responses", {})
    }
    assert {401, 404, 409, 413, 422, 429, 503} <= seen


def test_authenticated_routes_declare_bearer_security() -> None:
    paths = json.loads(FROZEN.read_text(encoding="utf-8"))["paths"]
    assert paths["/api/v1/watchlists"]["get"]["security"] == [{"BearerToken": []}]
    assert paths["/api/v1/backtests"]["post"]["security"] == [{"BearerToken": []}]
    assert "security" not in paths["/api/v1/symbols"]["get"]
