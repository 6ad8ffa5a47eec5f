"""The log redaction every process installs (contract/logs.py), line by line: whatever a library
logs, a token or a password leaves it as [redacted], and the rest of the line stays readable."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from contract.logs import configure_logging, redact

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXZhbHVl"


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        (
            f'127.0.0.1:5 - "WebSocket /ws?token={JWT}" [accepted]',
            '"WebSocket /ws?token=[redacted]"',
        ),
        ("GET /ws?token=opaque-value&symbol=SPY", "/ws?token=[redacted]&symbol=SPY"),
        ("Authorization: Bearer admin-token-123", "Authorization: Bearer [redacted]"),
        ('body {"email": "a@b.co", "password": "hunter2!"}', '"email": "a@b.co"'),
        (f'{{"refresh_token": "{JWT}"}}', '{"refresh_token": "[redacted]"}'),
        ("login failed for a@b.co from 10.0.0.1", "login failed for a@b.co from 10.0.0.1"),
    ],
)
def test_a_line_loses_its_secrets_and_keeps_the_rest(line: str, kept: str) -> None:
    cleaned = redact(line)
    assert kept in cleaned
    assert JWT not in cleaned
    assert "hunter2" not in cleaned
    assert "admin-token-123" not in cleaned


def test_a_logged_exception_is_redacted_in_the_file(tmp_path: Path) -> None:
    log_file = tmp_path / "process.log"
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure_logging("INFO", log_file)
        try:
            raise ValueError(f"bad token {JWT} for password=hunter2")
        except ValueError:
            logging.getLogger("drill").exception("refused %s", f"Bearer {JWT}")
        for handler in root.handlers:
            handler.flush()
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    entry = json.loads(log_file.read_text().splitlines()[-1])
    assert entry["message"] == "refused Bearer [redacted]"
    assert JWT not in entry["exception"]
    assert "hunter2" not in entry["exception"]
    assert "ValueError" in entry["exception"]
