"""The shadow differ: copies of reads go to the candidate, answers meet here as field trees.

For the operator's gate and the report: per route template, "N differing of M" with a tree of
which field paths differ how often, noise measured the Diffy way (a sample of reads is sent a
second time to the primary; a path that differs between primary and primary is noise for that
route), ignore rules from `ops/shadow-ignore.toml` (each with its reason), and a few samples
with secrets redacted. A slow candidate never slows the primary: copies wait in a bounded
queue, are dropped (and counted) when it is full, and each copy has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import math
import random
import re
import tomllib
import urllib.parse
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ops.gateway.admin import GatewayMetrics
from ops.gateway.routing import Upstream

# Headers that differ by nature between two backends or two answers; never compared.
DEFAULT_HEADER_IGNORES = (
    "date",
    "server",
    "x-request-id",
    "x-backend",
    "x-worker",
    "ratelimit-*",
    # The body is compared itself; its length follows from it.
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
)
REDACTED = "[redacted]"
SECRET_NAME = re.compile(r"token|password|passwd|secret|authorization|cookie|api[_-]?key", re.I)
AUTH_ROUTES = "/api/v1/auth"
SAMPLE_BODY_CHARS = 4000
_MISSING = object()
MIN_NOISE_CHECKS = 10

Kind = Literal["changed", "missing", "extra"]
Verdict = Literal["pass", "fail", "not enough data"]


class IgnoreFileError(Exception):
    """The ignore file is malformed; the message says which rule and why."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One line of `shadow-ignore.toml`: where it applies and what it tolerates, with why.

    With neither tolerance nor `unordered`, the field is ignored; with `tolerance` (absolute) or
    `relative_tolerance` (a fraction of the larger value), numbers within it count as equal;
    with `unordered`, the array is compared as a multiset.
    """

    route: str
    field: str
    reason: str
    tolerance: float | None = None
    unordered: bool = False
    relative_tolerance: float | None = None

    def applies(self, route: str, path: str) -> bool:
        return fnmatch.fnmatchcase(route, self.route) and fnmatchcase_path(path, self.field)

    @property
    def ignores(self) -> bool:
        return self.tolerance is None and self.relative_tolerance is None and not self.unordered

    def allowance(self, left: float, right: float) -> float:
        """How far apart two numbers may be under this rule."""
        allowed = self.tolerance or 0.0
        if self.relative_tolerance is not None:
            allowed = max(allowed, self.relative_tolerance * max(abs(left), abs(right)))
        return allowed


def fnmatchcase_path(path: str, pattern: str) -> bool:
    # `[*]` in a pattern means "any index", not a character class.
    return fnmatch.fnmatchcase(path.replace("[*]", "[]"), pattern.replace("[*]", "[[][]]"))


def load_rules(path: Path) -> list[Rule]:
    """The rules of an ignore file; IgnoreFileError for a rule without a reason or too broad."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except tomllib.TOMLDecodeError as exc:
        raise IgnoreFileError(f"{path}: {exc}") from None
    rules = []
    for index, raw in enumerate(document.get("rule", []), start=1):
        if not isinstance(raw, dict):
            raise IgnoreFileError(f"{path}: rule {index} is not a table")
        route, fields, reason = raw.get("route"), raw.get("field"), raw.get("reason")
        # `field` is one glob or a list of them sharing the rule's reason.
        globs = [fields] if isinstance(fields, str) else fields
        if (
            not isinstance(route, str)
            or not isinstance(globs, list)
            or not all(isinstance(g, str) for g in globs)
        ):
            raise IgnoreFileError(f"{path}: rule {index} needs `route` and `field`")
        if not isinstance(reason, str) or not reason.strip():
            raise IgnoreFileError(f"{path}: rule {index} ({fields}) has no `reason`")
        numbers: dict[str, float | None] = {}
        for name in ("tolerance", "relative_tolerance"):
            value = raw.get(name)
            if value is not None and (not isinstance(value, int | float) or value < 0):
                raise IgnoreFileError(f"{path}: rule {index}: `{name}` must be a number ≥ 0")
            numbers[name] = None if value is None else float(value)
        for field_glob in globs:
            if field_glob in ("*", "body", "body*", "body.*", "**"):
                raise IgnoreFileError(f"{path}: rule {index} ignores the whole answer; be specific")
            rules.append(
                Rule(
                    route=route,
                    field=field_glob,
                    reason=reason.strip(),
                    tolerance=numbers["tolerance"],
                    unordered=bool(raw.get("unordered", False)),
                    relative_tolerance=numbers["relative_tolerance"],
                )
            )
    return rules


