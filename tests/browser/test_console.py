"""The operator console on the gateway's admin port: without the token the admin API refuses it
and the page says so; with it the page shows the mode and each upstream's health, and its
buttons change the mode only after the operator confirms."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page

from ops.services import free_port
from tests.browser.servers import gateway, start_mock
from tests.gateway.processes import ADMIN_TOKEN, AUTH, Proc


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[Proc, Proc]]:
    port = free_port()
    mock = start_mock(port)
    try:
        prod = start_mock(port)  # a second mock plays prod: the console only reads its health
    except BaseException:
        mock.stop()
        raise
    try:
        yield mock, prod
    finally:
        prod.stop()
        mock.stop()


@pytest.fixture
def console(tmp_path: Path, upstreams: tuple[Proc, Proc]) -> Iterator[Proc]:
    with gateway(
        upstreams[0].url, upstreams[1].url, tmp_path / "var", tmp_path / "frontend.env"
    ) as proc:
        yield proc


def sign_in(page: Page, console: Proc, token: str) -> None:
    page.goto(f"{console.admin}/console")
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")


def mode_of(console: Proc) -> tuple[str, int]:
    state = httpx.get(f"{console.admin}/admin/state", headers=AUTH, timeout=5).json()
    return state["mode"], state["weight"]


def test_without_the_token_the_console_is_refused_and_says_so(
    page: Page, console: Proc, screenshots: Path
) -> None:
    answer = httpx.get(f"{console.admin}/console", timeout=5)
    assert answer.status_code == 200  # the page itself holds nothing secret
    assert ADMIN_TOKEN not in answer.text
    assert httpx.get(f"{console.admin}/admin/cutover", timeout=5).status_code == 401

    sign_in(page, console, "not-the-admin-token")
    page.wait_for_selector("#auth-message:has-text('HTTP 401')")
    assert "refused the token" in page.inner_text("#auth-message")
    assert page.is_visible("#login")
    assert not page.is_visible("#console")
    assert page.evaluate("sessionStorage.length") == 0  # a refused token is not kept
    page.screenshot(path=screenshots / "console-refused.png", full_page=True)


def test_the_console_shows_the_cutover_and_changes_the_mode_after_confirming(
    page: Page, console: Proc, upstreams: tuple[Proc, Proc], screenshots: Path
) -> None:
    sign_in(page, console, ADMIN_TOKEN)
    page.wait_for_selector("#mode:has-text('direct → mock')")
    page.wait_for_selector("#upstreams tr:has-text('prod') td.ok")
    assert page.locator("#upstreams td.ok").count() == 2
    assert upstreams[1].url in page.inner_text("#upstreams")
    assert page.inner_text("#weight") == "0 %"

    # A cancelled confirmation changes nothing.
    page.fill("#weight-input", "25")
    page.click("#weight-form button[type=submit]")
    assert "25 %" in page.inner_text("#confirm-text")
    page.click("#confirm-no")
    page.wait_for_selector("#action-result:has-text('cancelled')")
    assert mode_of(console) == ("direct", 0)

    page.click("#weight-form button[type=submit]")
    page.click("#confirm-yes")
    page.wait_for_selector("#mode:has-text('canary')")
    page.wait_for_selector("#weight:has-text('25 %')")
    assert mode_of(console) == ("canary", 25)
    page.screenshot(path=screenshots / "console.png", full_page=True)

    page.click("#rollback")
    assert "Roll back" in page.inner_text("#confirm-text")
    page.click("#confirm-yes")
    page.wait_for_selector("#mode:has-text('direct → mock')")
    assert mode_of(console) == ("direct", 0)
    assert "Rollback: done" in page.inner_text("#action-result")


def test_a_refused_action_shows_its_detail(page: Page, console: Proc) -> None:
    sign_in(page, console, ADMIN_TOKEN)
    page.wait_for_selector("#mode:has-text('direct → mock')")
    page.click("#promote")
    page.click("#confirm-yes")
    # This gateway has no DATABASE_URL, so no pg_dump: the promotion is refused and says why.
    page.wait_for_selector("#action-result.bad")
    assert "Promote refused: HTTP 503" in page.inner_text("#action-result")
    assert "pg_dump" in page.inner_text("#action-result")
    assert mode_of(console) == ("direct", 0)


def test_the_console_draws_the_canary_gates_and_aborts_it(
    page: Page, console: Proc, screenshots: Path
) -> None:
    settings = {
        "steps": [5, 25],
        "hold_s": 600,
        "interval_s": 0.5,
        "min_samples": 1,
        "dry_run": True,
    }
    started = httpx.post(f"{console.admin}/admin/canary", json=settings, headers=AUTH, timeout=10)
    assert started.status_code == 201, started.text
    with httpx.Client(base_url=console.url, timeout=10) as client:
        for _ in range(20):  # some of prod's share to measure
            client.get("/api/v1/market-data/SPY", headers={"X-Forwarded-For": "10.0.0.1"})

    sign_in(page, console, ADMIN_TOKEN)
    page.wait_for_selector("#canary-status:has-text('running')")
    page.wait_for_selector("#gates-chart svg circle")
    assert "dry run" in page.inner_text("#gates-caption")
    assert "p95 ≤ 100 ms" in page.inner_text("#gates-caption")
    assert page.locator("#intervals tr").count() >= 1
    page.screenshot(path=screenshots / "console-canary.png", full_page=True)

    page.click("#abort")
    page.click("#confirm-yes")
    page.wait_for_selector("#canary-status:has-text('aborted')")
    assert "Abort: done" in page.inner_text("#action-result")
    assert mode_of(console)[1] == 0
