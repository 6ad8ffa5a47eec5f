"""Structured logging for every process: JSON lines when not a TTY, with the request id, and
no secrets: tokens and passwords are redacted from every line, whoever logs it (uvicorn logs a
WebSocket's path with its `?token=` query)."""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import re
import sys
import time
from pathlib import Path

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)


REDACTED = "[redacted]"
_SECRETS = (
    # A JWT anywhere: a WebSocket query, a header, a body echoed in an error.
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
    # Query parameters and form fields named like a secret.
    (
        re.compile(r"(?i)\b((?:access_|refresh_)?token|password|secret)=[^&\s\"']+"),
        rf"\1={REDACTED}",
    ),
    # Bearer credentials of any shape (the admin token is not a JWT).
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), rf"\1{REDACTED}"),
    # JSON fields named like a secret.
    (
        re.compile(r'(?i)("(?:password|secret|\w*token)"\s*:\s*")[^"]*(")'),
        rf"\1{REDACTED}\2",
    ),
)


def redact(text: str) -> str:
    """`text` without tokens and passwords."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class _RedactFilter(logging.Filter):
    """Rewrites a record's message (and its exception text) before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        if record.exc_text:
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        return True


def configure_logging(level: str = "INFO", log_file: Path | None = None) -> None:
    """Send logs to stderr (JSON unless a TTY) and, when given, to a rotating JSON file."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level.upper())
    stream = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        stream.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    else:
        stream.setFormatter(JsonFormatter())
    stream.addFilter(_RequestIdFilter())
    stream.addFilter(_RedactFilter())
    root.addHandler(stream)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=5 * 1024 * 1024, backupCount=3, encoding="utf-8"
        )
        rotating.setFormatter(JsonFormatter())
        rotating.addFilter(_RedactFilter())
        root.addHandler(rotating)
