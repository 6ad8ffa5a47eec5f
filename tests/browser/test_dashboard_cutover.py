"""The reference dashboard against production, then through the gateway while an operator steps
prod's share by hand 0 → 5 → 25 → 50 → 100 → 0 (PUT /admin/mode): every request answered, the
live quote keeps updating across the socket moves (1012), the page never shows an error.

The page's requests and failures during the stepped cutover are printed and written to
reports/browser-cutover.json next to the screenshots.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from ops import databases
from ops.gateway.routing import bucket_of
from ops.services import free_port
from tests.backend.processes import Running, backend, backend_env
from tests.backend.stores import fill, fresh_database
from tests.browser.conftest import dashboard_state, open_dashboard, wait_for_live_updates, watch
from tests.browser.servers import frontend, gateway, origins, set_weight, start_mock
from tests.gateway.processes import Proc

SYMBOLS = ("AAPL", "MSFT", "SPY")
STEPS = (0, 5, 25, 50, 100, 0)
HOLD_MS = 4000  # each step is held this long, the page polling its quote every 2 s meanwhile


@pytest.fixture(scope="module")
def frontend_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def prod(postgres_server_url: str, redis_url: str, frontend_port: int) -> Iterator[Running]:
    """The production backend over a small load (three symbols, daily and 5-minute bars)."""
    url, name = fresh_database(postgres_server_url, prefix="cutover_browser")
    try:
        fill(url, SYMBOLS)
        env = backend_env(url, redis_url, CORS_ORIGINS=origins(frontend_port))
        with backend(env) as running:
            yield running
    finally:
        databases.drop_database(postgres_server_url, name)


@pytest.fixture(scope="module")
def mock(frontend_port: int) -> Iterator[Proc]:
    proc = start_mock(frontend_port)
    try:
        yield proc
    finally:
        proc.stop()


def wait_for_chart(page: Page, symbol: str) -> None:
    page.wait_for_function(
        "s => document.getElementById('chart-caption').textContent.startsWith(s + ' ')",
        arg=symbol,
        timeout=30_000,
    )


def test_the_dashboard_loads_clean_against_production(
    page: Page, tmp_path: Path, prod: Running, frontend_port: int, screenshots: Path
) -> None:
    from ops.frontend_env import point_frontend

    env_file = tmp_path / "frontend.env"
    point_frontend(env_file, prod.url)
    with frontend(env_file, tmp_path / "var", frontend_port) as url:
        seen = watch(page)
        open_dashboard(page, f"{url}/?symbol=SPY")
        wait_for_chart(page, "SPY")
        wait_for_live_updates(page, 1)
        page.screenshot(path=screenshots / "dashboard-prod.png", full_page=True)

    assert seen.problems() == {"failed requests": [], "console errors": []}
    assert page.inner_text("#error-count") == "0"
    assert page.inner_text("#backend") == "production"
    assert page.inner_text("#ws-state") == "open · production"
    assert page.locator("#chart svg .candles rect").count() > 50
    assert page.locator("#signals tr").count() > 0
    assert page.locator("#opportunities tr").count() > 0
    assert seen.api_requests(prod.url) >= 6


def test_the_dashboard_rides_a_stepped_cutover_through_the_gateway(
    page: Page,
    tmp_path: Path,
    mock: Proc,
    prod: Running,
    frontend_port: int,
    screenshots: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    var_dir, env_file = tmp_path / "var", tmp_path / "frontend.env"
    # Chromium sends no cookie to the gateway (cross-origin fetches without credentials), so
    # the gateway buckets this page by its address.
    bucket = bucket_of("addr:127.0.0.1")
    stages: list[dict[str, Any]] = []
    with (
        gateway(mock.url, prod.url, var_dir, env_file) as gw,
        frontend(env_file, var_dir, frontend_port) as url,
    ):
        seen = watch(page)
        open_dashboard(page, f"{url}/?symbol=AAPL&refresh=2")
        wait_for_chart(page, "AAPL")
        updates = wait_for_live_updates(page, 0)
        for index, weight in enumerate(STEPS):
            set_weight(gw, weight)
            expected = "production" if bucket < weight else "mock"
            symbol = SYMBOLS[(index + 1) % len(SYMBOLS)]
            page.select_option("#symbol", symbol)  # what a user does: a full set of reads
            wait_for_chart(page, symbol)
            page.wait_for_function(
                "b => document.getElementById('ws-state').textContent === 'open · ' + b",
                arg=expected,
                timeout=20_000,
            )
            updates = wait_for_live_updates(page, updates)  # live again after any move
            page.wait_for_timeout(HOLD_MS)
            page.wait_for_function(
                "b => document.getElementById('backend').dataset.backend === b", arg=expected
            )
            state = dashboard_state(page)
            stages.append(
                {
                    "weight": weight,
                    "backend": state["backend"],
                    "via": state["via"],
                    "live": state["live"]["backend"],
                    "quote_updates": state["quoteUpdates"],
                    "requests": len(seen.requests),
                    "failed": len(seen.failed),
                }
            )
            shot = screenshots / f"dashboard-gateway-{index}-weight-{weight}.png"
            page.screenshot(path=shot, full_page=True)
        final = dashboard_state(page)
        shown_errors = page.inner_text("#error-count")

    api = seen.api_requests(gw.url)
    figures = {
        "bucket": bucket,
        "steps": list(STEPS),
        "page_requests": len(seen.requests),
        "api_requests": api,
        "failed_requests": len(seen.failed),
        "console_errors": len(seen.console_errors),
        "page_counted_requests": final["requests"],
        "page_shown_errors": final["failures"],
        "socket_connects": final["live"]["connects"],
        "socket_moves_1012": final["live"]["closes"].get("1012", 0),
        "live_quote_updates": final["quoteUpdates"],
        "stages": stages,
    }
    (screenshots.parent / "browser-cutover.json").write_text(json.dumps(figures, indent=2))
    with capsys.disabled():
        print(
            f"\nstepped cutover {' → '.join(map(str, STEPS))} %: the page made "
            f"{figures['page_requests']} requests ({api} to the API through the gateway), "
            f"{figures['failed_requests']} failed; {figures['console_errors']} console errors; "
            f"socket moved {figures['socket_moves_1012']}× (1012), "
            f"{figures['live_quote_updates']} live quote updates"
        )

    assert seen.problems() == {"failed requests": [], "console errors": []}
    assert final["failures"] == 0
    assert final["errors"] == []
    assert shown_errors == "0"
    # The page moved to prod when the weight passed its bucket and back at 0, never stopping.
    assert figures["socket_moves_1012"] >= 2
    assert [stage["live"] for stage in stages] == [
        "production" if bucket < weight else "mock" for weight in STEPS
    ]
    assert stages[4]["backend"] == "production"
    assert stages[4]["via"] == "prod"
    assert stages[-1]["backend"] == "mock"
    assert stages[-1]["via"] == "mock"
    assert all(b["quote_updates"] > a["quote_updates"] for a, b in itertools.pairwise(stages))
    assert api >= 6 * len(STEPS)
