"""`./start.sh report`: the cutover report from a var dir the phases left behind.

The sources are made by the real producers where that is cheap (the state store and its gate
records, the differ's document, the load test's result builder, the market-data benchmark's
result type) and by hand in the producers' shapes otherwise (the contract summary, the canary
record). Secrets are planted where they might leak; neither output may hold them.
"""

from __future__ import annotations

import json
import secrets
import struct
import zlib
from dataclasses import asdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import msgspec
import pytest
from typer.testing import CliRunner

from loadtests.bench.market_data import BenchResult
from loadtests.gates import Recorder, RouteStats, RunConfig, build_result
from ops.cli import app
from ops.gateway.admin import GatewayMetrics
from ops.gateway.differ import Answer, Differ, RequestCopy, Rule
from ops.state import CutoverState, HistoryEntry, gate_record
from tests.conftest import Env, run_cli

QUOTE = "/api/v1/market-data/{symbol}"
HISTORY = "/api/v1/market-data/{symbol}/historical"
# Known to the installation (.env): redacted wherever they appear, even in bare text.
DEMO_PASSWORD = "demo-" + secrets.token_hex(8)
ADMIN_TOKEN = secrets.token_urlsafe(24)
# Known to no file: only its position (a header, a field, `token=`) can give it away.
STRAY_TOKEN = "eyJhbGciOiJIUzI1NiJ9." + secrets.token_urlsafe(18) + "." + secrets.token_urlsafe(8)
STRAY_PASSWORD = "pw-" + secrets.token_hex(10)


def _answer(status: int, body: dict[str, Any]) -> Answer:
    return Answer(status, (("content-type", "application/json"),), json.dumps(body).encode())


def shadow_document() -> dict[str, Any]:
    """The differ's own document after 60 quotes (all equal) and 60 history reads (3 differ),
    judged as `./start.sh shadow --threshold 10%` does."""

    async def never(*_: Any) -> Answer:
        raise AssertionError("not sent in this test")

    rules = [Rule(route="*", field="body.timestamp", reason="each backend stamps its own time")]
    differ = Differ(rules, never, GatewayMetrics())
    headers = (("authorization", f"Bearer {STRAY_TOKEN}"), ("cookie", f"sid={STRAY_TOKEN}"))
    for index in range(60):
        request = RequestCopy("GET", f"/api/v1/market-data/SPY?n={index}", QUOTE, headers, b"")
        body = {"symbol": "SPY", "price": 500.25, "timestamp": index}
        differ.record(request, _answer(200, body), _answer(200, {**body, "timestamp": -index}))
    for index in range(60):
        path = f"/api/v1/market-data/SPY/historical?period=1h&token={STRAY_TOKEN}"
        request = RequestCopy("GET", path, HISTORY, headers, b"")
        primary = {"symbol": "SPY", "data": [{"close": 1.5, "volume": 100}]}
        candidate = {"symbol": "SPY", "data": [{"close": 1.5, "volume": 100 + (index < 3)}]}
        differ.record(request, _answer(200, primary), _answer(200, candidate))
    differ.sent = 120  # as the workers count the copies they compared
    document = differ.document(min_samples=50, threshold=0.1)
    # A sample as a careless producer might have kept it: secrets in the clear.
    history = next(r for r in document["routes"] if r["route"] == HISTORY)
    history["samples"][0]["primary"]["body"] = {
        "password": STRAY_PASSWORD,
        "note": f"Authorization: Bearer {STRAY_TOKEN}",
    }
    return document


