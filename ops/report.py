"""`./start.sh report`: the cutover report in Markdown and HTML, from what the phases recorded.

For the operator and whoever signs the cutover off: the verdict first (pass only when every gate
recorded passed and no command's last run failed), then the phases run, the shadow diff table
with redacted samples, the contract runs, gate verdicts over time with the canary's intervals,
the load test, the benchmarks and the screenshots. Sources are the state file and the files the
phases leave under `var/reports/`; a missing or unreadable source makes its section say "not run
yet" (or why it cannot be read), never a crash. Nothing secret reaches either file.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.text import Text

from ops import report_plots
from ops.report_document import (
    Block,
    Bullets,
    Code,
    Image,
    Paragraph,
    Plot,
    Report,
    Section,
    Table,
    render_html,
    render_markdown,
)
from ops.report_redact import known_secrets, redact_text, redact_value
from ops.settings import OpsSettings
from ops.state import STATE_VERSION, StateError, migrate, now_iso, write_atomic

MARKDOWN_NAME = "cutover-report.md"
HTML_NAME = "cutover-report.html"
CANARY_PLOT = "cutover-report-canary.svg"
LATENCY_PLOT = "cutover-report-latency.svg"
INTERVAL_COLUMNS = [
    "at", "weight", "samples", "success", "p95 ms", "diff rate", "compared", "verdict", "reasons",
]  # fmt: skip
NOT_RUN = "not run yet"
FAILED_OUTCOMES = ("failed", "error")
# Commands of a whole cutover, in order: those never run are named under the verdict.
CUTOVER_COMMANDS = ("setup", "db", "simple", "prod", "contract", "shadow", "loadtest", "canary")
SAMPLES_PER_ROUTE = 2
SAMPLE_BODY_CHARS = 1200
INTERVAL_ROWS = 40
HISTORY_ROWS = 200
SCREENSHOT_MAX_BYTES = 8 * 1024 * 1024
# Canary thresholds when the record does not say (PHASES.md).
CANARY_DEFAULTS = {"p95_ms": 100.0, "success_rate": 0.999, "diff_rate": 0.01}


# --- reading the sources ----------------------------------------------------------------------


@dataclass(slots=True)
class Sources:
    """What the phases left under the var dir; None where a source is missing."""

    state: dict[str, Any] = field(default_factory=dict)
    shadow: dict[str, Any] | None = None
    contract: tuple[str, dict[str, Any]] | None = None
    loadtest: tuple[str, dict[str, Any]] | None = None
    benches: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        problems.append(f"{path.name} cannot be read ({type(exc).__name__}); left out")
        return None
    if not isinstance(document, dict):
        problems.append(f"{path.name} does not hold a JSON object; left out")
        return None
    return document


def _latest(folder: Path, prefix: str, problems: list[str]) -> tuple[str, dict[str, Any]] | None:
    # Folder names carry a UTC stamp (PREFIX-YYYYmmdd-HHMMSS-xxxx): by name is by time.
    for candidate in sorted(folder.glob(f"{prefix}-*/summary.json"), reverse=True):
        document = _read_json(candidate, problems)
        if document is not None:
            return candidate.parent.name, document
    return None


def read_sources(settings: OpsSettings) -> Sources:
    sources = Sources()
    problems = sources.problems
    state = _read_json(settings.state_file, problems)
    if state is not None:
        try:
            state = migrate(state, current=STATE_VERSION, source=settings.state_file.name)
        except StateError as exc:
            problems.append(f"{exc}; read as it is")
        sources.state = state
    reports = settings.reports_dir
    sources.shadow = _read_json(reports / "shadow-diffs.json", problems)
    sources.contract = _latest(reports, "contract", problems)
    sources.loadtest = _latest(reports, "loadtest", problems)
    for path in sorted(reports.glob("bench-*.json")):
        document = _read_json(path, problems)
        if document is not None:
            sources.benches.append((path.stem.removeprefix("bench-"), document))
    sources.screenshots = sorted((reports / "screenshots").glob("*.png"))
    return sources


# --- small readers of untrusted JSON ----------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _pct(value: Any, digits: int = 2) -> str | None:
    number = _num(value)
    return None if number is None else f"{number * 100:.{digits}f} %"


def _ms(value: Any) -> str | None:
    number = _num(value)
    return None if number is None else f"{number:g}"


def _when(value: Any) -> datetime | None:
    """An ISO time (`...Z` too) or epoch seconds, as an aware datetime; None if neither."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(float(value)).astimezone()
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.astimezone()
    return None


