"""Backtests on real PostgreSQL and Redis with a real SAQ worker (in this process): results equal
the shared engine's, ids are per user and idempotent, cancel works in every state, and the row
is the truth when Redis loses the jobs."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta

import anyio
import pytest
import saq
from redis.asyncio import Redis
from saq import Status
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from backend.backtests.jobs import BacktestContext
from backend.backtests.queue import job_key, make_queue
from backend.backtests.service import QueuedBacktests
from backend.worker import build_worker
from contract.errors import Conflict, FieldError, NotFound
from contract.reads import HistoryReads, to_struct
from contract.types import Backtest, BacktestCreate, BacktestRequest, BacktestResult, HealthChecks
from market.backtest import run_backtest
from market.calendar import DEFAULT_ASOF
from market.history import daily_history
from mock_backend.history import GeneratedHistory
from ops import services

pytestmark = pytest.mark.anyio

SEED = 42
FINAL = ("done", "failed", "cancelled")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def checks() -> HealthChecks:
    return HealthChecks(database="ok", cache="ok", feed="n/a")


class ControlledReads(HistoryReads):
    """The generated history, with computations the test slows down or breaks, chosen by their
    initial capital (other backtests in the database run as usual)."""

    def __init__(self) -> None:
        super().__init__(GeneratedHistory(SEED, DEFAULT_ASOF, feed=False), "production", checks)
        self.delays: dict[float, float] = {}
        self.failures: dict[float, Exception] = {}
        self.runs: Counter[float] = Counter()

    async def compute_backtest(self, request: BacktestRequest) -> BacktestResult:
        self.runs[request.initial_capital] += 1
        await asyncio.sleep(self.delays.get(request.initial_capital, 0.0))
        failure = self.failures.get(request.initial_capital)
        if failure is not None:
            raise failure
        return await super().compute_backtest(request)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    created = create_async_engine(database_url)
    try:
        yield created
    finally:
        await created.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[saq.Queue]:
    made = make_queue(redis_url, name=f"bt-{uuid.uuid4().hex[:10]}")
    await made.connect()
    try:
        yield made
    finally:
        await made.disconnect()


@pytest.fixture
def reads() -> ControlledReads:
    return ControlledReads()


@pytest.fixture
def service(
    sessions: async_sessionmaker[AsyncSession], queue: saq.Queue, reads: ControlledReads
) -> QueuedBacktests:
    return QueuedBacktests(sessions, queue, reads)


MakeUser = Callable[[], Awaitable[str]]


@pytest.fixture
async def make_user(engine: AsyncEngine) -> AsyncIterator[MakeUser]:
    """Users of this test; deleted afterwards, and their backtests with them (no leftovers for
    the next test's sweeper)."""
    made: list[uuid.UUID] = []

    async def make() -> str:
        user_id = uuid.uuid4()
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO users (id, email, name, password_hash) "
                    "VALUES (:id, :email, 'Tester', 'x')"
                ),
                {"id": user_id, "email": f"{user_id.hex}@example.com"},
            )
        made.append(user_id)
        return str(user_id)

    yield make
    async with engine.begin() as connection:
        await connection.execute(text("DELETE FROM users WHERE id = ANY(:ids)"), {"ids": made})


RunWorker = Callable[[], contextlib.AbstractAsyncContextManager[saq.Worker[BacktestContext]]]


@pytest.fixture
def run_worker(
    queue: saq.Queue, sessions: async_sessionmaker[AsyncSession], reads: ControlledReads
) -> RunWorker:
    """A SAQ worker in this process (sweeper every second, no grace), stopped on exit."""

    @contextlib.asynccontextmanager
    async def running() -> AsyncIterator[saq.Worker[BacktestContext]]:
        worker = build_worker(
            queue,
            sessions,
            reads,
            concurrency=2,
            sweep_seconds=1,
            sweep_grace_seconds=0,
            shutdown_grace_seconds=2,
        )
        task = asyncio.create_task(worker.start())
        try:
            yield worker
        finally:
            await worker.stop()
            with anyio.fail_after(15):
                await task

    return running


def body(start: str = "2024-01-02", end: str = "2025-06-30", **changes: object) -> BacktestCreate:
    fields: dict[str, object] = {
        "symbol": "spy",
        "strategy": "sma_crossover",
        "start": start,
        "end": end,
        "params": {"fast": 10, "slow": 30},
    }
    return BacktestCreate(**(fields | changes))  # type: ignore[arg-type]


def epoch(day: str) -> int:
    return int(datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC).timestamp())


def engine_result(request: BacktestRequest) -> BacktestResult:
    """What market/'s engine computes for `request` over the same generated history."""
    daily = daily_history(SEED, request.symbol, DEFAULT_ASOF)
    result = run_backtest(
        daily,
        request.strategy,
        dict(request.params),
        request.initial_capital,
        epoch(request.start),
        epoch(request.end),
    )
    return to_struct(result, BacktestResult)


