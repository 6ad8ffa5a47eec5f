"""Browser tests: Playwright for Python driving the system's Chromium (Debian's `chromium`
package), headless. Nothing here downloads a browser: `.ci/run` installs Chromium with apt.

`watch(page)` records what a user (and the browser's console) would see go wrong: requests that
got no answer or an HTTP error, console errors and uncaught exceptions. Screenshots go under
CUTOVER_VAR_DIR/reports/screenshots when that is set (the demo and report pick them up there),
else under the test's own var dir.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

from playwright.sync_api import Page, Request, Response, sync_playwright

CHROMIUM = Path(os.environ.get("BROWSER_TESTS_CHROMIUM", "/usr/bin/chromium"))
VIEWPORT = {"width": 1400, "height": 1000}


@dataclass
class Watch:
    """What went wrong on a page, as the browser saw it."""

    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)

    def on_request(self, request: Request) -> None:
        self.requests.append(f"{request.method} {request.url}")

    def on_failed(self, request: Request) -> None:
        self.failed.append(f"{request.method} {request.url}: {request.failure}")

    def on_response(self, response: Response) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.request.method} {response.url}: HTTP {response.status}")

    def api_requests(self, api_url: str) -> int:
        return sum(1 for line in self.requests if line.split(" ", 1)[1].startswith(api_url))

    def problems(self) -> dict[str, list[str]]:
        return {"failed requests": self.failed, "console errors": self.console_errors}


def watch(page: Page) -> Watch:
    seen = Watch()
    page.on("request", seen.on_request)
    page.on("requestfailed", seen.on_failed)
    page.on("response", seen.on_response)
    page.on(
        "console",
        lambda message: message.type == "error" and seen.console_errors.append(message.text),
    )
    page.on("pageerror", lambda error: seen.console_errors.append(f"uncaught: {error}"))
    page.on("websocket", lambda socket: seen.sockets.append(socket.url))
    return seen


@pytest.fixture
def page() -> Iterator[Page]:
    """A fresh headless Chromium page. Playwright's sync API holds an asyncio loop while it
    runs, so it starts per test, after the fixtures that set up databases with asyncio."""
    if not CHROMIUM.is_file() or shutil.which(str(CHROMIUM)) is None:
        message = f"no Chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
            yield context.new_page()
        finally:
            browser.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    base = Path(os.environ.get("CUTOVER_VAR_DIR") or tmp_path / "var")
    folder = base / "reports" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def dashboard_state(page: Page) -> dict[str, Any]:
    """What the page counted (its own monitor) and its live socket's statistics."""
    state: dict[str, Any] = page.evaluate(
        """() => ({
            requests: dashboard.monitor.requests,
            failures: dashboard.monitor.failures,
            errors: dashboard.monitor.errors,
            backend: dashboard.monitor.backend,
            via: dashboard.monitor.via,
            quoteUpdates: dashboard.state.quoteUpdates,
            live: dashboard.live.stats,
        })"""
    )
    return state


def wait_for_live_updates(page: Page, more_than: int, timeout_ms: float = 20_000) -> int:
    """Wait until the quote panel counted more than `more_than` live updates; the new count."""
    page.wait_for_function(
        "n => Number(document.getElementById('quote').dataset.updates) > n",
        arg=more_than,
        timeout=timeout_ms,
    )
    return int(page.get_attribute("#quote", "data-updates") or 0)


def open_dashboard(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