def state_document(*, canary_passed: bool = True) -> dict[str, Any]:
    state = CutoverState(phase="canary", mode="canary", weight=25)
    for command, outcome, at, detail in (
        ("setup", "done", "2026-11-22T10:00:00.000Z", "kept .env; imports ok"),
        ("simple", "done", "2026-11-22T10:00:05.000Z", "started (pid 41) in 0.52 s"),
        ("shadow", "failed", "2026-11-22T10:02:00.000Z", f"login with {DEMO_PASSWORD} refused"),
        ("shadow", "done", "2026-11-22T10:04:00.000Z", "passed: 2 routes under 10.00%"),
        (
            "loadtest",
            "done",
            "2026-11-22T10:06:00.000Z",
            f"admin token {ADMIN_TOKEN} used <script>x()</script>",
        ),
        ("canary", "done", "2026-11-22T10:09:00.000Z", f"password={STRAY_PASSWORD}"),
    ):
        state.history.append(HistoryEntry(command, outcome, at, detail))  # type: ignore[arg-type]
    state.gates["imports"] = gate_record(True, "all packages import")
    state.gates["shadow"] = gate_record(True, "2 routes under 10.00%", threshold=0.1)
    state.gates["loadtest-gateway"] = gate_record(
        True, f"all gates pass (Authorization: Bearer {STRAY_TOKEN})", asked_rate=50.0
    )
    state.gates["canary"] = gate_record(
        canary_passed, "held every step" if canary_passed else "p95 over 100 ms twice"
    )
    document: dict[str, Any] = msgspec.to_builtins(state)
    document["canary"] = {
        "status": "running",
        "steps": [5, 25, 50, 100],
        "step": 1,
        "weight": 25,
        "settings": {"p95_ms": 100, "success_rate": 0.999, "diff_rate": 0.01, "dry_run": False},
        "reason": f"token={STRAY_TOKEN}",
        "intervals": [
            {
                "at": f"2026-11-22T10:0{6 + i // 4}:{(i % 4) * 15:02d}.000Z",
                "weight": 5 if i < 4 else 25,
                "samples": 240 + i,
                "success_rate": 1.0 if i != 5 else 0.99,
                "p95_ms": 40.0 + i * 3 if i != 6 else 180.0,
                "diff_rate": 0.0,
                "compared": 60,
                "step": 0 if i < 4 else 1,
                "mock": {"samples": 900, "success_rate": 1.0, "p95_ms": 30.0},
                "verdict": "breach" if i in (5, 6) else "pass",
                "reasons": ["success rate 99.00% < 99.90%"] if i == 5 else [],
            }
            for i in range(8)
        ],
    }
    return document


def loadtest_summary() -> dict[str, Any]:
    """The document loadtests/run.py writes, its result built by the load test's own code."""
    config = RunConfig(rate=50.0, http_users=20, ws_users=0, duration_s=10.0)
    recorder = Recorder()
    recorder.window_start, recorder.window_end = 1000.0, 1010.0
    for second in range(1000, 1010):
        for index in range(50):
            recorder.timeline.record(second + index / 50, 20.0 + index % 7, False)
    routes = [
        RouteStats("GET", "/api/v1/market-data/[symbol]", 400, 0, {20: 300, 30: 90, 60: 10}),
        RouteStats("GET", "/api/v1/signals/[symbol]", 100, 0, {40: 90, 80: 10}),
    ]
    result = build_result(config, "http://127.0.0.1:8000", routes, recorder, 1010.0)
    return {
        "config": config.env(),
        "results": {"gateway": msgspec.to_builtins(result)},
        "plots": ["latency.png", "throughput.png"],
    }


def contract_summary() -> dict[str, Any]:
    return {
        "suites": [
            {
                "target": "mock",
                "passed": 41,
                "failed": 0,
                "errors": 0,
                "skipped": 2,
                "seconds": 3.2,
                "junit": "suite-mock.xml",
            },
        ],
        "schemathesis": {
            "seed": 42,
            "examples": 25,
            "cases": {"mock": 612},
            "operations": ["GET /api/v1/symbols"],
            "left_out": {},
            "checks": {"mock": {"not_a_server_error": {"examples": 612, "failures": 0}}},
            "failures": [],
            "disagreements": [],
            "compared": 0,
            "rate_limited": 0,
        },
    }


def gateway_bench() -> dict[str, Any]:
    """loadtests/bench/gateway.py's document (its to_json), the parts a reader looks at."""
    case = {"requests": 24000, "errors": 0, "p50_ms": 1.2, "p99_ms": 4.0}
    return {
        "benchmark": "gateway",
        "at": "2026-11-22T10:08:00.000Z",
        "capacity_rps": 2400.0,
        "rate": 1200.0,
        "duration_s": 20.0,
        "cases": [{"name": "direct to the mock", **case}],
        "added": {
            "gateway, direct mode": {"p50_ms": 0.41, "p99_ms": 2.2},
            "gateway, shadow mode": {"p50_ms": 0.63, "p99_ms": 3.1},
        },
        "targets": {"direct_mode_added_p50_ms": 1.0, "direct_mode_added_p99_ms": 5.0},
        "passed": True,
    }


def png_1x1() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x20\x80\xc0"))
        + chunk(b"IEND", b"")
    )