async def wait_status(
    service: QueuedBacktests, user: str, backtest_id: str, wanted: tuple[str, ...], within: float
) -> Backtest:
    with anyio.fail_after(within):
        while True:
            current = await service.get(user, backtest_id)
            if current.status in wanted:
                return current
            await asyncio.sleep(0.05)


async def test_a_submitted_backtest_is_computed_by_the_worker_as_the_engine_does(
    service: QueuedBacktests, make_user: MakeUser, run_worker: RunWorker
) -> None:
    user = await make_user()
    accepted = await service.submit(user, body(id="first-run"))
    assert (accepted.id, accepted.status) == ("first-run", "queued")
    assert (await service.get(user, "first-run")).status == "queued", "no worker yet"
    async with run_worker():
        final = await wait_status(service, user, "first-run", FINAL, 20)
    assert final.status == "done", final.error
    assert final.request.symbol == "SPY"
    assert final.request.params == {"fast": 10, "slow": 30, "allow_short": False}
    assert final.result == engine_result(final.request)
    assert final.result is not None
    assert final.result.trade_count == len(final.result.trades) > 0
    assert final.error is None


async def test_the_same_id_and_body_is_the_same_backtest_and_another_body_409(
    service: QueuedBacktests, make_user: MakeUser, queue: saq.Queue
) -> None:
    user = await make_user()
    named = body(id="same")
    # Concurrent duplicates (a client retrying): one row, one job, every answer a 202.
    answers = await asyncio.gather(*(service.submit(user, named) for _ in range(8)))
    assert {(a.id, a.status) for a in answers} == {("same", "queued")}
    listing = await service.of_user(user)
    assert [b.id for b in listing.backtests] == ["same"]
    assert await queue.count("queued") == 1, "duplicate enqueues collapse on the job key"
    # The same request spelled differently (case, explicit defaults) is the same backtest.
    again = body(id="same", symbol="SPY", params={"fast": 10, "slow": 30, "allow_short": False})
    assert (await service.submit(user, again)).id == "same"
    with pytest.raises(Conflict) as conflict:
        await service.submit(user, body(id="same", params={"fast": 12, "slow": 30}))
    assert conflict.value.status_code == 409
    # Racing different bodies for one id: exactly one wins, the rest are 409.
    results = await asyncio.gather(
        *(service.submit(user, body(id="race", initial_capital=1000.0 + n)) for n in range(6)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))


async def test_without_an_id_each_submission_is_new_and_listed_newest_first(
    service: QueuedBacktests, make_user: MakeUser
) -> None:
    user = await make_user()
    ids = [(await service.submit(user, body())).id for _ in range(3)]
    assert len(set(ids)) == 3
    listing = await service.of_user(user)
    assert [b.id for b in listing.backtests] == ids[::-1]
    assert all(b.status == "queued" for b in listing.backtests)


async def test_another_users_backtest_does_not_exist_for_them(
    service: QueuedBacktests, make_user: MakeUser
) -> None:
    owner, stranger = await make_user(), await make_user()
    await service.submit(owner, body(id="mine"))
    with pytest.raises(NotFound):
        await service.get(stranger, "mine")
    with pytest.raises(NotFound):
        await service.cancel(stranger, "mine")
    assert (await service.of_user(stranger)).backtests == []
    # Ids are per user: the stranger may use the same id for a different backtest.
    assert (await service.submit(stranger, body(id="mine", end="2025-01-31"))).id == "mine"
    assert (await service.get(owner, "mine")).request.end == "2025-06-30"
    with pytest.raises(NotFound):
        await service.get("not-a-uuid", "mine")


async def test_an_invalid_request_is_refused_and_nothing_is_stored(
    service: QueuedBacktests, make_user: MakeUser
) -> None:
    user = await make_user()
    with pytest.raises(FieldError):
        await service.submit(user, body(id="bad", symbol="NOPE"))
    with pytest.raises(FieldError):
        await service.submit(user, body(id="bad", start="2025-01-01", end="2024-01-01"))
    assert (await service.of_user(user)).backtests == []


async def test_cancel_a_queued_backtest(
    service: QueuedBacktests, make_user: MakeUser, queue: saq.Queue, run_worker: RunWorker
) -> None:
    user = await make_user()
    await service.submit(user, body(id="queued"))
    await service.cancel(user, "queued")
    assert (await service.get(user, "queued")).status == "cancelled"
    job = await queue.job(job_key(user, "queued"))
    assert job is not None
    assert job.status == Status.ABORTED, "the job left the queue"
    async with run_worker():
        await asyncio.sleep(1.5)
    final = await service.get(user, "queued")
    assert (final.status, final.result) == ("cancelled", None)


