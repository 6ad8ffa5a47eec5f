"""`./start.sh canary`, `abort` and `resume`: the canary runs inside the gateway
(ops/gateway/canary.py); these commands start, stop or continue it through the admin API.

`canary` and `resume` hold the cutover lock only while they ask the gateway, then follow the
canary without it, so that `abort`, `promote` or `rollback` from another terminal are never
refused while someone watches. Following ends with exit 0 when the last step held (or the
canary was promoted), 1 when it rolled back (saying why), 3 when it was aborted or on Ctrl-C,
which only detaches: the canary goes on in the gateway. Each outcome is a history entry.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import typer
from rich.console import Group
from rich.live import Live
from rich.text import Text

from ops.cli import (
    EXIT_DONE,
    EXIT_GATE_FAILED,
    EXIT_INTERRUPTED,
    EXIT_PRECONDITION,
    PreconditionError,
    Run,
    _next,
    _settings,
    err,
    out,
    state_changing,
)
from ops.phases_shadow import _running, parse_threshold
from ops.settings import OpsSettings, read_env_file
from ops.state import CutoverState, Outcome, StateStore

ACTIVE = ("running", "paused")
POLL_SECONDS = 0.5
# How long a follower waits for a gateway that stopped answering (a restart resumes the canary).
GATEWAY_GONE_SECONDS = 60.0
SHOWN_INTERVALS = 50
GATEWAY_PROVIDER = "./start.sh shadow (starts the gateway)"
VERDICT_STYLES = {
    "pass": "green",
    "breach": "red",
    "no-data": "yellow",
    "dry-run-breach": "magenta",
}
DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")


@dataclass(frozen=True, slots=True)
class CanaryArgs:
    steps: str
    hold: str
    interval: str
    min_samples: int
    breaches: int
    p95_ms: float
    success_rate: str
    diff_rate: str
    dry_run: bool


def parse_seconds(text: str) -> float:
    """`60s`, `2m`, `500ms`, `10` (seconds) → seconds; ValueError otherwise."""
    found = DURATION.match(text.strip().lower())
    if found is None:
        raise ValueError(text)
    scale = {"ms": 0.001, "m": 60.0}.get(found.group(2) or "s", 1.0)
    return float(found.group(1)) * scale


def parse_steps(text: str) -> list[int]:
    """`5,25,50,100` → [5, 25, 50, 100]; ValueError unless whole numbers."""
    return [int(part) for part in text.replace(" ", "").split(",") if part]


def settings_body(args: CanaryArgs) -> dict[str, Any]:
    """The POST /admin/canary body; PreconditionError (exit 2) naming the bad option."""
    parsers: dict[str, tuple[Callable[[], Any], str]] = {
        "steps": (lambda: parse_steps(args.steps), "--steps like 5,25,50,100"),
        "hold_s": (lambda: parse_seconds(args.hold), "--hold like 60s or 2m"),
        "interval_s": (lambda: parse_seconds(args.interval), "--interval like 10s or 500ms"),
        "success_rate": (lambda: parse_threshold(args.success_rate), "--success-rate like 99.9%"),
        "diff_rate": (lambda: parse_threshold(args.diff_rate), "--diff-rate like 1%"),
    }
    body: dict[str, Any] = {
        "min_samples": args.min_samples,
        "breaches": args.breaches,
        "p95_ms": args.p95_ms,
        "dry_run": args.dry_run,
    }
    for key, (parse, accepted) in parsers.items():
        try:
            body[key] = parse()
        except ValueError:
            raise PreconditionError(f"bad value for {accepted.split()[0]}: {accepted}") from None
    return body


# --- the admin API ------------------------------------------------------------------------------


def _gateway(run: Run) -> None:
    if _running(run, "gateway") is None:
        raise PreconditionError(
            "the canary runs inside the gateway, which is not running", GATEWAY_PROVIDER
        )


def _ask(settings: OpsSettings, method: str, path: str, **kwargs: Any) -> httpx.Response:
    # The token as the gateway sees it (ops.settings.child_environment): the environment wins.
    token = {**read_env_file(settings.env_file), **os.environ}.get("ADMIN_TOKEN", "")
    url = settings.url(settings.gateway_admin_port)
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.request(method, f"{url}/admin{path}", headers=headers, timeout=10.0, **kwargs)


def _detail(answer: httpx.Response) -> str:
    try:
        document = answer.json()
    except ValueError:
        return f"HTTP {answer.status_code}"
    detail = str(document.get("detail") or f"HTTP {answer.status_code}")
    extra = document.get("extra")
    if isinstance(extra, list) and extra:
        detail += ": " + "; ".join(
            f"{item.get('key', '?')}: {item.get('message', '')}"
            for item in extra
            if isinstance(item, dict)
        )
    return detail


def _refusal(answer: httpx.Response, what: str) -> PreconditionError:
    next_step = {400: None, 503: "./start.sh prod; ./start.sh status"}.get(
        answer.status_code, "./start.sh status"
    )
    return PreconditionError(f"{what} refused: {_detail(answer)}", next_step)


def _mark_phase(run: Run) -> None:
    def change(state: CutoverState) -> None:
        state.phase = "canary"

    run.update(change)


# --- the commands' bodies -----------------------------------------------------------------------


def start_phase(run: Run, args: CanaryArgs) -> str:
    """Ask the gateway to start a canary (or find one already running, to follow it)."""
    body = settings_body(args)
    _gateway(run)
    current = _ask(run.settings, "GET", "/canary", params={"intervals": 0})
    if current.status_code == 200 and current.json().get("status") in ACTIVE:
        now = current.json()
        out.print(
            f"[yellow]![/] a canary is already {now['status']} (step {now['step'] + 1}, "
            f"weight {now['weight']} %): following it; the options given are not applied"
        )
        return f"already {now['status']}: followed"
    answer = _ask(run.settings, "POST", "/canary", json=body)
    if answer.status_code != 201:
        raise _refusal(answer, "canary")
    _mark_phase(run)
    steps = ", ".join(f"{w} %" for w in body["steps"])
    mode = " (dry run: gates judged, never acted on)" if args.dry_run else ""
    out.print(f"[green]✓[/] the canary started in the gateway: {steps}{mode}")
    return f"started: steps {args.steps}, hold {args.hold}, interval {args.interval}{mode}"


def resume_phase(run: Run) -> str:
    _gateway(run)
    answer = _ask(run.settings, "POST", "/canary/resume")
    if answer.status_code == 409:
        raise PreconditionError(_detail(answer), "./start.sh canary (starts a new one)")
    if answer.status_code != 200:
        raise _refusal(answer, "resume")
    document = answer.json()
    _mark_phase(run)
    out.print(
        f"[green]✓[/] the canary goes on from step {document['step'] + 1} "
        f"({document['steps'][document['step']]} %)"
    )
    return f"resumed at step {document['step'] + 1}"


def abort_phase(run: Run) -> str:
    """Weight 0 and status aborted; through the gateway, or in the state file when it is down."""
    if _running(run, "gateway") is None:
        state = run.store.load()
        status = state.canary.get("status", "idle")
        if status not in ACTIVE:
            raise PreconditionError(
                f"no canary is running (status {status}) and the gateway is not running"
            )

        def change(state: CutoverState) -> None:
            state.weight = 0
            state.canary = {
                **state.canary,
                "status": "aborted",
                "weight": 0,
                "reason": "aborted by the operator while the gateway was down",
            }

        run.update(change)
        out.print(
            "[green]✓[/] canary aborted in the state file (the gateway is not running): it "
            "starts again at weight 0"
        )
        _next("./start.sh resume (after starting the gateway)", "./start.sh status")
        return "aborted (gateway down: state file)"
    answer = _ask(run.settings, "POST", "/canary/abort")
    if answer.status_code != 200:
        raise PreconditionError(_detail(answer), "./start.sh status")
    document = answer.json()
    out.print(
        f"[green]✓[/] canary aborted at step {document['step'] + 1}: weight "
        f"{document['routing']['weight']} %, every client on the mock; nothing else changed"
    )
    _next("./start.sh resume", "./start.sh rollback", "./start.sh status")
    return f"aborted at step {document['step'] + 1}"


# --- following ----------------------------------------------------------------------------------


def render(document: dict[str, Any]) -> Group:
    """One screen: status, step, weight, hold and breaches, what it waits for."""
    settings = document.get("settings", {})
    steps: list[int] = document.get("steps", [])
    status = document.get("status", "idle")
    style = {"running": "green", "paused": "yellow", "done": "green"}.get(status, "red")
    line = Text.assemble(
        ("canary ", "bold"),
        (status, f"bold {style}"),
        f" · step {document.get('step', 0) + 1} of {len(steps)} ({', '.join(map(str, steps))} %)"
        f" · weight {document.get('routing', {}).get('weight')} %"
        f" · held {document.get('held_s', 0):g} of {settings.get('hold_s', 0):g} s"
        f" · breaches {document.get('consecutive_breaches', 0)} of {settings.get('breaches')}",
        (" · dry run" if settings.get("dry_run") else "", "magenta"),
    )
    parts: list[Any] = [line]
    for key in ("waiting", "reason"):
        if document.get(key):
            parts.append(Text(f"  {document[key]}", style="yellow"))
    parts.append(
        Text("  Ctrl-C detaches: the canary goes on in the gateway (./start.sh abort stops it)")
    )
    return Group(*parts)


def interval_line(entry: dict[str, Any]) -> Text:
    def pct(value: Any) -> str:
        return "-" if value is None else f"{value:.2%}"

    p95 = entry.get("p95_ms")
    return Text.assemble(
        f"  {entry['at'][11:23]}  weight {entry['weight']:>3} %  "
        f"{entry['samples']:>5} samples  ok {pct(entry['success_rate']):>8}  "
        f"p95 {'-' if p95 is None else f'{p95:.0f} ms':>7}  "
        f"diff {pct(entry['diff_rate']):>7} of {entry['compared']:<4} ",
        (entry["verdict"], VERDICT_STYLES.get(entry["verdict"], "")),
        ("  " + "; ".join(entry["reasons"]) if entry["reasons"] else "", "dim"),
    )


def follow(settings: OpsSettings) -> tuple[int, Outcome, str]:
    """Show the canary until it ends: (exit code, outcome, detail)."""
    last_at = ""
    gone_since: float | None = None
    document: dict[str, Any] = {}
    with Live(Text("asking the gateway …"), console=out, auto_refresh=False) as live:
        while True:
            try:
                answer = _ask(settings, "GET", "/canary", params={"intervals": SHOWN_INTERVALS})
                answer.raise_for_status()
                document = answer.json()
                gone_since = None
            except (httpx.HTTPError, ValueError) as exc:
                gone_since = gone_since or time.monotonic()
                if time.monotonic() - gone_since > GATEWAY_GONE_SECONDS:
                    detail = f"the gateway stopped answering ({type(exc).__name__})"
                    live.console.print(
                        f"[red]✗[/] {detail}; a restarted gateway resumes the canary: "
                        "./start.sh status, ./start.sh logs gateway"
                    )
                    return EXIT_PRECONDITION, "failed", detail
                live.update(Text(f"the gateway does not answer ({type(exc).__name__}) …"))
                live.refresh()
                time.sleep(POLL_SECONDS)
                continue
            for entry in document.get("intervals", []):
                if entry["at"] > last_at:
                    live.console.print(interval_line(entry))
                    last_at = entry["at"]
            live.update(render(document), refresh=True)
            status = document.get("status")
            if status not in ACTIVE:
                return ending(document)
            time.sleep(POLL_SECONDS)


def ending(document: dict[str, Any]) -> tuple[int, Outcome, str]:
    status = document.get("status")
    reason = document.get("reason", "")
    weight = document.get("routing", {}).get("weight")
    if status in ("done", "promoted"):
        out.print(f"[green]✓[/] canary {status}: {reason} (weight {weight} %)")
        _next("./start.sh promote", "./start.sh status")
        return EXIT_DONE, "done", f"{status}: {reason}"
    if status == "rolled_back":
        err.print(f"[red]✗[/] canary rolled back (weight {weight} %): {reason}")
        _next("./start.sh status", "./start.sh logs prod", "fix prod, then ./start.sh canary")
        return EXIT_GATE_FAILED, "failed", f"rolled back: {reason}"
    err.print(f"[yellow]![/] canary {status}: {reason} (weight {weight} %)")
    _next("./start.sh resume", "./start.sh status")
    return EXIT_INTERRUPTED, "interrupted", f"{status}: {reason}"


def follow_command(command: str) -> None:
    """Follow the canary without the lock, then record the outcome in the history."""
    settings = _settings()
    try:
        code, outcome, detail = follow(settings)
    except KeyboardInterrupt:
        out.print(
            "\n[yellow]![/] detached: the canary goes on in the gateway "
            "(./start.sh status shows it, ./start.sh abort stops it)"
        )
        code, outcome, detail = EXIT_INTERRUPTED, "interrupted", "detached; the canary goes on"
    StateStore(settings.state_file).record(command, outcome, detail)
    if code != EXIT_DONE:
        raise typer.Exit(code)


def canary_command(args: CanaryArgs) -> None:
    state_changing("canary", lambda run: start_phase(run, args))
    follow_command("canary")


def resume_command() -> None:
    state_changing("resume", resume_phase)
    follow_command("resume")


def abort_command() -> None:
    state_changing("abort", abort_phase)
