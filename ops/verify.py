"""`./start.sh contract`: the contract suite and schema fuzzing against running servers.

For the operator before and during the cutover. Two parts, per target:
- the contract suite (tests/contract, pytest in a child process) pointed at the server through
  CONTRACT_BASE_URL, CONTRACT_DEMO_PASSWORD and CONTRACT_SECRET_KEY (from `.env`), JUnit XML under
  `var/reports/contract-STAMP/`;
- Schemathesis driven by the frozen contract/openapi.json, in this process: for every operation
  and generation mode (positive, negative) it generates `--examples` cases with a fixed `--seed`
  (the same seed replays the same cases), plus positive cases whose symbol or signal id is pinned
  to served values (random strings almost never name one), sends each to the server(s) and runs
  the checks not_a_server_error, status_code_conformance, response_schema_conformance and
  content_type_conformance. With `--target both` each case goes to both backends and every
  disagreement in status, content type or body is listed, except the backend's own values
  (CONTRACT.md): timestamps of "now", ids of new resources, request ids, X-Backend.

Writes: the mock keeps everything in memory and sees the whole suite and writing cases. Production
(or a URL whose health says `backend: production`) only sees reads — GET, and POST
/market-data/quotes, plus the suite's login of the demo user — unless `--allow-writes` is given
AND DATABASE_URL names a scratch database (its name starts with `scratch` or `cutover_test`).
A read-only suite run skips every test at its first write, before the write is sent (the guard
below is loaded into pytest with `-p ops.verify`). Writing fuzz cases run as a user registered for
the run and deleted afterwards, never as the demo user; POST /backtests is sent at most
MAX_BACKTESTS times per target; logout and DELETE /auth/me are left to the suite.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
import secrets
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from contract.identity import DEMO_EMAIL, issue_token, user_id_for
from ops import services
from ops.cli import (
    GateFailedError,
    PreconditionError,
    Run,
    _next,
    _shown,
    out,
)
from ops.settings import PROJECT_ROOT, OpsSettings, read_env_file
from ops.state import CutoverState, gate_record

API = "/api/v1"
OPENAPI = PROJECT_ROOT / "contract" / "openapi.json"
READ_ONLY_ENV = "CONTRACT_READ_ONLY"
SCRATCH_PREFIXES = ("scratch", "cutover_test")
MAX_BACKTESTS = 3
CHECK_NAMES = (
    "not_a_server_error",
    "status_code_conformance",
    "response_schema_conformance",
    "content_type_conformance",
)
# They would end the run's own session mid-run; the suite covers both.
NEVER_FUZZED = frozenset({"DELETE /api/v1/auth/me", "POST /api/v1/auth/logout"})
BACKTEST_POST = "POST /api/v1/backtests"
REQUEST_TIMEOUT = 30.0
RETRY_AFTER_CAP = 30.0
PROVIDERS = {"mock": "./start.sh simple", "prod": "./start.sh prod"}
DEFAULT_DEMO_PASSWORD = "demo-password-123"


@dataclass(frozen=True, slots=True)
class ContractArgs:
    """The options of `./start.sh contract`, as typed."""

    target: str = "mock"
    examples: int = 25
    seed: int = 42
    allow_writes: bool = False
    suite: bool = True
    fuzz: bool = True
    read_only: bool = False


# --- the read-only guard (a pytest plugin: `-p ops.verify`) ---------------------------------


def write_of(method: str, path: str) -> str | None:
    """Why a request is a write, or None for a read (GET, quotes, the demo user's login)."""
    method = method.upper()
    if method in ("GET", "HEAD", "OPTIONS"):
        return None
    if method == "POST" and path.rstrip("/") in (f"{API}/market-data/quotes", f"{API}/auth/login"):
        return None
    return f"{method} {path} is a write"


def pytest_configure(config: Any) -> None:
    """In a read-only run, skip a test at its first write, before the write is sent."""
    if os.environ.get(READ_ONLY_ENV) != "1":
        return
    import pytest

    original = httpx.Client.send

    def guarded(client: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        why = write_of(request.method, request.url.path)
        if why is not None:
            pytest.skip(f"read-only run: {why}")
        return original(client, request, **kwargs)

    pytest.MonkeyPatch().setattr(httpx.Client, "send", guarded)


# --- targets and the write policy -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A server under test: its name in reports, URL, kind and whether it may see writes."""

    name: str
    url: str
    backend: str
    writes: bool
    policy: str
    secret_key: str | None
    demo_password: str


def database_name(url: str | None) -> str | None:
    """The database a PostgreSQL URL names (None when unset or naming none)."""
    if not url:
        return None
    name = unquote(urlsplit(url).path.lstrip("/"))
    return name or None


def is_scratch(name: str) -> bool:
    return name.lower().startswith(SCRATCH_PREFIXES)


def write_policy(backend: str, allow_writes: bool, env: Mapping[str, str]) -> tuple[bool, str]:
    """Whether a backend of this kind may see writes, and the policy in words."""
    if backend == "mock":
        return True, "writes allowed (the mock keeps them in memory)"
    if not allow_writes:
        return False, "read-only (production; --allow-writes with a scratch database lifts it)"
    name = database_name(env.get("DATABASE_URL"))
    if name is None:
        raise PreconditionError(
            "--allow-writes against production needs DATABASE_URL to name its database, "
            "and it is not set",
            "./start.sh db (or set DATABASE_URL in .env)",
        )
    if not is_scratch(name):
        raise PreconditionError(
            f"--allow-writes against production only on a scratch database: DATABASE_URL names "
            f"{name!r}, and a scratch one's name starts with {' or '.join(SCRATCH_PREFIXES)}",
            "run without --allow-writes (reads only), or point prod at a scratch database",
        )
    return True, f"writes allowed (scratch database {name})"


def _health(url: str, hint: str) -> dict[str, Any]:
    try:
        answer = httpx.get(f"{url}{API}/health", timeout=10.0)
    except httpx.HTTPError as exc:
        raise PreconditionError(f"{url} does not answer ({type(exc).__name__})", hint) from None
    try:
        body = answer.json()
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {}


def resolve_targets(settings: OpsSettings, args: ContractArgs) -> list[Target]:
    """The servers to check, with their credentials and write policy; PreconditionError if down."""
    env = {**read_env_file(settings.env_file), **os.environ}
    own_secret = env.get("SECRET_KEY", "").strip() or None
    own_demo = env.get("DEMO_PASSWORD", "").strip() or DEFAULT_DEMO_PASSWORD
    names = ["mock", "prod"] if args.target == "both" else [args.target]
    targets = []
    for name in names:
        if name in PROVIDERS:
            record = services.read_pid_file(settings, name)
            if record is None or not services.is_running(record) or not record.url:
                label = "the mock" if name == "mock" else "the production backend"
                raise PreconditionError(f"{label} is not running", f"{PROVIDERS[name]} starts it")
            url, secret, demo = record.url, own_secret, own_demo
            _health(url, f"./start.sh logs {name}")
            backend = "mock" if name == "mock" else "production"
        elif name.startswith(("http://", "https://")):
            url = name.rstrip("/")
            secret = env.get("CONTRACT_SECRET_KEY", "").strip() or own_secret
            demo = env.get("CONTRACT_DEMO_PASSWORD", "").strip() or own_demo
            body = _health(url, "check the URL, or ./start.sh status")
            # Unknown kinds are treated as production: the safe side.
            backend = "mock" if body.get("backend") == "mock" else "production"
            name = "url"
        else:
            raise PreconditionError(
                f"--target {args.target!r}: accepted mock, prod, both or a base URL (http://...)"
            )
        if args.read_only:
            if args.allow_writes:
                raise PreconditionError("--read-only and --allow-writes contradict each other")
            writes, policy = False, "read-only (--read-only)"
        else:
            writes, policy = write_policy(backend, args.allow_writes, env)
        targets.append(Target(name, url, backend, writes, policy, secret, demo))
    return targets


# --- the contract suite ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SuiteResult:
    target: str
    tests: int
    failures: int
    errors: int
    skipped: int
    seconds: float
    junit: Path
    log: Path
    failed: list[str]
    exit_code: int

    @property
    def passed(self) -> int:
        return self.tests - self.failures - self.errors - self.skipped

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.failures and not self.errors


def read_junit(path: Path) -> tuple[int, int, int, int, float, list[str]]:
    """tests, failures, errors, skipped, seconds and the failed tests (with why) of a JUnit file."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = failures = errors = skipped = 0
    seconds = 0.0
    failed = []
    for suite in suites:
        tests += int(suite.get("tests", 0))
        failures += int(suite.get("failures", 0))
        errors += int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
        seconds += float(suite.get("time", 0))
        for case in suite.iter("testcase"):
            problem = case.find("failure")
            if problem is None:
                problem = case.find("error")
            if problem is not None:
                why = (problem.get("message") or "").strip().splitlines()
                failed.append(f"{case.get('name')}: {why[0][:160] if why else ''}")
    return tests, failures, errors, skipped, seconds, failed


def run_suite(settings: OpsSettings, target: Target, folder: Path) -> SuiteResult:
    """tests/contract against the target in a child pytest; its JUnit XML and log in `folder`."""
    junit = folder / f"suite-{target.name}.xml"
    log = folder / f"suite-{target.name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTRACT_")}
    env.update(
        CONTRACT_BASE_URL=target.url,
        CONTRACT_DEMO_PASSWORD=target.demo_password,
        PYTHONPATH=os.pathsep.join(filter(None, [str(settings.root), env.get("PYTHONPATH")])),
    )
    if target.secret_key:
        env["CONTRACT_SECRET_KEY"] = target.secret_key
    if not target.writes:
        env[READ_ONLY_ENV] = "1"
    argv = [
        sys.executable, "-m", "pytest", str(settings.root / "tests" / "contract"), "-q",
        "-p", "no:cacheprovider", "-p", "ops.verify", f"--junitxml={junit}",
        "-o", "junit_suite_name=contract-" + target.name,
    ]  # fmt: skip
    started = time.monotonic()
    with log.open("wb") as handle:
        process = subprocess.Popen(
            argv, cwd=settings.root, env=env, stdout=handle, stderr=subprocess.STDOUT
        )
        try:
            code = process.wait()
        except KeyboardInterrupt:
            run_child_interrupted(process)
            raise
    if not junit.is_file():
        tail = "\n".join("    " + line for line in services.tail_lines(log, 15))
        raise GateFailedError(
            f"the contract suite did not run against {target.name} (pytest exit {code}):\n{tail}",
            f"see {_shown(settings, log)}",
        )
    tests, failures, errors, skipped, _, failed = read_junit(junit)
    return SuiteResult(
        target.name,
        tests,
        failures,
        errors,
        skipped,
        round(time.monotonic() - started, 1),
        junit,
        log,
        failed,
        code,
    )


def run_child_interrupted(process: subprocess.Popen[bytes]) -> None:
    """After Ctrl-C: give pytest its own interrupt handling, then make sure it is gone."""
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- Schemathesis ---------------------------------------------------------------------------


@dataclass(slots=True)
class CheckTally:
    examples: int = 0
    failures: dict[str, FailureRecord] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FailureRecord:
    operation: str
    check: str
    title: str
    message: str
    status: int | None
    request: str

    @property
    def key(self) -> str:
        return f"{self.operation}|{self.check}|{self.title}|{self.status}"


@dataclass(frozen=True, slots=True)
class Disagreement:
    operation: str
    request: str
    differences: list[str]


@dataclass(slots=True)
class FuzzReport:
    """What Schemathesis found: per target and check, disagreements, what was left out and why."""

    examples: int
    seed: int
    targets: list[str]
    checks: dict[str, dict[str, CheckTally]] = field(default_factory=dict)
    cases: dict[str, int] = field(default_factory=dict)
    operations: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    disagreements: list[Disagreement] = field(default_factory=list)
    compared: int = 0
    agreed_on_replay: int = 0
    rate_limited: int = 0
    backtests: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def failure_count(self, target: str) -> int:
        return sum(len(t.failures) for t in self.checks.get(target, {}).values())

    @property
    def failed(self) -> bool:
        return bool(self.disagreements) or any(self.failure_count(t) for t in self.targets)


@dataclass
class Session:
    """One target as the fuzzer calls it: its Authorization header and what to clean up."""

    target: Target
    authorization: str | None
    own_user: tuple[str, str] | None = None
    registered: list[tuple[str, str]] = field(default_factory=list)


def _fuzz_address(rng: random.Random) -> str:
    # A benchmarking address (198.18.0.0/15) per case: per-address limits land on it, never on
    # the operator's own; the backends trust X-Forwarded-For from this machine (TRUSTED_PROXIES).
    return f"198.{18 + rng.randrange(2)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _login(url: str, email: str, password: str, address: str) -> str | None:
    try:
        answer = httpx.post(
            f"{url}{API}/auth/login",
            json={"email": email, "password": password},
            headers={"X-Forwarded-For": address},
            timeout=REQUEST_TIMEOUT,
        )
    except httpx.HTTPError:
        return None
    if answer.status_code != 200:
        return None
    token = answer.json().get("access_token")
    return str(token) if token else None


def open_session(target: Target, own_user: tuple[str, str] | None, rng: random.Random) -> Session:
    """The identity fuzz cases use on a target: the run's own user, or the demo user to read."""
    if own_user is not None:
        email, password = own_user
        address = _fuzz_address(rng)
        answer = httpx.post(
            f"{target.url}{API}/auth/register",
            json={"email": email, "password": password, "name": "Contract Fuzz"},
            headers={"X-Forwarded-For": address},
            timeout=REQUEST_TIMEOUT,
        )
        if answer.status_code not in (201, 409):
            raise GateFailedError(
                f"could not register the fuzz user on {target.name}: {answer.status_code} "
                f"{answer.text[:200]}"
            )
        token = _login(target.url, email, password, address)
        return Session(target, f"Bearer {token}" if token else None, own_user)
    if target.secret_key:
        # A minted token is a read: logging in would write a session row in production.
        token, _ = issue_token(target.secret_key, user_id_for(DEMO_EMAIL), DEMO_EMAIL, "access")
        return Session(target, f"Bearer {token}")
    token = _login(target.url, DEMO_EMAIL, target.demo_password, _fuzz_address(rng))
    return Session(target, f"Bearer {token}" if token else None)


def close_session(session: Session, rng: random.Random) -> None:
    """Delete the users the run registered (its own, and those fuzz cases registered)."""
    users = list(session.registered)
    if session.own_user is not None:
        users.append(session.own_user)
    for email, password in users:
        token = _login(session.target.url, email, password, _fuzz_address(rng))
        if token is None:
            continue
        try:
            httpx.delete(
                f"{session.target.url}{API}/auth/me",
                headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": _fuzz_address(rng)},
                timeout=REQUEST_TIMEOUT,
            )
        except httpx.HTTPError:
            continue


def secured_operations(document: Mapping[str, Any]) -> set[str]:
    """Labels (`GET /path`) of the operations that want a bearer token."""
    secured = set()
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if isinstance(operation, dict) and operation.get("security"):
                secured.add(f"{method.upper()} {path}")
    return secured


def chosen(label: str, writes: bool) -> str | None:
    """Why an operation is left out of the fuzzing, or None when it is fuzzed."""
    if label in NEVER_FUZZED:
        return "would end the run's own session (the suite covers it)"
    method, _, path = label.partition(" ")
    if not writes and write_of(method, path) is not None:
        return "a write (read-only run)"
    if path == f"{API}/auth/login" and not writes:
        return "a write (read-only run)"
    return None


# Values that are each backend's own (CONTRACT.md), dropped before two answers are compared.
OWN_KEYS = frozenset({"created_at", "updated_at", "server_time", "connection_id", "request_id"})
HEALTH_OWN_KEYS = frozenset({"backend", "version", "checks", "timestamp"})


def normalise(value: Any, operation: str, top: bool = True) -> Any:
    """An answer without the backend's own values: times of "now", new ids, the backend's name."""
    if isinstance(value, list):
        return [normalise(item, operation, False) for item in value]
    if not isinstance(value, dict):
        return value
    dropped = set(OWN_KEYS)
    if top:
        dropped.add("timestamp")  # health, opportunities, a quote: the time of "now"
        if operation.endswith(f"{API}/health"):
            dropped |= HEALTH_OWN_KEYS
        if operation.startswith("POST "):
            dropped.add("id")  # a new resource's id, chosen by the backend when not sent
    if "previous_close" in value:  # a Quote anywhere: stamped with the time of "now"
        dropped.add("timestamp")
    return {k: normalise(v, operation, False) for k, v in value.items() if k not in dropped}


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def differences(a: Any, b: Any, path: str = "$", limit: int = 8) -> list[str]:
    """Where two JSON values differ in shape or value, as `path: a ≠ b` lines (at most `limit`)."""
    found: list[str] = []

    def walk(x: Any, y: Any, at: str) -> None:
        if len(found) >= limit:
            return
        numeric = (int, float)
        if (
            isinstance(x, numeric)
            and isinstance(y, numeric)
            and not isinstance(x, bool)
            and not isinstance(y, bool)
            and x == y
        ):
            return
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                if key not in y:
                    found.append(f"{at}.{key}: only in the first")
                elif key not in x:
                    found.append(f"{at}.{key}: only in the second")
                else:
                    walk(x[key], y[key], f"{at}.{key}")
            return
        if isinstance(x, list) and isinstance(y, list):
            if len(x) != len(y):
                found.append(f"{at}: {len(x)} items ≠ {len(y)} items")
            for index, (p, q) in enumerate(zip(x, y, strict=False)):
                walk(p, q, f"{at}[{index}]")
            return
        if type(x) is not type(y) or x != y:
            found.append(f"{at}: {_short(x)} ≠ {_short(y)}")

    walk(a, b, path)
    return found


def _media_type(response: Any) -> str:
    values = response.headers.get("content-type") or response.headers.get("Content-Type") or [""]
    raw = values[0] if isinstance(values, list) else str(values)
    return raw.split(";")[0].strip().lower()


def _body(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.content.decode(errors="replace")


def compare(operation: str, first: Any, second: Any) -> list[str]:
    """Disagreements between two answers to the same request (status, content type, body)."""
    found = []
    if first.status_code != second.status_code:
        found.append(f"status {first.status_code} ≠ {second.status_code}")
    if _media_type(first) != _media_type(second):
        found.append(f"content type {_media_type(first)} ≠ {_media_type(second)}")
    if found or operation == "GET /metrics":  # each process's own counters
        return found
    return differences(normalise(_body(first), operation), normalise(_body(second), operation))


def _describe_case(case: Any) -> str:
    query = "&".join(f"{k}={v}" for k, v in (case.query or {}).items())
    text = f"{case.method.upper()} {case.formatted_path}" + (f"?{query}" if query else "")
    body = getattr(case, "body", None)
    if body is not None and type(body).__name__ != "NotSet":
        shown = body if isinstance(body, (str, bytes)) else json.dumps(body, default=str)
        text += f" body={str(shown)[:120]}"
    return text


_BEARER = re.compile(r"^Bearer \S+$")


def _headers_for(
    case: Any, session: Session, secured: set[str], rng: random.Random
) -> dict[str, str]:
    headers = {"X-Forwarded-For": _fuzz_address(rng)}
    if session.authorization is None or case.operation.label not in secured:
        return headers
    generated = {str(k).lower(): str(v) for k, v in dict(case.headers or {}).items()}
    mode = getattr(getattr(getattr(case, "meta", None), "generation", None), "mode", None)
    # Positive cases get a real token; a negative case keeps a missing or malformed one (the
    # point of that case) and gets a real token in place of a well-formed random one.
    positive = getattr(mode, "value", "positive") == "positive"
    current = generated.get("authorization")
    if positive or (current is not None and _BEARER.match(current)):
        headers["Authorization"] = session.authorization
    return headers


def _checks() -> dict[str, Callable[..., Any]]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return {
        "not_a_server_error": not_a_server_error,
        "status_code_conformance": status_code_conformance,
        "response_schema_conformance": response_schema_conformance,
        "content_type_conformance": content_type_conformance,
    }


def generate_cases(
    operation: Any, mode: Any, examples: int, seed: int, **fixed: dict[str, Any]
) -> list[Any]:
    """`examples` cases of one operation and mode, the same for the same seed.

    `fixed` (path_parameters=, query=) pins some parameters; the others are still generated.
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as fixed_seed
    from hypothesis.errors import Unsatisfiable

    cases: list[Any] = []

    @fixed_seed(seed)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    def collect(case: Any) -> None:
        cases.append(case)

    try:
        collect()
    except Unsatisfiable:
        return []  # e.g. no way to make a parameterless operation's request invalid
    return cases[:examples]


@dataclass(frozen=True, slots=True)
class Served:
    """Values the server knows: random strings almost never name a served symbol or signal."""

    symbols: list[str]
    signal_id: str | None


def served_values(url: str, rng: random.Random) -> Served:
    """A few served symbols and the current signal of the first, read from the server."""
    try:
        listing = httpx.get(f"{url}{API}/symbols", timeout=REQUEST_TIMEOUT).json()
        universe = [str(item["symbol"]) for item in listing["symbols"]]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return Served([], None)
    symbols = rng.sample(universe, min(3, len(universe)))
    signal_id = None
    if symbols:
        try:
            answer = httpx.get(f"{url}{API}/signals/{symbols[0]}", timeout=REQUEST_TIMEOUT)
            signals = answer.json().get("signals") or []
            signal_id = str(signals[0]["id"]) if signals else None
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
            signal_id = None
    return Served(symbols, signal_id)


def parameters(document: Mapping[str, Any], label: str) -> dict[str, str]:
    """An operation's parameters: name → location (path, query, header)."""
    method, _, path = label.partition(" ")
    operation = document.get("paths", {}).get(path, {}).get(method.lower(), {})
    return {
        str(p["name"]): str(p["in"])
        for p in operation.get("parameters", [])
        if isinstance(p, dict) and "name" in p and "in" in p
    }


def served_pins(params: Mapping[str, str], served: Served) -> list[dict[str, dict[str, Any]]]:
    """Ways to pin an operation's symbol or signal id to served values (one per value)."""
    where = {"path": "path_parameters", "query": "query"}
    if params.get("signal_id") in where and served.signal_id:
        return [{where[params["signal_id"]]: {"signal_id": served.signal_id}}]
    if params.get("symbol") in where:
        return [{where[params["symbol"]]: {"symbol": symbol}} for symbol in served.symbols]
    if params.get("symbols") == "query" and served.symbols:
        return [{"query": {"symbols": ",".join(served.symbols)}}]
    return []


def served_cases(
    operation: Any, pins: list[dict[str, dict[str, Any]]], examples: int, seed: int
) -> list[Any]:
    """Positive cases whose symbol (or signal id) is served, so that answers carry data."""
    from schemathesis import GenerationMode

    cases: list[Any] = []
    each = max(1, math.ceil(examples / max(len(pins), 1)))
    for pin in pins:
        cases += generate_cases(operation, GenerationMode.POSITIVE, each, seed, **pin)
    return cases[:examples]


class Fuzzer:
    """Sends generated cases to one or two targets, checks every answer, compares the two."""

    def __init__(
        self,
        sessions: list[Session],
        report: FuzzReport,
        secured: set[str],
        rng: random.Random,
    ) -> None:
        self.sessions = sessions
        self.secured = secured
        self.report = report
        self.rng = rng
        self.checks = _checks()
        for session in sessions:
            report.checks[session.target.name] = {name: CheckTally() for name in CHECK_NAMES}
            report.cases[session.target.name] = 0
            report.backtests[session.target.name] = 0

    def send(self, case: Any, session: Session) -> Any | None:
        """One call (and one retry after a 429); None when the server could not be reached."""
        for attempt in range(2):
            try:
                response = case.call(
                    base_url=session.target.url,
                    headers=_headers_for(case, session, self.secured, self.rng),
                    timeout=REQUEST_TIMEOUT,
                )
            except Exception as exc:  # the transport's own error types vary; any is a failure
                self._fail(session, case, "not_a_server_error", "no answer", str(exc), None)
                return None
            if response.status_code != 429 or attempt:
                return response
            self.report.rate_limited += 1
            retry = response.headers.get("retry-after") or response.headers.get("Retry-After")
            raw = retry[0] if isinstance(retry, list) else retry
            time.sleep(min(float(raw) if raw and str(raw).isdigit() else 1.0, RETRY_AFTER_CAP))
        return None

    def _fail(
        self, session: Session, case: Any, check: str, title: str, message: str, status: int | None
    ) -> None:
        record = FailureRecord(
            case.operation.label, check, title, message.strip()[:2000], status, _describe_case(case)
        )
        self.report.checks[session.target.name][check].failures.setdefault(record.key, record)

    def validate(self, case: Any, session: Session, response: Any) -> None:
        from schemathesis.core.failures import FailureGroup

        for name, check in self.checks.items():
            self.report.checks[session.target.name][name].examples += 1
            try:
                case.validate_response(response, checks=[check])
            except FailureGroup as group:
                for failure in group.exceptions:
                    self._fail(
                        session,
                        case,
                        name,
                        failure.title,
                        failure.message,
                        response.status_code,
                    )
            except AssertionError as failure:
                self._fail(session, case, name, type(failure).__name__, str(failure),
                           response.status_code)  # fmt: skip

    def run_case(self, case: Any) -> None:
        label = case.operation.label
        if label == BACKTEST_POST and any(
            self.report.backtests[s.target.name] >= MAX_BACKTESTS for s in self.sessions
        ):
            return
        answers = []
        for session in self.sessions:
            response = self.send(case, session)
            self.report.cases[session.target.name] += 1
            if response is None:
                return
            self.validate(case, session, response)
            if label == BACKTEST_POST and response.status_code == 202:
                self.report.backtests[session.target.name] += 1
            if label == f"POST {API}/auth/register" and response.status_code == 201:
                body = case.body if isinstance(case.body, dict) else {}
                if isinstance(body.get("email"), str) and isinstance(body.get("password"), str):
                    session.registered.append((body["email"], body["password"]))
            answers.append(response)
        if len(answers) != 2:
            return
        self.report.compared += 1
        found = compare(label, answers[0], answers[1])
        method, _, path = label.partition(" ")
        if found and write_of(method, path) is None and label != f"POST {API}/auth/login":
            # A live price moves every second: a read that agrees when sent again agreed.
            again = [self.send(case, s) for s in self.sessions]
            if again[0] is not None and again[1] is not None and not compare(label, *again):
                self.report.agreed_on_replay += 1
                return
        if found:
            self.report.disagreements.append(Disagreement(label, _describe_case(case), found))


def fuzz(
    targets: list[Target], examples: int, seed: int, progress: Progress | None = None
) -> FuzzReport:
    """Schemathesis on contract/openapi.json against the targets (both see the same cases)."""
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.core.result import Ok

    document = json.loads(OPENAPI.read_text(encoding="utf-8"))
    schema = schemathesis.openapi.from_path(str(OPENAPI))
    writes = all(t.writes for t in targets)
    report = FuzzReport(examples, seed, [t.name for t in targets])
    rng = random.Random(seed)
    own_user = (
        (f"contract-fuzz-{secrets.token_hex(6)}@example.com", secrets.token_urlsafe(18))
        if writes
        else None
    )
    sessions = [open_session(t, own_user, rng) for t in targets]
    for session in sessions:
        if session.authorization is None:
            report.notes.append(
                f"{session.target.name}: no token (set CONTRACT_SECRET_KEY or DEMO_PASSWORD); "
                "authenticated operations answer 401"
            )
    served = served_values(targets[0].url, rng)
    fuzzer = Fuzzer(sessions, report, secured_operations(document), rng)
    plan: list[tuple[str, list[Any]]] = []
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            report.notes.append(f"an operation of the schema cannot be fuzzed: {result.err()}")
            continue
        operation = result.ok()
        label = operation.label
        why = chosen(label, writes)
        if why is not None:
            report.left_out[label] = why
            continue
        count = min(examples, MAX_BACKTESTS) if label == BACKTEST_POST else examples
        cases = []
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            cases += generate_cases(operation, mode, count, seed)
        pins = served_pins(parameters(document, label), served)
        cases += served_cases(operation, pins, count, seed)
        report.operations.append(label)
        plan.append((label, cases))
    total = sum(len(cases) for _, cases in plan)
    task = progress.add_task("schemathesis", total=total) if progress is not None else None
    try:
        for label, cases in plan:
            if progress is not None and task is not None:
                progress.update(task, description=f"schemathesis {label}")
            for case in cases:
                fuzzer.run_case(case)
                if progress is not None and task is not None:
                    progress.advance(task)
    finally:
        for session in sessions:
            close_session(session, rng)
    return report


# --- reports --------------------------------------------------------------------------------


def write_fuzz_junit(report: FuzzReport, path: Path) -> None:
    """One testsuite per target (operation × check), plus one of disagreements for `both`."""
    root = ET.Element("testsuites", name="schemathesis")
    for target in report.targets:
        tallies = report.checks[target]
        suite = ET.SubElement(root, "testsuite", name=f"schemathesis-{target}")
        tests = failures = 0
        for operation in report.operations:
            for check in CHECK_NAMES:
                tests += 1
                case = ET.SubElement(
                    suite,
                    "testcase",
                    classname=f"schemathesis.{target}",
                    name=f"{operation} · {check}",
                )
                failed = [f for f in tallies[check].failures.values() if f.operation == operation]
                if failed:
                    failures += 1
                    failure = ET.SubElement(case, "failure", message=failed[0].title)
                    failure.text = "\n\n".join(
                        f"{f.title} (status {f.status})\n{f.request}\n{f.message}"
                        for f in failed[:10]
                    )
        for operation, why in report.left_out.items():
            tests += 1
            case = ET.SubElement(
                suite, "testcase", classname=f"schemathesis.{target}", name=operation
            )
            ET.SubElement(case, "skipped", message=why)
        suite.set("tests", str(tests))
        suite.set("failures", str(failures))
        suite.set("skipped", str(len(report.left_out)))
    if len(report.targets) == 2:
        suite = ET.SubElement(root, "testsuite", name="disagreements")
        suite.set("tests", str(len(report.operations)))
        failing = 0
        for operation in report.operations:
            case = ET.SubElement(suite, "testcase", classname="schemathesis.both", name=operation)
            found = [d for d in report.disagreements if d.operation == operation]
            if found:
                failing += 1
                failure = ET.SubElement(case, "failure", message=f"{len(found)} disagreements")
                failure.text = "\n\n".join(
                    f"{d.request}\n  " + "\n  ".join(d.differences) for d in found[:20]
                )
        suite.set("failures", str(failing))
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def suite_table(results: list[SuiteResult], targets: list[Target]) -> Table:
    table = Table(title="contract suite (tests/contract)", title_justify="left")
    for column in ("target", "passed", "failed", "errors", "skipped", "seconds", "writes"):
        table.add_column(column, justify="left" if column in ("target", "writes") else "right")
    policies = {t.name: t.policy for t in targets}
    for result in results:
        table.add_row(
            Text(result.target),
            str(result.passed),
            Text(str(result.failures), style="red" if result.failures else ""),
            Text(str(result.errors), style="red" if result.errors else ""),
            str(result.skipped),
            f"{result.seconds:.0f}",
            Text(policies.get(result.target, "")),
        )
    return table


def fuzz_table(report: FuzzReport) -> Table:
    table = Table(title="schemathesis", title_justify="left")
    table.add_column("check")
    for target in report.targets:
        table.add_column(f"{target}: examples / failures", justify="right")
    for check in CHECK_NAMES:
        cells: list[Text | str] = [check]
        for target in report.targets:
            tally = report.checks[target][check]
            failures = len(tally.failures)
            cells.append(
                Text(f"{tally.examples} / {failures}", style="red" if failures else "green")
            )
        table.add_row(*cells)
    table.add_row(
        "cases sent", *[str(report.cases.get(t, 0)) for t in report.targets], end_section=True
    )
    table.add_row(
        "operations fuzzed / left out",
        *[f"{len(report.operations)} / {len(report.left_out)}" for _ in report.targets],
    )
    if len(report.targets) == 2:
        shown = Text(
            f"{len(report.disagreements)} in {report.compared} compared "
            f"({report.agreed_on_replay} agreed when sent again)",
            style="red" if report.disagreements else "green",
        )
        table.add_row("disagreements", shown, "")
    return table


def print_findings(report: FuzzReport) -> None:
    for target in report.targets:
        shown = 0
        for check in CHECK_NAMES:
            for failure in report.checks[target][check].failures.values():
                if shown == 10:
                    break
                shown += 1
                first = failure.message.strip().splitlines()
                heading = (
                    f"✗ {target} {failure.operation} · {check}: {failure.title} "
                    f"(status {failure.status})"
                )
                out.print(Text(heading, style="red"))
                out.print(Text(f"    {failure.request}"))
                if first:
                    out.print(Text(f"    {first[0][:200]}"))
    for disagreement in report.disagreements[:20]:
        out.print(Text(f"≠ {disagreement.operation}: {disagreement.request}", style="red"))
        for line in disagreement.differences[:5]:
            out.print(Text(f"    {line}"))
    if len(report.disagreements) > 20:
        out.print(f"  … {len(report.disagreements) - 20} more in the JUnit XML")
    for note in report.notes:
        out.print(Text(f"! {note}", style="yellow"))


def _report_folder(settings: OpsSettings) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    folder = settings.reports_dir / f"contract-{stamp}-{secrets.token_hex(2)}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=out,
        transient=True,
    )


@dataclass(slots=True)
class Outcome:
    suites: list[SuiteResult] = field(default_factory=list)
    fuzz: FuzzReport | None = None

    def problems(self) -> list[str]:
        found = []
        for suite in self.suites:
            if not suite.ok:
                found.append(
                    f"suite on {suite.target}: {suite.failures} failed, {suite.errors} errors"
                )
        if self.fuzz is not None:
            for target in self.fuzz.targets:
                count = self.fuzz.failure_count(target)
                if count:
                    found.append(f"schemathesis on {target}: {count} distinct failures")
            if self.fuzz.disagreements:
                found.append(f"{len(self.fuzz.disagreements)} disagreements between the backends")
        return found


def contract_phase(run: Run, args: ContractArgs) -> str:
    """The body of `contract`: a one-line summary for the history, or a CommandError."""
    settings = run.settings
    if not (args.suite or args.fuzz):
        raise PreconditionError("--no-suite and --no-fuzz together leave nothing to run")
    targets = resolve_targets(settings, args)
    folder = _report_folder(settings)
    outcome = Outcome()
    for target in targets:
        out.print(Text(f"{target.name}: {target.url} ({target.backend}; {target.policy})"))
    if args.suite:
        for target in targets:
            out.print(f"running the contract suite against {target.name} …")
            result = run_suite(settings, target, folder)
            outcome.suites.append(result)
            for line in result.failed[:15]:
                out.print(Text(f"✗ {target.name} {line}", style="red"))
        out.print(suite_table(outcome.suites, targets))
    if args.fuzz:
        with _progress() as progress:
            outcome.fuzz = fuzz(targets, args.examples, args.seed, progress)
        write_fuzz_junit(outcome.fuzz, folder / "schemathesis.xml")
        out.print(
            f"schemathesis on contract/openapi.json: seed {args.seed}, up to {args.examples} "
            "examples per operation and mode (positive, negative)"
        )
        out.print(fuzz_table(outcome.fuzz))
        print_findings(outcome.fuzz)
    problems = outcome.problems()
    _save(outcome, folder)
    _record(run, targets, outcome, folder, args)
    out.print(f"reports: {_shown(settings, folder)}/ (JUnit XML, logs, summary.json)")
    names = " and ".join(t.name for t in targets)
    if problems:
        replay = (
            f"./start.sh contract --target {args.target} --seed {args.seed} "
            f"--examples {args.examples}"
        )
        raise GateFailedError(
            f"the contract does not hold on {names}: " + "; ".join(problems),
            f"replay with {replay}; see {_shown(settings, folder)}/",
        )
    summary = f"{names}: contract holds"
    if outcome.fuzz is not None:
        cases = sum(outcome.fuzz.cases.values())
        summary += f" ({cases} schemathesis cases, seed {args.seed})"
    out.print(f"[green]✓[/] {summary}")
    loadable = args.target if args.target in ("mock", "prod", "both") else "mock"
    _next(f"./start.sh loadtest --target {loadable}", "./start.sh status")
    return summary


def _save(outcome: Outcome, folder: Path) -> None:
    document: dict[str, Any] = {
        "suites": [
            {
                "target": s.target,
                "passed": s.passed,
                "failed": s.failures,
                "errors": s.errors,
                "skipped": s.skipped,
                "seconds": s.seconds,
                "junit": s.junit.name,
            }
            for s in outcome.suites
        ]
    }
    if outcome.fuzz is not None:
        fuzz_report = outcome.fuzz
        document["schemathesis"] = {
            "seed": fuzz_report.seed,
            "examples": fuzz_report.examples,
            "cases": fuzz_report.cases,
            "operations": fuzz_report.operations,
            "left_out": fuzz_report.left_out,
            "checks": {
                target: {
                    check: {"examples": tally.examples, "failures": len(tally.failures)}
                    for check, tally in checks.items()
                }
                for target, checks in fuzz_report.checks.items()
            },
            "failures": [
                {"target": target, **dataclasses.asdict(f)}
                for target, checks in fuzz_report.checks.items()
                for tally in checks.values()
                for f in tally.failures.values()
            ],
            "disagreements": [
                {"operation": d.operation, "request": d.request, "differences": d.differences}
                for d in fuzz_report.disagreements
            ],
            "compared": fuzz_report.compared,
            "rate_limited": fuzz_report.rate_limited,
        }
    (folder / "summary.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def _record(
    run: Run, targets: list[Target], outcome: Outcome, folder: Path, args: ContractArgs
) -> None:
    def change(state: CutoverState) -> None:
        for target in targets:
            suite = next((s for s in outcome.suites if s.target == target.name), None)
            figures: dict[str, Any] = {"url": target.url, "report": _shown(run.settings, folder)}
            problems = []
            if suite is not None:
                figures["suite"] = {
                    "passed": suite.passed,
                    "failed": suite.failures + suite.errors,
                    "skipped": suite.skipped,
                }
                if not suite.ok:
                    problems.append(f"suite: {suite.failures + suite.errors} failed")
            if outcome.fuzz is not None:
                count = outcome.fuzz.failure_count(target.name)
                figures["schemathesis"] = {
                    "cases": outcome.fuzz.cases.get(target.name, 0),
                    "failures": count,
                    "seed": args.seed,
                    "examples": args.examples,
                }
                if count:
                    problems.append(f"schemathesis: {count} failures")
            detail = "; ".join(problems) or "contract holds"
            state.gates[f"contract-{target.name}"] = gate_record(not problems, detail, **figures)
        if len(targets) == 2 and outcome.fuzz is not None:
            count = len(outcome.fuzz.disagreements)
            state.gates["contract-both"] = gate_record(
                count == 0,
                f"{count} disagreements in {outcome.fuzz.compared} compared answers",
                disagreements=count,
            )

    run.update(change)
