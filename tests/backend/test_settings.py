"""The production backend's settings never show a database password, whatever its shape."""

from __future__ import annotations

import pytest

from backend.settings import Settings, SettingsError
from contract.environment import mask_url

SECRET = "s3cr/et?p@ss#wxyz"
BASE = {"REDIS_URL": "redis://127.0.0.1:6379/0", "SECRET_KEY": "k" * 40}


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://app:{SECRET}@db.example:5432/cutover",  # not PostgreSQL
        f"postgresql://app:{SECRET}@db.example:5432/cutover",  # `/` in the password: bad port
        f"postgresql://app:{SECRET}@db.example:port/cutover",
        f"postgresql://app:{SECRET}@/cutover",  # no host
        f"postgresql://app:{SECRET}@db.example:5432",  # no database
    ],
)
def test_a_bad_database_url_is_named_without_any_part_of_its_password(url: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({**BASE, "DATABASE_URL": url})
    message = str(refused.value)
    assert "DATABASE_URL" in message
    for fragment in ("s3cr", "et?p", "ss#wxyz", "wxyz"):
        assert fragment not in message


def test_a_bad_redis_url_hides_its_password() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(
            {**BASE, "DATABASE_URL": "postgresql://a@h/d", "REDIS_URL": f"http://:{SECRET}@h:1"}
        )
    assert "REDIS_URL" in str(refused.value)
    assert "s3cr" not in str(refused.value)


def test_the_mask_keeps_what_helps_and_drops_the_password() -> None:
    assert mask_url("postgresql://app:pw@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert mask_url(f"postgresql://app:{SECRET}@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert mask_url("redis://db:6379/0") == "redis://db:6379/0"
    assert mask_url("postgresql://app@db/x") == "postgresql://app@db/x"