def write_var(env: Env, *, canary_passed: bool = True) -> Path:
    var = Path(env["CUTOVER_VAR_DIR"])
    reports = var / "reports"
    (reports / "screenshots").mkdir(parents=True)
    Path(env["CUTOVER_ENV_FILE"]).write_text(
        f"DEMO_PASSWORD={DEMO_PASSWORD}\nADMIN_TOKEN={ADMIN_TOKEN}\n", encoding="utf-8"
    )
    (var / "state.json").write_text(json.dumps(state_document(canary_passed=canary_passed)))
    (reports / "shadow-diffs.json").write_text(json.dumps(shadow_document()))
    (reports / "contract-20261122-100100-ab12").mkdir()
    (reports / "contract-20261122-100100-ab12" / "summary.json").write_text(
        json.dumps(contract_summary())
    )
    for stamp in ("20261122-100000-aaaa", "20261122-100500-bbbb"):
        (reports / f"loadtest-{stamp}").mkdir()
        summary = loadtest_summary()
        if stamp.endswith("aaaa"):  # an older run: the report must show the newer one
            summary["results"] = {"old-run": summary["results"]["gateway"]}
        (reports / f"loadtest-{stamp}" / "summary.json").write_text(json.dumps(summary))
    bench = BenchResult(
        benchmark="market-data", target="http://127.0.0.1:8001", path="/api/v1/market-data/SPY",
        started_own_mock=True, count=500, warmup=50, ok=500, errors=0,
        status_counts={"200": 500}, duration_s=0.61, requests_per_second=819.7,
        latency_ms={"p50": 1.1, "p90": 1.6, "p99": 2.9, "max": 7.5},
        mock_start_seconds=1.4, at="2026-11-22T10:07:00.000Z",
    )  # fmt: skip
    (reports / "bench-market-data.json").write_text(json.dumps(asdict(bench)))
    (reports / "bench-gateway.json").write_text(json.dumps(gateway_bench()))
    (reports / "bench-broken.json").write_text("{ not json")
    (reports / "screenshots" / "dashboard-after-promote.png").write_bytes(png_1x1())
    return reports