@dataclass(frozen=True, slots=True)
class RequestCopy:
    """A request as the gateway forwarded it (the path includes the query string)."""

    method: str
    path: str
    route: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class Answer:
    """An upstream's answer: status, headers (lower-case names) and body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def normalise(path: str) -> str:
    """A concrete field path with every array index as `[*]`, for counting per field."""
    return re.sub(r"\[\d+\]", "[*]", path)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def field_tree(answer: Answer, route: str, rules: list[Rule]) -> dict[str, Any]:
    """The answer as flat `path → leaf`: `status`, `headers.NAME`, `body...` (parsed JSON)."""
    leaves: dict[str, Any] = {"status": answer.status}
    for name, value in answer.headers:
        if not any(fnmatch.fnmatchcase(name, glob) for glob in DEFAULT_HEADER_IGNORES):
            leaves[f"headers.{name}"] = value
    try:
        body = json.loads(answer.body) if answer.body else None
    except ValueError:
        leaves["body"] = answer.body.decode(errors="replace")
        return leaves
    unordered = [r for r in rules if r.unordered and fnmatch.fnmatchcase(route, r.route)]
    _flatten(body, "body", leaves, unordered)
    return leaves


def _flatten(value: Any, path: str, out: dict[str, Any], unordered: list[Rule]) -> None:
    if isinstance(value, dict):
        if not value:
            out[path] = {}
        for key, item in value.items():
            _flatten(item, f"{path}.{key}", out, unordered)
    elif isinstance(value, list):
        if not value:
            out[path] = []
        if any(fnmatchcase_path(normalise(path), rule.field) for rule in unordered):
            value = sorted(value, key=_canonical)
        for index, item in enumerate(value):
            _flatten(item, f"{path}[{index}]", out, unordered)
    else:
        out[path] = value


def _equal(left: Any, right: Any, tolerant: list[Rule]) -> bool:
    if left == right and type(left) is type(right):
        return True
    numbers = (int, float)
    if (
        tolerant
        and isinstance(left, numbers)
        and isinstance(right, numbers)
        and not isinstance(left, bool)
        and not isinstance(right, bool)
    ):
        allowed = max(rule.allowance(left, right) for rule in tolerant)
        return math.isclose(left, right, rel_tol=0.0, abs_tol=allowed + 1e-12)
    # 1 and 1.0 are the same JSON number.
    return (
        isinstance(left, numbers)
        and isinstance(right, numbers)
        and not isinstance(left, bool)
        and not isinstance(right, bool)
        and left == right
    )


def differences(
    primary: Answer, candidate: Answer, route: str, rules: list[Rule]
) -> dict[str, Kind]:
    """The normalised field paths that differ between two answers (ignored ones left out)."""
    left = field_tree(primary, route, rules)
    right = field_tree(candidate, route, rules)
    found: dict[str, Kind] = {}
    # The rules that apply, per normalised path: a list's items share one (fnmatch is costly).
    rules_for: dict[str, list[Rule]] = {}
    for path in left.keys() | right.keys():
        key = normalise(path)
        matching = rules_for.get(key)
        if matching is None:
            matching = rules_for[key] = [rule for rule in rules if rule.applies(route, key)]
        if any(rule.ignores for rule in matching):
            continue
        a, b = left.get(path, _MISSING), right.get(path, _MISSING)
        kind: Kind
        if a is _MISSING:
            kind = "extra"
        elif b is _MISSING:
            kind = "missing"
        else:
            tolerant = [r for r in matching if not r.ignores and not r.unordered]
            if _equal(a, b, tolerant):
                continue
            kind = "changed"
        found.setdefault(key, kind)
    return found


# --- redaction --------------------------------------------------------------------------------


def redact_value(value: Any) -> Any:
    """A JSON value with every field named like a secret replaced."""
    if isinstance(value, dict):
        return {
            key: REDACTED if SECRET_NAME.search(str(key)) else redact_value(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact_value(item) for item in value]
    return value


def redact_headers(headers: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return {name: REDACTED if SECRET_NAME.search(name) else value for name, value in headers}


def redact_path(path: str) -> str:
    base, sep, query = path.partition("?")
    if not sep:
        return path
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    cleaned = [(k, REDACTED if SECRET_NAME.search(k) else v) for k, v in pairs]
    return f"{base}?{urllib.parse.urlencode(cleaned, safe='[]')}"


def redact_body(body: bytes, route: str) -> Any:
    if not body:
        return None
    if route.startswith(AUTH_ROUTES):
        return REDACTED
    try:
        return redact_value(json.loads(body))
    except ValueError:
        return body[:SAMPLE_BODY_CHARS].decode(errors="replace")


def sample_of(
    request: RequestCopy, primary: Answer, candidate: Answer, diff: dict[str, Kind]
) -> dict[str, Any]:
    """A sample for the report: request and both answers, secrets redacted."""

    def answer(item: Answer) -> dict[str, Any]:
        return {
            "status": item.status,
            "headers": redact_headers(item.headers),
            "body": redact_body(item.body, request.route),
        }

    return {
        "request": {
            "method": request.method,
            "path": redact_path(request.path),
            "headers": redact_headers(request.headers),
            "body": redact_body(request.body, request.route),
        },
        "primary": answer(primary),
        "candidate": answer(candidate),
        "differences": dict(sorted(diff.items())),
    }


# --- per-route statistics ---------------------------------------------------------------------


@dataclass(slots=True)
class RouteStats:
    """What the differ knows of one route template."""

    compared: int = 0
    # How many compared requests had exactly this set of differing paths.
    outcomes: Counter[frozenset[str]] = field(default_factory=Counter)
    paths: dict[str, Counter[str]] = field(default_factory=dict)
    noise: set[str] = field(default_factory=set)
    noise_checks: int = 0
    samples: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=5))

    def differing(self) -> int:
        """Compared requests with at least one non-noise, non-ignored difference."""
        return sum(n for paths, n in self.outcomes.items() if paths - self.noise)

    def rate(self) -> float:
        return self.differing() / self.compared if self.compared else 0.0


@dataclass(frozen=True, slots=True)
class RouteRow:
    """One line of the diff table."""

    route: str
    compared: int
    differing: int
    noise_fields: list[str]
    rate: float
    verdict: Verdict
    fields: dict[str, dict[str, int]]


def verdict(compared: int, rate: float, min_samples: int, threshold: float) -> Verdict:
    if compared < min_samples:
        return "not enough data"
    return "pass" if rate <= threshold else "fail"


Send = Callable[[Upstream, RequestCopy], Awaitable[Answer]]


@dataclass(frozen=True, slots=True)
class ShadowJob:
    """A read to copy. Queued before the primary is asked, so that the candidate (and the
    primary's second answer, for noise) are asked at the same moment: live prices change each
    second, and a copy sent after the primary answered would measure the clock, not the code.
    `answer` is the primary's answer, set by the proxy (cancelled when it had none)."""

    request: RequestCopy
    primary: Upstream
    candidate: Upstream
    answer: asyncio.Future[Answer]


class Differ:
    """Compares the candidate's answers with the primary's, off the primary's path."""

    def __init__(
        self,
        rules: list[Rule],
        send: Send,
        metrics: GatewayMetrics,
        *,
        queue_size: int = 500,
        workers: int = 8,
        timeout: float = 5.0,
        noise_share: float = 0.1,
        max_samples: int = 5,
        rng: random.Random | None = None,
    ) -> None:
        self.rules = rules
        self.send = send
        self.metrics = metrics
        self.timeout = timeout
        self.noise_share = noise_share
        self.max_samples = max_samples
        self.rng = rng or random.Random()
        self.routes: dict[str, RouteStats] = {}
        self.sent = 0
        self.dropped = 0
        self.failed = 0
        self._queue: asyncio.Queue[ShadowJob] = asyncio.Queue(maxsize=queue_size)
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def reset(self) -> None:
        """Forget every comparison (a new shadow run starts from zero)."""
        self.routes.clear()
        self.sent = self.dropped = self.failed = 0

    def offer(self, job: ShadowJob) -> bool:
        """Queue a copy; never waits. False (and counted as dropped) when the queue is full."""
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.dropped += 1
            self.metrics.shadow_copies.labels(outcome="dropped").inc()
            return False
        return True

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._handle(job)
            except Exception:  # a broken copy must not stop the differ
                self.failed += 1
                self.metrics.shadow_copies.labels(outcome="failed").inc()
            finally:
                self._queue.task_done()

    async def _ask(self, upstream: Upstream, request: RequestCopy) -> Answer | None:
        try:
            return await asyncio.wait_for(self.send(upstream, request), self.timeout)
        except (TimeoutError, OSError):
            return None
        except Exception:  # httpx errors: the copy is lost, the primary is not
            return None

    async def _handle(self, job: ShadowJob) -> None:
        asked = asyncio.create_task(self._ask(job.candidate, job.request))
        again = None
        # Every route's first reads are all measured for noise, so a route is never judged
        # before its noise is known; then a sample.
        checks = (
            self.routes[job.request.route].noise_checks if job.request.route in self.routes else 0
        )
        if checks < MIN_NOISE_CHECKS or self.rng.random() < self.noise_share:
            again = asyncio.create_task(self._ask(job.primary, job.request))
        try:
            primary = await asyncio.wait_for(asyncio.shield(job.answer), self.timeout)
        except TimeoutError:
            primary = None
        except asyncio.CancelledError:
            # The proxy cancels the answer when it had none; the worker's own cancellation
            # (Differ.stop) must go through, or stop() waits for it forever.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            primary = None
        candidate = await asked
        second = await again if again is not None else None
        if primary is None:
            return  # the primary had no answer: nothing to compare, nothing sent for it
        if candidate is None:
            self.dropped += 1
            self.metrics.shadow_copies.labels(outcome="dropped").inc()
            return
        self.sent += 1
        self.metrics.shadow_copies.labels(outcome="sent").inc()
        if second is not None:
            self.record_noise(job.request.route, primary, second)
        self.record(job.request, primary, candidate)

    def _stats(self, route: str) -> RouteStats:
        stats = self.routes.get(route)
        if stats is None:
            stats = self.routes[route] = RouteStats(samples=deque(maxlen=self.max_samples))
        return stats

    def record_noise(self, route: str, first: Answer, second: Answer) -> set[str]:
        """Primary against primary: whatever differs is noise for this route."""
        stats = self._stats(route)
        stats.noise_checks += 1
        noisy = set(differences(first, second, route, self.rules))
        stats.noise |= noisy
        return noisy

    def record(self, request: RequestCopy, primary: Answer, candidate: Answer) -> dict[str, Kind]:
        """Compare one pair of answers and count it for the route."""
        stats = self._stats(request.route)
        diff = differences(primary, candidate, request.route, self.rules)
        stats.compared += 1
        stats.outcomes[frozenset(diff)] += 1
        for path, kind in diff.items():
            stats.paths.setdefault(path, Counter())[kind] += 1
        outcome = "match" if not diff else "differ"
        self.metrics.diffs.labels(route=request.route, outcome=outcome).inc()
        if diff:
            stats.samples.append(sample_of(request, primary, candidate, diff))
        return diff

    def table(self, min_samples: int = 50, threshold: float = 0.01) -> list[RouteRow]:
        """The diff table, one row per route, routes in name order."""
        rows = []
        for route, stats in sorted(self.routes.items()):
            rate = stats.rate()
            rows.append(
                RouteRow(
                    route=route,
                    compared=stats.compared,
                    differing=stats.differing(),
                    noise_fields=sorted(stats.noise),
                    rate=round(rate, 4),
                    verdict=verdict(stats.compared, rate, min_samples, threshold),
                    fields={path: dict(kinds) for path, kinds in sorted(stats.paths.items())},
                )
            )
        return rows

    def document(self, min_samples: int = 50, threshold: float = 0.01) -> dict[str, Any]:
        """What GET /admin/diffs answers: the table, copies sent/dropped, samples."""
        return {
            "copies": {"sent": self.sent, "dropped": self.dropped, "failed": self.failed},
            "queued": self._queue.qsize(),
            "min_samples": min_samples,
            "threshold": threshold,
            "rules": [{"route": r.route, "field": r.field, "reason": r.reason} for r in self.rules],
            "routes": [
                {
                    "route": row.route,
                    "compared": row.compared,
                    "differing": row.differing,
                    "noise_fields": row.noise_fields,
                    "noise_checks": self.routes[row.route].noise_checks,
                    "rate": row.rate,
                    "verdict": row.verdict,
                    "fields": row.fields,
                    "samples": list(self.routes[row.route].samples),
                }
                for row in self.table(min_samples, threshold)
            ],
        }