# --- the verdict ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str  # pass, fail, incomplete
    headline: str
    reasons: list[str]


def _last_outcomes(history: list[Any]) -> dict[str, dict[str, Any]]:
    last: dict[str, dict[str, Any]] = {}
    for entry in history:
        item = _dict(entry)
        if item.get("command"):
            last[str(item["command"])] = item
    return last


def judge(state: dict[str, Any]) -> Verdict:
    """Pass when every recorded gate passed and no command's last run failed."""
    gates = _dict(state.get("gates"))
    history = _list(state.get("history"))
    if not gates and not history:
        return Verdict("incomplete", "nothing recorded yet: run ./start.sh demo", [])
    failed_gates = {
        name: _dict(gate)
        for name, gate in sorted(gates.items())
        if not (isinstance(gate, dict) and gate.get("passed") is True)
    }
    last = _last_outcomes(history)
    failed_phases = {c: e for c, e in last.items() if e.get("outcome") in FAILED_OUTCOMES}
    reasons = [
        f"gate {name} failed: {_text(g.get('detail')) or 'no detail'}"
        for name, g in failed_gates.items()
    ]
    reasons += [
        f"phase {command} {entry.get('outcome')} at {_text(entry.get('at'))}: "
        f"{_text(entry.get('detail')) or 'no detail'}"
        for command, entry in failed_phases.items()
    ]
    recovered = sorted(
        {
            _text(_dict(e).get("command"))
            for e in history
            if _dict(e).get("outcome") in FAILED_OUTCOMES
        }
        - set(failed_phases)
    )
    notes = []
    if recovered:
        notes.append(f"failed earlier, then run again and done: {', '.join(recovered)}")
    missing = [c for c in CUTOVER_COMMANDS if c not in last]
    if missing:
        notes.append(f"not run yet: {', '.join(missing)}")
    canary = _dict(state.get("canary"))
    if canary.get("status"):
        why = f" ({canary['reason']})" if canary.get("reason") else ""
        notes.append(f"canary {canary['status']} at weight {canary.get('weight', '-')} %{why}")
    if reasons:
        parts = []
        if failed_gates:
            parts.append(f"{len(failed_gates)} of {len(gates)} gates failed")
        if failed_phases:
            count = len(failed_phases)
            phases = "phase" if count == 1 else "phases"
            parts.append(f"{count} {phases} failed ({', '.join(failed_phases)})")
        return Verdict("fail", "; ".join(parts), reasons + notes)
    headline = f"all {len(gates)} gates passed; {len(last)} commands ran, none failed last time"
    return Verdict("pass", headline, notes)


# --- the sections -----------------------------------------------------------------------------


def _duration(entry: dict[str, Any]) -> str | None:
    start, end = _when(entry.get("started_at")), _when(entry.get("at"))
    if start is not None and end is not None and end >= start:
        return f"{(end - start).total_seconds():.1f} s"
    # The history records when a command ended; some say how long they took in their detail.
    found = re.search(r"\bin (\d+(?:\.\d+)?) ?s\b", _text(entry.get("detail")))
    return f"{found.group(1)} s" if found else None


