"""The reference dashboard against the mock: it loads clean from both origins, follows a
rewritten env file, and shows the failures when its backend is stopped without a rollback (the
check that the other tests' "0 failed requests" can fail)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page

from ops.frontend_env import point_frontend
from ops.services import free_port
from tests.browser.conftest import dashboard_state, open_dashboard, wait_for_live_updates, watch
from tests.browser.servers import frontend, start_mock
from tests.gateway.processes import Proc


@pytest.fixture(scope="module")
def frontend_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def mocks(frontend_port: int) -> Iterator[tuple[Proc, Proc]]:
    first = start_mock(frontend_port)
    try:
        second = start_mock(frontend_port)
    except BaseException:
        first.stop()
        raise
    try:
        yield first, second
    finally:
        second.stop()
        first.stop()


@pytest.fixture
def dashboard(
    tmp_path: Path, frontend_port: int, mocks: tuple[Proc, Proc]
) -> Iterator[tuple[str, Path]]:
    env_file = tmp_path / "frontend.env"
    point_frontend(env_file, mocks[0].url)
    with frontend(env_file, tmp_path / "var", frontend_port) as url:
        yield url, env_file


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_dashboard_loads_clean_against_the_mock(
    page: Page, dashboard: tuple[str, Path], mocks: tuple[Proc, Proc], screenshots: Path, host: str
) -> None:
    url = dashboard[0].replace("127.0.0.1", host)
    seen = watch(page)
    open_dashboard(page, f"{url}/?symbol=MSFT")
    page.wait_for_function("Number(document.getElementById('chart').dataset.candles) > 50")
    wait_for_live_updates(page, 1)

    assert seen.problems() == {"failed requests": [], "console errors": []}
    assert page.inner_text("#error-count") == "0"
    assert page.inner_text("#backend") == "mock"
    assert page.get_attribute("#ws-state", "data-state") == "open"
    assert page.inner_text("#quote-symbol") == "MSFT"
    assert page.locator("#signals tr").count() > 0
    assert page.locator("#opportunities tr").count() == 5
    assert page.locator("#chart svg .candles rect").count() > 50
    assert seen.api_requests(mocks[0].url) >= 6  # symbols, quote, history, indicators, ...
    page.screenshot(path=screenshots / f"dashboard-mock-{host}.png", full_page=True)


def test_a_rewritten_env_file_moves_the_page_to_the_new_backend(
    page: Page, dashboard: tuple[str, Path], mocks: tuple[Proc, Proc]
) -> None:
    url, env_file = dashboard
    seen = watch(page)
    open_dashboard(page, url)
    assert mocks[0].url in page.inner_text("#api-url")

    point_frontend(env_file, mocks[1].url)
    open_dashboard(page, url)  # the next page load reads the rewritten file
    wait_for_live_updates(page, 0)
    assert mocks[1].url in page.inner_text("#api-url")
    assert seen.api_requests(mocks[1].url) >= 6
    assert any(mocks[1].url.replace("http", "ws") in socket for socket in seen.sockets)
    assert seen.problems() == {"failed requests": [], "console errors": []}


def test_a_backend_stopped_without_a_rollback_shows_the_failed_requests(
    page: Page, tmp_path: Path, frontend_port: int, screenshots: Path
) -> None:
    doomed = start_mock(frontend_port)
    env_file = tmp_path / "frontend.env"
    point_frontend(env_file, doomed.url)
    try:
        with frontend(env_file, tmp_path / "var", frontend_port) as url:
            seen = watch(page)
            open_dashboard(page, f"{url}/?refresh=1")
            wait_for_live_updates(page, 0)
            assert seen.failed == []

            doomed.stop()  # no rollback: nothing moves the page elsewhere
            page.wait_for_function(
                "dashboard.monitor.errors.filter(e => e.includes('no answer')).length >= 2",
                timeout=20_000,
            )
            page.wait_for_selector("#error-panel.has-errors")
            page.screenshot(path=screenshots / "dashboard-backend-stopped.png", full_page=True)
    finally:
        doomed.stop()

    state = dashboard_state(page)
    assert state["failures"] >= 2
    assert any("no answer" in error for error in state["errors"])
    assert len(seen.failed) >= 2
    assert seen.console_errors  # Chromium logs each refused connection
    assert page.get_attribute("#ws-state", "data-state") in ("reconnecting", "connecting")
    assert int(page.inner_text("#error-count")) >= 2
