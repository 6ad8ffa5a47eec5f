"""Users, watchlists and recorded signals on a real PostgreSQL: the mock's identities and tokens,
rotation, tombstones, a race-safe demo user, explicit commits that fail loudly."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.db.models import GeneratedSignal, RefreshToken
from backend.db.session import create_engine, create_sessions
from backend.users.service import PgUsers, current_user_id
from backend.watchlists.service import PgWatchlists
from contract.errors import Conflict, DependencyDown, FieldError, NotFound, Unauthorized
from contract.identity import DEMO_EMAIL, decode_token, user_id_for
from contract.types import LoginRequest, UserCreate
from mock_backend.users import MemoryUsers
from ops import databases
from tests.backend.stores import fresh_database

pytestmark = pytest.mark.anyio
SECRET = "users-test-secret-key-0123456789abcdef0123456789"
SERVED = {"SPY", "AAPL", "MSFT"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def users_url(postgres_server_url: str) -> Iterator[str]:
    url, name = fresh_database(postgres_server_url)
    try:
        yield url
    finally:
        databases.drop_database(postgres_server_url, name)


@pytest.fixture
async def engine(users_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(users_url, pool_size=5)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessions(engine)


@pytest.fixture
def users(sessions: async_sessionmaker[AsyncSession]) -> PgUsers:
    return PgUsers(sessions, SECRET)


def _email(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@Example.com"


async def test_identities_and_tokens_are_the_mocks(users: PgUsers) -> None:
    email = _email("same")
    user = await users.register(UserCreate(email=email, password="password-123", name="Same"))
    assert user.id == user_id_for(email), "the id is the UUIDv5 of the lower-cased email"
    assert user.email == email.lower()
    pair = await users.login(LoginRequest(email=email.upper(), password="password-123"), "1.2.3.4")
    claims = decode_token(SECRET, pair.access_token, "access")
    assert (claims.sub, claims.email) == (user.id, email.lower())
    # A token minted by the mock with the same key is accepted here: tokens survive the cutover.
    mock = MemoryUsers(SECRET)
    await mock.register(UserCreate(email=email, password="password-123", name="Same"))
    from_mock = await mock.login(LoginRequest(email=email, password="password-123"), "x")
    principal = await users.authenticate(from_mock.access_token)
    assert principal.user_id == user.id
    assert (await users.me(principal)).name == "Same"


async def test_duplicates_wrong_passwords_and_garbage_tokens(users: PgUsers) -> None:
    email = _email("dup")
    await users.register(UserCreate(email=email, password="password-123", name="A"))
    with pytest.raises(Conflict):
        await users.register(UserCreate(email=email.upper(), password="password-456", name="B"))
    with pytest.raises(Unauthorized):
        await users.login(LoginRequest(email=email, password="wrong-password"), "x")
    with pytest.raises(Unauthorized):
        await users.login(LoginRequest(email=_email("nobody"), password="password-123"), "x")
    with pytest.raises(Unauthorized):
        await users.authenticate("not.a.token")


async def test_refresh_tokens_work_once_and_logout_revokes_them(
    users: PgUsers, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = _email("rotate")
    await users.register(UserCreate(email=email, password="password-123", name="R"))
    first = await users.login(LoginRequest(email=email, password="password-123"), "x")
    second = await users.refresh(first.refresh_token)
    with pytest.raises(Unauthorized, match="already used"):
        await users.refresh(first.refresh_token)
    other = await users.login(LoginRequest(email=email, password="password-123"), "x")
    principal = await users.authenticate(second.access_token)
    await users.logout(principal)
    for spent in (second.refresh_token, other.refresh_token):
        with pytest.raises(Unauthorized):
            await users.refresh(spent)
    async with sessions() as session:
        left = await session.scalars(
            select(RefreshToken).where(RefreshToken.user_id == uuid.UUID(principal.user_id))
        )
        assert left.all() == []


async def test_a_deleted_user_and_their_old_tokens_stay_gone(
    users: PgUsers, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = _email("gone")
    await users.register(UserCreate(email=email, password="password-123", name="G"))
    pair = await users.login(LoginRequest(email=email, password="password-123"), "x")
    principal = await users.authenticate(pair.access_token)
    watchlists = PgWatchlists(sessions, lambda: SERVED)
    await watchlists.put(principal.user_id, "mine", ["SPY"])
    await users.delete(principal)
    with pytest.raises(Unauthorized):
        await users.authenticate(pair.access_token)
    assert (await watchlists.of_user(principal.user_id)).watchlists == []
    # The same email again: a new user with the same id; the old tokens stay dead.
    await users.register(UserCreate(email=email, password="password-456", name="G2"))
    with pytest.raises(Unauthorized, match="before its user was deleted"):
        await users.authenticate(pair.access_token)
    with pytest.raises(Unauthorized):
        await users.refresh(pair.refresh_token)
    fresh = await users.login(LoginRequest(email=email, password="password-456"), "x")
    assert (await users.authenticate(fresh.access_token)).user_id == principal.user_id


async def test_the_demo_user_is_created_once_by_racing_workers(users: PgUsers) -> None:
    created: list[bool] = []

    async def one() -> None:
        created.append(await users.ensure_demo("demo-password-123"))

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(one)
    assert created.count(True) <= 1
    assert await users.ensure_demo("demo-password-123") is False
    pair = await users.login(LoginRequest(email=DEMO_EMAIL, password="demo-password-123"), "x")
    assert pair.user.id == user_id_for(DEMO_EMAIL)


async def test_watchlists_upsert_order_and_ownership(
    users: PgUsers, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = _email("lists")
    user = await users.register(UserCreate(email=email, password="password-123", name="L"))
    other = await users.register(UserCreate(email=_email("o"), password="password-123", name="O"))
    watchlists = PgWatchlists(sessions, lambda: SERVED)
    stored = await watchlists.put(user.id, "b list", ["spy", "AAPL", "SPY"])
    assert stored.symbols == ["SPY", "AAPL"], "upper-cased, duplicates dropped, order kept"
    again = await watchlists.put(user.id, "b list", ["SPY", "AAPL"])
    assert again.updated_at == stored.updated_at, "the same symbols again change nothing"
    changed = await watchlists.put(user.id, "b list", ["MSFT"])
    assert changed.symbols == ["MSFT"]
    await watchlists.put(user.id, "B", ["SPY"])
    await watchlists.put(user.id, "a", ["SPY"])
    names = [item.name for item in (await watchlists.of_user(user.id)).watchlists]
    assert names == ["B", "a", "b list"], "by name in code-point order, as the mock sorts"
    with pytest.raises(NotFound):
        await watchlists.get(other.id, "a")  # another user's list is none
    with pytest.raises(FieldError, match=r"symbols\[1\]"):
        await watchlists.put(user.id, "bad", ["SPY", "NOPE"])
    await watchlists.delete(user.id, "a")
    with pytest.raises(NotFound):
        await watchlists.delete(user.id, "a")


async def test_a_failed_write_is_an_error_and_stores_nothing(
    users: PgUsers, sessions: async_sessionmaker[AsyncSession], users_url: str
) -> None:
    user = await users.register(UserCreate(email=_email("ro"), password="password-123", name="R"))
    watchlists = PgWatchlists(sessions, lambda: SERVED)
    name = databases.database_name(users_url)
    async with sessions() as session:
        await session.execute(
            text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        )
        await session.commit()
    read_only = create_engine(users_url, pool_size=1)
    try:
        stuck = PgWatchlists(create_sessions(read_only), lambda: SERVED)
        with pytest.raises(DependencyDown, match="database"):
            await stuck.put(user.id, "never", ["SPY"])
    finally:
        await read_only.dispose()
        async with sessions() as session:
            await session.execute(text("SET default_transaction_read_only = off"))
            await session.execute(
                text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = off')
            )
            await session.commit()
    with pytest.raises(NotFound):
        await watchlists.get(user.id, "never")


async def test_a_generated_signal_is_recorded_with_its_caller(
    sessions: async_sessionmaker[AsyncSession], users: PgUsers
) -> None:
    from backend.signals.service import RecordingSignals
    from contract.reads import HistoryReads
    from contract.types import HealthChecks
    from market.calendar import DEFAULT_ASOF
    from mock_backend.history import GeneratedHistory

    async def checks() -> HealthChecks:
        return HealthChecks(database="ok", cache="n/a", feed="n/a")

    user = await users.register(UserCreate(email=_email("sig"), password="password-123", name="S"))
    reads = HistoryReads(GeneratedHistory(42, DEFAULT_ASOF, feed=False), "production", checks)
    recording = RecordingSignals(reads, sessions)
    token = current_user_id.set(user.id)
    try:
        signal = await recording.generate("spy", "1d")
    finally:
        current_user_id.reset(token)
    async with sessions() as session:
        rows = (
            await session.scalars(
                select(GeneratedSignal).where(GeneratedSignal.signal_id == signal.id)
            )
        ).all()
    assert [(str(r.user_id), r.symbol, r.type, r.confidence) for r in rows] == [
        (user.id, "SPY", signal.type, signal.confidence)
    ]
    assert rows[0].payload["id"] == signal.id