class WellFormed(HTMLParser):
    """Checks that every element is closed in order (void and self-closed ones aside)."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()


def parse_html(text: str) -> WellFormed:
    parser = WellFormed()
    parser.feed(text)
    parser.close()
    return parser


def report_in_process(env: Env) -> tuple[int, str]:
    """The Typer app in this process (matplotlib imported once): exit code and output."""
    result = CliRunner().invoke(app, ["report"], env=env)
    return result.exit_code, result.output


def outputs(reports: Path) -> dict[str, str]:
    return {
        path.name: path.read_text(encoding="utf-8")
        for path in sorted(reports.glob("cutover-report*"))
    }


def test_the_report_shows_every_section_with_its_figures_and_no_secret(cli_env: Env) -> None:
    reports = write_var(cli_env)

    result = run_cli(cli_env, "report")

    assert result.returncode == 0, result.stderr
    assert "verdict: PASS" in result.stdout
    files = outputs(reports)
    assert set(files) == {
        "cutover-report.md",
        "cutover-report.html",
        "cutover-report-canary.svg",
        "cutover-report-latency.svg",
    }
    markdown, page = files["cutover-report.md"], files["cutover-report.html"]
    assert "**Verdict: PASS** — all 4 gates passed" in markdown
    # An earlier failure that was run again is told, not hidden.
    assert "failed earlier, then run again and done: shadow" in markdown
    for title in (
        "Phases run",
        "Shadow diffs",
        "Contract runs",
        "Gate verdicts over time",
        "Load results",
        "Benchmarks",
        "Screenshots",
    ):
        assert f"## {title}" in markdown
        assert f"<h2>{title}</h2>" in page
    # Phases: each command with its outcome, and a duration where the detail gives one.
    assert "| simple | done | 2026-11-22T10:00:05.000Z | 0.52 s |" in markdown
    # The diff table: the equal route passes; the drifted route counts 3 of 60 with its field.
    assert f"| {QUOTE} | 60 | 0 | - | 0.00 % | pass |" in markdown
    assert f"| {HISTORY} | 60 | 3 | - | 5.00 % | pass |" in markdown
    assert "diff rate ≤ 10.00 % per route with at least 50 compared requests" in markdown
    assert "body.data[*].volume: changed 3" in markdown
    assert f"{HISTORY}, sample 1" in markdown
    assert "body.timestamp" in markdown  # the ignore rule in force, with its reason
    # The contract run and the canary's intervals against the gates.
    assert "| mock | 41 | 0 | 0 | 2 | 3.2 |" in markdown
    assert "Canary: running, steps 5, 25, 50, 100, weight 25 %" in markdown
    assert "8 intervals: 6 pass, 2 breach" in markdown
    assert "| 180 |" in markdown
    # The newest load test only, per route, and the benchmark's headline figures.
    assert "loadtest-20261122-100500-bbbb" in markdown
    assert "old-run" not in markdown
    assert "| GET /api/v1/market-data/[symbol] | 400 | 0 | 20 | 30 | 60 |" in markdown
    assert "requests_per_second 819.7" in markdown
    assert "latency_ms: p50 1.1, p90 1.6, p99 2.9, max 7.5" in markdown
    assert "added gateway, direct mode: p50_ms 0.41, p99_ms 2.2" in markdown
    assert "| gateway | 2026-11-22T10:08:00.000Z | pass |" in markdown
    assert "bench-broken.json cannot be read" in markdown
    # Screenshots: linked next to the Markdown, embedded in the HTML, named by file.
    assert "![dashboard-after-promote.png](screenshots/dashboard-after-promote.png)" in markdown
    assert "data:image/png;base64," in page
    assert "![canary: p95" in markdown
    # The HTML parses, every element closed, and carries both plots inline.
    parsed = parse_html(page)
    assert parsed.errors == []
    assert parsed.stack == []
    assert parsed.tags.count("svg") == 2
    assert "p95 gate 100 ms" in page  # the threshold drawn in the canary plot, as text
    assert "mock p95 (ms), same interval" in page
    # Not one secret, planted in samples, headers, query strings, history and gate details.
    for name, text in files.items():
        for secret in (DEMO_PASSWORD, ADMIN_TOKEN, STRAY_TOKEN, STRAY_PASSWORD):
            assert secret not in text, f"{name} leaks {secret[:6]}…"
    assert "[redacted]" in markdown
    # Text from the sources is shown, never run as markup.
    assert "<script>" not in markdown
    assert "<script>" not in page
    assert "&lt;script&gt;x()" in page


def test_a_failed_gate_turns_the_verdict_to_fail_and_names_it(cli_env: Env) -> None:
    reports = write_var(cli_env, canary_passed=False)

    code, output = report_in_process(cli_env)

    assert code == 0, output
    assert "verdict: FAIL" in output
    markdown = outputs(reports)["cutover-report.md"]
    assert "**Verdict: FAIL** — 1 of 4 gates failed" in markdown
    assert "- gate canary failed: p95 over 100 ms twice" in markdown
    assert "| canary | FAIL |" in markdown


@pytest.mark.parametrize(
    "state",
    [
        {"version": 1, "phase": "simple", "history": [{"command": "simple", "outcome": "failed"}]},
        {
            "version": 1,
            "gates": ["not", "a", "dict"],
            "history": "nope",
            "canary": {"status": "paused", "intervals": [{"at": "garbage", "p95_ms": "slow"}, 3]},
        },
        {"version": 99, "phase": "from the future"},
    ],
    ids=["failed-phase", "malformed-fields", "newer-version"],
)
def test_a_partial_state_gives_a_report_not_a_crash(cli_env: Env, state: dict[str, Any]) -> None:
    var = Path(cli_env["CUTOVER_VAR_DIR"])
    var.mkdir()
    (var / "state.json").write_text(json.dumps(state))

    code, output = report_in_process(cli_env)

    assert code == 0, output
    markdown = (var / "reports" / "cutover-report.md").read_text(encoding="utf-8")
    assert "## Load results\n\n_not run yet: ./start.sh loadtest" in markdown
    assert "## Screenshots\n\n_not run yet" in markdown
    if isinstance(state.get("history"), list):
        assert "**Verdict: FAIL** — 1 phase failed (simple)" in markdown
    if "canary" in state:
        assert "Canary: paused" in markdown
    html = (var / "reports" / "cutover-report.html").read_text(encoding="utf-8")
    assert parse_html(html).errors == []


def test_without_a_var_dir_the_report_names_setup(cli_env: Env) -> None:
    result = run_cli(cli_env, "report")

    assert result.returncode == 2
    assert "./start.sh setup" in result.stderr
    assert not Path(cli_env["CUTOVER_VAR_DIR"]).exists()