def phases_section(state: dict[str, Any]) -> Section:
    section = Section("Phases run")
    history = _list(state.get("history"))
    if not history:
        section.blocks.append(Paragraph(NOT_RUN + ": no command has recorded an outcome", "muted"))
        return section
    section.blocks.append(
        Paragraph(
            f"Now: phase {_text(state.get('phase')) or '-'}, mode {_text(state.get('mode')) or '-'}"
            f", weight to prod {_text(state.get('weight')) or '0'} %."
        )
    )
    shown = history[-HISTORY_ROWS:]
    if len(history) > len(shown):
        section.blocks.append(
            Paragraph(f"the first {len(history) - len(shown)} entries are left out", "muted")
        )
    rows: list[list[Any]] = []
    for entry in shown:
        item = _dict(entry)
        rows.append(
            [
                _text(item.get("command")),
                _text(item.get("outcome")),
                _text(item.get("at")),
                _duration(item),
                _text(item.get("detail")),
            ]
        )
    section.blocks.append(Table(["command", "outcome", "when", "duration", "detail"], rows))
    processes = _dict(state.get("processes"))
    if processes:
        section.blocks.append(
            Table(
                ["process", "pid", "url", "started"],
                [
                    [
                        name,
                        _dict(p).get("pid"),
                        _text(_dict(p).get("url")),
                        _text(_dict(p).get("started_at")),
                    ]
                    for name, p in sorted(processes.items())
                ],
                caption="processes started",
            )
        )
    return section


def _sample_text(sample: dict[str, Any], secrets: list[str]) -> str:
    clean = _dict(redact_value(sample, secrets))
    request = _dict(clean.get("request"))
    lines = [f"{_text(request.get('method'))} {_text(request.get('path'))}".strip()]
    differences = _dict(sample.get("differences"))
    if differences:
        lines.append(
            "differences: "
            + ", ".join(f"{path} ({kind})" for path, kind in list(differences.items())[:12])
        )
    for side in ("primary", "candidate"):
        answer = _dict(clean.get(side))
        body = json.dumps(answer.get("body"), sort_keys=True, ensure_ascii=False)
        if len(body) > SAMPLE_BODY_CHARS:
            body = body[:SAMPLE_BODY_CHARS] + f" … ({len(body)} characters)"
        lines.append(f"{side}: HTTP {_text(answer.get('status'))} {body}")
    return "\n".join(lines)


def _differing_route_blocks(route: dict[str, Any], secrets: list[str]) -> list[Block]:
    """What differs on one route, field by field, and a couple of its redacted samples."""
    name = _text(route.get("route"))
    noise = set(map(str, _list(route.get("noise_fields"))))
    fields = [
        f"{path}: " + ", ".join(f"{kind} {n}" for kind, n in _dict(kinds).items())
        for path, kinds in _dict(route.get("fields")).items()
        if path not in noise
    ]
    blocks: list[Block] = [
        Paragraph(f"{name}: {route.get('differing')} of {route.get('compared')} differ")
    ]
    if fields:
        blocks.append(Bullets(fields[:10]))
    for index, sample in enumerate(_list(route.get("samples"))[:SAMPLES_PER_ROUTE], 1):
        blocks.append(Code(f"{name}, sample {index}", _sample_text(_dict(sample), secrets)))
    return blocks