async def test_cancel_a_running_backtest_aborts_its_job(
    service: QueuedBacktests,
    make_user: MakeUser,
    queue: saq.Queue,
    reads: ControlledReads,
    run_worker: RunWorker,
) -> None:
    user = await make_user()
    reads.delays[7777.0] = 30.0
    await service.submit(user, body(id="long", initial_capital=7777.0))
    async with run_worker():
        await wait_status(service, user, "long", ("running",), 10)
        started = time.perf_counter()
        await service.cancel(user, "long")
        assert (await service.get(user, "long")).status == "cancelled", "at once"
        # SAQ polls for aborts each second; the bound leaves room for a busy machine.
        with anyio.fail_after(20):
            while True:
                job = await queue.job(job_key(user, "long"))
                if job is not None and job.status == Status.ABORTED:
                    break
                await asyncio.sleep(0.05)
        print(f"running job aborted {time.perf_counter() - started:.2f} s after the cancel")
    final = await service.get(user, "long")
    assert (final.status, final.result) == ("cancelled", None)


async def test_cancel_leaves_finished_backtests_unchanged(
    service: QueuedBacktests, make_user: MakeUser, reads: ControlledReads, run_worker: RunWorker
) -> None:
    user = await make_user()
    await service.submit(user, body(id="ok"))
    async with run_worker():
        done = await wait_status(service, user, "ok", FINAL, 20)
        reads.failures[6666.0] = ValueError("the engine refused")
        await service.submit(user, body(id="broken", initial_capital=6666.0))
        failed = await wait_status(service, user, "broken", FINAL, 20)
    assert done.status == "done"
    assert failed.status == "failed"
    assert failed.error is not None
    assert "the engine refused" in failed.error
    assert failed.result is None
    await service.cancel(user, "ok")
    await service.cancel(user, "broken")
    assert await service.get(user, "ok") == done
    assert await service.get(user, "broken") == failed


async def test_after_redis_loses_every_job_the_sweeper_finishes_every_backtest(
    service: QueuedBacktests,
    make_user: MakeUser,
    reads: ControlledReads,
    redis_url: str,
    run_worker: RunWorker,
) -> None:
    """FLUSHDB with one backtest queued and one running: both still complete."""
    user = await make_user()
    await service.submit(user, body(id="waiting"))
    client = Redis.from_url(redis_url)
    try:
        await client.flushdb()  # the queued job is gone
        reads.delays[5555.0] = 3.0
        await service.submit(user, body(id="busy", initial_capital=5555.0))
        async with run_worker():
            await wait_status(service, user, "busy", ("running",), 10)
            await client.flushdb()  # and now the running one's job too
            waiting = await wait_status(service, user, "waiting", FINAL, 20)
            busy = await wait_status(service, user, "busy", FINAL, 20)
    finally:
        await client.aclose()
    assert waiting.status == busy.status == "done"
    # The running one's job vanished, so the sweeper ran it again; the first run stored its
    # result, the second found the row done and discarded its own.
    assert reads.runs[5555.0] == 2
    assert waiting.result == engine_result(waiting.request)
    assert busy.result == engine_result(busy.request)


async def test_a_submit_while_redis_is_down_is_kept_and_run_later(
    sessions: async_sessionmaker[AsyncSession],
    queue: saq.Queue,
    reads: ControlledReads,
    make_user: MakeUser,
    run_worker: RunWorker,
) -> None:
    dead = make_queue(f"redis://127.0.0.1:{services.free_port()}/0", name=queue.name)
    offline = QueuedBacktests(sessions, dead, reads)
    user = await make_user()
    accepted = await offline.submit(user, body(id="kept"))
    assert accepted.status == "queued", "a 202 even without Redis: the row is the truth"
    online = QueuedBacktests(sessions, queue, reads)
    async with run_worker():
        final = await wait_status(online, user, "kept", FINAL, 20)
    assert final.status == "done"
    with contextlib.suppress(Exception):
        await dead.disconnect()


async def test_deleting_a_user_deletes_their_backtests(
    service: QueuedBacktests, make_user: MakeUser, engine: AsyncEngine, run_worker: RunWorker
) -> None:
    user = await make_user()
    await service.submit(user, body(id="gone"))
    async with engine.begin() as connection:
        await connection.execute(text("DELETE FROM users WHERE id = :id"), {"id": uuid.UUID(user)})
        count = await connection.scalar(
            text("SELECT count(*) FROM backtests WHERE user_id = :id"), {"id": uuid.UUID(user)}
        )
    assert count == 0
    async with run_worker():
        await asyncio.sleep(1.0)  # its job finds no row and does nothing
    with pytest.raises(NotFound):
        await service.get(user, "gone")


async def test_created_at_is_the_submission_time(
    service: QueuedBacktests, make_user: MakeUser
) -> None:
    user = await make_user()
    before = datetime.now(UTC) - timedelta(seconds=1)
    await service.submit(user, body(id="timed"))
    created = datetime.fromisoformat((await service.get(user, "timed")).created_at)
    assert before <= created <= datetime.now(UTC)
