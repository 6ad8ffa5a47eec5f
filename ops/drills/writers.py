"""Writers of a drill: the demo user's watchlist PUTs through the gateway from a thread, every
acknowledged write recorded in order, so a drill can read each one back at the end."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx

from contract.universe import SYMBOLS as UNIVERSE_SYMBOLS
from ops.drills.stack import API

SYMBOLS = UNIVERSE_SYMBOLS[:16]


@dataclass
class ListWriter:
    """PUTs `prefix-N` (a new list each time) and `prefix-last` (one list rewritten each time,
    whose final value shows whether the writes arrived in order) every `pause` seconds."""

    base: str
    token: str
    prefix: str
    pause: float = 0.1
    lists: dict[str, list[str]] = field(default_factory=dict)
    acked_at: dict[str, float] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def last(self) -> str:
        return f"{self.prefix}-last"

    def start(self) -> ListWriter:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _put(self, client: httpx.Client, name: str, symbols: list[str]) -> None:
        try:
            answer = client.put(f"{API}/watchlists/{name}", json={"symbols": symbols})
        except httpx.HTTPError as exc:
            self.failed.append(f"PUT {name}: {type(exc).__name__}")
            return
        if answer.status_code in (200, 201):
            self.lists[name] = symbols
            self.acked_at[name] = time.monotonic()
        else:
            upstream = answer.headers.get("x-gateway-upstream", "?")
            self.failed.append(
                f"PUT {name}: {answer.status_code} from {upstream} {answer.text[:120]}"
            )

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        n = 0
        with httpx.Client(base_url=self.base, timeout=15, headers=headers) as client:
            while not self._stop.is_set():
                n += 1
                # The n-th value: the symbols of n's binary digits, unique for every n.
                symbols = [s for bit, s in enumerate(SYMBOLS) if n >> bit & 1]
                self._put(client, f"{self.prefix}-{n}", symbols)
                self._put(client, self.last, symbols)
                time.sleep(self.pause)

    def missing(self, base: str, since: float = 0.0) -> list[str]:
        """Acknowledged lists (since `since`) that `base` does not hold as acknowledged."""
        headers = {"Authorization": f"Bearer {self.token}"}
        found = []
        with httpx.Client(base_url=base, timeout=15, headers=headers) as client:
            for name, symbols in list(self.lists.items()):
                if self.acked_at[name] < since:
                    continue
                answer = client.get(f"{API}/watchlists/{name}")
                if answer.status_code != 200:
                    found.append(f"{name}: {answer.status_code}")
                elif answer.json().get("symbols") != symbols:
                    found.append(f"{name}: {answer.json().get('symbols')} != {symbols}")
        return found