def diffs_section(
    shadow: dict[str, Any] | None, state: dict[str, Any], secrets: list[str]
) -> Section:
    section = Section("Shadow diffs")
    gate = _dict(_dict(state.get("gates")).get("shadow"))
    if shadow is None:
        recorded = _dict(gate.get("routes"))
        if not recorded:
            section.blocks.append(
                Paragraph(NOT_RUN + ": ./start.sh shadow --duration 60s", "muted")
            )
            return section
        section.blocks.append(
            Paragraph("shadow-diffs.json is missing; the table is the gate's record", "muted")
        )
        rows = [
            [
                route,
                _dict(r).get("compared"),
                _dict(r).get("differing"),
                None,
                _pct(_dict(r).get("rate")),
                _text(_dict(r).get("verdict")),
            ]
            for route, r in sorted(recorded.items())
        ]
        section.blocks.append(
            Table(["route", "compared", "differing", "noise fields", "rate", "verdict"], rows)
        )
        return section
    copies = _dict(shadow.get("copies"))
    section.blocks.append(
        Paragraph(
            f"Gate: noise-adjusted diff rate ≤ {_pct(shadow.get('threshold')) or '-'} per route "
            f"with at least {_text(shadow.get('min_samples')) or '-'} compared requests. Copies "
            f"to the candidate: {_text(copies.get('sent')) or 0} compared, "
            f"{_text(copies.get('dropped')) or 0} dropped, {_text(copies.get('failed')) or 0} "
            "failed."
        )
    )
    routes = [_dict(r) for r in _list(shadow.get("routes"))]
    if not routes:
        section.blocks.append(Paragraph("no route was compared", "muted"))
        return section
    rows = []
    for route in routes:
        noise = [str(f) for f in _list(route.get("noise_fields"))]
        noise_text = ", ".join(noise[:4]) + (f" (+{len(noise) - 4})" if len(noise) > 4 else "")
        rows.append(
            [
                _text(route.get("route")),
                route.get("compared"),
                route.get("differing"),
                noise_text or None,
                _pct(route.get("rate")),
                _text(route.get("verdict")),
            ]
        )
    section.blocks.append(
        Table(["route", "compared", "differing", "noise fields", "rate", "verdict"], rows)
    )
    for route in routes:
        if route.get("differing"):
            section.blocks += _differing_route_blocks(route, secrets)
    rules = _list(shadow.get("rules"))
    if rules:
        section.blocks.append(
            Table(
                ["route", "field", "why it is ignored"],
                [
                    [
                        _text(_dict(r).get("route")),
                        _text(_dict(r).get("field")),
                        _text(_dict(r).get("reason")),
                    ]
                    for r in rules
                ],
                caption=f"ignore rules in force ({len(rules)})",
            )
        )
    return section


def contract_section(contract: tuple[str, dict[str, Any]] | None) -> Section:
    section = Section("Contract runs")
    if contract is None:
        section.blocks.append(Paragraph(NOT_RUN + ": ./start.sh contract --target both", "muted"))
        return section
    folder, document = contract
    section.blocks.append(Paragraph(f"The latest run: {folder}.", "muted"))
    suites = [_dict(s) for s in _list(document.get("suites"))]
    if suites:
        section.blocks.append(
            Table(
                ["target", "passed", "failed", "errors", "skipped", "seconds"],
                [
                    [
                        _text(s.get("target")),
                        s.get("passed"),
                        s.get("failed"),
                        s.get("errors"),
                        s.get("skipped"),
                        s.get("seconds"),
                    ]
                    for s in suites
                ],
                caption="contract suite",
            )
        )
    fuzz = _dict(document.get("schemathesis"))
    if fuzz:
        cases = _dict(fuzz.get("cases"))
        failures = [_dict(f) for f in _list(fuzz.get("failures"))]
        disagreements = [_dict(d) for d in _list(fuzz.get("disagreements"))]
        section.blocks.append(
            Paragraph(
                f"Schemathesis (seed {_text(fuzz.get('seed'))}, up to "
                f"{_text(fuzz.get('examples'))} examples per operation): "
                + ", ".join(f"{t} {n} cases" for t, n in cases.items())
                + f"; {len(failures)} distinct failures, {len(disagreements)} disagreements in "
                f"{_text(fuzz.get('compared')) or 0} compared answers."
            )
        )
        if failures:
            section.blocks.append(
                Table(
                    ["target", "operation", "check", "status", "finding"],
                    [
                        [
                            _text(f.get("target")),
                            _text(f.get("operation")),
                            _text(f.get("check")),
                            f.get("status"),
                            _text(f.get("title")),
                        ]
                        for f in failures[:15]
                    ],
                    caption="schemathesis failures",
                )
            )
        if disagreements:
            section.blocks.append(
                Bullets(
                    [
                        f"{_text(d.get('operation'))}: "
                        + "; ".join(map(str, _list(d.get("differences"))[:3]))
                        for d in disagreements[:10]
                    ]
                )
            )
    return section


def _gate_rows(gates: dict[str, Any]) -> list[list[Any]]:
    def key(item: tuple[str, Any]) -> str:
        return _text(_dict(item[1]).get("at"))

    return [
        [
            name,
            "pass" if _dict(gate).get("passed") is True else "FAIL",
            _text(_dict(gate).get("at")),
            _text(_dict(gate).get("detail")) if isinstance(gate, dict) else _text(gate),
        ]
        for name, gate in sorted(gates.items(), key=key)
    ]


