"""`promote`, `rollback` and `decommission`: the end of the cutover, either way.

Promote and rollback are done by the running gateway (POST /admin/promote, /admin/rollback), the
same calls the console's buttons make; these commands check what the gateway needs, ask it,
then prove the result from outside: a request through the gateway answered by the backend that
should answer. Decommission is the CLI's alone: it points the frontend at prod directly and
stops the gateway and the mock.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from ops import services
from ops.cli import GateFailedError, PreconditionError, Run, _next, _shown, out
from ops.frontend_env import point_frontend
from ops.phases_shadow import _admin, _running
from ops.state import CutoverState, gate_record

HEALTH = services.HEALTH_PATH
# An action may take a pg_dump (promote) or rebuild the mock (rollback): give it time.
ACTION_TIMEOUT = 660.0
SERVED_WITHIN = 10.0


def _gateway_running(run: Run) -> services.PidRecord:
    record = _running(run, "gateway")
    if record is None:
        raise PreconditionError(
            "the gateway is not running, so there is nothing to switch",
            "./start.sh shadow (starts the gateway)",
        )
    return record


def _act(run: Run, action: str) -> dict[str, Any]:
    url, headers = _admin(run)
    try:
        answer = httpx.post(f"{url}/admin/{action}", headers=headers, timeout=ACTION_TIMEOUT)
    except httpx.HTTPError as exc:
        raise GateFailedError(
            f"the gateway's admin API did not answer: {type(exc).__name__}",
            "./start.sh logs gateway",
        ) from None
    try:
        document: dict[str, Any] = answer.json()
    except ValueError:
        document = {}
    if answer.status_code != 200:
        detail = str(document.get("detail") or f"HTTP {answer.status_code}")
        raise GateFailedError(f"{action} refused: {detail}", "./start.sh status")
    return document


def served_by(run: Run, upstream: str, seconds: float = SERVED_WITHIN) -> float:
    """Seconds until a health check through the gateway is answered 200 by `upstream`."""
    base = run.settings.url(run.settings.gateway_port)
    began = time.monotonic()
    last = "no answer"
    while time.monotonic() - began < seconds:
        try:
            answer = httpx.get(f"{base}{HEALTH}", timeout=3.0)
            got = answer.headers.get("x-gateway-upstream", "?")
            if answer.status_code == 200 and got == upstream:
                return time.monotonic() - began
            last = f"HTTP {answer.status_code} from {got}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    raise GateFailedError(
        f"the gateway does not answer from {upstream} within {seconds:.0f} s ({last})",
        "./start.sh status; ./start.sh logs gateway",
    )


def promote_phase(run: Run) -> str:
    _gateway_running(run)
    prod = _running(run, "prod")
    if prod is None:
        raise PreconditionError("prod is not running", "./start.sh prod")
    out.print("promoting: pg_dump first, then every client to prod …")
    document = _act(run, "promote")
    seconds = served_by(run, "prod")
    backup = str(document.get("backup", ""))
    detail = f"every client on prod; backup {backup}"

    def change(state: CutoverState) -> None:
        state.phase = "promoted"
        state.gates["promote"] = gate_record(
            True, "prod answers through the gateway", backup=backup, served_after_s=seconds
        )

    run.update(change)
    out.print(f"[green]✓[/] promoted: prod answers through the gateway (after {seconds:.2f} s)")
    out.print(f"  backup taken first: {backup}")
    out.print(f"  the frontend env file points at the gateway: {_frontend(run)}")
    _next("./start.sh status", "./start.sh rollback (if needed)", "./start.sh decommission")
    return detail


def _frontend(run: Run) -> str:
    return _shown(run.settings, run.settings.frontend_env_file)


def _ensure_mock(run: Run) -> None:
    if _running(run, "mock") is not None:
        return
    out.print("the mock is not running: starting it …")
    try:
        services.start_service(run.settings, services.mock_spec(run.settings))
    except services.ServiceError as exc:
        raise GateFailedError(
            f"the mock did not start: {exc.summary}", "./start.sh logs mock"
        ) from None


def _ensure_gateway(run: Run) -> None:
    if _running(run, "gateway") is not None:
        return
    out.print("the gateway is not running (decommissioned?): starting it in front of the mock …")

    def to_mock(state: CutoverState) -> None:
        state.mode, state.weight = "mock", 0  # the gateway starts in the recorded mode

    run.update(to_mock)
    settings = run.settings
    spec = services.app_spec(
        settings,
        "gateway",
        "ops.gateway",
        settings.gateway_port,
        *("--admin-port", str(settings.gateway_admin_port)),
        other_ports=(settings.gateway_admin_port,),
    )
    try:
        services.start_service(settings, spec)
    except services.ServiceError as exc:
        raise GateFailedError(
            f"the gateway did not start: {exc.summary}", "./start.sh logs gateway"
        ) from None


def rollback_phase(run: Run) -> str:
    _ensure_mock(run)
    _ensure_gateway(run)
    out.print("rolling back: the mock rebuilt from PostgreSQL, then every client to the mock …")
    document = _act(run, "rollback")
    seconds = served_by(run, "mock")
    rebuilt = document.get("rebuilt")
    what = (
        f"rebuilt {rebuilt['users']} users, {rebuilt['watchlists']} watchlists, "
        f"{rebuilt['backtests']} backtests from PostgreSQL"
        if isinstance(rebuilt, dict)
        else "no database configured: the mock kept its own records"
    )

    def change(state: CutoverState) -> None:
        state.phase = "rolled-back"
        state.gates["rollback"] = gate_record(
            True, "the mock answers through the gateway", rebuilt=rebuilt, served_after_s=seconds
        )

    run.update(change)
    out.print(f"[green]✓[/] rolled back: the mock answers through the gateway ({seconds:.2f} s)")
    out.print(f"  {what}; prod left running for diagnosis")
    out.print(f"  the frontend env file points at the gateway: {_frontend(run)}")
    _next("./start.sh status", "./start.sh shadow --duration 60s (when prod is fixed)")
    return what


def decommission_phase(run: Run, force: bool) -> str:
    state = run.store.load()
    if state.mode != "prod" and not force:
        raise PreconditionError(
            f"decommission follows a promotion; the gateway's mode is {state.mode}",
            "./start.sh promote (or --force)",
        )
    prod = _running(run, "prod")
    health = services.check_health(prod.health_url) if prod and prod.health_url else None
    if health is None or not health.ok:
        raise GateFailedError(
            "prod is not healthy; the mock and the gateway stay", "./start.sh prod"
        )
    prod_url = run.settings.url(run.settings.prod_port)
    point_frontend(run.settings.frontend_env_file, prod_url)
    out.print(f"[green]✓[/] the frontend env file points at prod directly: {prod_url}")
    stopped = [services.stop_service(run.settings, name) for name in ("gateway", "mock")]
    for result in stopped:
        out.print(f"[green]✓[/] {result.name}: {result.outcome}")

    def change(new: CutoverState) -> None:
        new.phase = "decommissioned"
        new.mode = "prod"
        new.weight = 100
        for name in ("gateway", "mock"):
            new.processes.pop(name, None)
        new.gates["decommission"] = gate_record(True, "prod serves the frontend directly")

    run.update(change)
    _next("./start.sh status", "./start.sh rollback (starts the mock and the gateway again)")
    return f"frontend on prod directly ({prod_url}); gateway and mock stopped"
