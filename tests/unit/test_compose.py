"""docker-compose.yml agrees with env.example: services, ports and every variable it reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# `${NAME}`, `${NAME:-default}`, `${NAME:?error}`; `$${...}` is compose's escape for a literal `$`.
REFERENCE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-?])([^}]*))?\}")
PORT = re.compile(r"(?:(?P<address>[0-9.]+):)?(?P<host>\$\{[^}]+\}|[0-9]+):(?P<container>[0-9]+)")
DECLARATION = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")

# service → {env.example port variable: port inside the container}
APP_PORTS = {
    "mock": {"MOCK_PORT": 8001},
    "prod": {"PROD_PORT": 8002},
    "gateway": {"GATEWAY_PORT": 8000, "GATEWAY_ADMIN_PORT": 8009},
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


@pytest.fixture(scope="module")
def declared() -> dict[str, str]:
    """Every variable env.example declares, set (`NAME=value`) or optional (`# NAME=value`)."""
    names: dict[str, str] = {}
    for line in (ROOT / "env.example").read_text().splitlines():
        match = DECLARATION.match(line.strip())
        if match:
            names.setdefault(match.group(1), match.group(2).strip())
    return names


def published(service: dict[str, Any]) -> list[tuple[str | None, str, int]]:
    """(bind address, host port expression, container port) of each published port."""
    ports = []
    for entry in service.get("ports", []):
        match = PORT.fullmatch(str(entry))
        assert match, f"unexpected port syntax {entry!r}"
        ports.append((match["address"], match["host"], int(match["container"])))
    return ports


def test_the_six_services_exist(compose: dict[str, Any]) -> None:
    assert {"postgres", "redis", "mock", "prod", "worker", "gateway"} <= set(compose["services"])


def test_app_ports_default_to_env_example_and_match_what_the_process_listens_on(
    compose: dict[str, Any], declared: dict[str, str]
) -> None:
    for name, expected in APP_PORTS.items():
        service = compose["services"][name]
        found = {}
        for address, host, container in published(service):
            assert address == "127.0.0.1", f"{name} publishes {host} beyond this machine"
            match = REFERENCE.fullmatch(host)
            assert match, f"{name}: host port {host!r} is not a ${{VAR:-default}}"
            variable, _, default = match.groups()
            assert default == declared[variable], f"{name}: {variable} defaults differ"
            found[variable] = container
        assert found == expected, name
        command = service["command"]
        for port in expected.values():
            assert str(port) in command, f"{name} does not listen on {port}: {command}"


def test_databases_use_their_standard_ports_on_loopback(compose: dict[str, Any]) -> None:
    assert published(compose["services"]["postgres"]) == [("127.0.0.1", "5432", 5432)]
    assert published(compose["services"]["redis"]) == [("127.0.0.1", "6379", 6379)]
    assert compose["services"]["postgres"]["image"] == "postgres:16"
    assert compose["services"]["redis"]["image"] == "redis:7"


def test_every_variable_compose_reads_is_declared_in_env_example(
    compose: dict[str, Any], declared: dict[str, str]
) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    referenced = {m.group(1) for m in REFERENCE.finditer(text)}
    assert referenced, "no ${VAR} found: the pattern is wrong"
    assert referenced - set(declared) == set()
    for name, service in compose["services"].items():
        keys = set(service.get("environment") or {})
        assert keys - set(declared) == set(), f"{name} sets variables env.example lacks"


def test_defaults_in_compose_agree_with_env_example(declared: dict[str, str]) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for match in REFERENCE.finditer(text):
        variable, kind, default = match.groups()
        if kind == "-":
            assert default == declared[variable], f"${{{variable}:-{default}}} vs env.example"


def test_the_image_never_contains_secrets_or_local_state() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", "frontend.env", ".venv/", "var/"} <= ignored
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
    assert "pip install ." in dockerfile