def _canary_points(intervals: list[dict[str, Any]]) -> list[report_plots.CanaryPoint]:
    moments = [_when(i.get("at")) for i in intervals]
    known = [m for m in moments if m is not None]
    first = min(known) if known else None
    points = []
    for index, (interval, moment) in enumerate(zip(intervals, moments, strict=True)):
        t = (moment - first).total_seconds() if moment and first else float(index)
        points.append(
            report_plots.CanaryPoint(
                t=t,
                weight=_num(interval.get("weight")),
                p95_ms=_num(interval.get("p95_ms")),
                success_rate=_num(interval.get("success_rate")),
                verdict=_text(interval.get("verdict")),
                mock_p95_ms=_num(_dict(interval.get("mock")).get("p95_ms")),
            )
        )
    return points


def gates_section(state: dict[str, Any], plots: dict[str, str]) -> Section:
    section = Section("Gate verdicts over time")
    gates = _dict(state.get("gates"))
    if gates:
        section.blocks.append(
            Table(
                ["gate", "result", "at", "detail"],
                _gate_rows(gates),
                caption="the last verdict of each gate, oldest first",
            )
        )
    else:
        section.blocks.append(Paragraph(NOT_RUN + ": no gate has been judged", "muted"))
    canary = _dict(state.get("canary"))
    intervals = [_dict(i) for i in _list(canary.get("intervals"))]
    if not canary:
        section.blocks.append(Paragraph("canary: " + NOT_RUN + " (./start.sh canary)", "muted"))
        return section
    settings = _dict(canary.get("settings"))
    thresholds = {
        name: _num(settings.get(name)) or _num(canary.get(name)) or default
        for name, default in CANARY_DEFAULTS.items()
    }
    steps = ", ".join(map(str, _list(canary.get("steps")))) or "-"
    reason = f"; reason: {canary['reason']}" if canary.get("reason") else ""
    section.blocks.append(
        Paragraph(
            f"Canary: {_text(canary.get('status')) or 'unknown'}, steps {steps}, weight "
            f"{_text(canary.get('weight')) or '0'} %{reason}. Gates per interval: p95 ≤ "
            f"{thresholds['p95_ms']:g} ms, success ≥ {thresholds['success_rate']:.2%}, diff rate ≤ "
            f"{thresholds['diff_rate']:.2%}"
            + (" (dry run: analysed, never acted)" if settings.get("dry_run") else "")
            + "."
        )
    )
    if not intervals:
        section.blocks.append(Paragraph("no interval analysed yet", "muted"))
        return section
    counts = Counter(_text(i.get("verdict")) or "?" for i in intervals)
    section.blocks.append(
        Paragraph(
            f"{len(intervals)} intervals: " + ", ".join(f"{n} {v}" for v, n in counts.most_common())
        )
    )
    points = _canary_points(intervals)
    if any(p.p95_ms is not None or p.success_rate is not None for p in points):
        svg = report_plots.canary_plot(points, thresholds["p95_ms"], thresholds["success_rate"])
        plots[CANARY_PLOT] = svg
        caption = "canary: p95 and success rate per interval against the gates, weight as a step"
        section.blocks.append(Plot(svg, CANARY_PLOT, caption + " line"))
    else:
        section.blocks.append(Paragraph("no interval holds a figure to plot", "muted"))
    shown = intervals[-INTERVAL_ROWS:]
    if len(intervals) > len(shown):
        section.blocks.append(
            Paragraph(f"the last {len(shown)} intervals; the plot shows all", "muted")
        )
    section.blocks.append(
        Table(
            INTERVAL_COLUMNS,
            [
                [
                    _text(i.get("at")),
                    i.get("weight"),
                    i.get("samples"),
                    _pct(i.get("success_rate")),
                    _ms(i.get("p95_ms")),
                    _pct(i.get("diff_rate")),
                    i.get("compared"),
                    _text(i.get("verdict")),
                    "; ".join(map(str, _list(i.get("reasons")))),
                ]
                for i in shown
            ],
            caption="canary intervals",
        )
    )
    return section


