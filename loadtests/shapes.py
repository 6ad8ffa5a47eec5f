"""Load shapes of `./start.sh loadtest`: a fixed arrival rate, and the step load of `--find-knee`.

Both first spawn every user and wait until each has logged in (registration and login cost
argon2 time on the server, which must not land in the measured window), then run the traffic for
a warm-up (a cold server's first answers fill its caches), then reset Locust's statistics and
start measuring. The arrival rate is set through `PACE`, which every frontend
user reads to pace itself: users stay the same, their pace rises step by step for the knee.
"""

from __future__ import annotations

import time
from typing import Any

from locust import LoadTestShape

from loadtests.gates import RECORDER, KneeSearch, Recorder, RunConfig, judge_step


class Pace:
    """The asked arrival rate of the frontend mix, shared by the shape and the users."""

    def __init__(self) -> None:
        self.rate = 1.0
        self.http_users = 1
        self.ready = 0
        self.given_up = 0

    def per_user(self) -> float:
        """Requests per second each frontend user makes now."""
        return self.rate / max(self.http_users, 1)


PACE = Pace()
CONFIG = RunConfig()


def configure(config: RunConfig) -> None:
    """Set the run's configuration (the locustfile calls this at import)."""
    global CONFIG
    CONFIG = config
    PACE.rate = config.rate
    PACE.http_users = config.http_users


class _MeasuredShape(LoadTestShape):
    """Spawn everyone, wait until the frontend users are logged in, then measure."""

    abstract = True

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.recorder: Recorder = RECORDER
        self.setup_started: float | None = None
        self.ready_at: float | None = None
        self.measure_started: float | None = None

    @property
    def total_users(self) -> int:
        return CONFIG.http_users + CONFIG.ws_users

    def _spawn(self) -> tuple[int, float]:
        return self.total_users, float(max(self.total_users, 1))

    def _stop(self, problem: str | None = None) -> None:
        if problem and self.recorder.setup_problem is None:
            self.recorder.setup_problem = problem
        self.recorder.window_end = time.time()

    def _in_setup(self) -> bool:
        """True while users are still logging in; starts the measured window when all are."""
        if self.measure_started is not None:
            return False
        now = time.time()
        if self.setup_started is None:
            self.setup_started = now
        if PACE.ready + PACE.given_up < CONFIG.http_users:
            if now - self.setup_started > CONFIG.setup_timeout_s:
                self._stop(
                    f"{PACE.ready} of {CONFIG.http_users} users logged in within "
                    f"{CONFIG.setup_timeout_s:.0f} s"
                )
                raise _SetupTimeoutError
            return True
        if PACE.ready < CONFIG.http_users:
            self.recorder.setup_problem = (
                f"{PACE.given_up} of {CONFIG.http_users} users could not log in"
            )
        if self.ready_at is None:
            self.ready_at = now
        if now - self.ready_at < CONFIG.warmup_s:
            return True
        runner: Any = self.runner
        runner.stats.reset_all()
        self.measure_started = now
        self.recorder.window_start = now
        return False


class _SetupTimeoutError(Exception):
    pass


class FixedRateShape(_MeasuredShape):
    """The asked rate for `duration` seconds once every user is logged in."""

    def tick(self) -> tuple[int, float] | None:
        try:
            if self._in_setup():
                return self._spawn()
        except _SetupTimeoutError:
            return None
        assert self.measure_started is not None
        if time.time() - self.measure_started >= CONFIG.duration_s:
            self._stop()
            return None
        return self._spawn()


class StepLoadShape(_MeasuredShape):
    """Raise the arrival rate by `step_rate` every `step_s` seconds until a step fails its gates.

    Each step is judged on its own window (after `settle_s` seconds of settling): p95 under the
    threshold, failures under their ratio, ≥ 90 % of the asked rate reached, Locust not CPU-bound.
    """

    def __init__(self) -> None:
        super().__init__()
        self.search = KneeSearch(CONFIG)
        self.recorder.knee = self.search
        self.step = 0

    def tick(self) -> tuple[int, float] | None:
        try:
            if self._in_setup():
                return self._spawn()
        except _SetupTimeoutError:
            self.search.stopped_because = "setup failed"
            return None
        assert self.measure_started is not None
        now = time.time()
        elapsed_steps = int((now - self.measure_started) // CONFIG.step_s)
        if elapsed_steps > self.step:
            start = self.measure_started + self.step * CONFIG.step_s
            end = start + CONFIG.step_s
            window = self.recorder.timeline.window(start + CONFIG.settle_s, end)
            judged = judge_step(
                self.step,
                CONFIG.step_rate_at(self.step),
                CONFIG.http_users,
                window,
                self.recorder.cpu_max(start + CONFIG.settle_s, end),
                CONFIG.gates,
            )
            print(
                f"step {self.step + 1}: asked {judged.asked_rate:.0f} req/s, achieved "
                f"{judged.achieved_rate:.0f}, p95 {judged.p95} ms: {judged.why}",
                flush=True,
            )
            if not self.search.record(judged):
                self._stop()
                return None
            self.step += 1
            PACE.rate = CONFIG.step_rate_at(self.step)
        return self._spawn()
