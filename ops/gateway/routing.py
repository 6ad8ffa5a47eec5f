"""Where a request goes: the gateway's mode, the client's bucket and the route's template.

Modes: `direct` sends everything to the primary; `shadow` answers from the primary and copies
reads to the other backend (the candidate); `canary` sends a client to prod when its bucket is
below the weight. The canary controller (a later slice) drives the weight through
`RoutingController.set`, which persists every change to the cutover state file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from ops.state import CutoverState, StateStore

Mode = Literal["direct", "shadow", "canary"]
Upstream = Literal["mock", "prod"]
MODES: tuple[Mode, ...] = get_args(Mode)
UPSTREAMS: tuple[Upstream, ...] = get_args(Upstream)

# Retried once on the other backend when the upstream connection fails; a POST never is.
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
CLIENT_COOKIE = "cutover_client"
OTHER_ROUTE = "other"

# Reads whose answer depends on per-user records. Registrations and user writes are mirrored
# (ops/gateway/writes.py), so the candidate knows the same users and these reads are compared.
USER_STATE_PREFIXES = ("/api/v1/auth", "/api/v1/watchlists", "/api/v1/backtests")
# The user-state reads shadow mode copies: plain GETs that change nothing. Everything else under
# the prefixes is a write (mirrored, never copied) or rotates tokens (login, refresh).
SHADOWED_USER_READS = frozenset(
    {
        "/api/v1/auth/me",
        "/api/v1/watchlists",
        "/api/v1/watchlists/{name}",
        "/api/v1/backtests",
        "/api/v1/backtests/{backtest_id}",
    }
)
# POST routes that only read (a batch of quotes): copied like a GET.
READ_POSTS = frozenset({"/api/v1/market-data/quotes"})


def other(upstream: Upstream) -> Upstream:
    return "prod" if upstream == "mock" else "mock"


@dataclass(frozen=True, slots=True)
class Routing:
    """The gateway's mode now. `weight` is prod's share in % (used in canary mode)."""

    mode: Mode = "direct"
    primary: Upstream = "mock"
    weight: int = 0

    def upstream_for(self, bucket: int) -> Upstream:
        """The backend that serves a client in `bucket` (0-99)."""
        if self.mode == "canary":
            return "prod" if bucket < self.weight else "mock"
        return self.primary

    @property
    def candidate(self) -> Upstream | None:
        """The backend that gets the copies in shadow mode."""
        return other(self.primary) if self.mode == "shadow" else None

    def state_mode(self) -> str:
        """How the state file records this: `mock`/`prod` (direct), `shadow`, `canary`.

        `shadow` means the mock answers and prod gets the copies (the cutover's direction);
        shadowing the other way round is recorded as `shadow:prod`.
        """
        if self.mode == "direct":
            return self.primary
        if self.mode == "shadow":
            return "shadow" if self.primary == "mock" else "shadow:prod"
        return "canary"

    @classmethod
    def from_state(cls, state: CutoverState) -> Routing:
        weight = max(0, min(100, state.weight))
        if state.mode == "prod":
            return cls("direct", "prod", weight)
        if state.mode == "shadow":
            return cls("shadow", "mock", weight)
        if state.mode == "shadow:prod":
            return cls("shadow", "prod", weight)
        if state.mode == "canary":
            return cls("canary", "mock", weight)
        return cls("direct", "mock", weight)


def bucket_of(key: str) -> int:
    """A stable bucket 0-99 for a client key (the same key always lands in the same bucket)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100


def token_subject(token: str) -> str | None:
    """The `sub` of a JWT, read without verifying it (the backends verify; this only buckets)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return str(sub) if isinstance(sub, str | int) and str(sub) else None


def cookie_value(cookie_header: str, name: str) -> str | None:
    for part in cookie_header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name and value:
            return value
    return None


@dataclass(frozen=True, slots=True)
class Client:
    """Who a request comes from, as far as bucketing cares. `cookie` is unset: set one."""

    key: str
    bucket: int
    address: str
    needs_cookie: bool


def identify(headers: Mapping[str, str], query_token: str | None, address: str) -> Client:
    """The client's key: its token subject, else the sticky cookie, else its address."""
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    sub = None
    if scheme.lower() == "bearer" and token.strip():
        sub = token_subject(token.strip())
    if sub is None and query_token:
        sub = token_subject(query_token)
    if sub is not None:
        return Client(f"sub:{sub}", bucket_of(f"sub:{sub}"), address, needs_cookie=False)
    cookie = cookie_value(headers.get("cookie", ""), CLIENT_COOKIE)
    if cookie is not None:
        return Client(f"cookie:{cookie}", bucket_of(f"cookie:{cookie}"), address, False)
    return Client(f"addr:{address}", bucket_of(f"addr:{address}"), address, needs_cookie=True)


class RouteTemplates:
    """Maps a path to its route template (`/api/v1/market-data/{symbol}`); literals win."""

    def __init__(self, templates: Iterable[str]) -> None:
        compiled: list[tuple[int, re.Pattern[str], str]] = []
        for template in templates:
            parts = template.strip("/").split("/")
            literals = sum(1 for p in parts if not p.startswith("{"))
            pattern = (
                "^/"
                + "/".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
                + "/?$"
            )
            compiled.append((literals, re.compile(pattern), template))
        # More literal segments first, so /signals/precise-options beats /signals/{symbol}.
        compiled.sort(key=lambda item: (-item[0], item[2]))
        self._compiled = compiled

    @classmethod
    def from_openapi(cls, path: Path) -> RouteTemplates:
        document = json.loads(path.read_text(encoding="utf-8"))
        return cls([*document.get("paths", {}), "/ws"])

    def template(self, path: str) -> str:
        for _, pattern, template in self._compiled:
            if pattern.match(path):
                return template
        return OTHER_ROUTE


def is_shadowed_read(method: str, template: str) -> bool:
    """Whether shadow mode copies this request to the candidate.

    Only reads: writes are mirrored synchronously instead (ops/gateway/writes.py); of the
    user-state routes only the GETs in SHADOWED_USER_READS.
    """
    if template in (OTHER_ROUTE, "/ws", "/api/v1/health", "/metrics"):
        return False
    if template.startswith(USER_STATE_PREFIXES):
        return method == "GET" and template in SHADOWED_USER_READS
    return method == "GET" or (method == "POST" and template in READ_POSTS)


Listener = Callable[[Routing, Routing], None]
# A guard sees (before, after) and answers why the change must not happen, or None.
Guard = Callable[[Routing, Routing], str | None]


class RoutingBlocked(Exception):  # noqa: N818 - the name the other modules agreed on
    """A routing change a guard refused (e.g. the outbox still holds writes); says why."""


def prod_share(routing: Routing) -> int:
    """The % of clients prod answers under `routing` (shadow copies do not count)."""
    if routing.mode == "canary":
        return routing.weight
    return 100 if routing.primary == "prod" else 0


class RoutingController:
    """Holds the routing, persists every change to the cutover state, tells listeners.

    Listeners (the socket tracker) learn of each change, e.g. to move WebSockets whose client
    now belongs to the other backend.
    """

    def __init__(self, store: StateStore | None) -> None:
        self.store = store
        self.routing = Routing.from_state(store.load()) if store is not None else Routing()
        self._listeners: list[Listener] = []
        self._guards: list[Guard] = []

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def add_guard(self, guard: Guard) -> None:
        self._guards.append(guard)

    def blocked_reason(self, mode: Mode, primary: Upstream, weight: int) -> str | None:
        """Why a guard would refuse this change now, or None when it would go through."""
        after = Routing(mode, primary, weight)
        for guard in self._guards:
            reason = guard(self.routing, after)
            if reason is not None:
                return reason
        return None

    def set(self, mode: Mode, primary: Upstream, weight: int, *, force: bool = False) -> Routing:
        """Change the routing now; persisted before any client sees it.

        RoutingBlocked when a guard objects, unless `force` (the operator's override).
        """
        if mode not in MODES or primary not in UPSTREAMS or not 0 <= weight <= 100:
            raise ValueError(f"bad routing: mode={mode!r} primary={primary!r} weight={weight!r}")
        if not force:
            reason = self.blocked_reason(mode, primary, weight)
            if reason is not None:
                raise RoutingBlocked(reason)
        before, after = self.routing, Routing(mode, primary, weight)
        if self.store is not None:

            def change(state: CutoverState) -> None:
                state.mode = after.state_mode()
                state.weight = after.weight

            self.store.update(change)
        self.routing = after
        for listener in self._listeners:
            listener(before, after)
        return after