def _route_rows(result: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for route in map(_dict, _list(result.get("routes"))):
        kind = _text(route.get("kind"))
        label = f"{_text(route.get('method'))} {_text(route.get('name'))}".strip()
        rows.append(
            [
                label + ("" if kind in ("http", "ws", "") else f" ({kind})"),
                route.get("requests"),
                route.get("failures"),
                route.get("p50"),
                route.get("p95"),
                route.get("p99"),
                route.get("rate"),
            ]
        )
    return rows


def _knee_blocks(name: str, knee: dict[str, Any]) -> list[Block]:
    steps = [_dict(s) for s in _list(knee.get("steps"))]
    best = _dict(knee.get("knee"))
    why = _text(knee.get("stopped_because"))
    headline = (
        f"knee: {_text(best.get('asked_rate'))} req/s with {_text(best.get('users'))} users "
        f"(p95 {_text(best.get('p95'))} ms); {why}"
        if best
        else f"knee: no step passed; {why}"
    )
    rows = [
        [
            _step_number(s),
            s.get("asked_rate"),
            s.get("achieved_rate"),
            s.get("users"),
            s.get("p95"),
            _pct(s.get("failure_ratio")),
            ("pass " if s.get("passed") is True else "FAIL ") + _text(s.get("why")),
        ]
        for s in steps
    ]
    columns = ["step", "asked req/s", "achieved", "users", "p95 ms", "failures", "result"]
    return [Paragraph(headline), Table(columns, rows, caption=f"{name} knee search")]


def _result_blocks(name: str, result: dict[str, Any]) -> list[Block]:
    verdict = "passed" if result.get("passed") is True else "FAILED"
    cpu = _num(result.get("cpu_max"))
    blocks: list[Block] = [
        Paragraph(
            f"{name} ({_text(result.get('host'))}): {verdict}, "
            f"{_text(result.get('achieved_rate'))} of {_text(result.get('asked_rate'))} req/s, "
            f"{_text(result.get('http_users'))} users + {_text(result.get('ws_users'))} "
            f"WebSocket, {_text(result.get('window_s'))} s measured"
            + ("" if cpu is None else f", Locust CPU max {cpu:.0f} %")
            + "."
        )
    ]
    failed = [g for g in map(_dict, _list(result.get("gates"))) if g.get("passed") is not True]
    if failed:
        blocks.append(
            Bullets(
                [f"gate {_text(g.get('name'))} failed: {_text(g.get('detail'))}" for g in failed]
            )
        )
    else:
        blocks.append(Paragraph("every load gate passed"))
    rows = _route_rows(result)
    if rows:
        columns = ["route", "requests", "failures", "p50 ms", "p95 ms", "p99 ms", "req/s"]
        blocks.append(Table(columns, rows, caption=f"{name} per route"))
    return blocks


def _latency_series(name: str, result: dict[str, Any]) -> report_plots.LatencySeries:
    knee = _dict(result.get("knee"))
    if knee:
        steps = [_dict(s) for s in _list(knee.get("steps"))]
        rates = [_num(s.get("asked_rate")) or 0.0 for s in steps]
        p95 = [_num(s.get("p95")) or 0.0 for s in steps]
        return report_plots.LatencySeries(name, rates, [], p95, [])
    points = [_dict(p) for p in _list(result.get("series")) if _dict(p).get("requests")]

    def values(key: str) -> list[float]:
        return [_num(p.get(key)) or 0.0 for p in points]

    return report_plots.LatencySeries(
        name, values("t"), values("p50"), values("p95"), values("p99")
    )


def load_section(loadtest: tuple[str, dict[str, Any]] | None, plots: dict[str, str]) -> Section:
    section = Section("Load results")
    if loadtest is None:
        section.blocks.append(
            Paragraph(NOT_RUN + ": ./start.sh loadtest --target gateway", "muted")
        )
        return section
    folder, document = loadtest
    section.blocks.append(Paragraph(f"The latest run: {folder}.", "muted"))
    results = {name: _dict(raw) for name, raw in _dict(document.get("results")).items()}
    if not results:
        section.blocks.append(Paragraph("the run holds no result", "muted"))
        return section
    for name, result in results.items():
        section.blocks += _result_blocks(name, result)
        knee = _dict(result.get("knee"))
        if knee:
            section.blocks += _knee_blocks(name, knee)
    series = [_latency_series(name, result) for name, result in results.items()]
    if any(s.x for s in series):
        knee_mode = any(_dict(r.get("knee")) for r in results.values())
        p95_gate = _safe_float(_dict(document.get("config")).get("LOADTEST_P95_MS"))
        svg = report_plots.latency_plot(series, p95_gate, knee_mode)
        plots[LATENCY_PLOT] = svg
        caption = "load test latency: p50, p95 and p99 against the p95 gate"
        section.blocks.append(Plot(svg, LATENCY_PLOT, caption))
    return section


def _step_number(step: dict[str, Any]) -> int | None:
    index = _num(step.get("index"))
    return None if index is None else int(index) + 1


def _safe_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# Figures a reader of a benchmark looks for first: speed and latency, then errors.
HEADLINE_KEY = re.compile(
    r"(?:^|_)(?:rate|ratio|rps|latency|added|cpu|p50|p95|p99)|per_second|_ms$", re.I
)
BENCH_SKIP = {
    "count", "warmup", "cpus", "concurrency", "clients", "workers_each", "ok", "targets",
    "status_counts",
}  # fmt: skip


def _numbers(value: dict[str, Any]) -> str:
    return ", ".join(f"{k} {_num(v):g}" for k, v in value.items() if _num(v) is not None)


def _headline_figures(document: dict[str, Any], limit: int = 6) -> list[str]:
    """A bench JSON's figures: its top-level numbers, then small objects of numbers (one or two
    levels deep, as `added` → case → p50_ms in the gateway benchmark)."""
    figures: list[tuple[int, str]] = []
    for key, value in document.items():
        if key in BENCH_SKIP:
            continue
        rank = 0 if HEADLINE_KEY.search(key) else 1 if key in ("errors", "failures") else 2
        if _num(value) is not None:
            figures.append(
                (rank, f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}")
            )
        elif isinstance(value, dict) and 0 < len(value) <= 6:
            if _numbers(value):
                figures.append((rank, f"{key}: {_numbers(value)}"))
            for name, inner in value.items():
                if isinstance(inner, dict) and _numbers(inner):
                    figures.append((rank, f"{key} {name}: {_numbers(inner)}"))
    figures.sort(key=lambda item: item[0])  # stable: the file's order within a rank
    return [text for _, text in figures[:limit]]


def bench_section(benches: list[tuple[str, dict[str, Any]]]) -> Section:
    section = Section("Benchmarks")
    if not benches:
        section.blocks.append(Paragraph(NOT_RUN + ": ./start.sh bench", "muted"))
        return section
    rows = []
    for name, document in benches:
        passed = document.get("passed")
        rows.append(
            [
                name,
                _text(document.get("at")),
                None if passed is None else ("pass" if passed is True else "FAIL"),
                "; ".join(_headline_figures(document)) or None,
            ]
        )
    section.blocks.append(Table(["benchmark", "at", "result", "figures"], rows))
    return section


def screenshots_section(screenshots: list[Path], reports_dir: Path) -> Section:
    section = Section("Screenshots")
    if not screenshots:
        section.blocks.append(Paragraph(NOT_RUN + ": none under reports/screenshots/", "muted"))
        return section
    for path in screenshots:
        link = path.relative_to(reports_dir).as_posix()
        try:
            size = path.stat().st_size
            data = path.read_bytes() if size <= SCREENSHOT_MAX_BYTES else b""
        except OSError:
            continue
        if data:
            section.blocks.append(Image(data, link, path.name))
        else:
            section.blocks.append(Paragraph(f"{path.name}: too large to embed; see {link}"))
    return section


# --- the command ------------------------------------------------------------------------------


def _scrub(block: Block, scrub: Callable[[str], str]) -> Block:
    """Free text of a block redacted (plots and images are made by us, not from sources)."""
    if isinstance(block, Paragraph):
        return Paragraph(scrub(block.text), block.tone)
    if isinstance(block, Bullets):
        return Bullets([scrub(item) for item in block.items])
    if isinstance(block, Table):
        rows = [[scrub(c) if isinstance(c, str) else c for c in row] for row in block.rows]
        return Table(block.columns, rows, scrub(block.caption))
    if isinstance(block, Code):
        return Code(scrub(block.title), scrub(block.text))
    return block


def build(settings: OpsSettings, sources: Sources) -> tuple[Report, dict[str, str]]:
    """The report and its plot files (name → SVG)."""
    secrets = known_secrets(settings)
    plots: dict[str, str] = {}
    state = sources.state
    verdict = judge(state)
    sections = [
        phases_section(state),
        diffs_section(sources.shadow, state, secrets),
        contract_section(sources.contract),
        gates_section(state, plots),
        load_section(sources.loadtest, plots),
        bench_section(sources.benches),
        screenshots_section(sources.screenshots, settings.reports_dir),
    ]
    if sources.problems:
        sections.append(Section("Sources left out", [Bullets(sources.problems)]))

    def scrub(text: str) -> str:
        return redact_text(text, secrets)

    for section in sections:
        section.blocks = [_scrub(block, scrub) for block in section.blocks]
    report = Report(
        title="Cutover report",
        verdict=verdict.status,
        headline=scrub(verdict.headline),
        reasons=[scrub(r) for r in verdict.reasons],
        generated_at=now_iso(),
        sections=sections,
    )
    return report, plots


def write_report(settings: OpsSettings) -> tuple[Report, list[Path]]:
    """Build the report from the var dir and write both files (and the plots next to them)."""
    report, plots = build(settings, read_sources(settings))
    secrets = known_secrets(settings)
    folder = settings.reports_dir
    written = []
    for name, text in (
        (MARKDOWN_NAME, render_markdown(report)),
        (HTML_NAME, render_html(report)),
        *plots.items(),
    ):
        path = folder / name
        # A last pass over the finished text: a known secret never survives, wherever it hid.
        write_atomic(path, redact_text(text, secrets).encode("utf-8"))
        written.append(path)
    for name in (CANARY_PLOT, LATENCY_PLOT):
        if name not in plots:
            (folder / name).unlink(missing_ok=True)  # a plot of an earlier report, now stale
    return report, written


def report_command(settings: OpsSettings) -> int:
    """The body of `./start.sh report`: exit 0 with whatever has been recorded."""
    from ops.cli import EXIT_DONE, PreconditionError, _next, _shown, out  # it imports this module

    if not settings.var_dir.is_dir():
        raise PreconditionError(
            f"{_shown(settings, settings.var_dir)} does not exist: nothing has run here yet",
            "./start.sh setup",
        )
    report, written = write_report(settings)
    style = {"pass": "bold green", "fail": "bold red"}.get(report.verdict, "bold yellow")
    out.print(
        Text("verdict: ", style="bold")
        + Text(report.verdict.upper(), style=style)
        + Text(f" — {report.headline}")
    )
    for reason in report.reasons:
        out.print(Text(f"  {reason}"))
    missing = list(sections_missing(report))
    if missing:
        out.print(Text(f"  not run yet: {', '.join(missing)}", style="dim"))
    markdown, page = written[0], written[1]
    out.print(
        f"[green]✓[/] wrote {_shown(settings, markdown)} and {_shown(settings, page)}"
        + (f" (+ {len(written) - 2} plots)" if len(written) > 2 else "")
    )
    _next(f"open {_shown(settings, page)}", "./start.sh status")
    return EXIT_DONE


def sections_missing(report: Report) -> Iterable[str]:
    """The titles of sections that have nothing yet (for the operator's summary)."""
    for section in report.sections:
        first = section.blocks[0] if section.blocks else None
        if isinstance(first, Paragraph) and first.text.startswith(NOT_RUN):
            yield section.title
