"""The load test's gates on synthetic statistics: each gate passes a healthy run and fails its
own kind of bad run, naming what failed. No Locust here (importing it patches the process)."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import pytest

from contract.environment import SettingsError
from loadtests import gates
from loadtests.gates import (
    GateConfig,
    KneeSearch,
    Measured,
    Recorder,
    RouteStats,
    RunConfig,
    Timeline,
    build_result,
    decode_result,
    evaluate,
    failed_gates,
    judge_step,
    percentile,
    routes_from_stats,
)

QUOTE = "/api/v1/market-data/[symbol]"
HISTORY = "/api/v1/market-data/[symbol]/historical"


def route(
    name: str,
    times: dict[int, int],
    failures: int = 0,
    method: str = "GET",
) -> RouteStats:
    count = sum(times.values())
    return RouteStats(
        method=method,
        name=name,
        requests=count,
        failures=failures,
        histogram=times,
        total_ms=float(sum(ms * n for ms, n in times.items())),
        max_ms=float(max(times, default=0)),
    )


def healthy_routes() -> list[RouteStats]:
    return [
        route(QUOTE, {5: 900, 20: 90, 60: 10}),
        route(HISTORY, {8: 60, 30: 5}),
        route("/api/v1/auth/login", {300: 5}, method="POST"),
        route(gates.WS_CONNECT, {9: 2}, method="WS"),
        route(gates.WS_PUSH, {1000: 40}, method="WS"),
    ]


def measured(**changes: object) -> Measured:
    base: dict[str, object] = {
        "routes": healthy_routes(),
        "asked_rate": 50.0,
        "achieved_rate": 49.5,
        "cpu_max": 20.0,
        "ws_users": 2,
    }
    base.update(changes)
    return Measured(**base)  # type: ignore[arg-type]


def failing(found: list[gates.Gate]) -> list[str]:
    return [g.name for g in failed_gates(found)]


def test_percentile_follows_locusts_rule() -> None:
    # 5 of 100 at 200 ms: Locust's p95 is 200 (the slowest 5 % are not excluded, they are in).
    assert percentile({10: 95, 200: 5}, 0.95) == 200
    assert percentile({10: 96, 200: 4}, 0.95) == 10
    assert percentile({}, 0.95) == 0
    assert percentile({7: 1}, 0.5) == 7


def test_a_healthy_run_passes_every_gate() -> None:
    found = evaluate(measured(), GateConfig())
    assert failing(found) == []
    names = [g.name for g in found]
    assert "p95 overall" in names
    assert f"p95 GET {QUOTE}" in names
    assert f"p95 GET {HISTORY}" in names
    thin = next(g for g in found if g.name == "p95 of thin routes")
    assert "WS /ws connect (2)" in thin.detail  # 2 connects: too few for a p95 of their own


def test_a_route_is_judged_on_its_own_p95_only_with_enough_requests() -> None:
    writes = "/api/v1/watchlists/[name]"
    # 7 slow writes among 1,000 fast reads: their p95 would be their maximum; they count in the
    # overall p95 (which stays fast) but are not judged alone.
    few = [*healthy_routes(), route(writes, {150: 7}, method="PUT")]
    assert failing(evaluate(measured(routes=few), GateConfig())) == []
    many = [*healthy_routes(), route(writes, {150: gates.MIN_ROUTE_SAMPLES}, method="PUT")]
    assert failing(evaluate(measured(routes=many), GateConfig())) == [f"p95 PUT {writes}"]


def test_setup_and_push_intervals_are_not_gated_for_latency() -> None:
    names = [g.name for g in evaluate(measured(), GateConfig())]
    assert "p95 POST /api/v1/auth/login" not in names  # argon2 by design
    assert f"p95 WS {gates.WS_PUSH}" not in names  # the feed's pace, not a latency


def test_a_slow_route_fails_its_own_gate_and_the_overall_one() -> None:
    routes = healthy_routes()
    routes[1] = route(HISTORY, {150: 60, 30: 5})
    found = evaluate(measured(routes=routes), GateConfig())
    assert failing(found) == ["p95 overall", f"p95 GET {HISTORY}"]
    slow = next(g for g in found if g.name == f"p95 GET {HISTORY}")
    assert slow.value == 150
    assert "150 ms" in slow.detail


def test_the_p95_threshold_comes_from_configuration() -> None:
    found = evaluate(measured(), GateConfig(p95_ms=15))
    assert f"p95 GET {QUOTE}" in failing(found)


def test_failures_over_the_ratio_fail() -> None:
    routes = healthy_routes()
    routes[0] = route(QUOTE, {5: 1000}, failures=50)
    found = evaluate(measured(routes=routes), GateConfig())
    assert failing(found) == ["failures"]
    assert "50 of" in next(g for g in found if g.name == "failures").detail


def test_a_failed_setup_request_counts_as_a_failure() -> None:
    routes = healthy_routes()
    routes[2] = route("/api/v1/auth/login", {300: 1000}, failures=5, method="POST")
    assert "failures" in failing(evaluate(measured(routes=routes), GateConfig()))


def test_under_ninety_percent_of_the_asked_rate_fails() -> None:
    assert failing(evaluate(measured(achieved_rate=44.0), GateConfig())) == ["arrival rate"]
    assert failing(evaluate(measured(achieved_rate=45.0), GateConfig())) == []


def test_a_cpu_bound_load_generator_fails_the_run() -> None:
    found = evaluate(measured(cpu_max=97.0), GateConfig())
    assert failing(found) == ["load generator CPU"]
    assert "measure Locust" in next(g for g in found if not g.passed).detail
    unsampled = evaluate(measured(cpu_max=None), GateConfig())
    assert failing(unsampled) == []


def test_zero_requests_is_a_failure() -> None:
    found = evaluate(measured(routes=[], achieved_rate=0.0), GateConfig())
    assert "requests" in failing(found)
    assert "arrival rate" in failing(found)


def test_websocket_disconnects_fail_and_so_does_no_connection() -> None:
    routes = [*healthy_routes(), route(gates.WS_DISCONNECT, {0: 1}, failures=1, method="WS")]
    assert "websocket disconnects" in failing(evaluate(measured(routes=routes), GateConfig()))
    allowed = GateConfig(max_ws_disconnects=1)
    assert "websocket disconnects" not in failing(evaluate(measured(routes=routes), allowed))
    silent = [r for r in healthy_routes() if r.method != "WS"]
    assert "websocket disconnects" in failing(evaluate(measured(routes=silent), GateConfig()))
    no_ws = evaluate(measured(routes=silent, ws_users=0), GateConfig())
    assert "websocket disconnects" not in [g.name for g in no_ws]


def test_a_setup_problem_is_a_gate() -> None:
    found = evaluate(measured(setup_problem="3 of 5 users logged in within 60 s"), GateConfig())
    assert failing(found) == ["setup"]


def test_thresholds_come_from_the_environment() -> None:
    config = GateConfig.from_env(
        {
            "LOADTEST_P95_MS": "250",
            "LOADTEST_MAX_FAILURE_RATIO": "0.01",
            "LOADTEST_MIN_RATE_RATIO": "",
        }
    )
    assert config == GateConfig(p95_ms=250.0, max_failure_ratio=0.01)
    with pytest.raises(SettingsError, match="LOADTEST_MAX_FAILURE_RATIO"):
        GateConfig.from_env({"LOADTEST_MAX_FAILURE_RATIO": "lots"})
    with pytest.raises(SettingsError, match="LOADTEST_P95_MS"):
        GateConfig.from_env({"LOADTEST_P95_MS": "0"})


def test_the_run_configuration_survives_the_environment() -> None:
    config = RunConfig(
        mode="knee", rate=120.5, http_users=30, ws_users=3, accounts=8, run_id="r1",
        gates=GateConfig(p95_ms=80.0),
    )  # fmt: skip
    assert RunConfig.from_env(config.env()) == config
    with pytest.raises(SettingsError, match="LOADTEST_MODE"):
        RunConfig.from_env({"LOADTEST_MODE": "soak"})


def test_the_timeline_counts_whole_seconds_only() -> None:
    timeline = Timeline()
    for second in range(100, 110):
        for _ in range(20):
            timeline.record(second + 0.5, 12.0, failed=False)
    timeline.record(104.2, 500.0, failed=True)
    window = timeline.window(101.3, 108.7)  # whole seconds 102..107
    assert window.seconds == 6
    assert window.requests == 121
    assert window.failures == 1
    assert window.rate == pytest.approx(121 / 6)
    assert window.p(0.5) == 12
    series = timeline.series(100.0, 110.0)
    assert len(series) == 10
    assert series[4].p99 == 500
    assert len(timeline.series(100.5, 110.0)) == 9  # a partial second would show a false dip


def test_routes_are_read_from_locusts_statistics() -> None:
    entry = SimpleNamespace(
        method="GET",
        name=QUOTE,
        num_requests=3,
        num_failures=1,
        response_times={4: 2, 9: 1},
        total_response_time=17,
        max_response_time=9,
    )
    empty = SimpleNamespace(method="GET", name="/x", num_requests=0)
    stats = SimpleNamespace(entries={("a", "GET"): entry, ("b", "GET"): empty})
    (only,) = routes_from_stats(stats)
    assert (only.label, only.requests, only.failures, only.p(0.95)) == (f"GET {QUOTE}", 3, 1, 9)


def step_window(rate: float, latency: int, seconds: int = 5) -> gates.Window:
    requests = int(rate * seconds)
    return gates.Window(seconds, requests, 0, Counter({latency: requests}))


def test_the_knee_is_the_highest_step_before_the_first_failure() -> None:
    config = RunConfig(mode="knee", rate=100, step_rate=100, max_steps=10)
    search = KneeSearch(config)
    assert search.record(judge_step(0, 100, 20, step_window(100, 20), 30.0, config.gates))
    assert search.record(judge_step(1, 200, 20, step_window(199, 60), 40.0, config.gates))
    assert not search.record(judge_step(2, 300, 20, step_window(290, 130), 50.0, config.gates))
    knee = search.knee
    assert knee is not None
    assert knee.asked_rate == 200
    assert "p95 130 ms" in search.stopped_because


def test_a_step_fails_on_rate_or_cpu_too() -> None:
    config = GateConfig()
    assert "achieved" in judge_step(0, 100, 10, step_window(80, 10), 10.0, config).why
    assert "CPU" in judge_step(0, 100, 10, step_window(100, 10), 95.0, config).why


def test_a_search_whose_last_step_passes_says_the_knee_lies_higher() -> None:
    config = RunConfig(mode="knee", max_steps=1)
    search = KneeSearch(config)
    assert not search.record(judge_step(0, 50, 5, step_window(50, 5), None, config.gates))
    assert search.knee is not None
    assert "lies higher" in search.stopped_because


def test_the_result_document_round_trips_and_carries_the_verdict() -> None:
    recorder = Recorder(window_start=100.0, window_end=110.0)
    for second in range(100, 110):
        for _ in range(10):
            recorder.timeline.record(second + 0.1, 5.0, failed=False)
    result = build_result(
        RunConfig(rate=10.0, ws_users=0), "http://x", healthy_routes(), recorder, 111.0
    )
    assert result.passed
    assert result.achieved_rate == 10.0
    again = decode_result(gates.msgspec.json.encode(result))
    assert again == result
    slow = build_result(
        RunConfig(rate=50.0, ws_users=0), "http://x", healthy_routes(), recorder, 111.0
    )
    assert not slow.passed
    assert [g.name for g in failed_gates(slow.gates)] == ["arrival rate"]
